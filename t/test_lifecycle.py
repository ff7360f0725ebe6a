"""nginx reload and shutdown with the module: nothing queued is lost or
sent twice, and a hanging Langfuse does not keep nginx from exiting."""

import os
import signal
import subprocess
import time

import pytest

from harness import _children
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


def assert_outputs(sink, groups, timeout):
    """Each trace id of each (text format, ids) group arrived once, with
    its own answer: format % its index."""
    spans = sink.assert_exactly_once([t for _, ids in groups for t in ids],
                                     timeout=timeout)
    by_id = {s["traceId"]: s for s in spans}
    for fmt, ids in groups:
        for i, t in enumerate(ids):
            assert jattr(by_id[t], OUTPUT) == assistant(fmt % i)


def test_reload_keeps_tracing_without_loss(nginx, upstream, sink):
    ng = nginx(CONF, flush_interval="500ms")
    before = [send(ng, upstream, "before %d" % i) for i in range(3)]
    ng.reload()
    after = [send(ng, upstream, "after %d" % i) for i in range(3)]
    assert_outputs(sink, [("before %d", before), ("after %d", after)], 10)


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


def test_reload_sends_what_is_queued_for_a_removed_destination(
        nginx, upstream, sink, sink2):
    """the old workers, quitting, send the events of the destination the
    reload removed; the new workers leave them alone"""
    ng = nginx(CONF, flush_interval="30s")
    t1 = [send(ng, upstream, "one %d" % i) for i in range(3)]
    ng.reload(CONF_SINK2)
    t2 = send(ng, upstream, "two")
    assert_outputs(sink, [("one %d", t1)], 10)
    assert ng.stop() is True
    assert jattr(sink2.span_for(t2), OUTPUT) == assistant("two")
    assert "no longer configured" not in ng.read_error_log()


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



def _wait(cond, timeout, what):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return
        time.sleep(0.05)
    raise AssertionError("timed out waiting for " + what)


def _pid(path):
    try:
        with open(path) as f:
            return int(f.read().strip() or 0)
    except (OSError, ValueError):
        return 0


def _gone(pid):
    try:
        with open("/proc/%d/stat" % pid) as f:
            return f.read().split()[2] == "Z"
    except OSError:
        return True


@pytest.mark.parametrize("outage", [False, True],
                         ids=["langfuse-up", "langfuse-down-with-spool"])
def test_binary_upgrade_loses_nothing(nginx_conf, upstream, sink, outage):
    """guarantee: zero lost, zero duplicated across a binary upgrade (USR2,
    then QUIT to the old master); with Langfuse down, the old workers
    spool and the new ones replay.  nginx only changes binaries as a
    daemon, so this one runs daemonized."""
    extra = ("langfuse_spool @PREFIX@/spool; langfuse_retries 0;"
             if outage else "")
    # a new binary gets only the environment nginx passes on
    ng = nginx_conf(CONF, flush_interval="2s", http_extra=extra,
                    main_extra="env LD_PRELOAD; env ASAN_OPTIONS;")
    with open(ng.conf_path) as f:
        conf = f.read()
    with open(ng.conf_path, "w") as f:
        f.write(conf.replace("daemon off;", "daemon on;"))

    if outage:
        ng.allow_errors(r"failed: .*events spooled",
                        r"failed: .*the batch stays in the spool")
        sink.down()

    cmd, env = ng._cmd_env()
    masters = []
    try:
        subprocess.run(cmd, env=env, cwd=ng.prefix, check=True, timeout=30)
        _wait(lambda: _pid(ng.pid_path), 10, "the pid file")
        old = _pid(ng.pid_path)
        masters.append(old)
        _wait(lambda: len(_children(old)) >= ng.workers, 10, "workers")

        before = [send(ng, upstream, "old %d" % i) for i in range(3)]

        os.kill(old, signal.SIGUSR2)
        _wait(lambda: _pid(ng.pid_path) not in (0, old)
              and os.path.exists(ng.pid_path + ".oldbin"), 10,
              "the new master")
        new = _pid(ng.pid_path)
        masters.append(new)
        _wait(lambda: len(_children(new)) >= ng.workers, 10, "its workers")
        os.kill(old, signal.SIGQUIT)
        _wait(lambda: _gone(old), 20, "the old master to quit")

        after = [send(ng, upstream, "new %d" % i) for i in range(3)]

        if outage:
            names = os.listdir(os.path.join(ng.prefix, "spool"))
            assert [n for n in names if n.endswith(".batch")], names
            sink.up()

        assert_outputs(sink, [("old %d", before), ("new %d", after)], 20)

        os.kill(new, signal.SIGQUIT)
        _wait(lambda: _gone(new), 20, "the new master to quit")
    finally:
        for pid in masters:
            if not _gone(pid):
                os.killpg(os.getpgid(pid), signal.SIGKILL)
    ng.check_logs(final=True)
