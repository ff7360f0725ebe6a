
/*
 * Copyright (C) The nginx-langfuse authors
 */


#include <stdlib.h>

#include "ngx_lf_sse.h"
#include "unit.h"


/*
 * Each case is fed in one piece, byte by byte, in every split into two
 * pieces and, when short, in every split into three; the events are
 * logged as "[type]{data}" plus "T" when truncated, one per line, and
 * the log must match exactly whatever the split.
 */

typedef struct {
    const char  *in;
    size_t       in_len;
    const char  *expect;
    size_t       expect_len;
    size_t       max_event;     /* 0: 1024 */
    size_t       max_line;      /* 0: what init sets */
    uint64_t     oversized;
    int          finish;        /* ngx_lf_sse_finish() result */
    int          stop_after;    /* the handler stops after N events */
} sse_case_t;


typedef struct {
    ngx_lf_buf_t  log;
    int           seen;
    int           stop_after;
    int           bad;
} sse_log_t;


#define S(s)  s, sizeof(s) - 1

#define ALEN  "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
#define A200  ALEN ALEN ALEN ALEN


static const sse_case_t  sse_cases[] = {

    /* line ends */
    { S("data: hello\n\n"), S("[]{hello}\n"), 0, 0, 0, 0, 0 },
    { S("data: hello\r\n\r\n"), S("[]{hello}\n"), 0, 0, 0, 0, 0 },
    { S("data: hello\r\r"), S("[]{hello}\n"), 0, 0, 0, 0, 0 },
    { S("event: a\r\ndata: x\r\n\r\ndata: y\r\n\r\n"),
      S("[a]{x}\n[]{y}\n"), 0, 0, 0, 0, 0 },
    { S("data: x\rdata: y\r\rdata: z\r\r"),
      S("[]{x\ny}\n[]{z}\n"), 0, 0, 0, 0, 0 },
    { S("data: a\r\n\rdata: b\n\r\ndata: c\r\n\n"),
      S("[]{a}\n[]{b}\n[]{c}\n"), 0, 0, 0, 0, 0 },

    /* CR then CRLF: two line ends, the LF belongs to the second CR */
    { S("data: a\r\r\ndata: b\n\n"), S("[]{a}\n[]{b}\n"), 0, 0, 0, 0, 0 },

    /* LF CR LF: two line ends as well */
    { S("data: a\n\r\ndata: b\n\n"), S("[]{a}\n[]{b}\n"), 0, 0, 0, 0, 0 },

    /* CR LF LF: a blank line after the CRLF */
    { S("data: a\r\n\ndata: b\r\n\r\n"), S("[]{a}\n[]{b}\n"), 0, 0, 0, 0,
      0 },

    /* multi-line data, including an empty data line */
    { S("data: line1\ndata: line2\ndata:\ndata: line4\n\n"),
      S("[]{line1\nline2\n\nline4}\n"), 0, 0, 0, 0, 0 },

    /* event types */
    { S("event: delta\ndata: {\"a\":1}\n\n"),
      S("[delta]{{\"a\":1}}\n"), 0, 0, 0, 0, 0 },
    { S("event: a\nevent: b\ndata: x\n\n"), S("[b]{x}\n"), 0, 0, 0, 0, 0 },
    { S("event:\ndata: x\n\n"), S("[]{x}\n"), 0, 0, 0, 0, 0 },
    { S("event: a\ndata: 1\n\ndata: 2\n\n"), S("[a]{1}\n[]{2}\n"),
      0, 0, 0, 0, 0 },

    /* an event without data is dropped and its type does not linger */
    { S("event: a\n\nevent: b\nid: 3\n\ndata: x\n\n"), S("[]{x}\n"),
      0, 0, 0, 0, 0 },

    /* comments, id, retry and unknown fields are ignored */
    { S(":HTTP_STATUS/200\n:\nid: 7\nretry: 1000\nfoo: bar\ndata: x\n\n"),
      S("[]{x}\n"), 0, 0, 0, 0, 0 },
    { S(":ping\n\n: keep-alive\r\n\r\n"), S(""), 0, 0, 0, 0, 0 },
    { S("data: a\n:comment inside\ndata: b\n\n"), S("[]{a\nb}\n"),
      0, 0, 0, 0, 0 },

    /* DashScope */
    { S("id:1\nevent:result\n:HTTP_STATUS/200\n"
        "data:{\"output\":{\"text\":\"hi\"}}\n\n"),
      S("[result]{{\"output\":{\"text\":\"hi\"}}}\n"), 0, 0, 0, 0, 0 },

    /* Anthropic */
    { S("event: message_start\ndata: {\"type\":\"message_start\"}\n\n"
        "event: ping\ndata: {\"type\": \"ping\"}\n\n"
        "event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n"),
      S("[message_start]{{\"type\":\"message_start\"}}\n"
        "[ping]{{\"type\": \"ping\"}}\n"
        "[message_stop]{{\"type\":\"message_stop\"}}\n"), 0, 0, 0, 0, 0 },

    /* OpenAI's end marker is data like any other */
    { S("data: {\"x\":1}\n\ndata: [DONE]\n\n"),
      S("[]{{\"x\":1}}\n[]{[DONE]}\n"), 0, 0, 0, 0, 0 },

    /* no colon: a field name with an empty value */
    { S("data\n\n"), S("[]{}\n"), 0, 0, 0, 0, 0 },
    { S("data\ndata\n\n"), S("[]{\n}\n"), 0, 0, 0, 0, 0 },
    { S("data:\n\n"), S("[]{}\n"), 0, 0, 0, 0, 0 },

    /* only one space after the colon is removed */
    { S("data:x\n\ndata:  y\n\ndata: a: b\n\n"),
      S("[]{x}\n[]{ y}\n[]{a: b}\n"), 0, 0, 0, 0, 0 },

    /* field names are case-sensitive */
    { S("Data: x\n\nDATA: y\n\n"), S(""), 0, 0, 0, 0, 0 },

    /* NUL is data */
    { S("data: a\0b\n\n"), S("[]{a\0b}\n"), 0, 0, 0, 0, 0 },

    /* blank lines only */
    { S("\n\n\r\n\r\r\n"), S(""), 0, 0, 0, 0, 0 },
    { S(""), S(""), 0, 0, 0, 0, 0 },

    /* no final blank line: finish dispatches */
    { S("data: a\n"), S("[]{a}\n"), 0, 0, 0, 1, 0 },
    { S("data: a\n\ndata: b\n"), S("[]{a}\n[]{b}\n"), 0, 0, 0, 1, 0 },
    { S("event: e\ndata: tail"), S("[e]{tail}\n"), 0, 0, 0, 1, 0 },
    { S("data: a\r"), S("[]{a}\n"), 0, 0, 0, 1, 0 },
    { S("data: a\r\n"), S("[]{a}\n"), 0, 0, 0, 1, 0 },
    { S("event: e\n"), S(""), 0, 0, 0, 0, 0 },
    { S("data: a\n\n:tail comment"), S("[]{a}\n"), 0, 0, 0, 0, 0 },

    /* a BOM is skipped at the start only */
    { S("\xef\xbb\xbf" "data: a\n\n"), S("[]{a}\n"), 0, 0, 0, 0, 0 },
    { S("\xef\xbb\xbf\xef\xbb\xbf" "data: a\n\ndata: b\n\n"),
      S("[]{b}\n"), 0, 0, 0, 0, 0 },
    { S("data: \xef\xbb\xbf\n\n"), S("[]{\xef\xbb\xbf}\n"), 0, 0, 0, 0, 0 },
    { S("\xef\xbb\xbf"), S(""), 0, 0, 0, 0, 0 },

    /* a partial BOM is content: the line is one byte over max_line */
    { S("\xef\xbb" "abcdefg\ndata: x\n\n"), S("[]{x}\n"), 0, 8, 1, 0, 0 },
    { S("\xef\xbb\xbf" "abcdefgh\ndata: x\n\n"), S("[]{x}\n"), 0, 8, 0,
      0, 0 },
    { S("\xef" "data: x\n\n"), S(""), 0, 0, 0, 0, 0 },
    { S("\xef\xbb"), S(""), 0, 1, 1, 0, 0 },

    /* a line at max_line exactly, and one byte over */
    { S("data: 1234\n\n"), S("[]{1234}\n"), 0, 10, 0, 0, 0 },
    { S("data: 12345\n\ndata: ok\n\n"), S("[]{1234}T\n[]{ok}\n"), 0, 10, 1,
      0, 0 },

    /* an oversized line: cut at max_line (80), the data at max_event */
    { S("data: " A200 "\n\ndata: ok\n\n"),
      S("[]{aaaaaaaaaaaaaaaa}T\n[]{ok}\n"), 16, 0, 1, 0, 0 },
    { S("data: " A200 "\r\ndata: b\r\n\r\n"),
      S("[]{aaaaaaaaaaaaaaaa}T\n"), 16, 0, 1, 0, 0 },
    { S("data: " A200), S("[]{aaaaaaaaaaaaaaaa}T\n"), 16, 0, 1, 1, 0 },

    /* an event over max_event made of short lines */
    { S("data: 12345\ndata: 67890\n\ndata: 1\n\n"),
      S("[]{12345\n67}T\n[]{1}\n"), 8, 0, 1, 0, 0 },

    /* a long comment or unknown field is cut and ignored */
    { S(":" A200 "\ndata: y\n\n"), S("[]{y}\n"), 16, 0, 1, 0, 0 },
    { S("x" A200 ": z\ndata: y\n\n"), S("[]{y}\n"), 16, 0, 1, 0, 0 },

    /* the handler stops the framer */
    { S("data: 1\n\ndata: 2\n\ndata: 3\n\n"), S("[]{1}\n"), 0, 0, 0, 0, 1 },
    { S("data: 1\n\ndata: 2\n\ndata: 3"), S("[]{1}\n[]{2}\n"), 0, 0, 0, 0,
      2 },
};


static int sse_handler(void *ctx, const u_char *event, size_t event_len,
    const u_char *data, size_t data_len, int data_truncated);
static void sse_run_case(const sse_case_t *c, size_t ci);
static int sse_run(const sse_case_t *c, const size_t *cuts, size_t ncuts,
    const char *how);
static void test_bounded_line(void);
static void test_bounded_event(void);
static void test_counters(void);


int
main(void)
{
    size_t  i;

    for (i = 0; i < sizeof(sse_cases) / sizeof(sse_cases[0]); i++) {
        sse_run_case(&sse_cases[i], i);
    }

    test_bounded_line();
    test_bounded_event();
    test_counters();

    UNIT_DONE();
}


static int
sse_handler(void *ctx, const u_char *event, size_t event_len,
    const u_char *data, size_t data_len, int data_truncated)
{
    sse_log_t  *log;

    log = ctx;

    if (event == NULL || data == NULL) {
        log->bad = 1;
    }

    if (ngx_lf_buf_append(&log->log, (u_char *) "[", 1) != 0
        || ngx_lf_buf_append(&log->log, event, event_len) != 0
        || ngx_lf_buf_append(&log->log, (u_char *) "]{", 2) != 0
        || ngx_lf_buf_append(&log->log, data, data_len) != 0
        || ngx_lf_buf_append(&log->log, (u_char *) "}", 1) != 0
        || (data_truncated
            && ngx_lf_buf_append(&log->log, (u_char *) "T", 1) != 0)
        || ngx_lf_buf_append(&log->log, (u_char *) "\n", 1) != 0)
    {
        log->bad = 1;
    }

    log->seen++;

    return (log->stop_after && log->seen >= log->stop_after) ? 1 : 0;
}


static void
sse_run_case(const sse_case_t *c, size_t ci)
{
    char    how[64];
    size_t  i, j, len, cuts[2], *bytes;

    len = c->in_len;
    cuts[0] = 0;
    cuts[1] = 0;

    /* one piece */
    snprintf(how, sizeof(how), "case %zu, one piece", ci);
    sse_run(c, cuts, 0, how);

    /* byte by byte */
    if (len > 1) {
        bytes = malloc((len - 1) * sizeof(size_t));
        if (!UNIT_CHECK(bytes != NULL)) {
            return;
        }

        for (i = 1; i < len; i++) {
            bytes[i - 1] = i;
        }

        snprintf(how, sizeof(how), "case %zu, byte by byte", ci);
        sse_run(c, bytes, len - 1, how);

        free(bytes);
    }

    /* every split into two, empty pieces included */
    for (i = 0; i <= len; i++) {
        cuts[0] = i;
        snprintf(how, sizeof(how), "case %zu, split at %zu", ci, i);
        sse_run(c, cuts, 1, how);
    }

    /* every split into three for short inputs */
    if (len > 64) {
        return;
    }

    for (i = 1; i < len; i++) {
        for (j = i + 1; j < len; j++) {
            cuts[0] = i;
            cuts[1] = j;
            snprintf(how, sizeof(how), "case %zu, split at %zu+%zu", ci, i,
                     j);
            sse_run(c, cuts, 2, how);
        }
    }
}


static int
sse_run(const sse_case_t *c, const size_t *cuts, size_t ncuts,
    const char *how)
{
    int           rc, frc, ok, fed, stopped;
    size_t        i, from, to;
    sse_log_t     log;
    ngx_lf_sse_t  s;

    UNIT_CONTEXT("%s", how);

    ngx_lf_buf_init(&log.log, 0);
    log.seen = 0;
    log.stop_after = c->stop_after;
    log.bad = 0;

    ngx_lf_sse_init(&s, c->max_event ? c->max_event : 1024, sse_handler,
                    &log);

    if (c->max_line) {
        s.max_line = c->max_line;
    }

    fed = 1;
    stopped = 0;
    from = 0;

    for (i = 0; i <= ncuts; i++) {
        to = (i < ncuts) ? cuts[i] : c->in_len;

        rc = ngx_lf_sse_feed(&s, (const u_char *) c->in + from, to - from);

        if (rc == 1) {
            stopped = 1;

        } else if (rc != 0 || stopped) {
            fed = 0;
        }

        from = to;
    }

    frc = ngx_lf_sse_finish(&s);

    ok = UNIT_CHECK(!log.bad);
    ok &= UNIT_CHECK_MEM(log.log.data, log.log.len, c->expect,
                         c->expect_len);
    ok &= UNIT_CHECK(fed);
    ok &= UNIT_CHECK(stopped == (c->stop_after && log.seen >= c->stop_after
                                 && c->finish == 0));
    ok &= UNIT_CHECK(frc == c->finish);
    ok &= UNIT_CHECK(s.oversized == c->oversized);
    ok &= UNIT_CHECK(s.events == (uint64_t) log.seen);
    ok &= UNIT_CHECK(s.line.size <= s.max_line);

    ngx_lf_sse_free(&s);
    ngx_lf_buf_free(&log.log);

    return ok;
}


static void
test_bounded_line(void)
{
    int           rc;
    size_t        i;
    u_char        piece[4096];
    sse_log_t     log;
    ngx_lf_sse_t  s;

    UNIT_CONTEXT("endless line");

    memset(piece, 'a', sizeof(piece));
    memcpy(piece, "data: ", 6);

    ngx_lf_buf_init(&log.log, 0);
    log.seen = 0;
    log.stop_after = 0;
    log.bad = 0;

    ngx_lf_sse_init(&s, 1024, sse_handler, &log);

    rc = 0;

    /* 16 MiB without a line end */
    for (i = 0; i < 4096 && rc == 0; i++) {
        rc = ngx_lf_sse_feed(&s, piece, sizeof(piece));
        memset(piece, 'a', 6);
    }

    UNIT_CHECK(rc == 0);
    UNIT_CHECK(s.line.size <= s.max_line);
    UNIT_CHECK(s.line.len == s.max_line);
    UNIT_CHECK(s.data.size == 0);
    UNIT_CHECK(s.oversized == 1);

    UNIT_CHECK(ngx_lf_sse_feed(&s, (u_char *) "\n\ndata: z\n\n", 11) == 0);
    UNIT_CHECK(log.seen == 2);
    UNIT_CHECK(log.log.len == 3 + 1024 + 3 + 6);
    UNIT_CHECK(s.data.size <= 1024);
    UNIT_CHECK(log.log.len > 6
               && memcmp(log.log.data + log.log.len - 6, "[]{z}\n", 6) == 0);

    ngx_lf_sse_free(&s);
    ngx_lf_buf_free(&log.log);
}


static void
test_bounded_event(void)
{
    int           rc;
    size_t        i;
    sse_log_t     log;
    ngx_lf_sse_t  s;

    UNIT_CONTEXT("endless event");

    ngx_lf_buf_init(&log.log, 0);
    log.seen = 0;
    log.stop_after = 0;
    log.bad = 0;

    ngx_lf_sse_init(&s, 1000, sse_handler, &log);

    rc = 0;

    /* data lines without a blank line between them */
    for (i = 0; i < 100000 && rc == 0; i++) {
        rc = ngx_lf_sse_feed(&s, (u_char *) "data: 0123456789\r\n", 18);
    }

    UNIT_CHECK(rc == 0);
    UNIT_CHECK(s.data.size <= 1000 && s.data.len == 1000);
    UNIT_CHECK(s.line.size <= s.max_line);
    UNIT_CHECK(s.oversized == 1);
    UNIT_CHECK(log.seen == 0);

    UNIT_CHECK(ngx_lf_sse_feed(&s, (u_char *) "\r\n", 2) == 0);
    UNIT_CHECK(log.seen == 1);

    /* "[]{" + 1000 bytes + "}T\n" */
    UNIT_CHECK(log.log.len == 3 + 1000 + 3);
    UNIT_CHECK(log.log.len > 3
               && memcmp(log.log.data + log.log.len - 3, "}T\n", 3) == 0);

    ngx_lf_sse_free(&s);
    ngx_lf_buf_free(&log.log);
}


static void
test_counters(void)
{
    sse_log_t     log;
    ngx_lf_sse_t  s;

    UNIT_CONTEXT("counters");

    ngx_lf_buf_init(&log.log, 0);
    log.seen = 0;
    log.stop_after = 0;
    log.bad = 0;

    /* max_event 0 picks a bounded default */
    ngx_lf_sse_init(&s, 0, sse_handler, &log);
    UNIT_CHECK(s.data.max > 0 && s.max_line > s.data.max);

    UNIT_CHECK(ngx_lf_sse_feed(&s, (u_char *) "data: 1\n\ndata: 2\n\n", 18)
               == 0);
    UNIT_CHECK(s.events == 2 && log.seen == 2);

    /* feeding nothing is fine */
    UNIT_CHECK(ngx_lf_sse_feed(&s, NULL, 0) == 0);
    UNIT_CHECK(ngx_lf_sse_finish(&s) == 0);

    /* a NULL handler only counts */
    ngx_lf_sse_free(&s);
    ngx_lf_sse_init(&s, 64, NULL, NULL);
    UNIT_CHECK(ngx_lf_sse_feed(&s, (u_char *) "data: 1\n\ndata: 2", 16) == 0);
    UNIT_CHECK(ngx_lf_sse_finish(&s) == 1);
    UNIT_CHECK(s.events == 2);

    /* after a stop every feed reports it and nothing is dispatched */
    ngx_lf_sse_free(&s);
    log.stop_after = 1;
    log.seen = 0;
    ngx_lf_sse_init(&s, 64, sse_handler, &log);
    UNIT_CHECK(ngx_lf_sse_feed(&s, (u_char *) "data: 1\n\n", 9) == 1);
    UNIT_CHECK(s.stopped);
    UNIT_CHECK(ngx_lf_sse_feed(&s, (u_char *) "data: 2\n\n", 9) == 1);
    UNIT_CHECK(ngx_lf_sse_finish(&s) == 0);
    UNIT_CHECK(s.events == 1 && log.seen == 1);

    ngx_lf_sse_free(&s);
    ngx_lf_buf_free(&log.log);
}
