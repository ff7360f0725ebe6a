"""Configuration checks (`nginx -t`): clear [emerg] messages for missing
endpoint/keys, unknown values and bad sizes; valid configurations pass."""

import re

import pytest


def server(location_body, server_body=""):
    return ("server { listen 127.0.0.1:@PORT@; %s location / { %s "
            "proxy_pass @UP@; } }" % (server_body, location_body))


ENDPOINT = "langfuse_endpoint @SINK@;"
PK = "langfuse_public_key pk-lf-test;"
SK = "langfuse_secret_key sk-lf-test;"
ON = "langfuse_trace on;"


def emerg_lines(out):
    return [ln for ln in out.splitlines() if "[emerg]" in ln]


def check_fails(nginx_conf, snippet, *needles, any_of=None, **kw):
    rc, out = nginx_conf(snippet, **kw).test_config()
    assert rc != 0, "nginx -t accepted:\n%s\n%s" % (snippet, out)
    lines = emerg_lines(out)
    assert lines, "no [emerg] line:\n" + out
    text = "\n".join(lines)
    for n in needles:
        assert n in text, "%r not in:\n%s" % (n, text)
    if any_of:
        assert any(n in text for n in any_of), "none of %r in:\n%s" % (
            any_of, text)
    return text


def check_ok(nginx_conf, snippet, **kw):
    rc, out = nginx_conf(snippet, **kw).test_config()
    assert rc == 0, out
    assert "syntax is ok" in out and "test is successful" in out
    assert not re.search(r"\[(emerg|alert|crit|error)\]", out), out


@pytest.mark.parametrize("given, missing", [
    (PK + SK, "langfuse_endpoint"),
    (ENDPOINT + SK, "langfuse_public_key"),
    (ENDPOINT + PK, "langfuse_secret_key"),
])
def test_trace_on_without_a_required_setting(nginx_conf, given, missing):
    check_fails(nginx_conf, server(ON + given), missing)


def test_trace_on_with_nothing(nginx_conf):
    check_fails(nginx_conf, server(ON), any_of=[
        "langfuse_endpoint", "langfuse_public_key", "langfuse_secret_key"])


def test_trace_on_at_http_level_without_endpoint(nginx_conf):
    check_fails(nginx_conf, ON + PK + SK + server(""), "langfuse_endpoint")


def test_trace_on_at_server_level_without_keys(nginx_conf):
    check_fails(nginx_conf, server("", ON + ENDPOINT),
                any_of=["langfuse_public_key", "langfuse_secret_key"])


def test_unknown_protocol(nginx_conf):
    # nginx's enum slot says 'invalid value "zipkin" in <file>:<line>'
    check_fails(nginx_conf, server(ON + ENDPOINT + PK + SK +
                                   "langfuse_protocol zipkin;"),
                'invalid value "zipkin"')


def test_bad_trace_flag(nginx_conf):
    check_fails(nginx_conf, server("langfuse_trace maybe;"),
                "langfuse_trace", "maybe")


@pytest.mark.parametrize("directive, value, where", [
    ("langfuse_max_body_size", "12q", "location"),
    ("langfuse_max_body_size", "lots", "location"),
    ("langfuse_queue_size", "abc", "http"),
    ("langfuse_queue_size", "16x", "http"),
    ("langfuse_batch_size", "abc", "http"),
    ("langfuse_batch_size", "-5", "http"),
    ("langfuse_flush_interval", "xyz", "http"),
])
def test_bad_values(nginx_conf, directive, value, where):
    line = "%s %s;" % (directive, value)
    if where == "http":
        snippet = line + server(ON + ENDPOINT + PK + SK)
    else:
        snippet = server(ON + ENDPOINT + PK + SK + line)
    # nginx's own slot handlers word it '"<directive>" directive invalid
    # value'; a custom handler may name the value too
    check_fails(nginx_conf, snippet, directive, flush_interval=None)


@pytest.mark.parametrize("directive, value", [
    ("langfuse_flush_interval", "1s"),
    ("langfuse_batch_size", "10"),
    ("langfuse_queue_size", "1m"),
])
@pytest.mark.parametrize("where", ["server", "location"])
def test_http_only_directives(nginx_conf, directive, value, where):
    line = "%s %s;" % (directive, value)
    if where == "server":
        snippet = server(ON + ENDPOINT + PK + SK, line)
    else:
        snippet = server(ON + ENDPOINT + PK + SK + line)
    check_fails(nginx_conf, snippet, directive, "is not allowed here",
                flush_interval=None)


def test_metadata_needs_key_and_value(nginx_conf):
    check_fails(nginx_conf, server(ON + ENDPOINT + PK + SK +
                                   "langfuse_metadata lonely;"),
                "langfuse_metadata")


def test_duplicate_flush_interval(nginx_conf):
    check_fails(nginx_conf, "langfuse_flush_interval 2s;" + server(""),
                "langfuse_flush_interval", "is duplicate")


def test_valid_full_configuration(nginx_conf):
    check_ok(nginx_conf, """
        langfuse_batch_size 50;
        langfuse_queue_size 4m;
        server {
            listen 127.0.0.1:@PORT@;
            location / {
                langfuse_trace on;
                langfuse_endpoint @SINK@;
                langfuse_public_key pk-lf-test;
                langfuse_secret_key sk-lf-test;
                langfuse_protocol ingestion;
                langfuse_max_body_size 64k;
                langfuse_trace_name "gateway $host";
                langfuse_user_id $http_x_user_id;
                langfuse_session_id $cookie_session;
                langfuse_tags "a,b,$http_x_tag";
                langfuse_environment production;
                langfuse_release 1.0.0;
                langfuse_metadata tenant $http_x_tenant;
                langfuse_metadata region eu;
                add_header X-Trace-Id $langfuse_trace_id always;
                proxy_pass @UP@;
            }
        }""", flush_interval="250ms")


def test_valid_trace_off_needs_nothing(nginx_conf):
    check_ok(nginx_conf, server("langfuse_trace off;"))
    check_ok(nginx_conf, server(""))


def test_valid_settings_inherited_from_http(nginx_conf):
    check_ok(nginx_conf, ENDPOINT + PK + SK + server(
        ON + "langfuse_protocol otlp;"))
    check_ok(nginx_conf, ENDPOINT + PK + SK + ON + server(
        "langfuse_trace off;"))


def test_valid_variable_only_in_other_locations(nginx_conf):
    # $langfuse_trace_id is usable anywhere, even where tracing is off
    check_ok(nginx_conf, server("add_header X-Trace-Id $langfuse_trace_id;"))
