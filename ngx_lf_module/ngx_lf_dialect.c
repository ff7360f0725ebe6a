
/*
 * Copyright (C) The nginx-langfuse authors
 */


#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include "ngx_lf_parser.h"


/*
 * The parser: one body, JSON or a stream of JSON events, walked once.
 * The request side is shared by every dialect through its key table;
 * the response side is the dialect's own handler.
 */


static const ngx_lf_dialect_t *ngx_lf_dialect(ngx_lf_record_t *rec);
static int ngx_lf_request_value(ngx_lf_json_t *j, ngx_lf_json_type_e type,
    const u_char *v, size_t len);
static int ngx_lf_request_param(ngx_lf_parser_t *p, ngx_lf_json_t *j,
    const char *key, ngx_lf_json_type_e type, const u_char *v, size_t len);
static int ngx_lf_param_set(ngx_lf_parser_t *p, ngx_lf_param_t *param,
    ngx_lf_json_type_e type, const u_char *v, size_t len);
static void ngx_lf_params_write(ngx_lf_parser_t *p);
static int ngx_lf_response_value(ngx_lf_json_t *j, ngx_lf_json_type_e type,
    const u_char *v, size_t len);
static ngx_lf_dialect_e ngx_lf_sniff(ngx_lf_json_t *j,
    ngx_lf_json_type_e type, const u_char *v, size_t len);
static int ngx_lf_sse_event(void *ctx, const u_char *event,
    size_t event_len, const u_char *data, size_t data_len,
    int data_truncated);
static int ngx_lf_sse_event_cut(const u_char *data, size_t len);
static void ngx_lf_tool_value(ngx_lf_parser_t *p, const char *rest,
    ngx_lf_json_type_e type, const u_char *v, size_t len);
static void ngx_lf_tool_element(ngx_lf_parser_t *p, ngx_lf_json_t *j,
    ngx_lf_json_type_e type);
static int ngx_lf_ends_with(const u_char *p, size_t len, const char *s);


static const ngx_lf_key_t  ngx_lf_generic_keys[] = {
    { "messages", NGX_LF_KEY_INPUT },
    { "input", NGX_LF_KEY_INPUT },
    { "prompt", NGX_LF_KEY_INPUT },
    { "contents", NGX_LF_KEY_INPUT },
    { "system", NGX_LF_KEY_SYSTEM },
    { "instructions", NGX_LF_KEY_SYSTEM },
    { "systemInstruction", NGX_LF_KEY_SYSTEM },
    { "tools", NGX_LF_KEY_TOOLS },
    { "functions", NGX_LF_KEY_TOOLS },
    { "generationConfig", NGX_LF_KEY_PARAMS },
    { "parameters", NGX_LF_KEY_PARAMS },
    { "stream_options", NGX_LF_KEY_IGNORE },
    { "metadata", NGX_LF_KEY_IGNORE },
    { NULL, NGX_LF_KEY_PARAM }
};


static const ngx_lf_dialect_t  ngx_lf_unknown_dialect = {
    "auto", "llm.call", ngx_lf_generic_keys, NULL
};


/* indexed by ngx_lf_dialect_e */
static const ngx_lf_dialect_t  *ngx_lf_dialects[] = {
    &ngx_lf_unknown_dialect,
    &ngx_lf_openai_chat_dialect,
    &ngx_lf_openai_responses_dialect,
    &ngx_lf_openai_embeddings_dialect,
    &ngx_lf_dashscope_dialect,
    &ngx_lf_anthropic_dialect,
    &ngx_lf_gemini_dialect,
    &ngx_lf_unknown_dialect
};


ngx_lf_dialect_e
ngx_lf_dialect_from_path(const u_char *path, size_t len)
{
    const u_char  *colon;

    if (ngx_lf_ends_with(path, len, "/chat/completions")) {
        return NGX_LF_DIALECT_OPENAI_CHAT;
    }

    if (ngx_lf_ends_with(path, len, "/responses")) {
        return NGX_LF_DIALECT_OPENAI_RESPONSES;
    }

    if (ngx_lf_ends_with(path, len, "/embeddings")) {
        return NGX_LF_DIALECT_OPENAI_EMBEDDINGS;
    }

    if (ngx_lf_ends_with(path, len, "/v1/messages")) {
        return NGX_LF_DIALECT_ANTHROPIC;
    }

    if (ngx_lf_ends_with(path, len, "/aigc/text-generation/generation")
        || ngx_lf_ends_with(path, len,
                            "/aigc/multimodal-generation/generation"))
    {
        return NGX_LF_DIALECT_DASHSCOPE;
    }

    colon = memchr(path, ':', len);

    if (colon
        && (ngx_lf_ends_with(path, len, ":generateContent")
            || ngx_lf_ends_with(path, len, ":streamGenerateContent")))
    {
        return NGX_LF_DIALECT_GEMINI;
    }

    return NGX_LF_DIALECT_UNKNOWN;
}


size_t
ngx_lf_dialect_path_model(const u_char *path, size_t len,
    const u_char **model)
{
    size_t         i, start;

    for (i = 0; i + 7 <= len; i++) {
        if (memcmp(path + i, "models/", 7) != 0) {
            continue;
        }

        start = i + 7;

        for (i = start; i < len && path[i] != ':' && path[i] != '/'; i++) {
            /* void */
        }

        *model = path + start;
        return i - start;
    }

    return 0;
}


ngx_lf_dialect_e
ngx_lf_dialect_from_name(const u_char *name, size_t len)
{
    size_t  i;

    if (len == 6 && memcmp(name, "openai", 6) == 0) {
        return NGX_LF_DIALECT_OPENAI_CHAT;
    }

    for (i = 0; i < NGX_LF_DIALECT_UNKNOWN; i++) {
        if (strlen(ngx_lf_dialects[i]->name) == len
            && memcmp(ngx_lf_dialects[i]->name, name, len) == 0)
        {
            return (ngx_lf_dialect_e) i;
        }
    }

    return NGX_LF_DIALECT_UNKNOWN;
}


const char *
ngx_lf_dialect_operation(ngx_lf_dialect_e dialect)
{
    return ngx_lf_dialects[dialect]->operation;
}


static const ngx_lf_dialect_t *
ngx_lf_dialect(ngx_lf_record_t *rec)
{
    if (rec->dialect > NGX_LF_DIALECT_UNKNOWN) {
        return &ngx_lf_unknown_dialect;
    }

    return ngx_lf_dialects[rec->dialect];
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

    p->params = calloc(NGX_LF_PARAMS_KEYS, sizeof(ngx_lf_param_t));
    p->gen = yajl_gen_alloc(NULL);

    if (p->params == NULL || p->gen == NULL
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

    rec->response_sse = p->use_sse;

    ngx_lf_buf_init(&p->scratch, NGX_LF_PARAMS_MAX);
    ngx_lf_buf_init(&p->part, rec->output.max);
    ngx_lf_buf_init(&p->tool_id, 256);
    ngx_lf_buf_init(&p->tool_name, 256);
    ngx_lf_buf_init(&p->tool_args, rec->output.max);

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
    ngx_lf_record_t  *rec;

    rec = p->rec;

    if (p->use_sse) {
        if (!p->failed) {
            p->finishing = 1;
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
        ngx_lf_params_write(p);
    }

    return 0;
}


void
ngx_lf_parser_destroy(ngx_lf_parser_t *p)
{
    unsigned    i;

    if (p == NULL) {
        return;
    }

    ngx_lf_json_free(&p->json);

    if (p->use_sse) {
        ngx_lf_sse_free(&p->sse);
    }

    if (p->params) {
        for (i = 0; i < p->nparams; i++) {
            ngx_lf_buf_free(&p->params[i].value);
        }

        free(p->params);
    }

    if (p->gen) {
        yajl_gen_free(p->gen);
    }

    ngx_lf_buf_free(&p->scratch);
    ngx_lf_buf_free(&p->part);
    ngx_lf_buf_free(&p->tool_id);
    ngx_lf_buf_free(&p->tool_name);
    ngx_lf_buf_free(&p->tool_args);

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
 * The request: model, stream flag and user; the conversation, the
 * system prompt and the tools as captured JSON; every other member
 * (and each member of a parameters object) as a model parameter.
 */

static int
ngx_lf_request_value(ngx_lf_json_t *j, ngx_lf_json_type_e type,
    const u_char *v, size_t len)
{
    const char          *key;
    ngx_lf_buf_t        *to;
    ngx_lf_parser_t     *p;
    ngx_lf_record_t     *rec;
    const ngx_lf_key_t  *k;

    p = j->ctx;
    rec = p->rec;

    if (type == NGX_LF_JSON_MAP_END || type == NGX_LF_JSON_ARRAY_END) {

        if (p->param) {
            /* a container parameter was captured: it is kept as text */
            if (!p->scratch.truncated) {
                (void) ngx_lf_param_set(p, p->param, NGX_LF_JSON_STRING,
                                        p->scratch.data, p->scratch.len);
            }

            p->param = NULL;
        }

        return 0;
    }

    if (!j->path_ok || j->depth == 0 || j->depth > 2 || j->is_array[0]) {
        /* members of a request object only */
        return 0;
    }

    if (j->depth == 2) {
        /* inside a parameters object, or Anthropic's metadata */

        if (ngx_lf_json_is(j, "metadata.user_id")) {
            if (type == NGX_LF_JSON_STRING && rec->user.len == 0) {
                ngx_lf_set(&rec->user, v, len);
            }

            return 0;
        }

        key = strchr(j->path, '.');

        if (key == NULL || p->params_key_len != (size_t) (key - j->path)
            || memcmp(p->params_key, j->path, p->params_key_len) != 0)
        {
            return 0;
        }

        key++;

        if (strcmp(key, "incremental_output") == 0) {
            if (type == NGX_LF_JSON_BOOL) {
                rec->incremental = len ? 1 : 0;
            }

        } else if (strcmp(key, "tools") == 0) {
            return ngx_lf_json_capture(j, &rec->tools) == 0 ? 0 : 1;
        }

        return ngx_lf_request_param(p, j, key, type, v, len);
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

    for (k = ngx_lf_dialect(rec)->keys; k->key; k++) {
        if (strcmp(k->key, key) == 0) {
            break;
        }
    }

    to = NULL;

    switch (k->role) {

    case NGX_LF_KEY_INPUT:
        to = &rec->input;
        break;

    case NGX_LF_KEY_SYSTEM:
        to = &rec->system;
        break;

    case NGX_LF_KEY_TOOLS:
        to = &rec->tools;
        break;

    case NGX_LF_KEY_PARAMS:
        /* remember which member holds the parameters */
        if (type == NGX_LF_JSON_MAP_START && strlen(key) < NGX_LF_KEY_MAX)
        {
            p->params_key_len = strlen(key);
            memcpy(p->params_key, key, p->params_key_len);
        }

        return 0;

    case NGX_LF_KEY_IGNORE:
        return 0;

    default: /* NGX_LF_KEY_PARAM */
        return ngx_lf_request_param(p, j, key, type, v, len);
    }

    return ngx_lf_json_capture(j, to) == 0 ? 0 : 1;
}


static int
ngx_lf_request_param(ngx_lf_parser_t *p, ngx_lf_json_t *j,
    const char *key, ngx_lf_json_type_e type, const u_char *v, size_t len)
{
    size_t           n;
    unsigned         i;
    ngx_lf_param_t  *param;

    n = strlen(key);

    if (n >= NGX_LF_KEY_MAX) {
        return 0;
    }

    for (i = 0; i < p->nparams; i++) {
        if (p->params[i].key_len == n && memcmp(p->params[i].key, key, n) == 0)
        {
            break;
        }
    }

    if (i == NGX_LF_PARAMS_KEYS) {
        return 0;
    }

    param = &p->params[i];

    if (i == p->nparams) {
        p->nparams++;
        memcpy(param->key, key, n);
        param->key_len = n;
        ngx_lf_buf_init(&param->value, NGX_LF_PARAMS_MAX);
    }

    if (type == NGX_LF_JSON_MAP_START || type == NGX_LF_JSON_ARRAY_START) {
        p->param = param;
        return ngx_lf_json_capture(j, &p->scratch) == 0 ? 0 : 1;
    }

    (void) ngx_lf_param_set(p, param, type, v, len);

    return 0;
}


/* the value as JSON text, within the budget of all parameters */

static int
ngx_lf_param_set(ngx_lf_parser_t *p, ngx_lf_param_t *param,
    ngx_lf_json_type_e type, const u_char *v, size_t len)
{
    size_t           glen;
    const u_char    *gbuf;
    yajl_gen_status  st;

    yajl_gen_reset(p->gen, NULL);
    yajl_gen_clear(p->gen);

    switch (type) {

    case NGX_LF_JSON_NULL:
        st = yajl_gen_null(p->gen);
        break;

    case NGX_LF_JSON_BOOL:
        st = yajl_gen_bool(p->gen, len);
        break;

    case NGX_LF_JSON_NUMBER:
        st = yajl_gen_number(p->gen, (const char *) v, len);
        break;

    default: /* NGX_LF_JSON_STRING */
        st = ngx_lf_json_gen_string(p->gen, v, len) == 0
             ? yajl_gen_status_ok : yajl_gen_invalid_string;
        break;
    }

    if (st != yajl_gen_status_ok
        || yajl_gen_get_buf(p->gen, &gbuf, &glen) != yajl_gen_status_ok
        || p->params_size - param->value.len + glen > NGX_LF_PARAMS_MAX)
    {
        return -1;
    }

    p->params_size = p->params_size - param->value.len + glen;
    ngx_lf_set(&param->value, gbuf, glen);

    return 0;
}


static void
ngx_lf_params_write(ngx_lf_parser_t *p)
{
    size_t           len;
    unsigned         i, n;
    const u_char    *buf;
    ngx_lf_param_t  *param;

    yajl_gen_reset(p->gen, NULL);
    yajl_gen_clear(p->gen);

    if (yajl_gen_map_open(p->gen) != yajl_gen_status_ok) {
        return;
    }

    n = 0;

    for (i = 0; i < p->nparams; i++) {
        param = &p->params[i];

        if (param->value.len == 0) {
            /* over the budget, or a container cut at its cap */
            continue;
        }

        if (ngx_lf_json_gen_string(p->gen, param->key, param->key_len) != 0
            || ngx_lf_json_replay(p->gen, param->value.data,
                                  param->value.len)
               != 0)
        {
            return;
        }

        n++;
    }

    if (n && yajl_gen_map_close(p->gen) == yajl_gen_status_ok
        && yajl_gen_get_buf(p->gen, &buf, &len) == yajl_gen_status_ok)
    {
        ngx_lf_set(&p->rec->params, buf, len);
    }
}


static int
ngx_lf_response_value(ngx_lf_json_t *j, ngx_lf_json_type_e type,
    const u_char *v, size_t len)
{
    ngx_lf_dialect_e        d;
    ngx_lf_parser_t        *p;
    const ngx_lf_dialect_t *dialect;

    p = j->ctx;

    if (!j->path_ok) {
        return 0;
    }

    dialect = ngx_lf_dialect(p->rec);

    if (!p->rec->shape_known && j->depth <= 2) {
        /*
         * the body's shape confirms the dialect the path told, or tells
         * it when the path did not; a body of another known shape wins
         */
        d = ngx_lf_sniff(j, type, v, len);

        if (d != NGX_LF_DIALECT_UNKNOWN) {
            p->rec->shape_known = 1;
            p->rec->dialect = d;
            dialect = ngx_lf_dialects[d];
        }
    }

    if (dialect->response == NULL) {
        return 0;
    }

    return dialect->response(p, j, type, v, len);
}


static ngx_lf_dialect_e
ngx_lf_sniff(ngx_lf_json_t *j, ngx_lf_json_type_e type, const u_char *v,
    size_t len)
{
    const char  *key;

    key = j->path;

    if (strncmp(key, "[].", 3) == 0) {
        key += 3;
    }

    if (strchr(key, '.') || strchr(key, '[')) {
        return NGX_LF_DIALECT_UNKNOWN;
    }

    if (strcmp(key, "choices") == 0) {
        return NGX_LF_DIALECT_OPENAI_CHAT;
    }

    if (strcmp(key, "candidates") == 0 || strcmp(key, "usageMetadata") == 0)
    {
        return NGX_LF_DIALECT_GEMINI;
    }

    if (strcmp(key, "output") == 0) {
        return type == NGX_LF_JSON_MAP_START ? NGX_LF_DIALECT_DASHSCOPE
                                             : NGX_LF_DIALECT_OPENAI_RESPONSES;
    }

    if (strcmp(key, "stop_reason") == 0 || strcmp(key, "content") == 0
        || strcmp(key, "delta") == 0 || strcmp(key, "content_block") == 0)
    {
        return NGX_LF_DIALECT_ANTHROPIC;
    }

    if (strcmp(key, "type") == 0 && type == NGX_LF_JSON_STRING) {
        if (len > 9 && memcmp(v, "response.", 9) == 0) {
            return NGX_LF_DIALECT_OPENAI_RESPONSES;
        }

        if (len >= 7 && (memcmp(v, "message", 7) == 0
                         || (len > 14 && memcmp(v, "content_block_", 14)
                                         == 0)))
        {
            return NGX_LF_DIALECT_ANTHROPIC;
        }
    }

    return NGX_LF_DIALECT_UNKNOWN;
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

    p->event_len = event_len < NGX_LF_EVENT_MAX ? event_len : 0;
    memcpy(p->event, event, p->event_len);

    if (ngx_lf_event_is(p, "error")) {
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

    if (p->finishing && ngx_lf_sse_event_cut(data + i, data_len - i)) {
        /* the stream ended inside this event: none of it counts */
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


/* an event without its blank line is whole only if its JSON is */

static int
ngx_lf_sse_event_cut(const u_char *data, size_t len)
{
    int          cut;
    yajl_handle  h;

    h = yajl_alloc(NULL, NULL, NULL);
    if (h == NULL) {
        return 1;
    }

    cut = yajl_parse(h, data, len) != yajl_status_ok
          || yajl_complete_parse(h) != yajl_status_ok;

    yajl_free(h);

    return cut;
}


int
ngx_lf_event_is(ngx_lf_parser_t *p, const char *name)
{
    return p->event_len == strlen(name)
           && memcmp(p->event, name, p->event_len) == 0;
}


void
ngx_lf_set(ngx_lf_buf_t *buf, const u_char *v, size_t len)
{
    ngx_lf_buf_reset(buf);
    (void) ngx_lf_buf_append(buf, v, len);
}


/*
 * Output text.  A DashScope stream without incremental_output repeats
 * the whole text so far in every event: the event's text replaces the
 * text before it instead of adding to it.
 */

void
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
            *event_seen = 1;
        }
    }

    (void) ngx_lf_buf_append(buf, v, len);
}


int
ngx_lf_usage(ngx_lf_record_t *rec, const ngx_lf_usage_path_t *paths,
    const char *path, ngx_lf_json_type_e type, const u_char *v, size_t len)
{
    int64_t  n;

    for ( /* void */ ; paths->path; paths++) {
        if (strcmp(paths->path, path) != 0) {
            continue;
        }

        if (type == NGX_LF_JSON_NUMBER && ngx_lf_json_int(v, len, &n) == 0
            && n >= 0)
        {
            /* the latest value wins: streams restate their counts */
            *(int64_t *) ((u_char *) &rec->usage + paths->offset) = n;
        }

        return 1;
    }

    return 0;
}


ngx_lf_tool_call_t *
ngx_lf_tool_slot(ngx_lf_parser_t *p, int64_t key)
{
    unsigned          i;
    ngx_lf_record_t  *rec;

    rec = p->rec;

    for (i = 0; i < rec->ntool_calls; i++) {
        if (p->tool_keys[i] == key) {
            return &rec->tool_calls[i];
        }
    }

    if (rec->ntool_calls == NGX_LF_MAX_TOOL_CALLS) {
        rec->tool_calls_dropped = 1;
        return NULL;
    }

    p->tool_keys[rec->ntool_calls] = key;

    return &rec->tool_calls[rec->ntool_calls++];
}


/* a member of an OpenAI-shaped "tool_calls[]" element */

static void
ngx_lf_tool_value(ngx_lf_parser_t *p, const char *rest,
    ngx_lf_json_type_e type, const u_char *v, size_t len)
{
    int64_t  n;

    if (strcmp(rest, "index") == 0) {
        if (type == NGX_LF_JSON_NUMBER && ngx_lf_json_int(v, len, &n) == 0) {
            p->tool = n;
        }

        return;
    }

    if (type != NGX_LF_JSON_STRING) {
        return;
    }

    if (strcmp(rest, "id") == 0) {
        ngx_lf_set(&p->tool_id, v, len);
        p->tool_has_id = 1;

    } else if (strcmp(rest, "function.name") == 0) {
        ngx_lf_set(&p->tool_name, v, len);
        p->tool_has_name = 1;
        p->rec->content_seen = 1;

    } else if (strcmp(rest, "function.arguments") == 0) {
        (void) ngx_lf_buf_append(&p->tool_args, v, len);
        p->rec->content_seen |= len ? 1 : 0;
    }
}


/* a tool call element begins, or ends and goes to its call's slot */

static void
ngx_lf_tool_element(ngx_lf_parser_t *p, ngx_lf_json_t *j,
    ngx_lf_json_type_e type)
{
    ngx_lf_tool_call_t  *tc;

    if (type == NGX_LF_JSON_MAP_START) {
        p->tool = ngx_lf_json_index(j, 1);
        p->tool_has_id = 0;
        p->tool_has_name = 0;
        ngx_lf_buf_reset(&p->tool_id);
        ngx_lf_buf_reset(&p->tool_name);
        ngx_lf_buf_reset(&p->tool_args);
        return;
    }

    if (type != NGX_LF_JSON_MAP_END) {
        return;
    }

    tc = ngx_lf_tool_slot(p, p->tool);
    if (tc == NULL) {
        return;
    }

    if (p->tool_has_id) {
        ngx_lf_set(&tc->id, p->tool_id.data, p->tool_id.len);
    }

    if (p->tool_has_name) {
        ngx_lf_set(&tc->name, p->tool_name.data, p->tool_name.len);
    }

    (void) ngx_lf_buf_append(&tc->arguments, p->tool_args.data,
                             p->tool_args.len);
}


void
ngx_lf_choice_value(ngx_lf_parser_t *p, ngx_lf_json_t *j, const char *rest,
    ngx_lf_json_type_e type, const u_char *v, size_t len)
{
    int64_t           n;
    unsigned          whole;
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
        if (type == NGX_LF_JSON_STRING && !ngx_lf_is_null_text(v, len)) {
            ngx_lf_set(&rec->finish_reason, v, len);
        }

        return;
    }

    if (strncmp(rest, "message.", 8) == 0) {
        rest += 8;
        whole = !p->use_sse;

    } else if (strncmp(rest, "delta.", 6) == 0) {
        rest += 6;
        whole = 0;

    } else {
        return;
    }

    if (strncmp(rest, "tool_calls[]", 12) == 0) {
        if (rest[12] == '\0') {
            ngx_lf_tool_element(p, j, type);
            return;
        }

        ngx_lf_tool_value(p, rest + 13, type, v, len);
        return;
    }

    if (type != NGX_LF_JSON_STRING) {
        return;
    }

    if (strcmp(rest, "content") == 0) {
        /* a whole message states its text once: a repeated key replaces */
        if (whole) {
            ngx_lf_buf_reset(&rec->output);
        }

        ngx_lf_text(p, &rec->output, v, len);

    } else if (strcmp(rest, "content[].text") == 0) {
        ngx_lf_text(p, &rec->output, v, len);

    } else if (strcmp(rest, "reasoning_content") == 0
               || strcmp(rest, "reasoning") == 0)
    {
        if (whole) {
            ngx_lf_buf_reset(&rec->reasoning);
        }

        ngx_lf_text(p, &rec->reasoning, v, len);
    }
}


/* DashScope streams say "null" while a choice is unfinished */

int
ngx_lf_is_null_text(const u_char *v, size_t len)
{
    return len == 4 && memcmp(v, "null", 4) == 0;
}


static int
ngx_lf_ends_with(const u_char *p, size_t len, const char *s)
{
    size_t  n;

    n = strlen(s);

    return len >= n && memcmp(p + len - n, s, n) == 0;
}
