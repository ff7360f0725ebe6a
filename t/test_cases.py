"""The case table: every folder under t/cases/ is one recorded LLM call
(request, the upstream's exact answer, the span attributes it must give),
replayed through nginx as a whole body, in tiny pieces, and compressed.

A case folder holds
  request.json    {"method", "path", "headers"?, "body"}: body is JSON, or a
                  string sent as it is (raw JSON text, or not JSON at all)
  response.txt / response.bin   the upstream's body bytes (uncompressed)
  response.json   {"status", "headers": {...}, "cut_after"?: N}: with
                  cut_after the upstream sends only the first N body bytes
                  (N counts uncompressed bytes; compressed variants flush
                  there so that exactly that prefix decodes) and closes
  expected.json   attribute key -> value (input, output, usage_details and
                  model.parameters as parsed JSON), "absent": [keys],
                  "status": the span status, "completion_start": bool

Variants: whole (one write, Content-Length), pieces (writes of 1..7 bytes,
chunked, a short pause between writes so that nginx reads them apart),
gzip, gzip-pieces; a few cases also deflate(-pieces) and br(-pieces).
Every variant of a case runs at once the first time one of them is
tested; each variant is still its own test.
"""

import json
import os
import threading
import time
import zlib

import pytest

from lfcheck import CST, MS_SLACK, cst_ms, end_ms, start_ms
from upstream import Case

try:
    import brotli
except ImportError:     # python3-brotli (scripts/deps.sh test)
    brotli = None

HERE = os.path.dirname(os.path.abspath(__file__))
CASES_DIR = os.path.join(HERE, "cases")

A = "langfuse.observation."
JSON_ATTRS = (A + "input", A + "output", A + "usage_details",
              A + "model.parameters")
SPECIAL = ("absent", "status", "completion_start")

PIECE_SIZES = (1, 2, 3, 4, 5, 6, 7)
PIECE_DELAY = 0.0005

BASE_VARIANTS = ("whole", "pieces", "gzip", "gzip-pieces")
EXTRA_VARIANTS = ("deflate", "deflate-pieces", "br", "br-pieces")
# one or two of each dialect also go through deflate and brotli
EXTRA_CASES = {
    "openai-chat-sse-usage", "openai-responses-sse",
    "openai-embeddings-base64", "anthropic-sse", "gemini-sse",
    "dashscope-native-sse-cumulative", "unicode-escapes-and-surrogates",
    "sse-cut-mid-event",
}

# Known gaps: a case name marks all its variants, a "case/variant" id
# only that one; each must fail (strict) until the gap is closed.
XFAIL = {}

CONF = """
server {
    listen 127.0.0.1:@PORT@;
    location / { @LF@ proxy_http_version 1.1; proxy_pass @UP@; }
}
server {
    listen 127.0.0.1:@PORT_NOBUF@;
    location / { @LF@ proxy_http_version 1.1; proxy_buffering off;
                 proxy_pass @UP@; }
}
"""


# -- the table ---------------------------------------------------------------

class CaseData:
    def __init__(self, name):
        self.name = name
        d = os.path.join(CASES_DIR, name)
        with open(os.path.join(d, "request.json"), encoding="utf-8") as f:
            self.request = json.load(f)
        for fn in ("response.bin", "response.txt"):
            if os.path.exists(os.path.join(d, fn)):
                with open(os.path.join(d, fn), "rb") as f:
                    self.body = f.read()
                break
        else:
            raise AssertionError("%s: no response.bin or response.txt" % d)
        with open(os.path.join(d, "response.json"), encoding="utf-8") as f:
            self.meta = json.load(f)
        with open(os.path.join(d, "expected.json"), encoding="utf-8") as f:
            self.expected = json.load(f)
        self.cut = self.meta.get("cut_after")

    @property
    def request_bytes(self):
        b = self.request["body"]
        if isinstance(b, str):
            return b.encode("utf-8")
        return json.dumps(b, ensure_ascii=False).encode("utf-8")


def _case_names():
    if not os.path.isdir(CASES_DIR):
        return []
    return sorted(n for n in os.listdir(CASES_DIR)
                  if os.path.exists(os.path.join(CASES_DIR, n,
                                                 "expected.json")))


def _variants(name):
    return BASE_VARIANTS + (EXTRA_VARIANTS if name in EXTRA_CASES else ())


def _params():
    out = []
    for name in _case_names():
        for v in _variants(name):
            marks = []
            reason = XFAIL.get("%s/%s" % (name, v)) or XFAIL.get(name)
            if reason:
                marks.append(pytest.mark.xfail(strict=True, reason=reason))
            out.append(pytest.param(name, v, id="%s/%s" % (name, v),
                                    marks=marks))
    return out


# -- compression ---------------------------------------------------------------

def compress(data, encoding, cut=None):
    """(wire bytes, wire offset of the cut or None).  With a cut, the
    compressor flushes there, so the bytes before it decode to exactly
    data[:cut]."""
    segments = [data] if cut is None else [data[:cut], data[cut:]]
    out = bytearray()
    wire_cut = None
    if encoding == "br":
        if brotli is None:
            pytest.skip("python3-brotli is not installed")
        c = brotli.Compressor()
        for i, seg in enumerate(segments):
            out += c.process(seg)
            if i < len(segments) - 1:
                out += c.flush()
                wire_cut = len(out)
        out += c.finish()
        return bytes(out), wire_cut
    # gzip (RFC 1952) or deflate as HTTP means it: the zlib format
    wbits = 31 if encoding == "gzip" else 15
    c = zlib.compressobj(6, zlib.DEFLATED, wbits)
    for i, seg in enumerate(segments):
        out += c.compress(seg)
        if i < len(segments) - 1:
            out += c.flush(zlib.Z_SYNC_FLUSH)
            wire_cut = len(out)
    out += c.flush(zlib.Z_FINISH)
    return bytes(out), wire_cut


def make_case(cd, variant):
    enc = None if variant in ("whole", "pieces") else variant.split("-")[0]
    pieces = variant.endswith("pieces")
    if enc is None:
        wire, wire_cut = cd.body, cd.cut
    else:
        wire, wire_cut = compress(cd.body, enc, cd.cut)
    ctype = None
    headers = []
    for k, v in cd.meta.get("headers", {}).items():
        if k.lower() == "content-type":
            ctype = v
        else:
            headers.append((k, v))
    if enc is not None:
        headers.append(("Content-Encoding", enc))
    kw = {"body": wire, "status": cd.meta.get("status", 200),
          "content_type": ctype, "headers": headers}
    if pieces:
        kw.update(chunks=PIECE_SIZES, framing="chunked",
                  chunk_delay=PIECE_DELAY)
    if wire_cut is not None:
        kw["cut_after"] = wire_cut
    return Case(**kw)


# -- running -------------------------------------------------------------------------

class Outcome:
    def __init__(self, variant):
        self.variant = variant
        self.case = None
        self.response = None
        self.window = None
        self.error = None
        self.spans = []


_RESULTS = {}


@pytest.fixture(scope="module")
def gw(module_nginx):
    return module_nginx(CONF)


def _send(gw, upstream, cd, out):
    try:
        out.case = make_case(cd, out.variant)
        cid = upstream.add(out.case, "%s/%s" % (cd.name, out.variant))
        hdrs = {"Content-Type": "application/json"}
        hdrs.update(cd.request.get("headers") or {})
        port = "PORT_NOBUF" if out.variant.endswith("pieces") else "PORT"
        t0 = time.time()
        out.response = gw.request(cd.request["path"],
                                  cd.request.get("method", "POST"),
                                  cd.request_bytes, hdrs, port=port,
                                  case=cid)
        out.window = (t0, time.time())
    except pytest.skip.Exception as e:
        out.error = e
    except Exception as e:     # reported by the variant's own test
        out.error = e


def run_case(gw, upstream, sink, name):
    """All variants of a case at once; the spans of each, after a pause
    long enough for a duplicate to show up."""
    if name in _RESULTS:
        return _RESULTS[name]
    cd = CaseData(name)
    if cd.cut is not None:
        gw.allow_errors(r"upstream prematurely closed connection")
    outs = {v: Outcome(v) for v in _variants(name)}
    threads = [threading.Thread(target=_send, args=(gw, upstream, cd, o))
               for o in outs.values()]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    ids = [o.response.trace_id for o in outs.values()
           if o.response is not None and o.response.trace_id]
    deadline = time.monotonic() + 5.0 * gw.slow
    while time.monotonic() < deadline:
        got = {s.get("traceId") for s in sink.spans()}
        if all(t in got for t in ids):
            break
        time.sleep(0.05)
    time.sleep(0.3 * gw.slow)
    spans = sink.spans()
    for o in outs.values():
        if o.response is not None and o.response.trace_id:
            o.spans = [s for s in spans
                       if s.get("traceId") == o.response.trace_id]
    _RESULTS[name] = (cd, outs)
    return _RESULTS[name]


# -- comparing -------------------------------------------------------------------------

def same(a, b):
    """JSON equality that keeps true apart from 1 (numbers compare by
    value: 1 == 1.0)."""
    if isinstance(a, bool) or isinstance(b, bool):
        return type(a) is type(b) and a == b
    num = (int, float)
    if isinstance(a, num) and isinstance(b, num):
        return a == b
    if type(a) is not type(b):
        return False
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    if isinstance(a, list):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))
    return a == b


def _json_or_none(s):
    if not isinstance(s, str):
        return None
    try:
        return json.loads(s)
    except ValueError:
        return None


def _same_json_text(want, got):
    """Two strings holding JSON: equal as JSON (spacing is free)."""
    w, g = _json_or_none(want), _json_or_none(got)
    if w is not None and g is not None:
        return same(w, g)
    return want == got


def same_params(want, got):
    if not isinstance(want, dict) or not isinstance(got, dict) \
            or want.keys() != got.keys():
        return False
    for k, w in want.items():
        g = got[k]
        if isinstance(w, str) and w[:1] in ("[", "{"):
            # a non-scalar parameter: its JSON text, as a string
            if not isinstance(g, str) or not _same_json_text(w, g):
                return False
        elif not same(w, g):
            return False
    return True


def same_output(want, got):
    if not (isinstance(want, dict) and isinstance(got, dict)):
        return same(want, got)
    wt, gt = want.get("tool_calls"), got.get("tool_calls")
    if not (isinstance(wt, list) and isinstance(gt, list)
            and len(wt) == len(gt)):
        return same(want, got)
    got = dict(got)
    got["tool_calls"] = []
    for w, g in zip(wt, gt):
        try:
            wa, ga = w["function"]["arguments"], g["function"]["arguments"]
        except (KeyError, TypeError):
            got["tool_calls"].append(g)
            continue
        if isinstance(ga, str) and _same_json_text(wa, ga):
            # arguments are JSON text: spacing inside is free
            g = json.loads(json.dumps(g))
            g["function"]["arguments"] = wa
        got["tool_calls"].append(g)
    return same(want, got)


def attribute_problems(cd, span):
    attrs = span["attributes"]
    problems = []
    for key, want in cd.expected.items():
        if key in SPECIAL:
            continue
        if key not in attrs:
            problems.append("%s missing (want %s)" % (
                key, json.dumps(want, ensure_ascii=False)))
            continue
        got = attrs[key]
        if key in JSON_ATTRS:
            parsed = _json_or_none(got)
            if parsed is None and got != "null":
                problems.append("%s is not JSON text: %r" % (key, got))
                continue
            if key.endswith("model.parameters"):
                ok = same_params(want, parsed)
            elif key.endswith(".output"):
                ok = same_output(want, parsed)
            else:
                ok = same(want, parsed)
        else:
            ok = got == want
        if not ok:
            problems.append("%s\n    want %s\n    got  %s" % (
                key, json.dumps(want, ensure_ascii=False),
                got if isinstance(got, str) else json.dumps(got)))
    for key in cd.expected.get("absent", []):
        if key in attrs:
            problems.append("%s must be absent, is %r" % (key, attrs[key]))
    want_status = cd.expected.get("status", {"code": 0})
    if span.get("status") != want_status:
        problems.append("span status %r, want %r" % (span.get("status"),
                                                     want_status))
    if cd.expected.get("completion_start"):
        if CST not in attrs:
            problems.append("%s missing" % CST)
        else:
            c, s, e = cst_ms(span), start_ms(span), end_ms(span)
            if not s - MS_SLACK <= c <= e + MS_SLACK:
                problems.append("completion start %.0f not within start "
                                "%.0f .. end %.0f" % (c, s, e))
    elif CST in attrs:
        problems.append("%s must be absent, is %r" % (CST, attrs[CST]))
    if int(span["startTimeUnixNano"]) > int(span["endTimeUnixNano"]):
        problems.append("span starts after it ends")
    return problems


# -- the test ----------------------------------------------------------------------------

@pytest.mark.parametrize("name, variant", _params())
def test_case(gw, upstream, sink, name, variant):
    cd, outs = run_case(gw, upstream, sink, name)
    o = outs[variant]
    if isinstance(o.error, pytest.skip.Exception):
        pytest.skip(str(o.error))
    assert o.error is None, "%s/%s: %r" % (name, variant, o.error)
    r, case = o.response, o.case

    # the client got the upstream's bytes, untouched
    assert r.status == cd.meta.get("status", 200), r
    assert r.body == case.sent_body, (
        "client body differs from what the upstream sent (%d vs %d bytes)"
        % (len(r.body), len(case.sent_body)))
    if cd.cut is None:
        assert r.complete, r
    assert r.trace_id, "no X-Trace-Id header"

    # exactly one span, with exactly the expected attributes
    assert len(o.spans) == 1, "%d spans for trace %s" % (len(o.spans),
                                                         r.trace_id)
    problems = attribute_problems(cd, o.spans[0])
    assert not problems, "%s/%s:\n  %s" % (name, variant,
                                          "\n  ".join(problems))


def test_table_is_complete():
    """Every case folder is well formed (a typo must not drop a case)."""
    names = _case_names()
    assert names, "no cases under %s" % CASES_DIR
    for n in os.listdir(CASES_DIR):
        d = os.path.join(CASES_DIR, n)
        if os.path.isdir(d):
            assert n in names, "%s has no expected.json" % d
    for n in names:
        cd = CaseData(n)
        assert cd.request.get("path", "").startswith("/"), n
        assert isinstance(cd.meta.get("status"), int), n
        assert "status" in cd.expected, n
        assert isinstance(cd.expected.get("completion_start"), bool), n
        unknown = set(cd.expected) - set(SPECIAL)
        assert all(k.startswith("langfuse.") for k in unknown), n
        assert not set(cd.expected.get("absent", [])) & unknown, n
        if cd.cut is not None:
            assert 0 < cd.cut < len(cd.body), n
