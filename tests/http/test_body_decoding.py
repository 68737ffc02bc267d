"""Request bodies are decoded by orjson where it reads them as json does, and
by json elsewhere: the parsed body is json's in every case."""

from __future__ import annotations

import json

import pytest

from redroute import jsoncodec
from redroute.http.negotiation import decode_body
from redroute.http.problem import Problem

BODIES = [
    b'{"conversationId": "c-1", "queueId": "sales", "priority": 3}',
    b'{"metadata": {"big": 18446744073709551616, "low": -9223372036854775809, "x": 1}}',
    b'{"metadata": {"f": 0.1, "e": 1e400, "i": 12345678901234567890}}',
    b'{"metadata": {"s": "\\ud800", "t": "caf\\u00e9"}}',
    '{"a": "é"}'.encode("utf-16"),
    b'{"a": 1, "a": 2}',
    b"[" * 500 + b"]" * 500,
]


@pytest.mark.parametrize("raw", BODIES)
def test_a_body_decodes_to_what_json_reads(raw: bytes) -> None:
    got = jsoncodec.loads(raw)
    want = json.loads(raw)
    assert got == want
    assert repr(got) == repr(want)  # the same types too: an int stays an int


@pytest.mark.parametrize("raw", [b'{"a": NaN}', b'{"a": Infinity}', b'{"a": ', b"\xff"])
def test_a_body_json_refuses_is_a_400(raw: bytes) -> None:
    with pytest.raises(Problem) as e:
        decode_body("application/json", raw)
    assert e.value.status == 400
