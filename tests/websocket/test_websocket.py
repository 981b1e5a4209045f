"""WebSocket over HTTP/1.1 (RFC 6455) through the ASGI ``websocket`` scope (spec 2.4).

Every test talks to a real server: the ``websockets`` client library for what a
well-behaved client does, and a raw socket with hand-built frames when the
exact bytes matter (bad handshakes, broken framing, a client that never
answers pings).  The apps live in :mod:`tests.apps.ws` and report what they saw
through :data:`tests.apps.ws.EVENTS`; the memory tests run the server as a CLI
subprocess so that psutil measures its RSS alone.
"""

from __future__ import annotations

import contextlib
import json
import os
import queue
import random
import socket
import ssl
import subprocess
import threading
import time
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.sync.client import ClientConnection, connect
from wsproto.connection import Connection, ConnectionType
from wsproto.events import BytesMessage, CloseConnection, Ping, Pong, TextMessage
from wsproto.frame_protocol import XorMaskerSimple

from asgiri.protocol import ws_coalesce, wsproto_internals
from asgiri.protocol.ws import CloseReceived, WSSession
from asgiri.protocol.ws_handshake import negotiate_extensions
from asgiri.protocol.wsproto_internals import CMasker, IntMasker
from tests.apps import ws as wsapps
from tests.support.h2_client import read_to_eof
from tests.support.processes import RSSSampler
from tests.support.servers import ThreadServer, cli_server, serve
from tests.support.ws_client import (
    BINARY,
    CLOSE,
    CONT,
    PING,
    PONG,
    TEXT,
    Frame,
    RawWS,
    frame,
    handshake_request,
)

TIMEOUT = 10.0
MIB = 1024 * 1024

# Opcodes (RFC 6455 5.2).


# ----------------------------------------------------------------------------- helpers


@pytest.fixture(autouse=True)
def _fresh_events() -> Iterator[None]:
    wsapps.drain_events()
    yield


def event(name: str, timeout: float = TIMEOUT) -> Any:
    """The next thing the app recorded under ``name`` (others are skipped)."""
    deadline = time.monotonic() + timeout
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise AssertionError(f"the app recorded no {name!r}")
        try:
            key, value = wsapps.EVENTS.get(timeout=remaining)
        except queue.Empty:
            continue
        if key == name:
            return value


def ws_connect(srv: Any, path: str = "/", **kwargs: Any) -> ClientConnection:
    port = srv if isinstance(srv, int) else srv.port
    kwargs.setdefault("open_timeout", TIMEOUT)
    kwargs.setdefault("close_timeout", TIMEOUT)
    kwargs.setdefault("max_size", None)
    scheme = "wss" if "ssl" in kwargs else "ws"
    return connect(f"{scheme}://127.0.0.1:{port}{path}", proxy=None, **kwargs)


def closed_by_server(ws: ClientConnection) -> ConnectionClosed:
    """Wait for the server to close; returns the exception the client saw."""
    with pytest.raises(ConnectionClosed) as info:
        ws.recv(timeout=TIMEOUT)
    return info.value


def close_payload(code: int, reason: bytes = b"") -> bytes:
    return code.to_bytes(2, "big") + reason


def raw_response(port: int, data: bytes) -> tuple[int, dict[bytes, bytes], bytes]:
    """Send ``data``, read one response (the server closes after it)."""
    with socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT) as sock:
        sock.sendall(data)
        raw = b""
        while True:
            chunk = sock.recv(65536)
            if not chunk:
                break
            raw += chunk
    head, _, body = raw.partition(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    status = int(lines[0].split()[1])
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(b":")
        headers[name.strip().lower()] = value.strip()
    return status, headers, body


def assert_still_serving(port: int) -> None:
    with ws_connect(port, "/") as ws:
        ws.send("still here")
        assert ws.recv(timeout=TIMEOUT) == "still here"


# ----------------------------------------------------------------------------- scope


def test_scope_per_spec() -> None:
    with serve(wsapps.scope_app, lifespan="on") as srv:
        ws = ws_connect(
            srv,
            "/caf%C3%A9/a%2Fb?x=1&y=%20",
            subprotocols=["chat", "superchat"],
            additional_headers={"X-Custom": "Mixed Value"},
        )
        with ws:
            client_port = ws.local_address[1]
            assert ws.subprotocol == "chat"
            assert ws.response.headers["x-extra"] == "yes"
            assert ws.response.headers["set-cookie"] == "a=1"
            assert ws.response.headers["sec-websocket-protocol"] == "chat"
            ws.send("hello")
            assert ws.recv(timeout=TIMEOUT) == "thanks"
        server_port = srv.port
    scope = event("scope")
    assert scope["type"] == "websocket"
    assert scope["asgi"] == {"version": "3.0", "spec_version": "2.4"}
    assert scope["http_version"] == "1.1"
    assert scope["scheme"] == "ws"
    assert "method" not in scope
    assert scope["path"] == "/café/a/b"
    assert scope["raw_path"] == b"/caf%C3%A9/a%2Fb"
    assert scope["query_string"] == b"x=1&y=%20"
    assert scope["root_path"] == ""
    assert scope["client"] == ("127.0.0.1", client_port)
    assert scope["server"] == ("127.0.0.1", server_port)
    assert scope["subprotocols"] == ["chat", "superchat"]
    assert scope["state"] == {"greeting": "hi"}
    assert "websocket.http.response" in scope["extensions"]
    assert "tls" not in scope["extensions"]
    headers = scope["headers"]
    assert all(isinstance(n, bytes) and isinstance(v, bytes) for n, v in headers)
    assert all(n == n.lower() for n, _ in headers)
    names = dict(headers)
    assert names[b"x-custom"] == b"Mixed Value"
    assert names[b"upgrade"] == b"websocket"
    assert names[b"sec-websocket-version"] == b"13"
    assert names[b"sec-websocket-protocol"] == b"chat, superchat"
    assert b"sec-websocket-key" in names
    assert event("connect") == {"type": "websocket.connect"}
    assert event("message") == {"type": "websocket.receive", "text": "hello"}
    after = event("after")
    assert after["type"] == "websocket.disconnect"
    assert after["code"] == 1000


def test_scope_root_path_and_no_subprotocol() -> None:
    with serve(wsapps.scope_app, root_path="/api") as srv, ws_connect(srv, "/chat") as ws:
        assert ws.subprotocol is None
        assert "sec-websocket-protocol" not in ws.response.headers
        ws.send(b"\x00\x01")
        assert ws.recv(timeout=TIMEOUT) == "thanks"
    scope = event("scope")
    assert scope["root_path"] == "/api"
    assert scope["path"] == "/api/chat"
    assert scope["raw_path"] == b"/api/chat"
    assert scope["subprotocols"] == []
    assert event("message") == {"type": "websocket.receive", "bytes": b"\x00\x01"}


def test_wss_scope_and_echo(cert_files: tuple[str, str]) -> None:
    certfile, keyfile = cert_files
    context = ssl.create_default_context(cafile=certfile)
    with (
        serve(wsapps.scope_app, certfile=certfile, keyfile=keyfile) as srv,
        connect(
            f"wss://localhost:{srv.port}/secure?tls=1",
            ssl=context,
            proxy=None,
            open_timeout=TIMEOUT,
            subprotocols=["p2"],
        ) as ws,
    ):
        assert ws.subprotocol == "p2"
        ws.send("over tls")
        assert ws.recv(timeout=TIMEOUT) == "thanks"
    scope = event("scope")
    assert scope["scheme"] == "wss"
    assert scope["http_version"] == "1.1"
    assert scope["path"] == "/secure"
    assert scope["query_string"] == b"tls=1"
    assert "tls" in scope["extensions"]
    assert "websocket.http.response" in scope["extensions"]
    assert event("message") == {"type": "websocket.receive", "text": "over tls"}


# ----------------------------------------------------------------------------- messages


def test_echo_text_and_bytes() -> None:
    with serve(wsapps.echo) as srv, ws_connect(srv, "/") as ws:
        for message in ["hello", "", "ünïcödé ✓", b"\x00\xff" * 10, b"", "x" * 70000]:
            ws.send(message)
            assert ws.recv(timeout=TIMEOUT) == message
        big = os.urandom(MIB)
        ws.send(big)
        assert ws.recv(timeout=TIMEOUT) == big


def test_client_fragmented_message_via_library() -> None:
    with serve(wsapps.echo) as srv, ws_connect(srv, "/") as ws:
        ws.send(iter(["frag", "men", "ted"]))
        assert ws.recv(timeout=TIMEOUT) == "fragmented"
        ws.send(iter([b"\x01", b"\x02\x03"]))
        assert ws.recv(timeout=TIMEOUT) == b"\x01\x02\x03"


# ----------------------------------------------------------------------------- closing


def test_app_close_with_code_and_reason() -> None:
    with serve(wsapps.behave) as srv, ws_connect(srv, "/close") as ws:
        ws.send("go")
        closed = closed_by_server(ws)
        assert closed.rcvd is not None
        assert (closed.rcvd.code, closed.rcvd.reason) == (4321, "bye now")
        assert closed.rcvd_then_sent  # the client answered: a clean closing handshake
        assert event("closed") is True
        after = event("after-close")
        assert after["type"] == "websocket.disconnect"


def test_client_close_reaches_app_with_code_and_reason() -> None:
    with serve(wsapps.behave) as srv, ws_connect(srv, "/wait-close") as ws:
        ws.send("one")
        ws.send(b"two")
        assert event("message") == {"type": "websocket.receive", "text": "one"}
        assert event("message") == {"type": "websocket.receive", "bytes": b"two"}
        ws.close(4000, "client bye")
        # The server echoed our close code: the closing handshake completed cleanly.
        assert ws.close_code == 4000
        disconnect = event("disconnect")
    assert disconnect == {"type": "websocket.disconnect", "code": 4000, "reason": "client bye"}


def test_client_close_without_code_is_1005() -> None:
    with serve(wsapps.behave) as srv, RawWS(srv.port, "/wait-close") as raw:
        raw.send(frame(CLOSE))
        answer = raw.recv_frame()
        assert answer.opcode == CLOSE
        raw.expect_eof()
        disconnect = event("disconnect")
    assert disconnect["code"] == 1005


def test_client_going_away_is_1006() -> None:
    with serve(wsapps.behave) as srv:
        raw = RawWS(srv.port, "/wait-close")
        raw.send(frame(TEXT, b"hi"))
        assert event("message")["text"] == "hi"
        raw.close()
        assert event("disconnect")["code"] == 1006


def test_close_before_accept_is_403() -> None:
    with serve(wsapps.behave) as srv:
        with pytest.raises(InvalidStatus) as info:
            ws_connect(srv, "/deny")
        assert info.value.response.status_code == 403
        assert_still_serving_behave(srv.port)


def assert_still_serving_behave(port: int) -> None:
    with ws_connect(port, "/close") as ws:
        ws.send("x")
        assert closed_by_server(ws).rcvd.code == 4321  # type: ignore[union-attr]


@pytest.mark.parametrize("parts", [1, 3])
def test_denial_response_extension(parts: int) -> None:
    with serve(wsapps.behave) as srv:
        with pytest.raises(InvalidStatus) as info:
            ws_connect(srv, f"/denial?status=401&parts={parts}")
        response = info.value.response
        assert response.status_code == 401
        assert response.headers["x-denied"] == "1"
        assert response.headers["content-type"] == "text/plain"
        assert response.body == b"".join(b"denied part %d;" % i for i in range(parts))
        # The same over a raw socket: a real HTTP response, then the connection closes.
        status, headers, body = raw_response(
            srv.port, handshake_request(f"/denial?status=418&parts={parts}")
        )
        assert status == 418
        assert headers[b"x-denied"] == b"1"
        if parts > 1:
            assert headers.get(b"transfer-encoding") == b"chunked"
            assert b"denied part 2;" in body
        else:
            assert body == b"denied part 0;"


@pytest.mark.parametrize(
    ("path", "status", "code"),
    [
        ("/raise-before", 500, None),
        ("/return-before", 500, None),
        ("/bad-subprotocol", 500, None),
        ("/send-before-accept", 500, None),
        ("/raise-after", None, 1011),
        ("/accept-twice", None, 1011),
        ("/return-after", None, 1000),
    ],
)
def test_app_errors_and_early_returns(path: str, status: int | None, code: int | None) -> None:
    with serve(wsapps.behave) as srv:
        if status is not None:
            with pytest.raises(InvalidStatus) as info:
                ws_connect(srv, path)
            assert info.value.response.status_code == status
        else:
            with ws_connect(srv, path) as ws:
                ws.send("trigger")
                closed = closed_by_server(ws)
                assert closed.rcvd is not None
                assert closed.rcvd.code == code
        assert_still_serving_behave(srv.port)


# ----------------------------------------------------------------------------- bad handshakes


@pytest.mark.parametrize(
    ("request_bytes", "status"),
    [
        (
            b"GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 8\r\n\r\n",
            426,
        ),
        (
            b"GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n",
            426,
        ),
        (
            b"GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            b"Sec-WebSocket-Version: 13\r\n\r\n",
            400,
        ),
        (
            b"GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            b"Sec-WebSocket-Key: c2hvcnQ=\r\nSec-WebSocket-Version: 13\r\n\r\n",
            400,
        ),
        (
            b"GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            b"Sec-WebSocket-Key: not*base64*at*all!!!!!==\r\nSec-WebSocket-Version: 13\r\n\r\n",
            400,
        ),
        (
            b"POST / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
            b"Content-Length: 0\r\n\r\n",
            400,
        ),
    ],
    ids=["version-8", "no-version", "no-key", "short-key", "bad-key", "post"],
)
def test_bad_handshakes(request_bytes: bytes, status: int) -> None:
    with serve(wsapps.echo) as srv:
        got, headers, _ = raw_response(srv.port, request_bytes)
        assert got == status
        if status == 426:
            assert headers[b"sec-websocket-version"] == b"13"
        assert wsapps.EVENTS.empty()  # the app never saw it
        assert_still_serving(srv.port)


def test_ws_none_serves_upgrade_as_plain_http() -> None:
    with serve(wsapps.scope_app, ws="none") as srv:
        status, _, body = raw_response(
            srv.port, handshake_request("/plain", extra=b"Connection: close\r\n")
        )
        assert status == 200
        assert body == b"plain http"
        scope = event("http-scope")
        assert scope["type"] == "http"
        assert scope["method"] == "GET"
        assert scope["path"] == "/plain"
        with pytest.raises(InvalidStatus) as info:
            ws_connect(srv, "/plain")
        assert info.value.response.status_code == 200


# ----------------------------------------------------------------------------- permessage-deflate


def test_permessage_deflate_negotiated_by_default() -> None:
    with serve(wsapps.echo) as srv, ws_connect(srv, "/") as ws:
        offered = ws.request.headers["sec-websocket-extensions"]
        assert "permessage-deflate" in offered
        assert "permessage-deflate" in ws.response.headers["sec-websocket-extensions"]
        assert [ext.name for ext in ws.protocol.extensions] == ["permessage-deflate"]
        text = "compress me " * 50000
        ws.send(text)
        assert ws.recv(timeout=TIMEOUT) == text
        ws.send(b"\x00" * 100000)
        assert ws.recv(timeout=TIMEOUT) == b"\x00" * 100000
        for size in (0, 1, 1000):
            blob = os.urandom(size)
            ws.send(blob)
            assert ws.recv(timeout=TIMEOUT) == blob


def test_permessage_deflate_off() -> None:
    with serve(wsapps.echo, ws_per_message_deflate=False) as srv, ws_connect(srv, "/") as ws:
        assert "permessage-deflate" in ws.request.headers["sec-websocket-extensions"]
        assert "sec-websocket-extensions" not in ws.response.headers
        assert ws.protocol.extensions == []
        ws.send("plain " * 1000)
        assert ws.recv(timeout=TIMEOUT) == "plain " * 1000


def test_no_compression_when_not_offered() -> None:
    with serve(wsapps.echo) as srv, ws_connect(srv, "/", compression=None) as ws:
        assert "sec-websocket-extensions" not in ws.response.headers
        ws.send("x" * 1000)
        assert ws.recv(timeout=TIMEOUT) == "x" * 1000


# ----------------------------------------------------------------------------- ws_max_size


@pytest.mark.parametrize("compression", ["deflate", None])
def test_max_size_closes_1009(compression: str | None) -> None:
    with serve(wsapps.echo, ws_max_size=1024) as srv:
        with ws_connect(srv, "/", compression=compression) as ws:
            ws.send(b"a" * 1024)  # exactly the limit is fine
            assert ws.recv(timeout=TIMEOUT) == b"a" * 1024
            ws.send("b" * 1025)
            closed = closed_by_server(ws)
            assert closed.rcvd is not None
            assert closed.rcvd.code == 1009
        assert event("disconnect")["code"] == 1009
        # Fragments that only add up to too much are refused the same way.
        with ws_connect(srv, "/", compression=compression) as ws:
            # The close may beat the end of our send: either way the code is 1009.
            with contextlib.suppress(ConnectionClosed):
                ws.send(iter([b"c" * 600, b"c" * 600]))
            assert closed_by_server(ws).rcvd.code == 1009  # type: ignore[union-attr]
        assert_still_serving(srv.port)


# ----------------------------------------------------------------------------- keepalive


def test_ping_timeout_closes_silent_client() -> None:
    with (
        serve(wsapps.behave, ws_ping_interval=0.2, ws_ping_timeout=0.3) as srv,
        RawWS(srv.port, "/wait-close") as raw,
    ):
        started = time.monotonic()
        ping = raw.recv_frame()
        assert ping.opcode == PING
        assert 0.1 < time.monotonic() - started < 2
        raw.expect_eof()  # never answered: the server gives up
        assert time.monotonic() - started < 5
        assert event("disconnect")["code"] == 1006


def test_ping_answered_by_raw_client_keeps_connection() -> None:
    with (
        serve(wsapps.behave, ws_ping_interval=0.2, ws_ping_timeout=0.3) as srv,
        RawWS(srv.port, "/wait-close") as raw,
    ):
        for _ in range(4):
            ping = raw.recv_frame()
            assert ping.opcode == PING
            raw.send(frame(PONG, ping.payload))
        raw.send(frame(TEXT, b"alive"))
        assert event("message")["text"] == "alive"


def test_ping_keepalive_with_websockets_client() -> None:
    with (
        serve(wsapps.echo, ws_ping_interval=0.2, ws_ping_timeout=0.3) as srv,
        ws_connect(srv, "/", ping_interval=None) as ws,
    ):
        time.sleep(1.5)  # several ping intervals; the library answers each ping
        ws.send("still open")
        assert ws.recv(timeout=TIMEOUT) == "still open"


def test_server_answers_client_ping() -> None:
    with serve(wsapps.echo) as srv, RawWS(srv.port, "/") as raw:
        raw.send(frame(PING, b"are you there"))
        pong = raw.recv_frame()
        assert (pong.opcode, pong.payload) == (PONG, b"are you there")
        raw.send(frame(PONG, b"unsolicited"))  # ignored
        raw.send(frame(TEXT, b"ok"))
        reply = raw.recv_frame()
        assert (reply.opcode, reply.payload) == (TEXT, b"ok")


# ------------------------------------------------------------------- framing over a raw socket


def test_frames_sent_with_the_handshake_are_kept() -> None:
    early = frame(TEXT, b"early bird")
    with serve(wsapps.echo) as srv, RawWS(srv.port, "/", early=early) as raw:
        reply = raw.recv_frame()
        assert (reply.opcode, reply.payload) == (TEXT, b"early bird")


def test_fragmented_messages_and_control_frames_between() -> None:
    with serve(wsapps.echo) as srv, RawWS(srv.port, "/") as raw:
        raw.send(frame(TEXT, b"Hel", fin=False) + frame(CONT, b"lo", fin=False))
        raw.send(frame(PING, b"mid") + frame(CONT, b" world"))
        pong = raw.recv_frame()
        assert (pong.opcode, pong.payload) == (PONG, b"mid")
        reply = raw.recv_frame()
        assert (reply.fin, reply.opcode, reply.payload) == (True, TEXT, b"Hello world")
        # Binary in one-byte fragments, and a UTF-8 character split across fragments.
        raw.send(b"".join(frame(CONT if i else BINARY, bytes([i]), fin=i == 4) for i in range(5)))
        reply = raw.recv_frame()
        assert (reply.opcode, reply.payload) == (BINARY, bytes(range(5)))
        snowman = "☃".encode()
        raw.send(frame(TEXT, snowman[:1], fin=False) + frame(CONT, snowman[1:]))
        reply = raw.recv_frame()
        assert (reply.opcode, reply.payload) == (TEXT, snowman)
        # Empty fragments, and a pong between fragments.
        raw.send(frame(TEXT, b"", fin=False) + frame(PONG, b"p") + frame(CONT, b""))
        reply = raw.recv_frame()
        assert (reply.opcode, reply.payload) == (TEXT, b"")
        # Client close in the middle of nothing: the server echoes it.
        raw.send(frame(CLOSE, close_payload(1000, b"done")))
        assert raw.recv_frame().close_code == 1000
        raw.expect_eof()
    assert event("disconnect") == {"type": "websocket.disconnect", "code": 1000, "reason": "done"}


@pytest.mark.parametrize(
    ("frames", "code"),
    [
        (frame(TEXT, b"\xff\xfe"), 1007),
        (frame(TEXT, b"ok \xed\xa0\x80 surrogate"), 1007),
        (frame(TEXT, b"\xce", fin=False) + frame(CONT, b"\xba\xe1\xbd\xb9\xcf\x83\xff"), 1007),
        (frame(CLOSE, close_payload(1000, b"\xff")), 1007),
        (frame(TEXT, b"rsv1", rsv=4), 1002),
        (frame(TEXT, b"rsv2", rsv=2), 1002),
        (frame(BINARY, b"rsv3", rsv=1), 1002),
        (frame(PING, b"rsv", rsv=7), 1002),
        (frame(0x3, b"reserved data opcode"), 1002),
        (frame(0x7, b""), 1002),
        (frame(0xB, b"reserved control opcode"), 1002),
        (frame(0xF, b""), 1002),
        (frame(PING, b"x" * 126), 1002),
        (frame(PONG, b"x" * 200), 1002),
        (frame(CLOSE, close_payload(1000, b"r" * 124)), 1002),
        (frame(PING, b"fragmented ping", fin=False), 1002),
        (frame(CONT, b"continuation first"), 1002),
        (frame(TEXT, b"a", fin=False) + frame(TEXT, b"b"), 1002),
        (frame(TEXT, b"unmasked", masked=False), 1002),
        (frame(CLOSE, b"\x03"), 1002),
        (frame(CLOSE, close_payload(999)), 1002),
        (frame(CLOSE, close_payload(1005)), 1002),
        (frame(CLOSE, close_payload(1006)), 1002),
        (frame(CLOSE, close_payload(1016)), 1002),
        (frame(CLOSE, close_payload(5000)), 1002),
    ],
    ids=[
        "invalid-utf8",
        "surrogate",
        "invalid-utf8-across-fragments",
        "invalid-utf8-close-reason",
        "rsv1-without-extension",
        "rsv2",
        "rsv3",
        "rsv-on-ping",
        "opcode-3",
        "opcode-7",
        "opcode-11",
        "opcode-15",
        "ping-126-bytes",
        "pong-200-bytes",
        "close-126-bytes",
        "fragmented-ping",
        "continuation-without-start",
        "new-message-inside-fragmented",
        "unmasked",
        "close-1-byte",
        "close-code-999",
        "close-code-1005",
        "close-code-1006",
        "close-code-1016",
        "close-code-5000",
    ],
)
def test_protocol_violations_close_with_code(frames: bytes, code: int) -> None:
    with serve(wsapps.echo) as srv:
        with RawWS(srv.port, "/") as raw:
            raw.send(frames)
            raw.expect_close(code)
        assert event("disconnect")["code"] == code
        assert_still_serving(srv.port)


def test_rsv1_is_fine_with_deflate_agreed() -> None:
    """With permessage-deflate agreed, RSV1 marks a compressed message (not an error)."""
    compressor = zlib.compressobj(wbits=-15)
    body = compressor.compress(b"squeeze") + compressor.flush(zlib.Z_SYNC_FLUSH)
    assert body.endswith(b"\x00\x00\xff\xff")
    offer = b"Sec-WebSocket-Extensions: permessage-deflate\r\n"
    with serve(wsapps.echo) as srv, RawWS(srv.port, "/", extra=offer) as raw:
        assert b"permessage-deflate" in raw.head.lower()
        raw.send(frame(TEXT, body[:-4], rsv=4))
        reply = raw.recv_frame()
        assert reply.opcode == TEXT and reply.rsv == 4
        decompressor = zlib.decompressobj(wbits=-15)
        assert decompressor.decompress(reply.payload + b"\x00\x00\xff\xff") == b"squeeze"


def _deflated_reply(port: int, text: bytes, offer: bytes = b"permessage-deflate") -> Frame:
    with RawWS(port, "/", extra=b"Sec-WebSocket-Extensions: %b\r\n" % offer) as raw:
        raw.send(frame(TEXT, text))
        reply = raw.recv_frame()
    assert reply.opcode == TEXT and reply.rsv == 4  # compressed
    return reply


def _inflate(payload: bytes, bits: int = 15) -> bytes:
    return zlib.decompressobj(wbits=-bits).decompress(payload + b"\x00\x00\xff\xff")


def test_deflate_level_is_the_servers_choice() -> None:
    """--ws-deflate-level: level 9 sends fewer bytes than the default 1, both inflate the same."""
    rng = random.Random(7)
    words = [bytes(rng.choices(b"abcdefghijklmnop", k=rng.randint(2, 9))) for _ in range(400)]
    text = b" ".join(rng.choice(words) for _ in range(20000))
    sizes = {}
    for level in (1, 9):
        with serve(wsapps.echo, ws_deflate_level=level) as srv:
            reply = _deflated_reply(srv.port, text)
        assert _inflate(reply.payload) == text
        sizes[level] = len(reply.payload)
    assert sizes[9] < sizes[1] < len(text) // 2, sizes


@pytest.mark.parametrize("bits", [9, 12])
def test_deflate_within_a_window_the_client_limits(bits: int) -> None:
    """server_max_window_bits: the client's inflater with that window reads every reply."""
    text = b"".join(b"%d:%s;" % (i, b"abc" * (i % 50)) for i in range(3000))
    offer = b"permessage-deflate; server_max_window_bits=%d; server_no_context_takeover" % bits
    with serve(wsapps.echo) as srv:
        reply = _deflated_reply(srv.port, text, offer)
    assert _inflate(reply.payload, bits) == text


# ----------------------------------------------------------------------------- fragment coalescing
#
# WSSession merges the fragments of a message that arrive together into one
# frame before wsproto parses them (wsproto's per-frame cost dominated
# Autobahn 12.*/13.*).  Whatever the bytes and however they are split, the
# session must report exactly what it reports without that shortcut.


def _session(
    deflate: bool, coalesce: bool, max_size: int = 100_000, lean: bool = True
) -> WSSession:
    offer = [(b"sec-websocket-extensions", b"permessage-deflate")]
    extensions, _ = negotiate_extensions(offer, deflate)
    session = WSSession(extensions, max_size)
    session._coalescer._off = not coalesce
    if not lean:  # every frame through wsproto, as before the lean path
        session._lean = session._between_messages = False
    return session


def _events(session: WSSession, data: bytes, chunks: list[int]) -> list[tuple[str, Any]]:
    seen: list[tuple[str, Any]] = []
    pos = 0
    for size in chunks:
        piece, pos = data[pos : pos + size], pos + size
        if not piece:
            break
        for got in session.receive_data(piece):
            name = type(got).__name__
            seen.append((name, getattr(got, "data", getattr(got, "code", None))))
            if name == "CloseReceived":
                return seen
        seen.append(("sent", session.data_to_send().count(b"\x8a")))  # pongs so far
    return seen


def _random_stream(rng: random.Random, deflate: bool) -> bytes:
    """Messages in random fragments, pings between them, now and then a broken frame."""
    out: list[bytes] = []
    compressor = zlib.compressobj(wbits=-15)
    for _ in range(rng.randint(1, 8)):
        kind = rng.random()
        if kind < 0.6:
            opcode = rng.choice([TEXT, BINARY])
            if opcode == TEXT:
                data = "".join(
                    rng.choice("ab\u2603\xe9\U0001f600") for _ in range(rng.randint(0, 300))
                )
                payload = data.encode() + (b"\xff" if rng.random() < 0.05 else b"")
            else:
                payload = rng.randbytes(
                    rng.choice([rng.randint(0, 600), rng.randint(60000, 90000)])
                )
            rsv = 0
            if deflate and rng.random() < 0.7:
                packed = compressor.compress(payload) + compressor.flush(zlib.Z_SYNC_FLUSH)
                payload, rsv = packed[:-4], 4
            cuts = sorted(rng.randint(0, len(payload)) for _ in range(rng.randint(0, 5)))
            pieces = [payload[a:b] for a, b in zip([0, *cuts], [*cuts, len(payload)], strict=True)]
            for index, piece in enumerate(pieces):
                first = index == 0
                out.append(
                    frame(
                        opcode if first else CONT,
                        piece,
                        fin=index == len(pieces) - 1,
                        rsv=rsv if first else (4 if rng.random() < 0.02 else 0),
                        masked=rng.random() > 0.01,
                    )
                )
                if rng.random() < 0.15:
                    out.append(frame(PING, rng.randbytes(rng.randint(0, 10))))
                if rng.random() < 0.01:
                    out.append(
                        frame(rng.choice([CONT, TEXT, 0x3, 0xB]), b"zz", fin=rng.random() < 0.5)
                    )
        elif kind < 0.7:
            out.append(frame(PONG, b"p"))
        elif kind < 0.75:
            out.append(frame(PING, b"x" * rng.choice([5, 126])))
        elif kind < 0.8:
            out.append(frame(CLOSE, close_payload(1000, b"bye")))
        elif kind < 0.82:
            out.append(rng.randbytes(rng.randint(1, 40)))
    return b"".join(out)


@pytest.mark.parametrize("seed", range(4))
def test_coalescing_changes_nothing_but_speed(seed: int) -> None:
    rng = random.Random(seed)
    for _ in range(150):
        deflate = rng.random() < 0.5
        data = _random_stream(rng, deflate)
        chunks: list[int] = []
        while sum(chunks) < len(data):
            chunks.append(rng.choice([1, 2, 3, 7, 50, 200, 1000, 65536, 70000, 300000]))
        plain = _events(_session(deflate, coalesce=False), data, chunks)
        merged = _events(_session(deflate, coalesce=True), data, chunks)
        assert merged == plain


def _wsproto_events(deflate: bool, data: bytes, chunks: list[int]) -> list[tuple[str, Any]]:
    """What wsproto's own ``Connection`` makes of the same bytes, in ``_events``' terms."""
    offer = [(b"sec-websocket-extensions", b"permessage-deflate")]
    extensions, _ = negotiate_extensions(offer, deflate)
    conn = Connection(ConnectionType.SERVER, extensions)
    seen: list[tuple[str, Any]] = []
    parts: list[Any] = []
    pongs = 0
    pos = 0
    for size in chunks:
        piece, pos = data[pos : pos + size], pos + size
        if not piece:
            break
        conn.receive_data(piece)
        for event in conn.events():
            if isinstance(event, TextMessage | BytesMessage):
                parts.append(event.data)
                if event.message_finished:
                    joined = "".join(parts) if isinstance(event.data, str) else b"".join(parts)
                    seen.append(("MessageReceived", joined))
                    parts = []
            elif isinstance(event, Ping):
                pongs += conn.send(event.response()).count(b"\x8a")
            elif isinstance(event, Pong):
                seen.append(("PongReceived", None))
            elif isinstance(event, CloseConnection):
                seen.append(("CloseReceived", event.code))
                return seen
        seen.append(("sent", pongs))
        pongs = 0
    return seen


@pytest.fixture(params=["compiled", "python"])
def masker(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Unmasking in C (websockets' ``apply_mask``), or without it, as where it does not import."""
    if request.param == "python":
        monkeypatch.setattr(ws_coalesce, "APPLY_MASK", None)
        monkeypatch.setattr(wsproto_internals, "APPLY_MASK", None)
    else:
        assert ws_coalesce.APPLY_MASK is not None, "websockets' compiled speedups did not import"
    return str(request.param)


@pytest.mark.parametrize("seed", range(4))
def test_session_reads_as_wsproto_connection_does(seed: int, masker: str) -> None:
    """WSSession drives wsproto's frame layer and its own unmasking: same results as Connection."""
    rng = random.Random(100 + seed)
    for _ in range(150):
        deflate = rng.random() < 0.5
        data = _random_stream(rng, deflate)
        chunks: list[int] = []
        while sum(chunks) < len(data):
            chunks.append(rng.choice([1, 2, 3, 7, 50, 200, 1000, 3000, 65536, 300000]))
        ours = _events(
            _session(deflate, coalesce=rng.random() < 0.5, max_size=1 << 20), data, chunks
        )
        assert ours == _wsproto_events(deflate, data, chunks)


def test_frames_are_unmasked_by_the_session_s_masker(masker: str) -> None:
    """wsproto parses with the session's decoder: a guard against a wsproto whose internals moved.

    With websockets' compiled ``apply_mask``, every frame is unmasked in C,
    a 1 MiB one too; without it, small frames with a big-int XOR and large
    ones by wsproto.  (Were the decoder not used, messages would still be
    right, only slower.)
    """
    session = WSSession()
    decoder = session._proto.decoder
    whole = frame(BINARY, b"0123456789", key=b"\x01\x02\x03\x04")
    assert session.receive_data(whole[:-3]) == []
    assert decoder.header is not None  # wsproto parsed the header with this decoder
    small, large = (CMasker, CMasker) if masker == "compiled" else (IntMasker, XorMaskerSimple)
    assert type(decoder.masker) is small
    assert [m.data for m in session.receive_data(whole[-3:])] == [b"0123456789"]  # type: ignore[union-attr]
    payload = os.urandom(1 << 20)
    big = frame(BINARY, payload, key=b"\x05\x06\x07\x08")
    assert session.receive_data(big[:100]) == []
    assert type(decoder.masker) is large
    # The rest in pieces whose lengths are not multiples of 4: the key turns with them.
    received = []
    for at in range(100, len(big), 65537):
        received += session.receive_data(big[at : at + 65537])
    assert [m.data for m in received] == [payload]  # type: ignore[union-attr]


def test_coalescing_merges_fragments_that_arrive_together() -> None:
    session = _session(deflate=False, coalesce=True)
    text = "x" * 1000
    pieces = [text[i : i + 10].encode() for i in range(0, 1000, 10)]
    data = b"".join(
        frame(CONT if i else TEXT, piece, fin=i == len(pieces) - 1)
        for i, piece in enumerate(pieces)
    )
    merged = session._coalescer.feed(data)
    assert len(merged) == 2 + 2 + 4 + 1000  # one frame: header, length, zero key, payload
    ping = frame(PING, b"p")
    assert session._coalescer.feed(ping) == ping  # control frames pass as they are
    other = _session(deflate=False, coalesce=True)
    assert [m.data for m in other.receive_data(data)] == [text]  # type: ignore[union-attr]


# ----------------------------------------------------------------------------- the lean path
#
# WSSession reads whole, masked, unfragmented text and binary frames without
# RSV bits itself (the lean path of ``receive_data``) and hands everything else to wsproto.
# Whatever the bytes and however they are split, it must report what wsproto
# reports, close codes included.


def _plain_stream(rng: random.Random, deflate: bool, max_size: int) -> bytes:
    """Mostly whole plain messages (what the lean path reads), with everything else between."""
    out: list[bytes] = []
    compressor = zlib.compressobj(wbits=-15)
    for _ in range(rng.randint(1, 12)):
        kind = rng.random()
        size = rng.choice(
            [0, 1, 5, 125, 126, 127, rng.randint(0, 125), rng.randint(126, 3000), 65535, 65536]
        )
        if kind < 0.5:
            out.append(frame(BINARY, rng.randbytes(size)))
        elif kind < 0.75:
            text = "".join(rng.choice("ab\u2603\xe9\U0001f600") for _ in range(size // 3))
            out.append(frame(TEXT, text.encode()))
        elif kind < 0.8:
            # Not UTF-8 (1007), a needless 16-bit length (1002), unmasked (1002), too big (1009).
            out.append(
                rng.choice(
                    [
                        frame(TEXT, b"ok" + rng.choice([b"\xff", b"\xed\xa0\x80", b"\xce"])),
                        b"\x82\xfe\x00\x05" + os.urandom(4) + b"12345",
                        frame(rng.choice([TEXT, BINARY]), b"bare", masked=False),
                        frame(BINARY, bytes(max_size + 1)),
                    ]
                )
            )
        elif kind < 0.85:
            payload = rng.randbytes(size % 300)
            if deflate:
                packed = compressor.compress(payload) + compressor.flush(zlib.Z_SYNC_FLUSH)
                out.append(frame(BINARY, packed[:-4], rsv=4))
            else:
                out.append(frame(BINARY, payload, rsv=rng.choice([1, 2, 4])))
        elif kind < 0.92:
            half = size // 2
            payload = rng.randbytes(size)
            out.append(frame(BINARY, payload[:half], fin=False))
            if rng.random() < 0.5:
                out.append(frame(PING, b"mid"))
            out.append(frame(CONT, payload[half:]))
        elif kind < 0.97:
            out.append(frame(rng.choice([PING, PONG]), rng.randbytes(rng.randint(0, 10))))
        else:
            out.append(frame(CLOSE, close_payload(1000, b"bye")))
    return b"".join(out)


@pytest.mark.parametrize("seed", range(4))
def test_lean_path_reads_as_wsproto_does(seed: int, masker: str) -> None:
    """What wsproto's Connection reads (messages, pongs, close codes); the session without it."""
    rng = random.Random(200 + seed)
    for _ in range(100):
        deflate = rng.random() < 0.5
        max_size = 70_000
        data = _plain_stream(rng, deflate, max_size)
        chunks: list[int] = []
        while sum(chunks) < len(data):
            chunks.append(rng.choice([1, 2, 5, 6, 7, 8, 64, 131, 1000, 65536, 200000]))
        coalesce = rng.random() < 0.5
        lean = _events(_session(deflate, coalesce, max_size), data, chunks)
        plain = _events(_session(deflate, coalesce, max_size, lean=False), data, chunks)
        assert lean == plain
        if ("CloseReceived", 1009) not in lean:  # (wsproto's Connection has no size limit)
            assert lean == _wsproto_events(deflate, data, chunks)


def test_lean_path_split_at_every_byte() -> None:
    """Every place a read can end, in plain messages of each length encoding and between them."""
    data = b"".join(
        [
            frame(BINARY, b"x" * 64),
            frame(TEXT, "h\xe9llo \u2603".encode()),
            frame(BINARY, b""),
            frame(TEXT, b"t" * 125),
            frame(BINARY, bytes(range(126))),
            frame(PING, b"p"),
            frame(TEXT, b"frag", fin=False),
            frame(CONT, b"ment"),
            frame(BINARY, b"y" * 300),
            frame(TEXT, b"after"),
        ]
    )
    whole = _events(_session(deflate=False, coalesce=True), data, [len(data)])
    messages = [e for e in whole if e[0] == "MessageReceived"]
    assert len(messages) == 8
    for coalesce in (True, False):
        for at in range(1, len(data)):
            chunks = [at, len(data) - at]
            ours = _events(_session(deflate=False, coalesce=coalesce), data, chunks)
            assert [e for e in ours if e[0] == "MessageReceived"] == messages, at
            assert ours == _wsproto_events(False, data, chunks), at
    one_by_one = _events(_session(deflate=False, coalesce=True), data, [1] * len(data))
    assert one_by_one == _wsproto_events(False, data, [1] * len(data))


@pytest.mark.parametrize(
    ("shape", "code"),
    [
        (frame(TEXT, b"bad \xff"), 1007),
        (frame(TEXT, b"surrogate \xed\xa0\x80"), 1007),
        (frame(TEXT, b"cut \xe2\x98"), 1007),
        (frame(TEXT, "\u2603".encode() * 50 + b"\xc0\xaf"), 1007),
        (frame(BINARY, b"bare", masked=False), 1002),
        (frame(TEXT, b"x" * 200, masked=False), 1002),
        (b"\x82\xfe\x00\x7d" + b"\x01\x02\x03\x04" + bytes(125), 1002),
        (frame(BINARY, b"rsv1", rsv=4), 1002),
        (frame(TEXT, b"rsv3", rsv=1), 1002),
        (frame(BINARY, b"x" * 101), 1009),
        (frame(TEXT, b"x" * 300), 1009),
        (frame(TEXT, "\u2603".encode() * 34), 1009),  # 102 bytes, 34 characters
    ],
    ids=[
        "invalid-utf8",
        "surrogate",
        "truncated-utf8",
        "invalid-utf8-16-bit-length",
        "unmasked",
        "unmasked-16-bit-length",
        "non-minimal-length",
        "rsv1-without-deflate",
        "rsv3",
        "one-byte-over-max-size",
        "over-max-size-16-bit-length",
        "over-max-size-in-utf8-bytes",
    ],
)
def test_lean_path_leaves_broken_frames_to_wsproto(shape: bytes, code: int) -> None:
    """A frame the lean path does not take, alone or after plain messages: the same close."""
    before = frame(BINARY, b"x" * 100) + frame(TEXT, "\u2603".encode() * 33)  # both at max_size
    for data in (shape, before + shape):
        for lean in (True, False):
            session = _session(deflate=False, coalesce=True, max_size=100, lean=lean)
            events = session.receive_data(data)
            *messages, last = events
            assert [type(m).__name__ for m in messages] == ["MessageReceived"] * (
                2 if data != shape else 0
            )
            assert isinstance(last, CloseReceived) and last.error, events
            assert last.code == code
            sent = session.data_to_send()
            assert sent[0] == 0x88 and int.from_bytes(sent[2:4], "big") == code
            assert session.closed
            assert session.receive_data(frame(BINARY, b"after the failure")) == []
        if code != 1009:
            assert _events(_session(False, True), data, [len(data)]) == _wsproto_events(
                False, data, [len(data)]
            )


@pytest.mark.parametrize("deflate", [False, True])
def test_plain_messages_do_not_reach_wsproto(
    deflate: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The lean path is taken: plain messages up to 64 KiB never reach wsproto's parser."""
    session = _session(deflate=deflate, coalesce=True, max_size=1 << 20)
    parsed: list[bytes] = []
    real = session._frames
    monkeypatch.setattr(session, "_frames", lambda data: parsed.append(data) or real(data))
    payloads: list[str | bytes] = [
        b"",
        b"x" * 64,
        "h\xe9llo",
        b"y" * 125,
        b"z" * 126,
        "\u2603" * 1000,
        os.urandom(65535),
    ]
    data = b"".join(
        frame(TEXT if isinstance(p, str) else BINARY, p.encode() if isinstance(p, str) else p)
        for p in payloads
    )
    assert [m.data for m in session.receive_data(data)] == payloads  # type: ignore[union-attr]
    assert parsed == []
    # A frame only partly here, a 64-bit length: wsproto's.
    got = session.receive_data(data[:3]) + session.receive_data(data[3:])
    assert [m.data for m in got] == payloads  # type: ignore[union-attr]
    big = os.urandom(65536)
    assert [m.data for m in session.receive_data(frame(BINARY, big))] == [big]  # type: ignore[union-attr]
    assert len(parsed) == 3
    # And after them, plain messages are the lean path's again.
    parsed.clear()
    assert [m.data for m in session.receive_data(frame(TEXT, b"back"))] == ["back"]  # type: ignore[union-attr]
    assert parsed == []


@pytest.mark.parametrize("deflate", [False, True])
def test_sent_frames_are_wsproto_s(deflate: bool) -> None:
    """send_message builds plain frames itself: byte for byte what wsproto's frame layer sends."""
    for payload in [b"", b"x", b"y" * 125, b"z" * 126, os.urandom(65535), os.urandom(65536)]:
        for message in (payload, payload.hex()[: len(payload)], "\u2603" * (len(payload) // 3)):
            ours = _session(deflate=deflate, coalesce=True).send_message(message)
            theirs = _session(deflate=deflate, coalesce=True)._proto.send_data(message)
            assert ours == bytes(theirs)
            assert type(ours) is bytes
    big = os.urandom(1 << 20)
    assert WSSession().send_message(big) == b"\x82\x7f" + len(big).to_bytes(8, "big") + big


# ----------------------------------------------------------------------------- graceful shutdown


def test_shutdown_sends_1001_with_websockets_client() -> None:
    srv = ThreadServer(wsapps.behave).start()
    try:
        with ws_connect(srv, "/shutdown") as ws:
            assert event("accepted") is True
            stopper = threading.Thread(target=srv.stop)
            stopper.start()
            closed = closed_by_server(ws)
            assert closed.rcvd is not None
            assert closed.rcvd.code == 1001
            assert closed.rcvd_then_sent  # the client's close answered the server's
        stopper.join(TIMEOUT)
        assert not stopper.is_alive()
        assert event("disconnect")["code"] == 1001
    finally:
        if srv.thread.is_alive():
            srv.stop()


def test_shutdown_waits_for_close_handshake() -> None:
    srv = ThreadServer(wsapps.behave).start()
    try:
        raw = RawWS(srv.port, "/wait-close")
        raw.send(frame(TEXT, b"hi"))
        assert event("message")["text"] == "hi"
        stopper = threading.Thread(target=srv.stop)
        stopper.start()
        close = raw.recv_frame()
        assert close.close_code == 1001
        assert event("disconnect")["code"] == 1001
        # The server waits for our close frame rather than dropping the connection.
        raw.sock.settimeout(0.5)
        with pytest.raises(TimeoutError):
            raw.sock.recv(1)
        assert stopper.is_alive()
        raw.sock.settimeout(TIMEOUT)
        raw.send(frame(CLOSE, close_payload(1001)))
        raw.expect_eof()
        stopper.join(TIMEOUT)
        assert not stopper.is_alive()
        raw.close()
    finally:
        if srv.thread.is_alive():
            srv.stop()


def test_handshake_completed_during_the_drain_gets_503() -> None:
    """A handshake that ends while the server drains is refused, not accepted.

    The drain has already told the open WebSockets to close; one accepted after
    it would be held open until the graceful-shutdown timeout cut it without a
    close frame.  503 with Connection: close sends the client elsewhere.
    """
    srv = ThreadServer(wsapps.behave).start()
    stopper = threading.Thread(target=srv.stop)
    try:
        raw = RawWS(srv.port, "/wait-close")  # keeps the drain going until it closes
        late = socket.create_connection(("127.0.0.1", srv.port), timeout=TIMEOUT)
        request = handshake_request("/echo")
        late.sendall(request[:-2])  # the head, all but its last CRLF
        stopper.start()
        assert raw.recv_frame().close_code == 1001  # the drain has begun
        late.sendall(request[-2:])
        answer = read_to_eof(late)
        assert answer.startswith(b"HTTP/1.1 503 "), answer
        assert b"\r\nconnection: close\r\n" in answer.lower(), answer
        late.close()
        raw.send(frame(CLOSE, close_payload(1001)))
        raw.expect_eof()
        raw.close()
        stopper.join(TIMEOUT)
        assert not stopper.is_alive()
    finally:
        if srv.thread.is_alive():
            srv.stop()


def test_shutdown_gives_up_on_silent_client_after_close_timeout() -> None:
    srv = ThreadServer(wsapps.behave, ws_close_timeout=0.5).start()
    try:
        raw = RawWS(srv.port, "/wait-close")
        raw.send(frame(TEXT, b"hi"))
        assert event("message")["text"] == "hi"
        started = time.monotonic()
        stopper = threading.Thread(target=srv.stop)
        stopper.start()
        assert raw.recv_frame().close_code == 1001
        raw.expect_eof()  # we never answer: the server closes after ws_close_timeout
        stopper.join(TIMEOUT)
        assert not stopper.is_alive()
        assert time.monotonic() - started < 5
        raw.close()
    finally:
        if srv.thread.is_alive():
            srv.stop()


# --------------------------------------------------------------------- memory and backpressure


def _warm_up(port: int) -> None:
    """One full exchange first, so that imports and first allocations are in the baseline."""
    with RawWS(port, "/flood?mib=1") as raw:
        received = 0
        while received < MIB:
            received += len(raw.recv_frame().payload)


@pytest.mark.timeout(90)
def test_incoming_flood_to_app_that_never_reads_is_bounded() -> None:
    """ws_max_queue: the server stops reading; the client's sends stall; RSS stays flat."""
    total = 200 * MIB
    message = b"\xa5" * MIB
    # A zero masking key leaves the payload as it is: no masking cost on the client.
    header = bytes([0x82, 0x80 | 127]) + len(message).to_bytes(8, "big") + b"\0\0\0\0"
    with cli_server(
        "apps.ws:behave",
        "--port",
        "0",
        "--no-access-log",
        "--ws-max-queue",
        "8",
        "--ws-ping-interval",
        "0",
        "--timeout-graceful-shutdown",
        "1",
    ) as srv:
        assert srv.port is not None
        _warm_up(srv.port)
        raw = RawWS(srv.port, "/no-read")
        sent = 0
        stalled = False
        with raw, RSSSampler(srv.proc.pid) as rss:
            raw.sock.settimeout(2.0)
            try:
                while sent < total:
                    raw.sock.sendall(header + message)
                    sent += len(message)
            except TimeoutError:
                stalled = True
        assert stalled, "the server kept reading for an app that never reads"
        assert sent < 100 * MIB
        assert rss.growth < 50 * MIB, f"RSS grew {rss.growth / MIB:.1f} MiB"


@pytest.mark.timeout(90)
def test_incoming_flood_with_reading_app_memory_flat() -> None:
    """200 MiB through the echo app (client reads too): RSS growth stays small."""
    total = 200 * MIB
    message = b"\x5a" * MIB
    header = bytes([0x82, 0x80 | 127]) + len(message).to_bytes(8, "big") + b"\0\0\0\0"
    with cli_server(
        "apps.ws:echo", "--port", "0", "--no-access-log", "--no-ws-per-message-deflate"
    ) as srv:
        assert srv.port is not None
        _warm_up_echo(srv.port)
        with RawWS(srv.port, "/") as raw, RSSSampler(srv.proc.pid) as rss:
            done = threading.Event()
            received = 0

            def reader() -> None:
                nonlocal received
                while received < total:
                    received += len(raw.recv_frame().payload)
                done.set()

            thread = threading.Thread(target=reader, daemon=True)
            thread.start()
            for _ in range(total // MIB):
                raw.sock.sendall(header + message)
            assert done.wait(60)
        assert received == total
        assert rss.growth < 50 * MIB, f"RSS grew {rss.growth / MIB:.1f} MiB"


def _warm_up_echo(port: int) -> None:
    with RawWS(port, "/") as raw:
        raw.send(frame(BINARY, b"w" * MIB))
        got = 0
        while got < MIB:
            got += len(raw.recv_frame().payload)


def test_compressed_bomb_is_refused_without_inflating_it() -> None:
    """A 200 KB frame that inflates to 200 MiB: close 1009, and RSS stays flat.

    The limit (--ws-max-size, 16 MiB here) applies while inflating, not after.
    """
    compressor = zlib.compressobj(9, zlib.DEFLATED, -15)
    body = compressor.compress(bytes(200 * MIB)) + compressor.flush(zlib.Z_SYNC_FLUSH)
    bomb = frame(BINARY, body[:-4], rsv=4, key=b"\0\0\0\0")
    assert len(bomb) < MIB
    offer = b"Sec-WebSocket-Extensions: permessage-deflate\r\n"
    with cli_server("apps.ws:echo", "--port", "0", "--no-access-log") as srv:
        assert srv.port is not None
        _warm_up_echo(srv.port)
        with RawWS(srv.port, "/", extra=offer) as raw, RSSSampler(srv.proc.pid) as rss:
            raw.send(bomb)
            close = raw.expect_close(1009)
            assert close.payload[2:] == b"message too big"
        assert rss.growth < 50 * MIB, f"RSS grew {rss.growth / MIB:.1f} MiB"
        assert_still_serving(srv.port)


@pytest.mark.timeout(90)
def test_outgoing_flood_to_client_that_never_reads_is_bounded() -> None:
    """An app sending endlessly waits for the client: RSS stays flat.

    Then the client goes away with unread data while the app waits: the
    server must stay responsive (a dying transport may stop pausing the app
    before ``connection_lost`` runs; the app must not spin on dead writes).
    """
    with cli_server(
        "apps.ws:behave", "--port", "0", "--no-access-log", "--ws-ping-interval", "0"
    ) as srv:
        assert srv.port is not None
        _warm_up(srv.port)
        raw = RawWS(srv.port, "/flood")
        with raw, RSSSampler(srv.proc.pid) as rss:
            raw.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)
            time.sleep(3)  # the app would produce gigabytes in this time without backpressure
            # The app is still alive and sending: data keeps flowing once we read.
            received = 0
            while received < 20 * MIB:
                received += len(raw.recv_frame().payload)
        assert rss.growth < 50 * MIB, f"RSS grew {rss.growth / MIB:.1f} MiB"
        assert_still_serving_behave(srv.port)
        started = time.monotonic()
        srv.signal()
        assert srv.wait(TIMEOUT) == 0
        assert time.monotonic() - started < 5


@pytest.mark.parametrize("loop", ["asyncio", "uvloop"])
def test_client_reset_mid_flood_ends_the_app(loop: str) -> None:
    """A client that goes away while the app waits on a full buffer: the app ends."""
    with serve(wsapps.behave, loop=loop, ws_ping_interval=0) as srv:
        raw = RawWS(srv.port, "/flood")
        raw.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)
        time.sleep(0.5)  # the server's buffer fills up: the app waits
        received = 0
        while received < 8 * MIB:
            received += len(raw.recv_frame().payload)
        raw.close()  # with unread data: a reset
        assert event("flood-ended") == "ClientDisconnected"
        assert_still_serving_behave(srv.port)


def test_ping_timeout_frees_a_client_that_stopped_reading() -> None:
    """No pong and a full send buffer: the connection is dropped, not left flushing."""
    with serve(wsapps.behave, ws_ping_interval=0.2, ws_ping_timeout=0.3, ws_close_timeout=1) as srv:
        raw = RawWS(srv.port, "/flood")
        raw.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 16 * 1024)
        try:
            assert event("flood-ended") == "ClientDisconnected"
        finally:
            raw.close()
        assert_still_serving_behave(srv.port)


# ----------------------------------------------------------------------------- frameworks


def test_starlette_websocket_endpoints() -> None:
    with serve(wsapps.starlette_app()) as srv:
        with ws_connect(srv, "/echo", subprotocols=["v1"]) as ws:
            assert ws.subprotocol == "v1"
            ws.send("hi")
            assert ws.recv(timeout=TIMEOUT) == "starlette: hi"
            ws.close(4100, "leaving")
        assert event("starlette-disconnect") == (4100, "leaving")
        with ws_connect(srv, "/json") as ws:
            ws.send('{"a": [1, 2]}')
            assert ws.recv(timeout=TIMEOUT) == '{"got":{"a":[1,2]},"path":"/json"}'
            ws.send(b"abc")
            assert ws.recv(timeout=TIMEOUT) == b"cba"
            closed = closed_by_server(ws)
            assert closed.rcvd is not None
            assert (closed.rcvd.code, closed.rcvd.reason) == (4001, "starlette done")
        with pytest.raises(InvalidStatus) as info:
            ws_connect(srv, "/reject")
        assert info.value.response.status_code == 403
        with pytest.raises(InvalidStatus) as info:
            ws_connect(srv, "/missing")
        assert info.value.response.status_code == 403


def test_fastapi_websocket_endpoints() -> None:
    with serve(wsapps.fastapi_app()) as srv:
        with ws_connect(srv, "/rooms/lobby?token=secret") as ws:
            ws.send('{"msg": "hello"}')
            assert ws.recv(timeout=TIMEOUT) == '{"room":"lobby","data":{"msg":"hello"}}'
            ws.send("[1, 2, 3]")
            assert ws.recv(timeout=TIMEOUT) == '{"room":"lobby","data":[1,2,3]}'
            ws.close(1001, "tab closed")
        assert event("fastapi-disconnect") == (1001, "tab closed")
        with pytest.raises(InvalidStatus) as info:
            ws_connect(srv, "/rooms/lobby?token=wrong")
        assert info.value.response.status_code == 403
        # A validation error before accept: FastAPI closes with a list as the reason.
        with pytest.raises(InvalidStatus) as info:
            ws_connect(srv, "/needs-query?required=abc")
        assert info.value.response.status_code == 403
        with ws_connect(srv, "/needs-query?required=41") as ws:
            assert ws.recv(timeout=TIMEOUT) == "42"
        with ws_connect(srv, "/close") as ws:
            ws.send("ab")
            assert ws.recv(timeout=TIMEOUT) == "abab"
            closed = closed_by_server(ws)
            assert closed.rcvd is not None
            assert (closed.rcvd.code, closed.rcvd.reason) == (4002, "fastapi done")


NODE_DIR = Path(__file__).parents[1] / "node"


async def subprotocol_echo(scope: Any, receive: Any, send: Any) -> None:
    """Accept with the client's first subprotocol, echo, record the close."""
    assert scope["type"] == "websocket"
    await receive()
    await send({"type": "websocket.accept", "subprotocol": scope["subprotocols"][0]})
    while True:
        message = await receive()
        if message["type"] == "websocket.disconnect":
            wsapps.record("disconnect", message)
            return
        await send({**message, "type": "websocket.send"})


def test_node_ws_client() -> None:
    """Node's ``ws`` package (installed by ``make test`` into tests/node) as the client."""
    assert (NODE_DIR / "node_modules" / "ws").is_dir(), "run `make node-deps` (make test does)"
    with serve(subprotocol_echo) as srv:
        run = subprocess.run(
            ["node", str(NODE_DIR / "ws_client.mjs"), f"ws://127.0.0.1:{srv.port}/chat"],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert run.returncode == 0, run.stderr
        out = json.loads(run.stdout)
        assert out["protocol"] == "chat"
        assert out["extensions"].startswith("permessage-deflate")
        assert out["messages"] == [
            {"text": "hello from node", "binary": False},
            {"sha": out["messages"][1]["sha"], "binary": False, "ok": True},
            {"binary": True, "ok": True},
            {"text": "fragmented", "binary": False},
        ]
        assert out["close"]["code"] == 4000  # the server echoed the client's code
        disconnect = event("disconnect")
        assert (disconnect["code"], disconnect["reason"]) == (4000, "node done")


def test_many_concurrent_connections() -> None:
    with serve(wsapps.echo) as srv, contextlib.ExitStack() as stack:
        sockets = [stack.enter_context(ws_connect(srv, "/", compression=None)) for _ in range(50)]
        for index, ws in enumerate(sockets):
            ws.send(f"n{index}")
        for index, ws in enumerate(sockets):
            assert ws.recv(timeout=TIMEOUT) == f"n{index}"
