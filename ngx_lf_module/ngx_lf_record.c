
/*
 * Copyright (C) The nginx-langfuse authors
 */


#include <string.h>

#include "ngx_lf_record.h"
#include "ngx_lf_dialect.h"


#define NGX_LF_NAME_MAX         256
#define NGX_LF_ERROR_MAX        2048


void
ngx_lf_record_init(ngx_lf_record_t *rec, size_t max_body)
{
    unsigned  i;

    memset(rec, 0, sizeof(ngx_lf_record_t));

    ngx_lf_buf_init(&rec->request_model, NGX_LF_NAME_MAX);
    ngx_lf_buf_init(&rec->input, max_body);
    ngx_lf_buf_init(&rec->system, max_body);
    ngx_lf_buf_init(&rec->tools, max_body);
    ngx_lf_buf_init(&rec->params, NGX_LF_PARAMS_MAX);
    ngx_lf_buf_init(&rec->user, NGX_LF_NAME_MAX);
    ngx_lf_buf_init(&rec->request_raw, NGX_LF_RAW_MAX);

    ngx_lf_buf_init(&rec->model, NGX_LF_NAME_MAX);
    ngx_lf_buf_init(&rec->response_id, NGX_LF_NAME_MAX);
    ngx_lf_buf_init(&rec->output, max_body);
    ngx_lf_buf_init(&rec->reasoning, max_body);
    ngx_lf_buf_init(&rec->finish_reason, NGX_LF_NAME_MAX);
    ngx_lf_buf_init(&rec->error, NGX_LF_ERROR_MAX);
    ngx_lf_buf_init(&rec->response_raw, NGX_LF_RAW_MAX);

    for (i = 0; i < NGX_LF_MAX_TOOL_CALLS; i++) {
        ngx_lf_buf_init(&rec->tool_calls[i].id, NGX_LF_NAME_MAX);
        ngx_lf_buf_init(&rec->tool_calls[i].name, NGX_LF_NAME_MAX);
        /* sixteen of them must not cost sixteen capture limits */
        ngx_lf_buf_init(&rec->tool_calls[i].arguments, max_body / 4);
    }

    rec->usage.input = NGX_LF_USAGE_UNSET;
    rec->usage.output = NGX_LF_USAGE_UNSET;
    rec->usage.total = NGX_LF_USAGE_UNSET;
    rec->usage.cached = NGX_LF_USAGE_UNSET;
    rec->usage.cache_creation = NGX_LF_USAGE_UNSET;
    rec->usage.reasoning = NGX_LF_USAGE_UNSET;

    rec->embeddings = -1;
    rec->dimensions = -1;
    rec->incremental = -1;
}


/*
 * Cuts every captured text to cap bytes, marking it truncated; usage,
 * model and ids stay whole.  An event too large for Langfuse is written
 * again from the trimmed record.
 */

void
ngx_lf_record_trim(ngx_lf_record_t *rec, size_t cap)
{
    unsigned       i;
    ngx_lf_buf_t  *texts[] = { &rec->input, &rec->system, &rec->tools,
                               &rec->params, &rec->request_raw,
                               &rec->output, &rec->reasoning,
                               &rec->response_raw };

    for (i = 0; i < sizeof(texts) / sizeof(texts[0]); i++) {
        if (texts[i]->len > cap) {
            texts[i]->len = cap;
            texts[i]->truncated = 1;
        }
    }

    for (i = 0; i < rec->ntool_calls; i++) {
        if (rec->tool_calls[i].arguments.len > cap) {
            rec->tool_calls[i].arguments.len = cap;
            rec->tool_calls[i].arguments.truncated = 1;
        }
    }
}


void
ngx_lf_record_free(ngx_lf_record_t *rec)
{
    unsigned  i;

    ngx_lf_buf_free(&rec->request_model);
    ngx_lf_buf_free(&rec->input);
    ngx_lf_buf_free(&rec->system);
    ngx_lf_buf_free(&rec->tools);
    ngx_lf_buf_free(&rec->params);
    ngx_lf_buf_free(&rec->user);
    ngx_lf_buf_free(&rec->request_raw);

    ngx_lf_buf_free(&rec->model);
    ngx_lf_buf_free(&rec->response_id);
    ngx_lf_buf_free(&rec->output);
    ngx_lf_buf_free(&rec->reasoning);
    ngx_lf_buf_free(&rec->finish_reason);
    ngx_lf_buf_free(&rec->error);
    ngx_lf_buf_free(&rec->response_raw);

    for (i = 0; i < NGX_LF_MAX_TOOL_CALLS; i++) {
        ngx_lf_buf_free(&rec->tool_calls[i].id);
        ngx_lf_buf_free(&rec->tool_calls[i].name);
        ngx_lf_buf_free(&rec->tool_calls[i].arguments);
    }
}
