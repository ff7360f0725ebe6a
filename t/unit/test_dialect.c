
/*
 * Copyright (C) The nginx-langfuse authors
 */


#define _GNU_SOURCE

#include <stdlib.h>

#include "unit.h"
#include "ngx_lf_dialect.h"
#include "ngx_lf_event.h"


/*
 * Every case is parsed whole and in pieces of 1 to 7 bytes: the record
 * must come out the same whatever the split.
 */


typedef struct {
    const char  *name;
    int          dialect;
    int          sse;
    int          incremental;
    const char  *body;

    const char  *model;
    const char  *output;
    const char  *reasoning;
    const char  *finish;
    const char  *error;
    int64_t      input, output_tokens, total, cached, reasoning_tokens;
    unsigned     ntools;
    const char  *tool_args;      /* of the first tool call */
    const char  *tool_name;
    unsigned     done:1;
    unsigned     error_event:1;
    unsigned     response_error:1;
} case_t;


#define UNSET  NGX_LF_USAGE_UNSET


static const case_t  cases[] = {

    { "openai json", NGX_LF_DIALECT_OPENAI_CHAT, 0, -1,
      "{\"id\":\"chatcmpl-1\",\"object\":\"chat.completion\","
      "\"model\":\"gpt-4o-mini-2024\",\"choices\":[{\"index\":0,"
      "\"message\":{\"role\":\"assistant\",\"content\":\"Hello, "
      "\\u4e16\\u754c \\ud83d\\ude00!\"},\"finish_reason\":\"stop\"}],"
      "\"usage\":{\"prompt_tokens\":20,\"completion_tokens\":10,"
      "\"total_tokens\":30,\"prompt_tokens_details\":{\"cached_tokens\":8},"
      "\"completion_tokens_details\":{\"reasoning_tokens\":4}}}",
      "gpt-4o-mini-2024", "Hello, \xe4\xb8\x96\xe7\x95\x8c \xf0\x9f\x98\x80!",
      "", "stop", "", 20, 10, 30, 8, 4, 0, NULL, NULL, 0, 0, 0 },

    { "openai json usage first", NGX_LF_DIALECT_OPENAI_CHAT, 0, -1,
      "{\"usage\":{\"total_tokens\":3,\"prompt_tokens\":1,"
      "\"completion_tokens\":2},\"choices\":[{\"message\":{\"content\":"
      "\"ok\"}}],\"model\":\"m\",\"model\":\"m2\"}",
      "m2", "ok", "", "", "", 1, 2, 3, UNSET, UNSET, 0, NULL, NULL,
      0, 0, 0 },

    { "openai sse with usage", NGX_LF_DIALECT_OPENAI_CHAT, 1, -1,
      "data: {\"id\":\"c1\",\"model\":\"gpt-4o\",\"choices\":[{\"index\":0,"
      "\"delta\":{\"role\":\"assistant\",\"content\":\"\"}}],"
      "\"usage\":null}\n\n"
      ": keep-alive\n\n"
      "data: {\"id\":\"c1\",\"model\":\"gpt-4o\",\"choices\":[{\"index\":0,"
      "\"delta\":{\"content\":\"Hel\"}}],\"usage\":null}\r\n\r\n"
      "data: {\"id\":\"c1\",\"model\":\"gpt-4o\",\"choices\":[{\"index\":0,"
      "\"delta\":{\"content\":\"lo\"},\"finish_reason\":\"stop\"}]}\r\r"
      "data: {\"id\":\"c1\",\"model\":\"gpt-4o\",\"choices\":[],"
      "\"usage\":{\"prompt_tokens\":5,\"completion_tokens\":2,"
      "\"total_tokens\":7}}\n\n"
      "data: [DONE]\n\n",
      "gpt-4o", "Hello", "", "stop", "", 5, 2, 7, UNSET, UNSET, 0,
      NULL, NULL, 1, 0, 0 },

    { "openai sse no usage", NGX_LF_DIALECT_OPENAI_CHAT, 1, -1,
      "data: {\"choices\":[{\"delta\":{\"content\":\"a\"}}]}\n\n"
      "data: {\"choices\":[{\"delta\":{\"content\":\"b\"}}]}\n\n"
      "data: [DONE]",
      "", "ab", "", "", "", UNSET, UNSET, UNSET, UNSET, UNSET, 0, NULL,
      NULL, 1, 0, 0 },

    { "openai sse tool calls and reasoning", NGX_LF_DIALECT_OPENAI_CHAT, 1,
      -1,
      "data: {\"choices\":[{\"index\":0,\"delta\":{\"reasoning_content\":"
      "\"think \"}}]}\n\n"
      "data: {\"choices\":[{\"index\":0,\"delta\":{\"reasoning_content\":"
      "\"more\"}}]}\n\n"
      "data: {\"choices\":[{\"index\":0,\"delta\":{\"tool_calls\":["
      "{\"index\":0,\"id\":\"call_1\",\"type\":\"function\",\"function\":"
      "{\"name\":\"get_weather\",\"arguments\":\"\"}}]}}]}\n\n"
      "data: {\"choices\":[{\"index\":0,\"delta\":{\"tool_calls\":["
      "{\"index\":0,\"function\":{\"arguments\":\"{\\\"city\\\":\"}}]}}]}"
      "\n\n"
      "data: {\"choices\":[{\"index\":0,\"delta\":{\"tool_calls\":["
      "{\"index\":1,\"id\":\"call_2\",\"function\":{\"name\":\"time\","
      "\"arguments\":\"{}\"}}]}}]}\n\n"
      "data: {\"choices\":[{\"index\":0,\"delta\":{\"tool_calls\":["
      "{\"index\":0,\"function\":{\"arguments\":\"\\\"Paris\\\"}\"}}]}}]}"
      "\n\n"
      "data: {\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":"
      "\"tool_calls\"}],\"usage\":{\"prompt_tokens\":9,"
      "\"completion_tokens\":6,\"total_tokens\":15,"
      "\"completion_tokens_details\":{\"reasoning_tokens\":3}}}\n\n"
      "data: [DONE]\n\n",
      "", "", "think more", "tool_calls", "", 9, 6, 15, UNSET, 3, 2,
      "{\"city\":\"Paris\"}", "get_weather", 1, 0, 0 },

    { "openai error body", NGX_LF_DIALECT_OPENAI_CHAT, 0, -1,
      "{\"error\":{\"message\":\"Invalid model\",\"type\":"
      "\"invalid_request_error\",\"code\":null}}",
      "", "", "", "", "Invalid model", UNSET, UNSET, UNSET, UNSET, UNSET,
      0, NULL, NULL, 0, 0, 0 },

    { "openai error event", NGX_LF_DIALECT_OPENAI_CHAT, 1, -1,
      "data: {\"choices\":[{\"delta\":{\"content\":\"par\"}}]}\n\n"
      "data: {\"error\":{\"message\":\"overloaded\"}}\n\n",
      "", "par", "", "", "overloaded", UNSET, UNSET, UNSET, UNSET, UNSET,
      0, NULL, NULL, 0, 1, 0 },

    { "not json", NGX_LF_DIALECT_OPENAI_CHAT, 0, -1,
      "<html>502 Bad Gateway</html>",
      "", "", "", "", "", UNSET, UNSET, UNSET, UNSET, UNSET, 0, NULL, NULL,
      0, 0, 1 },

    { "dashscope json text", NGX_LF_DIALECT_DASHSCOPE, 0, -1,
      "{\"output\":{\"text\":\"\\u4f60\\u597d\",\"finish_reason\":\"stop\"},"
      "\"usage\":{\"input_tokens\":12,\"output_tokens\":3,"
      "\"total_tokens\":15},\"request_id\":\"r-1\"}",
      "", "\xe4\xbd\xa0\xe5\xa5\xbd", "", "stop", "", 12, 3, 15, UNSET,
      UNSET, 0, NULL, NULL, 1, 0, 0 },

    { "dashscope json choices", NGX_LF_DIALECT_DASHSCOPE, 0, -1,
      "{\"output\":{\"choices\":[{\"finish_reason\":\"stop\",\"message\":"
      "{\"role\":\"assistant\",\"content\":\"hi\",\"reasoning_content\":"
      "\"hmm\"}}]},\"usage\":{\"input_tokens\":30,\"output_tokens\":8,"
      "\"total_tokens\":38,\"prompt_tokens_details\":{\"cached_tokens\":"
      "10},\"output_tokens_details\":{\"reasoning_tokens\":5}},"
      "\"request_id\":\"r-2\"}",
      "", "hi", "hmm", "stop", "", 30, 8, 38, 10, 5, 0, NULL, NULL, 1, 0, 0 },

    { "dashscope sse cumulative", NGX_LF_DIALECT_DASHSCOPE, 1, -1,
      "id:1\nevent:result\n:HTTP_STATUS/200\ndata:{\"output\":{\"choices\":"
      "[{\"message\":{\"content\":\"He\",\"role\":\"assistant\"},"
      "\"finish_reason\":\"null\"}]},\"usage\":{\"input_tokens\":4,"
      "\"output_tokens\":1,\"total_tokens\":5},\"request_id\":\"x\"}\n\n"
      "id:2\nevent:result\n:HTTP_STATUS/200\ndata:{\"output\":{\"choices\":"
      "[{\"message\":{\"content\":\"Hello\",\"role\":\"assistant\"},"
      "\"finish_reason\":\"stop\"}]},\"usage\":{\"input_tokens\":4,"
      "\"output_tokens\":2,\"total_tokens\":6},\"request_id\":\"x\"}\n\n",
      "", "Hello", "", "stop", "", 4, 2, 6, UNSET, UNSET, 0, NULL, NULL,
      1, 0, 0 },

    { "dashscope sse incremental", NGX_LF_DIALECT_DASHSCOPE, 1, 1,
      "id:1\nevent:result\n:HTTP_STATUS/200\ndata:{\"output\":{\"text\":"
      "\"He\",\"finish_reason\":\"null\"},\"usage\":{\"input_tokens\":4,"
      "\"output_tokens\":1,\"total_tokens\":5}}\n\n"
      "id:2\nevent:result\n:HTTP_STATUS/200\ndata:{\"output\":{\"text\":"
      "\"llo\",\"finish_reason\":\"stop\"},\"usage\":{\"input_tokens\":4,"
      "\"output_tokens\":2,\"total_tokens\":6}}\n\n",
      "", "Hello", "", "stop", "", 4, 2, 6, UNSET, UNSET, 0, NULL, NULL,
      1, 0, 0 },

    { "dashscope sse error", NGX_LF_DIALECT_DASHSCOPE, 1, -1,
      "id:1\nevent:error\n:HTTP_STATUS/400\ndata:{\"code\":"
      "\"InvalidParameter\",\"message\":\"Range of input length should be "
      "[1, 30720]\",\"request_id\":\"y\"}\n\n",
      "", "", "", "", "Range of input length should be [1, 30720]", UNSET,
      UNSET, UNSET, UNSET, UNSET, 0, NULL, NULL, 0, 1, 0 },
};


static void
parse(const case_t *c, ngx_lf_record_t *rec, size_t piece)
{
    size_t            len, off, n;
    ngx_lf_parser_t  *p;

    ngx_lf_record_init(rec, 1024 * 1024);
    rec->dialect = c->dialect;
    rec->incremental = c->incremental;

    p = ngx_lf_response_parser_create(rec, c->sse);
    if (!UNIT_CHECK(p != NULL)) {
        return;
    }

    len = strlen(c->body);

    for (off = 0; off < len; off += n) {
        n = piece ? piece : len;
        if (n > len - off) {
            n = len - off;
        }

        (void) ngx_lf_parser_feed(p, (const u_char *) c->body + off, n);
    }

    (void) ngx_lf_parser_finish(p);
    ngx_lf_parser_destroy(p);
}


static void
check_str(const ngx_lf_buf_t *b, const char *expect)
{
    UNIT_CHECK_MEM(b->data ? (const char *) b->data : "", b->len,
                   expect, strlen(expect));
}


static void
test_responses(void)
{
    size_t            i, piece;
    const case_t     *c;
    ngx_lf_record_t   rec;

    for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        c = &cases[i];

        for (piece = 0; piece <= 7; piece++) {
            UNIT_CONTEXT("%s, pieces of %zu", c->name, piece);

            parse(c, &rec, piece);

            check_str(&rec.model, c->model);
            check_str(&rec.output, c->output);
            check_str(&rec.reasoning, c->reasoning);
            check_str(&rec.finish_reason, c->finish);
            check_str(&rec.error, c->error);
            UNIT_CHECK(rec.usage.input == c->input);
            UNIT_CHECK(rec.usage.output == c->output_tokens);
            UNIT_CHECK(rec.usage.total == c->total);
            UNIT_CHECK(rec.usage.cached == c->cached);
            UNIT_CHECK(rec.usage.reasoning == c->reasoning_tokens);
            UNIT_CHECK(rec.ntool_calls == c->ntools);
            UNIT_CHECK(rec.stream_done == c->done);
            UNIT_CHECK(rec.error_event == c->error_event);
            UNIT_CHECK(rec.response_error == c->response_error);

            if (c->ntools) {
                check_str(&rec.tool_calls[0].arguments, c->tool_args);
                check_str(&rec.tool_calls[0].name, c->tool_name);
                check_str(&rec.tool_calls[0].id, "call_1");
                check_str(&rec.tool_calls[1].name, "time");
            }

            ngx_lf_record_free(&rec);
        }
    }
}


static void
test_request(void)
{
    size_t            len, off, n, piece;
    ngx_lf_parser_t  *p;
    ngx_lf_record_t   rec;
    static const char  body[] =
        "{\"model\":\"qwen-plus\",\"stream\":true,\"temperature\":0.7,"
        "\"messages\":[{\"role\":\"system\",\"content\":\"Be brief.\"},"
        "{\"role\":\"user\",\"content\":\"Hi \\\"you\\\"\"}],"
        "\"stream_options\":{\"include_usage\":true},"
        "\"stop\":[\"\\n\\n\"],\"seed\":12345678901234567890,"
        "\"user\":\"u-7\",\"max_tokens\":256}";
    static const char  dashscope[] =
        "{\"model\":\"qwen-max\",\"input\":{\"messages\":[{\"role\":\"user\","
        "\"content\":\"x\"}]},\"parameters\":{\"result_format\":\"message\","
        "\"incremental_output\":true,\"top_p\":0.8}}";

    for (piece = 0; piece <= 7; piece++) {
        UNIT_CONTEXT("openai request, pieces of %zu", piece);

        ngx_lf_record_init(&rec, 1024 * 1024);
        rec.dialect = NGX_LF_DIALECT_OPENAI_CHAT;

        p = ngx_lf_request_parser_create(&rec);
        len = sizeof(body) - 1;

        for (off = 0; off < len; off += n) {
            n = piece ? piece : len;
            n = n > len - off ? len - off : n;
            (void) ngx_lf_parser_feed(p, (const u_char *) body + off, n);
        }

        UNIT_CHECK(ngx_lf_parser_finish(p) == 0);
        ngx_lf_parser_destroy(p);

        check_str(&rec.request_model, "qwen-plus");
        check_str(&rec.user, "u-7");
        UNIT_CHECK(rec.request_stream == 1);
        check_str(&rec.input, "[{\"role\":\"system\",\"content\":"
                  "\"Be brief.\"},{\"role\":\"user\",\"content\":"
                  "\"Hi \\\"you\\\"\"}]");
        /* containers become strings; big numbers keep their digits */
        check_str(&rec.params, "{\"temperature\":0.7,\"stop\":"
                  "\"[\\\"\\\\n\\\\n\\\"]\",\"seed\":12345678901234567890,"
                  "\"max_tokens\":256}");

        ngx_lf_record_free(&rec);

        UNIT_CONTEXT("dashscope request, pieces of %zu", piece);

        ngx_lf_record_init(&rec, 1024 * 1024);
        rec.dialect = NGX_LF_DIALECT_DASHSCOPE;

        p = ngx_lf_request_parser_create(&rec);
        len = sizeof(dashscope) - 1;

        for (off = 0; off < len; off += n) {
            n = piece ? piece : len;
            n = n > len - off ? len - off : n;
            (void) ngx_lf_parser_feed(p, (const u_char *) dashscope + off,
                                      n);
        }

        UNIT_CHECK(ngx_lf_parser_finish(p) == 0);
        ngx_lf_parser_destroy(p);

        check_str(&rec.request_model, "qwen-max");
        check_str(&rec.input, "{\"messages\":[{\"role\":\"user\","
                  "\"content\":\"x\"}]}");
        check_str(&rec.params, "{\"result_format\":\"message\","
                  "\"incremental_output\":true,\"top_p\":0.8}");
        UNIT_CHECK(rec.incremental == 1);

        ngx_lf_record_free(&rec);
    }
}


static void
feed_str(ngx_lf_parser_t *p, const char *s)
{
    (void) ngx_lf_parser_feed(p, (const u_char *) s, strlen(s));
}


static void
test_limits(void)
{
    size_t            i, n;
    char             *body;
    ngx_lf_parser_t  *p;
    ngx_lf_record_t   rec;

    /* nesting beyond the walk's depth is refused, not followed */
    UNIT_CONTEXT("deep nesting");

    n = 100000;
    body = malloc(n);
    memset(body, '[', n);

    ngx_lf_record_init(&rec, 1024);
    rec.dialect = NGX_LF_DIALECT_OPENAI_CHAT;
    p = ngx_lf_response_parser_create(&rec, 0);
    UNIT_CHECK(ngx_lf_parser_feed(p, (u_char *) body, n) == -1);
    UNIT_CHECK(ngx_lf_parser_finish(p) == -1);
    UNIT_CHECK(rec.response_error == 1);
    UNIT_CHECK(strcmp(ngx_lf_parser_error(p), "nesting too deep") == 0);
    ngx_lf_parser_destroy(p);
    ngx_lf_record_free(&rec);

    /* an endless string stops at the token cap, the output at its cap */
    UNIT_CONTEXT("endless string");

    ngx_lf_record_init(&rec, 1024);
    rec.dialect = NGX_LF_DIALECT_OPENAI_CHAT;
    p = ngx_lf_response_parser_create(&rec, 0);

    memset(body, 'a', n);
    (void) ngx_lf_parser_feed(p, (u_char *) "{\"x\":\"", 6);

    for (i = 0; i < 10; i++) {
        (void) ngx_lf_parser_feed(p, (u_char *) body, n);
    }

    UNIT_CHECK(rec.response_error == 0);
    UNIT_CHECK(ngx_lf_parser_finish(p) == -1);
    UNIT_CHECK(strcmp(ngx_lf_parser_error(p), "value too long") == 0);
    UNIT_CHECK(rec.response_raw.len == NGX_LF_RAW_MAX);
    ngx_lf_parser_destroy(p);
    ngx_lf_record_free(&rec);

    /* output text beyond the capture limit is cut, usage still found */
    UNIT_CONTEXT("capture limit");

    ngx_lf_record_init(&rec, 16);
    rec.dialect = NGX_LF_DIALECT_OPENAI_CHAT;
    p = ngx_lf_response_parser_create(&rec, 1);

    for (i = 0; i < 100; i++) {
        feed_str(p, "data: {\"choices\":[{\"delta\":{\"content\":"
                 "\"abc\"}}]}\n\n");
    }

    feed_str(p, "data: {\"choices\":[],\"usage\":{\"prompt_tokens\":1,"
             "\"completion_tokens\":100,\"total_tokens\":101}}\n\n");
    UNIT_CHECK(ngx_lf_parser_finish(p) == 0);
    check_str(&rec.output, "abcabcabcabcabca");
    UNIT_CHECK(rec.output.truncated == 1);
    UNIT_CHECK(rec.usage.output == 100);
    ngx_lf_parser_destroy(p);
    ngx_lf_record_free(&rec);

    free(body);
}


static int
contains(const u_char *text, size_t len, const char *needle)
{
    return memmem(text, len, needle, strlen(needle)) != NULL;
}


static void
test_event(void)
{
    size_t            len;
    yajl_gen          g;
    ngx_lf_span_t     span;
    const u_char     *text;
    ngx_lf_record_t   rec;

    UNIT_CONTEXT("otlp event");

    parse(&cases[0], &rec, 0);

    memset(&span, 0, sizeof(span));
    strcpy(span.trace_id, "0123456789abcdef0123456789abcdef");
    strcpy(span.span_id, "0123456789abcdef");
    span.start_ms = 1796292000000;
    span.first_ms = 1796292000350;
    span.end_ms = 1796292001200;
    span.name.data = (u_char *) "chat";
    span.name.len = 4;
    span.status = 200;
    span.complete = 1;

    g = yajl_gen_alloc(NULL);
    UNIT_CHECK(ngx_lf_event_write(g, NGX_LF_PROTO_OTLP, &rec, &span) == 0);
    UNIT_CHECK(ngx_lf_event_text(g, NGX_LF_PROTO_OTLP, &text, &len) == 0);

    /* disjoint buckets: 20 - 8 cached, 10 - 4 reasoning */
    UNIT_CHECK(contains(text, len, "{\\\"input\\\":12,\\\"output\\\":6,"
                      "\\\"total\\\":30,\\\"input_cached_tokens\\\":8,"
                      "\\\"output_reasoning_tokens\\\":4}"));
    UNIT_CHECK(contains(text, len, "\"startTimeUnixNano\":"
                      "\"1796292000000000000\""));
    UNIT_CHECK(contains(text, len, "\"stringValue\":\"\\\"2026-12-03T10:00:00"
                      ".350Z\\\"\""));

    yajl_gen_free(g);
    ngx_lf_record_free(&rec);
}


int
main(void)
{
    test_responses();
    test_request();
    test_limits();
    test_event();

    UNIT_DONE();
}
