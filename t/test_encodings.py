"""Response encodings the module cannot decode: the client gets its
bytes, the call is still traced as complete, without an output."""

from lfcheck import OUTPUT
from upstream import Case

PATH = "/v1/chat/completions"
REQ = {"model": "gpt-4o", "messages": [{"role": "user", "content": "hi"}]}

CONF = """
server {
    listen 127.0.0.1:@PORT@;
    location / { @LF@ proxy_pass @UP@; }
}
"""


def test_unknown_encoding_is_passed_and_traced_without_output(
        nginx, upstream, sink):
    ng = nginx(CONF)
    body = bytes(range(256)) * 4
    case = Case(body=body, headers=[("Content-Encoding", "zstd")])
    r = ng.post(PATH, REQ, case=upstream.add(case))

    assert r.status == 200
    assert r.body == body

    sp = sink.span_for(r.trace_id)
    attrs = sp["attributes"]
    assert OUTPUT not in attrs
    assert "langfuse.observation.level" not in attrs
    assert attrs["langfuse.observation.model.name"] == "gpt-4o"
    assert attrs["langfuse.observation.metadata.http_status"] == "200"
    assert 'response content encoding "zstd" is not supported' in \
        ng.read_error_log()
