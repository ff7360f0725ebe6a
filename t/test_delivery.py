"""Delivery when Langfuse fails: temporary failures are retried with the
same bytes until they succeed, refusals are final and logged, a batch
too large is split, and an outage loses nothing that fits the queue."""

import re
import time

from lfcheck import (CHAT_PATH, CHAT_REQ, OUTPUT, TRACED, assistant,
                     jattr, send_chat)

PATH, REQ, CONF = CHAT_PATH, CHAT_REQ, TRACED


def logged(ng, pattern):
    return re.search(pattern, ng.read_error_log()) is not None


send = send_chat


def test_temporary_failures_are_retried_with_identical_bytes(
        nginx, upstream, sink):
    ng = nginx(CONF, flush_interval="100ms")
    ng.allow_errors(r"langfuse: export of 1 event\(s\) .* failed: "
                    r"temporary failure, status 503")
    sink.fail(503, count=2)

    tid = send(ng, upstream, "again")

    spans = sink.assert_exactly_once([tid], timeout=10)
    assert jattr(spans[0], OUTPUT) == assistant("again")

    tries = [r for r in sink.requests() if r.raw]
    assert [r.status for r in tries] == [503, 503, 200]
    # a retry re-sends the very same compressed body
    assert tries[0].raw == tries[1].raw == tries[2].raw
    # backoff: about 1 s, then about 2 s (jitter over the upper half)
    assert 0.45 <= tries[1].time - tries[0].time <= 1.6
    assert 0.95 <= tries[2].time - tries[1].time <= 2.6


def test_retry_after_is_honoured(nginx, upstream, sink):
    ng = nginx(CONF, flush_interval="100ms")
    ng.allow_errors(r"failed: temporary failure, status 429")
    sink.retry_after = 2
    sink.fail(429, count=1)

    tid = send(ng, upstream, "later")

    sink.assert_exactly_once([tid], timeout=10)
    tries = sink.requests()
    assert [r.status for r in tries] == [429, 200]
    assert tries[1].time - tries[0].time >= 1.9


def test_refusal_is_final_and_logged(nginx, upstream, sink):
    ng = nginx(CONF, flush_interval="100ms")
    ng.allow_errors(r"failed: refused, events dropped, status 400")
    sink.fail(400, count=1)

    send(ng, upstream, "never")
    sink.wait_for_requests(1)
    time.sleep(2.5)

    assert [r.status for r in sink.requests()] == [400]
    assert logged(ng, 
        r"export of 1 event\(s\) to \"http://127\.0\.0\.1:\d+/api/public/"
        r"otel/v1/traces\" failed: refused, events dropped, status 400, "
        r"response \"\{\"message\": \"injected failure\", \"status\": 400\}\"")

    # the next call goes through: one refusal blocks nothing
    tid = send(ng, upstream, "fine")
    sink.assert_exactly_once([tid])


def test_too_large_batch_is_split(nginx, upstream, sink):
    ng = nginx(CONF, flush_interval="1s")
    sink.max_spans = 1

    ids = [send(ng, upstream, "part %d" % i) for i in range(4)]

    spans = sink.assert_exactly_once(ids, timeout=10)
    by_id = {s["traceId"]: s for s in spans}
    for i, t in enumerate(ids):
        assert jattr(by_id[t], OUTPUT) == assistant("part %d" % i)

    statuses = [r.status for r in sink.requests()]
    assert statuses.count(200) == 4
    assert 413 in statuses
    assert logged(ng, r"refused a batch of 4 events as too large, "
                             r"sending it in halves")


def test_outage_then_recovery_loses_nothing(nginx, upstream, sink):
    ng = nginx(CONF, flush_interval="100ms")
    ng.allow_errors(r"failed: Failed to connect|failed: Connection refused|"
                    r"failed: Couldn't connect")
    sink.down()

    ids = [send(ng, upstream, "during %d" % i) for i in range(20)]
    time.sleep(1.5)
    sink.up()

    spans = sink.assert_exactly_once(ids, timeout=30)
    outputs = sorted(jattr(s, OUTPUT)["content"] for s in spans)
    assert outputs == sorted("during %d" % i for i in range(20))


def test_ingestion_refused_events_are_counted_not_resent(
        nginx, upstream, sink):
    ng = nginx(CONF.replace("@LF@", "@LF@ langfuse_protocol ingestion;"),
               flush_interval="100ms")
    ng.allow_errors(r"refused 1 of 2 events as invalid: "
                    r"\"Invalid request data\"")
    sink.ingestion_errors = 1

    send(ng, upstream, "half")
    sink.wait_for_requests(1)
    time.sleep(1.5)

    assert [r.status for r in sink.requests()] == [207]
    assert logged(ng, r"refused 1 of 2 events as invalid")
