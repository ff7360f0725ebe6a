"""Delivery when Langfuse fails: temporary failures are retried with the
same bytes until they succeed, refusals are final and logged, a batch
too large is split, and an outage loses nothing that fits the queue."""

import json
import re
import time

import pytest

from lfcheck import (CHAT_PATH, CHAT_REQ, INPUT, MODEL, OUTPUT, TRACED,
                     USAGE, assistant, jattr, send_chat, usage)
from upstream import Case, openai_json

PATH, REQ, CONF = CHAT_PATH, CHAT_REQ, TRACED


def logged(ng, pattern):
    return re.search(pattern, ng.read_error_log()) is not None


send = send_chat

# the legacy protocol, with a status page
LEGACY_ST = CONF.replace("@LF@", "@LF@ langfuse_protocol ingestion;").replace(
    "location / {", "location = /st { langfuse_status; }\n    location / {")


def fail_generations_once(sink):
    """The next 207 answer fails every generation-create with a 503."""
    sink.ingestion_errors = ("generation-create",)
    sink.ingestion_error_status = 503
    sink.ingestion_error_requests = 1


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


def test_single_event_too_large_is_cut_not_dropped(nginx, upstream, sink):
    """Alone and still refused with 413: the event goes again with its
    output cut to an eighth of the event; usage and model stay whole."""
    ng = nginx(CONF, flush_interval="100ms")
    sink.max_bytes = 20000
    text = "z" * 60000
    case = Case(body=openai_json(
        content=text, usage={"prompt_tokens": 7, "completion_tokens": 60000,
                             "total_tokens": 60007}))
    r = ng.post(PATH, REQ, case=upstream.add(case))
    assert r.status == 200 and r.body == case.wire_body

    span = sink.span_for(r.trace_id, timeout=10)
    assert jattr(span, USAGE) == usage(7, 60000, 60007)
    assert span["attributes"][MODEL] == "gpt-4o-mini"

    whole = json.dumps(assistant(text), separators=(",", ":"))
    got = span["attributes"][OUTPUT]
    m = re.match(r"^(.*)\.\.\. \[(\d+) bytes cut\]$", got, re.S)
    assert m, got[-80:]
    kept, cut = m.group(1), int(m.group(2))
    assert whole.startswith(kept) and len(kept) + cut == len(whole)
    assert 4096 < len(kept) < 20000
    # the input was small: untouched
    assert jattr(span, INPUT) == REQ["messages"]

    assert [q.status for q in sink.requests()] == [413, 200]
    assert logged(ng, r"refused an event of \d+ bytes as too large, it goes "
                      r"again with its input and output cut to \d+ bytes")


def test_single_legacy_event_too_large_is_cut(nginx, upstream, sink):
    ng = nginx(CONF.replace("@LF@", "@LF@ langfuse_protocol ingestion;"),
               flush_interval="100ms")
    sink.max_bytes = 20000
    text = "q" * 60000
    case = Case(body=openai_json(content=text))
    r = ng.post(PATH, REQ, case=upstream.add(case))
    assert r.status == 200 and r.body == case.wire_body

    gens = sink.wait_for_generations(1, timeout=10)
    body = gens[0]["body"]
    assert body["model"] == "gpt-4o-mini"
    whole = json.dumps(assistant(text), separators=(",", ":"))
    m = re.match(r"^(.*)\.\.\. \[(\d+) bytes cut\]$", body["output"],
                 re.S)
    assert m and len(m.group(1)) + int(m.group(2)) == len(whole)
    assert whole.startswith(m.group(1))
    # the trace and the generation both hold the output: cut twice, the
    # second note counts both cuts
    assert [q.status for q in sink.requests()] == [413, 413, 207]


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


def test_ingestion_temporary_refusals_go_again_alone(nginx, upstream, sink):
    """Events a 207 answer failed with a 5xx go again, without the events
    of the same batch that were taken."""
    ng = nginx(LEGACY_ST, workers=1, flush_interval="30s", batch_size=2)
    ng.allow_errors(r"export of 2 event\(s\) .* failed: temporary failure "
                    r"of some events, status 207, response .*Internal error")
    fail_generations_once(sink)

    ids = [send(ng, upstream, "part %d" % i) for i in range(2)]
    sink.wait_for_requests(2, timeout=5)
    time.sleep(0.5)

    first, second = sink.requests()
    assert (first.status, second.status) == (207, 207)
    sent = [e["type"] for e in first.json["batch"]]
    assert sent == ["trace-create", "generation-create"] * 2
    # only the two generations go again, byte for byte the same events
    again = second.json["batch"]
    assert again == [e for e in first.json["batch"]
                     if e["type"] == "generation-create"]
    assert 0.45 <= second.time - first.time <= 1.6

    gens = sink.generations()
    assert sorted(g["body"]["traceId"] for g in gens) == sorted(ids)
    assert sorted(t["body"]["id"] for t in sink.traces()) == sorted(ids)

    d = json.loads(ng.request("/st").body)["destinations"][0]
    assert (d["sent"], d["rejected"], d["retried"]) == (2, 0, 2)


def test_ingestion_refusals_after_a_long_answer_go_again(nginx, upstream,
                                                          sink):
    """A 207 answer of any length is read whole: the refusals at the end
    of a 400 KB answer are found, and their events go again."""
    ng = nginx(LEGACY_ST, workers=1, flush_interval="30s", batch_size=20)
    ng.allow_errors(r"failed: temporary failure of some events, status 207")
    fail_generations_once(sink)
    sink.ingestion_padding = 20000

    ids = [send(ng, upstream, "long %d" % i) for i in range(20)]
    sink.wait_for_requests(2, timeout=5)
    time.sleep(0.5)

    first, second = sink.requests()
    assert len(first.json["batch"]) == 40
    assert [e["type"] for e in second.json["batch"]] == \
        ["generation-create"] * 20
    assert sorted(g["body"]["traceId"] for g in sink.generations()) == \
        sorted(ids)
    d = json.loads(ng.request("/st").body)["destinations"][0]
    assert (d["sent"], d["rejected"], d["retried"]) == (20, 0, 20)


def test_ingestion_invalid_and_temporary_refusals_in_one_answer(
        nginx, upstream, sink):
    """A call with an event refused as invalid is rejected whole; the
    other call's temporarily failed event goes again."""
    ng = nginx(LEGACY_ST, workers=1, flush_interval="30s", batch_size=2)
    ng.allow_errors(r"refused 1 of 4 events as invalid: \"Invalid request "
                    r"data\" \(0 more failure\(s\) not logged\)",
                    r"failed: temporary failure of some events, status 207")

    ids = []
    sink.ingestion_errors = 1
    sink.ingestion_error_requests = 1
    ids.append(send(ng, upstream, "invalid"))
    ids.append(send(ng, upstream, "valid"))
    sink.wait_for_requests(1, timeout=5)
    time.sleep(1.8)

    assert [r.status for r in sink.requests()] == [207]
    d = json.loads(ng.request("/st").body)["destinations"][0]
    assert (d["sent"], d["rejected"], d["retried"]) == (1, 1, 0)
    assert [t["body"]["id"] for t in sink.traces()] == [ids[1]]


def test_total_timeout_retries_a_slow_answer(nginx, upstream, sink):
    """langfuse_timeout: an answer slower than it is given up and sent
    again; the slow answer does not count as delivered."""
    ng = nginx(CONF, flush_interval="100ms",
               http_extra="langfuse_timeout 500ms; "
                          "langfuse_connect_timeout 200ms;")
    ng.allow_errors(r"failed: Operation timed out after 5\d\d milliseconds")
    sink.delay(1.5, count=1, accept=False)

    tid = send(ng, upstream, "slow")

    sink.assert_exactly_once([tid], timeout=10)
    # in the order they came (the slow one is recorded when answered)
    tries = sorted(sink.wait_for_requests(2), key=lambda r: r.time)
    assert [r.fault for r in tries] == ["delay", None]
    assert tries[0].raw == tries[1].raw


def test_timeouts_are_checked(nginx_conf):
    for bad, msg in (
            ("langfuse_timeout 0;", '"langfuse_timeout" must be positive'),
            ("langfuse_connect_timeout 0;",
             '"langfuse_connect_timeout" must be positive'),
            ("langfuse_timeout soon;", '"langfuse_timeout" directive '
                                       'invalid value')):
        rc, out = nginx_conf(CONF, http_extra=bad).test_config()
        assert rc != 0 and msg in out, (bad, out)


def test_state_changes_are_in_the_debug_log(nginx, upstream, sink):
    """Every step of a call's way to Langfuse has a debug line (nginx is
    built --with-debug)."""
    ng = nginx(CONF, workers=1, flush_interval="100ms",
               main_extra="error_log @PREFIX@/debug.log debug;")
    ng.allow_errors(r"failed: temporary failure, status 503")
    sink.fail(503, count=1)

    tid = send(ng, upstream, "traced")
    sink.assert_exactly_once([tid], timeout=10)
    ng.stop()

    with open(ng.prefix + "/debug.log") as f:
        log = f.read()
    if "[debug]" not in log:
        pytest.skip("nginx is not built --with-debug")
    steps = [
        r"langfuse exporter of worker 0: 1 destination\(s\), flush every "
        r"100 ms",
        r"langfuse capture of trace %s: \"application/json\", encoding 0"
        % tid,
        r"langfuse queued trace %s, rc 0" % tid,
        r"langfuse flush, 0 in flight",
        r"langfuse export of 1 event\(s\), \d+ bytes to \".*\", attempt 1",
        r"langfuse export of 1 event\(s\) ended: No error, status 503, "
        r"attempt 1",
        r"langfuse retry of 1 event\(s\) in \d+ ms",
        r"langfuse export of 1 event\(s\), \d+ bytes to \".*\", attempt 2",
        r"langfuse export of 1 event\(s\) ended: No error, status 200, "
        r"attempt 2",
        r"langfuse last flush, 0 in flight"]
    at = 0
    for step in steps:
        m = re.compile(step).search(log, at)
        assert m, "no debug line %r after offset %d" % (step, at)
        at = m.end()
