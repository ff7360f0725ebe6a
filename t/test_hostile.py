"""Odd and hostile inputs found by trying to break the gateway: what is
not an LLM call is not traced, HEAD is no cut stream, a server's answer
cannot forge log lines, bad settings fail nginx -t, counts never wrap."""

import json
import re

import pytest

from lfcheck import CHAT_PATH, CHAT_REQ, OUTPUT, TRACED, USAGE, jattr
from upstream import Case, openai_json

PATH, REQ, CONF = CHAT_PATH, CHAT_REQ, TRACED


def test_model_list_is_not_traced(nginx, upstream, sink):
    ng = nginx(CONF)
    body = json.dumps({"object": "list", "data": [
        {"id": "gpt-4o", "object": "model"}]}).encode()
    case = Case(body=body)
    r = ng.request("/v1/models", case=upstream.add(case))
    assert r.status == 200 and r.body == body

    # a real call after it is traced, and is the only span
    case = Case(body=openai_json(content="yes"))
    t = ng.post(PATH, REQ, case=upstream.add(case)).trace_id
    sink.assert_exactly_once([t])
    assert [s["traceId"] for s in sink.spans()] == [t]


def test_head_is_complete_without_output(nginx, upstream, sink):
    ng = nginx(CONF)
    case = Case(body=openai_json(content="unseen"))
    r = ng.request(PATH, method="HEAD", case=upstream.add(case))
    assert r.status == 200 and r.body == b""

    attrs = sink.span_for(r.trace_id)["attributes"]
    assert "langfuse.observation.level" not in attrs
    assert OUTPUT not in attrs


def test_usage_sum_does_not_wrap(nginx, upstream, sink):
    ng = nginx(CONF)
    big = 2 ** 63 - 1
    body = ('{"choices":[{"message":{"content":"x"}}],"usage":'
            '{"prompt_tokens":%d,"completion_tokens":%d}}' % (big, big))
    case = Case(body=body.encode())
    r = ng.post(PATH, REQ, case=upstream.add(case))
    usage = jattr(sink.span_for(r.trace_id), USAGE)
    assert usage == {"input": big, "output": big, "total": big}


def test_langfuse_answer_cannot_forge_log_lines(nginx, upstream, sink):
    ng = nginx(CONF)
    ng.allow_errors(r"failed: refused, events dropped, status 400")
    # the quoted answer holds the text "[alert]", inside our own line
    ng.caused_alerts(r"\[error\] .* response \"\{\"message\":\"bad\"\}")
    sink.fail(400, count=1)
    sink.fail_body = (b'{"message":"bad"}\n2026/12/03 00:00:00 [alert] '
                      b'1#1: forged\x1b[31m')

    case = Case(body=openai_json(content="x"))
    ng.post(PATH, REQ, case=upstream.add(case))
    sink.wait_for_requests(1)
    ng.stop()

    log = ng.read_error_log()
    assert re.search(r'response "\{"message":"bad"\} 2026/12/03 00:00:00 '
                     r'\[alert\] 1#1: forged \[31m"', log), log
    assert not any(ln.startswith("2026/12/03 00:00:00")
                   for ln in log.splitlines())
    assert "\x1b" not in log


@pytest.mark.parametrize("directive,message", [
    ("langfuse_max_body_size 0;", "is too small, at least 1k is needed"),
    ("langfuse_endpoint 'http://a b';", "invalid \"langfuse_endpoint\""),
    ("langfuse_endpoint http://h/?x=1#f;", "invalid \"langfuse_endpoint\""),
    ("langfuse_endpoint http://127.0.0.1:99999;",
     "invalid \"langfuse_endpoint\""),
])
def test_bad_settings_fail_the_config(nginx_conf, directive, message):
    if "endpoint" not in directive:
        directive += " langfuse_endpoint @SINK@;"
    rc, out = nginx_conf("""
server {
    listen 127.0.0.1:@PORT@;
    location / {
        langfuse_trace on; langfuse_public_key pk-lf-test;
        langfuse_secret_key sk-lf-test; %s
        proxy_pass @UP@;
    }
}
""" % directive).test_config()
    assert rc != 0
    assert "[emerg]" in out and message in out, out


def test_oversized_event_is_trimmed_not_dropped(nginx, upstream, sink):
    ng = nginx(CONF)
    calls = [{"id": "call_%d" % i, "type": "function",
              "function": {"name": "f%d" % i,
                           "arguments": "a" * 300000}}
             for i in range(16)]
    body = json.dumps({
        "choices": [{"message": {"role": "assistant", "content": None,
                                 "tool_calls": calls},
                     "finish_reason": "tool_calls"}],
        "usage": {"prompt_tokens": 5, "completion_tokens": 7,
                  "total_tokens": 12}}).encode()
    case = Case(body=body)
    r = ng.post(PATH, REQ, case=upstream.add(case))
    assert r.status == 200 and r.body == body

    sp = sink.span_for(r.trace_id)
    attrs = sp["attributes"]
    assert attrs["langfuse.observation.metadata.truncated"] == "output"
    assert jattr(sp, USAGE) == {"input": 5, "output": 7, "total": 12}

    out = jattr(sp, OUTPUT)
    assert [c["function"]["name"] for c in out["tool_calls"]] == [
        "f%d" % i for i in range(16)]
    for c in out["tool_calls"]:
        args = c["function"]["arguments"]
        assert 0 < len(args) < 300000 and set(args) == {"a"}
    assert sum(len(str(v)) for v in attrs.values()) < 1024 * 1024


def test_error_page_into_untraced_location_keeps_the_trace(
        nginx, upstream, sink):
    ng = nginx("""
server {
    listen 127.0.0.1:@PORT@;
    location / {
        @LF@
        proxy_intercept_errors on;
        error_page 500 /fallback;
        proxy_pass @UP@;
    }
    location = /fallback {
        default_type text/plain;
        add_header X-Trace-Id $langfuse_trace_id always;
        return 200 "sorry";
    }
}
""")
    case = Case(status=500, body=b'{"error":{"message":"boom"}}')
    r = ng.post(PATH, REQ, case=upstream.add(case))
    assert r.status == 500 and r.body == b"sorry"

    attrs = sink.span_for(r.trace_id)["attributes"]
    assert attrs["langfuse.observation.level"] == "ERROR"
    assert attrs["langfuse.observation.status_message"] == \
        "upstream status 500"
    assert json.loads(attrs["langfuse.observation.input"]) == \
        REQ["messages"]
    assert json.loads(attrs[OUTPUT]) == "sorry"
