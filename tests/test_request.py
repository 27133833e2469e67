"""The request splitter (pyai.plugin.runtime.parse_request) against the JSON parser.

Its fast path leaves frames as views into the request; whatever the host sends,
the arguments it yields must be exactly what json.loads reads.
"""

from __future__ import annotations

import json

from hypothesis import given, settings
from hypothesis import strategies as st

from tests.hostsim import go_json
from pyai.plugin.runtime import FrameArg, parse_request

B64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/="

base64ish = st.text(alphabet=B64, max_size=60)
texts = st.one_of(base64ish, st.text(max_size=20))  # quotes, backslashes, controls, non-ASCII
scalars = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False), texts)
values = st.recursive(scalars, lambda inner: st.one_of(st.lists(inner, max_size=4),
                                                       st.dictionaries(st.text(max_size=5), inner, max_size=3)),
                      max_leaves=8)
first_args = st.one_of(texts, st.lists(texts, max_size=5), st.lists(values, max_size=3), values)


def _plain(value):
    """FrameArgs back to the strings they stand for."""
    if isinstance(value, FrameArg):
        return bytes(value.view).decode("utf-8")
    if isinstance(value, list):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return value


@settings(max_examples=400, deadline=None)
@given(first=first_args, rest=st.lists(values, max_size=3), go=st.booleans(), tail=st.binary(max_size=8))
def test_exec_requests_split_like_the_json_parser(first, rest, go, tail):
    msg = {"func": "Exec", "arg": [first, *rest, '{"ruleId":"r1","opId":"op1"}']}
    req = go_json(msg) if go else json.dumps(msg, separators=(",", ":")).encode()
    want = json.loads(req)
    assert _plain(parse_request(req)) == want
    # As the socket delivers it: a reused buffer holding this request, then stale bytes.
    buf = bytearray(req + tail)
    assert _plain(parse_request(buf, len(req))) == want


@given(func=st.sampled_from(["Validate", "IsAggregate", "Exec", "Other"]), arg=values)
def test_other_requests_go_to_the_json_parser(func, arg):
    req = go_json({"func": func, "arg": arg})
    assert _plain(parse_request(req)) == json.loads(req)
