"""Assertion helpers shared by the module tests: span envelope checks,
JSON-valued attributes, time stamps, expected usage."""

import json
import re
from datetime import datetime, timezone

HEX32 = re.compile(r"^[0-9a-f]{32}$")
HEX16 = re.compile(r"^[0-9a-f]{16}$")
UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-"
                  r"[0-9a-f]{12}$", re.I)
# a JSON-quoted ISO-8601 UTC time with milliseconds
CST_RE = re.compile(r'^"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z"$')
ISO_RE = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{1,9})?Z$")

A = "langfuse.observation."
TYPE = A + "type"
MODEL = A + "model.name"
PARAMS = A + "model.parameters"
INPUT = A + "input"
OUTPUT = A + "output"
USAGE = A + "usage_details"
CST = A + "completion_start_time"
LEVEL = A + "level"
STATUS_MSG = A + "status_message"
META = A + "metadata."
TRACE_NAME = "langfuse.trace.name"
TAGS = "langfuse.trace.tags"
TMETA = "langfuse.trace.metadata."

# slack for millisecond rounding of nginx's cached clock
MS_SLACK = 1.0
# how far span times may be outside the client's own clock window
WINDOW_SLACK = 0.05


def iso_to_ms(s):
    """'2026-12-03T10:00:00.350Z' (quoted or not) -> epoch milliseconds."""
    s = s.strip('"')
    m = re.match(r"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.(\d+))?Z$", s)
    assert m, "not an ISO-8601 UTC time: %r" % s
    base = datetime.strptime(m.group(1), "%Y-%m-%dT%H:%M:%S").replace(
        tzinfo=timezone.utc).timestamp()
    frac = float("0." + m.group(2)) if m.group(2) else 0.0
    return (base + frac) * 1000.0


def jattr(span, key):
    """A JSON-text attribute, parsed (AssertionError if absent/not JSON)."""
    attrs = span["attributes"]
    assert key in attrs, "span has no %s; attributes: %s" % (
        key, sorted(attrs))
    v = attrs[key]
    assert isinstance(v, str), "%s is not a string: %r" % (key, v)
    try:
        return json.loads(v)
    except ValueError:
        raise AssertionError("%s is not JSON text: %r" % (key, v))


def start_ms(span):
    return int(span["startTimeUnixNano"]) / 1e6


def end_ms(span):
    return int(span["endTimeUnixNano"]) / 1e6


def cst_ms(span):
    v = span["attributes"].get(CST)
    assert v is not None, "span has no %s" % CST
    assert CST_RE.match(v), "%s is not a quoted ISO time with ms: %r" % (
        CST, v)
    return iso_to_ms(v)


def check_envelope(span, trace_id=None, name="chat.completions",
                   window=None, error=None):
    """Span fields common to every test.  window: (t0, t1) client clock
    (time.time()) around the request; error: expected status message when
    the status must be an error."""
    assert HEX32.match(span.get("traceId") or ""), span.get("traceId")
    assert HEX16.match(span.get("spanId") or ""), span.get("spanId")
    assert span["traceId"] != "0" * 32 and span["spanId"] != "0" * 16
    if trace_id is not None:
        assert span["traceId"] == trace_id
    assert span.get("name") == name
    assert span.get("kind") == 3
    for k in ("startTimeUnixNano", "endTimeUnixNano"):
        assert isinstance(span.get(k), str) and span[k].isdigit(), \
            "%s must be a decimal string: %r" % (k, span.get(k))
    assert int(span["startTimeUnixNano"]) <= int(span["endTimeUnixNano"])
    if window is not None:
        t0, t1 = window
        assert t0 - WINDOW_SLACK <= int(span["startTimeUnixNano"]) / 1e9 \
            <= t1 + WINDOW_SLACK
        assert int(span["endTimeUnixNano"]) / 1e9 <= t1 + WINDOW_SLACK
    status = span.get("status") or {}
    if error is None:
        assert status.get("code", 0) == 0 and not status.get("message"), \
            "status should be unset/ok: %r" % status
    else:
        assert status == {"code": 2, "message": error}, status
    # every attribute value is a string except the tag array
    for a in span["attributes_raw"]:
        kind = next(iter(a.get("value") or {}), None)
        want = "arrayValue" if a["key"] == TAGS else "stringValue"
        assert kind == want, "%s is a %s, want %s" % (a["key"], kind, want)
    keys = [a["key"] for a in span["attributes_raw"]]
    assert len(keys) == len(set(keys)), "duplicate attribute keys: %r" % keys
    assert span["attributes"].get(TYPE) == "generation"
    assert span["attributes"].get(TRACE_NAME) == name


def check_cst(span, min_after_start_ms=0.0):
    """completion_start_time within [start + min, end]; returns cst - start
    in ms."""
    c = cst_ms(span)
    s, e = start_ms(span), end_ms(span)
    assert c >= s + min_after_start_ms - MS_SLACK, \
        "completion start %.1f ms after start, want >= %.1f" % (
            c - s, min_after_start_ms)
    assert c <= e + MS_SLACK, "completion start after end (%.1f > %.1f)" % (
        c, e)
    return c - s


def usage(input, output, total, cached=None, reasoning=None):
    """Expected usage_details (Langfuse's disjoint keys) from the provider's
    numbers: input excludes cached, output excludes reasoning."""
    d = {"input": input - (cached or 0), "output": output - (reasoning or 0),
         "total": total}
    if cached is not None:
        d["input_cached_tokens"] = cached
    if reasoning is not None:
        d["output_reasoning_tokens"] = reasoning
    return d


def assistant(content, reasoning=None, tool_calls=None):
    d = {"role": "assistant", "content": content}
    if reasoning is not None:
        d["reasoning_content"] = reasoning
    if tool_calls is not None:
        d["tool_calls"] = tool_calls
    return d


def lf_keys(span):
    """Attribute keys that the spec defines (langfuse.*, user.id,
    session.id)."""
    return {k for k in span["attributes"]
            if k.startswith("langfuse.") or k in ("user.id", "session.id")}


def meta(span):
    """langfuse.observation.metadata.* as {name: value}."""
    return {k[len(META):]: v for k, v in span["attributes"].items()
            if k.startswith(META)}


def trace_meta(span):
    return {k[len(TMETA):]: v for k, v in span["attributes"].items()
            if k.startswith(TMETA)}


# ---------------------------------------------------------------------------
# one traced chat completion, the unit most delivery and fault tests count
# ---------------------------------------------------------------------------

CHAT_PATH = "/v1/chat/completions"
CHAT_REQ = {"model": "gpt-4o",
            "messages": [{"role": "user", "content": "hi"}]}

# a server whose every location traces to the fake Langfuse
TRACED = """
server {
    listen 127.0.0.1:@PORT@;
    location / { @LF@ proxy_pass @UP@; }
}
"""


def send_chat(ng, upstream, text="ok"):
    """One chat completion through nginx; the client must get exactly the
    upstream's bytes.  Returns the trace id."""
    from upstream import Case, openai_json
    case = Case(body=openai_json(content=text))
    r = ng.post(CHAT_PATH, CHAT_REQ, case=upstream.add(case))
    assert r.status == 200 and r.body == case.wire_body
    return r.trace_id
