
/*
 * Copyright (C) The nginx-langfuse authors
 */


#include <stdlib.h>
#include <string.h>

#include "ngx_lf_buf.h"


#define NGX_LF_BUF_MIN_SIZE  256


static int ngx_lf_buf_grow(ngx_lf_buf_t *b, size_t need);


void
ngx_lf_buf_init(ngx_lf_buf_t *b, size_t max)
{
    b->data = NULL;
    b->len = 0;
    b->size = 0;
    b->max = max;
    b->truncated = 0;
}


int
ngx_lf_buf_append(ngx_lf_buf_t *b, const u_char *p, size_t n)
{
    size_t  room;

    if (b->max != 0) {
        room = (b->len < b->max) ? b->max - b->len : 0;

        if (n > room) {
            n = room;
            b->truncated = 1;
        }
    }

    if (n == 0) {
        return 0;
    }

    if (n > b->size - b->len) {
        if (n > (size_t) -1 - b->len) {
            return -1;
        }

        if (ngx_lf_buf_grow(b, b->len + n) != 0) {
            return -1;
        }
    }

    memcpy(b->data + b->len, p, n);
    b->len += n;

    return 0;
}


static int
ngx_lf_buf_grow(ngx_lf_buf_t *b, size_t need)
{
    size_t   size;
    u_char  *p;

    size = b->size ? b->size : NGX_LF_BUF_MIN_SIZE;

    while (size < need) {
        if (size > (size_t) -1 / 2) {
            size = need;
            break;
        }

        size *= 2;
    }

    /* need never exceeds max here, the caller clipped it */
    if (b->max != 0 && size > b->max) {
        size = b->max;
    }

    p = realloc(b->data, size);
    if (p == NULL) {
        return -1;
    }

    b->data = p;
    b->size = size;

    return 0;
}


int
ngx_lf_buf_set(ngx_lf_buf_t *b, const u_char *p, size_t n)
{
    b->len = 0;
    b->truncated = 0;

    return ngx_lf_buf_append(b, p, n);
}


void
ngx_lf_buf_reset(ngx_lf_buf_t *b)
{
    /* the allocation is kept for reuse */
    b->len = 0;
    b->truncated = 0;
}


void
ngx_lf_buf_free(ngx_lf_buf_t *b)
{
    free(b->data);

    b->data = NULL;
    b->len = 0;
    b->size = 0;
    b->truncated = 0;
}


size_t
ngx_lf_utf8_sanitize(u_char *out, const u_char *p, size_t len)
{
    u_char   c, lo, hi;
    size_t   i, j, k, need;
    u_char  *o;

    o = out;
    i = 0;

    while (i < len) {
        c = p[i];

        if (c < 0x80) {
            *o++ = c;
            i++;
            continue;
        }

        /* the bounds of the second byte exclude overlongs and surrogates */

        lo = 0x80;
        hi = 0xbf;

        if (c >= 0xc2 && c <= 0xdf) {
            need = 1;

        } else if (c >= 0xe0 && c <= 0xef) {
            need = 2;

            if (c == 0xe0) {
                lo = 0xa0;

            } else if (c == 0xed) {
                hi = 0x9f;
            }

        } else if (c >= 0xf0 && c <= 0xf4) {
            need = 3;

            if (c == 0xf0) {
                lo = 0x90;

            } else if (c == 0xf4) {
                hi = 0x8f;
            }

        } else {
            /* a stray continuation byte or a byte never valid in UTF-8 */
            *o++ = 0xef;
            *o++ = 0xbf;
            *o++ = 0xbd;
            i++;
            continue;
        }

        j = i + 1;

        for (k = 0; k < need; k++) {
            if (j == len) {
                /* a valid prefix cut by the end: drop it */
                return o - out;
            }

            if (p[j] < lo || p[j] > hi) {
                break;
            }

            lo = 0x80;
            hi = 0xbf;
            j++;
        }

        if (k == need) {
            while (i < j) {
                *o++ = p[i++];
            }

            continue;
        }

        /*
         * one U+FFFD for the maximal valid prefix; the offending byte is
         * looked at again as the start of the next sequence
         */

        *o++ = 0xef;
        *o++ = 0xbf;
        *o++ = 0xbd;
        i = j;
    }

    return o - out;
}
