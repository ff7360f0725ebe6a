"""Secrets stay secret: the key can come from a file, never shows in the
error log, and TLS verification is only off when asked, with a warning."""

import base64
import json
import os
import re
import time

import pytest

from upstream import Case, openai_json

PATH = "/v1/chat/completions"
REQ = {"model": "gpt-4o", "messages": [{"role": "user", "content": "hi"}]}


def conf(keys):
    return """
server {
    listen 127.0.0.1:@PORT@;
    location / {
        langfuse_trace on;
        langfuse_endpoint @SINK@;
        %s
        add_header X-Trace-Id $langfuse_trace_id always;
        proxy_pass @UP@;
    }
}
""" % keys


def send(ng, upstream):
    case = Case(body=openai_json(content="ok"))
    r = ng.post(PATH, REQ, case=upstream.add(case))
    assert r.status == 200 and r.body == case.wire_body
    return r.trace_id


def test_secret_key_from_file(nginx, upstream, sink, tmp_path):
    key = tmp_path / "langfuse.key"
    key.write_text("sk-lf-from-file\n")
    os.chmod(key, 0o600)

    ng = nginx(conf("langfuse_public_key pk-lf-test;\n"
                    "        langfuse_secret_key_file %s;" % key))
    sink.span_for(send(ng, upstream))

    assert [r.auth for r in sink.requests()] == [
        ("pk-lf-test", "sk-lf-from-file")]


def test_missing_secret_key_file_fails_the_config(nginx_conf, tmp_path):
    rc, out = nginx_conf(conf(
        "langfuse_public_key pk-lf-test;\n"
        "        langfuse_secret_key_file %s/none.key;" % tmp_path)
    ).test_config()
    assert rc != 0
    assert 'open() "%s/none.key" failed' % tmp_path in out


def test_secret_never_logged(nginx, upstream, sink):
    ng = nginx(conf("langfuse_public_key pk-lf-test;\n"
                    "        langfuse_secret_key sk-lf-test;"))
    ng.allow_errors(r"failed: refused, events dropped, status 401")
    sink.fail(401, count=1)

    send(ng, upstream)
    sink.wait_for_requests(1)
    ng.stop()

    log = ng.read_error_log()
    assert "status 401" in log
    assert "sk-lf-test" not in log
    assert base64.b64encode(b"pk-lf-test:sk-lf-test").decode() not in log


def test_tls_verification_off_warns(nginx_conf):
    rc, out = nginx_conf(conf("langfuse_public_key pk-lf-test;\n"
                              "        langfuse_secret_key sk-lf-test;\n"
                              "        langfuse_ssl_verify off;")
                         ).test_config()
    assert rc == 0, out
    assert "[warn]" in out
    assert '"langfuse_ssl_verify" is off: traces to "http://127.0.0.1:' \
        in out


def test_credential_check_at_startup(nginx, sink, sink2):
    sink2.expected_auth = ("pk-lf-test", "sk-lf-other")
    ng = nginx("""
server {
    listen 127.0.0.1:@PORT@;
    location /a/ { @LF@ proxy_pass @UP@; }
    location /b/ { langfuse_trace on; langfuse_endpoint @SINK2@;
                   langfuse_public_key pk-lf-test;
                   langfuse_secret_key sk-lf-test; proxy_pass @UP@; }
}
""", http_extra="langfuse_check_credentials on;")
    ng.allow_errors(r"does not accept the public key")

    deadline = time.time() + 5
    log = ""
    while time.time() < deadline:
        log = ng.read_error_log()
        if "does not accept" in log and "accepts the public key" in log:
            break
        time.sleep(0.05)

    assert '"%s" accepts the public key "pk-lf-test"' % sink.endpoint in log
    assert ('"%s" does not accept the public key "pk-lf-test" with its '
            'secret key (status 401)' % sink2.endpoint) in log
    assert log.count("accept") == 2
    assert "sk-lf-test" not in log


@pytest.mark.parametrize("code", [301, 302, 307, 308])
def test_redirect_is_not_followed(nginx, upstream, sink, sink2, code):
    """An endpoint that redirects elsewhere gets no second request, and
    the other host never sees the batch or the keys."""
    ng = nginx(conf("langfuse_public_key pk-lf-test;\n"
                    "        langfuse_secret_key sk-lf-test;").replace(
        "    location / {", "    location = /langfuse { langfuse_status; }\n"
        "    location / {"))
    ng.allow_errors(r"failed: refused, events dropped, status %d" % code)
    sink.redirect(code, sink2.endpoint)

    send(ng, upstream)
    sink.wait_for_requests(1)
    time.sleep(0.5)

    assert [(r.status, r.fault) for r in sink.requests()] == [
        (code, "redirect")]
    assert sink2.requests() == []
    d = json.loads(ng.request("/langfuse").body)["destinations"][0]
    assert (d["sent"], d["rejected"], d["retried"]) == (0, 1, 0)
    assert d["errors"]["http_3xx"] == 1
    assert d["errors_by_status"]["other"] == 1
    log = ng.read_error_log()
    assert log.count("status %d" % code) == 1
    assert "sk-lf-test" not in log


def dumpable_memory(pid):
    """What a core dump of the process would hold: every readable mapping
    without the "dd" (do not dump) flag, as /proc/PID/smaps tells."""
    areas, flags = [], {}
    with open("/proc/%d/smaps" % pid) as f:
        current = None
        for ln in f:
            head = ln.split()[0]
            if "-" in head and not head.endswith(":"):
                start, end = (int(x, 16) for x in head.split("-"))
                current = (start, end, ln.split()[1])
                areas.append(current)
            elif head == "VmFlags:":
                flags[current] = ln.split()[1:]
    out, kept_out = [], 0
    with open("/proc/%d/mem" % pid, "rb", 0) as mem:
        for area in areas:
            start, end, perms = area
            if "dd" in flags.get(area, []):
                kept_out += 1
                continue
            if not perms.startswith("r"):
                continue
            try:
                mem.seek(start)
                out.append(mem.read(end - start))
            except (OSError, ValueError):
                pass            # [vvar] and the like
    return b"".join(out), kept_out


@pytest.mark.skipif(bool(os.environ.get("LF_MEMCHECK")),
                    reason="a memory checker maps terabytes of shadow memory")
def test_secret_key_stays_out_of_core_dumps(nginx, upstream, sink, tmp_path):
    """A secret key from a file, and the Authorization headers made of
    any key, are in no memory that a core dump of the master or a worker
    would hold, also after exports.  (A key written in nginx.conf stays
    in the text nginx read from the file: not the module's to wipe.)"""
    key = tmp_path / "langfuse.key"
    key.write_text("sk-lf-file-5e0a4d7c3b\n")
    os.chmod(key, 0o600)
    ng = nginx("""
server {
    listen 127.0.0.1:@PORT@;
    location / {
        langfuse_trace on; langfuse_endpoint @SINK@;
        langfuse_public_key pk-lf-test; langfuse_secret_key sk-lf-inline;
        add_header X-Trace-Id $langfuse_trace_id always;
        proxy_pass @UP@;
    }
    location /file/ {
        langfuse_trace on; langfuse_endpoint @SINK@;
        langfuse_public_key pk-lf-other; langfuse_secret_key_file %s;
        add_header X-Trace-Id $langfuse_trace_id always;
        proxy_pass @UP@/;
    }
}
""" % key, workers=1)
    ids = [send(ng, upstream)]
    r = ng.post("/file" + PATH, REQ, case=upstream.add(
        Case(body=openai_json(content="ok"))))
    ids.append(r.trace_id)
    sink.assert_exactly_once(ids)
    assert sorted(rec.auth for rec in sink.requests()) == [
        ("pk-lf-other", "sk-lf-file-5e0a4d7c3b"),
        ("pk-lf-test", "sk-lf-inline")]

    secrets = [b"sk-lf-file-5e0a4d7c3b"] + [
        base64.b64encode(pair) for pair in (
            b"pk-lf-test:sk-lf-inline", b"pk-lf-other:sk-lf-file-5e0a4d7c3b")]
    for pid in [ng.proc.pid] + ng.worker_pids():
        memory, kept_out = dumpable_memory(pid)
        # the file's key and two headers, each in pages of its own
        assert kept_out >= 3, "no do-not-dump mapping in %d" % pid
        for secret in secrets:
            assert secret not in memory, (pid, secret)


UNREACHABLE = """
server {
    listen 127.0.0.1:@PORT@;
    location / { langfuse_trace on; langfuse_endpoint %s;
                 langfuse_public_key pk-lf-test; langfuse_secret_key sk-lf-x;
                 add_header X-Trace-Id $langfuse_trace_id always;
                 proxy_pass @UP@; }
}
"""


def test_startup_needs_no_langfuse(nginx_conf, nginx, upstream):
    """`nginx -t` checks the configuration without the network (a name
    that cannot resolve passes), and the workers start and serve while
    Langfuse refuses connections; the credential check says so once."""
    rc, out = nginx_conf(UNREACHABLE % "http://langfuse.invalid",
                         http_extra="langfuse_check_credentials on;"
                         ).test_config()
    assert rc == 0, out
    assert "langfuse.invalid" not in out

    ng = nginx(UNREACHABLE % "http://127.0.0.1:@PORT_CLOSED@",
               http_extra="langfuse_check_credentials on;",
               flush_interval="100ms")
    ng.allow_errors(r"export of 1 event\(s\) to \"http://127\.0\.0\.1:\d+/"
                    r"api/public/otel/v1/traces\" failed: Failed to connect")
    assert send(ng, upstream)

    deadline = time.time() + 5
    log = ""
    while time.time() < deadline and "credential check" not in log:
        log = ng.read_error_log()
        time.sleep(0.05)
    assert log.count("credential check") == 1, log
    assert re.search(r"\[warn\] .*langfuse: credential check of "
                     r"\"http://127\.0\.0\.1:\d+\" failed: Failed to connect "
                     r"to 127\.0\.0\.1 port \d+", log)
