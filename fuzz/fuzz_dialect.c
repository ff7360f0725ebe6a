
/*
 * Copyright (C) The nginx-langfuse authors
 */


#include <stdlib.h>
#include <string.h>

#include "ngx_lf_dialect.h"
#include "ngx_lf_event.h"


/*
 * The first byte picks the body (request or response), the dialect,
 * SSE framing and the piece size; the rest is the body.  Whatever it
 * is, the parse must stay within bounds and the event written from the
 * record must be valid JSON (Langfuse rejects a whole batch for one
 * bad event).  The targets of the other dialects include this file
 * with FUZZ_DIALECT set.
 */

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);


int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    size_t            piece, off, n, len;
    yajl_gen          g;
    yajl_handle       h;
    ngx_lf_span_t     span;
    const u_char     *text;
    ngx_lf_parser_t  *p;
    ngx_lf_record_t   rec;
    ngx_lf_protocol_e proto;

    if (size < 1) {
        return 0;
    }

    ngx_lf_record_init(&rec, 4096);

#ifdef FUZZ_DIALECT
    rec.dialect = (data[0] & 1) ? FUZZ_DIALECT : NGX_LF_DIALECT_UNKNOWN;
#else
    rec.dialect = (data[0] & 1) ? NGX_LF_DIALECT_DASHSCOPE
                                : NGX_LF_DIALECT_OPENAI_CHAT;
#endif
    rec.incremental = (data[0] & 0x40) ? 1 : -1;
    piece = ((data[0] >> 3) & 7) + 1;
    proto = (data[0] & 0x80) ? NGX_LF_PROTO_INGESTION : NGX_LF_PROTO_OTLP;

    p = (data[0] & 2) ? ngx_lf_request_parser_create(&rec)
                      : ngx_lf_response_parser_create(&rec, data[0] & 4);
    if (p == NULL) {
        ngx_lf_record_free(&rec);
        return 0;
    }

    data++;
    size--;

    for (off = 0; off < size; off += n) {
        n = piece < size - off ? piece : size - off;
        (void) ngx_lf_parser_feed(p, data + off, n);
    }

    (void) ngx_lf_parser_finish(p);
    ngx_lf_parser_destroy(p);

    memset(&span, 0, sizeof(span));
    strcpy(span.trace_id, "0123456789abcdef0123456789abcdef");
    strcpy(span.span_id, "0123456789abcdef");
    strcpy(span.event_id[0], "00000000-0000-4000-8000-000000000000");
    strcpy(span.event_id[1], "00000000-0000-4000-8000-000000000001");
    span.start_ms = 1796292000000;
    span.end_ms = 1796292001000;
    span.name.data = (const u_char *) "fuzz";
    span.name.len = 4;
    span.status = 200;
    span.complete = 1;

    g = yajl_gen_alloc(NULL);

    if (ngx_lf_event_write(g, proto, &rec, &span) != 0) {
        /* the writer refuses nothing the parsers let through */
        abort();
    }

    if (yajl_gen_get_buf(g, &text, &len) != yajl_gen_status_ok) {
        abort();
    }

    h = yajl_alloc(NULL, NULL, NULL);

    if (yajl_parse(h, text, len) != yajl_status_ok
        || yajl_complete_parse(h) != yajl_status_ok)
    {
        abort();
    }

    yajl_free(h);
    yajl_gen_free(g);
    ngx_lf_record_free(&rec);

    return 0;
}
