
/*
 * Copyright (C) The nginx-langfuse authors
 */


#include <stdlib.h>

#include <yajl/yajl_gen.h>

#include "ngx_lf_event.h"
#include "unit.h"


/*
 * ngx_lf_event_shrink(): only the input and output of an event are cut,
 * at a character boundary, with a note; the rest comes out byte for
 * byte as it went in.
 */


static char *
repeat(const char *unit, size_t n)
{
    char    *s;
    size_t   i, len;

    len = strlen(unit);
    s = malloc(len * n + 1);

    for (i = 0; i < n; i++) {
        memcpy(s + i * len, unit, len);
    }

    s[len * n] = '\0';

    return s;
}


static int
shrink(const char *in, size_t cap, char *out, size_t size)
{
    int             cut;
    size_t          len;
    yajl_gen        g;
    const u_char   *text;

    g = yajl_gen_alloc(NULL);
    cut = ngx_lf_event_shrink(g, (const u_char *) in, strlen(in), cap);

    out[0] = '\0';

    if (cut >= 0 && yajl_gen_get_buf(g, &text, &len) == yajl_gen_status_ok
        && len < size)
    {
        memcpy(out, text, len);
        out[len] = '\0';
    }

    yajl_gen_free(g);

    return cut;
}


static void
test_otlp(void)
{
    int    cut;
    char  *big_in, *big_out, *in, *expect, out[8192];

    big_in = repeat("a", 3000);
    big_out = repeat("\xc3\xa9", 1500);        /* "é" x 1500 */

    in = malloc(16384);
    expect = malloc(16384);

    snprintf(in, 16384,
        "{\"traceId\":\"t1\",\"attributes\":["
        "{\"key\":\"langfuse.observation.model.name\","
        "\"value\":{\"stringValue\":\"gpt-4o\"}},"
        "{\"key\":\"langfuse.observation.input\","
        "\"value\":{\"stringValue\":\"%s\"}},"
        "{\"key\":\"langfuse.observation.output\","
        "\"value\":{\"stringValue\":\"%s\"}},"
        "{\"key\":\"langfuse.observation.usage_details\","
        "\"value\":{\"stringValue\":\"{\\\"input\\\":%s}\"}}],"
        "\"status\":{\"code\":0}}", big_in, big_out, "12");

    UNIT_CONTEXT("otlp, cap 101");

    cut = shrink(in, 101, out, sizeof(out));
    UNIT_CHECK(cut == 2);

    /* the output is cut before the second byte of an "é" */
    snprintf(expect, 16384,
        "{\"traceId\":\"t1\",\"attributes\":["
        "{\"key\":\"langfuse.observation.model.name\","
        "\"value\":{\"stringValue\":\"gpt-4o\"}},"
        "{\"key\":\"langfuse.observation.input\","
        "\"value\":{\"stringValue\":\"%.101s... [2899 bytes cut]\"}},"
        "{\"key\":\"langfuse.observation.output\","
        "\"value\":{\"stringValue\":\"%.100s... [2900 bytes cut]\"}},"
        "{\"key\":\"langfuse.observation.usage_details\","
        "\"value\":{\"stringValue\":\"{\\\"input\\\":12}\"}}],"
        "\"status\":{\"code\":0}}", big_in, big_out);

    UNIT_CHECK_MEM(out, strlen(out), expect, strlen(expect));

    UNIT_CONTEXT("otlp, cap above every text");

    cut = shrink(in, 4000, out, sizeof(out));
    UNIT_CHECK(cut == 0);
    UNIT_CHECK(strlen(out) == strlen(in));

    free(big_in);
    free(big_out);
    free(in);
    free(expect);
}


static void
test_legacy(void)
{
    int    cut;
    char   out[4096];

    /* two events as the queue keeps them, inside brackets */
    const char *in =
        "[{\"id\":\"e1\",\"type\":\"trace-create\",\"body\":{\"id\":\"t\","
        "\"input\":[{\"role\":\"user\",\"content\":\"0123456789\"}],"
        "\"output\":\"short\",\"metadata\":{\"input\":\"0123456789abc\"}}},"
        "{\"id\":\"e2\",\"type\":\"generation-create\",\"body\":{"
        "\"input\":{\"messages\":[1,2,3,4,5,6,7,8,9]},"
        "\"usage\":{\"input\":10,\"output\":20},"
        "\"output\":{\"role\":\"assistant\",\"content\":\"abcdefghijklm\"}}}]";

    const char *expect =
        "[{\"id\":\"e1\",\"type\":\"trace-create\",\"body\":{\"id\":\"t\","
        "\"input\":\"[{\\\"role\\\":\\\"user\\\",... [24 bytes cut]\","
        "\"output\":\"short\",\"metadata\":{\"input\":\"0123456789abc\"}}},"
        "{\"id\":\"e2\",\"type\":\"generation-create\",\"body\":{"
        "\"input\":\"{\\\"messages\\\":[1,2... [16 bytes cut]\","
        "\"usage\":{\"input\":10,\"output\":20},"
        "\"output\":\"{\\\"role\\\":\\\"assista... [30 bytes cut]\"}}]";

    UNIT_CONTEXT("legacy, cap 16");

    cut = shrink(in, 16, out, sizeof(out));
    UNIT_CHECK(cut == 3);
    UNIT_CHECK_MEM(out, strlen(out), expect, strlen(expect));
}


static void
test_cut_again(void)
{
    char  out[256];

    const char *once =
        "{\"body\":{\"output\":\"abcdefghij... [90 bytes cut]\"}}";

    UNIT_CONTEXT("a cut text cut again");

    UNIT_CHECK(shrink(once, 4, out, sizeof(out)) == 1);
    UNIT_CHECK(strcmp(out,
                      "{\"body\":{\"output\":\"abcd... [96 bytes cut]\"}}")
               == 0);

    /* a text that only looks like a note, with too many digits */
    UNIT_CHECK(shrink("{\"body\":{\"output\":"
                      "\"ab... [123456789012345678901 bytes cut]\"}}",
                      2, out, sizeof(out)) == 1);
    UNIT_CHECK(strcmp(out, "{\"body\":{\"output\":\"ab... [37 bytes cut]\"}}")
               == 0);

    /* a cap inside the old note: the text stays, the count stays */
    UNIT_CHECK(shrink(once, 14, out, sizeof(out)) == 1);
    UNIT_CHECK(strcmp(out, once) == 0);
}


static void
test_invalid(void)
{
    char  out[64];

    UNIT_CONTEXT("invalid JSON");

    UNIT_CHECK(shrink("{\"a\":", 8, out, sizeof(out)) == -1);
    UNIT_CHECK(shrink("not json", 8, out, sizeof(out)) == -1);
}


/*
 * ngx_lf_event_envelopes(): the events of a legacy call are found by
 * parsing, so a prompt that looks like an envelope does not split it.
 */

#define ID1  "11111111-2222-4333-8444-555555555555"
#define ID2  "aaaaaaaa-bbbb-4ccc-9ddd-eeeeeeeeeeee"

static void
test_envelopes(void)
{
    int                 n;
    const char         *one, *two, *text;
    ngx_lf_envelope_t   env[2];

    one = "{\"id\":\"" ID1 "\",\"type\":\"trace-create\",\"body\":{"
          "\"input\":[{\"a\":\"},{\\\"id\\\":\\\"x\"},"
          "{\"id\":\"" ID2 "\",\"type\":\"generation-create\"}]}}";
    two = "{\"id\":\"" ID2 "\",\"type\":\"generation-create\","
          "\"body\":{\"output\":\"},{\"}}";

    text = malloc(strlen(one) + strlen(two) + 2);
    sprintf((char *) text, "%s,%s", one, two);

    UNIT_CONTEXT("a call's two events");

    n = ngx_lf_event_envelopes((const u_char *) text, strlen(text), env);
    UNIT_CHECK(n == 2);
    UNIT_CHECK_MEM(env[0].data, env[0].len, one, strlen(one));
    UNIT_CHECK_MEM(env[1].data, env[1].len, two, strlen(two));
    UNIT_CHECK_MEM(env[0].id, NGX_LF_EVENT_ID_LEN, ID1, strlen(ID1));
    UNIT_CHECK_MEM(env[1].id, NGX_LF_EVENT_ID_LEN, ID2, strlen(ID2));

    UNIT_CONTEXT("one event");

    n = ngx_lf_event_envelopes((const u_char *) two, strlen(two), env);
    UNIT_CHECK(n == 1);
    UNIT_CHECK(env[0].len == strlen(two));
    UNIT_CHECK_MEM(env[0].id, NGX_LF_EVENT_ID_LEN, ID2, strlen(ID2));

    UNIT_CONTEXT("not a call");

    UNIT_CHECK(ngx_lf_event_envelopes((const u_char *) one,
                                      strlen(one) - 1, env) == 0);
    UNIT_CHECK(ngx_lf_event_envelopes((const u_char *) text,
                                      strlen(one) + 1, env) == 0);
    UNIT_CHECK(ngx_lf_event_envelopes((const u_char *) "{\"id\":1},{}",
                                      12, env) == 0);
    UNIT_CHECK(ngx_lf_event_envelopes((const u_char *) "[1]", 3, env)
               == 0);

    free((char *) text);
}


int
main(void)
{
    test_otlp();
    test_legacy();
    test_cut_again();
    test_invalid();
    test_envelopes();

    UNIT_DONE();
}
