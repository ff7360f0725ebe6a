"""Faults counted, not eyeballed: traced calls driven through nginx while
it reloads, loses a worker or meets a failing Langfuse; each scenario
counts distinct trace ids at the sink against its guarantee."""

import json
import os
import re
import signal
import threading
import time

import pytest

from lfcheck import CHAT_PATH, CHAT_REQ, TRACED, send_chat
from upstream import Case, openai_json

PATH, REQ, CONF = CHAT_PATH, CHAT_REQ, TRACED


send = send_chat


class Load:
    """Traced calls from a thread until stopped; every call must pass."""

    def __init__(self, ng, upstream):
        self.ng, self.upstream = ng, upstream
        self.ids, self.errors = [], []
        self._stop = threading.Event()
        self._t = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        i = 0
        while not self._stop.is_set():
            try:
                self.ids.append(send(self.ng, self.upstream, "n%d" % i))
            except Exception as e:          # reported by stop()
                self.errors.append(repr(e))
            i += 1

    def __enter__(self):
        self._t.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._t.join(30)


def rss_kb(pid):
    with open("/proc/%d/status" % pid) as f:
        for ln in f:
            if ln.startswith("VmRSS:"):
                return int(ln.split()[1])
    return 0


def test_reloads_under_load_lose_nothing(nginx, upstream, sink):
    """guarantee: zero lost, zero duplicated"""
    ng = nginx(CONF, flush_interval="200ms")
    with Load(ng, upstream) as load:
        for _ in range(5):
            time.sleep(0.4)
            ng.reload()
        time.sleep(0.4)
    assert not load.errors, load.errors[:3]
    assert len(load.ids) > 20
    sink.assert_exactly_once(load.ids, timeout=15)


KEYED = """
server {
    listen 127.0.0.1:@PORT@;
    location / {
        langfuse_trace on;
        langfuse_endpoint @SINK@;
        langfuse_public_key %s;
        langfuse_secret_key sk-lf-test;
        add_header X-Trace-Id $langfuse_trace_id always;
        proxy_pass @UP@;
    }
}
"""


def test_reloads_that_change_the_destination_lose_nothing(nginx, upstream,
                                                          sink):
    """guarantee: zero lost, zero duplicated, each call under the public
    key of the configuration whose worker served it (the old workers
    leave the queue, which holds the new destination's events, alone)"""
    keys = ["pk-lf-a", "pk-lf-b"]
    ng = nginx(KEYED % keys[0], flush_interval="200ms")
    with Load(ng, upstream) as load:
        for i in range(1, 6):
            time.sleep(0.4)
            ng.reload(KEYED % keys[i % 2])
        time.sleep(0.4)
    assert not load.errors, load.errors[:3]
    assert len(load.ids) > 20
    sink.assert_exactly_once(load.ids, timeout=15)
    assert {r.auth[0] for r in sink.requests()} == set(keys)
    assert "no longer configured" not in ng.read_error_log()


def test_killed_worker_loses_at_most_its_batch(nginx, upstream, sink):
    """guarantee: at most the batch in flight (batch size 5) is lost"""
    ng = nginx(CONF, workers=1, flush_interval="100ms", batch_size=5)
    sink.delay(2.0, count=1, accept=False)

    before = [send(ng, upstream, "before %d" % i) for i in range(5)]
    sink.wait_for_requests(1)               # that export now hangs 2 s
    (worker,) = ng.worker_pids()
    ng.caused_alerts(r"worker process %d exited on signal 9" % worker)
    os.kill(worker, signal.SIGKILL)
    ng._wait_workers({worker})
    after = [send(ng, upstream, "after %d" % i) for i in range(5)]

    sink.assert_exactly_once(after, timeout=10)
    delivered = {s["traceId"] for s in sink.spans()}
    lost = [t for t in before if t not in delivered]
    assert len(lost) <= 5


def test_error_storm_then_recovery_loses_nothing(nginx, upstream, sink):
    """guarantee: zero lost through 500 and 429 answers"""
    ng = nginx(CONF, flush_interval="100ms")
    ng.allow_errors(r"failed: temporary failure, status (500|429)")
    sink.fail(500, count=2)
    ids = [send(ng, upstream, "a%d" % i) for i in range(10)]
    time.sleep(0.3)
    sink.fail(429, count=1)
    ids += [send(ng, upstream, "b%d" % i) for i in range(10)]
    sink.assert_exactly_once(ids, timeout=30)


# Langfuse's bad whiles: how each begins and ends, and what the module
# logs of it meanwhile (None: nothing)
EXPORT_FAILED = (r"langfuse: export of \d+ event\(s\) to \"http://127\.0\.0"
                 r"\.1:\d+/api/public/otel/v1/traces\" failed: ")


def fail_with(status, retry_after=None):
    def begin(s):
        s.retry_after = retry_after
        s.fail(status)
    return begin


def normal(s):
    s.normal()


BAD_WHILES = {
    "status%d" % st: (fail_with(st), normal,
                      r"temporary failure, status %d, " % st)
    for st in (500, 502, 503, 504)}
BAD_WHILES.update({
    "down": (lambda s: s.down(), lambda s: s.up(),
             r"Failed to connect to 127\.0\.0\.1 port \d+ after \d+ ms: "
             r"Couldn't connect to server, status 0, "),
    "hang": (lambda s: s.hang(), lambda s: s.release(),
             r"Empty reply from server, status 0, "),
    "reset": (lambda s: s.reset_connections(), normal,
              r"Recv failure: Connection reset by peer, status 0, "),
    "status429_retry_after_1": (fail_with(429, retry_after=1), normal,
                                r"temporary failure, status 429, "),
    "slow2s": (lambda s: s.delay(2.0), normal, None),
})

# seconds; short enough for Retry-After: 1, where a batch's six tries
# (langfuse_retries 5) span five seconds
BAD_WHILE = 3.0


def send_during(ng, upstream, seconds, n=30):
    """n traced calls evenly spread over `seconds`; their trace ids."""
    t0 = time.monotonic()
    ids = []
    for i in range(n):
        ids.append(send(ng, upstream, "while %d" % i))
        time.sleep(max(0.0, t0 + (i + 1) * seconds / n - time.monotonic()))
    return ids


@pytest.mark.parametrize("fault", sorted(BAD_WHILES))
def test_bad_while_then_back_loses_nothing(nginx, upstream, sink, fault):
    """guarantee: Langfuse refusing connections, hanging, resetting them,
    answering 5xx or 429 (Retry-After: 1), or answering slowly for a few
    seconds, then coming back: every call passes, zero lost, zero
    duplicated"""
    begin, end, error = BAD_WHILES[fault]
    ng = nginx(CONF, flush_interval="100ms")
    if error:
        ng.allow_errors(EXPORT_FAILED + error)
    begin(sink)
    ids = send_during(ng, upstream, BAD_WHILE)
    end(sink)
    sink.assert_exactly_once(ids, timeout=10)
    if error:   # the fault did meet the exports
        assert re.search(EXPORT_FAILED + error, ng.read_error_log())
    else:
        assert any(r.delayed for r in sink.requests())


@pytest.mark.skipif(bool(os.environ.get("LF_MEMCHECK")),
                    reason="a memory checker's quarantine grows the RSS")
def test_worker_memory_stays_flat(nginx, upstream, sink):
    """guarantee: no growth per call once warm"""
    ng = nginx(CONF, workers=1, flush_interval="100ms")
    (worker,) = ng.worker_pids()
    body = openai_json(content="x" * 2000)

    def burst(n):
        for _ in range(n):
            case = Case(body=body)
            r = ng.post(PATH, REQ, case=upstream.add(case))
            assert r.status == 200

    burst(300)
    time.sleep(0.5)
    warm = rss_kb(worker)
    burst(1500)
    time.sleep(0.5)
    grown = rss_kb(worker) - warm

    assert grown < 3 * 1024, "worker RSS grew by %d kB over 1500 calls" % (
        grown)


def test_in_flight_gauge_forgets_a_killed_worker(nginx, upstream, sink):
    """The status page's exports in flight: what a killed worker had
    is not shown forever."""
    ng = nginx(CONF.replace("location / {",
                            "location = /st { langfuse_status; }\n"
                            "    location / {"),
               workers=1, flush_interval="100ms")
    sink.hang()
    send(ng, upstream, "stuck")
    deadline = time.monotonic() + 5
    while not sink.hung and time.monotonic() < deadline:
        time.sleep(0.05)

    def in_flight():
        r = ng.request("/st")
        return json.loads(r.body)["destinations"][0]["in_flight"]

    assert in_flight() == 1
    (worker,) = ng.worker_pids()
    ng.caused_alerts(r"worker process %d exited on signal 9" % worker)
    os.kill(worker, signal.SIGKILL)
    ng._wait_workers({worker})
    assert in_flight() == 0
    text = ng.request("/st?format=prometheus").body.decode()
    assert "nginx_langfuse_in_flight{" in text
    assert "} 0\n" in text.split("nginx_langfuse_in_flight{")[1]
    sink.release()
