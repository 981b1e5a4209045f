"""WebSocket over HTTP/2 (RFC 8441) against a real server.

The client is :mod:`tests.ws_h2_client`: h2 for the HTTP/2 connection and
wsproto for the frames, on a raw socket, so that a test controls every
frame, window update, END_STREAM and RST_STREAM.  Servers are
:func:`tests.servers.serve` threads on port 0, or a CLI subprocess where a
test measures the server's memory alone.

``test_autobahn_over_h2`` runs the Autobahn fuzzing client (kosoku) through
:mod:`tests.autobahn_h2_bridge`, which turns each of its RFC 6455
connections into an extended CONNECT stream and relays the frame bytes
unchanged.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import queue
import re
import ssl
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import h2.errors
import h2.events
import pytest
from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect as ws_connect
from wsproto.connection import Connection, ConnectionType
from wsproto.events import BytesMessage, Ping

from asgiri.ssl_utils import generate_self_signed_cert

from . import wsapps
from .servers import ThreadServer, cli_server, serve
from .test_autobahn import (
    DEFAULT_CASES,
    PASSING,
    ensure_kosoku,
    load_results,
    selection,
    write_summary,
)
from .test_memory import RSSSampler
from .ws_h2_client import H2WebSocket, H2WSConnection, Stalled

TIMEOUT = 10.0
MIB = 1024 * 1024
Scope = dict[str, Any]

pytestmark = pytest.mark.timeout(60)


# ----------------------------------------------------------------------------- apps


class Recorder:
    """What the apps saw, for the test thread: scopes, messages, disconnects."""

    def __init__(self) -> None:
        self.events: queue.Queue[tuple[str, Any]] = queue.Queue()

    def put(self, kind: str, value: Any = None) -> None:
        self.events.put((kind, value))

    def get(self, kind: str) -> Any:
        """The next event of ``kind`` (others before it are dropped)."""
        deadline = time.monotonic() + TIMEOUT
        while True:
            got, value = self.events.get(timeout=max(0.01, deadline - time.monotonic()))
            if got == kind:
                return value


async def plain(scope: Scope, receive: Any, send: Any) -> None:
    body = f"plain {scope['path']}".encode()
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": body})


def make_echo(recorder: Recorder | None = None) -> Any:
    """Echo every message with its type; a few texts are commands.

    The first offered subprotocol is accepted, with an extra header;
    ``close:CODE:REASON`` makes the app close; plain HTTP gets ``plain PATH``.
    """

    async def app(scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            await plain(scope, receive, send)
            return
        if scope["type"] != "websocket":
            return
        if recorder is not None:
            recorder.put("scope", scope)
        assert (await receive())["type"] == "websocket.connect"
        protocols = scope["subprotocols"]
        await send(
            {
                "type": "websocket.accept",
                "subprotocol": protocols[0] if protocols else None,
                "headers": [(b"x-accepted", b"yes")],
            }
        )
        while True:
            message = await receive()
            if message["type"] == "websocket.disconnect":
                if recorder is not None:
                    recorder.put("disconnect", message["code"])
                return
            text = message.get("text")
            if text is not None and text.startswith("close:"):
                _, code, reason = text.split(":", 2)
                await send({"type": "websocket.close", "code": int(code), "reason": reason})
                if recorder is not None:
                    recorder.put("closed", await receive())
                return
            if text is not None:
                await send({"type": "websocket.send", "text": text})
            else:
                await send({"type": "websocket.send", "bytes": message["bytes"]})

    return app


echo = make_echo()


async def close_before_accept(scope: Scope, receive: Any, send: Any) -> None:
    if scope["type"] == "websocket":
        await receive()
        await send({"type": "websocket.close", "code": 1000})


async def deny(scope: Scope, receive: Any, send: Any) -> None:
    if scope["type"] == "http":
        await plain(scope, receive, send)
    elif scope["type"] == "websocket":
        await receive()
        await send(
            {
                "type": "websocket.http.response.start",
                "status": 401,
                "headers": [(b"content-type", b"text/plain"), (b"www-authenticate", b"Bearer")],
            }
        )
        await send({"type": "websocket.http.response.body", "body": b"log in ", "more_body": True})
        await send({"type": "websocket.http.response.body", "body": b"first"})


async def autobahn_echo(scope: Scope, receive: Any, send: Any) -> None:
    """Echo every message as it came: the server the Autobahn client expects."""
    if scope["type"] == "http":
        await plain(scope, receive, send)
        return
    if scope["type"] != "websocket":
        return
    await receive()
    await send({"type": "websocket.accept"})
    while True:
        message = await receive()
        if message["type"] == "websocket.disconnect":
            return
        if message.get("text") is not None:
            await send({"type": "websocket.send", "text": message["text"]})
        else:
            await send({"type": "websocket.send", "bytes": message["bytes"]})


#: Set by ``GET /release`` on the flood server: the flood app starts reading.
_release = asyncio.Event()


async def flood_app(scope: Scope, receive: Any, send: Any) -> None:
    """For the memory test (CLI ``tests.test_ws_h2:flood_app``).

    The WebSocket is accepted, then nothing is read until ``GET /release``;
    after that every message is counted and ``end`` is answered with the
    number of bytes received.
    """
    if scope["type"] == "http":
        if scope["path"] == "/release":
            _release.set()
        await plain(scope, receive, send)
        return
    if scope["type"] != "websocket":
        return
    await receive()
    await send({"type": "websocket.accept"})
    await _release.wait()
    total = 0
    while True:
        message = await receive()
        if message["type"] == "websocket.disconnect":
            return
        if message.get("text") == "end":
            await send({"type": "websocket.send", "text": str(total)})
        else:
            total += len(message.get("bytes") or b"")


# ----------------------------------------------------------------------------- helpers


@pytest.fixture(scope="module")
def tls_pems() -> tuple[bytes, bytes]:
    return generate_self_signed_cert("localhost", key_type="ec")


def open_ws(conn: H2WSConnection, path: str = "/ws", **kwargs: Any) -> H2WebSocket:
    ws = conn.websocket(path, **kwargs)
    assert ws.wait_response() == 200, (ws.status, ws.reset, ws.body)
    return ws


def close_cleanly(ws: H2WebSocket, code: int = 1000) -> None:
    """Client-initiated close: the server echoes it and ends its side."""
    ws.close(code)
    echoed = ws.receive_close()
    assert echoed.code == code
    assert ws.wait_finished() == "end"
    ws.end()


def assert_complete_answer(ws: H2WebSocket) -> None:
    """A refused CONNECT: the whole answer with END_STREAM, then (optionally)
    RST_STREAM NO_ERROR closing the client's side (RFC 9113 8.1)."""
    ws.wait_finished()
    conn = ws.conn
    conn.quiet_for(0.1)
    assert ws.ended, ws.log
    assert ws.reset in (None, h2.errors.ErrorCodes.NO_ERROR), ws.reset
    assert ws.log[-1] == "end" or ws.log[-2:] == ["end", "reset"], ws.log


def masked_frame(opcode: int, payload: bytes, fin: bool = True, mask: bool = True) -> bytes:
    """One RFC 6455 frame, built by hand (payloads under 126 bytes)."""
    assert len(payload) < 126
    head = bytes([(0x80 if fin else 0) | opcode])
    if not mask:
        return head + bytes([len(payload)]) + payload
    key = b"\x01\x02\x03\x04"
    masked = bytes(b ^ key[i % 4] for i, b in enumerate(payload))
    return head + bytes([0x80 | len(payload)]) + key + masked


# ----------------------------------------------------------------------------- handshake


def test_settings_advertise_extended_connect() -> None:
    with serve(echo) as srv, H2WSConnection(srv.port) as conn:
        assert conn.connect_protocol == 1


def test_ws_none_neither_advertises_nor_accepts_extended_connect() -> None:
    recorder = Recorder()
    with serve(make_echo(recorder), ws="none") as srv, H2WSConnection(srv.port) as conn:
        assert conn.connect_protocol == 0
        ws = conn.websocket("/ws")
        conn.until(lambda: ws.finished)
        # Without the setting, :protocol makes a malformed request (RFC 8441 4).
        assert (ws.status, ws.reset) == (0, h2.errors.ErrorCodes.PROTOCOL_ERROR)
        # The connection survives the refused stream.
        assert conn.get("/after").body == b"plain /after"
    assert recorder.events.empty()


def test_unknown_protocol_is_refused() -> None:
    with serve(echo) as srv, H2WSConnection(srv.port) as conn:
        ws = conn.websocket("/ws", protocol=b"webtransport")
        conn.until(lambda: ws.finished)
        assert ws.reset == h2.errors.ErrorCodes.REFUSED_STREAM
        assert conn.get("/after").body == b"plain /after"


def test_scope_and_accept_headers() -> None:
    recorder = Recorder()
    with serve(make_echo(recorder)) as srv, H2WSConnection(srv.port) as conn:
        port = srv.port
        ws = open_ws(conn, "/chat/room%201?x=1&y=2", subprotocols=["chat.v2", "chat.v1"])
        scope = recorder.get("scope")
        assert ws.subprotocol == "chat.v2"
        assert ws.header(b"x-accepted") == b"yes"
        assert ws.header(b"sec-websocket-accept") is None  # no key over HTTP/2
        close_cleanly(ws)
    assert scope["type"] == "websocket"
    assert scope["http_version"] == "2"
    assert scope["scheme"] == "ws"
    assert scope["path"] == "/chat/room 1"
    assert scope["raw_path"] == b"/chat/room%201"
    assert scope["query_string"] == b"x=1&y=2"
    assert scope["subprotocols"] == ["chat.v2", "chat.v1"]
    assert "method" not in scope
    assert "websocket.http.response" in scope["extensions"]
    headers = dict(scope["headers"])
    assert headers[b"host"] == f"127.0.0.1:{port}".encode()
    assert headers[b"sec-websocket-version"] == b"13"
    assert not [n for n, _ in scope["headers"] if n.startswith(b":")]


def test_no_subprotocol_header_when_the_app_picks_none() -> None:
    with serve(echo) as srv, H2WSConnection(srv.port) as conn:
        ws = open_ws(conn)
        assert ws.subprotocol is None
        close_cleanly(ws)


def test_wss_over_tls_with_alpn_h2(tls_pems: tuple[bytes, bytes]) -> None:
    recorder = Recorder()
    context = ssl.create_default_context(cadata=tls_pems[0].decode())
    context.set_alpn_protocols(["h2"])
    options = {"cert_data": tls_pems[0], "key_data": tls_pems[1]}
    with (
        serve(make_echo(recorder), **options) as srv,
        H2WSConnection(srv.port, ssl_context=context) as conn,
    ):
        assert conn.connect_protocol == 1
        ws = open_ws(conn, "/secure?k=v")
        ws.send_text("over tls")
        assert ws.receive_message() == "over tls"
        close_cleanly(ws)
    scope = recorder.get("scope")
    assert (scope["scheme"], scope["http_version"]) == ("wss", "2")
    assert (scope["path"], scope["query_string"]) == ("/secure", b"k=v")
    assert "tls" in scope["extensions"]


def test_close_before_accept_is_a_403_on_the_stream() -> None:
    with serve(close_before_accept) as srv, H2WSConnection(srv.port) as conn:
        ws = conn.websocket("/ws")
        assert ws.wait_response() == 403
        assert_complete_answer(ws)
        assert ws.body == b"Forbidden"
        assert ws.ws is None


def test_denial_response_reaches_the_client() -> None:
    with serve(deny) as srv, H2WSConnection(srv.port) as conn:
        ws = conn.websocket("/ws")
        assert ws.wait_response() == 401
        assert_complete_answer(ws)
        assert ws.body == b"log in first"
        assert ws.header(b"www-authenticate") == b"Bearer"
        assert conn.get("/after").status == 200


def test_unsupported_version_is_a_426_naming_13() -> None:
    recorder = Recorder()
    with serve(make_echo(recorder)) as srv, H2WSConnection(srv.port) as conn:
        ws = conn.websocket("/ws", version=b"8")
        assert ws.wait_response() == 426
        assert_complete_answer(ws)
        assert ws.header(b"sec-websocket-version") == b"13"
        assert conn.get("/after").status == 200
    assert recorder.events.empty()


def test_connect_that_ends_at_once_is_reset_not_answered_with_bare_data() -> None:
    """END_STREAM on the CONNECT itself: the WebSocket is over before it began.

    The server must not send DATA (END_STREAM) without a response head:
    that is a protocol error that would take the client's whole connection.
    """
    recorder = Recorder()
    with serve(make_echo(recorder)) as srv, H2WSConnection(srv.port) as conn:
        ws = conn.websocket("/ws", end_stream=True)
        conn.until(lambda: ws.finished)
        assert (ws.status, ws.ended, ws.reset) == (0, False, h2.errors.ErrorCodes.CANCEL)
        assert conn.get("/after").status == 200


def test_denied_stream_does_not_keep_the_connection_busy() -> None:
    """After a denial the stream is fully closed: the idle timeout applies."""
    with serve(deny, timeout_keep_alive=1) as srv, H2WSConnection(srv.port) as conn:
        ws = conn.websocket("/ws")
        assert ws.wait_response() == 401
        ws.wait_finished()
        conn.until(lambda: conn.goaway is not None, timeout=5)


# ----------------------------------------------------------------------------- messages


def test_text_and_bytes_echo() -> None:
    with serve(echo) as srv, H2WSConnection(srv.port) as conn:
        ws = open_ws(conn)
        ws.send_text("héllo")
        assert ws.receive_message() == "héllo"
        ws.send_bytes(b"\x00\x01\xff")
        assert ws.receive_message() == b"\x00\x01\xff"
        ws.send_text("frag", final=False)
        ws.send_text("mented")
        assert ws.receive_message() == "fragmented"
        ws.send_text("")
        assert ws.receive_message() == ""
        close_cleanly(ws)


def test_large_messages_both_ways_with_flow_control() -> None:
    """1 MiB and 3 MiB each way: beyond every window, so credit must flow."""
    text = "x" * MIB
    blob = os.urandom(3 * MIB)
    with serve(echo) as srv, H2WSConnection(srv.port) as conn:
        ws = open_ws(conn)
        ws.send_text(text)
        assert ws.receive_message() == text
        ws.send_bytes(blob)
        assert ws.receive_message() == blob
        # Several in flight at once.
        for i in range(4):
            ws.send_bytes(blob[i * MIB : (i + 1) * MIB])
        for i in range(4):
            assert ws.receive_message() == blob[i * MIB : (i + 1) * MIB]
        close_cleanly(ws)


def test_permessage_deflate_is_negotiated_and_round_trips() -> None:
    with serve(echo) as srv, H2WSConnection(srv.port) as conn:
        ws = open_ws(conn, deflate=True)
        agreed = ws.header(b"sec-websocket-extensions")
        assert agreed is not None and agreed.startswith(b"permessage-deflate")
        assert [e.name for e in ws.extensions] == ["permessage-deflate"]
        text = "compress me " * 10000
        ws.send_text(text)
        assert ws.receive_message() == text
        # RSV1 set: the server's echo was compressed, and much smaller.
        assert ws.raw[-1][0] & 0x40
        assert sum(map(len, ws.raw)) < len(text) // 10
        blob = os.urandom(200_000)
        ws.send_bytes(blob)
        assert ws.receive_message() == blob
        close_cleanly(ws)


def test_no_deflate_without_an_offer() -> None:
    with serve(echo) as srv, H2WSConnection(srv.port) as conn:
        ws = open_ws(conn)
        assert ws.header(b"sec-websocket-extensions") is None
        ws.send_text("a" * 1000)
        assert ws.receive_message() == "a" * 1000
        assert not ws.raw[-1][0] & 0x40


def test_other_streams_keep_working_while_a_websocket_is_open() -> None:
    with serve(echo) as srv, H2WSConnection(srv.port) as conn:
        ws = open_ws(conn)
        second = open_ws(conn, "/second")
        for i in range(5):
            ws.send_text(f"m{i}")
            stream = conn.request(f"/get{i}")
            second.send_bytes(b"b%d" % i)
            assert conn.response(stream).body == f"plain /get{i}".encode()
            assert ws.receive_message() == f"m{i}"
            assert second.receive_message() == b"b%d" % i
        close_cleanly(second)
        ws.send_text("still here")
        assert ws.receive_message() == "still here"
        close_cleanly(ws)


def test_an_open_websocket_is_not_an_idle_connection() -> None:
    with serve(echo, timeout_keep_alive=1) as srv, H2WSConnection(srv.port) as conn:
        ws = open_ws(conn)
        seen = conn.quiet_for(2.5)
        assert not [e for e in seen if isinstance(e, h2.events.ConnectionTerminated)]
        ws.send_text("alive")
        assert ws.receive_message() == "alive"
        close_cleanly(ws)
        # Once the WebSocket is over, the idle timeout applies again.
        conn.until(lambda: conn.goaway is not None, timeout=5)


# ----------------------------------------------------------------------------- closing


def test_app_close_then_end_stream_after_the_clients_reply() -> None:
    recorder = Recorder()
    with serve(make_echo(recorder)) as srv, H2WSConnection(srv.port) as conn:
        ws = open_ws(conn)
        ws.send_text("close:4001:bye now")
        close = ws.receive_close()
        assert (close.code, close.reason) == (4001, "bye now")
        # The server waits for our close frame before ending its side.
        conn.quiet_for(0.3)
        assert not ws.finished
        ws.send(close.response())
        assert ws.wait_finished() == "end"
        ws.end()
        assert recorder.get("closed")["type"] == "websocket.disconnect"
        # The stream is fully closed on both sides; the connection goes on.
        assert conn.get("/after").body == b"plain /after"
        assert ws.reset is None


def test_client_close_reaches_the_app_and_is_echoed() -> None:
    recorder = Recorder()
    with serve(make_echo(recorder)) as srv, H2WSConnection(srv.port) as conn:
        ws = open_ws(conn)
        ws.send_text("one")
        assert ws.receive_message() == "one"
        ws.close(4321, "client says bye")
        echoed = ws.receive_close()
        assert echoed.code == 4321
        assert ws.wait_finished() == "end"
        ws.end()
        assert recorder.get("disconnect") == 4321
        assert conn.get("/after").status == 200


def test_client_end_stream_without_close_frame_is_abnormal() -> None:
    recorder = Recorder()
    with serve(make_echo(recorder)) as srv, H2WSConnection(srv.port) as conn:
        ws = open_ws(conn)
        ws.end()
        assert recorder.get("disconnect") == 1006
        assert ws.wait_finished() == "end"
        assert conn.get("/after").status == 200


@pytest.mark.parametrize(
    ("frame", "code"),
    [
        (masked_frame(0x1, b"hi", mask=False), 1002),  # unmasked client frame
        (masked_frame(0x1, b"\xff\xfe"), 1007),  # invalid UTF-8 text
        (masked_frame(0x3, b"x"), 1002),  # reserved opcode
        (masked_frame(0x9, b"p", fin=False), 1002),  # fragmented control frame
    ],
    ids=["unmasked", "bad-utf8", "reserved-opcode", "fragmented-ping"],
)
def test_protocol_error_closes_and_resets_the_stream(frame: bytes, code: int) -> None:
    recorder = Recorder()
    with serve(make_echo(recorder)) as srv, H2WSConnection(srv.port) as conn:
        ws = open_ws(conn)
        ws.send_raw(frame)
        close = ws.receive_close()
        assert close.code == code
        # Failing the WebSocket: the stream is reset, not left half-open.
        assert ws.wait_finished() == "reset"
        assert recorder.get("disconnect") == code
        assert conn.get("/after").status == 200


def test_max_size_closes_1009_and_resets() -> None:
    with serve(echo, ws_max_size=1024) as srv, H2WSConnection(srv.port) as conn:
        ws = open_ws(conn)
        ws.send_bytes(b"x" * 1000)
        assert ws.receive_message() == b"x" * 1000
        ws.send_bytes(b"y" * 2000)
        assert ws.receive_close().code == 1009
        assert ws.wait_finished() == "reset"
        assert conn.get("/after").status == 200


@pytest.mark.parametrize(
    ("path", "status", "code"),
    [
        ("/raise-before", 500, None),
        ("/return-before", 500, None),
        ("/raise-after", None, 1011),
        ("/return-after", None, 1000),
    ],
)
def test_app_errors_and_early_returns_on_a_stream(
    path: str, status: int | None, code: int | None
) -> None:
    """500 before the accept; after it 1011 (app raised) or 1000 (app returned), then END_STREAM."""
    with serve(wsapps.behave) as srv, H2WSConnection(srv.port) as conn:
        ws = conn.websocket(path)
        if status is not None:
            assert ws.wait_response() == status
            assert_complete_answer(ws)
        else:
            assert ws.wait_response() == 200
            ws.send_text("trigger")
            close = ws.receive_close()
            assert close.code == code
            ws.send(close.response())
            assert ws.wait_finished() == "end"
            ws.end()
        # The connection, and the app, go on serving.
        other = open_ws(conn, "/close")
        other.send_text("x")
        close = other.receive_close()
        assert (close.code, close.reason) == (4321, "bye now")


def test_starlette_and_fastapi_endpoints_over_a_stream() -> None:
    """Framework endpoints written for HTTP/1.1 work unchanged over RFC 8441."""
    with serve(wsapps.starlette_app()) as srv, H2WSConnection(srv.port) as conn:
        ws = open_ws(conn, "/echo", subprotocols=["v1"])
        assert ws.subprotocol == "v1"
        ws.send_text("hi")
        assert ws.receive_message() == "starlette: hi"
        close_cleanly(ws, 4100)
        refused = conn.websocket("/reject")
        assert refused.wait_response() == 403
    with serve(wsapps.fastapi_app()) as srv, H2WSConnection(srv.port) as conn:
        ws = open_ws(conn, "/rooms/lobby?token=secret")
        ws.send_text('{"msg": "hello"}')
        assert ws.receive_message() == '{"room":"lobby","data":{"msg":"hello"}}'
        close_cleanly(ws)
        refused = conn.websocket("/rooms/lobby?token=wrong")
        assert refused.wait_response() == 403


def test_ping_timeout_resets_the_stream_and_disconnects_the_app() -> None:
    recorder = Recorder()
    with (
        serve(make_echo(recorder), ws_ping_interval=0.2, ws_ping_timeout=0.3) as srv,
        H2WSConnection(srv.port) as conn,
    ):
        silent = conn.websocket("/silent", auto_pong=False)
        assert silent.wait_response() == 200
        answering = open_ws(conn, "/answering")
        started = time.monotonic()
        assert isinstance(silent.receive(), Ping)
        assert silent.wait_finished() == "reset"
        assert time.monotonic() - started < 5
        assert recorder.get("disconnect") == 1006
        # The stream whose client answers the pings stays open through several intervals.
        conn.quiet_for(1.0)
        assert not answering.finished
        answering.send_text("still here")
        assert answering.receive_message() == "still here"
        close_cleanly(answering)


def test_client_reset_is_a_1006_disconnect() -> None:
    recorder = Recorder()
    with serve(make_echo(recorder)) as srv, H2WSConnection(srv.port) as conn:
        ws = open_ws(conn)
        ws.send_text("x")
        assert ws.receive_message() == "x"
        ws.reset_stream(h2.errors.ErrorCodes.CANCEL)
        assert recorder.get("disconnect") == 1006
        assert conn.get("/after").status == 200


def test_connection_loss_is_a_1006_disconnect() -> None:
    recorder = Recorder()
    with serve(make_echo(recorder)) as srv:
        conn = H2WSConnection(srv.port)
        open_ws(conn)
        conn.close()
        assert recorder.get("disconnect") == 1006


def test_data_after_the_closing_handshake_is_ignored() -> None:
    with serve(echo) as srv, H2WSConnection(srv.port) as conn:
        ws = open_ws(conn)
        ws.close(1000)
        assert ws.receive_close().code == 1000
        assert ws.wait_finished() == "end"
        # A frame after our close frame is a client bug; the server must shrug.
        ws.send_raw(masked_frame(0x1, b"late"))
        ws.end()
        assert conn.get("/after").status == 200


def test_close_not_answered_resets_the_stream_after_the_close_timeout() -> None:
    recorder = Recorder()
    with (
        serve(make_echo(recorder), ws_close_timeout=0.5) as srv,
        H2WSConnection(srv.port) as conn,
    ):
        ws = open_ws(conn)
        ws.send_text("close:1000:")
        assert ws.receive_close().code == 1000
        # We never answer: the server gives up and fails the WebSocket.
        started = time.monotonic()
        assert ws.wait_finished() == "reset"
        assert time.monotonic() - started < 5
        assert recorder.get("closed") == {
            "type": "websocket.disconnect",
            "code": 1006,
            "reason": "close handshake timed out",
        }
        assert conn.get("/after").status == 200


def test_client_that_never_ends_its_side_gets_the_stream_reset() -> None:
    """After the closing handshake the client must end its side too, in time."""
    with (
        serve(echo, ws_close_timeout=0.5, timeout_keep_alive=1) as srv,
        H2WSConnection(srv.port) as conn,
    ):
        ws = open_ws(conn)
        ws.close(1000)
        assert ws.receive_close().code == 1000
        assert ws.wait_finished() == "end"
        # No END_STREAM from us: the server does not keep the stream forever.
        conn.until(lambda: ws.reset is not None, timeout=5)
        # With nothing open, the connection is idle again and goes away.
        conn.until(lambda: conn.goaway is not None, timeout=5)


def make_slow_accept() -> Any:
    """Accepts only once ``GET /go`` was requested (then echoes)."""
    state: dict[str, asyncio.Event] = {}

    async def app(scope: Scope, receive: Any, send: Any) -> None:
        go = state.setdefault("go", asyncio.Event())
        if scope["type"] == "http":
            go.set()
            await plain(scope, receive, send)
        elif scope["type"] == "websocket":
            await receive()
            await go.wait()
            await echo(scope, _replay({"type": "websocket.connect"}, receive), send)

    return app


def _replay(first: dict[str, Any], receive: Any) -> Any:
    pending = [first]

    async def again() -> Any:
        return pending.pop() if pending else await receive()

    return again


def test_frames_before_the_accept_are_held_within_one_window() -> None:
    """A client that sends before the 200 cannot make the server buffer more."""
    framer = Connection(ConnectionType.CLIENT)
    chunk = b"z" * (64 * 1024)
    with serve(make_slow_accept()) as srv, H2WSConnection(srv.port) as conn:
        ws = conn.websocket("/ws")
        sent = 0
        messages = 0
        with pytest.raises(Stalled) as stalled:
            while sent < 64 * MIB:
                frame = framer.send(BytesMessage(data=chunk))
                sent += conn.send_data(ws.stream_id, frame, stall=1.0)
                messages += 1
        sent += stalled.value.sent
        assert sent < 4 * MIB, sent
        assert ws.status == 0
        assert conn.get("/go").status == 200
        assert ws.wait_response() == 200
        ws.send_raw(stalled.value.rest)
        for _ in range(messages + 1):
            assert ws.receive_message() == chunk
        close_cleanly(ws)


def test_graceful_shutdown_closes_1001_and_goes_away() -> None:
    recorder = Recorder()
    srv = ThreadServer(make_echo(recorder)).start()
    stopper = threading.Thread(target=srv.stop)
    try:
        with H2WSConnection(srv.port) as conn:
            ws = open_ws(conn)
            ws.send_text("before")
            assert ws.receive_message() == "before"
            stopper.start()
            close = ws.receive_close()
            assert close.code == 1001
            # No GOAWAY while the stream is open: h2 clients fail open streams on one.
            assert conn.goaway is None
            assert recorder.get("disconnect") == 1001
            ws.send(close.response())
            assert ws.wait_finished() == "end"
            ws.end()
            # Nothing left: the server goes away, closes the connection and stops.
            with pytest.raises(EOFError):
                conn.quiet_for(TIMEOUT)
                conn.pump(TIMEOUT)
            assert conn.goaway is not None and conn.goaway.error_code == 0
            stopper.join(TIMEOUT)
            assert not stopper.is_alive()
    finally:
        if not stopper.is_alive() and not stopper.ident:
            srv.stop()


# ----------------------------------------------------------------------------- memory


def test_app_that_never_reads_closes_the_window_and_bounds_memory() -> None:
    """A 200 MiB flood: held back while the app does not read, then let through.

    While the app reads nothing the server must stop crediting the stream
    (the client's window closes for good) instead of buffering; once the
    app reads, the flood flows through with the server's memory flat.
    """
    chunk = os.urandom(256 * 1024)
    count = 200 * MIB // len(chunk)
    with cli_server("tests.test_ws_h2:flood_app", "--port", "0", "--no-access-log") as srv:
        assert srv.port is not None
        with H2WSConnection(srv.port, timeout=30) as conn:
            ws = open_ws(conn)
            assert ws.ws is not None
            assert conn.get("/warm-up").status == 200
            with RSSSampler(srv.proc.pid) as rss:
                sent = messages = 0
                with pytest.raises(Stalled) as stalled:
                    while messages < count:
                        frame = ws.ws.send(BytesMessage(data=chunk))
                        messages += 1
                        sent += conn.send_data(ws.stream_id, frame, stall=1.0)
                held_at = sent + stalled.value.sent
                held = rss.growth
                # A few MiB (the app's message queue and one stream window)
                # went in before the window closed.
                assert held_at < 20 * MIB, held_at
                assert conn.get("/release").status == 200
                ws.send_raw(stalled.value.rest)
                while messages < count:
                    ws.send_bytes(chunk)
                    messages += 1
                ws.send_text("end")
                counted = int(ws.receive_message())
            print(
                f"flood: held at {held_at / MIB:.1f} MiB (RSS +{held / MIB:.1f} MiB); "
                f"after {count * len(chunk) // MIB} MiB RSS +{rss.growth / MIB:.1f} MiB"
            )
            assert counted == count * len(chunk)
            assert held < 50 * MIB, f"held back: RSS grew {held / MIB:.1f} MiB"
            assert rss.growth < 50 * MIB, f"RSS grew {rss.growth / MIB:.1f} MiB"
            close_cleanly(ws)


def test_client_that_never_reads_cannot_grow_server_memory() -> None:
    """An app sending without end to a stream whose client grants no credit.

    The client's window stops the DATA; the app's ``send`` then waits on the
    stream's send buffer instead of queueing gigabytes.  Credit given later
    lets the flood through again.
    """
    with cli_server(
        "wsapps:behave", "--port", "0", "--no-access-log", "--ws-ping-interval", "0"
    ) as srv:
        assert srv.port is not None
        with H2WSConnection(srv.port, timeout=30) as conn:
            warm = open_ws(conn, "/flood?mib=1")
            conn.until(lambda: sum(map(len, warm.raw)) >= MIB)  # imports, first buffers
            conn.auto_ack = False
            with RSSSampler(srv.proc.pid) as rss:
                ws = open_ws(conn, "/flood")
                conn.quiet_for(3.0)  # the app would produce gigabytes in this time
                held = sum(map(len, ws.raw))
                assert held <= 128 * 1024, held  # at most the windows
                conn.auto_ack = True
                conn.conn.acknowledge_received_data(held, ws.stream_id)
                conn.flush()
                conn.until(lambda: sum(map(len, ws.raw)) > 20 * MIB)
            assert rss.growth < 50 * MIB, f"RSS grew {rss.growth / MIB:.1f} MiB"


# ----------------------------------------------------------------------------- Autobahn

BRIDGE = Path(__file__).with_name("autobahn_h2_bridge.py")


@contextlib.contextmanager
def h2_bridge(upstream_port: int) -> Iterator[int]:
    """Run tests/autobahn_h2_bridge.py in front of the server; yields its port."""
    proc = subprocess.Popen(
        [sys.executable, str(BRIDGE), f"127.0.0.1:{upstream_port}"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        match = re.search(r"bridge listening on [^ ]+:(\d+)", line)
        assert match, f"bridge did not start: {line}{proc.stdout.read()}"
        yield int(match.group(1))
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)


def test_bridge_relays_handshake_frames_and_refusals() -> None:
    """The bridge itself, with an ordinary RFC 6455 client (websockets)."""
    recorder = Recorder()
    with serve(make_echo(recorder), http_version="2") as srv, h2_bridge(srv.port) as port:
        url = f"ws://127.0.0.1:{port}/path?q=1"
        with ws_connect(url, subprotocols=["p1"], proxy=None) as client:
            assert client.subprotocol == "p1"
            extensions = client.response.headers.get("sec-websocket-extensions", "")
            assert extensions.startswith("permessage-deflate")
            client.send("text " * 1000)
            assert client.recv(TIMEOUT) == "text " * 1000
            client.send(b"\x00" * 300_000)
            assert client.recv(TIMEOUT) == b"\x00" * 300_000
        scope = recorder.get("scope")
        assert (scope["http_version"], scope["path"]) == ("2", "/path")
        assert recorder.get("disconnect") == 1000
    with serve(deny, http_version="2") as srv, h2_bridge(srv.port) as port:
        with pytest.raises(InvalidStatus) as refused:
            ws_connect(f"ws://127.0.0.1:{port}/", proxy=None)
        assert refused.value.response.status_code == 401
        assert refused.value.response.body == b"log in first"


def _case_key(case_id: str) -> tuple[int, ...]:
    return tuple(int(part) for part in case_id.split("."))


@pytest.mark.autobahn
@pytest.mark.timeout(1800)
def test_autobahn_over_h2(tmp_path: Path) -> None:
    """Autobahn's fuzzing client, its frames carried over RFC 8441 streams.

    The server serves HTTP/2 only (``--http 2``), so every case went through
    an extended CONNECT.  Keepalive pings are off: an unsolicited ping in the
    middle of a case is a frame the case does not expect, and the slowest
    cases run longer than the default 20 s interval.
    """
    kosoku = ensure_kosoku()
    include = selection()
    report_dir = tmp_path / "reports"
    # One case at a time: with two at once, case 9.1.6 (a 16 MiB text message)
    # intermittently ends after ~80 ms as "did not receive message" while the
    # server logs nothing at debug level and the bridge sees no error; serially
    # it passes every time.  Until that is understood the HTTP/2 run stays
    # serial (the 337 cases take about a minute).
    args = [str(kosoku), "-m", "fuzzingclient", "-o", str(report_dir), "-p", "1"]
    for case in include:
        args += ["-i", case]
    with (
        cli_server(
            "tests.test_ws_h2:autobahn_echo",
            "--port",
            "0",
            "--http",
            "2",
            "--no-access-log",
            "--ws-ping-interval",
            "0",
        ) as srv,
        h2_bridge(srv.port or 0) as port,
    ):
        started = time.monotonic()
        run = subprocess.run(
            [*args, f"127.0.0.1:{port}"], capture_output=True, text=True, timeout=1700
        )
        elapsed = time.monotonic() - started
        server_output = srv.output
    index_file = report_dir / "index.json"
    if not index_file.exists():
        pytest.fail(f"kosoku wrote no report:\n{run.stdout}\n{run.stderr}\n{server_output}")
    results = load_results(report_dir)
    assert results, "no case ran"
    if include == DEFAULT_CASES:
        assert len(results) == 337, len(results)  # 517 less 180 compression cases
    elif not include:
        assert len(results) == 517, len(results)
    counts: dict[str, int] = {}
    for entry in results.values():
        counts[entry["behavior"]] = counts.get(entry["behavior"], 0) + 1
    print(f"Autobahn over HTTP/2: {len(results)} cases in {elapsed:.0f} s: {counts}")
    if os.environ.get("AUTOBAHN_WRITE_SUMMARY") == "1":
        write_summary("HTTP/2 (RFC 8441)", results, include, elapsed)
    failing = sorted(
        (case_id for case_id, entry in results.items() if entry["behavior"] not in PASSING),
        key=_case_key,
    )
    assert not failing, "Autobahn cases not passing over HTTP/2:\n" + "\n".join(
        f"  {case_id} {results[case_id]['behavior']} / {results[case_id]['behaviorClose']}"
        for case_id in failing
    )
