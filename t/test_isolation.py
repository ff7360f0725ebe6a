"""Langfuse being down, hanging, slow or failing changes nothing for the
clients: same status, same bytes, latency like an untraced location of
the same nginx; tracing recovers when Langfuse comes back."""

import json
import statistics
import threading
import time

import pytest

from lfcheck import OUTPUT, assistant, jattr
from upstream import Case, openai_json, openai_sse, openai_usage, sse, \
    openai_chunks

PATH = "/v1/chat/completions"
SSE = "text/event-stream"
REQ = {"model": "gpt-4o", "messages": [{"role": "user", "content": "hi"}]}
SREQ = dict(REQ, stream=True, stream_options={"include_usage": True})

CONF = """
server {
    listen 127.0.0.1:@PORT@;
    location / { @LF@ proxy_http_version 1.1; proxy_pass @UP@; }
    location /plain/ { proxy_http_version 1.1; proxy_pass @UP@/; }
}
server {
    listen 127.0.0.1:@PORT_NOBUF@;
    location / { @LF@ proxy_http_version 1.1; proxy_buffering off;
                 proxy_pass @UP@; }
    location /plain/ { proxy_http_version 1.1; proxy_buffering off;
                       proxy_pass @UP@/; }
}
server {
    listen 127.0.0.1:@PORT_FAIL@;
    proxy_connect_timeout 1s;
    proxy_read_timeout 300ms;
    location / { @LF@ proxy_pass @UP@; }
    location /plain/ { proxy_pass @UP@/; }
    location /refused/ { @LF@ proxy_pass http://127.0.0.1:@PORT_CLOSED@/; }
    location /refused-plain/ { proxy_pass http://127.0.0.1:@PORT_CLOSED@/; }
}
"""

FAULTS = {
    "down": lambda s: s.down(),
    "hang": lambda s: s.hang(),
    "status500": lambda s: s.fail(500),
    "status401": lambda s: s.fail(401),
    "status429": lambda s: s.fail(429),
    "slow2s": lambda s: s.delay(2.0, accept=False),
    "reset": lambda s: s.reset_connections(),
}

IGNORED_HEADERS = {"date", "x-trace-id"}


def traced_vs_plain(ng, upstream, rounds=4):
    """Send the same scripted answers through a traced and an untraced
    location; assert identical status, headers and bytes; return the
    latencies (traced, plain)."""
    lat = {"traced": [], "plain": []}
    for i in range(rounds):
        for port in ("PORT", "PORT_NOBUF"):
            for stream in (False, True):
                got = {}
                for kind, prefix in (("traced", ""), ("plain", "/plain")):
                    if stream:
                        case = Case(body=openai_sse(
                            ["same ", "bytes ", "%d" % i],
                            usage=openai_usage(1, 3, 4)),
                            content_type=SSE, framing="chunked", chunks=50,
                            chunk_delay=0.001)
                    else:
                        case = Case(body=openai_json(
                            content="same bytes %d" % i,
                            usage=openai_usage(1, 3, 4)), gzip=bool(i % 2))
                    cid = upstream.add(case)
                    r = ng.post(prefix + PATH, SREQ if stream else REQ,
                                case=cid, port=port)
                    assert r.status == 200 and r.complete, (kind, r)
                    assert r.body == case.wire_body, kind
                    lat[kind].append(r.elapsed)
                    got[kind] = (r, case.requests[0])
                (rt, ut), (rp, up) = got["traced"], got["plain"]
                hdr = lambda r: sorted(  # noqa: E731
                    (k.lower(), v) for k, v in r.headers
                    if k.lower() not in IGNORED_HEADERS)
                assert hdr(rt) == hdr(rp)
                assert ut.body == up.body
                skip = {"x-test-case", "traceparent", "tracestate"}
                assert [(k.lower(), v) for k, v in ut.headers
                        if k.lower() not in skip] == \
                    [(k.lower(), v) for k, v in up.headers
                     if k.lower() not in skip]
    return lat["traced"], lat["plain"]


def check_latency(traced, plain):
    assert max(traced) < 1.0, traced
    assert statistics.median(traced) < statistics.median(plain) + 0.1, (
        traced, plain)


@pytest.mark.parametrize("fault", sorted(FAULTS))
def test_langfuse_fault_changes_nothing(nginx, upstream, sink, fault):
    ng = nginx(CONF)
    ng.allow_errors(r".", always=True)  # the module may log export errors
    FAULTS[fault](sink)
    traced, plain = traced_vs_plain(ng, upstream, rounds=2)
    time.sleep(0.4)  # exports are attempted and fail meanwhile
    t2, p2 = traced_vs_plain(ng, upstream, rounds=2)
    check_latency(traced + t2, plain + p2)
    assert sink.spans() == []
    # Langfuse is back: tracing goes on without a restart
    sink.normal()
    if not sink.is_up:
        sink.up()
    cid = upstream.add(Case(body=openai_json(content="back")))
    r = ng.post(PATH, REQ, case=cid)
    assert r.status == 200
    assert jattr(sink.span_for(r.trace_id, timeout=20), OUTPUT) == \
        assistant("back")


def test_no_fault_baseline(nginx, upstream, sink):
    ng = nginx(CONF)
    traced, plain = traced_vs_plain(ng, upstream, rounds=3)
    check_latency(traced, plain)


def _event_times(r, markers):
    """When each marker first showed up in the raw byte stream."""
    out = []
    acc = b""
    for t, piece in r.arrivals:
        acc += piece
        while len(out) < len(markers) and markers[len(out)] in acc:
            out.append(t)
    assert len(out) == len(markers), (out, acc[-300:])
    return out


@pytest.mark.parametrize("fault", [None, "hang"])
def test_stream_is_not_held_back(nginx, upstream, sink, fault):
    ng = nginx(CONF)
    ng.allow_errors(r".", always=True)
    if fault:
        FAULTS[fault](sink)
    chunks = openai_chunks(["e%d " % i for i in range(5)],
                           usage=openai_usage(1, 5, 6))
    sched = [(0.1, sse([c], done=False)) for c in chunks]
    sched.append((0.1, b"data: [DONE]\n\n"))
    case = Case(schedule=sched, content_type=SSE, framing="chunked")
    cid = upstream.add(case)
    r = ng.stream(PATH, SREQ, case=cid, port="PORT_NOBUF")
    assert r.status == 200 and r.body == case.wire_body
    markers = [b"e%d " % i for i in range(5)] + [b"[DONE]"]
    times = _event_times(r, markers)
    # when each marker left the upstream (pieces are 0.1 s apart); each
    # must reach the client soon after, not when the response ends
    sent_at, acc = [], 0.0
    for delay, piece in sched:
        acc += delay
        sent_at.append((acc, piece))
    for k, m in enumerate(markers):
        expected = next(t for t, p in sent_at if m in p)
        assert times[k] < expected + 0.15, (k, times, expected)


def test_queue_overflow_drops_without_harm(nginx, upstream, sink):
    ng = nginx(CONF, queue_size="1m")
    ng.allow_errors(r".", always=True)
    sink.hang()
    big = "x" * 30000
    for i in range(40):
        case = Case(body=openai_json(content=big + str(i)))
        cid = upstream.add(case)
        r = ng.post(PATH, {"model": "m", "messages": [
            {"role": "user", "content": big}]}, case=cid)
        assert r.status == 200 and r.body == case.wire_body
        assert r.elapsed < 1.0
    sink.normal()
    cid = upstream.add(Case(body=openai_json(content="after overflow")))
    r = ng.post(PATH, REQ, case=cid)
    assert jattr(sink.span_for(r.trace_id, timeout=20), OUTPUT) == \
        assistant("after overflow")


def test_concurrent_clients_while_langfuse_hangs(nginx, upstream, sink):
    ng = nginx(CONF)
    ng.allow_errors(r".", always=True)
    sink.hang()
    results = [None] * 30

    def one(i):
        case = Case(body=openai_json(content="c%d" % i))
        cid = upstream.add(case)
        r = ng.post(PATH, REQ, case=cid,
                    port=("PORT", "PORT_NOBUF")[i % 2])
        results[i] = (r, case)

    ts = [threading.Thread(target=one, args=(i,)) for i in range(30)]
    t0 = time.monotonic()
    for t in ts:
        t.start()
    for t in ts:
        t.join(20)
    assert time.monotonic() - t0 < 5
    for r, case in results:
        assert r.status == 200 and r.body == case.wire_body


def test_upstream_failures_look_the_same(nginx, upstream, sink):
    ng = nginx(CONF)
    ng.allow_errors(r"connect\(\) failed", r"upstream timed out",
                    always=True)
    a = ng.post("/refused" + PATH, REQ, port="PORT_FAIL")
    b = ng.post("/refused-plain" + PATH, REQ, port="PORT_FAIL")
    assert a.status == b.status == 502
    assert a.body == b.body
    res = []
    for prefix in ("", "/plain"):
        cid = upstream.add(Case(body=openai_json(),
                                delay_before_headers=1.0))
        res.append(ng.post(prefix + PATH, REQ, case=cid, port="PORT_FAIL"))
    assert res[0].status == res[1].status == 504
    assert res[0].body == res[1].body
    # and tracing still works on that server
    cid = upstream.add(Case(body=openai_json(content="ok")))
    r = ng.post(PATH, REQ, case=cid, port="PORT_FAIL")
    assert jattr(sink.span_for(r.trace_id), OUTPUT) == assistant("ok")


def test_non_llm_requests_pass_untouched(nginx, upstream, sink):
    ng = nginx(CONF)
    for method, path, body in (("GET", "/v1/models", None),
                               ("POST", "/v1/embeddings",
                                json.dumps({"input": "x"})),
                               ("POST", PATH, b"this is not json"),
                               ("POST", PATH, b"")):
        case = Case(body=b'{"object":"list","data":[]}')
        cid = upstream.add(case)
        r = ng.request(path, method, body, port="PORT_NOBUF", case=cid)
        assert r.status == 200 and r.body == case.wire_body
        got, = case.requests
        assert got.body == (body.encode() if isinstance(body, str)
                            else body or b"")
