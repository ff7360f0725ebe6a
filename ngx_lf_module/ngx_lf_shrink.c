
/*
 * Copyright (C) The nginx-langfuse authors
 */


#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <yajl/yajl_parse.h>

#include "ngx_lf_event.h"


/*
 * Our own queued events, read back: split into their envelopes, or cut.
 *
 * An event that Langfuse refuses as too large even when sent alone is
 * written again with its input and output cut: model, usage, times and
 * ids stay as they were.  The events are our own, so their shape is
 * known:
 *
 *   OTLP      the string values of the attributes whose key (written
 *             before the value) is "langfuse.observation.input" or
 *             "langfuse.observation.output";
 *   legacy    the "input" and "output" of an event's "body", of any
 *             type: a cut container becomes a string of its JSON text.
 *
 * A cut text ends with a note of how many bytes were cut.
 */

#define NGX_LF_SHRINK_DEPTH     96
#define NGX_LF_SHRINK_KEY       32
#define NGX_LF_SHRINK_NOTE      48


typedef struct {
    yajl_gen                g;
    yajl_gen                sub;        /* a legacy value being cut */
    int                     sub_depth;
    size_t                  cap;
    int                     cut;

    /* per open container: its current key ("" in arrays) */
    int                     depth;
    char                    key[NGX_LF_SHRINK_DEPTH][NGX_LF_SHRINK_KEY];
    unsigned char           io[NGX_LF_SHRINK_DEPTH];
} ngx_lf_shrink_t;


static int ngx_lf_shrink_null(void *ctx);
static int ngx_lf_shrink_boolean(void *ctx, int v);
static int ngx_lf_shrink_number(void *ctx, const char *v, size_t len);
static int ngx_lf_shrink_string(void *ctx, const unsigned char *v,
    size_t len);
static int ngx_lf_shrink_map_key(void *ctx, const unsigned char *v,
    size_t len);
static int ngx_lf_shrink_start(void *ctx, int map);
static int ngx_lf_shrink_start_map(void *ctx);
static int ngx_lf_shrink_start_array(void *ctx);
static int ngx_lf_shrink_end_map(void *ctx);
static int ngx_lf_shrink_end_array(void *ctx);
static int ngx_lf_shrink_end(void *ctx, int map);
static yajl_gen ngx_lf_shrink_gen(ngx_lf_shrink_t *s);
static int ngx_lf_shrink_is_io(ngx_lf_shrink_t *s);
static int ngx_lf_shrink_cut(ngx_lf_shrink_t *s, const unsigned char *p,
    size_t len);
static size_t ngx_lf_shrink_note(const unsigned char *p, size_t *len);


static yajl_callbacks  ngx_lf_shrink_callbacks = {
    ngx_lf_shrink_null,
    ngx_lf_shrink_boolean,
    NULL,
    NULL,
    ngx_lf_shrink_number,
    ngx_lf_shrink_string,
    ngx_lf_shrink_start_map,
    ngx_lf_shrink_map_key,
    ngx_lf_shrink_end_map,
    ngx_lf_shrink_start_array,
    ngx_lf_shrink_end_array
};


int
ngx_lf_event_shrink(yajl_gen g, const unsigned char *text, size_t len,
    size_t cap)
{
    int              rc;
    yajl_handle      h;
    ngx_lf_shrink_t  s;

    memset(&s, 0, sizeof(ngx_lf_shrink_t));
    s.g = g;
    s.cap = cap;

    h = yajl_alloc(&ngx_lf_shrink_callbacks, NULL, &s);
    if (h == NULL) {
        return -1;
    }

    rc = -1;

    if (yajl_parse(h, text, len) == yajl_status_ok
        && yajl_complete_parse(h) == yajl_status_ok)
    {
        rc = s.cut;
    }

    yajl_free(h);

    if (s.sub) {
        yajl_gen_free(s.sub);
    }

    return rc;
}


static int
ngx_lf_shrink_null(void *ctx)
{
    return yajl_gen_null(ngx_lf_shrink_gen(ctx)) == yajl_gen_status_ok;
}


static int
ngx_lf_shrink_boolean(void *ctx, int v)
{
    return yajl_gen_bool(ngx_lf_shrink_gen(ctx), v) == yajl_gen_status_ok;
}


static int
ngx_lf_shrink_number(void *ctx, const char *v, size_t len)
{
    return yajl_gen_number(ngx_lf_shrink_gen(ctx), v, len)
           == yajl_gen_status_ok;
}


static int
ngx_lf_shrink_string(void *ctx, const unsigned char *v, size_t len)
{
    ngx_lf_shrink_t  *s = ctx;

    int  d;

    d = s->depth - 1;

    if (s->sub == NULL && d >= 0) {

        /* an attribute's key: is this attribute an input or output? */
        if (strcmp(s->key[d], "key") == 0) {
            s->io[d] = (len == sizeof("langfuse.observation.input") - 1
                        && memcmp(v, "langfuse.observation.input", len) == 0)
                       || (len == sizeof("langfuse.observation.output") - 1
                           && memcmp(v, "langfuse.observation.output", len)
                              == 0);
        }

        if (ngx_lf_shrink_is_io(s)) {
            return ngx_lf_shrink_cut(s, v, len);
        }
    }

    return yajl_gen_string(ngx_lf_shrink_gen(s), v, len)
           == yajl_gen_status_ok;
}


static int
ngx_lf_shrink_map_key(void *ctx, const unsigned char *v, size_t len)
{
    ngx_lf_shrink_t  *s = ctx;

    int     d;
    size_t  n;

    d = s->depth - 1;

    if (d >= 0) {
        n = len < NGX_LF_SHRINK_KEY ? len : NGX_LF_SHRINK_KEY - 1;
        memcpy(s->key[d], v, n);
        s->key[d][n] = '\0';
    }

    return yajl_gen_string(ngx_lf_shrink_gen(s), v, len)
           == yajl_gen_status_ok;
}


static int
ngx_lf_shrink_start_map(void *ctx)
{
    return ngx_lf_shrink_start(ctx, 1);
}


static int
ngx_lf_shrink_start_array(void *ctx)
{
    return ngx_lf_shrink_start(ctx, 0);
}


static int
ngx_lf_shrink_start(void *ctx, int map)
{
    ngx_lf_shrink_t  *s = ctx;

    yajl_gen  g;

    if (s->depth == NGX_LF_SHRINK_DEPTH) {
        return 0;
    }

    /* a legacy input or output container: written aside, then cut */

    if (s->sub == NULL && s->depth > 0 && ngx_lf_shrink_is_io(s)) {
        s->sub = yajl_gen_alloc(NULL);
        if (s->sub == NULL) {
            return 0;
        }

        s->sub_depth = s->depth;
    }

    s->key[s->depth][0] = '\0';
    s->io[s->depth] = 0;
    s->depth++;

    g = ngx_lf_shrink_gen(s);

    return (map ? yajl_gen_map_open(g) : yajl_gen_array_open(g))
           == yajl_gen_status_ok;
}


static int
ngx_lf_shrink_end_map(void *ctx)
{
    return ngx_lf_shrink_end(ctx, 1);
}


static int
ngx_lf_shrink_end_array(void *ctx)
{
    return ngx_lf_shrink_end(ctx, 0);
}


static int
ngx_lf_shrink_end(void *ctx, int map)
{
    ngx_lf_shrink_t  *s = ctx;

    int              rc;
    size_t           len;
    yajl_gen         g;
    const u_char    *text;

    g = ngx_lf_shrink_gen(s);

    if ((map ? yajl_gen_map_close(g) : yajl_gen_array_close(g))
        != yajl_gen_status_ok)
    {
        return 0;
    }

    s->depth--;

    if (s->sub == NULL || s->depth != s->sub_depth) {
        return 1;
    }

    if (yajl_gen_get_buf(s->sub, &text, &len) != yajl_gen_status_ok) {
        return 0;
    }

    rc = ngx_lf_shrink_cut(s, text, len);

    yajl_gen_free(s->sub);
    s->sub = NULL;

    return rc;
}


static yajl_gen
ngx_lf_shrink_gen(ngx_lf_shrink_t *s)
{
    return s->sub ? s->sub : s->g;
}


/* the value about to come is an input or output to cut */

static int
ngx_lf_shrink_is_io(ngx_lf_shrink_t *s)
{
    int  d;

    d = s->depth - 1;

    /* OTLP: attributes[] element -> "value" -> "stringValue" */

    if (d >= 1 && s->io[d - 1]
        && strcmp(s->key[d], "stringValue") == 0
        && strcmp(s->key[d - 1], "value") == 0)
    {
        return 1;
    }

    /* legacy: "body" -> "input" or "output" */

    return d >= 1
           && strcmp(s->key[d - 1], "body") == 0
           && (strcmp(s->key[d], "input") == 0
               || strcmp(s->key[d], "output") == 0);
}


static int
ngx_lf_shrink_cut(ngx_lf_shrink_t *s, const unsigned char *p, size_t len)
{
    int      rc;
    char     note[NGX_LF_SHRINK_NOTE];
    size_t   n, note_len, before;
    u_char  *buf;

    if (len <= s->cap) {
        return yajl_gen_string(s->g, p, len) == yajl_gen_status_ok;
    }

    /* cut once already: the note goes, its count adds up */
    before = ngx_lf_shrink_note(p, &len);

    /* not inside a UTF-8 sequence; without its note the text may fit */

    n = len;

    if (len > s->cap) {
        for (n = s->cap; n && (p[n] & 0xc0) == 0x80; n--) {
            /* void */
        }
    }

    note_len = snprintf(note, sizeof(note), "... [%zu bytes cut]",
                        len - n + before);

    buf = malloc(n + note_len);
    if (buf == NULL) {
        return 0;
    }

    memcpy(buf, p, n);
    memcpy(buf + n, note, note_len);

    rc = yajl_gen_string(s->g, buf, n + note_len) == yajl_gen_status_ok;

    free(buf);

    s->cut++;

    return rc;
}


/* the count of "... [N bytes cut]" at the end, which *len then leaves out */

static size_t
ngx_lf_shrink_note(const unsigned char *p, size_t *len)
{
    size_t                n, mult;
    const unsigned char  *q, *end;

    end = p + *len;

    if (*len < sizeof("... [0 bytes cut]") - 1
        || memcmp(end - sizeof(" bytes cut]") + 1, " bytes cut]",
                  sizeof(" bytes cut]") - 1) != 0)
    {
        return 0;
    }

    n = 0;
    mult = 1;

    for (q = end - sizeof(" bytes cut]"); q > p && *q >= '0' && *q <= '9';
         q--)
    {
        if (mult == 10000000000000000000UL) {
            /* no count of ours is that long */
            return 0;
        }

        n += (*q - '0') * mult;
        mult *= 10;
    }

    if (mult == 1 || q - p < 4 || memcmp(q - 4, "... [", 5) != 0) {
        return 0;
    }

    *len = q - 4 - p;

    return n;
}


/*
 * yajl, told to stop after one value, says where the first event ends:
 * the text inside it (prompts, answers) cannot mislead a search.
 */

int
ngx_lf_event_envelopes(const unsigned char *text, size_t len,
    ngx_lf_envelope_t *env)
{
    int          i, n;
    size_t       first;
    yajl_handle  h;
    yajl_status  st;

    h = yajl_alloc(NULL, NULL, NULL);
    if (h == NULL) {
        return 0;
    }

    (void) yajl_config(h, yajl_allow_trailing_garbage, 1);

    st = yajl_parse(h, text, len);
    first = yajl_get_bytes_consumed(h);

    if (st == yajl_status_ok && first == len) {
        /* one event: it must be whole */
        st = yajl_complete_parse(h);
    }

    yajl_free(h);

    if (st != yajl_status_ok || first == 0 || first > len) {
        return 0;
    }

    env[0].data = text;
    env[0].len = first;
    n = 1;

    if (first < len) {
        if (text[first] != ',' || first + 1 == len) {
            return 0;
        }

        env[1].data = text + first + 1;
        env[1].len = len - first - 1;
        n = 2;
    }

    /* each starts {"id":"<uuid>", as the writer put it */

    for (i = 0; i < n; i++) {
        if (env[i].len < sizeof("{\"id\":\"\"}") - 1 + NGX_LF_EVENT_ID_LEN
            || memcmp(env[i].data, "{\"id\":\"", 7) != 0
            || env[i].data[7 + NGX_LF_EVENT_ID_LEN] != '"')
        {
            return 0;
        }

        env[i].id = env[i].data + 7;
    }

    return n;
}
