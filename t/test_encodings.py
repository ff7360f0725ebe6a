"""Response encodings the module cannot decode: the client gets its
bytes, the call is still traced as complete, without an output."""

from lfcheck import CHAT_PATH, CHAT_REQ, OUTPUT, TRACED
from upstream import Case

PATH, REQ, CONF = CHAT_PATH, CHAT_REQ, TRACED


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
