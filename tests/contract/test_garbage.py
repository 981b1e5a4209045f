"""A connection that ends is freed at once, not left to the cyclic garbage collector.

Objects of one connection point at each other (a stream and its sink, a
codec and its parser's callbacks, a watch and its owner).  Were any of those
references kept after the connection ended, the whole connection, with its
transport and, over TLS, about 300 KiB of buffers, would stay in memory
until the next full collection; under load a worker then grows by whatever
ended between two collections (the soak of docs/operations.md found it).

Each test runs its connections with the collector off, waits for the server
to finish with them, then collects once and looks at what was only
reachable through cycles (tests/support/garbage.py): nothing of the server
may be among it.  WebTransport sessions: tests/http3/test_webtransport.py.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from tests.support.garbage import cyclic_garbage

from .conftest import Servers
from .transports import (
    H2_CODECS,
    HTTP_TRANSPORTS,
    WS_H2C,
    WS_TRANSPORTS,
    HTTPTransport,
    WSTransport,
)

pytestmark = pytest.mark.timeout(60)


def _variants() -> Iterator[Any]:
    for transport in HTTP_TRANSPORTS:
        if transport.version == "HTTP/2":
            for codec in H2_CODECS:
                yield pytest.param(transport, codec, id=f"{transport}-{codec}")
        else:
            yield pytest.param(transport, None, id=str(transport))


@pytest.mark.parametrize(("transport", "codec"), list(_variants()))
def test_ended_http_connections_leave_no_cycles(
    transport: HTTPTransport, codec: str | None, servers: Servers
) -> None:
    srv = servers.start(transport, **({"h2_codec": codec} if codec else {}))
    transport.assert_serving(srv)  # the server's own first-use objects, before counting

    def work() -> None:
        with transport.connect(srv) as conn:
            for _ in range(2):
                body = b"x" * 70000
                handle = conn.start("POST", "/echo", [(b"content-length", b"70000")], body)
                reply = conn.response(handle)
                assert (reply.status, reply.body) == (200, b"70000 bytes")
            handle = conn.start("GET", "/stream?100000")
            reply = conn.response(handle)
            assert (reply.status, len(reply.body)) == (200, 100000)
        # A request the client gives up half-way: the disconnect path.
        with transport.connect(srv) as conn:
            conn.abandon(transport.hold(conn))

    assert cyclic_garbage(srv, work) == []


@pytest.mark.parametrize("transport", [*WS_TRANSPORTS, WS_H2C], ids=str)
def test_ended_websockets_leave_no_cycles(transport: WSTransport, servers: Servers) -> None:
    srv = servers.start(transport.http)
    transport.http.assert_serving(srv)

    def work() -> None:
        with transport.connect(srv) as ws:
            ws.send_text("hello")
            assert ws.receive_message() == "hello"
            ws.close()
            assert ws.receive_close() is not None
        # A client that drops its connection without a close frame.
        ws = transport.connect(srv)
        ws.send_text("bye")
        assert ws.receive_message() == "bye"
        ws.close_transport()

    assert cyclic_garbage(srv, work) == []
