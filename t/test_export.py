"""The export side: OTLP request format, trace/span ids and W3C
traceparent, batching, per-location destinations and keys, the legacy
ingestion protocol."""

import base64
import json
import threading
import time

import pytest

from lfcheck import (HEX16, HEX32, ISO_RE, UUID, OUTPUT, assistant,
                     check_envelope, iso_to_ms, jattr, meta)
from sink import INGESTION_PATH, OTLP_PATH
from upstream import Case, openai_json, openai_usage

PATH = "/v1/chat/completions"
MESSAGES = [{"role": "user", "content": "hello"}]
REQ = {"model": "gpt-4o-mini", "messages": MESSAGES, "temperature": 0.2,
       "max_tokens": 256}


def keyed(endpoint, pk, sk, extra=""):
    return ("langfuse_trace on; langfuse_endpoint %s; langfuse_public_key "
            "%s; langfuse_secret_key %s; %s add_header X-Trace-Id "
            "$langfuse_trace_id always;" % (endpoint, pk, sk, extra))


CONF = """
server {
    listen 127.0.0.1:@PORT@;
    location / { @LF@ proxy_pass @UP@; }
    location /a/ { %s proxy_pass @UP@/; }
    location /b/ { %s proxy_pass @UP@/; }
    location /legacy/ { @LF@ langfuse_protocol ingestion; proxy_pass @UP@/; }
    location /legacy-b/ { %s proxy_pass @UP@/; }
    location /otlp/ { @LF@ langfuse_protocol otlp; proxy_pass @UP@/; }
}
server {
    listen 127.0.0.1:@PORT_INH@;
    langfuse_endpoint @SINK2@;
    langfuse_public_key pk-srv;
    langfuse_secret_key sk-srv;
    add_header X-Trace-Id $langfuse_trace_id always;
    location / { langfuse_trace on; proxy_pass @UP@; }
    location /off/ { langfuse_trace off; proxy_pass @UP@/; }
    location /plain/ { proxy_pass @UP@/; }
}
""" % (keyed("@SINK@", "pk-a", "sk-a"), keyed("@SINK2@", "pk-b", "sk-b"),
       keyed("@SINK2@", "pk-lb", "sk-lb", "langfuse_protocol ingestion;"))


@pytest.fixture(scope="module")
def gw(module_nginx):
    return module_nginx(CONF)


def send(gw, upstream, path=PATH, port="PORT", headers=None, body=None,
         req=REQ):
    case = Case(body=body or openai_json(
        content="Hi there", id="chatcmpl-x1",
        usage=openai_usage(20, 10, 30)))
    cid = upstream.add(case)
    t0 = time.time()
    r = gw.post(path, req, case=cid, port=port, headers=headers)
    r.window = (t0, time.time())
    assert r.status == 200 and r.body == case.wire_body
    return r


def basic(pk, sk):
    return "Basic " + base64.b64encode(("%s:%s" % (pk, sk)).encode()
                                       ).decode()


def test_otlp_request_format(gw, upstream, sink):
    r = send(gw, upstream)
    sp = sink.span_for(r.trace_id)
    rec = sp["record"]
    assert rec.method == "POST" and rec.path == OTLP_PATH
    assert rec.header("Content-Type").split(";")[0].strip() == \
        "application/json"
    assert rec.header("Content-Encoding") == "gzip"
    assert rec.raw[:2] == b"\x1f\x8b"
    assert rec.header("Authorization") == basic("pk-lf-test", "sk-lf-test")
    assert rec.auth == ("pk-lf-test", "sk-lf-test")
    assert rec.header("x-langfuse-ingestion-version") == "4"
    doc = rec.json
    assert list(doc) == ["resourceSpans"]
    rs, = doc["resourceSpans"]
    assert rs["resource"] == {"attributes": [
        {"key": "service.name", "value": {"stringValue": "nginx"}}]}
    ss, = rs["scopeSpans"]
    assert ss["scope"] == {"name": "nginx-llm-gateway", "version": "0.1.0"}
    assert sp in [s for s in sink.spans() if s["record"] is rec]
    check_envelope(sp, r.trace_id, "chat.completions", r.window)


def test_explicit_otlp_protocol_is_the_default_format(gw, upstream, sink):
    r = send(gw, upstream, "/otlp" + PATH)
    sp = sink.span_for(r.trace_id)
    assert sp["record"].path == OTLP_PATH
    assert meta(sp)["uri"] == "/otlp" + PATH


def test_trace_ids_are_unique_and_match_header(gw, upstream, sink):
    ids = [send(gw, upstream).trace_id for _ in range(12)]
    assert all(HEX32.match(i) for i in ids)
    assert len(set(ids)) == 12
    spans = sink.assert_exactly_once(ids)
    assert len({s["spanId"] for s in spans}) == 12
    assert all(HEX16.match(s["spanId"]) for s in spans)


def test_valid_traceparent_is_continued(gw, upstream, sink):
    tid, pid = "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7"
    r = send(gw, upstream, headers={"traceparent": "00-%s-%s-01" % (tid,
                                                                     pid)})
    assert r.trace_id == tid
    sp = sink.span_for(tid)
    assert sp["parentSpanId"] == pid
    assert sp["spanId"] != pid and HEX16.match(sp["spanId"])
    # the header reaches the upstream
    assert upstream.requests[-1].header("traceparent") == \
        "00-%s-%s-01" % (tid, pid)


@pytest.mark.parametrize("value", [
    "00-00000000000000000000000000000000-00f067aa0ba902b7-01",  # zero trace
    "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",  # zero parent
    "00-4bf92f3577b34da6a3ce929d0e0e473-00f067aa0ba902b7-01",   # short id
    "00-4bf92f3577b34da6a3ce929d0e0e4736x00f067aa0ba902b7-01",  # separator
    "00-4bf92f3577b34da6a3ce929d0e0e47zz-00f067aa0ba902b7-01",  # not hex
    "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",  # version ff
    "garbage",
    "",
])
def test_invalid_traceparent_starts_a_new_trace(gw, upstream, sink, value):
    r = send(gw, upstream, headers={"traceparent": value})
    assert HEX32.match(r.trace_id)
    assert r.trace_id != "4bf92f3577b34da6a3ce929d0e0e4736"
    sp = sink.span_for(r.trace_id)
    assert sp.get("parentSpanId") in (None, "")


def test_per_location_destinations_and_keys(gw, upstream, sink, sink2):
    ra = send(gw, upstream, "/a" + PATH)
    rb = send(gw, upstream, "/b" + PATH)
    rd = send(gw, upstream)
    sa = sink.span_for(ra.trace_id)
    sb = sink2.span_for(rb.trace_id)
    sink.span_for(rd.trace_id)
    assert sa["record"].auth == ("pk-a", "sk-a")
    assert sb["record"].auth == ("pk-b", "sk-b")
    time.sleep(0.3)
    # nothing crossed over, and one request never mixes two key pairs
    assert {s["traceId"] for s in sink.spans()} == {ra.trace_id, rd.trace_id}
    assert {s["traceId"] for s in sink2.spans()} == {rb.trace_id}
    for s in sink.spans():
        want = ("pk-a", "sk-a") if s["traceId"] == ra.trace_id else (
            "pk-lf-test", "sk-lf-test")
        assert s["record"].auth == want
    assert meta(sa)["uri"] == "/a" + PATH
    assert upstream.requests[0].path == PATH


def test_server_level_settings_are_inherited(gw, upstream, sink, sink2):
    r = send(gw, upstream, port="PORT_INH")
    sp = sink2.span_for(r.trace_id)
    assert sp["record"].auth == ("pk-srv", "sk-srv")
    for path in ("/off" + PATH, "/plain" + PATH):
        r2 = send(gw, upstream, path, port="PORT_INH")
        # trace off: no span (the variable may be empty or absent)
        assert not r2.trace_id or not sink2.spans_of(r2.trace_id)
    time.sleep(0.3)
    assert len(sink2.spans()) == 1 and sink.spans() == []


def _iso_between(value, lo_ms, hi_ms):
    assert isinstance(value, str) and ISO_RE.match(value), value
    ms = iso_to_ms(value)
    assert lo_ms - 1 <= ms <= hi_ms + 1, (value, lo_ms, hi_ms)
    return ms


def test_ingestion_protocol_events(gw, upstream, sink):
    r = send(gw, upstream, "/legacy" + PATH)
    gen = sink.generation_for(r.trace_id)
    tr = sink.trace_for(r.trace_id)
    rec = gen["record"]
    assert rec.path == INGESTION_PATH and rec.method == "POST"
    assert rec.header("Content-Encoding") == "gzip"
    assert rec.raw[:2] == b"\x1f\x8b"
    assert rec.header("Content-Type").split(";")[0].strip() == \
        "application/json"
    assert rec.header("Authorization") == basic("pk-lf-test", "sk-lf-test")
    assert rec.json["metadata"] == {"sdk_name": "nginx-langfuse",
                                    "sdk_version": "0.1.0"}
    assert set(rec.json) == {"batch", "metadata"}
    lo, hi = r.window[0] * 1000 - 50, r.window[1] * 1000 + 50
    for ev in (gen, tr):
        assert UUID.match(ev["id"]), ev["id"]
        _iso_between(ev["timestamp"], lo, hi + 10000)
    assert gen["id"] != tr["id"]
    assert gen["type"] == "generation-create" and tr["type"] == "trace-create"
    # exactly two events for one call, both in the sink once
    assert len([e for e in sink.events()
                if (e["body"].get("traceId") or e["body"].get("id"))
                == r.trace_id]) == 2

    t = tr["body"]
    assert t["id"] == r.trace_id
    assert t["name"] == "chat.completions"
    _iso_between(t["timestamp"], lo, hi)
    for k in ("userId", "sessionId", "environment", "release"):
        assert t.get(k) is None, k
    assert t.get("tags") in (None, [])
    assert t.get("metadata") in (None, {})
    assert t["input"] == MESSAGES
    assert t["output"] == assistant("Hi there")

    g = gen["body"]
    assert HEX16.match(g["id"])
    assert g["traceId"] == r.trace_id
    assert g["name"] == "chat.completions"
    start = _iso_between(g["startTime"], lo, hi)
    end = _iso_between(g["endTime"], lo, hi)
    assert start <= end
    cst = _iso_between(g["completionStartTime"], start, end)
    assert start <= cst <= end
    assert g["model"] == "gpt-4o-mini"
    assert g["modelParameters"] == {"temperature": 0.2, "max_tokens": 256}
    assert g["input"] == MESSAGES
    assert g["output"] == assistant("Hi there")
    assert g["usage"] == {"input": 20, "output": 10, "total": 30,
                          "unit": "TOKENS"}
    assert g["usageDetails"] == {"input": 20, "output": 10, "total": 30}
    assert g["level"] == "DEFAULT"
    assert g.get("statusMessage") is None
    assert {k: str(v) for k, v in g["metadata"].items()} == {
        "http_status": "200", "method": "POST", "uri": "/legacy" + PATH,
        "stream": "false", "finish_reason": "stop",
        "response_id": "chatcmpl-x1"}
    time.sleep(0.3)
    assert sink.spans() == []  # no OTLP for an ingestion location


def test_ingestion_usage_details_and_error(gw, upstream, sink):
    body = openai_json(content="x", usage=openai_usage(
        20, 10, 30, cached=8, reasoning=4))
    r = send(gw, upstream, "/legacy" + PATH, body=body)
    g = sink.generation_for(r.trace_id)["body"]
    assert g["usageDetails"] == {"input": 12, "output": 6, "total": 30,
                                 "input_cached_tokens": 8,
                                 "output_reasoning_tokens": 4}
    assert g["usage"]["total"] == 30 and g["usage"]["unit"] == "TOKENS"

    case = Case(status=400, body=json.dumps({"error": {
        "message": "Invalid model", "type": "invalid_request_error"}}))
    cid = upstream.add(case)
    r = gw.post("/legacy" + PATH, REQ, case=cid)
    assert r.status == 400 and r.body == case.wire_body
    g = sink.generation_for(r.trace_id)["body"]
    assert g["level"] == "ERROR"
    assert g["statusMessage"] == "Invalid model"
    assert str(g["metadata"]["http_status"]) == "400"
    assert g.get("usage") in (None, {})
    assert g.get("usageDetails") in (None, {})


def test_ingestion_envelope_ids_unique_and_keys(gw, upstream, sink, sink2):
    ids = [send(gw, upstream, "/legacy-b" + PATH).trace_id
           for _ in range(6)]
    for t in ids:
        sink2.generation_for(t)
    time.sleep(0.3)
    evs = sink2.events()
    assert len(evs) == 12
    assert len({e["id"] for e in evs}) == 12
    assert all(UUID.match(e["id"]) for e in evs)
    assert sorted(e["body"]["traceId"] for e in evs
                  if e["type"] == "generation-create") == sorted(ids)
    assert sorted(e["body"]["id"] for e in evs
                  if e["type"] == "trace-create") == sorted(ids)
    assert {e["record"].auth for e in evs} == {("pk-lb", "sk-lb")}


def test_otlp_and_ingestion_side_by_side(gw, upstream, sink):
    r1 = send(gw, upstream)
    r2 = send(gw, upstream, "/legacy" + PATH)
    assert jattr(sink.span_for(r1.trace_id), OUTPUT) == assistant("Hi there")
    assert sink.generation_for(r2.trace_id)["body"]["output"] == \
        assistant("Hi there")
    time.sleep(0.3)
    assert [s["traceId"] for s in sink.spans()] == [r1.trace_id]
    assert {g["body"]["traceId"] for g in sink.generations()} == {
        r2.trace_id}


# -- batching and top-level settings (own nginx instances) -------------------------

ONE = """
server {
    listen 127.0.0.1:@PORT@;
    location / { @LF@ proxy_pass @UP@; }
}
"""


def _burst(ng, upstream, n, path=PATH):
    out = [None] * n

    def one(i):
        cid = upstream.add(Case(body=openai_json(content="c%d" % i)))
        out[i] = ng.post(path, REQ, case=cid)

    ts = [threading.Thread(target=one, args=(i,)) for i in range(n)]
    for t in ts:
        t.start()
    for t in ts:
        t.join(20)
    assert all(r.status == 200 for r in out)
    return [r.trace_id for r in out]


def test_batch_size_caps_spans_per_request(nginx, upstream, sink):
    ng = nginx(ONE, workers=1, batch_size=3, flush_interval="300ms")
    ids = _burst(ng, upstream, 7)
    spans = sink.assert_exactly_once(ids, timeout=10)
    per_request = [len(r.json["resourceSpans"][0]["scopeSpans"][0]["spans"])
                   for r in sink.otlp_requests()]
    assert sum(per_request) == 7 and len(spans) == 7
    assert max(per_request) <= 3
    assert len(per_request) >= 3


def test_spans_are_batched_within_flush_interval(nginx, upstream, sink):
    ng = nginx(ONE, workers=1, flush_interval="1s")
    ids = [None] * 10
    for i in range(10):
        cid = upstream.add(Case(body=openai_json()))
        ids[i] = ng.post(PATH, REQ, case=cid).trace_id
    sink.assert_exactly_once(ids, timeout=10)
    # ten calls well inside one interval: one export (two if a tick fell
    # in the middle), not one per call
    assert len(sink.otlp_requests()) <= 2


def test_http_level_settings(nginx, upstream, sink):
    ng = nginx("""
        langfuse_trace on;
        langfuse_endpoint @SINK@;
        langfuse_public_key pk-http;
        langfuse_secret_key sk-http;
        langfuse_environment from-http;
        server {
            listen 127.0.0.1:@PORT@;
            add_header X-Trace-Id $langfuse_trace_id always;
            location / { proxy_pass @UP@; }
            location /quiet/ { langfuse_trace off; proxy_pass @UP@/; }
        }""")
    cid = upstream.add(Case(body=openai_json()))
    r = ng.post(PATH, REQ, case=cid)
    sp = sink.span_for(r.trace_id)
    assert sp["record"].auth == ("pk-http", "sk-http")
    assert sp["attributes"]["langfuse.environment"] == "from-http"
    cid = upstream.add(Case(body=openai_json()))
    r2 = ng.post("/quiet" + PATH, REQ, case=cid)
    assert r2.status == 200
    time.sleep(0.3)
    assert len(sink.spans()) == 1
