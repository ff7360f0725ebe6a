
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
    const char  *tool_id;
    unsigned     done:1;
    unsigned     error_event:1;
    unsigned     response_error:1;
    int          sniffed;        /* the dialect the body's shape told */
    int64_t      embeddings, dimensions;
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
      "", "stop", "", 20, 10, 30, 8, 4, 0, NULL, NULL, NULL, 0, 0,
      0 },

    { "openai json usage first", NGX_LF_DIALECT_OPENAI_CHAT, 0, -1,
      "{\"usage\":{\"total_tokens\":3,\"prompt_tokens\":1,"
      "\"completion_tokens\":2},\"choices\":[{\"message\":{\"content\":"
      "\"ok\"}}],\"model\":\"m\",\"model\":\"m2\"}",
      "m2", "ok", "", "", "", 1, 2, 3, UNSET, UNSET, 0, NULL, NULL,
      NULL,
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
      NULL, NULL, NULL, 1, 0, 0 },

    { "openai sse no usage", NGX_LF_DIALECT_OPENAI_CHAT, 1, -1,
      "data: {\"choices\":[{\"delta\":{\"content\":\"a\"}}]}\n\n"
      "data: {\"choices\":[{\"delta\":{\"content\":\"b\"}}]}\n\n"
      "data: [DONE]",
      "", "ab", "", "", "", UNSET, UNSET, UNSET, UNSET, UNSET, 0, NULL,
      NULL, NULL, 1, 0, 0 },

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
      "{\"city\":\"Paris\"}", "get_weather", "call_1", 1, 0, 0 },

    { "openai error body", NGX_LF_DIALECT_OPENAI_CHAT, 0, -1,
      "{\"error\":{\"message\":\"Invalid model\",\"type\":"
      "\"invalid_request_error\",\"code\":null}}",
      "", "", "", "", "Invalid model", UNSET, UNSET, UNSET, UNSET, UNSET,
      0, NULL, NULL, NULL, 0, 0, 0 },

    { "openai error event", NGX_LF_DIALECT_OPENAI_CHAT, 1, -1,
      "data: {\"choices\":[{\"delta\":{\"content\":\"par\"}}]}\n\n"
      "data: {\"error\":{\"message\":\"overloaded\"}}\n\n",
      "", "par", "", "", "overloaded", UNSET, UNSET, UNSET, UNSET, UNSET,
      0, NULL, NULL, NULL, 0, 1, 0 },

    { "not json", NGX_LF_DIALECT_OPENAI_CHAT, 0, -1,
      "<html>502 Bad Gateway</html>",
      "", "", "", "", "", UNSET, UNSET, UNSET, UNSET, UNSET, 0, NULL, NULL,
      NULL,
      0, 0, 1 },

    { "dashscope json text", NGX_LF_DIALECT_DASHSCOPE, 0, -1,
      "{\"output\":{\"text\":\"\\u4f60\\u597d\",\"finish_reason\":\"stop\"},"
      "\"usage\":{\"input_tokens\":12,\"output_tokens\":3,"
      "\"total_tokens\":15},\"request_id\":\"r-1\"}",
      "", "\xe4\xbd\xa0\xe5\xa5\xbd", "", "stop", "", 12, 3, 15, UNSET,
      UNSET, 0, NULL, NULL, NULL, 1, 0, 0 },

    { "dashscope json choices", NGX_LF_DIALECT_DASHSCOPE, 0, -1,
      "{\"output\":{\"choices\":[{\"finish_reason\":\"stop\",\"message\":"
      "{\"role\":\"assistant\",\"content\":\"hi\",\"reasoning_content\":"
      "\"hmm\"}}]},\"usage\":{\"input_tokens\":30,\"output_tokens\":8,"
      "\"total_tokens\":38,\"prompt_tokens_details\":{\"cached_tokens\":"
      "10},\"output_tokens_details\":{\"reasoning_tokens\":5}},"
      "\"request_id\":\"r-2\"}",
      "", "hi", "hmm", "stop", "", 30, 8, 38, 10, 5, 0, NULL, NULL, NULL,
      1, 0, 0 },

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
      NULL,
      1, 0, 0 },

    { "dashscope sse incremental", NGX_LF_DIALECT_DASHSCOPE, 1, 1,
      "id:1\nevent:result\n:HTTP_STATUS/200\ndata:{\"output\":{\"text\":"
      "\"He\",\"finish_reason\":\"null\"},\"usage\":{\"input_tokens\":4,"
      "\"output_tokens\":1,\"total_tokens\":5}}\n\n"
      "id:2\nevent:result\n:HTTP_STATUS/200\ndata:{\"output\":{\"text\":"
      "\"llo\",\"finish_reason\":\"stop\"},\"usage\":{\"input_tokens\":4,"
      "\"output_tokens\":2,\"total_tokens\":6}}\n\n",
      "", "Hello", "", "stop", "", 4, 2, 6, UNSET, UNSET, 0, NULL, NULL,
      NULL,
      1, 0, 0 },

    { "dashscope sse error", NGX_LF_DIALECT_DASHSCOPE, 1, -1,
      "id:1\nevent:error\n:HTTP_STATUS/400\ndata:{\"code\":"
      "\"InvalidParameter\",\"message\":\"Range of input length should be "
      "[1, 30720]\",\"request_id\":\"y\"}\n\n",
      "", "", "", "", "Range of input length should be [1, 30720]", UNSET,
      UNSET, UNSET, UNSET, UNSET, 0, NULL, NULL, NULL, 0, 1, 0 },

    { .name = "responses json", .dialect = NGX_LF_DIALECT_OPENAI_RESPONSES,
      .incremental = -1,
      .body = "{\"id\":\"resp_1\",\"object\":\"response\",\"status\":"
      "\"completed\",\"model\":\"gpt-4.1\",\"output\":[{\"type\":"
      "\"reasoning\",\"summary\":[{\"type\":\"summary_text\",\"text\":"
      "\"plan\"}]},{\"type\":\"message\",\"role\":\"assistant\","
      "\"content\":[{\"type\":\"output_text\",\"text\":\"Hi!\","
      "\"annotations\":[]}]},{\"type\":\"function_call\",\"call_id\":"
      "\"call_9\",\"name\":\"lookup\",\"arguments\":\"{\\\"q\\\":1}\"}],"
      "\"usage\":{\"input_tokens\":50,\"input_tokens_details\":"
      "{\"cached_tokens\":20},\"output_tokens\":30,"
      "\"output_tokens_details\":{\"reasoning_tokens\":12},"
      "\"total_tokens\":80},\"error\":null}",
      .model = "gpt-4.1", .output = "Hi!", .reasoning = "plan",
      .finish = "completed", .error = "", .input = 50, .output_tokens = 30,
      .total = 80, .cached = 20, .reasoning_tokens = 12, .ntools = 1,
      .tool_args = "{\"q\":1}", .tool_name = "lookup", .tool_id = "call_9" },

    { .name = "responses sse", .dialect = NGX_LF_DIALECT_OPENAI_RESPONSES,
      .sse = 1, .incremental = -1,
      .body = "event: response.created\ndata: {\"type\":\"response.created\","
      "\"response\":{\"id\":\"resp_2\",\"model\":\"gpt-4.1\",\"status\":"
      "\"in_progress\",\"output\":[],\"usage\":null}}\n\n"
      "event: response.output_text.delta\ndata: {\"type\":"
      "\"response.output_text.delta\",\"output_index\":0,\"delta\":"
      "\"Hel\"}\n\n"
      "data: {\"type\":\"response.output_text.delta\",\"output_index\":0,"
      "\"delta\":\"lo\"}\n\n"
      "event: response.output_item.added\ndata: {\"type\":"
      "\"response.output_item.added\",\"output_index\":1,\"item\":{\"type\":"
      "\"function_call\",\"call_id\":\"call_3\",\"name\":\"f\","
      "\"arguments\":\"\"}}\n\n"
      "event: response.function_call_arguments.delta\ndata: {\"type\":"
      "\"response.function_call_arguments.delta\",\"output_index\":1,"
      "\"delta\":\"{}\"}\n\n"
      "event: response.completed\ndata: {\"type\":\"response.completed\","
      "\"response\":{\"id\":\"resp_2\",\"model\":\"gpt-4.1\",\"status\":"
      "\"completed\",\"output\":[{\"type\":\"message\",\"content\":[{"
      "\"type\":\"output_text\",\"text\":\"Hello\"}]}],\"usage\":{"
      "\"input_tokens\":7,\"output_tokens\":3,\"total_tokens\":10}}}\n\n",
      .model = "gpt-4.1", .output = "Hello", .reasoning = "",
      .finish = "completed", .error = "", .input = 7, .output_tokens = 3,
      .total = 10, .cached = UNSET, .reasoning_tokens = UNSET, .ntools = 1,
      .tool_args = "{}", .tool_name = "f", .tool_id = "call_3", .done = 1 },

    { .name = "embeddings floats",
      .dialect = NGX_LF_DIALECT_OPENAI_EMBEDDINGS, .incremental = -1,
      .body = "{\"object\":\"list\",\"data\":[{\"object\":\"embedding\","
      "\"index\":0,\"embedding\":[0.1,-0.2,3e-5,0.4]},{\"object\":"
      "\"embedding\",\"index\":1,\"embedding\":[1,2,3,4]}],\"model\":"
      "\"text-embedding-3-small\",\"usage\":{\"prompt_tokens\":8,"
      "\"total_tokens\":8}}",
      .model = "text-embedding-3-small", .output = "", .reasoning = "",
      .finish = "", .error = "", .input = 8, .output_tokens = UNSET,
      .total = 8, .cached = UNSET, .reasoning_tokens = UNSET,
      .embeddings = 2, .dimensions = 4 },

    { .name = "embeddings base64",
      .dialect = NGX_LF_DIALECT_OPENAI_EMBEDDINGS, .incremental = -1,
      .body = "{\"data\":[{\"embedding\":\"AACAPwAAAEAAAEBA\"}],\"model\":"
      "\"e\",\"usage\":{\"prompt_tokens\":2,\"total_tokens\":2}}",
      .model = "e", .output = "", .reasoning = "", .finish = "",
      .error = "", .input = 2, .output_tokens = UNSET, .total = 2,
      .cached = UNSET, .reasoning_tokens = UNSET, .embeddings = 1,
      .dimensions = 3 },

    { .name = "anthropic json", .dialect = NGX_LF_DIALECT_ANTHROPIC,
      .incremental = -1,
      .body = "{\"id\":\"msg_1\",\"type\":\"message\",\"role\":\"assistant\","
      "\"model\":\"claude-sonnet-4\",\"content\":[{\"type\":\"thinking\","
      "\"thinking\":\"hm\"},{\"type\":\"text\",\"text\":\"Sure.\"},"
      "{\"type\":\"tool_use\",\"id\":\"toolu_1\",\"name\":\"get\","
      "\"input\":{\"city\":\"Oslo\",\"n\":[1,2]}}],\"stop_reason\":"
      "\"tool_use\",\"usage\":{\"input_tokens\":100,"
      "\"cache_creation_input_tokens\":30,\"cache_read_input_tokens\":50,"
      "\"output_tokens\":40}}",
      .model = "claude-sonnet-4", .output = "Sure.", .reasoning = "hm",
      .finish = "tool_use", .error = "", .input = 100, .output_tokens = 40,
      .total = UNSET, .cached = 50, .reasoning_tokens = UNSET, .ntools = 1,
      .tool_args = "{\"city\":\"Oslo\",\"n\":[1,2]}", .tool_name = "get",
      .tool_id = "toolu_1" },

    { .name = "anthropic sse", .dialect = NGX_LF_DIALECT_ANTHROPIC,
      .sse = 1, .incremental = -1,
      .body = "event: message_start\ndata: {\"type\":\"message_start\","
      "\"message\":{\"id\":\"msg_2\",\"model\":\"claude-3-5-haiku\","
      "\"usage\":{\"input_tokens\":25,\"cache_read_input_tokens\":10,"
      "\"output_tokens\":1}}}\n\n"
      "event: ping\ndata: {\"type\":\"ping\"}\n\n"
      "event: content_block_start\ndata: {\"type\":\"content_block_start\","
      "\"index\":0,\"content_block\":{\"type\":\"text\",\"text\":\"\"}}\n\n"
      "event: content_block_delta\ndata: {\"type\":\"content_block_delta\","
      "\"index\":0,\"delta\":{\"type\":\"text_delta\",\"text\":\"Hi\"}}\n\n"
      "event: content_block_start\ndata: {\"type\":\"content_block_start\","
      "\"index\":1,\"content_block\":{\"type\":\"tool_use\",\"id\":"
      "\"toolu_2\",\"name\":\"calc\",\"input\":{}}}\n\n"
      "event: content_block_delta\ndata: {\"type\":\"content_block_delta\","
      "\"index\":1,\"delta\":{\"type\":\"input_json_delta\","
      "\"partial_json\":\"{\\\"x\\\":\"}}\n\n"
      "event: content_block_delta\ndata: {\"type\":\"content_block_delta\","
      "\"index\":1,\"delta\":{\"type\":\"input_json_delta\","
      "\"partial_json\":\"2}\"}}\n\n"
      "event: message_delta\ndata: {\"type\":\"message_delta\",\"delta\":"
      "{\"stop_reason\":\"tool_use\"},\"usage\":{\"input_tokens\":25,"
      "\"cache_read_input_tokens\":10,\"output_tokens\":15}}\n\n"
      "event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n",
      .model = "claude-3-5-haiku", .output = "Hi", .reasoning = "",
      .finish = "tool_use", .error = "", .input = 25, .output_tokens = 15,
      .total = UNSET, .cached = 10, .reasoning_tokens = UNSET, .ntools = 1,
      .tool_args = "{\"x\":2}", .tool_name = "calc", .tool_id = "toolu_2",
      .done = 1 },

    { .name = "anthropic error event", .dialect = NGX_LF_DIALECT_ANTHROPIC,
      .sse = 1, .incremental = -1,
      .body = "event: error\ndata: {\"type\":\"error\",\"error\":{\"type\":"
      "\"overloaded_error\",\"message\":\"Overloaded\"}}\n\n",
      .model = "", .output = "", .reasoning = "", .finish = "",
      .error = "Overloaded", .input = UNSET, .output_tokens = UNSET,
      .total = UNSET, .cached = UNSET, .reasoning_tokens = UNSET,
      .error_event = 1 },

    { .name = "gemini json", .dialect = NGX_LF_DIALECT_GEMINI,
      .incremental = -1,
      .body = "{\"candidates\":[{\"content\":{\"parts\":[{\"text\":\"think\","
      "\"thought\":true},{\"text\":\"Answer\"},{\"functionCall\":{\"name\":"
      "\"find\",\"args\":{\"q\":\"x\"}}}],\"role\":\"model\"},"
      "\"finishReason\":\"STOP\",\"index\":0}],\"usageMetadata\":{"
      "\"promptTokenCount\":40,\"candidatesTokenCount\":9,"
      "\"totalTokenCount\":60,\"cachedContentTokenCount\":16,"
      "\"thoughtsTokenCount\":11},\"modelVersion\":\"gemini-2.5-flash\","
      "\"responseId\":\"g-1\"}",
      .model = "gemini-2.5-flash", .output = "Answer",
      .reasoning = "think", .finish = "STOP", .error = "", .input = 40,
      .output_tokens = 9, .total = 60, .cached = 16,
      .reasoning_tokens = 11, .ntools = 1, .tool_args = "{\"q\":\"x\"}",
      .tool_name = "find", .tool_id = "" },

    { .name = "gemini sse", .dialect = NGX_LF_DIALECT_GEMINI, .sse = 1,
      .incremental = -1,
      .body = "data: {\"candidates\":[{\"content\":{\"parts\":[{\"text\":"
      "\"Hel\"}],\"role\":\"model\"},\"index\":0}],\"usageMetadata\":{"
      "\"promptTokenCount\":5,\"candidatesTokenCount\":1,"
      "\"totalTokenCount\":6},\"modelVersion\":\"gemini-2.0-flash\"}\r\n\r\n"
      "data: {\"candidates\":[{\"content\":{\"parts\":[{\"text\":\"lo\"}],"
      "\"role\":\"model\"},\"finishReason\":\"STOP\",\"index\":0}],"
      "\"usageMetadata\":{\"promptTokenCount\":5,"
      "\"candidatesTokenCount\":2,\"totalTokenCount\":7},"
      "\"modelVersion\":\"gemini-2.0-flash\"}\r\n\r\n",
      .model = "gemini-2.0-flash", .output = "Hello", .reasoning = "",
      .finish = "STOP", .error = "", .input = 5, .output_tokens = 2,
      .total = 7, .cached = UNSET, .reasoning_tokens = UNSET },

    { .name = "gemini json array stream", .dialect = NGX_LF_DIALECT_GEMINI,
      .incremental = -1,
      .body = "[{\"candidates\":[{\"content\":{\"parts\":[{\"text\":\"a\"}]}}],"
      "\"usageMetadata\":{\"promptTokenCount\":3,\"totalTokenCount\":3}}\n,"
      "{\"candidates\":[{\"content\":{\"parts\":[{\"text\":\"b\"}]},"
      "\"finishReason\":\"STOP\"}],\"usageMetadata\":{\"promptTokenCount\":"
      "3,\"candidatesTokenCount\":2,\"totalTokenCount\":5}}]",
      .model = "", .output = "ab", .reasoning = "", .finish = "STOP",
      .error = "", .input = 3, .output_tokens = 2, .total = 5,
      .cached = UNSET, .reasoning_tokens = UNSET },

    { .name = "unknown path, chat body", .dialect = NGX_LF_DIALECT_UNKNOWN,
      .incremental = -1,
      .body = "{\"model\":\"llama3\",\"choices\":[{\"message\":{\"content\":"
      "\"yo\"}}],\"usage\":{\"prompt_tokens\":1,\"completion_tokens\":1,"
      "\"total_tokens\":2}}",
      .model = "", .output = "yo", .reasoning = "", .finish = "",
      .error = "", .input = 1, .output_tokens = 1, .total = 2,
      .cached = UNSET, .reasoning_tokens = UNSET,
      .sniffed = NGX_LF_DIALECT_OPENAI_CHAT },
{ .name = "vllm tool call keys, id before index",
      .dialect = NGX_LF_DIALECT_OPENAI_CHAT, .sse = 1, .incremental = -1,
      .body = "data: {\"choices\":[{\"index\":0,\"delta\":{\"tool_calls\":["
      "{\"id\":\"call_a\",\"type\":\"function\",\"index\":0,\"function\":"
      "{\"name\":\"f\",\"arguments\":\"\"}}]}}]}\n\n"
      "data: {\"choices\":[{\"index\":0,\"delta\":{\"tool_calls\":["
      "{\"id\":\"call_b\",\"type\":\"function\",\"index\":1,\"function\":"
      "{\"name\":\"g\",\"arguments\":\"{}\"}}]}}]}\n\n"
      "data: {\"choices\":[{\"index\":0,\"delta\":{\"tool_calls\":["
      "{\"index\":0,\"function\":{\"arguments\":\"{\\\"x\\\":1}\"}}]}}]}\n\n"
      "data: [DONE]\n\n",
      .model = "", .output = "", .reasoning = "", .finish = "", .error = "",
      .input = UNSET, .output_tokens = UNSET, .total = UNSET,
      .cached = UNSET, .reasoning_tokens = UNSET, .ntools = 2,
      .tool_args = "{\"x\":1}", .tool_name = "f", .tool_id = "call_a",
      .done = 1 },

    { .name = "stream cut inside an event",
      .dialect = NGX_LF_DIALECT_OPENAI_CHAT, .sse = 1, .incremental = -1,
      .body = "data: {\"choices\":[{\"delta\":{\"content\":\"a\"}}]}\n\n"
      "data: {\"choices\":[{\"delta\":{\"content\":\"b\"},",
      .model = "", .output = "a", .reasoning = "", .finish = "",
      .error = "", .input = UNSET, .output_tokens = UNSET, .total = UNSET,
      .cached = UNSET, .reasoning_tokens = UNSET },

    { .name = "repeated content key", .dialect = NGX_LF_DIALECT_OPENAI_CHAT,
      .incremental = -1,
      .body = "{\"choices\":[{\"message\":{\"content\":\"draft\","
      "\"content\":\"final\"}}]}",
      .model = "", .output = "final", .reasoning = "", .finish = "",
      .error = "", .input = UNSET, .output_tokens = UNSET, .total = UNSET,
      .cached = UNSET, .reasoning_tokens = UNSET },
{ .name = "anthropic body on a chat completions path",
      .dialect = NGX_LF_DIALECT_OPENAI_CHAT, .incremental = -1,
      .body = "{\"id\":\"msg_9\",\"type\":\"message\",\"model\":\"claude\","
      "\"content\":[{\"type\":\"text\",\"text\":\"via a proxy\"}],"
      "\"stop_reason\":\"end_turn\",\"usage\":{\"input_tokens\":4,"
      "\"output_tokens\":3}}",
      .model = "claude", .output = "via a proxy", .reasoning = "",
      .finish = "end_turn", .error = "", .input = 4, .output_tokens = 3,
      .total = UNSET, .cached = UNSET, .reasoning_tokens = UNSET,
      .sniffed = NGX_LF_DIALECT_ANTHROPIC },
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
                check_str(&rec.tool_calls[0].id, c->tool_id);
            }

            UNIT_CHECK((int) rec.dialect == (c->sniffed ? c->sniffed
                                                          : c->dialect));
            UNIT_CHECK(rec.embeddings == (c->embeddings ? c->embeddings
                                                        : -1));
            UNIT_CHECK(rec.dimensions == (c->dimensions ? c->dimensions
                                                        : -1));

            ngx_lf_record_free(&rec);
        }
    }
}


static void
parse_request(ngx_lf_record_t *rec, int dialect, const char *body,
    size_t piece)
{
    size_t            len, off, n;
    ngx_lf_parser_t  *p;

    ngx_lf_record_init(rec, 1024 * 1024);
    rec->dialect = dialect;

    p = ngx_lf_request_parser_create(rec);
    len = strlen(body);

    for (off = 0; off < len; off += n) {
        n = piece ? piece : len;
        n = n > len - off ? len - off : n;
        (void) ngx_lf_parser_feed(p, (const u_char *) body + off, n);
    }

    UNIT_CHECK(ngx_lf_parser_finish(p) == 0);
    ngx_lf_parser_destroy(p);
}


static void
test_request(void)
{
    size_t            piece;
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

        parse_request(&rec, NGX_LF_DIALECT_OPENAI_CHAT, body, piece);

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

        parse_request(&rec, NGX_LF_DIALECT_DASHSCOPE, dashscope, piece);

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
test_request_repeated_keys(void)
{
    ngx_lf_record_t   rec;
    static const char  body[] =
        "{\"model\":\"a\",\"temperature\":1,\"top_p\":0.5,"
        "\"temperature\":2,\"model\":\"b\",\"stop\":[\"x\"],"
        "\"stop\":\"y\"}";

    UNIT_CONTEXT("repeated request keys");

    parse_request(&rec, NGX_LF_DIALECT_OPENAI_CHAT, body, 0);

    /* the last value of a key, in the place of its first */
    check_str(&rec.request_model, "b");
    check_str(&rec.params, "{\"temperature\":2,\"top_p\":0.5,"
              "\"stop\":\"y\"}");

    ngx_lf_record_free(&rec);

    UNIT_CONTEXT("request body that is no object");

    parse_request(&rec, NGX_LF_DIALECT_OPENAI_CHAT, "[1,2,3]", 0);

    check_str(&rec.params, "");

    ngx_lf_record_free(&rec);
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
    test_request_repeated_keys();
    test_limits();
    test_event();

    UNIT_DONE();
}
