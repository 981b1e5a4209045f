"""An app that fails, returns early, mis-states its length, or loses its client.

Before the response head is sent the server can still answer 500; after it,
the only honest answer is to cut the response off, which each protocol says
its own way: HTTP/1.1 closes the connection before the body's end, HTTP/2
resets the stream with INTERNAL_ERROR, HTTP/3 with H3_INTERNAL_ERROR.
"""

from __future__ import annotations

import pytest

from .app import RECORD
from .conftest import Servers
from .transports import HTTP_TRANSPORTS, HTTPTransport, Reply

pytestmark = pytest.mark.timeout(60)


def assert_cut(transport: HTTPTransport, reply: Reply, sent: bytes) -> None:
    """The client can tell the response is incomplete, the way its protocol says it.

    What the app sent before the failure (``sent``) arrives first, unless the
    cut is a reset that may overtake it (HTTP/3).
    """
    assert not reply.complete, reply
    if transport.reset_discards:
        assert reply.status in (0, 200) and sent.startswith(reply.body), reply
    else:
        assert (reply.status, reply.body) == (200, sent), reply
    if transport.internal_error is None:
        assert reply.closed, reply
    else:
        assert reply.reset == transport.internal_error, reply


def assert_500(reply: Reply) -> None:
    assert reply.complete, reply
    assert (reply.status, reply.body) == (500, b"Internal Server Error"), reply


@pytest.mark.parametrize("transport", HTTP_TRANSPORTS, ids=str)
def test_app_exception(transport: HTTPTransport, servers: Servers) -> None:
    srv = servers.get(transport)
    assert_500(transport.request(srv, "GET", "/raise-before"))
    cut = transport.request(srv, "GET", "/raise-after")
    assert RECORD.values("raise-after") == ["head sent"]
    assert_cut(transport, cut, b"part of it")
    transport.assert_serving(srv)


@pytest.mark.parametrize("transport", HTTP_TRANSPORTS, ids=str)
def test_return_without_response_is_500(transport: HTTPTransport, servers: Servers) -> None:
    srv = servers.get(transport)
    assert_500(transport.request(srv, "GET", "/return-empty"))
    transport.assert_serving(srv)


@pytest.mark.parametrize("transport", HTTP_TRANSPORTS, ids=str)
def test_content_length_mismatch(transport: HTTPTransport, servers: Servers) -> None:
    srv = servers.get(transport)
    # Declares 10, sends 5, returns: the client must not take 5 bytes for the whole body.
    short = transport.request(srv, "GET", "/short")
    assert_cut(transport, short, b"12345")
    # Declares 5, tries to send 8: the send that goes over raises in the app.
    long = transport.request(srv, "GET", "/long")
    assert RECORD.wait("long") == ["ASGIMessageError"]
    assert_cut(transport, long, b"abc")
    transport.assert_serving(srv)


@pytest.mark.parametrize("transport", HTTP_TRANSPORTS, ids=str)
def test_client_disconnect_reaches_the_app(transport: HTTPTransport, servers: Servers) -> None:
    srv = servers.get(transport)
    with transport.connect(srv) as conn:
        held = transport.hold(conn)
        RECORD.wait("hold")
        assert RECORD.wait("hold-receive") == ["http.request"]
        conn.abandon(held)
        # The app, blocked in receive(), learns at once that the client is gone.
        assert RECORD.wait("hold-receive", timeout=2, count=2)[-1] == "http.disconnect"
    transport.assert_serving(srv)
