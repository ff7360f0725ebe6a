"""DashScope (Alibaba Cloud Model Studio): the native text-generation API
(JSON and its own SSE dialect) and the OpenAI-compatible mode."""

import json
import time

import pytest

from lfcheck import (INPUT, LEVEL, MODEL, OUTPUT, PARAMS, STATUS_MSG, USAGE,
                     assistant, check_cst, check_envelope, jattr, lf_keys,
                     meta, usage, CST, TYPE, TRACE_NAME, META)
from upstream import (Case, dashscope_error, dashscope_event, dashscope_json,
                      dashscope_sse, dashscope_usage, openai_json,
                      openai_sse, openai_usage)

NATIVE = "/api/v1/services/aigc/text-generation/generation"
COMPAT = "/compatible-mode/v1/chat/completions"
SSE = "text/event-stream"
NAME = "dashscope.generation"

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
"""

MESSAGES = [{"role": "system", "content": "You are a helpful assistant."},
            {"role": "user", "content": "你好，介绍一下你自己"}]
PARAMS_IN = {"result_format": "message", "temperature": 0.8, "top_p": 0.8,
             "max_tokens": 512, "seed": 1234}
REQ = {"model": "qwen-plus", "input": {"messages": MESSAGES},
       "parameters": PARAMS_IN}
TEXTS = ["我是", "通义千问", "，", "阿里云", "的大模型。", "\"Q\" \\ 🌍"]
FULL = "".join(TEXTS)


@pytest.fixture(scope="module")
def gw(module_nginx):
    return module_nginx(CONF)


def ds_call(gw, upstream, case, req=REQ, port="PORT", path=NATIVE,
            sse=False):
    cid = upstream.add(case)
    raw = json.dumps(req, ensure_ascii=False).encode()
    headers = {"Authorization": "Bearer sk-upstream-key"}
    if sse:
        headers["X-DashScope-SSE"] = "enable"
        headers["Accept"] = SSE
    t0 = time.time()
    r = gw.post(path, raw, case=cid, port=port, headers=headers)
    r.window = (t0, time.time())
    assert r.status == case.status and r.complete, r
    assert r.body == case.wire_body
    got, = case.requests
    assert got.body == raw
    assert got.header("Authorization") == "Bearer sk-upstream-key"
    return r


def test_native_json_exact_attributes(gw, upstream, sink):
    body = dashscope_json(text=FULL, request_id="5b2b3a6c-0001",
                          usage=dashscope_usage(25, 12, 37, cached=16))
    r = ds_call(gw, upstream, Case(body=body))
    sp = sink.span_for(r.trace_id)
    check_envelope(sp, r.trace_id, NAME, r.window)
    a = sp["attributes"]
    assert lf_keys(sp) == {
        TYPE, TRACE_NAME, MODEL, PARAMS, INPUT, OUTPUT, USAGE, CST,
        META + "http_status", META + "method", META + "uri", META + "stream",
        META + "finish_reason", META + "response_id"}
    assert a[MODEL] == "qwen-plus"
    assert jattr(sp, PARAMS) == PARAMS_IN
    assert jattr(sp, INPUT) == {"messages": MESSAGES}
    assert jattr(sp, OUTPUT) == assistant(FULL)
    assert jattr(sp, USAGE) == {"input": 9, "output": 12, "total": 37,
                                "input_cached_tokens": 16}
    assert meta(sp) == {"http_status": "200", "method": "POST",
                        "uri": NATIVE, "stream": "false",
                        "finish_reason": "stop",
                        "response_id": "5b2b3a6c-0001"}
    check_cst(sp)
    sink.assert_exactly_once([r.trace_id])


def test_native_text_result_format(gw, upstream, sink):
    req = {"model": "qwen-turbo", "input": {"prompt": "写一句诗"},
           "parameters": {}}
    body = dashscope_json(text="床前明月光", result_format="text",
                          request_id="r-text",
                          usage=dashscope_usage(5, 5, 10))
    r = ds_call(gw, upstream, Case(body=body), req=req)
    sp = sink.span_for(r.trace_id)
    assert jattr(sp, OUTPUT) == assistant("床前明月光")
    assert jattr(sp, INPUT) == {"prompt": "写一句诗"}
    assert sp["attributes"][MODEL] == "qwen-turbo"
    assert PARAMS not in sp["attributes"]  # empty parameters object
    assert jattr(sp, USAGE) == usage(5, 5, 10)


def test_native_parameters_non_scalar_and_excluded(gw, upstream, sink):
    tools = [{"type": "function", "function": {"name": "f",
                                               "parameters": {}}}]
    req = {"model": "qwen-max", "input": {"messages": MESSAGES},
           "parameters": {"result_format": "message", "stop": ["。"],
                          "enable_search": True, "tools": tools,
                          "repetition_penalty": 1.1}}
    r = ds_call(gw, upstream, Case(body=dashscope_json(text="好")), req=req)
    params = jattr(sink.span_for(r.trace_id), PARAMS)
    assert set(params) == {"result_format", "stop", "enable_search",
                           "repetition_penalty"}
    assert params["result_format"] == "message"
    assert params["enable_search"] is True
    assert params["repetition_penalty"] == 1.1
    assert isinstance(params["stop"], str)
    assert json.loads(params["stop"]) == ["。"]


def test_native_reasoning_and_usage_details(gw, upstream, sink):
    body = dashscope_json(text="答案是42。", reasoning_content="先想一想。",
                          usage=dashscope_usage(30, 50, 80, cached=10,
                                                reasoning=35))
    r = ds_call(gw, upstream, Case(body=body))
    sp = sink.span_for(r.trace_id)
    assert jattr(sp, OUTPUT) == assistant("答案是42。", reasoning="先想一想。")
    assert jattr(sp, USAGE) == {"input": 20, "output": 15, "total": 80,
                                "input_cached_tokens": 10,
                                "output_reasoning_tokens": 35}


@pytest.mark.parametrize("port", ["PORT", "PORT_NOBUF"])
@pytest.mark.parametrize("chunks", [None, "cycle"])
def test_native_sse_incremental(gw, upstream, sink, port, chunks):
    req = dict(REQ, parameters=dict(PARAMS_IN, incremental_output=True))
    usages = [dashscope_usage(20, i + 1) for i in range(len(TEXTS))]
    body = dashscope_sse(TEXTS, request_id="ds-inc", incremental=True,
                         usages=usages,
                         final_usage=dashscope_usage(20, 9, 29, cached=4))
    case = Case(body=body, content_type=SSE, framing="chunked",
                chunks=chunks, chunk_delay=0.001)
    r = ds_call(gw, upstream, case, req=req, port=port, sse=True)
    sp = sink.span_for(r.trace_id)
    check_envelope(sp, r.trace_id, NAME, r.window)
    assert jattr(sp, OUTPUT) == assistant(FULL)
    assert jattr(sp, USAGE) == usage(20, 9, 29, cached=4)
    assert sp["attributes"][MODEL] == "qwen-plus"
    assert jattr(sp, PARAMS) == dict(PARAMS_IN, incremental_output=True)
    assert meta(sp)["stream"] == "true"
    assert meta(sp)["finish_reason"] == "stop"
    assert meta(sp)["response_id"] == "ds-inc"
    assert LEVEL not in sp["attributes"]


@pytest.mark.parametrize("port", ["PORT", "PORT_NOBUF"])
@pytest.mark.parametrize("result_format", ["message", "text"])
def test_native_sse_full_text_per_event(gw, upstream, sink, port,
                                        result_format):
    # DashScope's default: each event repeats the whole text so far
    req = dict(REQ, parameters={"result_format": result_format})
    usages = [dashscope_usage(20, 2 * (i + 1)) for i in range(len(TEXTS))]
    body = dashscope_sse(TEXTS, request_id="ds-full", incremental=False,
                         usages=usages, result_format=result_format)
    case = Case(body=body, content_type=SSE, framing="chunked",
                chunks="cycle", chunk_delay=0.001)
    r = ds_call(gw, upstream, case, req=req, port=port, sse=True)
    sp = sink.span_for(r.trace_id)
    assert jattr(sp, OUTPUT) == assistant(FULL)
    assert jattr(sp, USAGE) == usage(20, 2 * len(TEXTS), 20 + 2 * len(TEXTS))
    assert meta(sp)["finish_reason"] == "stop"


def test_native_sse_reasoning_incremental(gw, upstream, sink):
    req = dict(REQ, model="qwq-plus",
               parameters={"incremental_output": True})
    body = dashscope_sse(["结论", "是42"], reasoning=["嗯，", "让我想想"],
                         incremental=True,
                         final_usage=dashscope_usage(10, 40, 50,
                                                     reasoning=30))
    case = Case(body=body, content_type=SSE, framing="chunked",
                chunks="cycle", chunk_delay=0.001)
    r = ds_call(gw, upstream, case, req=req, sse=True)
    sp = sink.span_for(r.trace_id)
    assert jattr(sp, OUTPUT) == assistant("结论是42", reasoning="嗯，让我想想")
    assert jattr(sp, USAGE) == usage(10, 40, 50, reasoning=30)
    assert sp["attributes"][MODEL] == "qwq-plus"


def test_native_sse_first_token_after_300ms(gw, upstream, sink):
    req = dict(REQ, parameters={"incremental_output": True})
    events = dashscope_sse(["慢", "一点"], incremental=True,
                           final_usage=dashscope_usage(3, 2))
    first, second = events.split(b"\n\nid:2")
    sched = [(0.3, first + b"\n\n"), (0.01, b"id:2" + second)]
    case = Case(schedule=sched, content_type=SSE, framing="chunked")
    r = ds_call(gw, upstream, case, req=req, port="PORT_NOBUF", sse=True)
    sp = sink.span_for(r.trace_id)
    assert jattr(sp, OUTPUT) == assistant("慢一点")
    assert check_cst(sp, 300) < 1300


@pytest.mark.parametrize("status, code, message", [
    (400, "InvalidParameter", "Model not exist."),
    (401, "InvalidApiKey", "Invalid API-key provided."),
    (429, "Throttling.RateQuota", "Requests rate limit exceeded."),
])
def test_native_error(gw, upstream, sink, status, code, message):
    case = Case(status=status, body=dashscope_error(code, message,
                                                    "req-err-1"))
    r = ds_call(gw, upstream, case)
    sp = sink.span_for(r.trace_id)
    check_envelope(sp, r.trace_id, NAME, r.window, error=message)
    assert sp["attributes"][LEVEL] == "ERROR"
    assert sp["attributes"][STATUS_MSG] == message
    assert meta(sp)["http_status"] == str(status)
    assert USAGE not in sp["attributes"]


def test_native_sse_error_event(gw, upstream, sink):
    req = dict(REQ, parameters={"incremental_output": True})
    ok = dashscope_sse(["部分"], incremental=True).replace(
        b'"finish_reason": "stop"', b'"finish_reason": "null"')
    err = dashscope_event(json.dumps({
        "code": "InternalError", "message": "Internal server error!",
        "request_id": "req-sse-err"}), 2, event="error", status=500)
    case = Case(body=ok + err, content_type=SSE, framing="chunked",
                chunks="cycle", chunk_delay=0.001)
    r = ds_call(gw, upstream, case, req=req, port="PORT_NOBUF", sse=True)
    sp = sink.span_for(r.trace_id)
    check_envelope(sp, r.trace_id, NAME, r.window,
                   error="Internal server error!")
    assert sp["attributes"][LEVEL] == "ERROR"
    assert sp["attributes"][STATUS_MSG] == "Internal server error!"
    assert jattr(sp, OUTPUT) == assistant("部分")


def test_native_gzip(gw, upstream, sink):
    body = dashscope_json(text=FULL * 5, usage=dashscope_usage(5, 50, 55))
    case = Case(body=body, gzip=True, chunks="cycle", chunk_delay=0.0005)
    r = ds_call(gw, upstream, case, port="PORT_NOBUF")
    assert r.header("Content-Encoding") == "gzip"
    sp = sink.span_for(r.trace_id)
    assert jattr(sp, OUTPUT) == assistant(FULL * 5)
    assert jattr(sp, USAGE) == usage(5, 50, 55)


# -- OpenAI-compatible mode -------------------------------------------------------

def test_compatible_mode_json(gw, upstream, sink):
    req = {"model": "qwen-plus", "messages": MESSAGES, "temperature": 0.3}
    body = openai_json(content=FULL, model="qwen-plus", id="chatcmpl-ds1",
                       usage=openai_usage(22, 8, 30, cached=6))
    r = ds_call(gw, upstream, Case(body=body), req=req, path=COMPAT)
    sp = sink.span_for(r.trace_id)
    check_envelope(sp, r.trace_id, "chat.completions", r.window)
    assert sp["attributes"][MODEL] == "qwen-plus"
    assert jattr(sp, INPUT) == MESSAGES
    assert jattr(sp, OUTPUT) == assistant(FULL)
    assert jattr(sp, USAGE) == usage(22, 8, 30, cached=6)
    assert jattr(sp, PARAMS) == {"temperature": 0.3}
    assert meta(sp)["uri"] == COMPAT
    assert meta(sp)["response_id"] == "chatcmpl-ds1"


@pytest.mark.parametrize("port", ["PORT", "PORT_NOBUF"])
def test_compatible_mode_stream(gw, upstream, sink, port):
    req = {"model": "qwen-plus", "messages": MESSAGES, "stream": True,
           "stream_options": {"include_usage": True}}
    body = openai_sse(TEXTS, model="qwen-plus", id="chatcmpl-ds2",
                      usage=openai_usage(22, 9, 31), usage_null=True)
    case = Case(body=body, content_type=SSE, framing="chunked",
                chunks="cycle", chunk_delay=0.001)
    r = ds_call(gw, upstream, case, req=req, path=COMPAT, port=port)
    sp = sink.span_for(r.trace_id)
    check_envelope(sp, r.trace_id, "chat.completions", r.window)
    assert jattr(sp, OUTPUT) == assistant(FULL)
    assert jattr(sp, USAGE) == usage(22, 9, 31)
    assert meta(sp)["stream"] == "true"
    assert PARAMS not in sp["attributes"]
