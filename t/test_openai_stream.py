"""OpenAI chat completions streamed as server-sent events: text
assembled from deltas however the bytes are split, usage from the
include_usage chunk, first-token time, errors and cut streams."""

import json
import time

import pytest

from harness import parse_sse
from lfcheck import (INPUT, LEVEL, MODEL, OUTPUT, PARAMS, STATUS_MSG, USAGE,
                     assistant, check_cst, check_envelope, jattr, meta,
                     usage)
from upstream import Case, openai_chunks, openai_sse, openai_usage, sse

PATH = "/v1/chat/completions"
SSE = "text/event-stream"

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

MESSAGES = [{"role": "user", "content": "Tell me something"}]
REQ = {"model": "gpt-4o", "messages": MESSAGES, "stream": True,
       "stream_options": {"include_usage": True}, "temperature": 0.5}

# deltas chosen so that 1..7 byte pieces cut UTF-8 sequences, JSON
# escapes and the "data: " / blank-line framing in every possible place
TEXTS = ["Hel", "lo", ", wör", "ld", "! 中", "文 ", "🌍", " \"quoted\"",
         " back\\slash", "\nnew line", "\ttab"]
FULL = "".join(TEXTS)


@pytest.fixture(scope="module")
def gw(module_nginx):
    return module_nginx(CONF)


def stream_call(gw, upstream, case, req=REQ, port="PORT_NOBUF",
                complete=True):
    cid = upstream.add(case)
    raw = json.dumps(req, ensure_ascii=False).encode()
    t0 = time.time()
    r = gw.post(PATH, raw, case=cid, port=port)
    r.window = (t0, time.time())
    assert r.status == case.status
    if complete:
        assert r.complete, r
        assert r.body == case.wire_body
    else:
        assert r.body == case.sent_body
    assert case.requests[0].body == raw
    return r


def test_stream_exact_attributes(gw, upstream, sink):
    body = openai_sse(TEXTS, model="gpt-4o-2024-08-06", id="chatcmpl-s1",
                      usage=openai_usage(25, 11, 36, cached=5),
                      usage_null=True)
    r = stream_call(gw, upstream, Case(body=body, content_type=SSE,
                                       framing="chunked"))
    sp = sink.span_for(r.trace_id)
    check_envelope(sp, r.trace_id, "chat.completions", r.window)
    a = sp["attributes"]
    assert a[MODEL] == "gpt-4o-2024-08-06"
    assert jattr(sp, OUTPUT) == assistant(FULL)
    assert jattr(sp, USAGE) == {"input": 20, "output": 11, "total": 36,
                                "input_cached_tokens": 5}
    assert jattr(sp, INPUT) == MESSAGES
    # neither stream nor stream_options are parameters
    assert jattr(sp, PARAMS) == {"temperature": 0.5}
    assert meta(sp) == {"http_status": "200", "method": "POST", "uri": PATH,
                        "stream": "true", "finish_reason": "stop",
                        "response_id": "chatcmpl-s1"}
    assert LEVEL not in a and STATUS_MSG not in a
    check_cst(sp)
    sink.assert_exactly_once([r.trace_id])


@pytest.mark.parametrize("port", ["PORT", "PORT_NOBUF"])
@pytest.mark.parametrize("framing", ["chunked", "length", "close"])
@pytest.mark.parametrize("crlf", [False, True], ids=["lf", "crlf"])
def test_stream_split_into_1_to_7_byte_pieces(gw, upstream, sink, port,
                                              framing, crlf):
    body = openai_sse(TEXTS, id="chatcmpl-split", crlf=crlf,
                      usage=openai_usage(9, 14, 23, reasoning=2),
                      usage_null=True)
    case = Case(body=body, content_type=SSE, framing=framing,
                chunks="cycle", chunk_delay=0.0003)
    r = stream_call(gw, upstream, case, port=port)
    sp = sink.span_for(r.trace_id)
    check_envelope(sp, r.trace_id, window=r.window)
    assert jattr(sp, OUTPUT) == assistant(FULL)
    assert jattr(sp, USAGE) == usage(9, 14, 23, reasoning=2)
    assert meta(sp)["finish_reason"] == "stop"
    assert meta(sp)["response_id"] == "chatcmpl-split"
    assert LEVEL not in sp["attributes"]


@pytest.mark.parametrize("sizes", [(1,), (2,), (3,), (64,), (7, 1, 1, 13)])
def test_stream_other_splits(gw, upstream, sink, sizes):
    body = openai_sse(TEXTS, usage=openai_usage(1, 2, 3))
    case = Case(body=body, content_type=SSE, framing="chunked",
                chunks=list(sizes), chunk_delay=0.0002)
    r = stream_call(gw, upstream, case)
    sp = sink.span_for(r.trace_id)
    assert jattr(sp, OUTPUT) == assistant(FULL)
    assert jattr(sp, USAGE) == usage(1, 2, 3)


def test_stream_comments_and_mixed_line_ends(gw, upstream, sink):
    chunks = openai_chunks(["a", "β", "c"], usage=openai_usage(4, 3, 7))
    parts = [b": keep-alive\n\n"]
    for i, c in enumerate(chunks):
        j = json.dumps(c, ensure_ascii=False).encode()
        if i % 3 == 0:
            parts.append(b"data: " + j + b"\n\n")
        elif i % 3 == 1:
            parts.append(b"data:" + j + b"\r\n\r\n")
        else:
            parts.append(b": ping\r\ndata: " + j + b"\r\n\n")
    parts.append(b"data: [DONE]\n\n")
    case = Case(body=b"".join(parts), content_type=SSE, framing="chunked",
                chunks="cycle", chunk_delay=0.0005)
    r = stream_call(gw, upstream, case)
    sp = sink.span_for(r.trace_id)
    assert jattr(sp, OUTPUT) == assistant("aβc")
    assert jattr(sp, USAGE) == usage(4, 3, 7)


def test_stream_in_one_piece(gw, upstream, sink):
    body = openai_sse(TEXTS, usage=openai_usage(3, 4, 7))
    r = stream_call(gw, upstream, Case(body=body, content_type=SSE),
                    port="PORT")
    sp = sink.span_for(r.trace_id)
    assert jattr(sp, OUTPUT) == assistant(FULL)


def test_stream_without_usage_chunk(gw, upstream, sink):
    req = dict(REQ)
    del req["stream_options"]
    body = openai_sse(["no ", "usage"], usage=None)
    r = stream_call(gw, upstream, Case(body=body, content_type=SSE,
                                       framing="chunked"), req=req)
    sp = sink.span_for(r.trace_id)
    assert jattr(sp, OUTPUT) == assistant("no usage")
    assert USAGE not in sp["attributes"]
    assert meta(sp)["stream"] == "true"


@pytest.mark.parametrize("port", ["PORT", "PORT_NOBUF"])
def test_first_content_token_after_300ms(gw, upstream, sink, port):
    chunks = openai_chunks(["late ", "token"], usage=openai_usage(2, 2, 4))
    ev = [sse([c], done=False) for c in chunks]
    # the role chunk (empty content) comes at once; the first content 300 ms
    # later: completion start is the content's arrival
    sched = [(0, ev[0]), (0.3, ev[1]), (0.01, ev[2]), (0, ev[3]),
             (0, ev[4]), (0, b"data: [DONE]\n\n")]
    case = Case(schedule=sched, content_type=SSE, framing="chunked")
    r = stream_call(gw, upstream, case, port=port)
    sp = sink.span_for(r.trace_id)
    assert jattr(sp, OUTPUT) == assistant("late token")
    assert check_cst(sp, 300) < 1300


def test_stream_gzip_whole_body_split(gw, upstream, sink):
    body = openai_sse(TEXTS, usage=openai_usage(8, 8, 16))
    case = Case(body=body, content_type=SSE, framing="chunked", gzip=True,
                chunks="cycle", chunk_delay=0.001)
    r = stream_call(gw, upstream, case)
    assert r.header("Content-Encoding") == "gzip"
    sp = sink.span_for(r.trace_id)
    assert jattr(sp, OUTPUT) == assistant(FULL)
    assert jattr(sp, USAGE) == usage(8, 8, 16)


@pytest.mark.parametrize("port", ["PORT", "PORT_NOBUF"])
def test_stream_gzip_flushed_per_event(gw, upstream, sink, port):
    chunks = openai_chunks(["zip", "ped ", "stream"],
                           usage=openai_usage(3, 3, 6))
    sched = [(0.005, sse([c], done=False)) for c in chunks]
    sched.append((0.005, b"data: [DONE]\n\n"))
    case = Case(schedule=sched, content_type=SSE, framing="chunked",
                gzip=True)
    r = stream_call(gw, upstream, case, port=port)
    sp = sink.span_for(r.trace_id)
    assert jattr(sp, OUTPUT) == assistant("zipped stream")
    assert jattr(sp, USAGE) == usage(3, 3, 6)


def test_stream_tool_calls_are_merged(gw, upstream, sink):
    frags = [
        {"index": 0, "id": "call_abc", "type": "function",
         "function": {"name": "get_weather", "arguments": ""}},
        {"index": 0, "function": {"arguments": "{\"ci"}},
        {"index": 0, "function": {"arguments": "ty\":\"Paris\"}"}},
        {"index": 1, "id": "call_def", "type": "function",
         "function": {"name": "get_time", "arguments": ""}},
        {"index": 1, "function": {"arguments": "{}"}},
    ]
    body = openai_sse([], tool_calls=frags, finish_reason="tool_calls",
                      usage=openai_usage(50, 20, 70))
    case = Case(body=body, content_type=SSE, framing="chunked",
                chunks="cycle", chunk_delay=0.0005)
    r = stream_call(gw, upstream, case)
    sp = sink.span_for(r.trace_id)
    out = jattr(sp, OUTPUT)
    assert out["role"] == "assistant" and out.get("content") in ("", None)
    assert out["tool_calls"] == [
        {"id": "call_abc", "type": "function", "function": {
            "name": "get_weather", "arguments": "{\"city\":\"Paris\"}"}},
        {"id": "call_def", "type": "function", "function": {
            "name": "get_time", "arguments": "{}"}}]
    assert meta(sp)["finish_reason"] == "tool_calls"


def test_stream_reasoning_content(gw, upstream, sink):
    body = openai_sse(["The answer", " is 42."],
                      reasoning=["Let me ", "think ", "hard."],
                      model="deepseek-reasoner",
                      usage=openai_usage(12, 30, 42, reasoning=20))
    r = stream_call(gw, upstream, Case(body=body, content_type=SSE,
                                       framing="chunked", chunks="cycle",
                                       chunk_delay=0.0005))
    sp = sink.span_for(r.trace_id)
    assert jattr(sp, OUTPUT) == assistant("The answer is 42.",
                                          reasoning="Let me think hard.")
    assert jattr(sp, USAGE) == usage(12, 30, 42, reasoning=20)


@pytest.mark.parametrize("port", ["PORT", "PORT_NOBUF"])
def test_stream_error_event(gw, upstream, sink, port):
    msg = "The server had an error while processing your request."
    events = openai_chunks(["partial ", "answer"])[:3]
    body = sse(events + [{"error": {"message": msg, "type": "server_error",
                                    "param": None, "code": None}}],
               done=False)
    r = stream_call(gw, upstream, Case(body=body, content_type=SSE,
                                       framing="chunked"), port=port)
    sp = sink.span_for(r.trace_id)
    check_envelope(sp, r.trace_id, window=r.window, error=msg)
    assert sp["attributes"][LEVEL] == "ERROR"
    assert sp["attributes"][STATUS_MSG] == msg
    assert meta(sp)["http_status"] == "200"
    assert jattr(sp, OUTPUT) == assistant("partial answer")


def _prefix_of_events(n_events, texts=TEXTS):
    chunks = openai_chunks(texts, usage=openai_usage(5, 5, 10))
    return sse(chunks[:n_events], done=False), \
        sse(chunks, done=True), "".join(texts[:n_events - 1])


@pytest.mark.parametrize("port", ["PORT", "PORT_NOBUF"])
@pytest.mark.parametrize("how", ["cut_after", "reset_after"])
def test_stream_cut_before_end_is_warning(gw, upstream, sink, port, how):
    gw.allow_errors(r"upstream prematurely closed",
                    r"(recv|readv)\(\) failed \(104: Connection reset by peer\)")
    # role chunk + 4 content chunks arrive, then the connection dies
    prefix, body, text = _prefix_of_events(5)
    case = Case(body=body, content_type=SSE, framing="chunked",
                **{how: len(prefix)})
    r = stream_call(gw, upstream, case, port=port, complete=False)
    sp = sink.span_for(r.trace_id)
    a = sp["attributes"]
    assert a[LEVEL] == "WARNING"
    assert jattr(sp, OUTPUT) == assistant(text)
    assert USAGE not in a
    assert "finish_reason" not in meta(sp)
    sink.assert_exactly_once([r.trace_id])


def test_stream_ended_without_done_or_finish_is_warning(gw, upstream, sink):
    # connection-close framing: nginx sees a normal end, the stream is
    # nevertheless incomplete (no finish_reason, no [DONE])
    prefix, body, text = _prefix_of_events(4)
    case = Case(body=prefix, content_type=SSE, framing="close")
    r = stream_call(gw, upstream, case)
    sp = sink.span_for(r.trace_id)
    assert sp["attributes"][LEVEL] == "WARNING"
    assert jattr(sp, OUTPUT) == assistant(text)


def test_client_going_away_mid_stream(gw, upstream, sink):
    gw.allow_errors(r"while sending to client", r"client prematurely closed",
                    r"Broken pipe", r"Connection reset by peer")
    chunks = openai_chunks(["one ", "two ", "three ", "four ", "five"],
                           usage=openai_usage(1, 5, 6))
    sched = [(0.05, sse([c], done=False)) for c in chunks]
    sched.append((0.05, b"data: [DONE]\n\n"))
    case = Case(schedule=sched, content_type=SSE, framing="chunked")
    cid = upstream.add(case)
    r = gw.stream(PATH, REQ, case=cid, port="PORT_NOBUF", close_after=10)
    assert r.status == 200 and r.trace_id
    sp = sink.span_for(r.trace_id, timeout=8)
    out = jattr(sp, OUTPUT)
    assert "one two three four five".startswith(out["content"])
    sink.assert_exactly_once([r.trace_id])
    # and nginx is fine afterwards
    ok = stream_call(gw, upstream, Case(body=openai_sse(["fine"]),
                                        content_type=SSE))
    assert jattr(sink.span_for(ok.trace_id), OUTPUT) == assistant("fine")


def test_stream_events_reach_client_unchanged(gw, upstream, sink):
    body = openai_sse(TEXTS, usage=openai_usage(1, 1, 2), usage_null=True)
    r = stream_call(gw, upstream, Case(body=body, content_type=SSE,
                                       framing="chunked", chunks=17,
                                       chunk_delay=0.001))
    evs = parse_sse(r.body)
    assert evs[-1]["data"] == "[DONE]"
    got = "".join((json.loads(e["data"])["choices"] or [{}])[0]
                  .get("delta", {}).get("content") or ""
                  for e in evs[:-1])
    assert got == FULL
    assert r.header("Content-Type") == SSE
