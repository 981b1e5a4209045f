"""The sans-I/O HTTP/1.1 connection (``protocol/h1.py``), fed bytes directly.

These pin down what the parser layer decides on its own, without a server:
which requests it refuses and with what status, and what it reports of the
requests it accepts.  ``tests/test_h1_bad_input.py`` checks the same rules
from the wire against a real server.
"""

from __future__ import annotations

import pytest

from asgiri.protocol.errors import RemoteProtocolError
from asgiri.protocol.events import Body, EndBody, Request
from asgiri.protocol.h1 import H1Connection


def test_http10_with_transfer_encoding_is_refused() -> None:
    conn = H1Connection()
    data = (
        b"POST /echo HTTP/1.0\r\nConnection: keep-alive\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"3\r\nabc\r\n0\r\n\r\n"
        b"GET /smuggled HTTP/1.1\r\nHost: test\r\n\r\n"
    )
    with pytest.raises(RemoteProtocolError, match=r"HTTP/1\.0") as info:
        conn.receive_data(data)
    assert info.value.status == 400


def test_http11_chunked_and_http10_content_length_are_accepted() -> None:
    # Controls for the case above: the same body framed the way each version allows.
    conn = H1Connection()
    events = conn.receive_data(
        b"POST /a HTTP/1.1\r\nHost: test\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n"
    )
    assert [type(e) for e in events] == [Request, Body, EndBody]
    conn = H1Connection()
    events = conn.receive_data(
        b"POST /a HTTP/1.0\r\nConnection: keep-alive\r\nContent-Length: 3\r\n\r\nabc"
    )
    assert [type(e) for e in events] == [Request, Body, EndBody]
