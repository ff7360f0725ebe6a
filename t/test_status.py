"""langfuse_status: the counters of every destination and of the queue,
as JSON and as Prometheus text, with nothing secret in them."""

import json
import time

from upstream import Case, openai_json

PATH = "/v1/chat/completions"
REQ = {"model": "gpt-4o", "messages": [{"role": "user", "content": "hi"}]}

CONF = """
server {
    listen 127.0.0.1:@PORT@;
    location / { @LF@ proxy_pass @UP@; }
    location = /langfuse { langfuse_status; }
}
"""


STATUSES = {k: 0 for k in ("400", "401", "403", "404", "408", "413", "429",
                           "500", "502", "503", "504", "other")}


def send(ng, upstream):
    case = Case(body=openai_json(content="ok"))
    r = ng.post(PATH, REQ, case=upstream.add(case))
    assert r.status == 200
    return r.trace_id


def status(ng, query=""):
    r = ng.request("/langfuse" + query)
    assert r.status == 200
    assert b"sk-lf" not in r.body
    return r


def test_status_counts_delivered_calls(nginx, upstream, sink):
    ng = nginx(CONF)
    ids = [send(ng, upstream) for _ in range(3)]
    sink.assert_exactly_once(ids)
    time.sleep(0.3)

    r = status(ng)
    assert r.header("Content-Type") == "application/json"
    doc = json.loads(r.body)

    assert doc["queue"]["events"] == 0
    assert doc["queue"]["bytes"] == 0
    assert doc["queue"]["size"] == 16 * 1024 * 1024
    assert len(doc["destinations"]) == 1

    d = doc["destinations"][0]
    assert d["endpoint"] == sink.endpoint + "/api/public/otel/v1/traces"
    assert d["public_key"] == "pk-lf-test"
    assert d["protocol"] == "otlp"
    assert (d["captured"], d["queued"], d["sent"]) == (3, 3, 3)
    assert (d["retried"], d["rejected"], d["failed"]) == (0, 0, 0)
    assert (d["spooled"], d["replayed"]) == (0, 0)
    assert d["dropped"] == {"queue_full": 0, "too_large": 0,
                            "no_destination": 0, "serialize": 0,
                            "spool_full": 0, "spool_error": 0}
    assert doc["spool"] is None
    assert d["parse_errors"] == {"request": 0, "response": 0}
    assert d["errors_by_status"] == STATUSES
    assert d["in_flight"] == 0
    assert abs(d["last_success"] - time.time()) < 10
    assert d["last_error"] is None


def test_status_shows_refusals_and_errors(nginx, upstream, sink):
    ng = nginx(CONF)
    ng.allow_errors(r"failed: refused, events dropped, status 401")
    sink.fail(401, count=1)

    send(ng, upstream)
    sink.wait_for_requests(1)
    time.sleep(0.5)

    d = json.loads(status(ng).body)["destinations"][0]
    assert (d["captured"], d["sent"], d["rejected"]) == (1, 0, 1)
    assert d["errors"] == {"network": 0, "http_3xx": 0, "http_429": 0,
                           "http_4xx": 1, "http_5xx": 0}
    assert d["errors_by_status"] == dict(STATUSES, **{"401": 1})
    assert d["batches"] == {"sent": 0, "failed": 1}
    assert d["last_error"]["message"] == (
        'status 401: {"message": "injected failure", "status": 401}')


def test_status_as_prometheus_text(nginx, upstream, sink):
    ng = nginx(CONF)
    sink.assert_exactly_once([send(ng, upstream)])
    time.sleep(0.3)

    r = status(ng, "?format=prometheus")
    assert r.header("Content-Type").startswith("text/plain")
    text = r.body.decode()
    labels = ('endpoint="%s/api/public/otel/v1/traces",public_key="pk-lf-test"'
              % sink.endpoint)

    for line in ("nginx_langfuse_events_total{%s,state=\"sent\"} 1",
                 "nginx_langfuse_events_total{%s,state=\"captured\"} 1",
                 "nginx_langfuse_dropped_total{%s,cause=\"queue_full\"} 0",
                 "nginx_langfuse_in_flight{%s} 0"):
        assert (line % labels) + "\n" in text

    assert "# TYPE nginx_langfuse_events_total counter\n" in text
    assert "nginx_langfuse_queue_events 0\n" in text
    for ln in text.splitlines():
        assert ln.startswith("#") or len(ln.split(" ")) == 2, ln


def test_status_counts_failures_by_http_status(nginx, upstream, sink):
    ng = nginx(CONF)
    ng.allow_errors(r"failed: temporary failure, status (503|502|599)")
    for code in (503, 502, 599):
        sink.fail(code, count=1)
        before = len(sink.requests())
        send(ng, upstream)
        sink.wait_for_requests(before + 2, timeout=5)   # failed, retried

    time.sleep(0.3)
    d = json.loads(status(ng).body)["destinations"][0]
    assert d["errors_by_status"] == dict(STATUSES, **{"502": 1, "503": 1,
                                                      "other": 1})
    assert d["errors"]["http_5xx"] == 3
    assert d["sent"] == 3

    text = status(ng, "?format=prometheus").body.decode()
    labels = ('endpoint="%s/api/public/otel/v1/traces",public_key="pk-lf-test"'
              % sink.endpoint)
    for code, n in (("503", 1), ("502", 1), ("other", 1), ("400", 0)):
        assert ('nginx_langfuse_export_errors_by_status_total{%s,'
                'status="%s"} %d\n' % (labels, code, n)) in text


def test_status_page_holds_every_destination(nginx, upstream, sink):
    """32 destinations (the most there can be) with long endpoints fit
    on the page, in both formats."""
    long_ep = sink.endpoint + "/" + "p" * 200
    locs = "".join(
        "location /d%d/ { langfuse_trace on; langfuse_endpoint %s;"
        " langfuse_public_key pk-lf-%d-%s; langfuse_secret_key sk-lf-x;"
        " proxy_pass @UP@/; }\n" % (i, long_ep, i, "k" * 100)
        for i in range(32))
    ng = nginx(CONF.replace("location / {", locs + "    location / {"))
    ng.allow_errors(r"failed: refused, events dropped, status 404")
    for i in range(32):
        case = Case(body=openai_json(content="ok"))
        r = ng.post("/d%d" % i + PATH, REQ, case=upstream.add(case))
        assert r.status == 200

    def dests():
        return json.loads(status(ng).body)["destinations"]

    deadline = time.monotonic() + 10
    while len(dests()) < 32 and time.monotonic() < deadline:
        time.sleep(0.1)
    assert len(dests()) == 32
    text = status(ng, "?format=prometheus").body.decode()
    assert text.count("nginx_langfuse_in_flight{") == 32
    assert text.endswith("\n")
