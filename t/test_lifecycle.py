"""nginx reload and shutdown with the module: nothing queued is lost or
sent twice, and a hanging Langfuse does not keep nginx from exiting."""

import time

from lfcheck import OUTPUT, assistant, jattr
from upstream import Case, openai_json

PATH = "/v1/chat/completions"
REQ = {"model": "gpt-4o", "messages": [{"role": "user", "content": "hi"}]}

CONF = """
server {
    listen 127.0.0.1:@PORT@;
    location / { @LF@ proxy_pass @UP@; }
}
"""


def send(ng, upstream, text):
    case = Case(body=openai_json(content=text))
    cid = upstream.add(case)
    r = ng.post(PATH, REQ, case=cid)
    assert r.status == 200 and r.body == case.wire_body
    return r.trace_id


def test_reload_keeps_tracing_without_loss(nginx, upstream, sink):
    ng = nginx(CONF, flush_interval="500ms")
    before = [send(ng, upstream, "before %d" % i) for i in range(3)]
    ng.reload()
    after = [send(ng, upstream, "after %d" % i) for i in range(3)]
    spans = sink.assert_exactly_once(before + after, timeout=10)
    by_id = {s["traceId"]: s for s in spans}
    for i, t in enumerate(before):
        assert jattr(by_id[t], OUTPUT) == assistant("before %d" % i)
    for i, t in enumerate(after):
        assert jattr(by_id[t], OUTPUT) == assistant("after %d" % i)


CONF_SINK2 = """
server {
    listen 127.0.0.1:@PORT@;
    location / {
        langfuse_trace on;
        langfuse_endpoint @SINK2@;
        langfuse_public_key pk-lf-test;
        langfuse_secret_key sk-lf-test;
        add_header X-Trace-Id $langfuse_trace_id always;
        proxy_pass @UP@;
    }
}
"""


def test_reload_with_changed_destination(nginx, upstream, sink, sink2):
    ng = nginx(CONF)
    t1 = send(ng, upstream, "one")
    sink.span_for(t1)
    ng.reload(CONF_SINK2)
    t2 = send(ng, upstream, "two")
    assert jattr(sink2.span_for(t2), OUTPUT) == assistant("two")
    time.sleep(0.3)
    assert [s["traceId"] for s in sink.spans()] == [t1]
    assert [s["traceId"] for s in sink2.spans()] == [t2]


def test_shutdown_delivers_queued_spans_promptly(nginx, upstream, sink):
    # a long interval: the spans are surely still queued at SIGQUIT; they
    # must go out at exit, not when the next flush timer would have fired
    ng = nginx(CONF, flush_interval="5s")
    ids = [send(ng, upstream, "last words %d" % i) for i in range(3)]
    assert ng.stop() is True, "nginx needed SIGKILL"
    sink.assert_exactly_once(ids, timeout=3, settle=0)
    assert ng.stop_seconds < 3, (
        "graceful shutdown took %.1f s: it waited for the flush timer "
        "instead of flushing at exit" % ng.stop_seconds)


def test_shutdown_not_blocked_by_hanging_langfuse(nginx, upstream, sink):
    ng = nginx(CONF)
    ng.allow_errors(r".", always=True)
    sink.hang()
    send(ng, upstream, "x")
    time.sleep(0.5)  # an export is now waiting on the hung sink
    assert sink.hung, "the module never tried to export"
    assert ng.stop() is True, "nginx needed SIGKILL"
    assert ng.stop_seconds < 10


def test_shutdown_with_langfuse_down(nginx, upstream, sink):
    ng = nginx(CONF)
    ng.allow_errors(r".", always=True)
    sink.down()
    send(ng, upstream, "x")
    time.sleep(0.3)
    assert ng.stop() is True
    assert ng.stop_seconds < 10
