"""Findings of the fuzz targets (docs/fuzzing.md), each as the unit test of its fix.

Every input the fuzzer found that broke an invariant is reduced to the bytes
that matter and fed to the protocol class here, with the documented answer
it must get.  (The inputs themselves are replayed from fuzz/regressions/ by
tests/test_fuzz.py.)
"""

from __future__ import annotations

import pytest

from asgiri.protocol.errors import RemoteProtocolError
from asgiri.protocol.h1 import H1Connection

# ---------------------------------------------------------------- HTTP/1.1

CHUNKED_HEAD = b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"


def test_h1_parses_nothing_after_a_limit_error() -> None:
    """A chunk-size line over the limit is answered 431, and the connection is done.

    The framing limit is checked after llhttp took the bytes, and llhttp went
    on parsing what came next: the body and the end of a request already
    refused reached the server as events.
    """
    conn = H1Connection(max_header_size=200)
    conn.receive_data(CHUNKED_HEAD)
    with pytest.raises(RemoteProtocolError) as first:
        conn.receive_data(b"5;" + b"a" * 300)
    assert first.value.status == 431
    with pytest.raises(RemoteProtocolError) as again:
        conn.receive_data(b"\r\nhello\r\n0\r\n\r\nGET / HTTP/1.1\r\nHost: x\r\n\r\n")
    assert again.value.status == 431


def test_h1_parses_nothing_after_a_syntax_error() -> None:
    conn = H1Connection()
    with pytest.raises(RemoteProtocolError) as first:
        conn.receive_data(b"GET / HTTP/1.1\r\nHost: x\r\nX\x01Y: 1\r\n\r\n")
    assert first.value.status == 400
    with pytest.raises(RemoteProtocolError):
        conn.receive_data(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
