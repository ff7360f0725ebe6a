
/*
 * Copyright (C) The nginx-langfuse authors
 */


#include <limits.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#define ZLIB_CONST
#include <zlib.h>
#include <brotli/decode.h>

#include "ngx_lf_decode.h"


#define NGX_LF_DECODE_CHUNK  16384


typedef struct {
    z_stream                zs;
    BrotliDecoderState     *br;

    u_char                  first;      /* deflate: byte 0 seen alone */
    unsigned                have_first:1;
    unsigned                detected:1; /* zlib or raw deflate is known */
    unsigned                zinit:1;

    u_char                  out[NGX_LF_DECODE_CHUNK];
} ngx_lf_decode_state_t;


static int ngx_lf_decode_identity(ngx_lf_decode_t *d, const u_char *p,
    size_t n);
static int ngx_lf_decode_deflate(ngx_lf_decode_t *d, const u_char *p,
    size_t n);
static int ngx_lf_decode_inflate(ngx_lf_decode_t *d, const u_char *p,
    size_t n);
static int ngx_lf_decode_brotli(ngx_lf_decode_t *d, const u_char *p,
    size_t n);
static int ngx_lf_decode_emit(ngx_lf_decode_t *d, const u_char *p, size_t n);
static int ngx_lf_decode_eq(const u_char *p, size_t len, const char *s);


ngx_lf_encoding_e
ngx_lf_decode_encoding(const u_char *p, size_t len)
{
    while (len > 0 && (p[0] == ' ' || p[0] == '\t')) {
        p++;
        len--;
    }

    while (len > 0 && (p[len - 1] == ' ' || p[len - 1] == '\t')) {
        len--;
    }

    if (len == 0 || ngx_lf_decode_eq(p, len, "identity")) {
        return NGX_LF_ENC_IDENTITY;
    }

    if (ngx_lf_decode_eq(p, len, "gzip")
        || ngx_lf_decode_eq(p, len, "x-gzip"))
    {
        return NGX_LF_ENC_GZIP;
    }

    if (ngx_lf_decode_eq(p, len, "deflate")) {
        return NGX_LF_ENC_DEFLATE;
    }

    if (ngx_lf_decode_eq(p, len, "br")) {
        return NGX_LF_ENC_BR;
    }

    /* zstd, compress, stacked codings ("gzip, br") and the like */

    return NGX_LF_ENC_UNKNOWN;
}


int
ngx_lf_decode_init(ngx_lf_decode_t *d, ngx_lf_encoding_e encoding,
    size_t max_output, ngx_lf_decode_out_pt out, void *ctx)
{
    int                     wbits;
    ngx_lf_decode_state_t  *st;

    memset(d, 0, sizeof(ngx_lf_decode_t));

    d->encoding = encoding;
    d->max_output = max_output;
    d->out = out;
    d->ctx = ctx;

    switch (encoding) {

    case NGX_LF_ENC_IDENTITY:
        return 0;

    case NGX_LF_ENC_GZIP:
    case NGX_LF_ENC_DEFLATE:
    case NGX_LF_ENC_BR:
        break;

    default:
        /* nothing can be decoded: every feed reports corrupt input */
        d->failed = 1;
        return 0;
    }

    st = malloc(sizeof(ngx_lf_decode_state_t));
    if (st == NULL) {
        return -1;
    }

    /* the output buffer needs no clearing */
    memset(st, 0, offsetof(ngx_lf_decode_state_t, out));

    if (encoding == NGX_LF_ENC_BR) {
        st->br = BrotliDecoderCreateInstance(NULL, NULL, NULL);
        if (st->br == NULL) {
            free(st);
            return -1;
        }

        d->state = st;
        return 0;
    }

    st->zs.zalloc = Z_NULL;
    st->zs.zfree = Z_NULL;
    st->zs.opaque = Z_NULL;
    st->zs.next_in = Z_NULL;
    st->zs.avail_in = 0;

    /*
     * deflate starts as raw and is switched to the zlib wrapper once the
     * first two bytes are seen; inflateReset2() then allocates nothing
     */

    wbits = (encoding == NGX_LF_ENC_GZIP) ? 16 + MAX_WBITS : -MAX_WBITS;

    if (inflateInit2(&st->zs, wbits) != Z_OK) {
        free(st);
        return -1;
    }

    st->zinit = 1;
    st->detected = (encoding == NGX_LF_ENC_GZIP);

    d->state = st;

    return 0;
}


int
ngx_lf_decode_feed(ngx_lf_decode_t *d, const u_char *p, size_t n)
{
    if (d->failed) {
        return -1;
    }

    if (d->capped || d->stopped) {
        return 1;
    }

    if (d->finished && d->encoding != NGX_LF_ENC_GZIP) {
        return 1;
    }

    if (n == 0) {
        /* all output of earlier input was delivered already */
        return 0;
    }

    d->started = 1;

    switch (d->encoding) {

    case NGX_LF_ENC_IDENTITY:
        return ngx_lf_decode_identity(d, p, n);

    case NGX_LF_ENC_GZIP:
        return ngx_lf_decode_inflate(d, p, n);

    case NGX_LF_ENC_DEFLATE:
        return ngx_lf_decode_deflate(d, p, n);

    case NGX_LF_ENC_BR:
        return ngx_lf_decode_brotli(d, p, n);

    default:
        d->failed = 1;
        return -1;
    }
}


void
ngx_lf_decode_free(ngx_lf_decode_t *d)
{
    ngx_lf_decode_state_t  *st;

    st = d->state;

    if (st == NULL) {
        return;
    }

    if (st->zinit) {
        inflateEnd(&st->zs);
    }

    if (st->br) {
        BrotliDecoderDestroyInstance(st->br);
    }

    free(st);

    d->state = NULL;
}


static int
ngx_lf_decode_identity(ngx_lf_decode_t *d, const u_char *p, size_t n)
{
    int     rc;
    size_t  size;

    /* no copy, but the same piece size as for decoded output */

    while (n > 0) {
        size = (n < NGX_LF_DECODE_CHUNK) ? n : NGX_LF_DECODE_CHUNK;

        rc = ngx_lf_decode_emit(d, p, size);
        if (rc != 0) {
            return rc;
        }

        p += size;
        n -= size;
    }

    return 0;
}


static int
ngx_lf_decode_deflate(ngx_lf_decode_t *d, const u_char *p, size_t n)
{
    int                     rc;
    u_char                  b0, b1;
    ngx_lf_decode_state_t  *st;

    st = d->state;

    if (!st->detected) {

        /* the two bytes that tell zlib from raw may come apart */

        if (!st->have_first) {
            st->first = *p++;
            st->have_first = 1;

            if (--n == 0) {
                return 0;
            }
        }

        st->detected = 1;

        b0 = st->first;
        b1 = p[0];

        if ((b0 & 0x0f) == 8 && ((b0 << 8) | b1) % 31 == 0) {
            if (inflateReset2(&st->zs, MAX_WBITS) != Z_OK) {
                d->failed = 1;
                return -1;
            }
        }

        rc = ngx_lf_decode_inflate(d, &st->first, 1);
        if (rc != 0) {
            return rc;
        }
    }

    return ngx_lf_decode_inflate(d, p, n);
}


static int
ngx_lf_decode_inflate(ngx_lf_decode_t *d, const u_char *p, size_t n)
{
    int                     rc, zrc;
    size_t                  have;
    uInt                    avail;
    ngx_lf_decode_state_t  *st;

    st = d->state;

    for ( ;; ) {

        if (d->finished) {

            /*
             * only gzip gets here: another member may follow, anything
             * else is trailing garbage that gzip(1) ignores as well
             */

            if (n == 0) {
                return 0;
            }

            if (p[0] != 0x1f) {
                d->stopped = 1;
                return 1;
            }

            if (inflateReset(&st->zs) != Z_OK) {
                d->failed = 1;
                return -1;
            }

            d->finished = 0;
        }

        avail = (n > UINT_MAX) ? UINT_MAX : (uInt) n;

        st->zs.next_in = p;
        st->zs.avail_in = avail;
        st->zs.next_out = st->out;
        st->zs.avail_out = NGX_LF_DECODE_CHUNK;

        zrc = inflate(&st->zs, Z_NO_FLUSH);

        p += avail - st->zs.avail_in;
        n -= avail - st->zs.avail_in;
        have = NGX_LF_DECODE_CHUNK - st->zs.avail_out;

        switch (zrc) {

        case Z_OK:
        case Z_STREAM_END:
        case Z_BUF_ERROR:
            break;

        case Z_MEM_ERROR:
            d->stopped = 1;
            return -2;

        default:
            /* Z_DATA_ERROR, Z_NEED_DICT: this call's output is dropped */
            d->failed = 1;
            return -1;
        }

        if (have > 0) {
            rc = ngx_lf_decode_emit(d, st->out, have);
            if (rc != 0) {
                return rc;
            }
        }

        if (zrc == Z_STREAM_END) {
            d->finished = 1;

            if (d->encoding != NGX_LF_ENC_GZIP) {
                return 1;
            }

            continue;
        }

        /* a full output buffer may mean more output is pending */

        if (zrc == Z_BUF_ERROR || (n == 0 && st->zs.avail_out != 0)) {
            return 0;
        }
    }
}


static int
ngx_lf_decode_brotli(ngx_lf_decode_t *d, const u_char *p, size_t n)
{
    int                     rc;
    size_t                  have, avail_in, avail_out;
    u_char                 *next_out;
    const uint8_t          *next_in;
    BrotliDecoderResult     res;
    BrotliDecoderErrorCode  code;
    ngx_lf_decode_state_t  *st;

    st = d->state;

    next_in = p;
    avail_in = n;

    for ( ;; ) {
        next_out = st->out;
        avail_out = NGX_LF_DECODE_CHUNK;

        res = BrotliDecoderDecompressStream(st->br, &avail_in, &next_in,
                                            &avail_out, &next_out, NULL);

        have = NGX_LF_DECODE_CHUNK - avail_out;

        if (res == BROTLI_DECODER_RESULT_ERROR) {
            code = BrotliDecoderGetErrorCode(st->br);

            if (code <= BROTLI_DECODER_ERROR_ALLOC_CONTEXT_MODES
                && code >= BROTLI_DECODER_ERROR_ALLOC_BLOCK_TYPE_TREES)
            {
                d->stopped = 1;
                return -2;
            }

            d->failed = 1;
            return -1;
        }

        if (have > 0) {
            rc = ngx_lf_decode_emit(d, st->out, have);
            if (rc != 0) {
                return rc;
            }
        }

        if (res == BROTLI_DECODER_RESULT_SUCCESS) {
            /* bytes after the end of a brotli stream are ignored */
            d->finished = 1;
            return 1;
        }

        /*
         * brotli may ask for input with output still held back when
         * the output buffer was filled up exactly
         */

        if (res == BROTLI_DECODER_RESULT_NEEDS_MORE_INPUT
            && !BrotliDecoderHasMoreOutput(st->br))
        {
            return 0;
        }

        /* BROTLI_DECODER_RESULT_NEEDS_MORE_OUTPUT or output held back */
    }
}


static int
ngx_lf_decode_emit(ngx_lf_decode_t *d, const u_char *p, size_t n)
{
    int     rc;
    size_t  room;

    if (d->max_output != 0) {
        room = d->max_output - d->produced;

        if (n > room) {
            /* deliver exactly up to the cap, then ignore the rest */
            n = room;
            d->capped = 1;
        }
    }

    if (n > 0) {
        d->produced += n;

        if (d->out) {
            rc = d->out(d->ctx, p, n);

            if (rc != 0) {
                d->stopped = 1;
                return rc;
            }
        }
    }

    return d->capped ? 1 : 0;
}


static int
ngx_lf_decode_eq(const u_char *p, size_t len, const char *s)
{
    u_char  c;
    size_t  i;

    for (i = 0; i < len; i++) {
        c = p[i];

        if (c >= 'A' && c <= 'Z') {
            c |= 0x20;
        }

        if (s[i] == '\0' || c != (u_char) s[i]) {
            return 0;
        }
    }

    return s[len] == '\0';
}
