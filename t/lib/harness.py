"""nginx process control, config rendering, log checks and HTTP helpers
for the ngx_http_langfuse_module integration tests (stdlib only; the
pytest fixtures around this live in t/conftest.py)."""

import glob
import http.client
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))))
NGINX_BIN = os.environ.get("NGINX_BIN", "/usr/sbin/nginx")
MODULE_PATH = os.environ.get(
    "LF_MODULE", os.path.join(ROOT, "objs", "ngx_http_langfuse_module.so"))
MEMCHECK = os.environ.get("LF_MEMCHECK", "").strip().lower()

PK = "pk-lf-test"
SK = "sk-lf-test"

# always fatal in error.log / stderr
FATAL_PATTERNS = [r"\[alert\]", r"\[emerg\]", r"\[crit\]",
                  r"AddressSanitizer", r"LeakSanitizer", r"runtime error:"]
ERROR_PATTERN = r"\[error\]"

TOKEN_RE = re.compile(r"@([A-Z][A-Z0-9_]*)@")


def free_port(host="127.0.0.1"):
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        s.bind((host, 0))
        return s.getsockname()[1]
    finally:
        s.close()


def module_missing_reason():
    """None when the module .so exists, else why tests must skip."""
    if not os.path.exists(MODULE_PATH):
        return ("langfuse module not built: %s does not exist (build it, "
                "or point LF_MODULE at the .so)" % MODULE_PATH)
    return None


def libasan_path():
    try:
        out = subprocess.run(["gcc", "-print-file-name=libasan.so"],
                             capture_output=True, text=True, timeout=20
                             ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    if out and os.path.isabs(out) and os.path.exists(out):
        return os.path.realpath(out)
    return None


def memcheck_unavailable_reason(mode=None):
    mode = MEMCHECK if mode is None else mode
    if mode in ("", "none", "0", "off"):
        return None
    if mode == "asan":
        return None if libasan_path() else "LF_MEMCHECK=asan: no libasan"
    if mode == "valgrind":
        return None if shutil.which("valgrind") else \
            "LF_MEMCHECK=valgrind: valgrind is not installed"
    return "unknown LF_MEMCHECK value %r (asan or valgrind)" % mode


def scan_log(text, allowed=(), caused=()):
    """Offending lines of an error log / stderr text: fatal patterns
    unless the test caused them (`caused`, e.g. the alert about a worker
    it killed), [error] lines unless they match one of `allowed`."""
    bad = []
    for line in text.splitlines():
        if any(re.search(p, line) for p in FATAL_PATTERNS):
            if not any(re.search(p, line) for p in caused):
                bad.append(line)
        elif re.search(ERROR_PATTERN, line) and not any(
                re.search(p, line) for p in allowed):
            bad.append(line)
    return bad


def lf_block(endpoint="@SINK@", pk=PK, sk=SK, trace_header=True):
    """The usual directives of a traced location."""
    s = ("langfuse_trace on; langfuse_endpoint %s; "
         "langfuse_public_key %s; langfuse_secret_key %s;" % (endpoint, pk,
                                                              sk))
    if trace_header:
        s += " add_header X-Trace-Id $langfuse_trace_id always;"
    return s


# ---------------------------------------------------------------------------
# HTTP client helpers
# ---------------------------------------------------------------------------

class Response:
    def __init__(self):
        self.status = None
        self.reason = None
        self.headers = []
        self.body = b""
        self.complete = False   # body read to its end without error
        self.error = None
        self.elapsed = None     # seconds, request sent to body read
        self.ttfb = None        # seconds, request sent to headers read
        self.started = None     # time.time() before sending

    def header(self, name, default=None):
        name = name.lower()
        for k, v in self.headers:
            if k.lower() == name:
                return v
        return default

    @property
    def trace_id(self):
        return self.header("X-Trace-Id")

    def json(self):
        return json.loads(self.body.decode("utf-8"))

    def __repr__(self):
        return "<Response %s %d bytes complete=%s%s>" % (
            self.status, len(self.body), self.complete,
            (" error=%r" % self.error) if self.error else "")


def _body_bytes(body):
    if body is None:
        return None
    if isinstance(body, (bytes, bytearray)):
        return bytes(body)
    if isinstance(body, str):
        return body.encode("utf-8")
    return json.dumps(body, ensure_ascii=False).encode("utf-8")


def http_request(port, path="/", method="GET", body=None, headers=None,
                 timeout=10.0, chunked=None, host="127.0.0.1"):
    """Send one request with http.client and read the whole response.

    body: bytes/str/JSON-able.  chunked: a list of byte pieces sent as a
    chunked request body (instead of body).  Never raises for a network
    problem: see Response.status (None: no response), .complete, .error."""
    r = Response()
    hdrs = dict(headers or {})
    data = _body_bytes(body)
    conn = http.client.HTTPConnection(host, port, timeout=timeout)
    r.started = time.time()
    t0 = time.monotonic()
    buf = bytearray()
    try:
        if chunked is not None:
            hdrs.setdefault("Transfer-Encoding", "chunked")
            conn.request(method, path, body=iter([bytes(c) for c in chunked]),
                         headers=hdrs, encode_chunked=True)
        else:
            conn.request(method, path, body=data, headers=hdrs)
        resp = conn.getresponse()
        r.ttfb = time.monotonic() - t0
        r.status, r.reason = resp.status, resp.reason
        r.headers = list(resp.getheaders())
        if method == "HEAD":
            resp.read()
        else:
            while True:
                piece = resp.read(65536)
                if not piece:
                    break
                buf += piece
        r.complete = True
    except http.client.IncompleteRead as e:
        buf += e.partial
        r.error = e
    except (OSError, http.client.HTTPException) as e:
        r.error = e
    finally:
        r.elapsed = time.monotonic() - t0
        r.body = bytes(buf)
        conn.close()
    return r


def measure(fn, n=5):
    """Call fn() n times; returns how long each call took (seconds)."""
    out = []
    for _ in range(n):
        t0 = time.monotonic()
        fn()
        out.append(time.monotonic() - t0)
    return out


class RawResponse:
    """A response read from a raw socket, with arrival times."""

    def __init__(self):
        self.raw = b""
        self.head = b""
        self.status = None
        self.headers = []
        self.body_raw = b""     # as on the wire (maybe chunk-framed)
        self.body = b""         # de-chunked when chunked
        self.arrivals = []      # (seconds since request sent, bytes)
        self.body_arrivals = []  # (seconds, body bytes in that read, raw)
        self.started = None
        self.eof = False
        self.error = None

    def header(self, name, default=None):
        name = name.lower()
        for k, v in self.headers:
            if k.lower() == name:
                return v
        return default

    @property
    def trace_id(self):
        return self.header("X-Trace-Id")


def dechunk(data):
    """Decode a chunked body; returns (body, complete)."""
    out = bytearray()
    pos = 0
    while True:
        eol = data.find(b"\r\n", pos)
        if eol < 0:
            return bytes(out), False
        size = int(data[pos:eol].split(b";")[0] or b"0", 16)
        pos = eol + 2
        if size == 0:
            return bytes(out), True
        if pos + size > len(data):
            out += data[pos:]
            return bytes(out), False
        out += data[pos:pos + size]
        pos += size + 2


def stream_request(port, path="/", method="POST", body=None, headers=None,
                   timeout=10.0, host="127.0.0.1", close_after=None):
    """Send a request over a raw socket and read until EOF, recording when
    each piece arrived.  close_after=N closes the client side once N body
    bytes arrived (a client going away mid-stream)."""
    r = RawResponse()
    data = _body_bytes(body) or b""
    hdrs = {"Host": "%s:%d" % (host, port), "Connection": "close"}
    hdrs.update(headers or {})
    if method not in ("GET", "HEAD") or data:
        hdrs.setdefault("Content-Length", str(len(data)))
    req = ("%s %s HTTP/1.1\r\n" % (method, path) + "".join(
        "%s: %s\r\n" % kv for kv in hdrs.items()) + "\r\n").encode() + data
    s = socket.create_connection((host, port), timeout=timeout)
    r.started = time.time()
    t0 = time.monotonic()
    buf = bytearray()
    head_end = -1
    try:
        s.sendall(req)
        while True:
            piece = s.recv(65536)
            now = time.monotonic() - t0
            if not piece:
                r.eof = True
                break
            r.arrivals.append((now, piece))
            before = len(buf)
            buf += piece
            if head_end < 0:
                head_end = buf.find(b"\r\n\r\n")
                if head_end >= 0 and len(buf) > head_end + 4:
                    r.body_arrivals.append((now, bytes(buf[head_end + 4:])))
            else:
                r.body_arrivals.append((now, bytes(buf[before:])))
            if close_after is not None and head_end >= 0 and \
                    len(buf) - head_end - 4 >= close_after:
                break
    except OSError as e:
        r.error = e
    finally:
        s.close()
    r.raw = bytes(buf)
    if head_end >= 0:
        r.head = r.raw[:head_end]
        lines = r.head.decode("latin-1").split("\r\n")
        r.status = int(lines[0].split()[1])
        for ln in lines[1:]:
            k, _, v = ln.partition(":")
            r.headers.append((k.strip(), v.strip()))
        r.body_raw = r.raw[head_end + 4:]
        if (r.header("Transfer-Encoding") or "").lower() == "chunked":
            r.body, _ = dechunk(r.body_raw)
        else:
            r.body = r.body_raw
    return r


# ---------------------------------------------------------------------------
# nginx
# ---------------------------------------------------------------------------

class NginxStartError(RuntimeError):
    pass


def _children(pid):
    out = []
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open("/proc/%s/stat" % d) as f:
                st = f.read()
        except OSError:
            continue
        # pid (comm) state ppid ...
        rest = st[st.rfind(")") + 2:].split()
        if len(rest) > 1 and int(rest[1]) == pid:
            out.append(int(d))
    return out


class Nginx:
    """One nginx instance under a prefix directory.

    snippet: text put inside the http block (server blocks).  Tokens:
      @PORT@, @PORT_xxx@   a free port, allocated per name (self.ports)
      @LF@                 the usual traced-location directives
                           (trace on, endpoint @SINK@, keys, X-Trace-Id)
      @PREFIX@             the prefix directory
      and whatever `subst` holds (conftest gives @UP@, @UPSTREAM@,
      @SINK@, @SINK2@).
    """

    def __init__(self, prefix, snippet, module=True, workers=2,
                 flush_interval="100ms", batch_size=None, queue_size=None,
                 http_extra="", main_extra="", subst=None, access_log=True,
                 memcheck=None, name="nginx", user=None):
        self.prefix = os.path.abspath(prefix)
        os.makedirs(self.prefix, exist_ok=True)
        os.makedirs(os.path.join(self.prefix, "tmp"), exist_ok=True)
        self.snippet = snippet
        self.module = module
        self.workers = workers
        self.flush_interval = flush_interval
        self.batch_size = batch_size
        self.queue_size = queue_size
        self.http_extra = http_extra
        self.main_extra = main_extra
        self.subst = dict(subst or {})
        self.access_log = access_log
        self.memcheck = MEMCHECK if memcheck is None else memcheck
        self.name = name
        self.user = user            # the workers' "user" when run as root
        self.ports = {}
        self.proc = None
        self.conf_path = os.path.join(self.prefix, "nginx.conf")
        self.error_log = os.path.join(self.prefix, "error.log")
        self.pid_path = os.path.join(self.prefix, "nginx.pid")
        self.stderr_path = os.path.join(self.prefix, "stderr.log")
        self._log_offset = 0
        self._stderr_offset = 0
        self._report_offsets = {}
        self._allowed = []          # reset after each check (per test)
        self._allowed_always = []   # for the instance's whole life
        self._caused = []           # fatal lines the test itself caused
        self.killed = False
        self.stop_seconds = None
        self.conf = self.render()

    # -- config ----------------------------------------------------------------
    @property
    def slow(self):
        return 8.0 if self.memcheck == "valgrind" else 1.0

    def _substitute(self, text):
        text = text.replace("@LF@", lf_block())

        def rep(m):
            name = m.group(1)
            if name in self.subst:
                return str(self.subst[name])
            if name == "PREFIX":
                return self.prefix
            if name == "PORT" or name.startswith("PORT_") or \
                    re.match(r"PORT\d+$", name):
                if name not in self.ports:
                    self.ports[name] = free_port()
                return str(self.ports[name])
            raise KeyError("unknown token @%s@ in nginx config" % name)
        # two passes: substitutions may themselves hold tokens
        for _ in range(2):
            text = TOKEN_RE.sub(rep, text)
        return text

    def render(self):
        p = self.prefix
        main = []
        if self.module:
            main.append("load_module %s;" % MODULE_PATH)
        main.append("worker_processes %s;" % self.workers)
        if os.geteuid() == 0:
            main.append("user %s;" % (self.user or "root"))
        main += ["daemon off;", "master_process on;",
                 "error_log %s/error.log info;" % p,
                 "pid %s;" % self.pid_path]
        if self.main_extra:
            main.append(self._substitute(self.main_extra))
        http = []
        http.append("access_log %s;" % (os.path.join(p, "access.log")
                                        if self.access_log else "off"))
        for name, sub in (("client_body_temp_path", "client_body"),
                          ("proxy_temp_path", "proxy"),
                          ("fastcgi_temp_path", "fastcgi"),
                          ("uwsgi_temp_path", "uwsgi"),
                          ("scgi_temp_path", "scgi")):
            http.append("%s %s/tmp/%s;" % (name, p, sub))
        http.append("default_type application/octet-stream;")
        if self.module:
            if self.flush_interval:
                http.append("langfuse_flush_interval %s;" %
                            self.flush_interval)
            if self.batch_size:
                http.append("langfuse_batch_size %s;" % self.batch_size)
            if self.queue_size:
                http.append("langfuse_queue_size %s;" % self.queue_size)
        if self.http_extra:
            http.append(self._substitute(self.http_extra))
        body = self._substitute(self.snippet)
        conf = ("# generated by t/lib/harness.py\n" + "\n".join(main) +
                "\n\nevents {\n    worker_connections 1024;\n}\n\n"
                "http {\n" + "".join("    %s\n" % h for h in http) + "\n" +
                body + "\n}\n")
        with open(self.conf_path, "w") as f:
            f.write(conf)
        return conf

    def listen_ports(self):
        """{token name: port} of the allocated ports nginx listens on."""
        listened = set(int(p) for p in re.findall(
            r"^\s*listen\s+(?:127\.0\.0\.1:)?(\d+)", self.conf, re.M))
        return {n: p for n, p in self.ports.items() if p in listened}

    @property
    def port(self):
        return self.ports["PORT"]

    def url(self, path="/", port="PORT"):
        return "http://127.0.0.1:%d%s" % (self.ports[port], path)

    # -- process ---------------------------------------------------------------
    def _cmd_env(self, extra_args=()):
        cmd = [NGINX_BIN, "-p", self.prefix + "/", "-c", self.conf_path,
               "-e", self.error_log] + list(extra_args)
        env = dict(os.environ)
        if self.memcheck == "asan":
            env["LD_PRELOAD"] = libasan_path() or ""
            env["ASAN_OPTIONS"] = ("detect_leaks=0:abort_on_error=0:"
                                   "log_path=%s/asan" % self.prefix)
        elif self.memcheck == "valgrind":
            cmd = ["valgrind", "-q", "--error-limit=no",
                   "--log-file=%s/valgrind.%%p.log" % self.prefix] + cmd
        return cmd, env

    def test_config(self):
        """Run `nginx -t`; returns (returncode, all output text)."""
        cmd, env = self._cmd_env(["-t"])
        if os.path.exists(self.error_log):
            os.unlink(self.error_log)
        p = subprocess.run(cmd, capture_output=True, text=True, env=env,
                           timeout=60 * self.slow)
        log = ""
        if os.path.exists(self.error_log):
            with open(self.error_log, errors="replace") as f:
                log = f.read()
        return p.returncode, p.stdout + p.stderr + log

    def start(self):
        for f in (self.pid_path,):
            if os.path.exists(f):
                os.unlink(f)
        cmd, env = self._cmd_env()
        self._stderr_file = open(self.stderr_path, "ab")
        self.proc = subprocess.Popen(cmd, cwd=self.prefix, env=env,
                                     stdin=subprocess.DEVNULL,
                                     stdout=self._stderr_file,
                                     stderr=self._stderr_file,
                                     start_new_session=True)
        deadline = time.monotonic() + 10 * self.slow
        while not self._pid_written():
            if self.proc.poll() is not None:
                self._stderr_file.close()
                raise NginxStartError("nginx exited with %s at start:\n%s" % (
                    self.proc.returncode, self.logs_text()))
            if time.monotonic() > deadline:
                self.kill()
                raise NginxStartError("nginx wrote no pid file in time:\n%s"
                                      % self.logs_text())
            time.sleep(0.02)
        for name, port in self.listen_ports().items():
            while True:
                try:
                    socket.create_connection(("127.0.0.1", port),
                                             timeout=1).close()
                    break
                except OSError:
                    if self.proc.poll() is not None or \
                            time.monotonic() > deadline:
                        self.kill()
                        raise NginxStartError(
                            "nginx does not listen on %s=%d:\n%s" % (
                                name, port, self.logs_text()))
                    time.sleep(0.02)
        self._wait_workers(set())
        return self

    def _pid_written(self):
        try:
            with open(self.pid_path) as f:
                return bool(f.read().strip())
        except OSError:
            return False

    def _wait_workers(self, old, timeout=10.0):
        deadline = time.monotonic() + timeout * self.slow
        while time.monotonic() < deadline:
            new = [c for c in _children(self.proc.pid) if c not in old]
            if len(new) >= self.workers:
                return new
            time.sleep(0.02)
        return []

    def worker_pids(self):
        return _children(self.proc.pid) if self.running else []

    @property
    def running(self):
        return self.proc is not None and self.proc.poll() is None

    def reload(self, snippet=None):
        """SIGHUP (optionally with a new snippet); waits for new workers."""
        if snippet is not None:
            self.snippet = snippet
            self.conf = self.render()
        old = set(self.worker_pids())
        os.kill(self.proc.pid, signal.SIGHUP)
        new = self._wait_workers(old)
        if not new:
            raise AssertionError("no new workers after reload:\n" +
                                 self.logs_text())
        # old workers stop accepting once told to quit; give them a moment
        # to go so new connections surely reach the new configuration
        deadline = time.monotonic() + 5 * self.slow
        while time.monotonic() < deadline and \
                old & set(self.worker_pids()):
            time.sleep(0.02)
        return new

    def stop(self, timeout=10.0):
        """SIGQUIT, wait up to `timeout` s, then SIGKILL the process group.
        Returns True when nginx exited by itself."""
        if self.proc is None:
            return True
        if self.proc.poll() is None:
            t0 = time.monotonic()
            try:
                os.kill(self.proc.pid, signal.SIGQUIT)
            except ProcessLookupError:
                pass
            try:
                self.proc.wait(timeout * self.slow)
            except subprocess.TimeoutExpired:
                self.kill()
            self.stop_seconds = time.monotonic() - t0
        # leftover workers of a master that died
        self._kill_group()
        try:
            self._stderr_file.close()
        except (AttributeError, OSError):
            pass
        return not self.killed

    def _kill_group(self):
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass

    def kill(self):
        if self.proc is not None and self.proc.poll() is None:
            self.killed = True
            self._kill_group()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                pass

    # -- logs ------------------------------------------------------------------
    def caused_alerts(self, *patterns):
        """Fatal log lines the test provokes on purpose (killing a worker
        makes the master log an [alert]); for the instance's life."""
        self._caused.extend(patterns)

    def allow_errors(self, *patterns, always=False):
        """Let [error] lines matching a regex pass the log check (until the
        end of the current test, or for the instance's life)."""
        (self._allowed_always if always else self._allowed).extend(patterns)

    def read_error_log(self, since_test_start=False):
        if not os.path.exists(self.error_log):
            return ""
        with open(self.error_log, "rb") as f:
            if since_test_start:
                f.seek(self._log_offset)
            return f.read().decode("utf-8", "replace")

    def logs_text(self):
        parts = []
        for path in [self.error_log, self.stderr_path] + \
                sorted(glob.glob(os.path.join(self.prefix, "asan*"))):
            if os.path.exists(path):
                with open(path, "rb") as f:
                    data = f.read()[-6000:].decode("utf-8", "replace")
                parts.append("--- %s\n%s" % (path, data))
        return "\n".join(parts)

    def check_logs(self, final=False, fatal_only=False):
        """Assert nothing bad was logged since the last check; returns the
        list of problems (raises AssertionError when there are any).
        fatal_only: [error] lines pass."""
        problems = []
        allowed = self._allowed + self._allowed_always
        if fatal_only:
            allowed = allowed + [r"."]
        if os.path.exists(self.error_log):
            with open(self.error_log, "rb") as f:
                f.seek(self._log_offset)
                text = f.read()
                self._log_offset += len(text)
            problems += ["error.log: " + ln for ln in
                         scan_log(text.decode("utf-8", "replace"), allowed,
                                  self._caused)]
        if os.path.exists(self.stderr_path):
            with open(self.stderr_path, "rb") as f:
                f.seek(self._stderr_offset)
                text = f.read()
                self._stderr_offset += len(text)
            problems += ["stderr: " + ln for ln in
                         scan_log(text.decode("utf-8", "replace"), allowed)]
        # sanitizer / valgrind report files: the tools keep them open, so
        # read what is new in each instead of moving them away
        for pattern, label in (("asan*", "sanitizer report"),
                               ("valgrind.*.log", "valgrind report")):
            for path in sorted(glob.glob(os.path.join(self.prefix,
                                                      pattern))):
                with open(path, "rb") as f:
                    f.seek(self._report_offsets.get(path, 0))
                    text = f.read()
                self._report_offsets[path] = \
                    self._report_offsets.get(path, 0) + len(text)
                text = text.decode("utf-8", "replace")
                if text.strip():
                    problems.append("%s %s:\n%s" % (label, path,
                                                     text[:4000]))
        if not fatal_only:
            self._allowed = []
        if final and self.killed:
            problems.append("nginx did not exit within %.0f s of SIGQUIT "
                            "and was killed" % (10 * self.slow))
        if problems:
            raise AssertionError("%s logged problems:\n%s" % (
                self.name, "\n".join(problems)))
        return problems

    # -- requests ----------------------------------------------------------------
    def request(self, path="/", method="GET", body=None, headers=None,
                port="PORT", case=None, **kw):
        hdrs = dict(headers or {})
        if case is not None:
            hdrs["X-Test-Case"] = case
        return http_request(self.ports[port], path, method, body, hdrs, **kw)

    def post(self, path, body=None, case=None, headers=None, port="PORT",
             **kw):
        """POST JSON (dict/list dumped, bytes/str as is)."""
        hdrs = {"Content-Type": "application/json"}
        hdrs.update(headers or {})
        return self.request(path, "POST", body, hdrs, port, case, **kw)

    def stream(self, path, body=None, case=None, headers=None, port="PORT",
               **kw):
        hdrs = {"Content-Type": "application/json"}
        hdrs.update(headers or {})
        if case is not None:
            hdrs["X-Test-Case"] = case
        return stream_request(self.ports[port], path, "POST", body, hdrs,
                              **kw)


def parse_sse(data):
    """Events of an SSE byte stream: list of dicts {event, data, id}
    (LF, CRLF or CR line ends; comments skipped)."""
    text = data.decode("utf-8").replace("\r\n", "\n").replace("\r", "\n")
    events = []
    cur = {"event": None, "data": [], "id": None}
    for line in text.split("\n"):
        if line == "":
            if cur["data"]:
                events.append({"event": cur["event"],
                               "data": "\n".join(cur["data"]),
                               "id": cur["id"]})
            cur = {"event": None, "data": [], "id": None}
            continue
        if line.startswith(":"):
            continue
        field, _, value = line.partition(":")
        if value.startswith(" "):
            value = value[1:]
        if field == "data":
            cur["data"].append(value)
        elif field in ("event", "id"):
            cur[field] = value
    return events
