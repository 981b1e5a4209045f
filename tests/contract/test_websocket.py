"""WebSocket over HTTP/1.1, HTTP/2 (RFC 8441) and HTTP/3 (RFC 9220): one contract."""

from __future__ import annotations

import pytest

from tests.support.logs import AccessLines

from .app import RECORD
from .conftest import Servers
from .transports import WS_TRANSPORTS, WSTransport

pytestmark = pytest.mark.timeout(60)

MAX_SIZE = 4096
OPTIONS = {"log_level": "info", "access_log": True, "ws_max_size": MAX_SIZE}


@pytest.mark.parametrize("transport", WS_TRANSPORTS, ids=str)
def test_echo_and_one_access_line_per_session(
    transport: WSTransport, servers: Servers, access_lines: AccessLines
) -> None:
    srv = servers.get(transport, **OPTIONS)
    with transport.connect(srv) as ws:
        assert ws.status == transport.accepted
        ws.send_text("héllo")
        assert ws.receive_message() == "héllo"
        ws.send_bytes(b"\x00\x01binary")
        assert ws.receive_message() == b"\x00\x01binary"
        assert access_lines.matching("/ws ") == [], "logged before the session ended"
        ws.close(1000)
        close = ws.receive_close()
        assert close is not None and close.code == 1000
    assert RECORD.wait("ws-disconnect") == [1000]
    # A marker request after the session's end bounds the wait for its line.
    assert transport.http.request(srv, "GET", "/ok?marker").status == 200
    access_lines.wait_for("/ok?marker")
    expected = f'"{transport.method} /ws {transport.version}" {transport.accepted} '
    line = access_lines.wait_for(expected, timeout=2)
    assert access_lines.matching("/ws ") == [line]


@pytest.mark.parametrize("transport", WS_TRANSPORTS, ids=str)
def test_message_over_max_size_is_closed_1009(transport: WSTransport, servers: Servers) -> None:
    srv = servers.get(transport, **OPTIONS)
    with transport.connect(srv) as ws:
        assert ws.status == transport.accepted
        ws.send_bytes(b"x" * MAX_SIZE)
        assert ws.receive_message() == b"x" * MAX_SIZE  # at the limit: fine
        ws.send_bytes(b"x" * (MAX_SIZE + 1))
        close = ws.receive_close()
        assert close is not None, "the carrier ended without a close frame"
        assert close.code == 1009
    transport.http.assert_serving(srv)
