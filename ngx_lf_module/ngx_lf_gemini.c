
/*
 * Copyright (C) The nginx-langfuse authors
 */


#include <stddef.h>
#include <string.h>

#include "ngx_lf_parser.h"


/*
 * Google Gemini generateContent and streamGenerateContent: a stream is
 * either SSE (alt=sse) or one JSON array of responses.  Every response
 * restates the usage so far; the prompt count includes cached tokens,
 * the candidates count excludes thoughts.  The model is in the URL.
 */


static int ngx_lf_gemini(ngx_lf_parser_t *p, ngx_lf_json_t *j,
    ngx_lf_json_type_e type, const u_char *v, size_t len);


static const ngx_lf_key_t  ngx_lf_gemini_keys[] = {
    { "contents", NGX_LF_KEY_INPUT },
    { "systemInstruction", NGX_LF_KEY_SYSTEM },
    { "system_instruction", NGX_LF_KEY_SYSTEM },
    { "tools", NGX_LF_KEY_TOOLS },
    { "generationConfig", NGX_LF_KEY_PARAMS },
    { "generation_config", NGX_LF_KEY_PARAMS },
    { "safetySettings", NGX_LF_KEY_IGNORE },
    { "toolConfig", NGX_LF_KEY_IGNORE },
    { NULL, NGX_LF_KEY_PARAM }
};


static const ngx_lf_usage_path_t  ngx_lf_gemini_usage[] = {
    { "usageMetadata.promptTokenCount", ngx_lf_usage_field(input) },
    { "usageMetadata.candidatesTokenCount", ngx_lf_usage_field(output) },
    { "usageMetadata.totalTokenCount", ngx_lf_usage_field(total) },
    { "usageMetadata.cachedContentTokenCount", ngx_lf_usage_field(cached) },
    { "usageMetadata.thoughtsTokenCount", ngx_lf_usage_field(reasoning) },
    { NULL, 0 }
};


const ngx_lf_dialect_t  ngx_lf_gemini_dialect = {
    "gemini", "generate_content", ngx_lf_gemini_keys, ngx_lf_gemini
};


static int
ngx_lf_gemini(ngx_lf_parser_t *p, ngx_lf_json_t *j,
    ngx_lf_json_type_e type, const u_char *v, size_t len)
{
    int64_t              part;
    const char          *path, *rest;
    ngx_lf_record_t     *rec;
    ngx_lf_tool_call_t  *tc;

    rec = p->rec;
    path = j->path;

    /* the array form of a stream: every element is one response */
    if (strncmp(path, "[].", 3) == 0) {
        path += 3;
    }

    if (ngx_lf_usage(rec, ngx_lf_gemini_usage, path, type, v, len)) {
        rec->usage.input_has_cached = 1;
        return 0;
    }

    if (strcmp(path, "error.message") == 0) {
        if (type == NGX_LF_JSON_STRING) {
            ngx_lf_set(&rec->error, v, len);
            rec->error_event |= p->use_sse || j->path != path;
        }

        return 0;
    }

    if (type == NGX_LF_JSON_STRING) {
        if (strcmp(path, "modelVersion") == 0) {
            ngx_lf_set(&rec->model, v, len);
            return 0;
        }

        if (strcmp(path, "responseId") == 0) {
            ngx_lf_set(&rec->response_id, v, len);
            return 0;
        }
    }

    if (strncmp(path, "candidates[]", 12) != 0
        || ngx_lf_json_index(j, j->path != path ? 1 : 0) != 0)
    {
        return 0;
    }

    rest = path + 12;

    if (strcmp(rest, ".finishReason") == 0) {
        if (type == NGX_LF_JSON_STRING) {
            ngx_lf_set(&rec->finish_reason, v, len);
        }

        return 0;
    }

    if (strncmp(rest, ".content.parts[]", 16) != 0) {
        return 0;
    }

    rest += 16;

    /*
     * a part's text may come before its "thought" flag: it waits
     * until the part ends
     */

    if (rest[0] == '\0') {
        if (type == NGX_LF_JSON_MAP_START) {
            ngx_lf_buf_reset(&p->part);
            p->part_thought = 0;
            p->part_open = 1;

        } else if (type == NGX_LF_JSON_MAP_END && p->part_open) {
            p->part_open = 0;
            ngx_lf_text(p, p->part_thought ? &rec->reasoning : &rec->output,
                        p->part.data, p->part.len);
        }

        return 0;
    }

    if (strcmp(rest, ".text") == 0) {
        if (type == NGX_LF_JSON_STRING) {
            (void) ngx_lf_buf_append(&p->part, v, len);
        }

        return 0;
    }

    if (strcmp(rest, ".thought") == 0) {
        p->part_thought = (type == NGX_LF_JSON_BOOL && len);
        return 0;
    }

    if (strncmp(rest, ".functionCall.", 14) != 0) {
        return 0;
    }

    rest += 14;

    /* every function call part is a call of its own */
    part = ngx_lf_json_index(j, j->path != path ? 2 : 1);

    if (j->path != path) {
        part |= ngx_lf_json_index(j, 0) << 32;

    } else if (p->use_sse) {
        part |= (int64_t) p->sse.events << 32;
    }

    tc = ngx_lf_tool_slot(p, part);

    if (tc == NULL) {
        return 0;
    }

    if (strcmp(rest, "name") == 0 && type == NGX_LF_JSON_STRING) {
        ngx_lf_set(&tc->name, v, len);
        rec->content_seen = 1;

    } else if (strcmp(rest, "id") == 0 && type == NGX_LF_JSON_STRING) {
        ngx_lf_set(&tc->id, v, len);

    } else if (strcmp(rest, "args") == 0
               && (type == NGX_LF_JSON_MAP_START
                   || type == NGX_LF_JSON_ARRAY_START))
    {
        (void) ngx_lf_json_capture(j, &tc->arguments);
    }

    return 0;
}
