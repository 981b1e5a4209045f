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


@pytest.mark.parametrize(
    ("target", "authority"),
    [
        (b"http://evil.example/path?x=1", b"evil.example"),
        (b"http://evil.example:8080/path", b"evil.example:8080"),
        (b"https://user:pw@evil.example/path", b"evil.example"),
        (b"http://[::1]:81/path", b"[::1]:81"),
        (b"http://evil.example?x=1", b"evil.example"),
    ],
)
def test_absolute_form_target_authority_replaces_host(target: bytes, authority: bytes) -> None:
    # RFC 9112 3.2.2: the target's authority wins over the Host header.
    conn = H1Connection()
    request, _ = conn.receive_data(
        b"GET %b HTTP/1.1\r\nHost: good.example\r\nX: y\r\n\r\n" % target
    )
    assert isinstance(request, Request)
    assert request.authority == authority
    assert request.headers == [(b"host", authority), (b"x", b"y")]
    assert request.raw_path == (b"/path" if b"/path" in target else b"/")


def test_absolute_form_on_http10_without_host_adds_one() -> None:
    conn = H1Connection()
    request, _ = conn.receive_data(b"GET http://evil.example/p HTTP/1.0\r\nX: y\r\n\r\n")
    assert isinstance(request, Request)
    assert request.authority == b"evil.example"
    assert request.headers == [(b"host", b"evil.example"), (b"x", b"y")]


def test_origin_form_keeps_the_host_header() -> None:
    conn = H1Connection()
    request, _ = conn.receive_data(b"GET /p HTTP/1.1\r\nHost: good.example\r\n\r\n")
    assert isinstance(request, Request)
    assert request.authority == b"good.example"
    assert request.headers == [(b"host", b"good.example")]


def test_absolute_form_still_needs_host_on_http11() -> None:
    # RFC 9112 3.2: an HTTP/1.1 request without Host is 400 whatever its target.
    with pytest.raises(RemoteProtocolError, match="Host") as info:
        H1Connection().receive_data(b"GET http://evil.example/p HTTP/1.1\r\n\r\n")
    assert info.value.status == 400
