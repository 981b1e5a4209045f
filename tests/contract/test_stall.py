"""``--timeout-write``: a client that reads nothing is dropped; one that reads slowly is not.

The non-reading client keeps its receive buffer small (TCP) or its
flow-control window shut (HTTP/2, HTTP/3) and simply never reads; the app,
sending as fast as it may, must see its ``send`` fail within a few seconds.
Only then does the client look at what happened to its connection.
"""

from __future__ import annotations

import pytest

from .app import CHUNK, RECORD
from .conftest import Servers
from .transports import (
    H2_CODECS,
    H2_TLS,
    H2C,
    HTTP_TRANSPORTS,
    WS_TRANSPORTS,
    H2Conn,
    HTTPTransport,
    WSTransport,
)

pytestmark = pytest.mark.timeout(60)

WRITE_TIMEOUT = 1.0
#: How long after the client stopped reading the app must have been let go.
CUT_WITHIN = WRITE_TIMEOUT + 4.0
HUGE = 50 * 1024 * 1024


@pytest.mark.parametrize("transport", HTTP_TRANSPORTS, ids=str)
def test_response_to_a_client_that_never_reads_is_cut(
    transport: HTTPTransport, servers: Servers
) -> None:
    srv = servers.get(transport, timeout_write=WRITE_TIMEOUT)
    with transport.connect(srv, rcvbuf=16 * 1024) as conn:
        handle = conn.start("GET", f"/stream?{HUGE}")
        # Not a byte read: the app's send must fail on its own.
        outcome = RECORD.wait("stream", timeout=CUT_WITHIN)
        assert outcome != ["completed"], outcome
        reply = conn.response(handle, timeout=5, keep_body=False)
    assert reply.cut, reply
    assert reply.received < HUGE
    transport.assert_serving(srv)


@pytest.mark.parametrize("codec", H2_CODECS)
@pytest.mark.parametrize("transport", [H2C, H2_TLS], ids=str)
def test_an_open_h2_window_does_not_let_the_app_outrun_the_socket(
    transport: HTTPTransport, codec: str, servers: Servers
) -> None:
    """With the window wide open only the socket holds the app back.

    The server writes once per loop iteration, and the app's sends did not
    wait while its stream had room: an app that never yields between sends
    framed its whole body in the server's memory (50 MiB here) before the
    first byte went out, then completed although the client read nothing.
    """
    srv = servers.get(transport, timeout_write=WRITE_TIMEOUT, h2_codec=codec)
    with transport.connect(srv) as conn:
        assert isinstance(conn, H2Conn)
        conn.open_window()
        conn.start("GET", f"/stream?{HUGE}")
        outcome = RECORD.wait("stream", timeout=CUT_WITHIN)
        assert outcome != ["completed"], outcome
    transport.assert_serving(srv)


@pytest.mark.parametrize("transport", HTTP_TRANSPORTS, ids=str)
def test_a_slow_reader_is_not_cut(transport: HTTPTransport, servers: Servers) -> None:
    """Reading in bursts with pauses shorter than the timeout gets the whole body."""
    srv = servers.get(transport, timeout_write=WRITE_TIMEOUT)
    size = 128 * CHUNK
    with transport.connect(srv, rcvbuf=16 * 1024) as conn:
        handle = conn.start("GET", f"/stream?{size}")
        reply = conn.response(handle, timeout=20, keep_body=False, burst=16 * CHUNK, pause=0.3)
    assert reply.complete and reply.received == size, reply
    assert RECORD.wait("stream") == ["completed"]


@pytest.mark.parametrize("transport", WS_TRANSPORTS, ids=str)
def test_websocket_client_that_never_reads_is_cut(transport: WSTransport, servers: Servers) -> None:
    srv = servers.get(transport, timeout_write=WRITE_TIMEOUT)
    with transport.connect(srv, "/ws-flood", reading=False) as ws:
        assert ws.status == transport.accepted
        # The app floods; the client reads nothing: the app's send must fail.
        outcome = RECORD.wait("flood", timeout=CUT_WITHIN)
        assert outcome, outcome
        assert ws.wait_cut(timeout=5) != "open"
    transport.http.assert_serving(srv)
