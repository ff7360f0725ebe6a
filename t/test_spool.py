"""The disk spool (langfuse_spool): batches Langfuse does not take in
time, the queue's overflow and what quitting workers hold are written to
files, replayed oldest first once Langfuse accepts, across restarts, and
a full spool drops its oldest batches with a counter.  Every scenario
counts trace ids at the sink against its guarantee."""

import grp
import json
import os
import pwd
import re
import shutil
import signal
import stat
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from lfcheck import OUTPUT, assistant, jattr, send_chat

CONF = """
server {
    listen 127.0.0.1:@PORT@;
    location / { @LF@ proxy_pass @UP@; }
    location = /langfuse { langfuse_status; }
}
"""

NAME_RE = re.compile(r"^[0-9a-f]{16}-[0-9a-f]{8}-\d+-\d+-(\d+)\.batch$")
# a batch, waiting or claimed by a worker replaying it
ANY_RE = re.compile(r"^([0-9a-f]{16}-[0-9a-f]{8}-\d+-\d+-(\d+)\.batch)"
                    r"(-claimed-\d+\.[0-9a-f]{8})?$")

send = send_chat


def spool_conf(ng_dir_token="@PREFIX@/spool", extra="", retries=0):
    return ("langfuse_spool %s%s;\nlangfuse_retries %d;" %
            (ng_dir_token, extra, retries))


def spool_dir(ng):
    return os.path.join(ng.prefix, "spool")


def batch_files(ng):
    """Waiting spool files, oldest first: [(name, events in the name)]."""
    d = spool_dir(ng)
    out = []
    for name in sorted(os.listdir(d)):
        m = NAME_RE.match(name)
        if m:
            out.append((name, int(m.group(1))))
    return out


def read_batch(ng, name):
    """(header line, [event dicts]) of one spool file."""
    with open(os.path.join(spool_dir(ng), name), "rb") as f:
        data = f.read()
    assert data.endswith(b"\n")
    lines = data[:-1].split(b"\n")
    return lines[0].decode(), [json.loads(ln) for ln in lines[1:]]


def spool_snapshot(ng):
    """[(base name, header, events)] of every batch in the spool, waiting
    or claimed, oldest first; retried when a worker renames a file under
    our feet."""
    for _ in range(50):
        try:
            out = []
            for name in os.listdir(spool_dir(ng)):
                m = ANY_RE.match(name)
                if m:
                    header, events = read_batch(ng, name)
                    assert len(events) == int(m.group(2))
                    assert re.search(r" events=%s " % m.group(2), header)
                    out.append((m.group(1), header, events))
            return sorted(out)
        except FileNotFoundError:
            time.sleep(0.02)
    raise AssertionError("the spool kept changing")


def spooled_trace_ids(ng):
    ids = []
    for _, _, events in spool_snapshot(ng):
        # an OTLP event is one span
        ids.extend(ev["traceId"] for ev in events)
    return ids


def status(ng):
    r = ng.request("/langfuse")
    assert r.status == 200
    return json.loads(r.body)


def counters(ng):
    """(spool, destination) of the status page; the destination appears
    once the first call is logged, which may lag its answer a little."""
    deadline = time.monotonic() + 5
    while True:
        doc = status(ng)
        if doc["destinations"] or time.monotonic() > deadline:
            return doc["spool"], doc["destinations"][0]
        time.sleep(0.05)


def wait(cond, timeout, what):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        v = cond()
        if v:
            return v
        time.sleep(0.05)
    raise AssertionError("timed out waiting for " + what)


def test_undelivered_batches_are_spooled_then_replayed(nginx, upstream,
                                                      sink):
    """guarantee: zero lost, zero duplicated; the file holds the batch"""
    sink.down()
    ng = nginx(CONF, http_extra=spool_conf())
    ng.allow_errors(r"failed: .*retries exhausted, events spooled",
                    r"failed: .*the batch stays in the spool")

    ids = [send(ng, upstream, "kept %d" % i) for i in range(3)]

    wait(lambda: len(spooled_trace_ids(ng)) == 3, 10, "three spooled events")
    assert sorted(spooled_trace_ids(ng)) == sorted(ids)

    header = spool_snapshot(ng)[0][1]
    assert re.match(r"langfuse-spool/1 dest=[0-9a-f]{8} events=\d+ "
                    r"url=http://127\.0\.0\.1:\d+/api/public/otel/v1/traces "
                    r"public_key=pk-lf-test$", header), header
    # nothing half written is left behind
    assert not [n for n in os.listdir(spool_dir(ng)) if n.startswith(".tmp")]

    spool, d = counters(ng)
    assert (d["spooled"], d["failed"], d["sent"]) == (3, 0, 0)
    assert spool["path"] == spool_dir(ng)
    assert spool["files"] >= 1 and spool["bytes"] > 0

    sink.up()
    spans = sink.assert_exactly_once(ids, timeout=15)
    by_id = {s["traceId"]: s for s in spans}
    for i, t in enumerate(ids):
        assert jattr(by_id[t], OUTPUT) == assistant("kept %d" % i)

    wait(lambda: not os.listdir(spool_dir(ng)) or
         set(os.listdir(spool_dir(ng))) == {".lock"}, 5, "an empty spool")
    _, d = counters(ng)
    assert (d["spooled"], d["replayed"], d["sent"]) == (3, 3, 3)


def test_quit_with_langfuse_down_then_restart_loses_nothing(nginx, upstream,
                                                           sink):
    """guarantee: zero lost across a quit and a start while Langfuse is
    down; the quit stays bounded"""
    sink.down()
    # a long interval: every event is still queued when nginx quits
    ng = nginx(CONF, flush_interval="30s",
               http_extra=spool_conf(retries=5))
    ng.allow_errors(r"failed: .*nginx is quitting, events spooled")

    ids = [send(ng, upstream, "queued %d" % i) for i in range(40)]

    assert ng.stop() is True, "nginx needed SIGKILL"
    assert ng.stop_seconds < 8
    assert sorted(spooled_trace_ids(ng)) == sorted(ids)
    assert sink.spans() == []

    sink.up()
    ng.start()
    sink.assert_exactly_once(ids, timeout=15)
    wait(lambda: batch_files(ng) == [], 5, "an empty spool")
    _, d = counters(ng)
    assert d["replayed"] == 40


def test_quit_after_a_failed_reload_spools_the_queue(nginx, upstream, sink):
    """guarantee: zero lost; a reload that fails (its listen socket is
    taken) leaves the old workers owning the queue, so their quit still
    spools it"""
    sink.down()
    ng = nginx(CONF, flush_interval="30s", batch_size=5,
               http_extra=spool_conf(retries=5))
    ng.allow_errors(r"failed: .*(retries exhausted|nginx is quitting), "
                    r"events spooled", r"Couldn't connect to server")
    ng.caused_alerts(r"bind\(\) to 127\.0\.0\.1:\d+ failed",
                     r"still could not bind\(\)")
    workers = set(ng.worker_pids())

    ng.snippet = CONF + "server { listen 127.0.0.1:%d; }" % upstream.port
    ng.conf = ng.render()
    os.kill(ng.proc.pid, signal.SIGHUP)
    wait(lambda: "still could not bind()" in ng.read_error_log(), 10,
         "the reload to fail")
    assert set(ng.worker_pids()) == workers

    # more batches than a quitting worker sends before it spools the rest
    ids = [send(ng, upstream, "kept %d" % i) for i in range(40)]
    assert ng.stop() is True
    assert sorted(spooled_trace_ids(ng)) == sorted(ids)

    ng.snippet = CONF
    ng.conf = ng.render()
    sink.up()
    ng.start()
    sink.assert_exactly_once(ids, timeout=15)


def test_fast_shutdown_spools_the_queue(nginx, upstream, sink):
    """guarantee: zero lost across `nginx -s stop` (SIGTERM), where the
    workers leave at once: they write the spool before they go"""
    sink.down()
    ng = nginx(CONF, flush_interval="30s", http_extra=spool_conf(retries=5))

    ids = [send(ng, upstream, "stopped %d" % i) for i in range(25)]

    os.kill(ng.proc.pid, signal.SIGTERM)
    ng.proc.wait(10)
    assert ng.stop() is True
    assert sorted(spooled_trace_ids(ng)) == sorted(ids)
    assert re.search(r"25 queued event\(s\) go to the spool at exit",
                     ng.read_error_log())

    sink.up()
    ng.start()
    sink.assert_exactly_once(ids, timeout=15)


def test_quit_with_hanging_langfuse_spools_what_is_in_flight(nginx, upstream,
                                                            sink):
    """guarantee: zero lost when Langfuse hangs at quit: after the bounded
    drain, exports in flight and the queue go to the spool"""
    sink.hang()
    ng = nginx(CONF, flush_interval="100ms", batch_size=5,
               http_extra=spool_conf(retries=5))
    ng.allow_errors(r"failed: .*nginx is quitting, events spooled")

    ids = [send(ng, upstream, "hung %d" % i) for i in range(30)]
    wait(lambda: len(sink.hung) >= 2, 5, "exports in flight")

    assert ng.stop() is True, "nginx needed SIGKILL"
    assert ng.stop_seconds < 10
    assert re.search(r"export\(s\) of \d+ event\(s\) not delivered within "
                     r"the shutdown time are spooled", ng.read_error_log())
    assert sorted(spooled_trace_ids(ng)) == sorted(ids)

    sink.release()
    sink.normal()
    ng.start()
    sink.assert_exactly_once(ids, timeout=20)


def test_full_spool_drops_oldest_and_counts(nginx, upstream, sink):
    """guarantee: what a full spool drops is the oldest, and counted"""
    sink.down()
    ng = nginx(CONF, http_extra=spool_conf(extra=" max_size=12k"))
    ng.allow_errors(r"failed: .*retries exhausted, events spooled",
                    r"failed: .*the batch stays in the spool")

    ids = []
    for i in range(12):
        ids.append(send(ng, upstream, "n%d %s" % (i, "x" * 1500)))
        # one batch per call: wait for each to reach the spool
        wait(lambda: counters(ng)[1]["spooled"] == i + 1, 10,
             "call %d spooled" % i)

    kept = spooled_trace_ids(ng)
    _, d = counters(ng)
    dropped = d["dropped"]["spool_full"]
    assert dropped > 0 and dropped + len(kept) == 12
    # the newest stay, in order
    assert kept == ids[-len(kept):]
    size = sum(os.path.getsize(os.path.join(spool_dir(ng), n))
               for n, _ in batch_files(ng))
    assert size <= 12 * 1024
    log = ng.read_error_log()
    assert re.search(r"spool \".*\" is over max_size=12288: \d+ event\(s\) "
                     r"dropped, oldest first", log)
    assert re.search(r"\[warn\].*\"langfuse_spool\" max_size=12288 holds "
                     r"less than two batches of the largest size", log)

    sink.up()
    sink.assert_exactly_once(kept, timeout=15)
    assert sorted(s["traceId"] for s in sink.spans()) == sorted(kept)


def test_crowded_queue_overflows_to_the_spool(nginx, upstream, sink):
    """guarantee: an outage longer than the queue holds loses nothing"""
    sink.down()
    ng = nginx(CONF, queue_size="64k", batch_size=10,
               http_extra=spool_conf(retries=20))
    ng.allow_errors(r"failed: .*")

    ids = []
    for i in range(60):
        ids.append(send(ng, upstream, "o%d %s" % (i, "y" * 1500)))
        time.sleep(0.02)

    _, d = counters(ng)
    assert d["dropped"]["queue_full"] == 0
    assert d["spooled"] > 0

    sink.up()
    sink.assert_exactly_once(ids, timeout=60)
    _, d = counters(ng)
    assert d["dropped"]["queue_full"] == 0


def test_full_queue_passes_events_to_the_spool(nginx, upstream, sink):
    """guarantee: calls that find the queue full, faster than it moves to
    the spool, are spooled rather than dropped"""
    sink.down()
    ng = nginx(CONF, workers=1, queue_size="32k", batch_size=4,
               flush_interval="30s", http_extra=spool_conf(retries=20))
    ng.allow_errors(r"failed: .*Couldn't connect to server")

    with ThreadPoolExecutor(8) as pool:
        ids = list(pool.map(lambda i: send(ng, upstream, "f%d %s" % (
            i, "z" * 3000)), range(48)))

    _, d = counters(ng)
    assert d["dropped"]["queue_full"] == 0
    # some never had a place in the queue
    assert d["queued"] < 48

    sink.up()
    sink.assert_exactly_once(ids, timeout=60)


def test_reload_leaves_the_queue_to_new_workers(nginx, upstream, sink):
    """guarantee: a reload spools nothing; the queue goes out once"""
    ng = nginx(CONF, flush_interval="2s", http_extra=spool_conf())
    ids = [send(ng, upstream, "r%d" % i) for i in range(5)]
    ng.reload()
    sink.assert_exactly_once(ids, timeout=10)
    assert batch_files(ng) == []
    _, d = counters(ng)
    assert d["spooled"] == 0


def test_a_reload_that_removes_the_spool_warns(nginx, upstream, sink):
    """What is in a spool that the new configuration does not name is
    not replayed: the reload says so, and tracing goes on."""
    ng = nginx(CONF, http_extra=spool_conf())
    ng.http_extra = "langfuse_retries 0;"
    ng.reload(ng.snippet)
    ids = [send(ng, upstream, "after")]
    sink.assert_exactly_once(ids, timeout=10)
    assert re.search(r"\[warn\] .*langfuse: the spool \"%s\" is no longer "
                     r"configured: what is in it, and what the old workers "
                     r"write there as they leave, is replayed only once a "
                     r"configuration names it again" % re.escape(
                         spool_dir(ng)), ng.read_error_log())

    # a reload that keeps it says nothing
    ng.http_extra = spool_conf()
    ng.reload(ng.snippet)
    ng.reload(ng.snippet)
    assert len(re.findall(r"is no longer configured",
                          ng.read_error_log())) == 1


def test_left_overs_of_dead_workers_are_recovered(nginx, upstream, sink):
    """A claim of a process that is gone is replayed, a stale temporary
    file is removed, a file that is not a batch is set aside."""
    sink.down()
    ng = nginx(CONF, http_extra=spool_conf())
    ng.allow_errors(r"failed: .*retries exhausted, events spooled",
                    r"failed: .*the batch stays in the spool",
                    r"is not a spooled batch")
    ids = [send(ng, upstream, "orphan")]
    wait(lambda: spooled_trace_ids(ng), 10, "a spooled batch")
    assert ng.stop() is True

    dead = 4194000
    while os.path.exists("/proc/%d" % dead):
        dead -= 1
    d = spool_dir(ng)
    name = batch_files(ng)[0][0]
    claimed = "%s-claimed-%d.0123abcd" % (name, dead)
    os.rename(os.path.join(d, name), os.path.join(d, claimed))
    with open(os.path.join(d, ".tmp-%d.0123abcd-7" % dead), "wb") as f:
        f.write(b"langfuse-spool/1 dest=")
    bogus = "0000000000000001-%s-1-1-1.batch" % name[17:25]
    with open(os.path.join(d, bogus), "wb") as f:
        f.write(b"not a batch\n")
    # a whole header, then an event that a torn copy cut
    cut = "0000000000000002-%s-1-1-1.batch" % name[17:25]
    header, _ = read_batch(ng, claimed)
    with open(os.path.join(d, cut), "wb") as f:
        f.write(header.encode() + b'\n{"traceId":"')
    # not a file: left alone
    a_dir = "0000000000000003-%s-1-1-1.batch" % name[17:25]
    os.mkdir(os.path.join(d, a_dir))

    sink.up()
    ng.start()
    sink.assert_exactly_once(ids, timeout=15)
    wait(lambda: sorted(os.listdir(d)) == [
        ".lock", bogus + "-bad", cut + "-bad", a_dir], 10,
        "the spool cleaned up: %r" % os.listdir(d))
    log = ng.read_error_log()
    for f, why in ((bogus, "no spool header"),
                   (cut, "a last line cut short")):
        assert re.search(r"\"%s/%s\" is not a spooled batch \(%s\), "
                         r"it is renamed to \"%s-bad\"" % (re.escape(d), f,
                                                            why, f), log)
    assert re.search(r"1 spooled batch\(es\) that exited workers were "
                     r"replaying wait again in", log)


def test_claims_of_an_earlier_process_with_the_same_pid_are_recovered(
        nginx, upstream, sink):
    """A claim named with the pid of the running worker but not its token
    was left by an earlier process that had the pid (a container's one
    worker after a restart): it is replayed, and that process's temporary
    file removed.  The claim of another live process stays."""
    sink.down()
    ng = nginx(CONF, workers=1, batch_size=1, http_extra=spool_conf())
    ng.allow_errors(r"failed: .*retries exhausted, events spooled",
                    r"failed: .*the batch stays in the spool")
    ids = [send(ng, upstream, "kept %d" % i) for i in range(2)]
    wait(lambda: len(batch_files(ng)) == 2, 10, "two spooled batches")
    (ours, _), (theirs, _) = batch_files(ng)
    worker, = ng.worker_pids()
    d = spool_dir(ng)
    reused = "%s-claimed-%d.0badc0de" % (ours, worker)
    alive = "%s-claimed-%d.0123abcd" % (theirs, os.getpid())
    os.rename(os.path.join(d, ours), os.path.join(d, reused))
    os.rename(os.path.join(d, theirs), os.path.join(d, alive))
    temp = ".tmp-%d.0badc0de-3" % worker
    with open(os.path.join(d, temp), "wb") as f:
        f.write(b"langfuse-spool/1 dest=")

    sink.up()
    sink.assert_exactly_once(ids[:1], timeout=15)
    wait(lambda: sorted(os.listdir(d)) == [".lock", alive], 10,
         "the spool cleaned up: %r" % os.listdir(d))
    time.sleep(0.5)
    assert ids[1] not in [s["traceId"] for s in sink.spans()]


def test_spool_directive_is_checked(nginx_conf):
    for bad, msg in (
            ("langfuse_spool @PREFIX@/s max_size=0;", "invalid max_size"),
            ("langfuse_spool @PREFIX@/s max_size=big;", "invalid max_size"),
            ("langfuse_spool @PREFIX@/s sizes=1m;", "invalid parameter"),
            ("langfuse_spool @PREFIX@/s; langfuse_spool @PREFIX@/t;",
             "is duplicate"),
            ("langfuse_spool @PREFIX@/s thread_pool=nope;",
             "unknown thread pool \"nope\""),
            ("langfuse_retries 21;", "at most 20")):
        rc, out = nginx_conf(CONF, http_extra=bad).test_config()
        assert rc != 0 and msg in out, (bad, out)

    rc, out = nginx_conf(CONF, http_extra="langfuse_spool off;").test_config()
    assert rc == 0, out


def test_spool_directory_is_created_private(nginx, upstream, sink):
    ng = nginx(CONF, http_extra="langfuse_spool @PREFIX@/lfspool "
                                "max_size=1m thread_pool=lf;",
               main_extra="thread_pool lf threads=2;")
    st = os.stat(os.path.join(ng.prefix, "lfspool"))
    assert st.st_mode & 0o077 == 0
    tid = send(ng, upstream, "normal")
    sink.assert_exactly_once([tid])
    spool, d = counters(ng)
    assert spool["max_size"] == 1024 * 1024
    assert (d["sent"], d["spooled"], d["replayed"]) == (1, 0, 0)
    text = ng.request("/langfuse?format=prometheus").body.decode()
    assert "\nnginx_langfuse_spool_size_bytes 1048576\n" in text
    assert "\nnginx_langfuse_spool_files 0\n" in text
    assert re.search(r'nginx_langfuse_events_total\{[^}]*state="spooled"\} 0',
                     text)
    assert batch_files_at(os.path.join(ng.prefix, "lfspool")) == []


def batch_files_at(d):
    return [n for n in os.listdir(d) if NAME_RE.match(n)]


def test_removed_spool_directory_is_made_again(nginx, upstream, sink):
    """guarantee: zero lost when the spool directory vanishes at runtime"""
    ng = nginx(CONF, http_extra=spool_conf())
    ng.allow_errors(r"failed: .*retries exhausted, events spooled",
                    r"failed: .*the batch stays in the spool")
    shutil.rmtree(spool_dir(ng))
    sink.down()

    ids = [send(ng, upstream, "after rm %d" % i) for i in range(3)]
    wait(lambda: os.path.isdir(spool_dir(ng)) and
         len(spooled_trace_ids(ng)) == 3, 10, "the spool made again")
    assert os.stat(spool_dir(ng)).st_mode & 0o077 == 0
    _, d = counters(ng)
    assert (d["spooled"], d["dropped"]["spool_error"]) == (3, 0)

    sink.up()
    sink.assert_exactly_once(ids, timeout=15)


def test_a_spool_path_that_is_a_file_fails_the_start(nginx_conf, tmp_path):
    path = tmp_path / "afile"
    path.write_text("kept")
    ng = nginx_conf(CONF, http_extra="langfuse_spool %s;" % path)
    rc, out = ng.test_config()
    assert rc != 0
    assert ("[emerg] \"langfuse_spool\" \"%s\" is not a directory in %s:"
            % (path, ng.conf_path)) in out, out
    assert path.read_text() == "kept"
    assert stat.S_IMODE(path.stat().st_mode) == 0o644


def test_unusable_spool_is_reported_at_start(nginx, upstream, sink,
                                              tmp_path):
    """A spool the workers cannot reach (here its parent directory, the
    test's own, is closed to the workers' user): one error line at start,
    and each lost batch counted and logged with its event count."""
    if os.geteuid() != 0:
        pytest.skip("needs root, to run the workers as another user")
    nobody = pwd.getpwnam("nobody")
    user = "nobody %s" % grp.getgrgid(nobody.pw_gid).gr_name
    os.chmod(tmp_path, 0o700)
    path = tmp_path / "closed" / "spool"
    path.parent.mkdir(mode=0o700)
    ng = nginx(CONF, user=user,
               http_extra="langfuse_spool %s; langfuse_retries 0;" % path)
    ng.allow_errors(r"spool \".*/closed/spool\" is not usable by the "
                    r"workers: events that Langfuse does not take in time "
                    r"will be lost",
                    r"failed: .*retries exhausted, events spooled",
                    r"failed: open\(\) of the directory")
    # worker 0 says it as it starts, which may follow the harness's start
    wait(lambda: "is not usable by the workers" in ng.read_error_log(), 5,
         "the start-up error")
    time.sleep(0.2)
    log = ng.read_error_log()
    assert len(re.findall(r"is not usable by the workers", log)) == 1, log
    assert re.search(r"is not usable by the workers: .* will be lost "
                     r"\(13: Permission denied\)", log), log

    sink.down()
    send(ng, upstream, "lost")
    wait(lambda: counters(ng)[1]["dropped"]["spool_error"] == 1, 10,
         "the lost call counted")
    wait(lambda: re.search(r"langfuse: 1 event\(s\) lost, writing a batch "
                           r"to spool \".*/closed/spool\" failed: open\(\) "
                           r"of the directory \(\d+ more failure\(s\) not "
                           r"logged\) \(13: Permission denied\)",
                           ng.read_error_log()),
         5, "the loss logged")


def test_batches_of_a_removed_destination_stay_and_are_reported(
        nginx, upstream, sink):
    sink.down()
    ng = nginx(CONF, http_extra=spool_conf())
    ng.allow_errors(r"failed: .*retries exhausted, events spooled",
                    r"failed: .*the batch stays in the spool")
    send(ng, upstream, "old project")
    wait(lambda: len(spooled_trace_ids(ng)) == 1, 10, "a spooled batch")
    assert ng.stop() is True
    names = [n for n, _, _ in spool_snapshot(ng)]

    # another project now: the old batch has nowhere to go
    sink.up()
    ng.snippet = CONF.replace("@LF@", """langfuse_trace on;
        langfuse_endpoint @SINK@;
        langfuse_public_key pk-lf-new;
        langfuse_secret_key sk-lf-test;
        add_header X-Trace-Id $langfuse_trace_id always;""")
    ng.conf = ng.render()
    ng.start()
    tid = send(ng, upstream, "new project")
    sink.span_for(tid)
    wait(lambda: re.search(r"1 spooled batch\(es\) in \".*\" are for a "
                           r"destination that is no longer configured",
                           ng.read_error_log()), 10, "the notice")
    assert [n for n, _, _ in spool_snapshot(ng)] == names
    assert counters(ng)[0]["files"] == 1
