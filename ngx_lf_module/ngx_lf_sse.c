
/*
 * Copyright (C) The nginx-langfuse authors
 */


#include <string.h>

#include "ngx_lf_sse.h"


/* used when the caller passes max_event 0: memory stays bounded anyway */
#define NGX_LF_SSE_DEFAULT_MAX  (1024 * 1024)

/* a line may hold a whole event's data plus "data: " */
#define NGX_LF_SSE_LINE_SLACK   64


static int ngx_lf_sse_scan(ngx_lf_sse_t *s, const u_char *p, size_t n);
static int ngx_lf_sse_save(ngx_lf_sse_t *s, const u_char *p, size_t n);
static int ngx_lf_sse_line(ngx_lf_sse_t *s, const u_char *p, size_t len,
    int cut);
static int ngx_lf_sse_dispatch(ngx_lf_sse_t *s);


static const u_char  ngx_lf_sse_bom[3] = { 0xef, 0xbb, 0xbf };


void
ngx_lf_sse_init(ngx_lf_sse_t *s, size_t max_event,
    ngx_lf_sse_handler_pt handler, void *ctx)
{
    memset(s, 0, sizeof(ngx_lf_sse_t));

    if (max_event == 0) {
        max_event = NGX_LF_SSE_DEFAULT_MAX;
    }

    s->handler = handler;
    s->ctx = ctx;

    if (max_event < (size_t) -1 - NGX_LF_SSE_LINE_SLACK) {
        s->max_line = max_event + NGX_LF_SSE_LINE_SLACK;

    } else {
        s->max_line = max_event;
    }

    /*
     * the line is capped by max_line in ngx_lf_sse_save(), so that the
     * caller may change max_line after init; the event type comes from
     * one line and is bounded by it as well
     */

    ngx_lf_buf_init(&s->line, 0);
    ngx_lf_buf_init(&s->event, 0);
    ngx_lf_buf_init(&s->data, max_event);
}


int
ngx_lf_sse_feed(ngx_lf_sse_t *s, const u_char *p, size_t n)
{
    int  rc;

    if (s->stopped) {
        return 1;
    }

    /* a leading BOM is skipped even when it arrives split */

    while (!s->started && n > 0) {

        if (*p != ngx_lf_sse_bom[s->bom]) {
            s->started = 1;

            if (s->bom > 0) {
                /* not a BOM after all: the matched bytes are content */
                rc = ngx_lf_sse_scan(s, ngx_lf_sse_bom, s->bom);
                if (rc != 0) {
                    return rc;
                }
            }

            break;
        }

        p++;
        n--;

        if (++s->bom == 3) {
            s->started = 1;
        }
    }

    if (n == 0) {
        return 0;
    }

    return ngx_lf_sse_scan(s, p, n);
}


int
ngx_lf_sse_finish(ngx_lf_sse_t *s)
{
    int  rc;

    if (s->stopped) {
        return 0;
    }

    if (!s->started) {
        s->started = 1;

        if (s->bom > 0 && ngx_lf_sse_scan(s, ngx_lf_sse_bom, s->bom) != 0) {
            return 0;
        }
    }

    s->skip_lf = 0;

    /* a last line without a line end still counts */

    if (s->line.len > 0 || s->long_line) {
        rc = ngx_lf_sse_line(s, s->line.data, s->line.len, s->long_line);

        ngx_lf_buf_reset(&s->line);
        s->long_line = 0;

        if (rc != 0) {
            return 0;
        }
    }

    if (!s->has_data) {
        ngx_lf_buf_reset(&s->event);
        return 0;
    }

    /* the stream is over, so a handler asking to stop changes nothing */
    (void) ngx_lf_sse_dispatch(s);

    return 1;
}


void
ngx_lf_sse_free(ngx_lf_sse_t *s)
{
    ngx_lf_buf_free(&s->line);
    ngx_lf_buf_free(&s->event);
    ngx_lf_buf_free(&s->data);
}


static int
ngx_lf_sse_scan(ngx_lf_sse_t *s, const u_char *p, size_t n)
{
    int            rc;
    size_t         len, max;
    const u_char  *q, *end;

    end = p + n;
    max = s->max_line ? s->max_line : NGX_LF_SSE_DEFAULT_MAX;

    while (p < end) {

        if (s->skip_lf) {
            /* the LF of a CRLF whose CR ended the previous line */
            s->skip_lf = 0;

            if (*p == '\n') {
                p++;
                continue;
            }
        }

        for (q = p; q < end; q++) {
            if (*q == '\n' || *q == '\r') {
                break;
            }
        }

        if (q == end) {
            return ngx_lf_sse_save(s, p, q - p);
        }

        if (s->line.len == 0 && !s->long_line) {

            /* the whole line is in this piece: no copy */

            len = q - p;

            if (len > max) {
                len = max;
                s->oversized++;
                rc = ngx_lf_sse_line(s, p, len, 1);

            } else {
                rc = ngx_lf_sse_line(s, p, len, 0);
            }

        } else {
            rc = ngx_lf_sse_save(s, p, q - p);
            if (rc != 0) {
                return rc;
            }

            rc = ngx_lf_sse_line(s, s->line.data, s->line.len, s->long_line);

            ngx_lf_buf_reset(&s->line);
            s->long_line = 0;
        }

        if (rc != 0) {
            return rc;
        }

        if (*q == '\r') {
            s->skip_lf = 1;
        }

        p = q + 1;
    }

    return 0;
}


static int
ngx_lf_sse_save(ngx_lf_sse_t *s, const u_char *p, size_t n)
{
    size_t  max, room;

    max = s->max_line ? s->max_line : NGX_LF_SSE_DEFAULT_MAX;
    room = (s->line.len < max) ? max - s->line.len : 0;

    if (n > room) {
        /* the rest of the line is dropped while looking for its end */
        n = room;

        if (!s->long_line) {
            s->long_line = 1;
            s->oversized++;
        }
    }

    if (n == 0) {
        return 0;
    }

    /* keeps the allocation itself within max_line too */
    s->line.max = max;

    return (ngx_lf_buf_append(&s->line, p, n) == 0) ? 0 : -1;
}


static int
ngx_lf_sse_line(ngx_lf_sse_t *s, const u_char *p, size_t len, int cut)
{
    size_t         name, vlen;
    unsigned       was;
    const u_char  *colon, *value;

    if (len == 0) {
        return ngx_lf_sse_dispatch(s);
    }

    if (p[0] == ':') {
        return 0;
    }

    colon = memchr(p, ':', len);

    if (colon == NULL) {
        /* a field name alone has an empty value */
        name = len;
        value = p + len;
        vlen = 0;

    } else {
        name = colon - p;
        value = colon + 1;
        vlen = len - name - 1;

        if (vlen > 0 && *value == ' ') {
            value++;
            vlen--;
        }
    }

    if (name == 4 && memcmp(p, "data", 4) == 0) {
        was = s->data.truncated;

        if (s->has_data) {
            if (ngx_lf_buf_append(&s->data, (u_char *) "\n", 1) != 0) {
                return -1;
            }
        }

        if (ngx_lf_buf_append(&s->data, value, vlen) != 0) {
            return -1;
        }

        s->has_data = 1;

        if (cut) {
            /* the line was counted in oversized already */
            s->data.truncated = 1;

        } else if (!was && s->data.truncated) {
            s->oversized++;
        }

        return 0;
    }

    if (name == 5 && memcmp(p, "event", 5) == 0) {
        /* the value fits: it comes from one line */
        s->event.max = s->max_line ? s->max_line : NGX_LF_SSE_DEFAULT_MAX;

        return (ngx_lf_buf_set(&s->event, value, vlen) == 0) ? 0 : -1;
    }

    /* "id", "retry" and unknown fields carry nothing we trace */

    return 0;
}


static int
ngx_lf_sse_dispatch(ngx_lf_sse_t *s)
{
    int            rc;
    const u_char  *event, *data;

    if (!s->has_data) {
        /* an event without data is not dispatched, its type is reset */
        ngx_lf_buf_reset(&s->event);
        return 0;
    }

    /* handlers get a valid pointer even for empty strings */

    event = s->event.len ? s->event.data : (const u_char *) "";
    data = s->data.len ? s->data.data : (const u_char *) "";

    rc = 0;

    if (s->handler) {
        rc = s->handler(s->ctx, event, s->event.len, data, s->data.len,
                        s->data.truncated);
    }

    s->events++;

    ngx_lf_buf_reset(&s->event);
    ngx_lf_buf_reset(&s->data);
    s->has_data = 0;

    if (rc != 0) {
        s->stopped = 1;
        return 1;
    }

    return 0;
}
