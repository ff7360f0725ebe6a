"""Trace-level directives: langfuse_trace_name, user/session ids, tags,
environment, release, metadata - with nginx variables, empty values,
the request's own "user", inheritance, and the ingestion protocol."""

import time

import pytest

from lfcheck import TAGS, TRACE_NAME, check_envelope, meta, trace_meta
from upstream import Case, dashscope_json, openai_json

PATH = "/v1/chat/completions"
NATIVE = "/api/v1/services/aigc/text-generation/generation"
MESSAGES = [{"role": "user", "content": "hello"}]
REQ = {"model": "gpt-4o", "messages": MESSAGES}

DIRECTIVES = """
    langfuse_trace_name my-app.chat;
    langfuse_user_id $http_x_user_id;
    langfuse_session_id $http_x_session_id;
    langfuse_tags "prod,chat,beta";
    langfuse_environment staging;
    langfuse_release v1.2.3;
    langfuse_metadata tenant $http_x_tenant;
    langfuse_metadata region eu-west-1;
"""

CONF = """
server {
    listen 127.0.0.1:@PORT@;
    location / { @LF@ %(d)s proxy_pass @UP@; }
    location /legacy/ { @LF@ %(d)s langfuse_protocol ingestion;
                        proxy_pass @UP@/; }
    location /dyn/ {
        @LF@
        langfuse_trace_name $http_x_trace_name;
        langfuse_tags $http_x_tags;
        langfuse_environment $http_x_env;
        langfuse_release $http_x_release;
        proxy_pass @UP@/;
    }
}
server {
    listen 127.0.0.1:@PORT_INH@;
    @LF@
    langfuse_environment production;
    langfuse_release 2.0.0;
    langfuse_tags "a,b";
    langfuse_trace_name inherited-name;
    langfuse_metadata team search;
    location / { proxy_pass @UP@; }
    location /dev/ { langfuse_environment dev; proxy_pass @UP@/; }
}
""" % {"d": DIRECTIVES}


@pytest.fixture(scope="module")
def gw(module_nginx):
    return module_nginx(CONF)


def send(gw, upstream, path=PATH, port="PORT", headers=None, req=REQ,
         body=None):
    case = Case(body=body or openai_json(content="ok"))
    cid = upstream.add(case)
    t0 = time.time()
    r = gw.post(path, req, case=cid, port=port, headers=headers)
    r.window = (t0, time.time())
    assert r.status == 200 and r.body == case.wire_body
    return r


def test_all_directives_with_variables(gw, upstream, sink):
    r = send(gw, upstream, headers={"X-User-Id": "u-123",
                                    "X-Session-Id": "s-456",
                                    "X-Tenant": "acme"})
    sp = sink.span_for(r.trace_id)
    check_envelope(sp, r.trace_id, "my-app.chat", r.window)
    a = sp["attributes"]
    assert a[TRACE_NAME] == "my-app.chat"
    assert a["user.id"] == "u-123"
    assert a["session.id"] == "s-456"
    assert a[TAGS] == ["prod", "chat", "beta"]
    assert a["langfuse.environment"] == "staging"
    assert a["langfuse.release"] == "v1.2.3"
    assert trace_meta(sp) == {"tenant": "acme", "region": "eu-west-1"}
    assert meta(sp)["http_status"] == "200"


def test_empty_variables_mean_not_set(gw, upstream, sink):
    r = send(gw, upstream)
    sp = sink.span_for(r.trace_id)
    a = sp["attributes"]
    assert "user.id" not in a and "session.id" not in a
    assert trace_meta(sp) == {"region": "eu-west-1"}
    assert a[TAGS] == ["prod", "chat", "beta"]


def test_user_falls_back_to_request_user(gw, upstream, sink):
    r = send(gw, upstream, req=dict(REQ, user="alice"))
    assert sink.span_for(r.trace_id)["attributes"]["user.id"] == "alice"
    r = send(gw, upstream, req=dict(REQ, user="alice"),
             headers={"X-User-Id": "bob"})
    assert sink.span_for(r.trace_id)["attributes"]["user.id"] == "bob"


def test_trace_name_applies_to_dashscope_too(gw, upstream, sink):
    req = {"model": "qwen-plus", "input": {"messages": MESSAGES}}
    r = send(gw, upstream, NATIVE, req=req, body=dashscope_json(text="ok"))
    sp = sink.span_for(r.trace_id)
    check_envelope(sp, r.trace_id, "my-app.chat", r.window)


def test_dynamic_values_from_headers(gw, upstream, sink):
    r = send(gw, upstream, "/dyn" + PATH, headers={
        "X-Trace-Name": "from-header", "X-Tags": "x,y",
        "X-Env": "canary", "X-Release": "abc123"})
    sp = sink.span_for(r.trace_id)
    check_envelope(sp, r.trace_id, "from-header", r.window)
    a = sp["attributes"]
    assert a[TAGS] == ["x", "y"]
    assert a["langfuse.environment"] == "canary"
    assert a["langfuse.release"] == "abc123"


def test_dynamic_values_empty_fall_back_to_defaults(gw, upstream, sink):
    r = send(gw, upstream, "/dyn" + PATH)
    sp = sink.span_for(r.trace_id)
    check_envelope(sp, r.trace_id, "chat.completions", r.window)
    a = sp["attributes"]
    for k in (TAGS, "langfuse.environment", "langfuse.release", "user.id",
              "session.id"):
        assert k not in a, k
    assert trace_meta(sp) == {}


def test_single_tag(gw, upstream, sink):
    r = send(gw, upstream, "/dyn" + PATH, headers={"X-Tags": "solo"})
    assert sink.span_for(r.trace_id)["attributes"][TAGS] == ["solo"]


def test_server_level_inheritance_and_override(gw, upstream, sink):
    r = send(gw, upstream, port="PORT_INH")
    sp = sink.span_for(r.trace_id)
    check_envelope(sp, r.trace_id, "inherited-name", r.window)
    a = sp["attributes"]
    assert a["langfuse.environment"] == "production"
    assert a["langfuse.release"] == "2.0.0"
    assert a[TAGS] == ["a", "b"]
    assert trace_meta(sp) == {"team": "search"}
    r = send(gw, upstream, "/dev" + PATH, port="PORT_INH")
    a = sink.span_for(r.trace_id)["attributes"]
    assert a["langfuse.environment"] == "dev"
    assert a["langfuse.release"] == "2.0.0"
    assert a[TAGS] == ["a", "b"]


def test_ingestion_trace_create_carries_trace_attributes(gw, upstream, sink):
    r = send(gw, upstream, "/legacy" + PATH, headers={
        "X-User-Id": "u-9", "X-Session-Id": "s-9", "X-Tenant": "globex"})
    t = sink.trace_for(r.trace_id)["body"]
    assert t["name"] == "my-app.chat"
    assert t["userId"] == "u-9"
    assert t["sessionId"] == "s-9"
    assert t["tags"] == ["prod", "chat", "beta"]
    assert t["environment"] == "staging"
    assert t["release"] == "v1.2.3"
    assert t["metadata"] == {"tenant": "globex", "region": "eu-west-1"}
    g = sink.generation_for(r.trace_id)["body"]
    assert g["name"] == "my-app.chat"
