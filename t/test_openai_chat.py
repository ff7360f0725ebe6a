"""OpenAI chat completions, non-streaming: what one proxied call turns
into (one OTLP span with exact attributes), while the client gets the
upstream's bytes unchanged."""

import json
import threading
import time

import pytest

from lfcheck import (CST, INPUT, LEVEL, META, MODEL, OUTPUT, PARAMS,
                     STATUS_MSG, TRACE_NAME, TYPE, USAGE, assistant,
                     check_cst, check_envelope, end_ms, jattr, lf_keys, meta,
                     start_ms, usage)
from upstream import Case, openai_completion, openai_json, openai_usage

PATH = "/v1/chat/completions"

CONF = """
server {
    listen 127.0.0.1:@PORT@;
    location / { @LF@ proxy_http_version 1.1; proxy_pass @UP@; }
}
server {
    listen 127.0.0.1:@PORT_NOBUF@;
    location / { @LF@ proxy_http_version 1.1; proxy_buffering off;
                 proxy_pass @UP@; }
}
server {
    listen 127.0.0.1:@PORT_NOREQBUF@;
    location / { @LF@ proxy_http_version 1.1; proxy_request_buffering off;
                 proxy_pass @UP@; }
}
server {
    listen 127.0.0.1:@PORT_OFF@;
    location / { proxy_http_version 1.1; proxy_pass @UP@; }
}
"""

MESSAGES = [{"role": "system", "content": "You are terse."},
            {"role": "user", "content": "Say hi"}]


@pytest.fixture(scope="module")
def gw(module_nginx):
    return module_nginx(CONF)


def call(gw, upstream, case, req, port="PORT", path=PATH, headers=None,
         **kw):
    """Send req through nginx for a scripted case; checks the client got
    the upstream's exact bytes and the upstream the client's."""
    cid = upstream.add(case)
    raw = req if isinstance(req, bytes) else json.dumps(
        req, ensure_ascii=False).encode()
    t0 = time.time()
    r = gw.post(path, raw, case=cid, port=port, headers=headers, **kw)
    t1 = time.time()
    assert r.status == case.status, r
    assert r.body == case.wire_body
    assert r.complete
    got, = case.requests
    if "chunked" not in kw:
        assert got.body == raw
    r.window = (t0, t1)
    return r


def test_basic_exact_attributes(gw, upstream, sink):
    req = {"model": "gpt-4o-mini", "messages": MESSAGES,
           "temperature": 0.2, "max_tokens": 256}
    case = Case(body=openai_json(
        content="Hi!", model="gpt-4o-mini-2024-07-18", id="chatcmpl-abc123",
        usage=openai_usage(20, 10, 30, cached=8, reasoning=4)))
    r = call(gw, upstream, case, req)
    sp = sink.span_for(r.trace_id)
    check_envelope(sp, r.trace_id, "chat.completions", r.window)
    assert "parentSpanId" not in sp or sp["parentSpanId"] in ("", None)
    a = sp["attributes"]
    assert lf_keys(sp) == {
        TYPE, TRACE_NAME, MODEL, PARAMS, INPUT, OUTPUT, USAGE, CST,
        META + "http_status", META + "method", META + "uri", META + "stream",
        META + "finish_reason", META + "response_id"}
    assert a[TYPE] == "generation"
    assert a[TRACE_NAME] == "chat.completions"
    assert a[MODEL] == "gpt-4o-mini-2024-07-18"
    assert jattr(sp, PARAMS) == {"temperature": 0.2, "max_tokens": 256}
    assert jattr(sp, INPUT) == MESSAGES
    assert jattr(sp, OUTPUT) == {"role": "assistant", "content": "Hi!"}
    assert jattr(sp, USAGE) == {"input": 12, "output": 6, "total": 30,
                                "input_cached_tokens": 8,
                                "output_reasoning_tokens": 4}
    assert meta(sp) == {"http_status": "200", "method": "POST",
                        "uri": PATH, "stream": "false",
                        "finish_reason": "stop",
                        "response_id": "chatcmpl-abc123"}
    check_cst(sp)
    sink.assert_exactly_once([r.trace_id])
    # the export request itself
    rec = sp["record"]
    assert rec.auth == ("pk-lf-test", "sk-lf-test")
    assert rec.gzip


@pytest.mark.parametrize("u, want", [
    (openai_usage(9, 3, 12), {"input": 9, "output": 3, "total": 12}),
    (openai_usage(20, 10, 30, cached=0, reasoning=0),
     {"input": 20, "output": 10, "total": 30, "input_cached_tokens": 0,
      "output_reasoning_tokens": 0}),
    (openai_usage(100, 50, 150, cached=100),
     {"input": 0, "output": 50, "total": 150, "input_cached_tokens": 100}),
    (openai_usage(7, 40, 47, reasoning=40),
     {"input": 7, "output": 0, "total": 47, "output_reasoning_tokens": 40}),
    # total as reported, not recomputed
    (openai_usage(5, 5, 11), {"input": 5, "output": 5, "total": 11}),
], ids=["plain", "zero-details", "all-cached", "all-reasoning",
        "odd-total"])
def test_usage_normalization(gw, upstream, sink, u, want):
    r = call(gw, upstream, Case(body=openai_json(usage=u)),
             {"model": "gpt-4o-mini", "messages": MESSAGES})
    assert jattr(sink.span_for(r.trace_id), USAGE) == want


def test_no_usage_reported_means_no_usage_details(gw, upstream, sink):
    r = call(gw, upstream, Case(body=openai_json(content="x", usage=None)),
             {"model": "gpt-4o-mini", "messages": MESSAGES})
    sp = sink.span_for(r.trace_id)
    assert USAGE not in sp["attributes"]
    assert jattr(sp, OUTPUT) == assistant("x")


def test_model_from_request_when_response_has_none(gw, upstream, sink):
    body = openai_completion(content="ok")
    del body["model"]
    r = call(gw, upstream, Case(body=body),
             {"model": "my-local-llama", "messages": MESSAGES})
    assert sink.span_for(r.trace_id)["attributes"][MODEL] == \
        "my-local-llama"


def test_parameters_scalars_and_non_scalars(gw, upstream, sink):
    req = {"model": "gpt-4o", "messages": MESSAGES, "stream": False,
           "temperature": 0.7, "top_p": 0.9, "n": 1, "seed": 42,
           "presence_penalty": -0.5, "logprobs": False,
           "tool_choice": "auto", "stop": ["\n\n", "END"],
           "response_format": {"type": "json_object"},
           "logit_bias": {"50256": -100}, "user": "alice-42"}
    r = call(gw, upstream, Case(body=openai_json(content="{}")), req)
    sp = sink.span_for(r.trace_id)
    params = jattr(sp, PARAMS)
    assert set(params) == {"temperature", "top_p", "n", "seed",
                           "presence_penalty", "logprobs", "tool_choice",
                           "stop", "response_format", "logit_bias"}
    assert params["temperature"] == 0.7 and params["top_p"] == 0.9
    assert params["n"] == 1 and params["seed"] == 42
    assert params["presence_penalty"] == -0.5
    assert params["logprobs"] is False
    assert params["tool_choice"] == "auto"
    # non-scalar values are carried as JSON text
    for k, v in (("stop", ["\n\n", "END"]),
                 ("response_format", {"type": "json_object"}),
                 ("logit_bias", {"50256": -100})):
        assert isinstance(params[k], str), (k, params[k])
        assert json.loads(params[k]) == v
    # "user" is not a parameter but the trace's user
    assert sp["attributes"]["user.id"] == "alice-42"
    assert meta(sp)["stream"] == "false"


def test_no_parameters_omits_attribute(gw, upstream, sink):
    r = call(gw, upstream, Case(body=openai_json()),
             {"model": "gpt-4o", "messages": MESSAGES})
    assert PARAMS not in sink.span_for(r.trace_id)["attributes"]


def test_tools_input_and_tool_call_output(gw, upstream, sink):
    tools = [{"type": "function", "function": {
        "name": "get_weather", "description": "Weather of a city",
        "parameters": {"type": "object", "properties": {
            "city": {"type": "string"}}, "required": ["city"]}}}]
    calls = [{"id": "call_abc", "type": "function", "function": {
        "name": "get_weather", "arguments": "{\"city\":\"Paris\"}"}},
        {"id": "call_def", "type": "function", "function": {
            "name": "get_weather", "arguments": "{\"city\":\"Oslo\"}"}}]
    msgs = [{"role": "user", "content": "Weather in Paris and Oslo?"}]
    r = call(gw, upstream, Case(body=openai_json(
        content=None, tool_calls=calls, finish_reason="tool_calls")),
        {"model": "gpt-4o", "messages": msgs, "tools": tools})
    sp = sink.span_for(r.trace_id)
    assert jattr(sp, INPUT) == {"messages": msgs, "tools": tools}
    out = jattr(sp, OUTPUT)
    assert out["role"] == "assistant"
    assert out.get("content") in ("", None)
    assert out["tool_calls"] == calls
    assert set(out) <= {"role", "content", "tool_calls"}
    assert meta(sp)["finish_reason"] == "tool_calls"
    assert PARAMS not in sp["attributes"]  # tools is content, not a param


def test_reasoning_content(gw, upstream, sink):
    r = call(gw, upstream, Case(body=openai_json(
        content="42", reasoning_content="6 times 7 is 42.",
        model="deepseek-reasoner",
        usage=openai_usage(10, 20, 30, reasoning=15))),
        {"model": "deepseek-reasoner", "messages": MESSAGES})
    sp = sink.span_for(r.trace_id)
    assert jattr(sp, OUTPUT) == assistant("42", reasoning="6 times 7 is 42.")
    assert jattr(sp, USAGE) == usage(10, 20, 30, reasoning=15)


def test_text_escaping_round_trips(gw, upstream, sink):
    tricky = ('quote " backslash \\ slash / newline \n tab \t cr \r '
              'ctl \u0001\u001f nul-ish \u007f unicode é 中文 🌍 '
              '\u2028 end')
    msgs = [{"role": "user", "content": tricky}]
    r = call(gw, upstream, Case(body=openai_json(content=tricky)),
             {"model": "gpt-4o", "messages": msgs})
    sp = sink.span_for(r.trace_id)
    assert jattr(sp, INPUT) == msgs
    assert jattr(sp, OUTPUT) == assistant(tricky)


@pytest.mark.parametrize("status", [400, 404, 429])
def test_upstream_error_with_openai_message(gw, upstream, sink, status):
    case = Case(status=status, body=json.dumps(
        {"error": {"message": "Invalid model",
                   "type": "invalid_request_error"}}).encode())
    r = call(gw, upstream, case, {"model": "nope", "messages": MESSAGES})
    sp = sink.span_for(r.trace_id)
    check_envelope(sp, r.trace_id, window=r.window, error="Invalid model")
    a = sp["attributes"]
    assert a[LEVEL] == "ERROR"
    assert a[STATUS_MSG] == "Invalid model"
    assert meta(sp)["http_status"] == str(status)
    assert a[MODEL] == "nope"
    assert USAGE not in a


@pytest.mark.parametrize("status, body, ctype", [
    (500, b"Internal Server Error", "text/plain"),
    (503, b"", None),
    (502, b"<html><body>bad gateway</body></html>", "text/html"),
    (500, b'{"detail":"no message key here"}', "application/json"),
])
def test_upstream_error_without_message(gw, upstream, sink, status, body,
                                        ctype):
    case = Case(status=status, body=body, content_type=ctype)
    r = call(gw, upstream, case, {"model": "gpt-4o", "messages": MESSAGES})
    sp = sink.span_for(r.trace_id)
    msg = "upstream status %d" % status
    check_envelope(sp, r.trace_id, window=r.window, error=msg)
    assert sp["attributes"][LEVEL] == "ERROR"
    assert sp["attributes"][STATUS_MSG] == msg
    assert meta(sp)["http_status"] == str(status)


def test_non_json_body_becomes_json_string_output(gw, upstream, sink):
    text = "plain text answer, not JSON: {oops"
    r = call(gw, upstream, Case(body=text.encode(), content_type="text/plain"),
             {"model": "gpt-4o", "messages": MESSAGES})
    sp = sink.span_for(r.trace_id)
    assert jattr(sp, OUTPUT) == text
    assert LEVEL not in sp["attributes"]
    assert USAGE not in sp["attributes"]


@pytest.mark.parametrize("port", ["PORT", "PORT_NOBUF"])
@pytest.mark.parametrize("chunks", [None, "cycle"])
def test_gzip_response(gw, upstream, sink, port, chunks):
    content = "Compressed answer " * 40 + "é🌍"
    case = Case(body=openai_json(content=content,
                                 usage=openai_usage(30, 200, 230)),
                gzip=True, chunks=chunks, chunk_delay=0.001)
    r = call(gw, upstream, case, {"model": "gpt-4o", "messages": MESSAGES},
             port=port, headers={"Accept-Encoding": "gzip"})
    assert r.header("Content-Encoding") == "gzip"
    assert r.body[:2] == b"\x1f\x8b"  # client got the compressed bytes
    sp = sink.span_for(r.trace_id)
    assert jattr(sp, OUTPUT) == assistant(content)
    assert jattr(sp, USAGE) == usage(30, 200, 230)


@pytest.mark.parametrize("port", ["PORT", "PORT_NOBUF", "PORT_NOREQBUF"])
@pytest.mark.parametrize("framing", ["length", "chunked", "close"])
def test_buffering_and_framing(gw, upstream, sink, port, framing):
    content = "Split into small pieces: añb 中文 🌍 " * 6
    case = Case(body=openai_json(content=content, id="chatcmpl-split",
                                 usage=openai_usage(11, 22, 33)),
                chunks="cycle", chunk_delay=0.001, framing=framing)
    r = call(gw, upstream, case, {"model": "gpt-4o", "messages": MESSAGES,
                                  "max_tokens": 64}, port=port)
    sp = sink.span_for(r.trace_id)
    check_envelope(sp, r.trace_id, window=r.window)
    assert jattr(sp, OUTPUT) == assistant(content)
    assert jattr(sp, USAGE) == usage(11, 22, 33)
    assert jattr(sp, INPUT) == MESSAGES
    assert jattr(sp, PARAMS) == {"max_tokens": 64}
    assert meta(sp)["response_id"] == "chatcmpl-split"


@pytest.mark.parametrize("port", ["PORT", "PORT_NOREQBUF"])
def test_chunked_request_body(gw, upstream, sink, port):
    req = json.dumps({"model": "gpt-4o", "messages": MESSAGES,
                      "temperature": 1}).encode()
    pieces = [req[i:i + 5] for i in range(0, len(req), 5)]
    case = Case(body=openai_json(content="ok"))
    r = call(gw, upstream, case, req, port=port, chunked=pieces)
    assert case.requests[0].body == req
    sp = sink.span_for(r.trace_id)
    assert jattr(sp, INPUT) == MESSAGES
    assert jattr(sp, PARAMS) == {"temperature": 1}


@pytest.mark.parametrize("port", ["PORT", "PORT_NOREQBUF"])
def test_large_request_body(gw, upstream, sink, port):
    # bigger than client_body_buffer_size: nginx keeps it in a temp file
    # (request buffering on) or streams it (off); still captured in full
    big = "lorem ipsum dolor " * 2500
    msgs = [{"role": "user", "content": big}]
    r = call(gw, upstream, Case(body=openai_json(content="short")),
             {"model": "gpt-4o", "messages": msgs}, port=port)
    sp = sink.span_for(r.trace_id)
    assert jattr(sp, INPUT) == msgs
    assert "truncated" not in meta(sp)


def test_slow_headers_completion_start(gw, upstream, sink):
    case = Case(body=openai_json(content="late"), delay_before_headers=0.3)
    r = call(gw, upstream, case, {"model": "gpt-4o", "messages": MESSAGES})
    sp = sink.span_for(r.trace_id)
    assert check_cst(sp, 300) < 1300
    assert end_ms(sp) - start_ms(sp) >= 300 - 1


@pytest.mark.parametrize("port", ["PORT", "PORT_NOBUF"])
def test_first_body_byte_after_headers(gw, upstream, sink, port):
    # headers at once, body 300 ms later: completion start is the body's
    case = Case(body=openai_json(content="late body"), delay_before_body=0.3)
    r = call(gw, upstream, case, {"model": "gpt-4o", "messages": MESSAGES},
             port=port)
    sp = sink.span_for(r.trace_id)
    assert check_cst(sp, 300) < 1300


def test_uri_metadata_is_path_without_query(gw, upstream, sink):
    r = call(gw, upstream, Case(body=openai_json()),
             {"model": "gpt-4o", "messages": MESSAGES},
             path=PATH + "?api-version=2024-10-21")
    sp = sink.span_for(r.trace_id)
    assert meta(sp)["uri"] == PATH
    assert upstream.requests[-1].path == PATH + "?api-version=2024-10-21"


def test_untraced_server_sends_nothing(gw, upstream, sink):
    r = call(gw, upstream, Case(body=openai_json()),
             {"model": "gpt-4o", "messages": MESSAGES}, port="PORT_OFF")
    assert r.trace_id is None
    # a traced call after it shows the exporter is alive and alone
    r2 = call(gw, upstream, Case(body=openai_json()),
              {"model": "gpt-4o", "messages": MESSAGES})
    sink.assert_exactly_once([r2.trace_id])
    assert len(sink.spans()) == 1


def test_concurrent_calls_do_not_mix(gw, upstream, sink):
    n = 24
    results = [None] * n

    def one(i):
        content = "answer number %d " % i * (i + 1)
        case = Case(body=openai_json(content=content, id="chatcmpl-%d" % i,
                                     usage=openai_usage(i, 2 * i, 3 * i)),
                    chunks=64 if i % 2 else None, chunk_delay=0.001,
                    delay_before_body=0.01 * (i % 5))
        cid = upstream.add(case)
        msgs = [{"role": "user", "content": "question %d" % i}]
        port = ("PORT", "PORT_NOBUF", "PORT_NOREQBUF")[i % 3]
        r = gw.post(PATH, {"model": "m-%d" % i, "messages": msgs,
                           "seed": i}, case=cid, port=port)
        results[i] = (r, case, content, msgs)

    threads = [threading.Thread(target=one, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    ids = []
    for i, (r, case, content, msgs) in enumerate(results):
        assert r.status == 200 and r.body == case.wire_body
        ids.append(r.trace_id)
    assert len(set(ids)) == n
    spans = {s["traceId"]: s for s in sink.assert_exactly_once(ids)}
    for i, (r, case, content, msgs) in enumerate(results):
        sp = spans[r.trace_id]
        assert jattr(sp, OUTPUT) == assistant(content)
        assert jattr(sp, INPUT) == msgs
        assert jattr(sp, PARAMS) == {"seed": i}
        assert sp["attributes"][MODEL] == "gpt-4o-mini"
        assert meta(sp)["response_id"] == "chatcmpl-%d" % i
        assert jattr(sp, USAGE) == usage(i, 2 * i, 3 * i)
