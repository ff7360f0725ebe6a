
/*
 * Copyright (C) The nginx-langfuse authors
 */


#include <stddef.h>
#include <string.h>

#include "ngx_lf_parser.h"


/*
 * Alibaba DashScope native generation (Qwen): text at "output.text" or
 * in OpenAI-shaped "output.choices", usage as input/output tokens, and
 * streams that by default restate the whole text in every event.
 */


static int ngx_lf_dashscope(ngx_lf_parser_t *p, ngx_lf_json_t *j,
    ngx_lf_json_type_e type, const u_char *v, size_t len);


static const ngx_lf_key_t  ngx_lf_dashscope_keys[] = {
    { "input", NGX_LF_KEY_INPUT },
    { "parameters", NGX_LF_KEY_PARAMS },
    { NULL, NGX_LF_KEY_PARAM }
};


static const ngx_lf_usage_path_t  ngx_lf_dashscope_usage[] = {
    { "usage.input_tokens", ngx_lf_usage_field(input) },
    { "usage.output_tokens", ngx_lf_usage_field(output) },
    { "usage.total_tokens", ngx_lf_usage_field(total) },
    { "usage.prompt_tokens_details.cached_tokens",
      ngx_lf_usage_field(cached) },
    { "usage.output_tokens_details.reasoning_tokens",
      ngx_lf_usage_field(reasoning) },
    { NULL, 0 }
};


const ngx_lf_dialect_t  ngx_lf_dashscope_dialect = {
    "dashscope", "dashscope.generation", ngx_lf_dashscope_keys,
    ngx_lf_dashscope
};


static int
ngx_lf_dashscope(ngx_lf_parser_t *p, ngx_lf_json_t *j,
    ngx_lf_json_type_e type, const u_char *v, size_t len)
{
    const char       *rest;
    ngx_lf_record_t  *rec;

    rec = p->rec;

    if (j->depth == 1 && type == NGX_LF_JSON_STRING) {

        if (ngx_lf_json_is(j, "request_id")) {
            ngx_lf_set(&rec->response_id, v, len);

        } else if (ngx_lf_json_is(j, "message") && len) {
            ngx_lf_set(&rec->error, v, len);

        } else if (ngx_lf_json_is(j, "code") && len && rec->error.len == 0)
        {
            ngx_lf_set(&rec->error, v, len);
        }

        return 0;
    }

    if (ngx_lf_json_is(j, "output.text") && type == NGX_LF_JSON_STRING) {
        if (!p->use_sse) {
            /* a repeated key replaces */
            ngx_lf_buf_reset(&rec->output);
        }

        ngx_lf_text(p, &rec->output, v, len);
        return 0;
    }

    if (ngx_lf_json_is(j, "output.finish_reason")) {
        if (type == NGX_LF_JSON_STRING && !ngx_lf_is_null_text(v, len)) {
            ngx_lf_set(&rec->finish_reason, v, len);
            rec->stream_done = 1;
        }

        return 0;
    }

    rest = ngx_lf_json_under(j, "output.choices[]");

    if (rest) {
        ngx_lf_choice_value(p, j, rest, type, v, len);

        if (rec->finish_reason.len) {
            rec->stream_done = 1;
        }

        return 0;
    }

    if (ngx_lf_usage(rec, ngx_lf_dashscope_usage, j->path, type, v, len)) {
        rec->usage.input_has_cached = 1;
        rec->usage.output_has_reasoning = 1;
    }

    return 0;
}
