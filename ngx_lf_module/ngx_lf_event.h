
/*
 * Copyright (C) The nginx-langfuse authors
 */


#ifndef _NGX_LF_EVENT_H_INCLUDED_
#define _NGX_LF_EVENT_H_INCLUDED_


#include <yajl/yajl_gen.h>

#include "ngx_lf_record.h"


/*
 * One LLM call written as what Langfuse stores: an OTLP/JSON span with
 * langfuse.* attributes, or a legacy trace-create plus
 * generation-create pair.  Written once, complete, in the log phase; a
 * batch is these texts joined with commas inside a fixed envelope.
 */

#define NGX_LF_VERSION          "0.1.0"


typedef enum {
    NGX_LF_PROTO_OTLP = 0,
    NGX_LF_PROTO_INGESTION
} ngx_lf_protocol_e;


typedef struct {
    const u_char           *data;
    size_t                  len;
} ngx_lf_str_t;


typedef struct {
    ngx_lf_str_t            key;
    ngx_lf_str_t            value;
} ngx_lf_kv_t;


typedef struct {
    char                    trace_id[33];
    char                    span_id[17];
    char                    parent_id[17];     /* "" without a parent */
    char                    event_id[2][37];   /* legacy envelope ids */

    int64_t                 start_ms;
    int64_t                 first_ms;          /* 0: no body arrived */
    int64_t                 end_ms;

    ngx_lf_str_t            name;
    ngx_lf_str_t            user;
    ngx_lf_str_t            session;
    ngx_lf_str_t            environment;
    ngx_lf_str_t            release;
    ngx_lf_str_t            tags;              /* comma separated */
    ngx_lf_str_t            method;
    ngx_lf_str_t            uri;

    ngx_lf_kv_t            *metadata;
    size_t                  nmetadata;

    unsigned                status;
    unsigned                complete:1;        /* the response ended */
} ngx_lf_span_t;


/* returns 0, or -1 (out of memory, yajl refused a value) */
int ngx_lf_event_write(yajl_gen g, ngx_lf_protocol_e proto,
    ngx_lf_record_t *rec, ngx_lf_span_t *span);

/*
 * The text to queue: for the legacy protocol the writer emits a JSON
 * array of two events and the queue keeps them without the brackets.
 */
int ngx_lf_event_text(yajl_gen g, ngx_lf_protocol_e proto,
    const u_char **text, size_t *len);

/* the batch envelope around comma-joined event texts */
const char *ngx_lf_event_batch_head(ngx_lf_protocol_e proto);
const char *ngx_lf_event_batch_tail(ngx_lf_protocol_e proto);

/*
 * Writes an event text again into g with each input and output cut to
 * cap bytes; returns how many were cut, or -1 when the text is not
 * valid JSON.
 */
int ngx_lf_event_shrink(yajl_gen g, const unsigned char *text, size_t len,
    size_t cap);

/*
 * A legacy call as queued, "{trace-create},{generation-create}", or the
 * part of it that a retry sends: where each event is and its envelope
 * id (NGX_LF_EVENT_ID_LEN bytes).  Returns how many events (1 or 2), or
 * 0 when the text is not such.
 */

#define NGX_LF_EVENT_ID_LEN     36

typedef struct {
    const unsigned char    *data;
    size_t                  len;
    const unsigned char    *id;
} ngx_lf_envelope_t;

int ngx_lf_event_envelopes(const unsigned char *text, size_t len,
    ngx_lf_envelope_t *env);

/* "2026-12-03T10:00:00.350Z" into buf[32] */
void ngx_lf_iso_time(char *buf, int64_t ms);


#endif /* _NGX_LF_EVENT_H_INCLUDED_ */
