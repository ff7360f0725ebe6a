
/*
 * Copyright (C) The nginx-langfuse authors
 */


#ifndef _NGX_LF_SSE_H_INCLUDED_
#define _NGX_LF_SSE_H_INCLUDED_


#include "ngx_lf_buf.h"


/*
 * Incremental Server-Sent Events framer (WHATWG event stream rules):
 * bytes arrive in arbitrary pieces; lines end with LF, CRLF or CR alone
 * (a CR at the end of one piece and an LF at the start of the next are
 * one line end); "data:" lines are joined with LF; "event:" sets the
 * type; comments (":...") and unknown fields are ignored; a blank line
 * dispatches.  An event whose data exceeds max_event is dispatched
 * truncated (data_truncated set) rather than held without bound.
 */

typedef int (*ngx_lf_sse_handler_pt)(void *ctx, const u_char *event,
    size_t event_len, const u_char *data, size_t data_len,
    int data_truncated);


typedef struct {
    ngx_lf_sse_handler_pt   handler;    /* non-zero return stops framing */
    void                   *ctx;

    ngx_lf_buf_t            line;       /* the current unfinished line */
    ngx_lf_buf_t            event;      /* event type */
    ngx_lf_buf_t            data;       /* joined data lines */

    size_t                  max_line;   /* init sets max_event + 64 */
    unsigned                has_data:1; /* a data: field was seen */
    unsigned                skip_lf:1;  /* previous piece ended in CR */
    unsigned                stopped:1;
    unsigned                long_line:1;
    unsigned                started:1;  /* past the stream's first bytes */
    unsigned                bom:2;      /* leading BOM bytes matched */

    uint64_t                events;     /* dispatched */
    uint64_t                oversized;  /* lines or events cut at a cap */
} ngx_lf_sse_t;


/*
 * max_event 0 means 1 MiB; max_line may be changed after init.  The
 * handler gets the type as sent (empty without an "event:" field, the
 * spec's "message" default is left to it) and pointers valid only for
 * the call; a NULL handler only counts events.
 */
void ngx_lf_sse_init(ngx_lf_sse_t *s, size_t max_event,
    ngx_lf_sse_handler_pt handler, void *ctx);
/* returns 0, -1 on memory exhaustion, 1 when the handler stopped it */
int ngx_lf_sse_feed(ngx_lf_sse_t *s, const u_char *p, size_t n);
/*
 * End of stream: an event still pending (no final blank line) is
 * dispatched.  Returns 1 when such an event was dispatched, else 0.
 */
int ngx_lf_sse_finish(ngx_lf_sse_t *s);
void ngx_lf_sse_free(ngx_lf_sse_t *s);


#endif /* _NGX_LF_SSE_H_INCLUDED_ */
