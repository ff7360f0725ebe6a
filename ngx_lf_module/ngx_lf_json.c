
/*
 * Copyright (C) The nginx-langfuse authors
 */


#include <stdlib.h>
#include <string.h>

#include "ngx_lf_json.h"


static int ngx_lf_json_null(void *ctx);
static int ngx_lf_json_boolean(void *ctx, int v);
static int ngx_lf_json_number(void *ctx, const char *v, size_t len);
static int ngx_lf_json_string(void *ctx, const unsigned char *v,
    size_t len);
static int ngx_lf_json_start_map(void *ctx);
static int ngx_lf_json_map_key(void *ctx, const unsigned char *v,
    size_t len);
static int ngx_lf_json_end_map(void *ctx);
static int ngx_lf_json_start_array(void *ctx);
static int ngx_lf_json_end_array(void *ctx);

static int ngx_lf_json_parse(ngx_lf_json_t *j, const u_char *p,
    size_t len);
static int ngx_lf_json_flush_pending(ngx_lf_json_t *j);
static void ngx_lf_json_error(ngx_lf_json_t *j, const u_char *p,
    size_t len);
static void ngx_lf_json_element(ngx_lf_json_t *j);
static void ngx_lf_json_path_append(ngx_lf_json_t *j, const char *p,
    size_t len);
static int ngx_lf_json_scalar(ngx_lf_json_t *j, ngx_lf_json_type_e type,
    const u_char *v, size_t len);
static int ngx_lf_json_open(ngx_lf_json_t *j, int array);
static int ngx_lf_json_close(ngx_lf_json_t *j, int array);
static int ngx_lf_json_gen(ngx_lf_json_t *j, ngx_lf_json_type_e type,
    const u_char *v, size_t len);
static void ngx_lf_json_flush(ngx_lf_json_t *j);

static int ngx_lf_replay_null(void *ctx);
static int ngx_lf_replay_boolean(void *ctx, int v);
static int ngx_lf_replay_number(void *ctx, const char *v, size_t len);
static int ngx_lf_replay_string(void *ctx, const unsigned char *v,
    size_t len);
static int ngx_lf_replay_start_map(void *ctx);
static int ngx_lf_replay_end_map(void *ctx);
static int ngx_lf_replay_start_array(void *ctx);
static int ngx_lf_replay_end_array(void *ctx);


static yajl_callbacks  ngx_lf_json_callbacks = {
    ngx_lf_json_null,
    ngx_lf_json_boolean,
    NULL,
    NULL,
    ngx_lf_json_number,
    ngx_lf_json_string,
    ngx_lf_json_start_map,
    ngx_lf_json_map_key,
    ngx_lf_json_end_map,
    ngx_lf_json_start_array,
    ngx_lf_json_end_array
};


static yajl_callbacks  ngx_lf_replay_callbacks = {
    ngx_lf_replay_null,
    ngx_lf_replay_boolean,
    NULL,
    NULL,
    ngx_lf_replay_number,
    ngx_lf_replay_string,
    ngx_lf_replay_start_map,
    ngx_lf_replay_string,
    ngx_lf_replay_end_map,
    ngx_lf_replay_start_array,
    ngx_lf_replay_end_array
};


int
ngx_lf_json_init(ngx_lf_json_t *j, ngx_lf_json_handler_pt handler,
    void *ctx, size_t max_token)
{
    memset(j, 0, sizeof(ngx_lf_json_t));

    j->handler = handler;
    j->ctx = ctx;
    j->max_token = max_token;

    ngx_lf_buf_init(&j->pending, max_token);

    return ngx_lf_json_reset(j);
}


int
ngx_lf_json_reset(ngx_lf_json_t *j)
{
    if (j->handle) {
        yajl_free(j->handle);
    }

    j->handle = yajl_alloc(&ngx_lf_json_callbacks, NULL, j);
    if (j->handle == NULL) {
        return -1;
    }

    /* a stray invalid byte costs a replacement character, not the body */
    yajl_config(j->handle, yajl_dont_validate_strings, 1);

    ngx_lf_buf_reset(&j->pending);

    j->path_len = 0;
    j->path[0] = '\0';
    j->path_ok = 1;
    j->failed = 0;
    j->started = 0;
    j->idle = 0;
    j->depth = 0;
    j->capture = NULL;
    j->capture_depth = -1;
    j->capture_pending = 0;
    j->error[0] = '\0';

    return 0;
}


int
ngx_lf_json_feed(ngx_lf_json_t *j, const u_char *p, size_t len)
{
    if (j->failed) {
        return -1;
    }

    if (len == 0) {
        return 0;
    }

    if (j->idle < NGX_LF_JSON_LONG && j->pending.len == 0) {
        return ngx_lf_json_parse(j, p, len);
    }

    /* inside a long token */

    if (ngx_lf_buf_append(&j->pending, p, len) != 0
        || j->pending.truncated)
    {
        j->failed = 1;
        strcpy(j->error, j->pending.truncated ? "value too long"
                                              : "out of memory");
        return -1;
    }

    if (j->pending.len < j->idle) {
        return 0;
    }

    return ngx_lf_json_flush_pending(j);
}


static int
ngx_lf_json_flush_pending(ngx_lf_json_t *j)
{
    int  rc;

    if (j->pending.len == 0) {
        return 0;
    }

    rc = ngx_lf_json_parse(j, j->pending.data, j->pending.len);

    ngx_lf_buf_reset(&j->pending);

    return rc;
}


static int
ngx_lf_json_parse(ngx_lf_json_t *j, const u_char *p, size_t len)
{
    j->progress = 0;

    if (yajl_parse(j->handle, p, len) != yajl_status_ok) {
        j->failed = 1;

        if (j->error[0] == '\0') {
            ngx_lf_json_error(j, p, len);
        }

        /* else the walk itself gave up and said why */

        return -1;
    }

    j->idle = j->progress ? 0 : j->idle + len;

    if (j->max_token && j->idle > j->max_token) {
        j->failed = 1;
        strcpy(j->error, "value too long");
        return -1;
    }

    return 0;
}


int
ngx_lf_json_finish(ngx_lf_json_t *j)
{
    if (j->failed || ngx_lf_json_flush_pending(j) != 0) {
        return -1;
    }

    if (!j->started) {
        j->failed = 1;
        strcpy(j->error, "empty document");
        return -1;
    }

    if (yajl_complete_parse(j->handle) == yajl_status_ok) {
        return 0;
    }

    j->failed = 1;

    ngx_lf_json_error(j, NULL, 0);

    return -1;
}


/* yajl's message, one line, for the log */

static void
ngx_lf_json_error(ngx_lf_json_t *j, const u_char *p, size_t len)
{
    u_char  *msg;
    size_t   n;

    msg = yajl_get_error(j->handle, 0, p, len);
    if (msg == NULL) {
        return;
    }

    n = strlen((char *) msg);

    while (n && (msg[n - 1] == '\n' || msg[n - 1] == ' ')) {
        n--;
    }

    if (n >= sizeof(j->error)) {
        n = sizeof(j->error) - 1;
    }

    memcpy(j->error, msg, n);
    j->error[n] = '\0';

    yajl_free_error(j->handle, msg);
}


void
ngx_lf_json_free(ngx_lf_json_t *j)
{
    if (j->handle) {
        yajl_free(j->handle);
        j->handle = NULL;
    }

    if (j->gen) {
        yajl_gen_free(j->gen);
        j->gen = NULL;
    }

    ngx_lf_buf_free(&j->pending);
}


int
ngx_lf_json_capture(ngx_lf_json_t *j, ngx_lf_buf_t *buf)
{
    if (j->gen == NULL) {
        j->gen = yajl_gen_alloc(NULL);
        if (j->gen == NULL) {
            return -1;
        }

    } else {
        yajl_gen_reset(j->gen, NULL);
        yajl_gen_clear(j->gen);
    }

    ngx_lf_buf_reset(buf);
    buf->truncated = 0;

    j->capture = buf;
    j->capture_pending = 1;

    return 0;
}


int
ngx_lf_json_capturing(ngx_lf_json_t *j)
{
    return j->capture != NULL;
}


int64_t
ngx_lf_json_index(ngx_lf_json_t *j, int n)
{
    int  l;

    for (l = 0; l < j->depth; l++) {
        if (!j->is_array[l]) {
            continue;
        }

        if (n-- == 0) {
            return j->index[l];
        }
    }

    return -1;
}


int
ngx_lf_json_is(ngx_lf_json_t *j, const char *pattern)
{
    return j->path_ok && strcmp(j->path, pattern) == 0;
}


const char *
ngx_lf_json_under(ngx_lf_json_t *j, const char *prefix)
{
    size_t  n;

    n = strlen(prefix);

    if (!j->path_ok || j->path_len < n
        || memcmp(j->path, prefix, n) != 0)
    {
        return NULL;
    }

    return j->path + n;
}


int
ngx_lf_json_int(const u_char *p, size_t len, int64_t *out)
{
    int       neg;
    size_t    i;
    uint64_t  v;

    neg = 0;
    i = 0;
    v = 0;

    if (len && p[0] == '-') {
        neg = 1;
        i = 1;
    }

    if (i == len) {
        return -1;
    }

    for ( /* void */ ; i < len && p[i] >= '0' && p[i] <= '9'; i++) {
        if (v > (uint64_t) INT64_MAX / 10) {
            return -1;
        }

        v = v * 10 + (p[i] - '0');

        if (v > (uint64_t) INT64_MAX) {
            return -1;
        }
    }

    /* "12.0" is an integer too; anything else is not */
    if (i < len && p[i] == '.') {
        for (i++; i < len && p[i] == '0'; i++) { /* void */ }
    }

    if (i != len) {
        return -1;
    }

    *out = neg ? -(int64_t) v : (int64_t) v;

    return 0;
}


int
ngx_lf_json_gen_string(yajl_gen g, const u_char *p, size_t len)
{
    int      rc;
    u_char  *clean, stack[1024];
    size_t   n;

    if (len * 3 <= sizeof(stack)) {
        clean = stack;

    } else {
        clean = malloc(len * 3);
        if (clean == NULL) {
            return -1;
        }
    }

    n = ngx_lf_utf8_sanitize(clean, p, len);

    rc = yajl_gen_string(g, clean, n) == yajl_gen_status_ok ? 0 : -1;

    if (clean != stack) {
        free(clean);
    }

    return rc;
}


int
ngx_lf_json_replay(yajl_gen g, const u_char *p, size_t len)
{
    int          rc;
    yajl_handle  h;

    h = yajl_alloc(&ngx_lf_replay_callbacks, NULL, g);
    if (h == NULL) {
        return -1;
    }

    rc = -1;

    if (yajl_parse(h, p, len) == yajl_status_ok
        && yajl_complete_parse(h) == yajl_status_ok)
    {
        rc = 0;
    }

    yajl_free(h);

    return rc;
}


static void
ngx_lf_json_path_append(ngx_lf_json_t *j, const char *p, size_t len)
{
    if (j->path_len + len > NGX_LF_JSON_MAX_PATH) {
        j->path_ok = 0;
        return;
    }

    memcpy(j->path + j->path_len, p, len);
    j->path_len += len;
    j->path[j->path_len] = '\0';
}


/* a value inside an array gets the path of its element */
static void
ngx_lf_json_element(ngx_lf_json_t *j)
{
    int  l;

    j->started = 1;
    j->progress = 1;

    if (j->depth == 0) {
        return;
    }

    l = j->depth - 1;

    if (!j->is_array[l]) {
        return;
    }

    j->index[l]++;
    j->path_len = j->base[l];
    j->path[j->path_len] = '\0';
    j->path_ok = j->base_ok[l];

    ngx_lf_json_path_append(j, "[]", 2);
}


static int
ngx_lf_json_scalar(ngx_lf_json_t *j, ngx_lf_json_type_e type,
    const u_char *v, size_t len)
{
    ngx_lf_json_element(j);

    if (j->capture && !j->capture_pending) {
        return ngx_lf_json_gen(j, type, v, len);
    }

    if (j->handler(j, type, v, len) != 0) {
        return 0;
    }

    if (j->capture_pending) {
        j->capture_pending = 0;

        if (ngx_lf_json_gen(j, type, v, len) == 0) {
            return 0;
        }

        j->capture = NULL;
    }

    return 1;
}


static int
ngx_lf_json_open(ngx_lf_json_t *j, int array)
{
    ngx_lf_json_type_e  type;

    ngx_lf_json_element(j);

    if (j->depth == NGX_LF_JSON_MAX_DEPTH) {
        strcpy(j->error, "nesting too deep");
        return 0;
    }

    type = array ? NGX_LF_JSON_ARRAY_START : NGX_LF_JSON_MAP_START;

    if (j->capture && !j->capture_pending) {
        if (ngx_lf_json_gen(j, type, NULL, 0) == 0) {
            return 0;
        }

    } else {
        if (j->handler(j, type, NULL, 0) != 0) {
            return 0;
        }

        if (j->capture_pending) {
            j->capture_pending = 0;
            j->capture_depth = j->depth;

            if (ngx_lf_json_gen(j, type, NULL, 0) == 0) {
                return 0;
            }
        }
    }

    j->base[j->depth] = j->path_len;
    j->base_ok[j->depth] = j->path_ok;
    j->is_array[j->depth] = (u_char) array;
    j->index[j->depth] = -1;
    j->depth++;

    return 1;
}


static int
ngx_lf_json_close(ngx_lf_json_t *j, int array)
{
    ngx_lf_json_type_e  type;

    j->progress = 1;
    j->depth--;
    j->path_len = j->base[j->depth];
    j->path[j->path_len] = '\0';
    j->path_ok = j->base_ok[j->depth];

    type = array ? NGX_LF_JSON_ARRAY_END : NGX_LF_JSON_MAP_END;

    if (j->capture) {
        if (ngx_lf_json_gen(j, type, NULL, 0) == 0) {
            return 0;
        }

        if (j->depth != j->capture_depth) {
            return 1;
        }

        j->capture = NULL;
        j->capture_depth = -1;
    }

    return j->handler(j, type, NULL, 0) == 0;
}


static int
ngx_lf_json_gen(ngx_lf_json_t *j, ngx_lf_json_type_e type,
    const u_char *v, size_t len)
{
    yajl_gen_status  st;

    switch (type) {

    case NGX_LF_JSON_NULL:
        st = yajl_gen_null(j->gen);
        break;

    case NGX_LF_JSON_BOOL:
        st = yajl_gen_bool(j->gen, len);
        break;

    case NGX_LF_JSON_NUMBER:
        st = yajl_gen_number(j->gen, (const char *) v, len);
        break;

    case NGX_LF_JSON_STRING:
        st = ngx_lf_json_gen_string(j->gen, v, len) == 0
             ? yajl_gen_status_ok : yajl_gen_invalid_string;
        break;

    case NGX_LF_JSON_MAP_START:
        st = yajl_gen_map_open(j->gen);
        break;

    case NGX_LF_JSON_MAP_END:
        st = yajl_gen_map_close(j->gen);
        break;

    case NGX_LF_JSON_ARRAY_START:
        st = yajl_gen_array_open(j->gen);
        break;

    default: /* NGX_LF_JSON_ARRAY_END */
        st = yajl_gen_array_close(j->gen);
        break;
    }

    if (st != yajl_gen_status_ok) {
        /* the capture is unusable as JSON but the walk goes on */
        j->capture->truncated = 1;
    }

    ngx_lf_json_flush(j);

    return 1;
}


static void
ngx_lf_json_flush(ngx_lf_json_t *j)
{
    size_t                len;
    const unsigned char  *buf;

    if (yajl_gen_get_buf(j->gen, &buf, &len) != yajl_gen_status_ok) {
        return;
    }

    if (len && ngx_lf_buf_append(j->capture, buf, len) != 0) {
        j->capture->truncated = 1;
    }

    yajl_gen_clear(j->gen);
}


static int
ngx_lf_json_null(void *ctx)
{
    return ngx_lf_json_scalar(ctx, NGX_LF_JSON_NULL, NULL, 0);
}


static int
ngx_lf_json_boolean(void *ctx, int v)
{
    /* the value travels in len */
    return ngx_lf_json_scalar(ctx, NGX_LF_JSON_BOOL, NULL, v ? 1 : 0);
}


static int
ngx_lf_json_number(void *ctx, const char *v, size_t len)
{
    return ngx_lf_json_scalar(ctx, NGX_LF_JSON_NUMBER, (const u_char *) v,
                              len);
}


static int
ngx_lf_json_string(void *ctx, const unsigned char *v, size_t len)
{
    return ngx_lf_json_scalar(ctx, NGX_LF_JSON_STRING, v, len);
}


static int
ngx_lf_json_start_map(void *ctx)
{
    return ngx_lf_json_open(ctx, 0);
}


static int
ngx_lf_json_map_key(void *ctx, const unsigned char *v, size_t len)
{
    int             l;
    ngx_lf_json_t  *j = ctx;

    l = j->depth - 1;

    j->progress = 1;
    j->path_len = j->base[l];
    j->path[j->path_len] = '\0';
    j->path_ok = j->base_ok[l];

    if (j->path_len) {
        ngx_lf_json_path_append(j, ".", 1);
    }

    ngx_lf_json_path_append(j, (const char *) v, len);

    if (j->capture) {
        if (ngx_lf_json_gen_string(j->gen, v, len) != 0) {
            j->capture->truncated = 1;
        }

        ngx_lf_json_flush(j);
    }

    return 1;
}


static int
ngx_lf_json_end_map(void *ctx)
{
    return ngx_lf_json_close(ctx, 0);
}


static int
ngx_lf_json_start_array(void *ctx)
{
    return ngx_lf_json_open(ctx, 1);
}


static int
ngx_lf_json_end_array(void *ctx)
{
    return ngx_lf_json_close(ctx, 1);
}


static int
ngx_lf_replay_null(void *ctx)
{
    return yajl_gen_null(ctx) == yajl_gen_status_ok;
}


static int
ngx_lf_replay_boolean(void *ctx, int v)
{
    return yajl_gen_bool(ctx, v) == yajl_gen_status_ok;
}


static int
ngx_lf_replay_number(void *ctx, const char *v, size_t len)
{
    return yajl_gen_number(ctx, v, len) == yajl_gen_status_ok;
}


static int
ngx_lf_replay_string(void *ctx, const unsigned char *v, size_t len)
{
    return yajl_gen_string(ctx, v, len) == yajl_gen_status_ok;
}


static int
ngx_lf_replay_start_map(void *ctx)
{
    return yajl_gen_map_open(ctx) == yajl_gen_status_ok;
}


static int
ngx_lf_replay_end_map(void *ctx)
{
    return yajl_gen_map_close(ctx) == yajl_gen_status_ok;
}


static int
ngx_lf_replay_start_array(void *ctx)
{
    return yajl_gen_array_open(ctx) == yajl_gen_status_ok;
}


static int
ngx_lf_replay_end_array(void *ctx)
{
    return yajl_gen_array_close(ctx) == yajl_gen_status_ok;
}
