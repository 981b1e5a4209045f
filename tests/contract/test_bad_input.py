"""Requests the server must refuse before any app sees them, the same way on every transport."""

from __future__ import annotations

import pytest
from hyperframe.frame import GoAwayFrame

from asgiri.protocol.h2 import PREFACE
from tests.support.h2_client import raw_exchange
from tests.support.h2_raw import parse_frames

from .app import RECORD
from .conftest import Servers
from .transports import H1, H2_TLS, H2C, H3, HTTPTransport, Reply

pytestmark = pytest.mark.timeout(60)

PROTOCOL_ERROR = 0x1
H3_MESSAGE_ERROR = 0x10E


@pytest.mark.parametrize(
    "data",
    [
        PREFACE[:-6] + b"XX\r\n\r\n",
        PREFACE[:16] + b"GET / HTTP/1.1\r\nHost: x\r\n\r\n",
    ],
    ids=["wrong-tail", "http1-after-the-request-line"],
)
def test_a_broken_http2_preface_is_an_http2_connection_error(data: bytes, servers: Servers) -> None:
    """Bytes that begin like the preface are HTTP/2's to refuse (RFC 9113 3.4), not HTTP/1.1's."""
    srv = servers.get(H1)
    answer = raw_exchange(srv.port, data)
    assert not answer.startswith(b"HTTP/"), answer[:80]
    goaways = [f for f in parse_frames(answer) if isinstance(f, GoAwayFrame)]
    assert [g.error_code for g in goaways] == [PROTOCOL_ERROR], answer
    H1.assert_serving(srv)


def _refused(transport: HTTPTransport, reply: Reply) -> bool:
    """Refused as malformed: a stream error or a connection error, of the protocol's code."""
    code = PROTOCOL_ERROR if transport.version == "HTTP/2" else H3_MESSAGE_ERROR
    return reply.status == 0 and code in (reply.reset, reply.connection_error)


HEADS = {
    # RFC 9113 8.3.1 / RFC 9114 4.3.1: :authority and Host must not differ.
    "authority-differs-from-host": ("GET", "/ok", [(b"host", b"b.example")], b""),
    # RFC 9110 8.6: Content-Length = 1*DIGIT; "+5" is not one.
    "content-length-with-a-sign": ("POST", "/echo", [(b"content-length", b"+5")], b"hello"),
}


@pytest.mark.parametrize("transport", [H2_TLS, H2C, H3], ids=str)
@pytest.mark.parametrize("head", list(HEADS))
def test_malformed_request_head_is_refused(
    head: str, transport: HTTPTransport, servers: Servers
) -> None:
    srv = servers.get(transport)
    method, path, headers, body = HEADS[head]
    with transport.connect(srv, validate=False) as conn:
        handle = conn.start(method, path, headers, body, authority="a.example")
        reply = conn.response(handle)
    assert _refused(transport, reply), reply
    assert path not in RECORD.values("called")
    transport.assert_serving(srv)
