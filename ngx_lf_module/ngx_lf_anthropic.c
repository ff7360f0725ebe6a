
/*
 * Copyright (C) The nginx-langfuse authors
 */


#include <stddef.h>
#include <string.h>

#include "ngx_lf_parser.h"


/*
 * Anthropic Messages.  Input tokens exclude cache reads and writes.  A
 * stream states input usage in message_start and output usage in
 * message_delta, which may restate the rest: the latest value counts.
 */


static int ngx_lf_anthropic(ngx_lf_parser_t *p, ngx_lf_json_t *j,
    ngx_lf_json_type_e type, const u_char *v, size_t len);
static void ngx_lf_anthropic_block(ngx_lf_parser_t *p, ngx_lf_json_t *j,
    const char *rest, ngx_lf_json_type_e type, const u_char *v, size_t len);


static const ngx_lf_key_t  ngx_lf_anthropic_keys[] = {
    { "messages", NGX_LF_KEY_INPUT },
    { "system", NGX_LF_KEY_SYSTEM },
    { "tools", NGX_LF_KEY_TOOLS },
    { "metadata", NGX_LF_KEY_IGNORE },
    { NULL, NGX_LF_KEY_PARAM }
};


static const ngx_lf_usage_path_t  ngx_lf_anthropic_usage[] = {
    { "usage.input_tokens", ngx_lf_usage_field(input) },
    { "usage.output_tokens", ngx_lf_usage_field(output) },
    { "usage.cache_read_input_tokens", ngx_lf_usage_field(cached) },
    { "usage.cache_creation_input_tokens",
      ngx_lf_usage_field(cache_creation) },
    { "message.usage.input_tokens", ngx_lf_usage_field(input) },
    { "message.usage.output_tokens", ngx_lf_usage_field(output) },
    { "message.usage.cache_read_input_tokens", ngx_lf_usage_field(cached) },
    { "message.usage.cache_creation_input_tokens",
      ngx_lf_usage_field(cache_creation) },
    { NULL, 0 }
};


const ngx_lf_dialect_t  ngx_lf_anthropic_dialect = {
    "anthropic", "messages", ngx_lf_anthropic_keys, ngx_lf_anthropic
};


static int
ngx_lf_anthropic(ngx_lf_parser_t *p, ngx_lf_json_t *j,
    ngx_lf_json_type_e type, const u_char *v, size_t len)
{
    int64_t              n;
    const char          *path, *rest;
    ngx_lf_record_t     *rec;
    ngx_lf_tool_call_t  *tc;

    rec = p->rec;
    path = j->path;

    if (ngx_lf_usage(rec, ngx_lf_anthropic_usage, path, type, v, len)) {
        return 0;
    }

    if (strcmp(path, "error.message") == 0) {
        if (type == NGX_LF_JSON_STRING) {
            ngx_lf_set(&rec->error, v, len);
            rec->error_event |= p->use_sse;
        }

        return 0;
    }

    if (strcmp(path, "type") == 0 && type == NGX_LF_JSON_STRING) {
        if (len == 12 && memcmp(v, "message_stop", 12) == 0) {
            rec->stream_done = 1;

        } else if (len == 5 && memcmp(v, "error", 5) == 0) {
            rec->error_event = 1;
        }

        return 0;
    }

    /* a whole message: content blocks in order */

    rest = ngx_lf_json_under(j, "content[]");

    if (rest) {
        if (rest[0] == '\0') {
            if (type == NGX_LF_JSON_MAP_START) {
                p->tool = ngx_lf_json_index(j, 0);
            }

            return 0;
        }

        ngx_lf_anthropic_block(p, j, rest + 1, type, v, len);
        return 0;
    }

    /* a stream: blocks by index, then their deltas */

    if (strcmp(path, "index") == 0) {
        if (type == NGX_LF_JSON_NUMBER && ngx_lf_json_int(v, len, &n) == 0) {
            p->tool = n;
        }

        return 0;
    }

    rest = ngx_lf_json_under(j, "content_block.");

    if (rest) {
        ngx_lf_anthropic_block(p, j, rest, type, v, len);
        return 0;
    }

    if (type != NGX_LF_JSON_STRING) {
        return 0;
    }

    if (strcmp(path, "delta.text") == 0) {
        ngx_lf_text(p, &rec->output, v, len);

    } else if (strcmp(path, "delta.thinking") == 0) {
        ngx_lf_text(p, &rec->reasoning, v, len);

    } else if (strcmp(path, "delta.partial_json") == 0) {
        tc = ngx_lf_tool_slot(p, p->tool);

        if (tc) {
            (void) ngx_lf_buf_append(&tc->arguments, v, len);
            rec->content_seen |= len ? 1 : 0;
        }

    } else if (strcmp(path, "delta.stop_reason") == 0
               || strcmp(path, "stop_reason") == 0)
    {
        ngx_lf_set(&rec->finish_reason, v, len);

    } else if (strcmp(path, "id") == 0 || strcmp(path, "message.id") == 0) {
        ngx_lf_set(&rec->response_id, v, len);

    } else if (strcmp(path, "model") == 0
               || strcmp(path, "message.model") == 0)
    {
        ngx_lf_set(&rec->model, v, len);
    }

    return 0;
}


/* a content block: text, thinking or a tool call with its input */

static void
ngx_lf_anthropic_block(ngx_lf_parser_t *p, ngx_lf_json_t *j,
    const char *rest, ngx_lf_json_type_e type, const u_char *v, size_t len)
{
    ngx_lf_record_t     *rec;
    ngx_lf_tool_call_t  *tc;

    rec = p->rec;

    if (strcmp(rest, "input") == 0) {
        /* the whole tool input of a message; a stream sends {} here */
        if (p->use_sse) {
            return;
        }

        tc = ngx_lf_tool_slot(p, p->tool);

        if (tc && (type == NGX_LF_JSON_MAP_START
                   || type == NGX_LF_JSON_ARRAY_START))
        {
            (void) ngx_lf_json_capture(j, &tc->arguments);
        }

        return;
    }

    if (type != NGX_LF_JSON_STRING) {
        return;
    }

    if (strcmp(rest, "text") == 0) {
        ngx_lf_text(p, &rec->output, v, len);

    } else if (strcmp(rest, "thinking") == 0) {
        ngx_lf_text(p, &rec->reasoning, v, len);

    } else if (strcmp(rest, "id") == 0 || strcmp(rest, "name") == 0) {
        tc = ngx_lf_tool_slot(p, p->tool);

        if (tc) {
            ngx_lf_set(rest[0] == 'i' ? &tc->id : &tc->name, v, len);
            rec->content_seen = 1;
        }
    }
}
