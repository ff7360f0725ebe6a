"""langfuse_max_body_size: captured text is cut at the limit and marked
(metadata.truncated), the client and the upstream still see every byte,
and a cut in the middle of a UTF-8 sequence still exports valid JSON."""

import json

import pytest

from lfcheck import INPUT, OUTPUT, USAGE, jattr, meta, usage
from upstream import Case, openai_json, openai_sse, openai_usage

PATH = "/v1/chat/completions"
SSE = "text/event-stream"

CONF = """
server {
    listen 127.0.0.1:@PORT@;
    location / { @LF@ langfuse_max_body_size 1k; proxy_http_version 1.1;
                 proxy_buffering off; proxy_pass @UP@; }
    location /big/ { @LF@ proxy_http_version 1.1; proxy_pass @UP@/; }
}
"""

# 3 and 4 byte characters so a byte limit lands inside a sequence
PIECE = "中文🌍ab"
TEXTS = [PIECE * 4 for _ in range(40)]         # ~2.5 KB of text
FULL = "".join(TEXTS)


@pytest.fixture(scope="module")
def gw(module_nginx):
    return module_nginx(CONF)


def send(gw, upstream, case, req, path=PATH):
    cid = upstream.add(case)
    raw = json.dumps(req, ensure_ascii=False).encode()
    r = gw.post(path, raw, case=cid)
    assert r.status == 200 and r.complete
    assert r.body == case.wire_body
    assert case.requests[0].body == raw
    return r


def test_long_stream_output_is_cut_and_marked(gw, upstream, sink):
    body = openai_sse(TEXTS, usage=openai_usage(10, 400, 410))
    case = Case(body=body, content_type=SSE, framing="chunked",
                chunks=97, chunk_delay=0.0005)
    r = send(gw, upstream, case, {"model": "m", "stream": True,
                                  "stream_options": {"include_usage": True},
                                  "messages": [{"role": "user",
                                                "content": "long please"}]})
    sp = sink.span_for(r.trace_id)
    out = jattr(sp, OUTPUT)
    assert out["role"] == "assistant"
    assert 0 < len(out["content"]) < len(FULL)
    assert FULL.startswith(out["content"])
    assert len(out["content"].encode()) <= 1024
    assert meta(sp)["truncated"] == "output"
    # the cut concerns the text kept, not the parsing: usage still counts
    assert jattr(sp, USAGE) == usage(10, 400, 410)
    assert jattr(sp, INPUT) == [{"role": "user", "content": "long please"}]


def test_big_request_input_is_marked(gw, upstream, sink):
    msgs = [{"role": "user", "content": PIECE * 200}]
    r = send(gw, upstream, Case(body=openai_json(content="short")),
             {"model": "m", "messages": msgs})
    sp = sink.span_for(r.trace_id)
    assert meta(sp)["truncated"] == "input"
    assert jattr(sp, OUTPUT) == {"role": "assistant", "content": "short"}
    v = sp["attributes"].get(INPUT)
    assert v is None or isinstance(v, str)


def test_both_cut(gw, upstream, sink):
    msgs = [{"role": "user", "content": PIECE * 200}]
    body = openai_sse(TEXTS, usage=openai_usage(800, 400, 1200))
    r = send(gw, upstream, Case(body=body, content_type=SSE,
                                framing="chunked"),
             {"model": "m", "messages": msgs, "stream": True})
    sp = sink.span_for(r.trace_id)
    assert meta(sp)["truncated"] == "input,output"
    assert FULL.startswith(jattr(sp, OUTPUT)["content"])


def test_non_stream_body_over_limit_is_marked(gw, upstream, sink):
    case = Case(body=openai_json(content=FULL, usage=openai_usage(1, 2, 3)),
                chunks=200, chunk_delay=0.0005)
    r = send(gw, upstream, case, {"model": "m", "messages": []})
    sp = sink.span_for(r.trace_id)
    assert meta(sp)["truncated"] == "output"


def test_under_default_limit_nothing_is_cut(gw, upstream, sink):
    body = openai_sse(TEXTS, usage=openai_usage(10, 400, 410))
    msgs = [{"role": "user", "content": PIECE * 200}]
    r = send(gw, upstream, Case(body=body, content_type=SSE,
                                framing="chunked", chunks=97,
                                chunk_delay=0.0005),
             {"model": "m", "messages": msgs, "stream": True},
             path="/big" + PATH)
    sp = sink.span_for(r.trace_id)
    assert "truncated" not in meta(sp)
    assert jattr(sp, OUTPUT) == {"role": "assistant", "content": FULL}
    assert jattr(sp, INPUT) == msgs
