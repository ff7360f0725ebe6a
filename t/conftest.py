"""pytest fixtures for the ngx_http_langfuse_module integration tests.

A test in five lines:

    def test_hello(nginx, upstream, sink):
        ng = nginx("server { listen 127.0.0.1:@PORT@;"
                   " location / { @LF@ proxy_pass @UP@; } }")
        cid = upstream.add(Case(body=openai_json(content="Hi")))
        r = ng.post("/v1/chat/completions", {"model": "m", "messages": []},
                    case=cid)
        assert jattr(sink.span_for(r.trace_id), OUTPUT) == {
            "role": "assistant", "content": "Hi"}

Fixtures
  upstream / sink / sink2     the fake LLM and fake Langfuse servers
                              (module-scoped threads, cleared per test)
  nginx(snippet, **kw)        start an nginx for this test (skips when the
                              module is not built, unless module=False)
  module_nginx(snippet, **kw) same, shared by a whole test module
  nginx_conf(snippet, **kw)   an unstarted Nginx (for .test_config())
Every started nginx has its error.log checked after each test: no
[alert]/[emerg]/[crit]/sanitizer lines, no [error] unless allowed with
ng.allow_errors(regex).
"""

import os
import sys

import pytest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                "lib"))

import harness  # noqa: E402
from harness import Nginx  # noqa: E402
from sink import Sink  # noqa: E402
from upstream import Upstream  # noqa: E402

_live = []      # Nginx instances whose logs are checked after each test


def pytest_report_header(config):
    return ["nginx: %s" % harness.NGINX_BIN,
            "langfuse module: %s (%s)" % (
                harness.MODULE_PATH,
                "present" if os.path.exists(harness.MODULE_PATH)
                else "MISSING: module tests will skip"),
            "memcheck: %s" % (harness.MEMCHECK or "none")]


def pytest_terminal_summary(terminalreporter):
    reason = harness.module_missing_reason()
    skipped = len(terminalreporter.stats.get("skipped", []))
    if reason and skipped:
        terminalreporter.write_line("%d test(s) skipped: %s" % (skipped,
                                                               reason))


def _skip_if_unusable(module):
    if module:
        reason = harness.module_missing_reason()
        if reason:
            pytest.skip(reason)
    reason = harness.memcheck_unavailable_reason()
    if reason:
        pytest.skip(reason)


@pytest.fixture(scope="session")
def module_path():
    return harness.MODULE_PATH


@pytest.fixture
def require_module():
    reason = harness.module_missing_reason()
    if reason:
        pytest.skip(reason)


# -- fake servers ------------------------------------------------------------

@pytest.fixture(scope="module")
def upstream_server():
    up = Upstream().start()
    yield up
    up.stop()


@pytest.fixture
def upstream(upstream_server):
    upstream_server.reset()
    yield upstream_server


def _sink_teardown(s):
    dups = s.duplicate_deliveries()
    s.stop()
    assert not dups, "items delivered to the sink more than once: %r" % dups


@pytest.fixture(scope="module")
def sink_server():
    s = Sink().start()
    yield s
    _sink_teardown(s)


@pytest.fixture(scope="module")
def sink2_server():
    s = Sink().start()
    yield s
    _sink_teardown(s)


@pytest.fixture
def sink(sink_server):
    sink_server.clear()
    yield sink_server
    sink_server.normal()
    if not sink_server.is_up:
        sink_server.up()


@pytest.fixture
def sink2(sink2_server):
    sink2_server.clear()
    yield sink2_server
    sink2_server.normal()
    if not sink2_server.is_up:
        sink2_server.up()


# -- nginx -----------------------------------------------------------------------

def _subst(upstream_server, sink_server, sink2_server, extra):
    d = {"UP": upstream_server.url, "UPSTREAM": upstream_server.address,
         "SINK": sink_server.endpoint, "SINK2": sink2_server.endpoint}
    d.update(extra or {})
    return d


class _Factory:
    def __init__(self, base_dir, servers):
        self.base_dir = base_dir
        self.servers = servers
        self.instances = []

    def make(self, snippet, module=True, subst=None, **kw):
        prefix = os.path.join(self.base_dir, "nginx%d" % len(self.instances))
        ng = Nginx(prefix, snippet, module=module,
                   subst=_subst(*self.servers, subst), **kw)
        self.instances.append(ng)
        return ng

    def start(self, snippet, **kw):
        _skip_if_unusable(kw.get("module", True))
        ng = self.make(snippet, **kw)
        ng.start()
        _live.append(ng)
        return ng

    def teardown(self):
        problems = []
        for ng in self.instances:
            if ng.proc is None:
                continue
            ng.stop()
            if ng in _live:
                _live.remove(ng)
            try:
                ng.check_logs(final=True)
            except AssertionError as e:
                problems.append(str(e))
        assert not problems, "\n".join(problems)


@pytest.fixture
def nginx(tmp_path, upstream_server, sink_server, sink2_server):
    """nginx(snippet, module=True, workers=2, flush_interval="100ms",
    batch_size=None, queue_size=None, http_extra="", main_extra="",
    subst={}) -> a started Nginx, stopped after the test."""
    f = _Factory(str(tmp_path), (upstream_server, sink_server, sink2_server))
    yield f.start
    f.teardown()


@pytest.fixture(scope="module")
def module_nginx(tmp_path_factory, upstream_server, sink_server,
                 sink2_server):
    """Like nginx, but the instances live for the whole test module."""
    f = _Factory(str(tmp_path_factory.mktemp("nginx")),
                 (upstream_server, sink_server, sink2_server))
    yield f.start
    f.teardown()


@pytest.fixture
def nginx_conf(tmp_path, upstream_server, sink_server, sink2_server):
    """nginx_conf(snippet, **kw) -> an unstarted Nginx; call
    .test_config() for `nginx -t` (returns (rc, output))."""
    f = _Factory(str(tmp_path), (upstream_server, sink_server, sink2_server))

    def make(snippet, **kw):
        ng = f.make(snippet, **kw)
        run = ng.test_config

        def test_config():
            _skip_if_unusable(ng.module)
            return run()
        ng.test_config = test_config
        return ng
    yield make


@pytest.fixture(autouse=True)
def _check_nginx_logs():
    """After each test: the error logs of all running nginx instances."""
    gap = []
    for ng in _live:
        # lines logged between tests: only fatal ones count (an [error]
        # of an earlier test's export must not fail this one)
        try:
            ng.check_logs(fatal_only=True)
        except AssertionError as e:
            gap.append("between tests: " + str(e))
    assert not gap, "\n".join(gap)
    yield
    problems = []
    for ng in list(_live):
        try:
            ng.check_logs()
        except AssertionError as e:
            problems.append(str(e))
        if not ng.running:
            _live.remove(ng)
            problems.append("%s is not running any more:\n%s" % (
                ng.name, ng.logs_text()))
    assert not problems, "\n".join(problems)
