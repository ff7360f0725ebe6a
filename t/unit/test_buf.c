
/*
 * Copyright (C) The nginx-langfuse authors
 */


#include <stdlib.h>

#include "ngx_lf_buf.h"
#include "unit.h"


#define S(s)  (const u_char *) (s), sizeof(s) - 1
#define FFFD  "\xef\xbf\xbd"


typedef struct {
    const char  *in;
    size_t       in_len;
    const char  *out;
    size_t       out_len;
} utf8_case_t;


#define U(in, out)  { in, sizeof(in) - 1, out, sizeof(out) - 1 }

static const utf8_case_t  utf8_cases[] = {
    U("", ""),
    U("plain ascii", "plain ascii"),
    U("nul\0kept", "nul\0kept"),
    U("\x7f", "\x7f"),

    /* valid multi-byte: 2, 3 and 4 bytes, the edges of each range */
    U("\xc2\x80", "\xc2\x80"),
    U("caf\xc3\xa9", "caf\xc3\xa9"),
    U("\xdf\xbf", "\xdf\xbf"),
    U("\xe0\xa0\x80", "\xe0\xa0\x80"),
    U("\xe2\x82\xac 5", "\xe2\x82\xac 5"),
    U("\xed\x9f\xbf", "\xed\x9f\xbf"),
    U("\xee\x80\x80", "\xee\x80\x80"),
    U("\xef\xbf\xbf", "\xef\xbf\xbf"),
    U("\xf0\x90\x80\x80", "\xf0\x90\x80\x80"),
    U("\xf0\x9f\x98\x80!", "\xf0\x9f\x98\x80!"),
    U("\xf4\x8f\xbf\xbf", "\xf4\x8f\xbf\xbf"),
    U("\xe4\xb8\xad\xe6\x96\x87", "\xe4\xb8\xad\xe6\x96\x87"),

    /* stray continuation bytes and bytes never valid */
    U("\x80", FFFD),
    U("\xbf", FFFD),
    U("a\x80z", "a" FFFD "z"),
    U("\x80\x80", FFFD FFFD),
    U("\xc3\xa9\x80", "\xc3\xa9" FFFD),
    U("\xfe", FFFD),
    U("\xff\xff", FFFD FFFD),
    U("\xf5\x80\x80\x80", FFFD FFFD FFFD FFFD),
    U("\xf8\x88\x80\x80\x80", FFFD FFFD FFFD FFFD FFFD),

    /* overlongs */
    U("\xc0\x80", FFFD FFFD),
    U("\xc1\xbf", FFFD FFFD),
    U("\xe0\x80\xaf", FFFD FFFD FFFD),
    U("\xe0\x9f\xbf", FFFD FFFD FFFD),
    U("\xf0\x80\x80\xaf", FFFD FFFD FFFD FFFD),
    U("\xf0\x8f\xbf\xbf", FFFD FFFD FFFD FFFD),

    /* surrogates D800-DFFF */
    U("\xed\xa0\x80", FFFD FFFD FFFD),
    U("\xed\xad\xbf", FFFD FFFD FFFD),
    U("\xed\xb0\x80", FFFD FFFD FFFD),
    U("\xed\xbf\xbf", FFFD FFFD FFFD),
    U("\xed\xa0\xbd\xed\xb8\x80", FFFD FFFD FFFD FFFD FFFD FFFD),

    /* above U+10FFFF */
    U("\xf4\x90\x80\x80", FFFD FFFD FFFD FFFD),
    U("\xf7\xbf\xbf\xbf", FFFD FFFD FFFD FFFD),

    /* a valid prefix broken off inside the text: one U+FFFD */
    U("\xe2\x82z", FFFD "z"),
    U("\xf0\x9f\x98z", FFFD "z"),
    U("\xc3z", FFFD "z"),
    U("\xe2\x82\xe2\x82\xac", FFFD "\xe2\x82\xac"),
    U("\xf0\x9f\xc3\xa9", FFFD "\xc3\xa9"),
    U("\xe2\x82\x80\x80", "\xe2\x82\x80" FFFD),

    /* a valid prefix cut by the end is dropped */
    U("\xc3", ""),
    U("a\xc3", "a"),
    U("a\xe2", "a"),
    U("a\xe2\x82", "a"),
    U("a\xf0\x9f\x98", "a"),
    U("\xc3\xa9\xc3", "\xc3\xa9"),
    U("\xed\x9f", ""),

    /* an invalid sequence at the end is not a prefix: replaced */
    U("a\xe0\x80", "a" FFFD FFFD),
    U("a\xf4\x90", "a" FFFD FFFD),
    U("a\xed\xa0", "a" FFFD FFFD),
    U("a\x80", "a" FFFD),
    U("a\xff", "a" FFFD),
};


static void test_grow(void);
static void test_cap(void);
static void test_set_reset(void);
static void test_large(void);
static void test_utf8_table(void);
static void test_utf8_random(void);


int
main(void)
{
    test_grow();
    test_cap();
    test_set_reset();
    test_large();
    test_utf8_table();
    test_utf8_random();

    UNIT_DONE();
}


static void
test_grow(void)
{
    u_char        big[600];
    ngx_lf_buf_t  b;

    UNIT_CONTEXT("grow");

    memset(big, 'x', sizeof(big));

    ngx_lf_buf_init(&b, 0);
    UNIT_CHECK(b.data == NULL && b.len == 0 && b.size == 0);

    /* nothing is allocated for nothing */
    UNIT_CHECK(ngx_lf_buf_append(&b, NULL, 0) == 0);
    UNIT_CHECK(b.data == NULL && b.size == 0);

    UNIT_CHECK(ngx_lf_buf_append(&b, S("hello")) == 0);
    UNIT_CHECK(b.size == 256);
    UNIT_CHECK_MEM(b.data, b.len, "hello", 5);

    UNIT_CHECK(ngx_lf_buf_append(&b, big, 251) == 0);
    UNIT_CHECK(b.len == 256 && b.size == 256);

    UNIT_CHECK(ngx_lf_buf_append(&b, S("!")) == 0);
    UNIT_CHECK(b.len == 257 && b.size == 512);
    UNIT_CHECK(b.data[256] == '!' && b.data[255] == 'x');

    /* one append may need several doublings */
    UNIT_CHECK(ngx_lf_buf_append(&b, big, 600) == 0);
    UNIT_CHECK(b.len == 857 && b.size == 1024);
    UNIT_CHECK(!b.truncated);

    ngx_lf_buf_free(&b);
    UNIT_CHECK(b.data == NULL && b.len == 0 && b.size == 0);

    /* free twice is harmless */
    ngx_lf_buf_free(&b);
    UNIT_CHECK(b.data == NULL);
}


static void
test_cap(void)
{
    size_t        i;
    u_char        big[1000];
    ngx_lf_buf_t  b;

    UNIT_CONTEXT("cap");

    for (i = 0; i < sizeof(big); i++) {
        big[i] = (u_char) ('a' + i % 26);
    }

    /* the allocation never goes beyond max */
    ngx_lf_buf_init(&b, 300);
    UNIT_CHECK(ngx_lf_buf_append(&b, big, 200) == 0);
    UNIT_CHECK(b.size == 256 && !b.truncated);
    UNIT_CHECK(ngx_lf_buf_append(&b, big + 200, 800) == 0);
    UNIT_CHECK(b.len == 300 && b.size == 300 && b.truncated);
    UNIT_CHECK_MEM(b.data, b.len, big, 300);

    /* later bytes are dropped, the flag stays */
    UNIT_CHECK(ngx_lf_buf_append(&b, S("more")) == 0);
    UNIT_CHECK(b.len == 300 && b.size == 300 && b.truncated);
    UNIT_CHECK(ngx_lf_buf_append(&b, NULL, 0) == 0);
    UNIT_CHECK(b.truncated);
    ngx_lf_buf_free(&b);

    /* a cap below the first allocation size */
    ngx_lf_buf_init(&b, 10);
    UNIT_CHECK(ngx_lf_buf_append(&b, S("0123456789abc")) == 0);
    UNIT_CHECK(b.size == 10 && b.truncated);
    UNIT_CHECK_MEM(b.data, b.len, "0123456789", 10);
    ngx_lf_buf_free(&b);

    /* exactly filling the cap is not truncation */
    ngx_lf_buf_init(&b, 4);
    UNIT_CHECK(ngx_lf_buf_append(&b, S("ab")) == 0);
    UNIT_CHECK(ngx_lf_buf_append(&b, S("cd")) == 0);
    UNIT_CHECK(b.len == 4 && !b.truncated);
    UNIT_CHECK(ngx_lf_buf_append(&b, S("e")) == 0);
    UNIT_CHECK(b.len == 4 && b.truncated);
    ngx_lf_buf_free(&b);

    /* max 1 */
    ngx_lf_buf_init(&b, 1);
    UNIT_CHECK(ngx_lf_buf_append(&b, S("xy")) == 0);
    UNIT_CHECK(b.len == 1 && b.size == 1 && b.truncated && b.data[0] == 'x');
    ngx_lf_buf_free(&b);
}


static void
test_set_reset(void)
{
    ngx_lf_buf_t  b;

    UNIT_CONTEXT("set/reset");

    ngx_lf_buf_init(&b, 8);

    UNIT_CHECK(ngx_lf_buf_set(&b, S("first value")) == 0);
    UNIT_CHECK(b.truncated);
    UNIT_CHECK_MEM(b.data, b.len, "first va", 8);

    /* set replaces the content and clears the flag */
    UNIT_CHECK(ngx_lf_buf_set(&b, S("two")) == 0);
    UNIT_CHECK(!b.truncated);
    UNIT_CHECK_MEM(b.data, b.len, "two", 3);

    UNIT_CHECK(ngx_lf_buf_set(&b, NULL, 0) == 0);
    UNIT_CHECK(b.len == 0 && !b.truncated);

    UNIT_CHECK(ngx_lf_buf_append(&b, S("0123456789")) == 0);
    UNIT_CHECK(b.truncated);

    /* reset keeps the allocation for reuse */
    ngx_lf_buf_reset(&b);
    UNIT_CHECK(b.len == 0 && !b.truncated && b.data != NULL && b.size == 8);
    UNIT_CHECK(b.max == 8);

    UNIT_CHECK(ngx_lf_buf_append(&b, S("abc")) == 0);
    UNIT_CHECK_MEM(b.data, b.len, "abc", 3);

    ngx_lf_buf_free(&b);
    UNIT_CHECK(b.data == NULL && b.max == 8);
}


static void
test_large(void)
{
    size_t        i, ok;
    u_char        piece[1000];
    ngx_lf_buf_t  b;

    UNIT_CONTEXT("large");

    ngx_lf_buf_init(&b, 0);

    for (i = 0; i < 1000; i++) {
        memset(piece, (int) (i & 0xff), sizeof(piece));

        if (ngx_lf_buf_append(&b, piece, sizeof(piece)) != 0) {
            break;
        }
    }

    UNIT_CHECK(i == 1000);
    UNIT_CHECK(b.len == 1000000);

    /* sizes are 256 doubled */
    UNIT_CHECK(b.size == 256 << 12);

    ok = 1;

    for (i = 0; i < b.len; i++) {
        if (b.data[i] != ((i / 1000) & 0xff)) {
            ok = 0;
            break;
        }
    }

    UNIT_CHECK(ok);

    ngx_lf_buf_free(&b);
}


static void
test_utf8_table(void)
{
    size_t              i, n;
    u_char             *out;
    const utf8_case_t  *c;

    for (i = 0; i < sizeof(utf8_cases) / sizeof(utf8_cases[0]); i++) {
        c = &utf8_cases[i];

        UNIT_CONTEXT("utf8 case %zu", i);

        /* exactly 3 * len, so that ASan catches a write past it */
        out = malloc(3 * c->in_len + 1);
        if (!UNIT_CHECK(out != NULL)) {
            return;
        }

        n = ngx_lf_utf8_sanitize(out, (const u_char *) c->in, c->in_len);

        UNIT_CHECK(n <= 3 * c->in_len);
        UNIT_CHECK_MEM(out, n, c->out, c->out_len);

        free(out);
    }
}


static void
test_utf8_random(void)
{
    size_t    i, len, n, m, round;
    u_char   *in, *out, *again;
    uint32_t  x;

    x = 12345;

    for (round = 0; round < 200; round++) {
        UNIT_CONTEXT("utf8 random round %zu", round);

        len = 1 + round * 37;

        in = malloc(len);
        out = malloc(3 * len);
        again = malloc(9 * len);

        if (!UNIT_CHECK(in != NULL && out != NULL && again != NULL)) {
            free(in);
            free(out);
            free(again);
            return;
        }

        /* mostly high bytes, so that every kind of error shows up */
        for (i = 0; i < len; i++) {
            x = x * 1103515245 + 12345;
            in[i] = (u_char) ((x >> 16) & 0xff);

            if ((x >> 8) % 4 == 0) {
                in[i] &= 0x7f;
            }
        }

        n = ngx_lf_utf8_sanitize(out, in, len);
        UNIT_CHECK(n <= 3 * len);

        /* the output is complete valid UTF-8: sanitizing again is a no-op */
        m = ngx_lf_utf8_sanitize(again, out, n);
        UNIT_CHECK_MEM(again, m, out, n);

        free(in);
        free(out);
        free(again);
    }
}
