#!/usr/bin/env python3
"""Recording fake Langfuse server for the ngx_http_langfuse_module tests.

Accepts
  POST /api/public/otel/v1/traces   OTLP/JSON, answers 200 {}
  POST /api/public/ingestion        legacy batch, answers 207
and records every request (gzip bodies decoded).  Faults can be injected
from a test: fail(status, count), hang()/release(), delay(s),
reset_connections(), down()/up(); clear() forgets everything (between tests).

Standalone:
    python3 t/lib/sink.py --port 3000 --print
prints each received generation as a readable block.
"""

import argparse
import base64
import binascii
import gzip
import json
import socket
import struct
import threading
import time
import zlib
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

OTLP_PATH = "/api/public/otel/v1/traces"
INGESTION_PATH = "/api/public/ingestion"


class SinkRecord:
    """One request the sink received."""

    def __init__(self):
        self.method = None
        self.path = None
        self.headers = []       # list of (name, value)
        self.raw = b""          # body as received
        self.body = b""         # body after Content-Encoding decoding
        self.gzip = False
        self.json = None        # parsed body, None when not JSON
        self.decode_error = None
        self.time = None
        self.auth = None        # (public_key, secret_key) or None
        self.auth_error = None
        self.status = None      # status answered, None when not answered
        self.fault = None       # name of the injected fault, if any
        self.delayed = False    # answered late (delay fault)

    def header(self, name, default=None):
        name = name.lower()
        for k, v in self.headers:
            if k.lower() == name:
                return v
        return default

    @property
    def accepted(self):
        return self.status is not None and 200 <= self.status < 300 \
            and self.fault is None

    def __repr__(self):
        return "<SinkRecord %s %s status=%s fault=%s %d bytes>" % (
            self.method, self.path, self.status, self.fault, len(self.body))


# ---------------------------------------------------------------------------
# OTLP helpers
# ---------------------------------------------------------------------------

def any_value(v):
    """OTLP/JSON AnyValue -> python value."""
    if not isinstance(v, dict) or not v:
        return None
    if "stringValue" in v:
        return v["stringValue"]
    if "intValue" in v:
        return int(v["intValue"])
    if "boolValue" in v:
        return bool(v["boolValue"])
    if "doubleValue" in v:
        return float(v["doubleValue"])
    if "arrayValue" in v:
        return [any_value(x) for x in (v["arrayValue"] or {}).get("values",
                                                                    [])]
    if "kvlistValue" in v:
        return attrs_to_dict((v["kvlistValue"] or {}).get("values", []))
    if "bytesValue" in v:
        return v["bytesValue"]
    return None


def attrs_to_dict(attrs):
    out = {}
    for a in attrs or []:
        out[a.get("key")] = any_value(a.get("value"))
    return out


def attr_types(attrs):
    """{key: the AnyValue member name used}, e.g. 'stringValue'."""
    out = {}
    for a in attrs or []:
        v = a.get("value") or {}
        out[a.get("key")] = next(iter(v), None)
    return out


def duplicate_keys(attrs):
    seen, dup = set(), []
    for a in attrs or []:
        k = a.get("key")
        if k in seen:
            dup.append(k)
        seen.add(k)
    return dup


def flatten_spans(doc, record=None):
    """resourceSpans[].scopeSpans[].spans[] -> list of span dicts.

    Each span keeps its own fields; "attributes" becomes a plain dict,
    the original list is kept in "attributes_raw"; "resource" (dict) and
    "scope" are added, plus "record" (the SinkRecord)."""
    out = []
    if not isinstance(doc, dict):
        return out
    for rs in doc.get("resourceSpans") or []:
        resource = attrs_to_dict((rs.get("resource") or {}).get("attributes"))
        for ss in rs.get("scopeSpans") or []:
            scope = ss.get("scope") or {}
            for sp in ss.get("spans") or []:
                d = dict(sp)
                d["attributes_raw"] = sp.get("attributes") or []
                d["attributes"] = attrs_to_dict(d["attributes_raw"])
                d["resource"] = resource
                d["scope"] = scope
                d["record"] = record
                out.append(d)
    return out


# ---------------------------------------------------------------------------
# printing
# ---------------------------------------------------------------------------

def _abbrev(s, n=160):
    if s is None:
        return "-"
    if not isinstance(s, str):
        s = json.dumps(s, ensure_ascii=False)
    s = s.replace("\n", "\\n")
    return s if len(s) <= n else s[:n - 3] + "..."


def _ns_iso(ns):
    try:
        t = int(ns) / 1e9
    except (TypeError, ValueError):
        return "-"
    return datetime.fromtimestamp(t, timezone.utc).strftime(
        "%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def _iso_ms(s):
    try:
        s = s.strip('"')
        return datetime.strptime(s.replace("Z", "+0000"),
                                 "%Y-%m-%dT%H:%M:%S.%f%z").timestamp() * 1000
    except (AttributeError, ValueError):
        return None


def format_span(sp):
    a = sp["attributes"]
    start = int(sp.get("startTimeUnixNano") or 0)
    end = int(sp.get("endTimeUnixNano") or 0)
    lines = ["=== generation %s" % sp.get("name"),
             "  trace %s  span %s%s" % (
                 sp.get("traceId"), sp.get("spanId"),
                 ("  parent " + sp["parentSpanId"])
                 if sp.get("parentSpanId") else "")]
    lines.append("  model  %s   level %s   status %s" % (
        a.get("langfuse.observation.model.name", "-"),
        a.get("langfuse.observation.level", "DEFAULT"),
        json.dumps(sp.get("status"))))
    if "langfuse.observation.status_message" in a:
        lines.append("  status_message %s" %
                     a["langfuse.observation.status_message"])
    lines.append("  usage  %s" % a.get("langfuse.observation.usage_details",
                                       "-"))
    if "langfuse.observation.model.parameters" in a:
        lines.append("  params %s" % a["langfuse.observation.model.parameters"])
    lines.append("  input  %s" % _abbrev(a.get("langfuse.observation.input")))
    lines.append("  output %s" % _abbrev(a.get("langfuse.observation.output")))
    cst = _iso_ms(a.get("langfuse.observation.completion_start_time"))
    ttft = ("%.0f ms" % (cst - start / 1e6)) if cst and start else "-"
    lines.append("  start  %s  end %s  duration %.0f ms  first token %s" % (
        _ns_iso(start), _ns_iso(end), (end - start) / 1e6, ttft))
    who = []
    for k, label in (("user.id", "user"), ("session.id", "session"),
                     ("langfuse.trace.tags", "tags"),
                     ("langfuse.environment", "env"),
                     ("langfuse.release", "release")):
        if k in a:
            who.append("%s=%s" % (label, _abbrev(a[k], 60)))
    if who:
        lines.append("  " + "  ".join(who))
    meta = {k.rsplit(".", 1)[1]: v for k, v in a.items()
            if k.startswith("langfuse.observation.metadata.")
            or k.startswith("langfuse.trace.metadata.")}
    if meta:
        lines.append("  meta   %s" % _abbrev(meta, 200))
    return "\n".join(lines)


def format_generation(ev):
    b = ev.get("body") or {}
    lines = ["=== generation %s (ingestion)" % b.get("name"),
             "  trace %s  id %s" % (b.get("traceId"), b.get("id")),
             "  model  %s   level %s" % (b.get("model"), b.get("level")),
             "  usage  %s" % json.dumps(b.get("usageDetails") or
                                        b.get("usage")),
             "  input  %s" % _abbrev(b.get("input")),
             "  output %s" % _abbrev(b.get("output")),
             "  start  %s  end %s  first token %s" % (
                 b.get("startTime"), b.get("endTime"),
                 b.get("completionStartTime"))]
    if b.get("statusMessage"):
        lines.append("  status_message %s" % b["statusMessage"])
    return "\n".join(lines)


# ---------------------------------------------------------------------------
# server
# ---------------------------------------------------------------------------

def _read_body(handler):
    te = (handler.headers.get("Transfer-Encoding") or "").lower()
    if "chunked" in te:
        out = bytearray()
        while True:
            line = handler.rfile.readline(65537)
            if not line:
                raise ConnectionError("eof in chunked body")
            size = int(line.split(b";", 1)[0].strip() or b"0", 16)
            if size == 0:
                while handler.rfile.readline(65537) not in (b"\r\n", b"\n",
                                                            b""):
                    pass
                return bytes(out)
            out += handler.rfile.read(size)
            handler.rfile.readline(65537)
    cl = handler.headers.get("Content-Length")
    if cl:
        return handler.rfile.read(int(cl))
    return b""


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "fake-langfuse"

    def log_message(self, fmt, *args):
        pass

    def setup(self):
        super().setup()
        self.server.owner._conn_opened(self.connection)

    def finish(self):
        try:
            super().finish()
        finally:
            self.server.owner._conn_closed(self.connection)

    def handle(self):
        try:
            super().handle()
        except (ConnectionError, OSError, ValueError):
            pass

    def do_GET(self):
        if self.path.startswith("/api/public/health"):
            return self._answer(200, b'{"status":"OK","version":"fake"}')
        if self.path.startswith("/api/public/projects"):
            rec = SinkRecord()
            rec.headers = list(self.headers.items())
            self._auth(rec, self.server.owner.expected_auth)
            if rec.auth_error is not None:
                return self._answer(401, json.dumps(
                    {"message": rec.auth_error}).encode())
            return self._answer(200, b'{"data":[{"id":"project-1",'
                                     b'"name":"fake project"}]}')
        return self._answer(404, b'{"message":"not found"}')

    def do_POST(self):
        owner = self.server.owner
        rec = SinkRecord()
        rec.time = time.time()
        rec.method = self.command
        rec.path = self.path
        rec.headers = list(self.headers.items())
        rec.raw = _read_body(self)
        fault = owner._take_fault()

        if fault is not None and fault[0] == "reset":
            rec.fault = "reset"
            owner._record(rec)
            self.close_connection = True
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                                       struct.pack("ii", 1, 0))
            # closed here: socketserver's shutdown(SHUT_WR) would send a
            # FIN first
            self.connection.close()
            return
        if fault is not None and fault[0] == "hang":
            rec.fault = "hang"
            with owner._lock:
                owner._hung.append(rec)
            owner._released.wait()
            self.close_connection = True
            return

        self._decode(rec)
        self._auth(rec, owner.expected_auth)

        if fault is not None and fault[0] == "delay":
            rec.delayed = True
            time.sleep(fault[1])
            if not fault[2]:
                rec.fault = "delay"

        nspans = len(flatten_spans(rec.json)) if (
            owner.max_spans is not None and isinstance(rec.json, dict)) else 0
        location = None
        if fault is not None and fault[0] == "fail":
            rec.fault = "fail"
            status = fault[1]
            body = owner.fail_body or json.dumps(
                {"message": "injected failure", "status": status}).encode()
        elif fault is not None and fault[0] == "redirect":
            rec.fault = "redirect"
            status, location = fault[1], fault[2] + self.path
            body = b'{"message":"moved"}'
        elif (owner.max_spans is not None and nspans > owner.max_spans) or (
                owner.max_bytes is not None and rec.body is not None and
                len(rec.body) > owner.max_bytes):
            rec.fault = "too large"
            status = 413
            body = b'{"message":"request entity too large"}'
        elif rec.auth_error is not None:
            status, body = 401, json.dumps(
                {"message": rec.auth_error}).encode()
        elif self.path.split("?")[0] == OTLP_PATH:
            status, body = 200, b"{}"
        elif self.path.split("?")[0] == INGESTION_PATH:
            batch = (rec.json or {}).get("batch") if isinstance(
                rec.json, dict) else None
            if not isinstance(batch, list):
                status, body = 400, b'{"message":"no batch"}'
            else:
                status = 207
                events = [e for e in batch if isinstance(e, dict)]
                bad = owner._take_ingestion_errors(events)
                failing = owner.ingestion_error_status
                pad = {"detail": "x" * owner.ingestion_padding} \
                    if owner.ingestion_padding else {}
                body = json.dumps({
                    "successes": [dict({"id": e.get("id"), "status": 201},
                                       **pad)
                                  for e in events if e not in bad],
                    "errors": [{"id": e.get("id"), "status": failing,
                                "message": "Invalid request data"
                                if failing < 500 else "Internal error",
                                "error": "injected"} for e in bad]}).encode()
                rec.refused_events = [e.get("id") for e in bad]
        else:
            status, body = 404, b'{"message":"unknown path"}'
        if rec.json is None and status in (200, 207):
            status, body = 400, json.dumps(
                {"message": "bad body: %s" % rec.decode_error}).encode()
        rec.status = status
        owner._record(rec)
        if owner.printer is not None:
            owner.printer(rec)
        self._answer(status, body, location)

    def _decode(self, rec):
        enc = (rec.header("Content-Encoding") or "").strip().lower()
        data = rec.raw
        try:
            if enc == "gzip":
                rec.gzip = True
                data = gzip.decompress(data)
            elif enc == "deflate":
                data = zlib.decompress(data)
            elif enc not in ("", "identity"):
                raise ValueError("unsupported Content-Encoding %r" % enc)
            rec.body = data
            rec.json = json.loads(data.decode("utf-8"))
        except (OSError, EOFError, ValueError, zlib.error) as e:
            rec.body = data
            rec.decode_error = "%s: %s" % (type(e).__name__, e)

    @staticmethod
    def _auth(rec, expected):
        h = rec.header("Authorization")
        if not h:
            rec.auth_error = "no Authorization header"
            return
        scheme, _, cred = h.partition(" ")
        if scheme.lower() != "basic":
            rec.auth_error = "Authorization is not Basic"
            return
        try:
            pk, sep, sk = base64.b64decode(cred.strip(), validate=True
                                           ).decode("utf-8").partition(":")
        except (binascii.Error, ValueError):
            rec.auth_error = "Authorization is not valid base64"
            return
        if not sep or not pk or not sk:
            rec.auth_error = "Authorization is not pk:sk"
            return
        rec.auth = (pk, sk)
        if expected is not None and rec.auth != tuple(expected):
            rec.auth_error = "wrong keys %r" % (rec.auth,)

    def _answer(self, status, body, location=None):
        if self.headers.get("Connection", "").lower() == "close":
            self.close_connection = True
        after = self.server.owner.retry_after
        head = ("HTTP/1.1 %d %s\r\nContent-Type: application/json\r\n"
                "Content-Length: %d\r\n%s%s%s\r\n" % (
                    status, self.responses.get(status, ("X",))[0],
                    len(body),
                    "Location: %s\r\n" % location if location else "",
                    "Retry-After: %d\r\n" % after
                    if after is not None and status >= 400 else "",
                    "Connection: close\r\n" if self.close_connection else ""))
        self.wfile.write(head.encode() + body)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 256


class Sink:
    """The fake Langfuse as a thread."""

    def __init__(self, host="127.0.0.1", port=0, printer=None):
        self.host = host
        self.port = port
        self.printer = printer
        self.expected_auth = None
        self._records = []
        self._history = []      # never cleared by reset(): whole lifetime
        self._hung = []
        self._conns = set()
        self._lock = threading.Lock()
        self._released = threading.Event()
        self._fault = None
        self._fault_count = None
        self.max_spans = None       # answer 413 to larger OTLP batches
        self.max_bytes = None       # answer 413 to larger bodies (unzipped)
        self.retry_after = None     # Retry-After seconds on failures
        # events refused in 207 answers: the first n of each batch, or
        # those whose types are listed; with that status; in how many
        # answers (None: all)
        self.ingestion_errors = 0
        self.ingestion_error_status = 400
        self.ingestion_error_requests = None
        self.ingestion_padding = 0   # bytes of detail in each success
        self.fail_body = None       # the answer to injected failures
        self.httpd = None

    # -- lifecycle -----------------------------------------------------------
    def start(self):
        self.httpd = _Server((self.host, self.port), _Handler)
        self.httpd.owner = self
        self.port = self.httpd.server_address[1]
        self._thread = threading.Thread(target=self.httpd.serve_forever,
                                        kwargs={"poll_interval": 0.05},
                                        name="sink", daemon=True)
        self._thread.start()
        return self

    def stop(self):
        self.release()
        if self.httpd is not None:
            self.httpd.shutdown()
            self.httpd.server_close()
            self.httpd = None
        self._close_conns()

    def down(self):
        """Close the listening socket and open connections: the port now
        refuses connections."""
        if self.httpd is not None:
            self.httpd.shutdown()
            self.httpd.server_close()
            self.httpd = None
        self._close_conns()

    def up(self):
        """Listen again on the same port."""
        if self.httpd is None:
            deadline = time.monotonic() + 5
            while True:
                try:
                    return self.start()
                except OSError:
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(0.05)
        return self

    @property
    def is_up(self):
        return self.httpd is not None

    @property
    def endpoint(self):
        return "http://%s:%d" % (self.host, self.port)

    def _conn_opened(self, c):
        with self._lock:
            self._conns.add(c)

    def _conn_closed(self, c):
        with self._lock:
            self._conns.discard(c)

    def _close_conns(self):
        with self._lock:
            conns = list(self._conns)
        for c in conns:
            try:
                c.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    # -- faults --------------------------------------------------------------
    def _set_fault(self, fault, count):
        with self._lock:
            self._fault = fault
            self._fault_count = count

    def _take_fault(self):
        with self._lock:
            f = self._fault
            if f is None:
                return None
            if self._fault_count is not None:
                self._fault_count -= 1
                if self._fault_count <= 0:
                    self._fault = None
                    self._fault_count = None
            return f

    def _take_ingestion_errors(self, events):
        with self._lock:
            if self.ingestion_error_requests is not None:
                if self.ingestion_error_requests <= 0:
                    return []
                self.ingestion_error_requests -= 1
            pick = self.ingestion_errors
        if isinstance(pick, int):
            return events[:pick]
        return [e for e in events if e.get("type") in pick]

    def fail(self, status, count=None):
        """Answer `status` to the next `count` requests (None: always)."""
        self._set_fault(("fail", status), count)

    def redirect(self, status, to, count=None):
        """Answer `status` with a Location on the endpoint `to`."""
        self._set_fault(("redirect", status, to.rstrip("/")), count)

    def hang(self, count=None):
        """Read requests and never answer them, until release()."""
        self._released.clear()
        self._set_fault(("hang",), count)

    def release(self):
        """Stop hanging: hung connections are closed unanswered."""
        with self._lock:
            if self._fault is not None and self._fault[0] == "hang":
                self._fault = None
                self._fault_count = None
        self._released.set()

    def delay(self, seconds, count=None, accept=True):
        """Sleep before answering; accept=False does not count the spans
        of delayed requests as delivered (e.g. when the client gave up)."""
        self._set_fault(("delay", seconds, accept), count)

    def reset_connections(self, count=None):
        """Read each request, then close with a TCP RST, unanswered."""
        self._set_fault(("reset",), count)

    def normal(self):
        self._set_fault(None, None)
        self.max_spans = None
        self.max_bytes = None
        self.retry_after = None
        self.ingestion_errors = 0
        self.ingestion_error_status = 400
        self.ingestion_error_requests = None
        self.ingestion_padding = 0   # bytes of detail in each success
        self.fail_body = None
        self._released.set()

    def clear(self):
        """Forget recorded requests and faults (between tests)."""
        self.normal()
        self.expected_auth = None
        with self._lock:
            self._records = []
            self._hung = []
        if self.httpd is None:
            self.up()

    # -- records -------------------------------------------------------------
    def _record(self, rec):
        with self._lock:
            self._records.append(rec)
            self._history.append(rec)

    def requests(self, path=None, accepted_only=False):
        with self._lock:
            recs = list(self._records)
        if path is not None:
            recs = [r for r in recs if r.path.split("?")[0] == path]
        if accepted_only:
            recs = [r for r in recs if r.accepted]
        return recs

    @property
    def hung(self):
        with self._lock:
            return list(self._hung)

    def forget_history(self):
        with self._lock:
            self._history = []

    def history(self):
        with self._lock:
            return list(self._history)

    def otlp_requests(self, accepted_only=True):
        return self.requests(OTLP_PATH, accepted_only)

    def ingestion_requests(self, accepted_only=True):
        return self.requests(INGESTION_PATH, accepted_only)

    def spans(self, include_rejected=False, records=None):
        if records is None:
            records = self.otlp_requests(accepted_only=not include_rejected)
        out = []
        for r in records:
            if r.path.split("?")[0] == OTLP_PATH:
                out.extend(flatten_spans(r.json, r))
        return out

    def events(self, include_rejected=False, records=None):
        if records is None:
            records = self.ingestion_requests(
                accepted_only=not include_rejected)
        out = []
        for r in records:
            if r.path.split("?")[0] != INGESTION_PATH:
                continue
            refused = () if include_rejected else getattr(
                r, "refused_events", ())
            if isinstance(r.json, dict):
                for e in r.json.get("batch") or []:
                    if isinstance(e, dict) and e.get("id") not in refused:
                        e = dict(e)
                        e["record"] = r
                        out.append(e)
        return out

    def generations(self, include_rejected=False):
        return [e for e in self.events(include_rejected)
                if e.get("type") == "generation-create"]

    def traces(self, include_rejected=False):
        return [e for e in self.events(include_rejected)
                if e.get("type") == "trace-create"]

    # -- waiting -------------------------------------------------------------
    def _describe(self):
        recs = self.requests()
        lines = ["sink received %d request(s):" % len(recs)]
        for r in recs[-10:]:
            lines.append("  %r auth=%s%s" % (
                r, r.auth, (" decode_error=" + r.decode_error)
                if r.decode_error else ""))
        if self.hung:
            lines.append("  (%d hung)" % len(self.hung))
        return "\n".join(lines)

    def _wait(self, what, get, n, timeout, interval=0.05):
        deadline = time.monotonic() + timeout
        while True:
            items = get()
            if len(items) >= n:
                return items
            if time.monotonic() >= deadline:
                raise AssertionError(
                    "timed out after %.1fs waiting for %d %s, got %d\n%s" % (
                        timeout, n, what, len(items), self._describe()))
            time.sleep(interval)

    def wait_for_spans(self, n, timeout=5.0, trace_ids=None):
        """Wait until at least n spans arrived (of the given trace ids when
        given); returns those spans."""
        if trace_ids is None:
            get = self.spans
        else:
            ids = set(trace_ids)

            def get():
                return [s for s in self.spans() if s.get("traceId") in ids]
        return self._wait("span(s)", get, n, timeout)

    def wait_for_generations(self, n, timeout=5.0):
        return self._wait("generation-create event(s)", self.generations, n,
                          timeout)

    def wait_for_requests(self, n, timeout=5.0, path=None):
        return self._wait("request(s)", lambda: self.requests(path), n,
                          timeout)

    def span_for(self, trace_id, timeout=5.0):
        """The one span of a trace id (waits for it)."""
        assert trace_id, "no trace id (X-Trace-Id header missing?)"
        spans = self._wait("span(s) of trace %s" % trace_id,
                           lambda: [s for s in self.spans()
                                    if s.get("traceId") == trace_id],
                           1, timeout)
        return spans[0]

    def spans_of(self, trace_id):
        return [s for s in self.spans() if s.get("traceId") == trace_id]

    def assert_exactly_once(self, trace_ids, settle=0.35, timeout=5.0):
        """Wait for one span per trace id, wait `settle` seconds more, then
        assert each trace id has exactly one accepted span."""
        ids = list(trace_ids)
        assert all(ids), "missing trace ids: %r" % (ids,)
        self.wait_for_spans(len(set(ids)), timeout, trace_ids=ids)
        time.sleep(settle)
        idset = set(ids)
        counts = {}
        for s in self.spans():
            if s.get("traceId") in idset:
                counts[s["traceId"]] = counts.get(s["traceId"], 0) + 1
        wrong = {t: counts.get(t, 0) for t in ids if counts.get(t, 0) != 1}
        assert not wrong, "spans per trace id (want 1 each): %r" % wrong
        return [s for s in self.spans() if s.get("traceId") in set(ids)]

    def duplicate_deliveries(self):
        """(traceId, spanId) / event body ids accepted more than once over
        the sink's whole life (requests answered late excluded)."""
        seen = {}
        for rec in self.history():
            if not rec.accepted or rec.delayed:
                continue
            if rec.path.split("?")[0] == OTLP_PATH:
                keys = [("span", s.get("traceId"), s.get("spanId"))
                        for s in flatten_spans(rec.json)]
            else:
                keys = [("event", e.get("type"), (e.get("body") or {})
                         .get("id")) for e in self.events(records=[rec])
                        if e.get("type") == "generation-create"]
            for k in keys:
                seen[k] = seen.get(k, 0) + 1
        return {k: n for k, n in seen.items() if n > 1}

    def generation_for(self, trace_id, timeout=5.0):
        gens = self._wait("generation of trace %s" % trace_id,
                          lambda: [g for g in self.generations()
                                   if (g.get("body") or {}).get("traceId")
                                   == trace_id], 1, timeout)
        return gens[0]

    def trace_for(self, trace_id, timeout=5.0):
        tr = self._wait("trace-create of trace %s" % trace_id,
                        lambda: [t for t in self.traces()
                                 if (t.get("body") or {}).get("id")
                                 == trace_id], 1, timeout)
        return tr[0]


def _printer(rec):
    out = []
    if rec.path.split("?")[0] == OTLP_PATH:
        for sp in flatten_spans(rec.json, rec):
            out.append(format_span(sp))
    elif rec.path.split("?")[0] == INGESTION_PATH and isinstance(rec.json,
                                                                 dict):
        for ev in rec.json.get("batch") or []:
            if isinstance(ev, dict) and ev.get("type") == "generation-create":
                out.append(format_generation(ev))
    if out:
        print("\n".join(out), flush=True)
    else:
        print("=== %s %s (%d bytes, status %s)" % (rec.method, rec.path,
                                                   len(rec.body), rec.status),
              flush=True)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=3000)
    ap.add_argument("--print", dest="do_print", action="store_true",
                    help="print each received generation")
    args = ap.parse_args(argv)
    s = Sink(args.host, args.port,
             printer=_printer if args.do_print else None).start()
    print("fake Langfuse listening on %s" % s.endpoint, flush=True)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        pass
    finally:
        s.stop()


if __name__ == "__main__":
    main()
