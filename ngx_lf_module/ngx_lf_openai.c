
/*
 * Copyright (C) The nginx-langfuse authors
 */


#include <stddef.h>
#include <string.h>

#include "ngx_lf_parser.h"


/*
 * OpenAI and every server that speaks its API (DashScope compatible
 * mode, DeepSeek, vLLM, Ollama): chat completions, the Responses API
 * and embeddings.
 */


static int ngx_lf_openai_chat(ngx_lf_parser_t *p, ngx_lf_json_t *j,
    ngx_lf_json_type_e type, const u_char *v, size_t len);
static int ngx_lf_openai_responses(ngx_lf_parser_t *p, ngx_lf_json_t *j,
    ngx_lf_json_type_e type, const u_char *v, size_t len);
static void ngx_lf_openai_response_object(ngx_lf_parser_t *p,
    ngx_lf_json_t *j, const char *path, ngx_lf_json_type_e type,
    const u_char *v, size_t len);
static int ngx_lf_openai_embeddings(ngx_lf_parser_t *p, ngx_lf_json_t *j,
    ngx_lf_json_type_e type, const u_char *v, size_t len);
static int ngx_lf_openai_error(ngx_lf_parser_t *p, const char *path,
    ngx_lf_json_type_e type, const u_char *v, size_t len);


static const ngx_lf_key_t  ngx_lf_openai_chat_keys[] = {
    { "messages", NGX_LF_KEY_INPUT },
    { "tools", NGX_LF_KEY_TOOLS },
    { "functions", NGX_LF_KEY_TOOLS },
    { "stream_options", NGX_LF_KEY_IGNORE },
    { "metadata", NGX_LF_KEY_IGNORE },
    { NULL, NGX_LF_KEY_PARAM }
};


static const ngx_lf_key_t  ngx_lf_openai_responses_keys[] = {
    { "input", NGX_LF_KEY_INPUT },
    { "instructions", NGX_LF_KEY_SYSTEM },
    { "tools", NGX_LF_KEY_TOOLS },
    { "stream_options", NGX_LF_KEY_IGNORE },
    { "metadata", NGX_LF_KEY_IGNORE },
    { NULL, NGX_LF_KEY_PARAM }
};


static const ngx_lf_key_t  ngx_lf_openai_embeddings_keys[] = {
    { "input", NGX_LF_KEY_INPUT },
    { NULL, NGX_LF_KEY_PARAM }
};


static const ngx_lf_usage_path_t  ngx_lf_openai_chat_usage[] = {
    { "usage.prompt_tokens", ngx_lf_usage_field(input) },
    { "usage.completion_tokens", ngx_lf_usage_field(output) },
    { "usage.total_tokens", ngx_lf_usage_field(total) },
    { "usage.prompt_tokens_details.cached_tokens",
      ngx_lf_usage_field(cached) },
    { "usage.prompt_cache_hit_tokens", ngx_lf_usage_field(cached) },
    { "usage.completion_tokens_details.reasoning_tokens",
      ngx_lf_usage_field(reasoning) },
    { NULL, 0 }
};


static const ngx_lf_usage_path_t  ngx_lf_openai_responses_usage[] = {
    { "usage.input_tokens", ngx_lf_usage_field(input) },
    { "usage.output_tokens", ngx_lf_usage_field(output) },
    { "usage.total_tokens", ngx_lf_usage_field(total) },
    { "usage.input_tokens_details.cached_tokens",
      ngx_lf_usage_field(cached) },
    { "usage.output_tokens_details.reasoning_tokens",
      ngx_lf_usage_field(reasoning) },
    { NULL, 0 }
};


const ngx_lf_dialect_t  ngx_lf_openai_chat_dialect = {
    "openai_chat", "chat.completions", ngx_lf_openai_chat_keys,
    ngx_lf_openai_chat
};


const ngx_lf_dialect_t  ngx_lf_openai_responses_dialect = {
    "openai_responses", "responses", ngx_lf_openai_responses_keys,
    ngx_lf_openai_responses
};


const ngx_lf_dialect_t  ngx_lf_openai_embeddings_dialect = {
    "openai_embeddings", "embeddings", ngx_lf_openai_embeddings_keys,
    ngx_lf_openai_embeddings
};


static int
ngx_lf_openai_chat(ngx_lf_parser_t *p, ngx_lf_json_t *j,
    ngx_lf_json_type_e type, const u_char *v, size_t len)
{
    const char       *rest;
    ngx_lf_record_t  *rec;

    rec = p->rec;

    if (ngx_lf_openai_error(p, j->path, type, v, len)) {
        return 0;
    }

    if (j->depth == 1 && type == NGX_LF_JSON_STRING) {

        if (ngx_lf_json_is(j, "id")) {
            ngx_lf_set(&rec->response_id, v, len);

        } else if (ngx_lf_json_is(j, "model")) {
            ngx_lf_set(&rec->model, v, len);
        }

        return 0;
    }

    rest = ngx_lf_json_under(j, "choices[]");

    if (rest) {
        ngx_lf_choice_value(p, j, rest, type, v, len);
        return 0;
    }

    if (ngx_lf_usage(rec, ngx_lf_openai_chat_usage, j->path, type, v, len))
    {
        /* prompt tokens count the cached, completion the reasoning */
        rec->usage.input_has_cached = 1;
        rec->usage.output_has_reasoning = 1;
    }

    return 0;
}


/*
 * The Responses API.  A stream sends typed events: text and argument
 * deltas, and the whole response (with its usage) at the end, whose
 * output items repeat the deltas and are not taken twice.
 */

static int
ngx_lf_openai_responses(ngx_lf_parser_t *p, ngx_lf_json_t *j,
    ngx_lf_json_type_e type, const u_char *v, size_t len)
{
    int64_t              n;
    const char          *path;
    ngx_lf_record_t     *rec;
    ngx_lf_tool_call_t  *tc;

    rec = p->rec;
    path = j->path;

    if (!p->use_sse) {
        ngx_lf_openai_response_object(p, j, path, type, v, len);
        return 0;
    }

    if (p->event_len == 0 && ngx_lf_json_is(j, "type")
        && type == NGX_LF_JSON_STRING && len < NGX_LF_EVENT_MAX)
    {
        /* a stream without "event:" lines names the type in the data */
        memcpy(p->event, v, len);
        p->event_len = len;
        return 0;
    }

    if (strncmp(path, "response.", 9) == 0) {
        if (ngx_lf_event_is(p, "response.completed")
            || ngx_lf_event_is(p, "response.incomplete")
            || ngx_lf_event_is(p, "response.failed"))
        {
            rec->stream_done = 1;
        }

        if (strncmp(path + 9, "output", 6) != 0) {
            ngx_lf_openai_response_object(p, j, path + 9, type, v, len);
        }

        if (ngx_lf_event_is(p, "response.failed") && rec->error.len) {
            rec->error_event = 1;
        }

        return 0;
    }

    if (ngx_lf_event_is(p, "error")) {
        if (type == NGX_LF_JSON_STRING
            && (strcmp(path, "message") == 0
                || strcmp(path, "error.message") == 0))
        {
            ngx_lf_set(&rec->error, v, len);
            rec->error_event = 1;
        }

        return 0;
    }

    if (strcmp(path, "output_index") == 0) {
        if (type == NGX_LF_JSON_NUMBER && ngx_lf_json_int(v, len, &n) == 0) {
            p->tool = n;
        }

        return 0;
    }

    if (type != NGX_LF_JSON_STRING) {
        return 0;
    }

    if (strcmp(path, "delta") == 0) {
        if (ngx_lf_event_is(p, "response.output_text.delta")) {
            ngx_lf_text(p, &rec->output, v, len);

        } else if (ngx_lf_event_is(p, "response.reasoning_summary_text.delta")
                   || ngx_lf_event_is(p, "response.reasoning_text.delta"))
        {
            ngx_lf_text(p, &rec->reasoning, v, len);

        } else if (ngx_lf_event_is(p,
                                   "response.function_call_arguments.delta"))
        {
            tc = ngx_lf_tool_slot(p, p->tool);

            if (tc) {
                (void) ngx_lf_buf_append(&tc->arguments, v, len);
                rec->content_seen |= len ? 1 : 0;
            }
        }

        return 0;
    }

    if (ngx_lf_event_is(p, "response.output_item.added")
        && (strcmp(path, "item.call_id") == 0
            || strcmp(path, "item.name") == 0))
    {
        tc = ngx_lf_tool_slot(p, p->tool);

        if (tc) {
            ngx_lf_set(path[5] == 'c' ? &tc->id : &tc->name, v, len);
            rec->content_seen = 1;
        }
    }

    return 0;
}


/* a response object: the whole body, or inside a final stream event */

static void
ngx_lf_openai_response_object(ngx_lf_parser_t *p, ngx_lf_json_t *j,
    const char *path, ngx_lf_json_type_e type, const u_char *v, size_t len)
{
    ngx_lf_record_t     *rec;
    ngx_lf_tool_call_t  *tc;

    rec = p->rec;

    if (ngx_lf_openai_error(p, path, type, v, len)) {
        return;
    }

    if (ngx_lf_usage(rec, ngx_lf_openai_responses_usage, path, type, v,
                     len))
    {
        rec->usage.input_has_cached = 1;
        rec->usage.output_has_reasoning = 1;
        return;
    }

    if (type == NGX_LF_JSON_MAP_START && strcmp(path, "output[]") == 0) {
        p->tool = ngx_lf_json_index(j, 0);
        return;
    }

    if (type != NGX_LF_JSON_STRING) {
        return;
    }

    if (strcmp(path, "id") == 0) {
        ngx_lf_set(&rec->response_id, v, len);

    } else if (strcmp(path, "model") == 0) {
        ngx_lf_set(&rec->model, v, len);

    } else if (strcmp(path, "status") == 0) {
        ngx_lf_set(&rec->finish_reason, v, len);

    } else if (strcmp(path, "incomplete_details.reason") == 0) {
        ngx_lf_set(&rec->finish_reason, v, len);

    } else if (strcmp(path, "output[].content[].text") == 0) {
        ngx_lf_text(p, &rec->output, v, len);

    } else if (strcmp(path, "output[].summary[].text") == 0) {
        ngx_lf_text(p, &rec->reasoning, v, len);

    } else if (strcmp(path, "output[].call_id") == 0
               || strcmp(path, "output[].name") == 0
               || strcmp(path, "output[].arguments") == 0)
    {
        tc = ngx_lf_tool_slot(p, p->tool);

        if (tc) {
            ngx_lf_set(path[9] == 'c' ? &tc->id
                       : path[9] == 'n' ? &tc->name : &tc->arguments,
                       v, len);
        }
    }
}


/*
 * Embeddings: the vectors are no output worth storing; their count and
 * size are.  A base64 vector holds 4-byte floats.
 */

static int
ngx_lf_openai_embeddings(ngx_lf_parser_t *p, ngx_lf_json_t *j,
    ngx_lf_json_type_e type, const u_char *v, size_t len)
{
    size_t            pad;
    ngx_lf_record_t  *rec;

    rec = p->rec;

    if (ngx_lf_openai_error(p, j->path, type, v, len)) {
        return 0;
    }

    if (ngx_lf_json_is(j, "data[]")) {
        if (type == NGX_LF_JSON_MAP_START) {
            rec->embeddings = ngx_lf_json_index(j, 0) + 1;
        }

        return 0;
    }

    if (ngx_lf_json_index(j, 0) == 0) {

        if (ngx_lf_json_is(j, "data[].embedding[]")) {
            rec->dimensions = ngx_lf_json_index(j, 1) + 1;
            return 0;
        }

        if (ngx_lf_json_is(j, "data[].embedding")
            && type == NGX_LF_JSON_STRING)
        {
            pad = (len && v[len - 1] == '=') + (len > 1 && v[len - 2] == '=');
            rec->dimensions = (int64_t) ((len / 4 * 3 - pad) / 4);
            return 0;
        }
    }

    if (ngx_lf_json_is(j, "model") && type == NGX_LF_JSON_STRING) {
        ngx_lf_set(&rec->model, v, len);
        return 0;
    }

    if (ngx_lf_usage(rec, ngx_lf_openai_chat_usage, j->path, type, v, len))
    {
        rec->usage.input_has_cached = 1;
    }

    return 0;
}


/* {"error": {"message": ...}} or {"error": "..."} */

static int
ngx_lf_openai_error(ngx_lf_parser_t *p, const char *path,
    ngx_lf_json_type_e type, const u_char *v, size_t len)
{
    if (strcmp(path, "error") != 0 && strcmp(path, "error.message") != 0) {
        return 0;
    }

    if (type == NGX_LF_JSON_STRING) {
        ngx_lf_set(&p->rec->error, v, len);
        p->rec->error_event |= p->use_sse;
    }

    return 1;
}
