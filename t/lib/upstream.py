#!/usr/bin/env python3
"""Scripted fake LLM upstream for the ngx_http_langfuse_module tests.

Inside pytest it runs as a thread (see Upstream).  A test registers a Case
under an id and sends its request with the header ``X-Test-Case: <id>``;
the upstream records the exact request and answers as the case says.

Standalone:
    python3 t/lib/upstream.py --port 8081 --demo

answers POST .../chat/completions like an OpenAI-compatible API (plain
JSON, or SSE when the request says "stream": true).
"""

import argparse
import gzip as _gzip
import itertools
import json
import socket
import struct
import sys
import threading
import time
import zlib
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

CASE_HEADER = "X-Test-Case"

REASONS = {
    200: "OK", 201: "Created", 204: "No Content", 400: "Bad Request",
    401: "Unauthorized", 403: "Forbidden", 404: "Not Found",
    429: "Too Many Requests", 500: "Internal Server Error",
    502: "Bad Gateway", 503: "Service Unavailable", 504: "Gateway Timeout",
}

CYCLE_1_7 = (1, 2, 3, 4, 5, 6, 7)


def _to_bytes(body):
    if body is None:
        return b""
    if isinstance(body, bytes):
        return body
    if isinstance(body, bytearray):
        return bytes(body)
    if isinstance(body, str):
        return body.encode("utf-8")
    return json.dumps(body, ensure_ascii=False).encode("utf-8")


def gzip_bytes(data):
    """Deterministic gzip (mtime 0) so tests can compare bytes."""
    return _gzip.compress(data, compresslevel=6, mtime=0)


def split_sizes(data, sizes):
    """Split data into pieces whose sizes cycle through `sizes`."""
    out = []
    pos = 0
    it = itertools.cycle(sizes)
    while pos < len(data):
        n = next(it)
        out.append(data[pos:pos + n])
        pos += n
    return out


class RecordedRequest:
    """One request as the upstream saw it (body already de-chunked)."""

    def __init__(self, method, path, version, headers, body, chunked, when,
                 case_id):
        self.method = method
        self.path = path
        self.version = version
        self.headers = headers          # list of (name, value), wire order
        self.body = body                # bytes
        self.chunked = chunked          # request body came chunked
        self.time = when
        self.case_id = case_id

    def header(self, name, default=None):
        name = name.lower()
        for k, v in self.headers:
            if k.lower() == name:
                return v
        return default

    def header_all(self, name):
        name = name.lower()
        return [v for k, v in self.headers if k.lower() == name]

    def json(self):
        return json.loads(self.body.decode("utf-8"))

    def __repr__(self):
        return "<RecordedRequest %s %s %d bytes>" % (
            self.method, self.path, len(self.body))


class Case:
    """A scripted response.

    body        bytes, str, or a JSON-able object (dumped with UTF-8 as is)
    status      HTTP status
    headers     extra (name, value) pairs
    content_type  Content-Type value, None for no header
    chunks      how the (possibly gzipped) body is cut into writes:
                None: one write; int n: pieces of n bytes; a list/tuple of
                sizes: cycled; "cycle": sizes 1..7 cycled
    chunk_delay seconds between writes
    framing     "length" (Content-Length), "chunked" (each write its own
                chunk) or "close" (end of body = connection close)
    delay_before_headers, delay_before_body   seconds
    schedule    explicit list of (delay_seconds, bytes) writes; replaces
                body/chunks (with gzip each piece is compressed with a sync
                flush so it can be decoded piece by piece)
    gzip        compress the body and send Content-Encoding: gzip
    reset_after stop after N body bytes (of the wire body), wait a little,
                then close abruptly (SO_LINGER 0: RST)
    cut_after   like reset_after but a graceful close (FIN)
    """

    def __init__(self, body=b"", status=200, reason=None, headers=None,
                 content_type="application/json", chunks=None,
                 chunk_delay=0.002, framing="length",
                 delay_before_headers=0.0, delay_before_body=0.0,
                 schedule=None, gzip=False, reset_after=None, cut_after=None,
                 linger_before_abort=0.05):
        if framing not in ("length", "chunked", "close"):
            raise ValueError("framing must be length, chunked or close")
        self.status = status
        self.reason = reason or REASONS.get(status, "Status")
        self.extra_headers = list(headers or [])
        self.content_type = content_type
        self.chunks = chunks
        self.chunk_delay = chunk_delay
        self.framing = framing
        self.delay_before_headers = delay_before_headers
        self.delay_before_body = delay_before_body
        self.gzip = gzip
        self.reset_after = reset_after
        self.cut_after = cut_after
        self.linger_before_abort = linger_before_abort
        self.requests = []
        self.errors = []                # exceptions while writing
        self.served = threading.Event()  # set after each completed answer
        self._lock = threading.Lock()

        if schedule is not None:
            pieces = [(float(d), _to_bytes(p)) for d, p in schedule]
            self.body = b"".join(p for _, p in pieces)
            if gzip:
                comp = zlib.compressobj(6, zlib.DEFLATED, 31)
                gz = []
                for i, (d, p) in enumerate(pieces):
                    data = comp.compress(p)
                    if i == len(pieces) - 1:
                        data += comp.flush(zlib.Z_FINISH)
                    else:
                        data += comp.flush(zlib.Z_SYNC_FLUSH)
                    gz.append((d, data))
                pieces = gz
        else:
            self.body = _to_bytes(body)
            wire = gzip_bytes(self.body) if gzip else self.body
            if chunks is None:
                parts = [wire] if wire else []
            elif chunks == "cycle":
                parts = split_sizes(wire, CYCLE_1_7)
            elif isinstance(chunks, int):
                parts = split_sizes(wire, (chunks,))
            else:
                parts = split_sizes(wire, tuple(chunks))
            pieces = []
            for i, p in enumerate(parts):
                pieces.append((delay_before_body if i == 0 else chunk_delay,
                               p))
            if not parts and delay_before_body:
                pieces.append((delay_before_body, b""))
        self.pieces = pieces
        # the exact body bytes a client must receive (gzipped if gzip)
        self.wire_body = b"".join(p for _, p in pieces)

    # -- what was sent -----------------------------------------------------
    def head_bytes(self):
        lines = ["HTTP/1.1 %d %s" % (self.status, self.reason)]
        if self.content_type is not None:
            lines.append("Content-Type: " + self.content_type)
        if self.gzip:
            lines.append("Content-Encoding: gzip")
        for k, v in self.extra_headers:
            lines.append("%s: %s" % (k, v))
        if self.framing == "length":
            lines.append("Content-Length: %d" % len(self.wire_body))
        elif self.framing == "chunked":
            lines.append("Transfer-Encoding: chunked")
        lines.append("Connection: close")
        return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")

    @property
    def sent_body(self):
        """Body bytes actually written (shorter than wire_body on a cut)."""
        limit = self.reset_after if self.reset_after is not None \
            else self.cut_after
        if limit is None:
            return self.wire_body
        return self.wire_body[:limit]

    def _record(self, req):
        with self._lock:
            self.requests.append(req)

    # -- serving -------------------------------------------------------------
    def serve(self, sock):
        """Write the scripted answer to a connected socket."""
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        except OSError:
            pass
        if self.delay_before_headers:
            time.sleep(self.delay_before_headers)
        sock.sendall(self.head_bytes())
        limit = self.reset_after if self.reset_after is not None \
            else self.cut_after
        sent = 0
        for delay, piece in self.pieces:
            if delay:
                time.sleep(delay)
            if not piece:
                continue
            if limit is not None and sent + len(piece) >= limit:
                piece = piece[:limit - sent]
                if piece:
                    self._write_piece(sock, piece)
                self._abort(sock, rst=self.reset_after is not None)
                return False
            self._write_piece(sock, piece)
            sent += len(piece)
        if limit is not None:
            # the whole body fit under the limit: abort after it anyway
            self._abort(sock, rst=self.reset_after is not None)
            return False
        if self.framing == "chunked":
            sock.sendall(b"0\r\n\r\n")
        return True

    def _write_piece(self, sock, piece):
        if self.framing == "chunked":
            sock.sendall(b"%x\r\n" % len(piece) + piece + b"\r\n")
        else:
            sock.sendall(piece)

    def _abort(self, sock, rst):
        if self.linger_before_abort:
            time.sleep(self.linger_before_abort)
        if rst:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                            struct.pack("ii", 1, 0))
            sock.close()
        else:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            sock.close()


# ---------------------------------------------------------------------------
# body builders
# ---------------------------------------------------------------------------

def openai_usage(prompt, completion, total=None, cached=None, reasoning=None):
    u = {"prompt_tokens": prompt, "completion_tokens": completion,
         "total_tokens": prompt + completion if total is None else total}
    if cached is not None:
        u["prompt_tokens_details"] = {"cached_tokens": cached}
    if reasoning is not None:
        u["completion_tokens_details"] = {"reasoning_tokens": reasoning}
    return u


def openai_completion(content="Hello!", model="gpt-4o-mini",
                      id="chatcmpl-test-1", finish_reason="stop",
                      usage=None, reasoning_content=None, tool_calls=None,
                      created=1764756000):
    msg = {"role": "assistant", "content": content}
    if reasoning_content is not None:
        msg["reasoning_content"] = reasoning_content
    if tool_calls is not None:
        msg["tool_calls"] = tool_calls
    body = {"id": id, "object": "chat.completion", "created": created,
            "model": model,
            "choices": [{"index": 0, "message": msg, "logprobs": None,
                         "finish_reason": finish_reason}]}
    if usage is not None:
        body["usage"] = usage
    return body


def openai_json(**kw):
    return json.dumps(openai_completion(**kw), ensure_ascii=False).encode()


def openai_error(message, type="invalid_request_error", code=None):
    return json.dumps({"error": {"message": message, "type": type,
                                 "param": None, "code": code}}).encode()


def openai_chunks(texts, model="gpt-4o-mini", id="chatcmpl-stream-1",
                  finish_reason="stop", usage=None, role_chunk=True,
                  usage_null=False, reasoning=None, tool_calls=None,
                  created=1764756000):
    """The chat.completion.chunk objects of an OpenAI stream.

    texts       list of content deltas
    reasoning   list of reasoning_content deltas, sent before the content
    tool_calls  list of delta tool_call fragments (each a dict as OpenAI
                sends them, e.g. {"index":0,"id":..,"type":"function",
                "function":{"name":..,"arguments":""}})
    usage       usage object for a final chunk with "choices": []
                (what stream_options.include_usage produces)
    usage_null  intermediate chunks carry "usage": null
    """
    def chunk(delta, finish=None):
        c = {"id": id, "object": "chat.completion.chunk", "created": created,
             "model": model,
             "choices": [{"index": 0, "delta": delta, "logprobs": None,
                          "finish_reason": finish}]}
        if usage_null:
            c["usage"] = None
        return c

    out = []
    if role_chunk:
        out.append(chunk({"role": "assistant", "content": ""}))
    for r in reasoning or []:
        out.append(chunk({"reasoning_content": r}))
    for t in texts:
        out.append(chunk({"content": t}))
    for tc in tool_calls or []:
        out.append(chunk({"tool_calls": [tc]}))
    out.append(chunk({}, finish_reason))
    if usage is not None:
        out.append({"id": id, "object": "chat.completion.chunk",
                    "created": created, "model": model, "choices": [],
                    "usage": usage})
    return out


def sse(events, done=True, crlf=False, comment=None):
    """Server-sent events: each dict is `data: <json>` then a blank line;
    str/bytes items are written verbatim.  done appends data: [DONE]."""
    parts = []
    if comment is not None:
        parts.append(b": " + _to_bytes(comment) + b"\n\n")
    for ev in events:
        if isinstance(ev, (bytes, str)):
            parts.append(_to_bytes(ev))
        else:
            parts.append(b"data: " + json.dumps(ev, ensure_ascii=False)
                         .encode() + b"\n\n")
    if done:
        parts.append(b"data: [DONE]\n\n")
    data = b"".join(parts)
    if crlf:
        data = data.replace(b"\n", b"\r\n")
    return data


def openai_sse(texts, done=True, crlf=False, **kw):
    return sse(openai_chunks(texts, **kw), done=done, crlf=crlf)


def dashscope_usage(input, output, total=None, cached=None, reasoning=None):
    u = {"input_tokens": input, "output_tokens": output,
         "total_tokens": input + output if total is None else total}
    if cached is not None:
        u["prompt_tokens_details"] = {"cached_tokens": cached}
    if reasoning is not None:
        u["output_tokens_details"] = {"reasoning_tokens": reasoning}
    return u


def dashscope_output(text, finish_reason="stop", result_format="message",
                     reasoning_content=None):
    if result_format == "text":
        return {"text": text, "finish_reason": finish_reason}
    msg = {"role": "assistant", "content": text}
    if reasoning_content is not None:
        msg["reasoning_content"] = reasoning_content
    return {"choices": [{"finish_reason": finish_reason, "message": msg}]}


def dashscope_response(text="你好！", request_id="ds-req-1", usage=None,
                       finish_reason="stop", result_format="message",
                       reasoning_content=None):
    body = {"output": dashscope_output(text, finish_reason, result_format,
                                       reasoning_content),
            "request_id": request_id}
    if usage is not None:
        body["usage"] = usage
    return body


def dashscope_json(**kw):
    return json.dumps(dashscope_response(**kw), ensure_ascii=False).encode()


def dashscope_error(code, message, request_id="ds-err-1"):
    return json.dumps({"code": code, "message": message,
                       "request_id": request_id}, ensure_ascii=False).encode()


def dashscope_event(data, n, event="result", status=200):
    """One DashScope native SSE event."""
    return ("id:%d\nevent:%s\n:HTTP_STATUS/%d\ndata:" % (n, event, status)
            ).encode() + _to_bytes(data) + b"\n\n"


def dashscope_sse(texts, request_id="ds-req-1", incremental=True,
                  usages=None, final_usage=None, result_format="message",
                  finish_reason="stop", reasoning=None):
    """A DashScope native stream.

    texts: the new text of each event; with incremental=False each event
    carries the whole text so far (DashScope's default).  usages: optional
    per-event usage list; final_usage: usage of the last event (default:
    every event carries the last usage given).  reasoning: optional list of
    reasoning deltas, sent as separate events before the text.
    """
    events = []
    so_far = ""
    r_so_far = ""
    n = 0
    steps = [("r", r) for r in (reasoning or [])] + [("t", t) for t in texts]
    for i, (kind, piece) in enumerate(steps):
        last = i == len(steps) - 1
        if kind == "r":
            r_so_far += piece
            text_val = "" if incremental else so_far
            r_val = piece if incremental else r_so_far
        else:
            so_far += piece
            text_val = piece if incremental else so_far
            r_val = "" if incremental else (r_so_far or None)
        fr = finish_reason if last else "null"
        out = dashscope_output(text_val, fr, result_format,
                               r_val if reasoning else None)
        usage = None
        if usages is not None and i < len(usages):
            usage = usages[i]
        if last and final_usage is not None:
            usage = final_usage
        data = {"output": out, "request_id": request_id}
        if usage is not None:
            data["usage"] = usage
        n += 1
        events.append(dashscope_event(json.dumps(data, ensure_ascii=False),
                                      n))
    return b"".join(events)


# ---------------------------------------------------------------------------
# server
# ---------------------------------------------------------------------------

def _read_chunked(rfile):
    out = bytearray()
    while True:
        line = rfile.readline(65537)
        if not line:
            raise ConnectionError("eof in chunked body")
        size = int(line.split(b";", 1)[0].strip() or b"0", 16)
        if size == 0:
            while True:
                t = rfile.readline(65537)
                if t in (b"\r\n", b"\n", b""):
                    break
            return bytes(out)
        out += rfile.read(size)
        rfile.readline(65537)


def read_request_body(handler):
    te = (handler.headers.get("Transfer-Encoding") or "").lower()
    if "chunked" in te:
        return _read_chunked(handler.rfile), True
    cl = handler.headers.get("Content-Length")
    if cl:
        return handler.rfile.read(int(cl)), False
    return b"", False


def _demo_answer(req_json, stream_options):
    """Text for the demo mode: based on the last user message."""
    messages = req_json.get("messages") or []
    last = ""
    for m in messages:
        if isinstance(m, dict) and m.get("role") == "user":
            c = m.get("content")
            if isinstance(c, str):
                last = c
            elif isinstance(c, list):
                last = " ".join(p.get("text", "") for p in c
                                if isinstance(p, dict))
    if last:
        return "Hello from the demo upstream. You said: " + last
    return "Hello from the demo upstream."


def _word_count(messages):
    n = 0
    for m in messages or []:
        if not isinstance(m, dict):
            continue
        c = m.get("content")
        if isinstance(c, str):
            n += len(c.split())
        elif isinstance(c, list):
            for p in c:
                if isinstance(p, dict) and isinstance(p.get("text"), str):
                    n += len(p["text"].split())
    return n


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "fake-llm-upstream"

    def log_message(self, fmt, *args):
        if self.server.owner.verbose:
            sys.stderr.write("upstream: " + (fmt % args) + "\n")

    def handle(self):
        # one request per connection: nginx does not keep upstream
        # connections alive unless told to, and a scripted answer ends
        # with a close anyway
        self.close_connection = True
        try:
            self.handle_one_request()
        except (ConnectionError, OSError):
            pass

    def _serve(self):
        owner = self.server.owner
        body, chunked = read_request_body(self)
        case_id = self.headers.get(CASE_HEADER)
        req = RecordedRequest(self.command, self.path, self.request_version,
                              list(self.headers.items()), body, chunked,
                              time.time(), case_id)
        owner._record(req)
        if case_id is None and owner.demo:
            return self._demo(req)
        case = owner.cases.get(case_id) if case_id is not None else None
        if case is None:
            msg = ("no test case %r registered" % case_id) if case_id \
                else "request has no X-Test-Case header"
            return self._simple(404, openai_error(msg, "harness"))
        case._record(req)
        try:
            case.serve(self.connection)
        except OSError as e:
            case.errors.append(e)
        finally:
            case.served.set()

    do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = do_OPTIONS = _serve
    do_HEAD = _serve

    def _simple(self, status, body, ctype="application/json"):
        head = ("HTTP/1.1 %d %s\r\nContent-Type: %s\r\nContent-Length: %d\r\n"
                "Connection: close\r\n\r\n" % (status, REASONS.get(status, "X"),
                                               ctype, len(body)))
        self.connection.sendall(head.encode() + body)

    def _demo(self, req):
        if req.method != "POST" or not req.path.split("?")[0].endswith(
                "/chat/completions"):
            return self._simple(404, openai_error(
                "demo upstream only serves POST .../chat/completions"))
        try:
            rj = req.json()
            if not isinstance(rj, dict):
                raise ValueError("not an object")
        except ValueError:
            return self._simple(400, openai_error("request body is not JSON"))
        model = rj.get("model") or "demo-model"
        text = _demo_answer(rj, rj.get("stream_options"))
        prompt = _word_count(rj.get("messages"))
        completion = len(text.split())
        usage = openai_usage(prompt, completion)
        rid = "chatcmpl-demo-%d" % int(time.time() * 1000)
        if not rj.get("stream"):
            return self._simple(200, openai_json(
                content=text, model=model, id=rid, usage=usage))
        words = text.split(" ")
        pieces = [w + (" " if i < len(words) - 1 else "")
                  for i, w in enumerate(words)]
        include = bool((rj.get("stream_options") or {}).get("include_usage"))
        events = openai_chunks(pieces, model=model, id=rid,
                               usage=usage if include else None,
                               usage_null=include)
        s = self.connection
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        s.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n"
                  b"Cache-Control: no-cache\r\nTransfer-Encoding: chunked\r\n"
                  b"Connection: close\r\n\r\n")
        for ev in events + ["[DONE]"]:
            payload = (b"data: " + (ev.encode() if isinstance(ev, str) else
                                    json.dumps(ev).encode()) + b"\n\n")
            s.sendall(b"%x\r\n" % len(payload) + payload + b"\r\n")
            time.sleep(0.02)
        s.sendall(b"0\r\n\r\n")


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 256


class Upstream:
    """The fake upstream as a thread: start(), add(case) -> id, stop()."""

    def __init__(self, host="127.0.0.1", port=0, demo=False, verbose=False):
        self.host = host
        self.want_port = port
        self.demo = demo
        self.verbose = verbose
        self.cases = {}
        self._requests = []
        self._lock = threading.Lock()
        self._ids = itertools.count(1)
        self.httpd = None
        self.thread = None

    def start(self):
        self.httpd = _Server((self.host, self.want_port), _Handler)
        self.httpd.owner = self
        self.port = self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever,
                                       kwargs={"poll_interval": 0.05},
                                       name="upstream", daemon=True)
        self.thread.start()
        return self

    def stop(self):
        if self.httpd is not None:
            self.httpd.shutdown()
            self.httpd.server_close()
            self.httpd = None

    @property
    def address(self):
        return "%s:%d" % (self.host, self.port)

    @property
    def url(self):
        return "http://" + self.address

    def add(self, case, case_id=None):
        """Register a case; returns its id for the X-Test-Case header."""
        if case_id is None:
            case_id = "case-%d" % next(self._ids)
        self.cases[case_id] = case
        case.id = case_id
        return case_id

    def reset(self):
        self.cases.clear()
        with self._lock:
            self._requests = []

    def _record(self, req):
        with self._lock:
            self._requests.append(req)

    @property
    def requests(self):
        with self._lock:
            return list(self._requests)

    def wait_requests(self, n, case_id=None, timeout=5.0):
        deadline = time.monotonic() + timeout
        while True:
            reqs = [r for r in self.requests
                    if case_id is None or r.case_id == case_id]
            if len(reqs) >= n:
                return reqs
            if time.monotonic() > deadline:
                raise AssertionError("upstream got %d requests for %r, "
                                     "wanted %d" % (len(reqs), case_id, n))
            time.sleep(0.02)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=8081)
    ap.add_argument("--demo", action="store_true",
                    help="answer .../chat/completions like an OpenAI API")
    ap.add_argument("--verbose", action="store_true")
    args = ap.parse_args(argv)
    up = Upstream(args.host, args.port, demo=args.demo,
                  verbose=args.verbose).start()
    print("upstream listening on http://%s (demo=%s)" % (up.address,
                                                         args.demo),
          flush=True)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        pass
    finally:
        up.stop()


if __name__ == "__main__":
    main()
