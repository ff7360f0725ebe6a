
/*
 * Copyright (C) The nginx-langfuse authors
 */


#ifndef _NGX_LF_RECORD_H_INCLUDED_
#define _NGX_LF_RECORD_H_INCLUDED_


#include "ngx_lf_buf.h"


/*
 * The neutral record of one LLM call that every dialect fills and the
 * event writer reads.  Usage counts are kept as the provider reported
 * them (-1: not reported) together with what the provider's totals
 * include, so that normalization to Langfuse's disjoint keys happens in
 * one place.
 */

#define NGX_LF_USAGE_UNSET      (-1)
#define NGX_LF_MAX_TOOL_CALLS   16


typedef enum {
    NGX_LF_DIALECT_AUTO = 0,
    NGX_LF_DIALECT_OPENAI_CHAT,
    NGX_LF_DIALECT_OPENAI_RESPONSES,
    NGX_LF_DIALECT_OPENAI_EMBEDDINGS,
    NGX_LF_DIALECT_DASHSCOPE,
    NGX_LF_DIALECT_ANTHROPIC,
    NGX_LF_DIALECT_GEMINI,
    NGX_LF_DIALECT_UNKNOWN
} ngx_lf_dialect_e;


typedef struct {
    int64_t                 input;          /* prompt tokens */
    int64_t                 output;         /* completion tokens */
    int64_t                 total;
    int64_t                 cached;         /* cache reads */
    int64_t                 cache_creation;
    int64_t                 reasoning;

    unsigned                input_has_cached:1;
    unsigned                output_has_reasoning:1;
} ngx_lf_usage_t;


typedef struct {
    ngx_lf_buf_t            id;
    ngx_lf_buf_t            name;
    ngx_lf_buf_t            arguments;
} ngx_lf_tool_call_t;


typedef struct {
    ngx_lf_dialect_e        dialect;

    /* from the request */
    ngx_lf_buf_t            request_model;
    ngx_lf_buf_t            input;          /* JSON text */
    ngx_lf_buf_t            system;         /* JSON text */
    ngx_lf_buf_t            tools;          /* JSON text */
    ngx_lf_buf_t            params;         /* JSON object text */
    ngx_lf_buf_t            user;           /* the request's own user id */
    ngx_lf_buf_t            request_raw;    /* when the body is not JSON */

    /* from the response */
    ngx_lf_buf_t            model;
    ngx_lf_buf_t            response_id;
    ngx_lf_buf_t            output;         /* assistant text */
    ngx_lf_buf_t            reasoning;
    ngx_lf_buf_t            finish_reason;
    ngx_lf_buf_t            error;          /* provider's error message */
    ngx_lf_buf_t            response_raw;   /* fallback for non-JSON */

    ngx_lf_tool_call_t      tool_calls[NGX_LF_MAX_TOOL_CALLS];
    unsigned                ntool_calls;

    ngx_lf_usage_t          usage;

    /* embeddings: how many vectors of which size, not the vectors */
    int64_t                 embeddings;
    int64_t                 dimensions;

    int                     incremental;    /* -1 unknown, 0, 1 */

    unsigned                request_stream:1;
    unsigned                request_error:1;    /* body was not JSON */
    unsigned                response_sse:1;
    unsigned                response_error:1;   /* body was not JSON */
    unsigned                stream_done:1;      /* [DONE] or final event */
    unsigned                error_event:1;      /* error inside a stream */
    unsigned                content_seen:1;     /* first token arrived */
    unsigned                output_unknown:1;   /* body not readable */
    unsigned                shape_known:1;      /* the body told its API */
    unsigned                tool_calls_dropped:1;   /* over the maximum */
} ngx_lf_record_t;


void ngx_lf_record_init(ngx_lf_record_t *rec, size_t max_body);
void ngx_lf_record_trim(ngx_lf_record_t *rec, size_t cap);
void ngx_lf_record_free(ngx_lf_record_t *rec);


#endif /* _NGX_LF_RECORD_H_INCLUDED_ */
