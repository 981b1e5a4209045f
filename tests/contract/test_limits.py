"""The request-body, concurrency and max-requests limits, on every transport."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from tests.support.servers import ThreadServer

from .app import RECORD
from .conftest import Servers
from .transports import (
    ALL_TRANSPORTS,
    HTTP_TRANSPORTS,
    TIMEOUT,
    WS_TRANSPORTS,
    HTTPTransport,
    Transport,
    WSTransport,
)

pytestmark = pytest.mark.timeout(60)

BODY_LIMIT = 1000


def _pieces(size: int, count: int) -> Iterator[bytes]:
    for _ in range(count):
        yield b"b" * size


def _until_served(transport: HTTPTransport, srv: ThreadServer) -> None:
    """Poll until a request is served again (a slot frees once the server notices)."""
    deadline = time.monotonic() + TIMEOUT
    while (reply := transport.request(srv, "GET", "/ok")).status == 503:
        assert time.monotonic() < deadline, "the freed slot was never reused"
    assert reply.status == 200, reply


@pytest.mark.parametrize("transport", HTTP_TRANSPORTS, ids=str)
def test_request_body_limit(transport: HTTPTransport, servers: Servers) -> None:
    srv = servers.get(transport, limit_request_body=BODY_LIMIT)
    # At the limit: served.
    at_limit = transport.request(srv, "POST", "/echo", body=b"a" * BODY_LIMIT)
    assert (at_limit.status, at_limit.body) == (200, b"%d bytes" % BODY_LIMIT)
    RECORD.clear()

    # A declared length over the limit: 413, and the app is never called.
    declared = transport.request(srv, "POST", "/echo", body=b"a" * 200_000)
    assert declared.status == 413, declared
    assert "/echo" not in RECORD.values("called")

    # A body of unknown length (chunked; no content-length) that grows past the
    # limit while the app reads it: 413, and the app sees http.disconnect.
    with transport.connect(srv) as conn:
        handle = conn.start("POST", "/echo", body=b"a" * 500, end=False)
        assert RECORD.wait("echo") == ["http.request"]  # the app is reading
        for piece in _pieces(500, 400):
            if not conn.send(handle, piece):
                break
        else:
            conn.send(handle, b"", end=True)
        grown = conn.response(handle)
    assert grown.status == 413, grown
    # (The app may take more pieces of the body before the limit is crossed.)
    noted = RECORD.wait_value("echo", "http.disconnect")
    assert noted[-1] == "http.disconnect" and set(noted[:-1]) == {"http.request"}
    transport.assert_serving(srv)


@pytest.mark.parametrize("transport", HTTP_TRANSPORTS, ids=str)
def test_concurrency_limit_answers_503(transport: HTTPTransport, servers: Servers) -> None:
    srv = servers.get(transport, limit_concurrency=1)
    with transport.connect(srv) as conn:
        held = transport.hold(conn)
        RECORD.wait("hold")
        refused = transport.request(srv, "GET", "/ok")
        assert refused.status == 503, refused
        for name in (b"date", b"server", b"content-type"):
            assert refused.header(name), (name, refused.headers)
        conn.abandon(held)
    _until_served(transport, srv)


@pytest.mark.parametrize("transport", WS_TRANSPORTS, ids=str)
def test_concurrency_limit_counts_websockets(transport: WSTransport, servers: Servers) -> None:
    srv = servers.get(transport, limit_concurrency=1)
    with transport.connect(srv) as ws:
        assert ws.status == transport.accepted
        ws.send_text("in session")
        assert ws.receive_message() == "in session"
        # The open WebSocket takes the one slot: a request is refused...
        assert transport.http.request(srv, "GET", "/ok").status == 503
        # ...and so is a second WebSocket, with an HTTP answer to its handshake.
        with transport.connect(srv) as second:
            assert second.status == 503
        ws.close()
        assert ws.receive_close() is not None
    _until_served(transport.http, srv)


@pytest.mark.parametrize("transport", ALL_TRANSPORTS, ids=str)
def test_max_requests_stops_the_server(transport: Transport, servers: Servers) -> None:
    """N requests, a WebSocket session counting as one, and the server stops by itself."""
    limit = 3
    srv = servers.start(transport, limit_max_requests=limit)
    http = transport.http if isinstance(transport, WSTransport) else transport
    requests = limit
    if isinstance(transport, WSTransport):
        with transport.connect(srv) as ws:
            assert ws.status == transport.accepted
            ws.send_text("counted")
            assert ws.receive_message() == "counted"
            ws.close()
            assert ws.receive_close() is not None
        requests -= 1
    for _ in range(requests):
        assert http.request(srv, "GET", "/ok").status == 200
    srv.thread.join(5)
    assert not srv.thread.is_alive(), f"still serving after {limit} requests"
