
/*
 * Copyright (C) The nginx-langfuse authors
 */


#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include "ngx_lf_dialect.h"


#define NGX_LF_KEY_MAX          64


struct ngx_lf_parser_s {
    ngx_lf_record_t        *rec;
    ngx_lf_json_t           json;
    ngx_lf_sse_t            sse;

    /* request: the model parameters object under construction */
    yajl_gen                params;
    ngx_lf_buf_t            scratch;
    u_char                  key[NGX_LF_KEY_MAX];
    size_t                  key_len;
    unsigned                nparams;

    /* response: where inside choices and tool calls the walk is */
    int64_t                 choice;
    int64_t                 tool;

    unsigned                request:1;
    unsigned                use_sse:1;
    unsigned                failed:1;
    unsigned                param_capture:1;

    /* a cumulative stream's event has begun to restate the text */
    unsigned                event_text;
    unsigned                event_reasoning;

    uint64_t                bad_events;
    char                    error[160];
};


typedef struct {
    const char             *path;
    size_t                  offset;
} ngx_lf_usage_path_t;


static int ngx_lf_request_value(ngx_lf_json_t *j, ngx_lf_json_type_e type,
    const u_char *v, size_t len);
static int ngx_lf_request_param(ngx_lf_parser_t *p, ngx_lf_json_t *j,
    const char *key, ngx_lf_json_type_e type, const u_char *v, size_t len);
static int ngx_lf_response_value(ngx_lf_json_t *j, ngx_lf_json_type_e type,
    const u_char *v, size_t len);
static int ngx_lf_openai_value(ngx_lf_parser_t *p, ngx_lf_json_t *j,
    ngx_lf_json_type_e type, const u_char *v, size_t len);
static int ngx_lf_dashscope_value(ngx_lf_parser_t *p, ngx_lf_json_t *j,
    ngx_lf_json_type_e type, const u_char *v, size_t len);
static void ngx_lf_choice_value(ngx_lf_parser_t *p, ngx_lf_json_t *j,
    const char *rest, ngx_lf_json_type_e type, const u_char *v, size_t len);
static void ngx_lf_tool_value(ngx_lf_parser_t *p, const char *rest,
    ngx_lf_json_type_e type, const u_char *v, size_t len);
static void ngx_lf_text(ngx_lf_parser_t *p, ngx_lf_buf_t *buf,
    const u_char *v, size_t len);
static void ngx_lf_usage(ngx_lf_record_t *rec,
    const ngx_lf_usage_path_t *paths, const char *path,
    ngx_lf_json_type_e type, const u_char *v, size_t len);
static int ngx_lf_sse_event(void *ctx, const u_char *event,
    size_t event_len, const u_char *data, size_t data_len,
    int data_truncated);
static void ngx_lf_set(ngx_lf_buf_t *buf, const u_char *v, size_t len);


#define ngx_lf_usage_field(f)   offsetof(ngx_lf_usage_t, f)

static const ngx_lf_usage_path_t  ngx_lf_openai_usage[] = {
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


ngx_lf_dialect_e
ngx_lf_dialect_from_path(const u_char *path, size_t len)
{
    size_t       n;
    const char  *suffix;

    suffix = "/chat/completions";
    n = strlen(suffix);

    if (len >= n && memcmp(path + len - n, suffix, n) == 0) {
        return NGX_LF_DIALECT_OPENAI_CHAT;
    }

    suffix = "/services/aigc/text-generation/generation";
    n = strlen(suffix);

    if (len >= n && memcmp(path + len - n, suffix, n) == 0) {
        return NGX_LF_DIALECT_DASHSCOPE;
    }

    suffix = "/services/aigc/multimodal-generation/generation";
    n = strlen(suffix);

    if (len >= n && memcmp(path + len - n, suffix, n) == 0) {
        return NGX_LF_DIALECT_DASHSCOPE;
    }

    return NGX_LF_DIALECT_UNKNOWN;
}


ngx_lf_dialect_e
ngx_lf_dialect_from_name(const u_char *name, size_t len)
{
    if (len == 4 && memcmp(name, "auto", 4) == 0) {
        return NGX_LF_DIALECT_AUTO;
    }

    if (len == 6 && memcmp(name, "openai", 6) == 0) {
        return NGX_LF_DIALECT_OPENAI_CHAT;
    }

    if (len == 9 && memcmp(name, "dashscope", 9) == 0) {
        return NGX_LF_DIALECT_DASHSCOPE;
    }

    return NGX_LF_DIALECT_UNKNOWN;
}


const char *
ngx_lf_dialect_operation(ngx_lf_dialect_e dialect)
{
    switch (dialect) {

    case NGX_LF_DIALECT_OPENAI_CHAT:
        return "chat.completions";

    case NGX_LF_DIALECT_DASHSCOPE:
        return "dashscope.generation";

    default:
        return "llm.call";
    }
}


ngx_lf_parser_t *
ngx_lf_request_parser_create(ngx_lf_record_t *rec)
{
    ngx_lf_parser_t  *p;

    p = calloc(1, sizeof(ngx_lf_parser_t));
    if (p == NULL) {
        return NULL;
    }

    p->rec = rec;
    p->request = 1;

    ngx_lf_buf_init(&p->scratch, NGX_LF_PARAMS_MAX);

    p->params = yajl_gen_alloc(NULL);
    if (p->params == NULL) {
        free(p);
        return NULL;
    }

    if (yajl_gen_map_open(p->params) != yajl_gen_status_ok
        || ngx_lf_json_init(&p->json, ngx_lf_request_value, p,
                            2 * rec->input.max + 65536)
           != 0)
    {
        ngx_lf_parser_destroy(p);
        return NULL;
    }

    return p;
}


ngx_lf_parser_t *
ngx_lf_response_parser_create(ngx_lf_record_t *rec, int sse)
{
    ngx_lf_parser_t  *p;

    p = calloc(1, sizeof(ngx_lf_parser_t));
    if (p == NULL) {
        return NULL;
    }

    p->rec = rec;
    p->use_sse = sse ? 1 : 0;
    p->choice = 0;
    p->tool = 0;

    rec->response_sse = p->use_sse;

    ngx_lf_buf_init(&p->scratch, NGX_LF_PARAMS_MAX);

    if (ngx_lf_json_init(&p->json, ngx_lf_response_value, p,
                         2 * rec->output.max + 65536)
        != 0)
    {
        ngx_lf_parser_destroy(p);
        return NULL;
    }

    if (sse) {
        /* one event holds one chunk; the cap bounds a hostile one */
        ngx_lf_sse_init(&p->sse, 2 * rec->output.max + 65536,
                        ngx_lf_sse_event, p);
    }

    return p;
}


int
ngx_lf_parser_feed(ngx_lf_parser_t *p, const u_char *data, size_t len)
{
    ngx_lf_record_t  *rec;

    rec = p->rec;

    (void) ngx_lf_buf_append(p->request ? &rec->request_raw
                                        : &rec->response_raw, data, len);

    if (p->failed) {
        return -1;
    }

    if (p->use_sse) {
        if (ngx_lf_sse_feed(&p->sse, data, len) == -1) {
            p->failed = 1;
            strcpy(p->error, "out of memory");
            return -1;
        }

        return 0;
    }

    if (ngx_lf_json_feed(&p->json, data, len) != 0) {
        p->failed = 1;
        return -1;
    }

    return 0;
}


int
ngx_lf_parser_finish(ngx_lf_parser_t *p)
{
    size_t            len;
    ngx_lf_record_t  *rec;
    const u_char     *buf;

    rec = p->rec;

    if (p->use_sse) {
        if (!p->failed) {
            (void) ngx_lf_sse_finish(&p->sse);
        }

        if (p->sse.events == 0 && rec->response_raw.len) {
            rec->response_error = 1;
            strcpy(p->error, "no server-sent events in the stream");
            return -1;
        }

        if (p->bad_events && p->sse.events == p->bad_events) {
            rec->response_error = 1;
            strcpy(p->error, "no event of the stream is JSON");
            return -1;
        }

        return p->failed ? -1 : 0;
    }

    if (!p->failed && ngx_lf_json_finish(&p->json) != 0) {
        p->failed = 1;
    }

    if (p->failed) {
        if (!p->json.started && (p->request ? rec->request_raw.len
                                            : rec->response_raw.len) == 0)
        {
            /* no body at all is no parse error */
            return 0;
        }

        if (p->request) {
            rec->request_error = 1;

        } else {
            rec->response_error = 1;
        }

        return -1;
    }

    if (p->request) {
        rec->request_parsed = 1;

        if (p->nparams
            && yajl_gen_map_close(p->params) == yajl_gen_status_ok
            && yajl_gen_get_buf(p->params, &buf, &len)
               == yajl_gen_status_ok)
        {
            ngx_lf_set(&rec->params, buf, len);
        }
    }

    return 0;
}


void
ngx_lf_parser_destroy(ngx_lf_parser_t *p)
{
    if (p == NULL) {
        return;
    }

    ngx_lf_json_free(&p->json);

    if (p->use_sse) {
        ngx_lf_sse_free(&p->sse);
    }

    if (p->params) {
        yajl_gen_free(p->params);
    }

    ngx_lf_buf_free(&p->scratch);

    free(p);
}


const char *
ngx_lf_parser_error(ngx_lf_parser_t *p)
{
    if (p->error[0]) {
        return p->error;
    }

    if (p->json.error[0]) {
        return p->json.error;
    }

    return "";
}


/*
 * The request: model, stream flag, the conversation as input, tools,
 * and every other top-level member (or, for DashScope, every member of
 * "parameters") as a model parameter.
 */

static int
ngx_lf_request_value(ngx_lf_json_t *j, ngx_lf_json_type_e type,
    const u_char *v, size_t len)
{
    const char       *key;
    ngx_lf_parser_t  *p;
    ngx_lf_record_t  *rec;

    p = j->ctx;
    rec = p->rec;

    if (type == NGX_LF_JSON_MAP_END || type == NGX_LF_JSON_ARRAY_END) {

        if (p->param_capture) {
            /* a container parameter was captured: keep it as text */
            p->param_capture = 0;

            if (!p->scratch.truncated
                && yajl_gen_string(p->params, p->key, p->key_len)
                   == yajl_gen_status_ok
                && ngx_lf_json_gen_string(p->params, p->scratch.data,
                                          p->scratch.len)
                   == 0)
            {
                p->nparams++;
            }
        }

        return 0;
    }

    if (!j->path_ok || j->depth == 0) {
        return 0;
    }

    if (j->depth == 2 && rec->dialect == NGX_LF_DIALECT_DASHSCOPE) {
        key = ngx_lf_json_under(j, "parameters.");

        if (key == NULL) {
            return 0;
        }

        if (strcmp(key, "incremental_output") == 0) {
            if (type == NGX_LF_JSON_BOOL) {
                rec->incremental = len ? 1 : 0;
            }

        } else if (strcmp(key, "tools") == 0) {
            return ngx_lf_json_capture(j, &rec->tools) == 0 ? 0 : 1;
        }

        return ngx_lf_request_param(p, j, key, type, v, len);
    }

    if (j->depth != 1) {
        return 0;
    }

    key = j->path;

    if (strcmp(key, "model") == 0) {
        if (type == NGX_LF_JSON_STRING) {
            ngx_lf_set(&rec->request_model, v, len);
        }

        return 0;
    }

    if (strcmp(key, "stream") == 0) {
        if (type == NGX_LF_JSON_BOOL) {
            rec->request_stream = len ? 1 : 0;
        }

        return 0;
    }

    if (strcmp(key, "user") == 0) {
        if (type == NGX_LF_JSON_STRING) {
            ngx_lf_set(&rec->user, v, len);
        }

        return 0;
    }

    if (strcmp(key, "messages") == 0 || strcmp(key, "input") == 0
        || strcmp(key, "prompt") == 0)
    {
        return ngx_lf_json_capture(j, &rec->input) == 0 ? 0 : 1;
    }

    if (strcmp(key, "tools") == 0 || strcmp(key, "functions") == 0) {
        return ngx_lf_json_capture(j, &rec->tools) == 0 ? 0 : 1;
    }

    if (strcmp(key, "stream_options") == 0 || strcmp(key, "metadata") == 0
        || (strcmp(key, "parameters") == 0
            && rec->dialect == NGX_LF_DIALECT_DASHSCOPE))
    {
        return 0;
    }

    return ngx_lf_request_param(p, j, key, type, v, len);
}


static int
ngx_lf_request_param(ngx_lf_parser_t *p, ngx_lf_json_t *j,
    const char *key, ngx_lf_json_type_e type, const u_char *v, size_t len)
{
    size_t            n, glen;
    yajl_gen_status   st;
    const u_char     *gbuf;

    n = strlen(key);

    if (n > NGX_LF_KEY_MAX
        || yajl_gen_get_buf(p->params, &gbuf, &glen) != yajl_gen_status_ok
        || glen > NGX_LF_PARAMS_MAX)
    {
        return 0;
    }

    if (type == NGX_LF_JSON_MAP_START || type == NGX_LF_JSON_ARRAY_START) {
        memcpy(p->key, key, n);
        p->key_len = n;
        p->param_capture = 1;

        return ngx_lf_json_capture(j, &p->scratch) == 0 ? 0 : 1;
    }

    st = yajl_gen_string(p->params, (const u_char *) key, n);
    if (st != yajl_gen_status_ok) {
        return 0;
    }

    switch (type) {

    case NGX_LF_JSON_NULL:
        st = yajl_gen_null(p->params);
        break;

    case NGX_LF_JSON_BOOL:
        st = yajl_gen_bool(p->params, len);
        break;

    case NGX_LF_JSON_NUMBER:
        st = yajl_gen_number(p->params, (const char *) v, len);
        break;

    default: /* NGX_LF_JSON_STRING */
        st = ngx_lf_json_gen_string(p->params, v, len) == 0
             ? yajl_gen_status_ok : yajl_gen_invalid_string;
        break;
    }

    if (st == yajl_gen_status_ok) {
        p->nparams++;
    }

    return 0;
}


static int
ngx_lf_response_value(ngx_lf_json_t *j, ngx_lf_json_type_e type,
    const u_char *v, size_t len)
{
    ngx_lf_parser_t  *p;

    p = j->ctx;

    if (!j->path_ok) {
        return 0;
    }

    switch (p->rec->dialect) {

    case NGX_LF_DIALECT_DASHSCOPE:
        return ngx_lf_dashscope_value(p, j, type, v, len);

    default:
        return ngx_lf_openai_value(p, j, type, v, len);
    }
}


static int
ngx_lf_openai_value(ngx_lf_parser_t *p, ngx_lf_json_t *j,
    ngx_lf_json_type_e type, const u_char *v, size_t len)
{
    const char       *rest;
    ngx_lf_record_t  *rec;

    rec = p->rec;

    if (j->depth == 1 && type == NGX_LF_JSON_STRING) {

        if (ngx_lf_json_is(j, "id")) {
            ngx_lf_set(&rec->response_id, v, len);

        } else if (ngx_lf_json_is(j, "model")) {
            ngx_lf_set(&rec->model, v, len);

        } else if (ngx_lf_json_is(j, "error")) {
            ngx_lf_set(&rec->error, v, len);
            rec->error_event |= p->use_sse;
        }

        return 0;
    }

    if (ngx_lf_json_is(j, "error.message") && type == NGX_LF_JSON_STRING) {
        ngx_lf_set(&rec->error, v, len);
        rec->error_event |= p->use_sse;
        return 0;
    }

    rest = ngx_lf_json_under(j, "choices[]");

    if (rest) {
        ngx_lf_choice_value(p, j, rest, type, v, len);
        return 0;
    }

    ngx_lf_usage(rec, ngx_lf_openai_usage, j->path, type, v, len);

    if (ngx_lf_json_under(j, "usage")) {
        rec->usage.input_has_cached = 1;
        rec->usage.output_has_reasoning = 1;
    }

    return 0;
}


static int
ngx_lf_dashscope_value(ngx_lf_parser_t *p, ngx_lf_json_t *j,
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
        ngx_lf_text(p, &rec->output, v, len);
        return 0;
    }

    if (ngx_lf_json_is(j, "output.finish_reason")
        && type == NGX_LF_JSON_STRING)
    {
        if (!(len == 4 && memcmp(v, "null", 4) == 0)) {
            ngx_lf_set(&rec->finish_reason, v, len);
            rec->stream_done = 1;
        }

        return 0;
    }

    rest = ngx_lf_json_under(j, "output.choices[]");

    if (rest) {
        ngx_lf_choice_value(p, j, rest, type, v, len);
        return 0;
    }

    ngx_lf_usage(rec, ngx_lf_dashscope_usage, j->path, type, v, len);

    if (ngx_lf_json_under(j, "usage")) {
        rec->usage.input_has_cached = 1;
        rec->usage.output_has_reasoning = 1;
    }

    return 0;
}


/* inside one element of "choices": rest is what follows "choices[]" */

static void
ngx_lf_choice_value(ngx_lf_parser_t *p, ngx_lf_json_t *j,
    const char *rest, ngx_lf_json_type_e type, const u_char *v, size_t len)
{
    int64_t           n;
    ngx_lf_record_t  *rec;

    rec = p->rec;

    if (rest[0] == '\0') {
        if (type == NGX_LF_JSON_MAP_START) {
            p->choice = ngx_lf_json_index(j, 0);
        }

        return;
    }

    rest++;

    if (strcmp(rest, "index") == 0) {
        if (type == NGX_LF_JSON_NUMBER && ngx_lf_json_int(v, len, &n) == 0) {
            p->choice = n;
        }

        return;
    }

    /* only the first choice is traced; n > 1 is rare at gateways */
    if (p->choice != 0) {
        return;
    }

    if (strcmp(rest, "finish_reason") == 0) {
        if (type == NGX_LF_JSON_STRING
            && !(len == 4 && memcmp(v, "null", 4) == 0))
        {
            ngx_lf_set(&rec->finish_reason, v, len);

            if (rec->dialect == NGX_LF_DIALECT_DASHSCOPE) {
                rec->stream_done = 1;
            }
        }

        return;
    }

    if (strncmp(rest, "message.", 8) == 0) {
        rest += 8;

    } else if (strncmp(rest, "delta.", 6) == 0) {
        rest += 6;

    } else {
        return;
    }

    if (strncmp(rest, "tool_calls[]", 12) == 0) {
        if (rest[12] == '\0') {
            if (type == NGX_LF_JSON_MAP_START) {
                p->tool = ngx_lf_json_index(j, 1);
            }

            return;
        }

        ngx_lf_tool_value(p, rest + 13, type, v, len);
        return;
    }

    if (type != NGX_LF_JSON_STRING) {
        return;
    }

    if (strcmp(rest, "content") == 0 || strcmp(rest, "content[].text") == 0)
    {
        ngx_lf_text(p, &rec->output, v, len);

    } else if (strcmp(rest, "reasoning_content") == 0
               || strcmp(rest, "reasoning") == 0)
    {
        ngx_lf_text(p, &rec->reasoning, v, len);
    }
}


static void
ngx_lf_tool_value(ngx_lf_parser_t *p, const char *rest,
    ngx_lf_json_type_e type, const u_char *v, size_t len)
{
    int64_t              n;
    ngx_lf_record_t     *rec;
    ngx_lf_tool_call_t  *tc;

    rec = p->rec;

    if (strcmp(rest, "index") == 0) {
        if (type == NGX_LF_JSON_NUMBER && ngx_lf_json_int(v, len, &n) == 0) {
            p->tool = n;
        }

        return;
    }

    if (type != NGX_LF_JSON_STRING || p->tool < 0
        || p->tool >= NGX_LF_MAX_TOOL_CALLS)
    {
        return;
    }

    tc = &rec->tool_calls[p->tool];

    if ((unsigned) p->tool >= rec->ntool_calls) {
        rec->ntool_calls = (unsigned) p->tool + 1;
    }

    if (strcmp(rest, "id") == 0) {
        ngx_lf_set(&tc->id, v, len);

    } else if (strcmp(rest, "function.name") == 0) {
        ngx_lf_set(&tc->name, v, len);
        rec->content_seen = 1;

    } else if (strcmp(rest, "function.arguments") == 0) {
        (void) ngx_lf_buf_append(&tc->arguments, v, len);
        rec->content_seen |= len ? 1 : 0;
    }
}


/*
 * Output text.  A DashScope stream without incremental_output repeats
 * the whole text so far in every event: the event's text replaces the
 * text before it instead of adding to it.
 */

static void
ngx_lf_text(ngx_lf_parser_t *p, ngx_lf_buf_t *buf, const u_char *v,
    size_t len)
{
    unsigned  *event_seen;

    if (len) {
        p->rec->content_seen = 1;
    }

    if (p->use_sse && p->rec->dialect == NGX_LF_DIALECT_DASHSCOPE
        && p->rec->incremental != 1)
    {
        event_seen = (buf == &p->rec->output) ? &p->event_text
                                              : &p->event_reasoning;

        if (!*event_seen) {
            ngx_lf_buf_reset(buf);
            buf->truncated = 0;
            *event_seen = 1;
        }
    }

    (void) ngx_lf_buf_append(buf, v, len);
}


static void
ngx_lf_usage(ngx_lf_record_t *rec, const ngx_lf_usage_path_t *paths,
    const char *path, ngx_lf_json_type_e type, const u_char *v, size_t len)
{
    int64_t  n;

    if (type != NGX_LF_JSON_NUMBER || ngx_lf_json_int(v, len, &n) != 0
        || n < 0)
    {
        return;
    }

    for ( /* void */ ; paths->path; paths++) {
        if (strcmp(paths->path, path) == 0) {
            /* the latest value wins: streams restate their counts */
            *(int64_t *) ((u_char *) &rec->usage + paths->offset) = n;
            return;
        }
    }
}


static int
ngx_lf_sse_event(void *ctx, const u_char *event, size_t event_len,
    const u_char *data, size_t data_len, int data_truncated)
{
    size_t            i;
    ngx_lf_parser_t  *p;
    ngx_lf_record_t  *rec;

    p = ctx;
    rec = p->rec;

    p->event_text = 0;
    p->event_reasoning = 0;
    p->choice = 0;
    p->tool = 0;

    if (event_len == 5 && memcmp(event, "error", 5) == 0) {
        rec->error_event = 1;
    }

    if (data_len == 6 && memcmp(data, "[DONE]", 6) == 0) {
        rec->stream_done = 1;
        return 0;
    }

    for (i = 0; i < data_len; i++) {
        if (data[i] != ' ' && data[i] != '\t' && data[i] != '\n'
            && data[i] != '\r')
        {
            break;
        }
    }

    if (data_truncated || i == data_len
        || (data[i] != '{' && data[i] != '['))
    {
        p->bad_events++;
        return 0;
    }

    if (ngx_lf_json_reset(&p->json) != 0) {
        strcpy(p->error, "out of memory");
        return 1;
    }

    if (ngx_lf_json_feed(&p->json, data + i, data_len - i) != 0
        || ngx_lf_json_finish(&p->json) != 0)
    {
        p->bad_events++;
    }

    return 0;
}


static void
ngx_lf_set(ngx_lf_buf_t *buf, const u_char *v, size_t len)
{
    ngx_lf_buf_reset(buf);
    buf->truncated = 0;
    (void) ngx_lf_buf_append(buf, v, len);
}
