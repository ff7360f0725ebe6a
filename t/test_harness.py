"""Tests of the test harness itself (upstream.py, sink.py, harness.py,
conftest.py) - they need no langfuse module: nginx runs without
load_module where one is used."""

import base64
import gzip
import json
import os
import signal
import socket
import subprocess
import sys
import time
import zlib

import pytest

import harness
from harness import (http_request, stream_request, parse_sse, dechunk,
                     scan_log, free_port)
from sink import flatten_spans, attrs_to_dict
from upstream import (Case, Upstream, openai_json, openai_sse, openai_usage,
                      openai_chunks, dashscope_sse, dashscope_json,
                      dashscope_usage, sse, gzip_bytes, split_sizes)

HERE = os.path.dirname(os.path.abspath(__file__))
PY = sys.executable


@pytest.fixture(autouse=True)
def _sink_tests_may_repeat_spans(sink_server):
    """These tests post the same span on purpose: keep the sink's
    whole-life duplicate check (conftest) for the module tests."""
    yield
    sink_server.forget_history()


def otlp_doc(spans):
    return {"resourceSpans": [{
        "resource": {"attributes": [
            {"key": "service.name", "value": {"stringValue": "nginx"}}]},
        "scopeSpans": [{"scope": {"name": "nginx-llm-gateway",
                                  "version": "0.1.0"},
                        "spans": spans}]}]}


def a_span(trace_id="0af7651916cd43dd8448eb211c80319c", span_id="b7ad6b7169203331"):
    return {"traceId": trace_id, "spanId": span_id, "name": "chat.completions",
            "kind": 3, "startTimeUnixNano": "1764756000000000000",
            "endTimeUnixNano": "1764756000500000000", "status": {"code": 0},
            "attributes": [
                {"key": "langfuse.observation.type",
                 "value": {"stringValue": "generation"}},
                {"key": "n", "value": {"intValue": "42"}},
                {"key": "m", "value": {"intValue": 7}},
                {"key": "ok", "value": {"boolValue": True}},
                {"key": "d", "value": {"doubleValue": 0.5}},
                {"key": "langfuse.trace.tags", "value": {"arrayValue": {
                    "values": [{"stringValue": "a"}, {"stringValue": "b"}]}}},
                {"key": "kv", "value": {"kvlistValue": {"values": [
                    {"key": "x", "value": {"stringValue": "y"}}]}}},
            ]}


def post_sink(sink, path, doc, pk="pk-lf-test", sk="sk-lf-test", gz=True,
              timeout=5.0):
    raw = json.dumps(doc).encode()
    headers = {"Content-Type": "application/json",
               "Authorization": "Basic " + base64.b64encode(
                   ("%s:%s" % (pk, sk)).encode()).decode()}
    if gz:
        raw = gzip.compress(raw)
        headers["Content-Encoding"] = "gzip"
    return http_request(sink.port, path, "POST", raw, headers,
                        timeout=timeout)


# ---------------------------------------------------------------------------
# upstream, directly
# ---------------------------------------------------------------------------

def test_upstream_content_length_and_recording(upstream):
    cid = upstream.add(Case(body=openai_json(content="Hi"),
                            headers=[("X-Extra", "1")]))
    body = {"model": "gpt-4o-mini", "messages": [{"role": "user",
                                                  "content": "Say hi"}]}
    r = http_request(upstream.port, "/v1/chat/completions?x=1", "POST", body,
                     {"X-Test-Case": cid, "Content-Type": "application/json"})
    assert r.status == 200 and r.complete
    assert r.body == openai_json(content="Hi")
    assert r.header("Content-Length") == str(len(r.body))
    assert r.header("X-Extra") == "1"
    assert r.header("Content-Type") == "application/json"
    req, = upstream.cases[cid].requests
    assert req.method == "POST"
    assert req.path == "/v1/chat/completions?x=1"
    assert req.header("x-test-case") == cid
    assert req.json() == body
    assert req.body == json.dumps(body).encode()
    assert not req.chunked
    assert upstream.requests == [req]


def test_upstream_chunked_pieces_arrive_separately(upstream):
    data = openai_sse(["Hel", "lo ", "wörld 🌍"],
                      usage=openai_usage(5, 3))
    case = Case(body=data, content_type="text/event-stream", chunks="cycle",
                framing="chunked", chunk_delay=0.003)
    cid = upstream.add(case)
    r = stream_request(upstream.port, "/v1/chat/completions", body=b"{}",
                       headers={"X-Test-Case": cid})
    assert r.status == 200
    assert r.header("Transfer-Encoding") == "chunked"
    assert r.body == data
    # the wire carries one chunk per piece, sizes cycling 1..7
    expect = b"".join(b"%x\r\n" % len(p) + p + b"\r\n"
                      for p in split_sizes(data, range(1, 8))) + b"0\r\n\r\n"
    assert r.body_raw == expect
    assert dechunk(r.body_raw) == (data, True)
    # with TCP_NODELAY and a delay, most pieces come in their own read
    assert len(r.body_arrivals) > len(split_sizes(data, range(1, 8))) // 2
    assert [e["data"] for e in parse_sse(r.body)][-1] == "[DONE]"


def test_upstream_close_framing(upstream):
    cid = upstream.add(Case(body=b"x" * 5000, framing="close", chunks=1000,
                            content_type="text/plain"))
    r = stream_request(upstream.port, "/", body=b"", headers={
        "X-Test-Case": cid})
    assert r.header("Content-Length") is None
    assert r.header("Transfer-Encoding") is None
    assert r.eof and r.body == b"x" * 5000


def test_upstream_gzip(upstream):
    plain = openai_json(content="compressed " * 50)
    case = Case(body=plain, gzip=True, chunks=7)
    cid = upstream.add(case)
    r = http_request(upstream.port, "/v1/chat/completions", "POST", b"{}",
                     {"X-Test-Case": cid})
    assert r.header("Content-Encoding") == "gzip"
    assert r.body == case.wire_body == gzip_bytes(plain)
    assert gzip.decompress(r.body) == plain


def test_upstream_gzip_schedule_decodes_piecewise(upstream):
    case = Case(schedule=[(0, b"data: a\n\n"), (0.01, b"data: b\n\n")],
                gzip=True, content_type="text/event-stream",
                framing="chunked")
    d = zlib.decompressobj(31)
    first = d.decompress(case.pieces[0][1])
    assert first == b"data: a\n\n"  # sync flush: decodable on its own
    assert gzip.decompress(case.wire_body) == b"data: a\n\ndata: b\n\n"


def test_upstream_delays(upstream):
    cid = upstream.add(Case(body=b"{}", delay_before_headers=0.3))
    r = http_request(upstream.port, "/", "POST", b"{}", {"X-Test-Case": cid})
    assert r.ttfb >= 0.3 and r.body == b"{}"
    cid = upstream.add(Case(body=b"{\"a\":1}", delay_before_body=0.3))
    r = stream_request(upstream.port, "/", body=b"", headers={
        "X-Test-Case": cid})
    head_t = r.arrivals[0][0]
    assert r.body_arrivals[0][0] - head_t >= 0.29
    assert r.body == b"{\"a\":1}"


@pytest.mark.parametrize("mode", ["reset_after", "cut_after"])
def test_upstream_abort(upstream, mode):
    body = b"0123456789" * 100
    cid = upstream.add(Case(body=body, chunks=100, content_type="text/plain",
                            **{mode: 250}))
    r = stream_request(upstream.port, "/", body=b"",
                       headers={"X-Test-Case": cid})
    assert r.header("Content-Length") == "1000"
    assert body.startswith(r.body) and len(r.body) <= 250
    if mode == "cut_after":
        assert r.eof and r.body == body[:250]
    assert upstream.cases[cid].sent_body == body[:250]


def test_upstream_unknown_case_and_chunked_request(upstream):
    r = http_request(upstream.port, "/v1/chat/completions", "POST",
                     chunked=[b'{"a":', b'1}'],
                     headers={"X-Test-Case": "nope"})
    assert r.status == 404
    assert "nope" in r.json()["error"]["message"]
    req, = upstream.requests
    assert req.chunked and req.body == b'{"a":1}'


def test_demo_mode_json_and_stream():
    up = Upstream(demo=True).start()
    try:
        req = {"model": "my-model", "messages": [
            {"role": "system", "content": "be brief"},
            {"role": "user", "content": "hello there friend"}]}
        r = http_request(up.port, "/v1/chat/completions", "POST", req,
                         {"Content-Type": "application/json"})
        j = r.json()
        assert r.status == 200 and j["model"] == "my-model"
        assert j["usage"]["prompt_tokens"] == 5
        text = j["choices"][0]["message"]["content"]
        assert "hello there friend" in text
        assert j["usage"]["completion_tokens"] == len(text.split())

        req.update(stream=True, stream_options={"include_usage": True})
        r = http_request(up.port, "/compatible-mode/v1/chat/completions",
                         "POST", req)
        assert r.header("Content-Type") == "text/event-stream"
        evs = parse_sse(r.body)
        assert evs[-1]["data"] == "[DONE]"
        chunks = [json.loads(e["data"]) for e in evs[:-1]]
        assert chunks[-1]["choices"] == []
        assert chunks[-1]["usage"]["prompt_tokens"] == 5
        streamed = "".join(c["choices"][0]["delta"].get("content", "")
                           for c in chunks if c["choices"])
        assert streamed == text
        assert all(c["model"] == "my-model" for c in chunks)
        req["stream_options"] = {}
        r = http_request(up.port, "/v1/chat/completions", "POST", req)
        chunks = [json.loads(e["data"]) for e in parse_sse(r.body)[:-1]]
        assert all(c["choices"] for c in chunks)
        assert not any(c.get("usage") for c in chunks)
        r = http_request(up.port, "/v1/models", "GET")
        assert r.status == 404
    finally:
        up.stop()


def test_body_builders():
    chunks = openai_chunks(["a", "b"], usage=openai_usage(3, 2, cached=1),
                           usage_null=True)
    assert chunks[0]["choices"][0]["delta"] == {"role": "assistant",
                                                "content": ""}
    assert chunks[-1]["choices"] == [] and chunks[-1]["usage"] == {
        "prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5,
        "prompt_tokens_details": {"cached_tokens": 1}}
    assert chunks[1]["usage"] is None
    s = sse([{"x": 1}], crlf=True)
    assert s == b'data: {"x": 1}\r\n\r\ndata: [DONE]\r\n\r\n'
    inc = parse_sse(dashscope_sse(["你", "好"], incremental=True,
                                  final_usage=dashscope_usage(3, 2)))
    assert [e["event"] for e in inc] == ["result", "result"]
    assert [e["id"] for e in inc] == ["1", "2"]
    texts = [json.loads(e["data"])["output"]["choices"][0]["message"]
             ["content"] for e in inc]
    assert texts == ["你", "好"]
    full = parse_sse(dashscope_sse(["你", "好"], incremental=False))
    texts = [json.loads(e["data"])["output"]["choices"][0]["message"]
             ["content"] for e in full]
    assert texts == ["你", "你好"]
    last = json.loads(full[-1]["data"])
    assert last["output"]["choices"][0]["finish_reason"] == "stop"
    assert json.loads(full[0]["data"])["output"]["choices"][0][
        "finish_reason"] == "null"
    raw = dashscope_sse(["x"])
    assert raw.startswith(b"id:1\nevent:result\n:HTTP_STATUS/200\ndata:{")
    j = json.loads(dashscope_json(text="t", result_format="text"))
    assert j["output"] == {"text": "t", "finish_reason": "stop"}


# ---------------------------------------------------------------------------
# sink, directly
# ---------------------------------------------------------------------------

def test_sink_otlp_gzip_roundtrip(sink):
    doc = otlp_doc([a_span()])
    r = post_sink(sink, "/api/public/otel/v1/traces", doc)
    assert r.status == 200 and r.body == b"{}"
    rec, = sink.otlp_requests()
    assert rec.gzip and rec.raw[:2] == b"\x1f\x8b"
    assert rec.json == doc
    assert rec.auth == ("pk-lf-test", "sk-lf-test")
    sp, = sink.wait_for_spans(1, timeout=1)
    assert sp["attributes"] == {
        "langfuse.observation.type": "generation", "n": 42, "m": 7,
        "ok": True, "d": 0.5, "langfuse.trace.tags": ["a", "b"],
        "kv": {"x": "y"}}
    assert sp["resource"] == {"service.name": "nginx"}
    assert sp["scope"] == {"name": "nginx-llm-gateway", "version": "0.1.0"}
    assert sp["traceId"] == "0af7651916cd43dd8448eb211c80319c"
    assert sp["record"] is rec
    assert sink.span_for("0af7651916cd43dd8448eb211c80319c") is not None
    # uncompressed is fine too
    r = post_sink(sink, "/api/public/otel/v1/traces", otlp_doc([a_span(
        span_id="b7ad6b7169203332")]), gz=False)
    assert r.status == 200
    assert len(sink.spans()) == 2
    assert sink.duplicate_deliveries() == {}


def test_sink_duplicates_and_exactly_once(sink):
    doc = otlp_doc([a_span()])
    post_sink(sink, "/api/public/otel/v1/traces", doc)
    sink.assert_exactly_once(["0af7651916cd43dd8448eb211c80319c"],
                             settle=0.05)
    post_sink(sink, "/api/public/otel/v1/traces", doc)
    with pytest.raises(AssertionError):
        sink.assert_exactly_once(["0af7651916cd43dd8448eb211c80319c"],
                                 settle=0.05)
    assert list(sink.duplicate_deliveries().values()) == [2]
    # keep the module-level exactly-once check for the real tests clean
    sink.forget_history()


def test_sink_ingestion_207(sink):
    batch = {"batch": [
        {"id": "e1", "type": "trace-create", "timestamp": "x",
         "body": {"id": "t1", "name": "n"}},
        {"id": "e2", "type": "generation-create", "timestamp": "x",
         "body": {"id": "g1", "traceId": "t1", "model": "m"}}],
        "metadata": {"sdk_name": "nginx-langfuse"}}
    r = post_sink(sink, "/api/public/ingestion", batch)
    assert r.status == 207
    assert r.json() == {"successes": [{"id": "e1", "status": 201},
                                      {"id": "e2", "status": 201}],
                        "errors": []}
    g, = sink.wait_for_generations(1, timeout=1)
    assert g["body"]["model"] == "m"
    assert sink.trace_for("t1")["body"]["name"] == "n"
    assert sink.generation_for("t1")["id"] == "e2"


def test_sink_auth(sink):
    r = post_sink(sink, "/api/public/otel/v1/traces", otlp_doc([]),
                  pk="", sk="x")
    assert r.status == 401
    r = http_request(sink.port, "/api/public/otel/v1/traces", "POST", b"{}",
                     {"Authorization": "Bearer x"})
    assert r.status == 401
    sink.expected_auth = ("pk-a", "sk-a")
    assert post_sink(sink, "/api/public/otel/v1/traces", otlp_doc([])
                     ).status == 401
    assert post_sink(sink, "/api/public/otel/v1/traces", otlp_doc([]),
                     pk="pk-a", sk="sk-a").status == 200
    assert [r.auth for r in sink.requests()] == [
        None, None, ("pk-lf-test", "sk-lf-test"), ("pk-a", "sk-a")]
    assert len(sink.otlp_requests()) == 1


def test_sink_fail_count(sink):
    sink.fail(503, count=2)
    got = [post_sink(sink, "/api/public/otel/v1/traces",
                     otlp_doc([a_span(span_id="%016x" % i)])).status
           for i in range(3)]
    assert got == [503, 503, 200]
    assert len(sink.spans()) == 1
    assert len(sink.spans(include_rejected=True)) == 3


def test_sink_hang_release(sink):
    sink.hang()
    r = post_sink(sink, "/api/public/otel/v1/traces", otlp_doc([a_span()]),
                  timeout=0.3)
    assert r.status is None and r.error is not None
    assert len(sink.hung) == 1 and sink.spans() == []
    sink.release()
    r = post_sink(sink, "/api/public/otel/v1/traces", otlp_doc([a_span()]))
    assert r.status == 200


def test_sink_delay_and_reset(sink):
    sink.delay(0.3, count=1)
    t0 = time.monotonic()
    assert post_sink(sink, "/api/public/otel/v1/traces",
                     otlp_doc([a_span()])).status == 200
    assert time.monotonic() - t0 >= 0.3
    sink.reset_connections(count=1)
    r = post_sink(sink, "/api/public/otel/v1/traces", otlp_doc([a_span()]))
    assert r.status is None and r.error is not None
    assert post_sink(sink, "/api/public/otel/v1/traces",
                     otlp_doc([a_span(span_id="0000000000000002")])
                     ).status == 200
    assert [r.fault for r in sink.requests()] == [None, "reset", None]
    assert sink.requests()[0].delayed


def test_sink_down_up(sink):
    port = sink.port
    sink.down()
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", port), timeout=1)
    sink.up()
    assert sink.port == port
    assert post_sink(sink, "/api/public/otel/v1/traces",
                     otlp_doc([a_span()])).status == 200


def test_sink_wait_timeout_message(sink):
    with pytest.raises(AssertionError) as ei:
        sink.wait_for_spans(1, timeout=0.2)
    assert "waiting for 1 span" in str(ei.value)


def test_sink_keepalive(sink):
    import http.client
    c = http.client.HTTPConnection("127.0.0.1", sink.port, timeout=5)
    for i in range(3):
        c.request("POST", "/api/public/otel/v1/traces",
                  json.dumps(otlp_doc([a_span(span_id="%016x" % i)])),
                  {"Authorization": "Basic " +
                   base64.b64encode(b"a:b").decode()})
        resp = c.getresponse()
        assert resp.status == 200 and resp.read() == b"{}"
    c.close()
    assert len(sink.spans()) == 3


def test_attr_helpers():
    assert attrs_to_dict([{"key": "a", "value": {}}]) == {"a": None}
    assert flatten_spans(None) == [] and flatten_spans({"x": 1}) == []


# ---------------------------------------------------------------------------
# standalone scripts
# ---------------------------------------------------------------------------

def _wait_port(port, proc, timeout=10):
    deadline = time.monotonic() + timeout
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            assert proc.poll() is None, proc.stdout.read()
            assert time.monotonic() < deadline
            time.sleep(0.05)


def test_standalone_upstream_demo():
    port = free_port()
    p = subprocess.Popen([PY, os.path.join(HERE, "lib", "upstream.py"),
                          "--port", str(port), "--demo"],
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                         text=True)
    try:
        _wait_port(port, p)
        r = http_request(port, "/v1/chat/completions", "POST",
                         {"model": "x", "messages": [
                             {"role": "user", "content": "one two"}]})
        assert r.status == 200
        assert r.json()["usage"]["prompt_tokens"] == 2
    finally:
        p.send_signal(signal.SIGINT)
        p.wait(10)


def test_standalone_sink_print():
    port = free_port()
    p = subprocess.Popen([PY, os.path.join(HERE, "lib", "sink.py"),
                          "--port", str(port), "--print"],
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                         text=True)
    try:
        _wait_port(port, p)
        sp = a_span()
        sp["attributes"] += [
            {"key": "langfuse.observation.model.name",
             "value": {"stringValue": "gpt-4o"}},
            {"key": "langfuse.observation.usage_details",
             "value": {"stringValue": '{"input":1,"output":2,"total":3}'}},
            {"key": "langfuse.observation.output",
             "value": {"stringValue": '{"role":"assistant","content":"'
                       + "long " * 100 + '"}'}},
            {"key": "langfuse.observation.completion_start_time",
             "value": {"stringValue": '"2025-12-03T10:00:00.100Z"'}}]

        class S:
            pass
        s = S()
        s.port = port
        r = post_sink(s, "/api/public/otel/v1/traces", otlp_doc([sp]))
        assert r.status == 200
    finally:
        p.send_signal(signal.SIGINT)
        out = p.communicate(timeout=10)[0]
    assert "=== generation chat.completions" in out
    assert "trace 0af7651916cd43dd8448eb211c80319c" in out
    assert "model  gpt-4o" in out
    assert '{"input":1,"output":2,"total":3}' in out
    assert "duration 500 ms" in out and "first token 100 ms" in out
    assert "..." in out  # long output abbreviated


# ---------------------------------------------------------------------------
# nginx plumbing without the module
# ---------------------------------------------------------------------------

PLAIN = """
    server {
        listen 127.0.0.1:@PORT@;
        location / { proxy_http_version 1.1; proxy_pass @UP@; }
    }
    server {
        listen 127.0.0.1:@PORT_NOBUF@;
        location / { proxy_http_version 1.1; proxy_buffering off;
                     proxy_request_buffering off; proxy_pass @UP@; }
    }
    server {
        listen 127.0.0.1:@PORT_BAD@;
        location / { proxy_pass http://127.0.0.1:@PORT_CLOSED@; }
    }
"""


@pytest.fixture(scope="module")
def plain(module_nginx):
    return module_nginx(PLAIN, module=False)


def test_conf_rendering(nginx_conf, upstream, sink):
    ng = nginx_conf("server { listen 127.0.0.1:@PORT@; location / { @LF@ "
                    "proxy_pass @UP@; } }", batch_size=7, queue_size="1m")
    c = ng.conf
    assert "load_module %s;" % harness.MODULE_PATH in c
    assert "worker_processes 2;" in c
    assert ("user root;" in c) == (os.geteuid() == 0)
    assert "daemon off;" in c and "master_process on;" in c
    assert "error_log %s/error.log info;" % ng.prefix in c
    assert "pid %s/nginx.pid;" % ng.prefix in c
    assert "proxy_temp_path %s/tmp/proxy;" % ng.prefix in c
    assert "client_body_temp_path %s/tmp/client_body;" % ng.prefix in c
    assert "langfuse_flush_interval 100ms;" in c
    assert "langfuse_batch_size 7;" in c and "langfuse_queue_size 1m;" in c
    assert "langfuse_endpoint %s;" % sink.endpoint in c
    assert "langfuse_public_key pk-lf-test;" in c
    assert "add_header X-Trace-Id $langfuse_trace_id always;" in c
    assert "proxy_pass %s;" % upstream.url in c
    assert "listen 127.0.0.1:%d;" % ng.ports["PORT"] in c
    ng2 = nginx_conf("server { listen 127.0.0.1:@PORT@; }", module=False,
                     workers=1)
    assert "load_module" not in ng2.conf and "langfuse" not in ng2.conf
    assert "worker_processes 1;" in ng2.conf
    with pytest.raises(KeyError):
        nginx_conf("@NOPE@", module=False)


def test_memcheck_env(nginx_conf):
    ng = nginx_conf("", module=False, memcheck="asan")
    cmd, env = ng._cmd_env()
    if harness.libasan_path():
        assert env["LD_PRELOAD"] == harness.libasan_path()
    assert env["ASAN_OPTIONS"] == (
        "detect_leaks=0:abort_on_error=0:log_path=%s/asan" % ng.prefix)
    assert cmd[0] == harness.NGINX_BIN
    ng = nginx_conf("", module=False, memcheck="valgrind")
    cmd, env = ng._cmd_env()
    assert cmd[0] == "valgrind" and cmd[cmd.index(harness.NGINX_BIN) - 1] \
        == "--log-file=%s/valgrind.%%p.log" % ng.prefix
    assert harness.memcheck_unavailable_reason("bogus")


def test_nginx_dash_t(nginx_conf):
    ok = nginx_conf("server { listen 127.0.0.1:@PORT@; }", module=False)
    rc, out = ok.test_config()
    assert rc == 0 and "test is successful" in out
    bad = nginx_conf("server { listen 127.0.0.1:@PORT@; bogus_directive; }",
                     module=False)
    rc, out = bad.test_config()
    assert rc != 0
    assert "[emerg]" in out and 'unknown directive "bogus_directive"' in out


def test_scan_log():
    text = ("2025/01/01 [info] 1#1: ok\n"
            "2025/01/01 [error] 1#1: connect() failed (111)\n"
            "2025/01/01 [alert] 1#1: worker process exited on signal 11\n"
            "==1==ERROR: AddressSanitizer: heap-use-after-free\n"
            "x.c:1: runtime error: signed integer overflow\n")
    assert len(scan_log(text)) == 4
    assert len(scan_log(text, [r"connect\(\) failed"])) == 3


@pytest.mark.parametrize("framing", ["length", "chunked", "close"])
@pytest.mark.parametrize("port", ["PORT", "PORT_NOBUF"])
@pytest.mark.parametrize("gz", [False, True])
def test_plain_nginx_passes_bytes_unchanged(plain, upstream, framing, port,
                                           gz):
    data = openai_sse(["Hé", "llo", " wörld", " 🌍!"] * 2,
                      usage=openai_usage(11, 7), crlf=framing == "close")
    case = Case(body=data, content_type="text/event-stream", chunks="cycle",
                chunk_delay=0.001, framing=framing, gzip=gz)
    cid = upstream.add(case)
    req = json.dumps({"model": "m", "messages": [], "stream": True}).encode()
    r = plain.post("/v1/chat/completions", req, case=cid, port=port)
    assert r.status == 200 and r.complete
    assert r.body == case.wire_body
    assert (r.header("Content-Encoding") == "gzip") == gz
    assert upstream.cases[cid].requests[0].body == req


def test_plain_nginx_request_body_chunked(plain, upstream):
    cid = upstream.add(Case(body=b"{}"))
    pieces = [b'{"model":"m",', b'"messages":[{"role":"user",',
              b'"content":"x"}]}']
    r = plain.post("/v1/chat/completions", case=cid, port="PORT_NOBUF",
                   chunked=pieces)
    assert r.status == 200
    req, = upstream.cases[cid].requests
    assert req.body == b"".join(pieces)
    cid = upstream.add(Case(body=b"{}"))
    r = plain.post("/v1/chat/completions", case=cid, chunked=pieces)
    req, = upstream.cases[cid].requests
    assert req.body == b"".join(pieces) and not req.chunked


def test_plain_nginx_streams_without_buffering(plain, upstream):
    sched = [(0, b"data: 1\n\n"), (0.15, b"data: 2\n\n"),
             (0.15, b"data: 3\n\n")]
    cid = upstream.add(Case(schedule=sched, content_type="text/event-stream",
                            framing="chunked"))
    r = plain.stream("/v1/chat/completions", b"{}", case=cid,
                     port="PORT_NOBUF")
    assert r.body == b"data: 1\n\ndata: 2\n\ndata: 3\n\n"
    assert r.body_arrivals[-1][0] - r.body_arrivals[0][0] >= 0.25


def test_plain_nginx_error_log_checked(plain, upstream):
    r = plain.request("/x", port="PORT_BAD")
    assert r.status == 502
    time.sleep(0.05)
    with pytest.raises(AssertionError) as ei:
        plain.check_logs()
    assert "connect() failed" in str(ei.value)
    r = plain.request("/x", port="PORT_BAD")
    plain.allow_errors(r"connect\(\) failed")
    time.sleep(0.05)
    assert plain.check_logs() == []


def test_sanitizer_report_files_fail_the_check(plain):
    assert plain.check_logs() == []
    path = os.path.join(plain.prefix, "asan.424242")
    with open(path, "w") as f:
        f.write("==424242==ERROR: AddressSanitizer: heap-use-after-free\n")
    with pytest.raises(AssertionError) as ei:
        plain.check_logs()
    assert "heap-use-after-free" in str(ei.value)
    assert plain.check_logs() == []  # reported once
    with open(path, "a") as f:
        f.write("==424242==ERROR: AddressSanitizer: double-free\n")
    with pytest.raises(AssertionError) as ei:
        plain.check_logs()
    assert "double-free" in str(ei.value)
    assert "heap-use-after-free" not in str(ei.value)
    os.unlink(path)


def test_plain_nginx_upstream_reset_and_slow(plain, upstream):
    plain.allow_errors(r"upstream prematurely closed",
                       r"(recv|readv)\(\) failed \(104")
    body = b"y" * 3000
    case = Case(body=body, chunks=500, framing="chunked", reset_after=1000,
                content_type="text/plain")
    cid = upstream.add(case)
    r = plain.request("/", case=cid, port="PORT_NOBUF")
    assert r.status == 200 and not r.complete
    assert body.startswith(r.body)
    cid = upstream.add(Case(body=b"{}", delay_before_headers=0.3))
    r = plain.request("/", case=cid)
    assert r.elapsed >= 0.3 and r.body == b"{}"


def test_module_missing_reason_points_at_env(monkeypatch):
    monkeypatch.setattr(harness, "MODULE_PATH", "/nonexistent/x.so")
    assert "LF_MODULE" in harness.module_missing_reason()
