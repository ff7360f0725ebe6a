
/*
 * Copyright (C) The nginx-langfuse authors
 */


#ifndef _NGX_LF_JSON_H_INCLUDED_
#define _NGX_LF_JSON_H_INCLUDED_


#include <yajl/yajl_parse.h>
#include <yajl/yajl_gen.h>

#include "ngx_lf_buf.h"


/*
 * A streaming walk over a JSON document with yajl: every scalar and
 * every container boundary is reported with its path, written as
 * "usage.prompt_tokens" or "choices[].delta.content" (array elements
 * are "[]"; ngx_lf_json_index() tells their position).  A handler may
 * ask to capture the value it is being told about: the value, whole
 * subtree included, is then regenerated into a capped buffer.
 */

#define NGX_LF_JSON_MAX_DEPTH   64
#define NGX_LF_JSON_MAX_PATH    255
#define NGX_LF_JSON_LONG        4096


typedef enum {
    NGX_LF_JSON_NULL = 0,
    NGX_LF_JSON_BOOL,
    NGX_LF_JSON_NUMBER,
    NGX_LF_JSON_STRING,
    NGX_LF_JSON_MAP_START,
    NGX_LF_JSON_MAP_END,
    NGX_LF_JSON_ARRAY_START,
    NGX_LF_JSON_ARRAY_END
} ngx_lf_json_type_e;


typedef struct ngx_lf_json_s  ngx_lf_json_t;

/* a non-zero return cancels the parse */
typedef int (*ngx_lf_json_handler_pt)(ngx_lf_json_t *j,
    ngx_lf_json_type_e type, const u_char *v, size_t len);


struct ngx_lf_json_s {
    yajl_handle              handle;
    ngx_lf_json_handler_pt   handler;
    void                    *ctx;

    char                     path[NGX_LF_JSON_MAX_PATH + 1];
    size_t                   path_len;
    unsigned                 path_ok:1;      /* path was not cut */
    unsigned                 failed:1;
    unsigned                 started:1;      /* saw a first byte */
    unsigned                 progress:1;     /* a callback ran */

    /*
     * yajl keeps a token that spans input pieces in its own buffer and
     * scans it again from its start at every piece: bytes fed without
     * a callback are counted and capped, and inside a long token the
     * input waits until it doubles what was fed, so that the scans add
     * up to a linear cost
     */
    size_t                   idle;
    size_t                   max_token;
    ngx_lf_buf_t             pending;

    int                      depth;
    size_t                   base[NGX_LF_JSON_MAX_DEPTH];
    int64_t                  index[NGX_LF_JSON_MAX_DEPTH];
    u_char                   is_array[NGX_LF_JSON_MAX_DEPTH];
    u_char                   base_ok[NGX_LF_JSON_MAX_DEPTH];

    /* capture of one value */
    yajl_gen                 gen;
    ngx_lf_buf_t            *capture;
    int                      capture_depth;  /* -1: none */
    unsigned                 capture_pending:1;

    char                     error[128];
};


int ngx_lf_json_init(ngx_lf_json_t *j, ngx_lf_json_handler_pt handler,
    void *ctx, size_t max_token);
/* starts a new document (the next SSE event, say) */
int ngx_lf_json_reset(ngx_lf_json_t *j);
/* returns 0, or -1 when the document is invalid (error[] says why) */
int ngx_lf_json_feed(ngx_lf_json_t *j, const u_char *p, size_t len);
int ngx_lf_json_finish(ngx_lf_json_t *j);
void ngx_lf_json_free(ngx_lf_json_t *j);

/* from a handler: regenerate the value just reported into buf */
int ngx_lf_json_capture(ngx_lf_json_t *j, ngx_lf_buf_t *buf);
int ngx_lf_json_capturing(ngx_lf_json_t *j);

/* the position inside the n-th (0-based) array of the current path */
int64_t ngx_lf_json_index(ngx_lf_json_t *j, int n);
/* the path matches pattern exactly */
int ngx_lf_json_is(ngx_lf_json_t *j, const char *pattern);
/* the path starts with prefix; returns the rest or NULL */
const char *ngx_lf_json_under(ngx_lf_json_t *j, const char *prefix);

/* decimal integer (an exponent-free JSON number) to int64 */
int ngx_lf_json_int(const u_char *p, size_t len, int64_t *out);

/*
 * Regenerates the JSON text into g; returns 0 or -1 if the text is not
 * one valid JSON value.  Used to embed captured JSON in events.
 */
int ngx_lf_json_replay(yajl_gen g, const u_char *p, size_t len);

/* string into g, invalid UTF-8 replaced */
int ngx_lf_json_gen_string(yajl_gen g, const u_char *p, size_t len);


#endif /* _NGX_LF_JSON_H_INCLUDED_ */
