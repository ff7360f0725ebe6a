
/*
 * Copyright (C) The nginx-langfuse authors
 */


#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "ngx_lf_decode.h"
#include "fuzz_piece.h"


/*
 * The first input byte picks the decoder and how the rest is cut:
 *
 *   bits 0-1  identity, gzip, deflate or br
 *   bits 2-5  piece size 1..15, or 0: pseudo-random sizes 1..512
 *   bits 6-7  max_output: 1 MiB, 4096, 100 or 1
 *
 * The input is decoded twice, in one piece and in pieces; unless one of
 * the runs hit corrupt input, both must give the same output and state.
 */

#define FUZZ_CHUNK  16384


typedef struct {
    uint64_t                hash;
    size_t                  len;
    size_t                  max_output;
} fuzz_out_t;


static int
fuzz_out(void *ctx, const u_char *p, size_t n)
{
    size_t       i;
    fuzz_out_t  *o;

    o = ctx;

    if (p == NULL || n == 0 || n > FUZZ_CHUNK) {
        abort();
    }

    for (i = 0; i < n; i++) {
        o->hash = (o->hash ^ p[i]) * 0x100000001b3ULL;
    }

    o->len += n;

    if (o->len > o->max_output) {
        abort();
    }

    return 0;
}


static void
fuzz_decode(const uint8_t *data, size_t size, uint8_t sel, int whole,
    fuzz_out_t *o, ngx_lf_decode_t *res)
{
    int               rc;
    size_t            n, off;
    uint32_t          x;
    ngx_lf_decode_t   d;

    static const size_t             caps[4] = { 1024 * 1024, 4096, 100, 1 };
    static const ngx_lf_encoding_e  encs[4] = {
        NGX_LF_ENC_IDENTITY, NGX_LF_ENC_GZIP, NGX_LF_ENC_DEFLATE,
        NGX_LF_ENC_BR
    };

    memset(o, 0, sizeof(fuzz_out_t));
    o->hash = 0xcbf29ce484222325ULL;
    o->max_output = caps[sel >> 6];

    if (ngx_lf_decode_init(&d, encs[sel & 3], o->max_output, fuzz_out, o)
        != 0)
    {
        abort();
    }

    x = sel;
    off = 0;

    while (off < size) {
        n = fuzz_piece(sel, whole, &x, size - off, 512);

        rc = ngx_lf_decode_feed(&d, data + off, n);

        if (rc == -2 || rc < -2 || rc > 1) {
            abort();
        }

        if ((rc == -1) != d.failed) {
            abort();
        }

        off += n;
    }

    if (d.produced != o->len) {
        abort();
    }

    ngx_lf_decode_free(&d);

    *res = d;
}


int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    uint8_t          sel;
    fuzz_out_t       o1, o2;
    ngx_lf_decode_t  d1, d2;

    if (size == 0) {
        return 0;
    }

    sel = data[0];
    data++;
    size--;

    fuzz_decode(data, size, sel, 1, &o1, &d1);
    fuzz_decode(data, size, sel, 0, &o2, &d2);

    /*
     * a failing call's output is dropped, so how much came out before
     * a failure depends on the split; and one run may reach the cap
     * before the damage that the other fails on
     */

    if (d1.failed || d2.failed) {
        if (!(d1.failed || d1.capped) || !(d2.failed || d2.capped)) {
            abort();
        }

        return 0;
    }

    if (o1.hash != o2.hash || o1.len != o2.len || d1.capped != d2.capped
        || d1.finished != d2.finished || d1.stopped != d2.stopped)
    {
        abort();
    }

    return 0;
}
