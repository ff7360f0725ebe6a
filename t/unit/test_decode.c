
/*
 * Copyright (C) The nginx-langfuse authors
 */


#include <stdlib.h>

#define ZLIB_CONST
#include <zlib.h>
#include <brotli/encode.h>

#include "ngx_lf_decode.h"
#include "unit.h"


/*
 * Fixtures are compressed here with zlib and libbrotlienc, decoded in
 * one piece, byte by byte, in fixed-size pieces and split in two at
 * every offset (sampled offsets for big inputs), and the output must be
 * the same bytes whatever the split.
 */

#define KIB      1024
#define MIB      (1024 * 1024)
#define CHUNK    16384              /* the decoder's output buffer */

#define WB_GZIP  (16 + MAX_WBITS)
#define WB_ZLIB  MAX_WBITS
#define WB_RAW   (-MAX_WBITS)


typedef struct {
    ngx_lf_buf_t            out;
    size_t                  calls;
    size_t                  max_piece;
    int                     stop_rc;    /* returned by every call */
    int                     bad;
} sink_t;


typedef struct {
    ngx_lf_encoding_e       enc;
    const u_char           *in;
    size_t                  len;
    const u_char           *expect;
    size_t                  expect_len;
    size_t                  max_output;

    int                     rc;         /* first non-zero feed result */
    int                     check_out;  /* corrupt input: output unchecked */
    unsigned                finished:1;
    unsigned                capped:1;
    unsigned                failed:1;
    unsigned                stopped:1;
} dcase_t;


typedef struct {
    const char             *name;
    ngx_lf_encoding_e       enc;
} name_t;


typedef struct {
    ngx_lf_encoding_e       enc;
    int                     wbits;
    const char             *name;
} bomb_t;


/* piece sizes every case is fed in */
static const size_t  steps[] = { 2, 3, 7, 100, 4096, 65536 };


static const name_t  names[] = {
    { "gzip", NGX_LF_ENC_GZIP },
    { "GZIP", NGX_LF_ENC_GZIP },
    { "x-gzip", NGX_LF_ENC_GZIP },
    { "X-GZip", NGX_LF_ENC_GZIP },
    { " gzip\t", NGX_LF_ENC_GZIP },
    { "deflate", NGX_LF_ENC_DEFLATE },
    { "DeFlAtE", NGX_LF_ENC_DEFLATE },
    { "br", NGX_LF_ENC_BR },
    { "BR", NGX_LF_ENC_BR },
    { "identity", NGX_LF_ENC_IDENTITY },
    { "Identity", NGX_LF_ENC_IDENTITY },
    { "", NGX_LF_ENC_IDENTITY },
    { "   ", NGX_LF_ENC_IDENTITY },
    { "zstd", NGX_LF_ENC_UNKNOWN },
    { "compress", NGX_LF_ENC_UNKNOWN },
    { "gzip, br", NGX_LF_ENC_UNKNOWN },
    { "gzip,gzip", NGX_LF_ENC_UNKNOWN },
    { "gzi", NGX_LF_ENC_UNKNOWN },
    { "gzipp", NGX_LF_ENC_UNKNOWN },
    { "x-gzi", NGX_LF_ENC_UNKNOWN },
    { "b", NGX_LF_ENC_UNKNOWN },
    { "brr", NGX_LF_ENC_UNKNOWN },
    { "identit", NGX_LF_ENC_UNKNOWN },
    { "g zip", NGX_LF_ENC_UNKNOWN },
};


/* the round trip inputs: empty, short, long text, incompressible */
static const size_t  rt_sizes[4] = { 0, 300, 200 * KIB, 100 * KIB };
static const int     rt_wbits[3] = { WB_GZIP, WB_ZLIB, WB_RAW };
static const char   *rt_kinds[4] = { "gzip", "zlib", "raw deflate", "br" };


static const bomb_t  bombs[] = {
    { NGX_LF_ENC_GZIP, WB_GZIP, "gzip" },
    { NGX_LF_ENC_DEFLATE, WB_ZLIB, "zlib" },
    { NGX_LF_ENC_DEFLATE, WB_RAW, "raw" },
    { NGX_LF_ENC_BR, 0, "br" },
};


/* 0 stands for the length less one */
static const size_t  caps[] = {
    0, 1, 2, 100, CHUNK - 1, CHUNK, CHUNK + 1, 3 * CHUNK
};


static int sink_out(void *ctx, const u_char *p, size_t n);
static int dcase_run(const dcase_t *c, size_t first, size_t step,
    const char *what);
static void dcase_all(const dcase_t *c, const char *what);
static u_char *make_text(size_t len, uint32_t seed);
static u_char *make_random(size_t len, uint32_t seed);
static u_char *zlib_compress(const u_char *in, size_t len, int wbits,
    size_t *out_len);
static u_char *br_compress(const u_char *in, size_t len, size_t *out_len);
static u_char *zeros_compress(ngx_lf_encoding_e enc, int wbits,
    size_t mib, size_t *out_len);
static void test_names(void);
static void test_roundtrip(void);
static void test_corrupt(void);
static void test_bomb(void);
static void test_cap_exact(void);
static void test_concat(void);
static void test_identity(void);
static void test_br_held(void);
static void test_misc(void);


int
main(void)
{
    test_names();
    test_roundtrip();
    test_corrupt();
    test_bomb();
    test_cap_exact();
    test_concat();
    test_identity();
    test_br_held();
    test_misc();

    UNIT_DONE();
}


static int
sink_out(void *ctx, const u_char *p, size_t n)
{
    sink_t  *sink;

    sink = ctx;

    sink->calls++;

    if (n == 0 || p == NULL) {
        sink->bad = 1;
    }

    if (n > sink->max_piece) {
        sink->max_piece = n;
    }

    if (ngx_lf_buf_append(&sink->out, p, n) != 0) {
        sink->bad = 1;
    }

    return sink->stop_rc;
}


/*
 * Feeds c->in as a first piece of "first" bytes and then pieces of
 * "step" bytes, and checks every outcome of c.
 */

static int
dcase_run(const dcase_t *c, size_t first, size_t step, const char *what)
{
    int              rc, nz, sticky, ok;
    size_t           off, n, len;
    sink_t           sink;
    ngx_lf_decode_t  d;

    UNIT_CONTEXT("%s, first %zu, step %zu", what, first, step);

    ngx_lf_buf_init(&sink.out, 0);
    sink.calls = 0;
    sink.max_piece = 0;
    sink.stop_rc = 0;
    sink.bad = 0;

    if (!UNIT_CHECK(ngx_lf_decode_init(&d, c->enc, c->max_output, sink_out,
                                       &sink)
                    == 0))
    {
        return 0;
    }

    nz = 0;
    sticky = 1;
    off = 0;
    n = (first < c->len) ? first : c->len;

    do {
        rc = ngx_lf_decode_feed(&d, c->in + off, n);

        if (nz == 0) {
            nz = rc;

        } else if (rc == 0 || (nz == -1 && rc != -1)) {
            /* once stopped, a decoder stays stopped */
            sticky = 0;
        }

        off += n;
        n = (step < c->len - off) ? step : c->len - off;

    } while (off < c->len);

    ok = UNIT_CHECK(nz == c->rc);
    ok &= UNIT_CHECK(sticky);
    ok &= UNIT_CHECK(!sink.bad);
    ok &= UNIT_CHECK(sink.max_piece <= CHUNK);
    ok &= UNIT_CHECK(d.finished == c->finished);
    ok &= UNIT_CHECK(d.capped == c->capped);
    ok &= UNIT_CHECK(d.failed == c->failed);
    ok &= UNIT_CHECK(d.stopped == c->stopped);
    ok &= UNIT_CHECK(d.produced == sink.out.len);
    ok &= UNIT_CHECK(c->max_output == 0 || d.produced <= c->max_output);

    if (c->check_out) {
        ok &= UNIT_CHECK_MEM(sink.out.data, sink.out.len, c->expect,
                             c->expect_len);
    }

    /* whatever stopped the decoder, later input gives no output */

    if (nz != 0) {
        len = sink.out.len;
        rc = ngx_lf_decode_feed(&d, (u_char *) "\x1f\x8bmore", 6);
        ok &= UNIT_CHECK(rc == (c->failed ? -1 : 1));
        ok &= UNIT_CHECK(sink.out.len == len);
    }

    ngx_lf_decode_free(&d);
    ngx_lf_buf_free(&sink.out);

    return ok;
}


static void
dcase_all(const dcase_t *c, const char *what)
{
    size_t           i, at, len;
    uint32_t         x;

    len = c->len;

    dcase_run(c, len, len, what);
    dcase_run(c, 1, 1, what);

    for (i = 0; i < sizeof(steps) / sizeof(steps[0]); i++) {
        dcase_run(c, steps[i], steps[i], what);
    }

    if (len <= 600) {
        for (at = 0; at <= len; at++) {
            dcase_run(c, at, len, what);
        }

        return;
    }

    /* the edges, and offsets spread over the input */

    for (at = 0; at < 20; at++) {
        dcase_run(c, at, len, what);
        dcase_run(c, len - at, len, what);
    }

    x = (uint32_t) len;

    for (i = 0; i < 40; i++) {
        x = x * 1103515245 + 12345;
        dcase_run(c, (x >> 8) % len, len, what);
    }
}


static u_char *
make_text(size_t len, uint32_t seed)
{
    int        n;
    char       line[160];
    size_t     off, take;
    u_char    *p;
    uint32_t   x;

    p = malloc(len ? len : 1);
    if (p == NULL) {
        return NULL;
    }

    x = seed;
    off = 0;

    /* compressible, like a stream of chat completion chunks */

    while (off < len) {
        x = x * 1103515245 + 12345;

        n = snprintf(line, sizeof(line),
                     "data: {\"id\":\"chatcmpl-%u\",\"choices\":[{\"delta\":"
                     "{\"content\":\"w%u \\u00e9\"}}]}\n\n",
                     (x >> 20) & 0xff, (x >> 8) & 0xfff);

        take = (size_t) n < len - off ? (size_t) n : len - off;
        memcpy(p + off, line, take);
        off += take;
    }

    return p;
}


static u_char *
make_random(size_t len, uint32_t seed)
{
    size_t     i;
    u_char    *p;
    uint32_t   x;

    p = malloc(len ? len : 1);
    if (p == NULL) {
        return NULL;
    }

    x = seed;

    for (i = 0; i < len; i++) {
        x = x * 1103515245 + 12345;
        p[i] = (u_char) (x >> 16);
    }

    return p;
}


static u_char *
zlib_compress(const u_char *in, size_t len, int wbits, size_t *out_len)
{
    size_t     bound;
    u_char    *out;
    z_stream   zs;

    memset(&zs, 0, sizeof(z_stream));

    if (deflateInit2(&zs, 6, Z_DEFLATED, wbits, 8, Z_DEFAULT_STRATEGY)
        != Z_OK)
    {
        return NULL;
    }

    bound = deflateBound(&zs, len) + 64;

    out = malloc(bound);
    if (out == NULL) {
        deflateEnd(&zs);
        return NULL;
    }

    zs.next_in = in;
    zs.avail_in = (uInt) len;
    zs.next_out = out;
    zs.avail_out = (uInt) bound;

    if (deflate(&zs, Z_FINISH) != Z_STREAM_END) {
        deflateEnd(&zs);
        free(out);
        return NULL;
    }

    *out_len = zs.total_out;
    deflateEnd(&zs);

    return out;
}


static u_char *
br_compress(const u_char *in, size_t len, size_t *out_len)
{
    size_t   size;
    u_char  *out;

    size = BrotliEncoderMaxCompressedSize(len) + 64;

    out = malloc(size);
    if (out == NULL) {
        return NULL;
    }

    if (!BrotliEncoderCompress(5, BROTLI_DEFAULT_WINDOW, BROTLI_MODE_TEXT,
                               len, in, &size, out))
    {
        free(out);
        return NULL;
    }

    *out_len = size;

    return out;
}


/* a bomb: mib MiB of zeros compressed, built without holding them all */

static u_char *
zeros_compress(ngx_lf_encoding_e enc, int wbits, size_t mib,
    size_t *out_len)
{
    int                    ok;
    size_t                 i, avail_in, avail_out;
    u_char                *zero, tmp[65536], *out_p;
    z_stream               zs;
    ngx_lf_buf_t           b;
    const uint8_t         *in_p;
    BrotliEncoderState    *br;

    zero = calloc(1, MIB);
    if (zero == NULL) {
        return NULL;
    }

    ngx_lf_buf_init(&b, 0);
    ok = 1;

    if (enc == NGX_LF_ENC_BR) {
        br = BrotliEncoderCreateInstance(NULL, NULL, NULL);
        if (br == NULL) {
            free(zero);
            return NULL;
        }

        BrotliEncoderSetParameter(br, BROTLI_PARAM_QUALITY, 1);

        for (i = 0; i <= mib && ok; i++) {
            in_p = zero;
            avail_in = (i < mib) ? MIB : 0;

            do {
                out_p = tmp;
                avail_out = sizeof(tmp);

                if (!BrotliEncoderCompressStream(br,
                        (i < mib) ? BROTLI_OPERATION_PROCESS
                                  : BROTLI_OPERATION_FINISH,
                        &avail_in, &in_p, &avail_out, &out_p, NULL))
                {
                    ok = 0;
                    break;
                }

                if (ngx_lf_buf_append(&b, tmp, sizeof(tmp) - avail_out) != 0) {
                    ok = 0;
                    break;
                }

            } while (avail_in > 0 || BrotliEncoderHasMoreOutput(br)
                     || (i == mib && !BrotliEncoderIsFinished(br)));
        }

        BrotliEncoderDestroyInstance(br);

    } else {
        memset(&zs, 0, sizeof(z_stream));

        if (deflateInit2(&zs, 9, Z_DEFLATED, wbits, 8, Z_DEFAULT_STRATEGY)
            != Z_OK)
        {
            free(zero);
            return NULL;
        }

        for (i = 0; i <= mib && ok; i++) {
            zs.next_in = zero;
            zs.avail_in = (i < mib) ? MIB : 0;

            do {
                zs.next_out = tmp;
                zs.avail_out = sizeof(tmp);

                if (deflate(&zs, (i < mib) ? Z_NO_FLUSH : Z_FINISH)
                    == Z_STREAM_ERROR)
                {
                    ok = 0;
                    break;
                }

                if (ngx_lf_buf_append(&b, tmp, sizeof(tmp) - zs.avail_out)
                    != 0)
                {
                    ok = 0;
                    break;
                }

            } while (zs.avail_out == 0);
        }

        deflateEnd(&zs);
    }

    free(zero);

    if (!ok) {
        ngx_lf_buf_free(&b);
        return NULL;
    }

    *out_len = b.len;

    return b.data;
}


static void
test_names(void)
{
    size_t  i;

    for (i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
        UNIT_CONTEXT("encoding \"%s\"", names[i].name);
        UNIT_CHECK(ngx_lf_decode_encoding((const u_char *) names[i].name,
                                          strlen(names[i].name))
                   == names[i].enc);
    }

    UNIT_CONTEXT("encoding NULL");
    UNIT_CHECK(ngx_lf_decode_encoding(NULL, 0) == NGX_LF_ENC_IDENTITY);

    /* the length bounds the value, not a NUL */
    UNIT_CHECK(ngx_lf_decode_encoding((const u_char *) "brotli", 2)
               == NGX_LF_ENC_BR);
}


static void
test_roundtrip(void)
{
    int             k;
    char            what[64];
    size_t          i, clen;
    u_char         *plain[4], *comp;
    dcase_t         c;

    plain[0] = make_text(0, 1);
    plain[1] = make_text(rt_sizes[1], 2);
    plain[2] = make_text(rt_sizes[2], 3);
    plain[3] = make_random(rt_sizes[3], 4);

    for (i = 0; i < 4; i++) {
        if (!UNIT_CHECK(plain[i] != NULL)) {
            return;
        }
    }

    for (k = 0; k < 4; k++) {
        for (i = 0; i < 4; i++) {
            if (k < 3) {
                comp = zlib_compress(plain[i], rt_sizes[i], rt_wbits[k],
                                     &clen);

            } else {
                comp = br_compress(plain[i], rt_sizes[i], &clen);
            }

            UNIT_CONTEXT("%s compress %zu", rt_kinds[k], rt_sizes[i]);
            if (!UNIT_CHECK(comp != NULL)) {
                continue;
            }

            memset(&c, 0, sizeof(dcase_t));

            c.enc = (k == 0) ? NGX_LF_ENC_GZIP
                    : (k == 3) ? NGX_LF_ENC_BR : NGX_LF_ENC_DEFLATE;
            c.in = comp;
            c.len = clen;
            c.expect = plain[i];
            c.expect_len = rt_sizes[i];
            c.check_out = 1;
            c.finished = 1;

            /* gzip waits for a possible next member */
            c.rc = (k == 0) ? 0 : 1;

            snprintf(what, sizeof(what), "%s %zu", rt_kinds[k],
                     rt_sizes[i]);
            dcase_all(&c, what);

            free(comp);
        }
    }

    for (i = 0; i < 4; i++) {
        free(plain[i]);
    }
}


typedef struct {
    int                     wbits;
    int                     from_end;
    size_t                  at;
    const char             *name;
} flip_t;


typedef struct {
    ngx_lf_encoding_e       enc;
    const char             *in;
    size_t                  len;
    const char             *name;
} bad_t;


/* a flipped bit in each part of the gzip and zlib frames */

static const flip_t  flips[] = {
    { WB_GZIP, 0, 0, "gzip magic 0" },
    { WB_GZIP, 0, 1, "gzip magic 1" },
    { WB_GZIP, 0, 2, "gzip method" },
    { WB_GZIP, 1, 8, "gzip crc" },
    { WB_GZIP, 1, 1, "gzip isize" },
    { WB_ZLIB, 0, 0, "zlib method (read as raw then)" },
    { WB_ZLIB, 1, 4, "zlib adler32 first byte" },
    { WB_ZLIB, 1, 1, "zlib adler32 last byte" },
};


static const bad_t  bads[] = {
    { NGX_LF_ENC_DEFLATE, "\x07\x00\x00", 3, "raw block type 3" },
    { NGX_LF_ENC_DEFLATE, "\x01\x05\x00\x00\x00hello", 10,
      "raw stored length check" },
    { NGX_LF_ENC_DEFLATE, "\x78\xbb\x00\x00\x00\x01\x00\x00", 8,
      "zlib preset dictionary" },
    { NGX_LF_ENC_DEFLATE, "\x88\x1c\x03\x00", 4, "zlib window 64K" },
    { NGX_LF_ENC_GZIP, "\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\x03\x07",
      11, "gzip body block type 3" },
    { NGX_LF_ENC_GZIP, "PK\x03\x04 not gzip", 14, "gzip given a zip" },
    { NGX_LF_ENC_BR, "garbage!", 8, "br garbage" },
    { NGX_LF_ENC_BR, "\xff\xff\xff\xff\xff\xff\xff\xff", 8, "br ff" },
};


static void
test_corrupt(void)
{
    char      what[80];
    size_t    clen, i;
    u_char   *plain, *comp;
    dcase_t   c;

    plain = make_text(5000, 7);
    if (!UNIT_CHECK(plain != NULL)) {
        return;
    }

    /* the output before the damage is not checked, only the failure */

    memset(&c, 0, sizeof(dcase_t));
    c.rc = -1;
    c.failed = 1;

    for (i = 0; i < sizeof(flips) / sizeof(flips[0]); i++) {
        comp = zlib_compress(plain, 5000, flips[i].wbits, &clen);
        if (!UNIT_CHECK(comp != NULL)) {
            continue;
        }

        comp[flips[i].from_end ? clen - flips[i].at : flips[i].at] ^= 0x01;

        c.enc = (flips[i].wbits == WB_GZIP) ? NGX_LF_ENC_GZIP
                                            : NGX_LF_ENC_DEFLATE;
        c.in = comp;
        c.len = clen;

        snprintf(what, sizeof(what), "corrupt %s", flips[i].name);
        dcase_all(&c, what);

        free(comp);
    }

    /* hand-made streams broken before any output */

    c.check_out = 1;
    c.expect = NULL;
    c.expect_len = 0;

    for (i = 0; i < sizeof(bads) / sizeof(bads[0]); i++) {
        c.enc = bads[i].enc;
        c.in = (const u_char *) bads[i].in;
        c.len = bads[i].len;

        snprintf(what, sizeof(what), "corrupt %s", bads[i].name);
        dcase_all(&c, what);
    }

    free(plain);
}


static void
test_bomb(void)
{
    int              k, rc;
    char             what[64];
    size_t           clen, i, zero, piece;
    u_char          *comp, *expect;
    dcase_t          c;
    sink_t           sink;
    ngx_lf_decode_t  d;

    expect = calloc(1, MIB);
    if (!UNIT_CHECK(expect != NULL)) {
        return;
    }

    for (k = 0; k < 4; k++) {
        UNIT_CONTEXT("bomb %s", bombs[k].name);

        comp = zeros_compress(bombs[k].enc, bombs[k].wbits, 64, &clen);
        if (!UNIT_CHECK(comp != NULL)) {
            continue;
        }

        /* 64 MiB in well under 1 MiB */
        UNIT_CHECK(clen < 200 * KIB);

        memset(&c, 0, sizeof(dcase_t));
        c.enc = bombs[k].enc;
        c.in = comp;
        c.len = clen;
        c.expect = expect;
        c.expect_len = MIB;
        c.max_output = MIB;
        c.rc = 1;
        c.check_out = 1;
        c.capped = 1;

        snprintf(what, sizeof(what), "bomb %s", bombs[k].name);

        dcase_run(&c, clen, clen, what);
        dcase_run(&c, 1, 1, what);
        dcase_run(&c, 4096, 4096, what);
        dcase_run(&c, 1, clen, what);
        dcase_run(&c, clen / 2, clen, what);

        /* no cap: all 64 MiB come out in pieces of at most 16 KiB */

        UNIT_CONTEXT("bomb %s uncapped", bombs[k].name);

        ngx_lf_buf_init(&sink.out, 0);
        sink.calls = 0;
        sink.max_piece = 0;
        sink.stop_rc = 0;
        sink.bad = 0;

        /* without a callback only "produced" counts the output */
        UNIT_CHECK(ngx_lf_decode_init(&d, bombs[k].enc, 0, NULL, NULL)
                   == 0);
        rc = ngx_lf_decode_feed(&d, comp, clen);
        UNIT_CHECK(rc == (bombs[k].enc == NGX_LF_ENC_GZIP ? 0 : 1));
        UNIT_CHECK(d.produced == 64 * (size_t) MIB && d.finished);
        UNIT_CHECK(!d.capped && !d.failed);
        ngx_lf_decode_free(&d);

        /*
         * small pieces that each inflate to about one output buffer:
         * output still pending when a piece is used up must not be lost
         */

        for (piece = 13; piece <= 21; piece += 4) {
            UNIT_CONTEXT("bomb %s uncapped, pieces of %zu", bombs[k].name,
                         piece);

            UNIT_CHECK(ngx_lf_decode_init(&d, bombs[k].enc, 0, NULL, NULL)
                       == 0);

            for (i = 0; i < clen; i += piece) {
                rc = ngx_lf_decode_feed(&d, comp + i,
                                        (clen - i < piece) ? clen - i : piece);
            }

            UNIT_CHECK(rc == (bombs[k].enc == NGX_LF_ENC_GZIP ? 0 : 1));
            UNIT_CHECK(d.produced == 64 * (size_t) MIB && d.finished);
            ngx_lf_decode_free(&d);
        }

        /* the same pieces reach a real callback */
        UNIT_CHECK(ngx_lf_decode_init(&d, bombs[k].enc, 2 * MIB, sink_out,
                                      &sink)
                   == 0);
        UNIT_CHECK(ngx_lf_decode_feed(&d, comp, clen) == 1);
        UNIT_CHECK(sink.out.len == 2 * MIB && sink.max_piece == CHUNK);
        UNIT_CHECK(sink.calls == 2 * MIB / CHUNK);

        zero = 1;

        for (i = 0; i < sink.out.len; i++) {
            if (sink.out.data[i] != 0) {
                zero = 0;
                break;
            }
        }

        UNIT_CHECK(zero);

        ngx_lf_decode_free(&d);
        ngx_lf_buf_free(&sink.out);

        free(comp);
    }

    free(expect);
}


static void
test_cap_exact(void)
{
    int              k;
    char             what[64];
    size_t           len, clen, i;
    u_char          *plain, *comp;
    dcase_t          c;

    len = 50000;

    plain = make_text(len, 9);
    if (!UNIT_CHECK(plain != NULL)) {
        return;
    }

    for (k = 0; k < 4; k++) {
        if (k == 0) {
            comp = zlib_compress(plain, len, WB_GZIP, &clen);

        } else if (k == 1) {
            comp = zlib_compress(plain, len, WB_ZLIB, &clen);

        } else if (k == 2) {
            comp = br_compress(plain, len, &clen);

        } else {
            comp = malloc(len);

            if (comp != NULL) {
                memcpy(comp, plain, len);
                clen = len;
            }
        }

        UNIT_CONTEXT("cap compress %d", k);
        if (!UNIT_CHECK(comp != NULL)) {
            continue;
        }

        memset(&c, 0, sizeof(dcase_t));
        c.enc = (k == 0) ? NGX_LF_ENC_GZIP
                : (k == 1) ? NGX_LF_ENC_DEFLATE
                : (k == 2) ? NGX_LF_ENC_BR : NGX_LF_ENC_IDENTITY;
        c.in = comp;
        c.len = clen;
        c.expect = plain;
        c.check_out = 1;

        /* a cap of exactly the length is not reached */

        c.max_output = len;
        c.expect_len = len;
        c.capped = 0;
        c.finished = (k < 3);
        c.rc = (k == 1 || k == 2) ? 1 : 0;

        snprintf(what, sizeof(what), "cap %d exact", k);
        dcase_run(&c, clen, clen, what);
        dcase_run(&c, 1, 1, what);
        dcase_run(&c, 1000, 1000, what);

        /* one byte less is capped, with exactly that many bytes */

        for (i = 0; i < sizeof(caps) / sizeof(caps[0]); i++) {
            c.max_output = caps[i] ? caps[i] : len - 1;
            c.expect_len = c.max_output;
            c.capped = 1;
            c.finished = 0;
            c.rc = 1;

            snprintf(what, sizeof(what), "cap %d at %zu", k, c.max_output);
            dcase_run(&c, clen, clen, what);
            dcase_run(&c, 1, 1, what);
            dcase_run(&c, 1000, 1000, what);
        }

        free(comp);
    }

    free(plain);
}


static void
test_concat(void)
{
    char      what[64];
    size_t    alen, blen, ca, cb, ce, i;
    u_char   *a, *b, *ga, *gb, *ge, *in, *expect;
    dcase_t   c;

    alen = 3000;
    blen = 700;

    a = make_text(alen, 11);
    b = make_random(blen, 12);
    ga = a ? zlib_compress(a, alen, WB_GZIP, &ca) : NULL;
    gb = b ? zlib_compress(b, blen, WB_GZIP, &cb) : NULL;
    ge = zlib_compress((u_char *) "", 0, WB_GZIP, &ce);
    in = malloc(8192);
    expect = malloc(alen + blen);

    if (!UNIT_CHECK(ga && gb && ge && in && expect)) {
        goto done;
    }

    memcpy(expect, a, alen);
    memcpy(expect + alen, b, blen);

    memset(&c, 0, sizeof(dcase_t));
    c.enc = NGX_LF_ENC_GZIP;
    c.in = in;
    c.expect = expect;
    c.check_out = 1;

    /* two members: both decoded, the stream may go on */

    memcpy(in, ga, ca);
    memcpy(in + ca, gb, cb);
    c.len = ca + cb;
    c.expect_len = alen + blen;
    c.finished = 1;
    c.rc = 0;
    dcase_all(&c, "gzip a+b");

    /* an empty member between them */

    memcpy(in, ga, ca);
    memcpy(in + ca, ge, ce);
    memcpy(in + ca + ce, gb, cb);
    c.len = ca + ce + cb;
    dcase_all(&c, "gzip a+empty+b");

    /* trailing garbage after a member is ignored, as gzip(1) does */

    memcpy(in, ga, ca);
    memcpy(in + ca, gb, cb);
    memcpy(in + ca + cb, "\0\0\0\0garbage", 11);
    c.len = ca + cb + 11;
    c.rc = 1;
    c.stopped = 1;
    dcase_all(&c, "gzip a+b+garbage");

    /* a second member that is cut short */

    memcpy(in, ga, ca);
    memcpy(in + ca, gb, cb);
    c.len = ca + cb / 2;
    c.rc = 0;
    c.stopped = 0;
    c.finished = 0;
    c.check_out = 0;
    dcase_all(&c, "gzip a+half b");

    /* a broken second member fails after the first one's output */

    memcpy(in, ga, ca);
    memcpy(in + ca, gb, cb);
    in[ca + 2] = 7;
    c.len = ca + cb;
    c.rc = -1;
    c.failed = 1;
    c.check_out = 1;
    c.expect_len = alen;
    dcase_all(&c, "gzip a+bad b");

    /* raw deflate and brotli end at their end marker */

    for (i = 0; i < 2; i++) {
        free(ga);
        ga = (i == 0) ? zlib_compress(a, alen, WB_RAW, &ca)
                      : br_compress(a, alen, &ca);

        if (!UNIT_CHECK(ga != NULL)) {
            goto done;
        }

        memcpy(in, ga, ca);
        memcpy(in + ca, "trailing", 8);

        memset(&c, 0, sizeof(dcase_t));
        c.enc = (i == 0) ? NGX_LF_ENC_DEFLATE : NGX_LF_ENC_BR;
        c.in = in;
        c.len = ca + 8;
        c.expect = a;
        c.expect_len = alen;
        c.check_out = 1;
        c.finished = 1;
        c.rc = 1;

        snprintf(what, sizeof(what), "%s + trailing", i ? "br" : "raw");
        dcase_all(&c, what);
    }

done:

    free(a);
    free(b);
    free(ga);
    free(gb);
    free(ge);
    free(in);
    free(expect);
}


static void
test_identity(void)
{
    dcase_t  c;

    memset(&c, 0, sizeof(dcase_t));
    c.enc = NGX_LF_ENC_IDENTITY;
    c.in = (const u_char *) "data: {\"a\":1}\n\n\0\xff binary too";
    c.len = 28;
    c.expect = c.in;
    c.expect_len = c.len;
    c.check_out = 1;
    dcase_all(&c, "identity");

    c.max_output = 10;
    c.expect_len = 10;
    c.capped = 1;
    c.rc = 1;
    dcase_all(&c, "identity capped");

    c.len = 0;
    c.expect_len = 0;
    c.max_output = 0;
    c.capped = 0;
    c.rc = 0;
    dcase_all(&c, "identity empty");
}


/*
 * A truncated brotli stream found by the fuzzer: its input runs out just
 * as the output buffer fills up, and brotli then asks for more input
 * while it still holds back output; in one piece or in pieces of 8 the
 * same 104613 bytes must come out.  Run-length coded: byte, count.
 */

static const u_char  br_held[] = {
    0x9b, 1, 0xff, 2, 0x3f, 1, 0x00, 1, 0x24, 1, 0x00, 1, 0xca, 111,
    0xe2, 1, 0xb1, 1, 0x40, 1, 0xdc, 35, 0xff, 103, 0xdc, 53, 0x72, 1,
    0xef, 1, 0x7f, 1, 0x00, 1
};


static void
test_br_held(void)
{
    size_t           i, len;
    u_char           in[512];
    sink_t           sink;
    dcase_t          c;
    ngx_lf_decode_t  d;

    len = 0;

    for (i = 0; i < sizeof(br_held); i += 2) {
        memset(in + len, br_held[i], br_held[i + 1]);
        len += br_held[i + 1];
    }

    UNIT_CONTEXT("br held output");
    UNIT_CHECK(len == 316);

    /* one piece: the count tells that nothing stayed behind */

    memset(&sink, 0, sizeof(sink_t));
    ngx_lf_buf_init(&sink.out, 0);

    UNIT_CHECK(ngx_lf_decode_init(&d, NGX_LF_ENC_BR, 0, sink_out, &sink)
               == 0);
    UNIT_CHECK(ngx_lf_decode_feed(&d, in, len) == 0);
    UNIT_CHECK(sink.out.len == 104613);
    UNIT_CHECK(!d.finished && !d.failed);
    ngx_lf_decode_free(&d);

    /* and every other split gives the same bytes */

    memset(&c, 0, sizeof(dcase_t));
    c.enc = NGX_LF_ENC_BR;
    c.in = in;
    c.len = len;
    c.expect = sink.out.data;
    c.expect_len = sink.out.len;
    c.check_out = 1;
    dcase_all(&c, "br held output");

    ngx_lf_buf_free(&sink.out);
}


static void
test_misc(void)
{
    size_t           clen;
    u_char          *plain, *comp;
    sink_t           sink;
    ngx_lf_decode_t  d;

    ngx_lf_buf_init(&sink.out, 0);
    sink.calls = 0;
    sink.max_piece = 0;
    sink.stop_rc = 0;
    sink.bad = 0;

    /* an unknown coding cannot be decoded */

    UNIT_CONTEXT("unknown");
    UNIT_CHECK(ngx_lf_decode_init(&d, NGX_LF_ENC_UNKNOWN, 0, sink_out, &sink)
               == 0);
    UNIT_CHECK(d.failed);
    UNIT_CHECK(ngx_lf_decode_feed(&d, (u_char *) "abc", 3) == -1);
    UNIT_CHECK(sink.calls == 0);
    ngx_lf_decode_free(&d);
    ngx_lf_decode_free(&d);

    /* nothing fed, nothing started */

    UNIT_CONTEXT("empty feed");
    UNIT_CHECK(ngx_lf_decode_init(&d, NGX_LF_ENC_GZIP, 0, sink_out, &sink)
               == 0);
    UNIT_CHECK(ngx_lf_decode_feed(&d, NULL, 0) == 0);
    UNIT_CHECK(!d.started && sink.calls == 0);
    UNIT_CHECK(ngx_lf_decode_feed(&d, (u_char *) "\x1f", 1) == 0);
    UNIT_CHECK(d.started);
    ngx_lf_decode_free(&d);

    UNIT_CHECK(ngx_lf_decode_init(&d, NGX_LF_ENC_DEFLATE, 0, sink_out, &sink)
               == 0);
    UNIT_CHECK(ngx_lf_decode_feed(&d, (u_char *) "\x78", 1) == 0);
    UNIT_CHECK(ngx_lf_decode_feed(&d, NULL, 0) == 0);
    ngx_lf_decode_free(&d);

    /* the callback's non-zero return stops the decoder */

    plain = make_text(100000, 13);
    comp = plain ? zlib_compress(plain, 100000, WB_GZIP, &clen) : NULL;

    if (UNIT_CHECK(comp != NULL)) {
        UNIT_CONTEXT("callback stop");

        sink.stop_rc = 7;
        UNIT_CHECK(ngx_lf_decode_init(&d, NGX_LF_ENC_GZIP, 0, sink_out,
                                      &sink)
                   == 0);
        UNIT_CHECK(ngx_lf_decode_feed(&d, comp, clen) == 7);
        UNIT_CHECK(d.stopped && sink.calls == 1);
        UNIT_CHECK(ngx_lf_decode_feed(&d, comp, clen) == 1);
        UNIT_CHECK(sink.calls == 1);
        ngx_lf_decode_free(&d);

        sink.calls = 0;
        UNIT_CHECK(ngx_lf_decode_init(&d, NGX_LF_ENC_IDENTITY, 0, sink_out,
                                      &sink)
                   == 0);
        UNIT_CHECK(ngx_lf_decode_feed(&d, comp, clen) == 7);
        UNIT_CHECK(ngx_lf_decode_feed(&d, comp, clen) == 1);
        UNIT_CHECK(sink.calls == 1);
        ngx_lf_decode_free(&d);
    }

    free(plain);
    free(comp);
    ngx_lf_buf_free(&sink.out);
}
