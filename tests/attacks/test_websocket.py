"""WebSocket attack classes, over HTTP/1.1, HTTP/2 (RFC 8441) and HTTP/3 (RFC 9220).

The WebSocket frames are built by hand (``tests/support/ws_client.py``'s
``frame``) and carried by a small client per transport that sends them as
they are and reads the server's frames back; the server is one TLS process
of the contract app (its ``/ws`` echoes) with ``--ws-max-size 1MiB``.  The
bystander opens its own WebSocket over HTTP/1.1 and has a message echoed.
The answers are in docs/security.md.
"""

from __future__ import annotations

import abc
import contextlib
import socket
import ssl
import time
import zlib
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, closing
from typing import ClassVar

import h2.exceptions
import pytest

from tests.contract.transports import client_tls
from tests.support.h3_client import H3Client
from tests.support.meter import ProcessMeter
from tests.support.servers import CLIServer
from tests.support.ws_client import BINARY, CLOSE, CONT, TEXT, frame, handshake_request
from tests.support.ws_h2_client import H2WSConnection, Stalled

from .harness import MIB, port_of, running, under_attack, write_cert

pytestmark = pytest.mark.timeout(60)

MAX_SIZE = MIB
TIMEOUT = 10.0
DEFLATE_OFFER = (b"sec-websocket-extensions", b"permessage-deflate")
ENHANCE_YOUR_CALM = 0xB


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[CLIServer]:
    cert = write_cert(tmp_path_factory.mktemp("ws-attacks"))
    with running("--ws-max-size", str(MAX_SIZE), "--ws-ping-interval", "0", cert=cert) as srv:
        for _ in range(3):
            probe(port_of(srv))  # warm-up: first allocations are not growth
        yield srv


def server_frames(data: bytes) -> Iterator[tuple[int, bytes]]:
    """(opcode, payload) of each whole frame the server sent in ``data`` (never masked)."""
    pos = 0
    while len(data) - pos >= 2:
        opcode, length = data[pos] & 0x0F, data[pos + 1] & 0x7F
        pos += 2
        if length == 126:
            length, pos = int.from_bytes(data[pos : pos + 2], "big"), pos + 2
        elif length == 127:
            length, pos = int.from_bytes(data[pos : pos + 8], "big"), pos + 8
        if len(data) - pos < length:
            return
        yield opcode, data[pos : pos + length]
        pos += length


def close_code(data: bytes) -> int | None:
    """The code of the server's close frame in ``data``, if it has come."""
    for opcode, payload in server_frames(data):
        if opcode == CLOSE:
            return int.from_bytes(payload[:2], "big")
    return None


def echoed(data: bytes) -> bytes:
    """The data of the first whole message the server sent (unfragmented, uncompressed)."""
    for opcode, payload in server_frames(data):
        if opcode in (TEXT, BINARY):
            return payload
    return b""


class Carrier(abc.ABC):
    """One WebSocket on one transport: raw frames out, raw server bytes in."""

    name: ClassVar[str]
    #: The handshake's status and whether permessage-deflate was agreed.
    status = 0
    deflate = False

    @abc.abstractmethod
    def send(self, data: bytes) -> None: ...

    @abc.abstractmethod
    def received(self) -> bytes:
        """Everything the server has sent on the WebSocket so far."""

    @abc.abstractmethod
    def pump(self, seconds: float) -> None:
        """Read what arrives for up to ``seconds``."""

    @abc.abstractmethod
    def close(self) -> None: ...

    def wait(self, done: Callable[[], object], what: str, timeout: float = TIMEOUT) -> None:
        deadline = time.monotonic() + timeout
        while not done():
            assert time.monotonic() < deadline, f"{self.name}: no {what} within {timeout} s"
            self.pump(0.05)

    def wait_close(self, timeout: float = TIMEOUT) -> int:
        self.wait(lambda: close_code(self.received()) is not None, "close frame", timeout)
        code = close_code(self.received())
        assert code is not None
        return code


class H1Carrier(Carrier):
    name = "HTTP/1.1"

    def __init__(self, port: int, extra: bytes = b"") -> None:
        raw = socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT)
        self.sock = client_tls(["http/1.1"]).wrap_socket(raw, server_hostname="localhost")
        self.sock.sendall(handshake_request("/ws", extra=extra))
        self.buf = b""
        while b"\r\n\r\n" not in self.buf:
            chunk = self.sock.recv(65536)
            assert chunk, f"closed during the handshake: {self.buf!r}"
            self.buf += chunk
        head, _, self.buf = self.buf.partition(b"\r\n\r\n")
        self.status = int(head.split(b" ", 2)[1])
        self.deflate = b"permessage-deflate" in head.lower()

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def received(self) -> bytes:
        return self.buf

    def pump(self, seconds: float) -> None:
        self.sock.settimeout(seconds)
        try:
            chunk = self.sock.recv(1 << 20)
        except (TimeoutError, ssl.SSLWantReadError):
            return
        except (ConnectionError, ssl.SSLError):
            chunk = b""
        if not chunk:
            raise EOFError("the server closed the connection")
        self.buf += chunk

    def close(self) -> None:
        self.sock.close()


class H2Carrier(Carrier):
    name = "HTTP/2"

    def __init__(
        self, port: int, headers: list[tuple[bytes, bytes]] | None = None, deflate: bool = False
    ) -> None:
        self.conn = H2WSConnection(port, ssl_context=client_tls(["h2"]))
        self.ws = self.conn.websocket("/ws", deflate=deflate, headers=headers or [])
        self.status = self.ws.wait_response()
        self.deflate = bool(self.ws.extensions)

    def send(self, data: bytes) -> None:
        # Within the windows; a stream the server stopped reading gives no more.
        with contextlib.suppress(Stalled, h2.exceptions.StreamClosedError):
            self.conn.send_data(self.ws.stream_id, data, stall=1.0)

    def received(self) -> bytes:
        return b"".join(self.ws.raw)

    def pump(self, seconds: float) -> None:
        self.conn.pump(seconds)

    def close(self) -> None:
        self.conn.close()


class H3Carrier(Carrier):
    name = "HTTP/3"

    def __init__(
        self, port: int, headers: list[tuple[bytes, bytes]] | None = None, deflate: bool = False
    ) -> None:
        self.client = H3Client(port, timeout=TIMEOUT)
        self.client.connect()
        fields = [(b"sec-websocket-version", b"13"), *(headers or [])]
        if deflate:
            fields.append(DEFLATE_OFFER)
        self.stream_id = self.client.send_request(
            "CONNECT", "/ws", fields, end=False, protocol="websocket"
        )
        response = self.client.wait_head(self.stream_id)
        self.status = response.status
        self.deflate = bool(response.header(b"sec-websocket-extensions"))

    def send(self, data: bytes) -> None:
        self.client.send_data(self.stream_id, data)

    def received(self) -> bytes:
        return bytes(self.client.responses[self.stream_id].body)

    def pump(self, seconds: float) -> None:
        self.client.run_for(seconds)

    def close(self) -> None:
        self.client.close()


def connect(kind: str, port: int, deflate: bool = False) -> Carrier:
    if kind == "HTTP/1.1":
        offer = b"Sec-WebSocket-Extensions: permessage-deflate\r\n" if deflate else b""
        return H1Carrier(port, offer)
    if kind == "HTTP/2":
        return H2Carrier(port, deflate=deflate)
    return H3Carrier(port, deflate=deflate)


TRANSPORTS = ["HTTP/1.1", "HTTP/2", "HTTP/3"]


def probe(port: int) -> None:
    """A WebSocket of its own over HTTP/1.1: a message echoed."""
    carrier = H1Carrier(port)
    try:
        assert carrier.status == 101
        carrier.send(frame(TEXT, b"still here"))
        carrier.wait(lambda: echoed(carrier.received()), "echo")
        assert echoed(carrier.received()) == b"still here"
    finally:
        carrier.close()


def attack(
    server: CLIServer, cpu: float = 1.0, rss: int = 16 * MIB
) -> AbstractContextManager[ProcessMeter]:
    port = port_of(server)
    return under_attack(server, lambda: probe(port), cpu=cpu, rss=rss)


# ---------------------------------------------------------------- 10,000 handshake headers


def test_ten_thousand_handshake_headers(server: CLIServer) -> None:
    """CVE-2024-37890 (ws): a handshake with 10,000 header fields is refused,
    never a crash or a hang: 431 over HTTP/1.1 and HTTP/3 (past
    --limit-request-fields), GOAWAY ENHANCE_YOUR_CALM over HTTP/2 (a header
    block over twice SETTINGS_MAX_HEADER_LIST_SIZE is not even decoded)."""
    port = port_of(server)
    fields = [(b"x-header-%d" % i, b"v") for i in range(10_000)]
    with attack(server):
        extra = b"".join(b"%b: %b\r\n" % field for field in fields)
        h1 = socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT)
        with client_tls(["http/1.1"]).wrap_socket(h1, server_hostname="localhost") as sock:
            sock.sendall(handshake_request("/ws", extra=extra))
            reply = b""
            while b"\r\n" not in reply:
                chunk = sock.recv(65536)
                assert chunk, "closed without an answer"
                reply += chunk
            assert reply.startswith(b"HTTP/1.1 431 "), reply[:100]
        with H2WSConnection(port, ssl_context=client_tls(["h2"])) as conn:
            ws = conn.websocket("/ws", headers=fields)
            with contextlib.suppress(EOFError):
                ws.wait_response()
            assert ws.status == 0, f"answered {ws.status}"
            assert conn.goaway is not None
            assert conn.goaway.error_code == ENHANCE_YOUR_CALM, conn.goaway
        with closing(H3Carrier(port, fields)) as carrier:
            assert carrier.status == 431, carrier.status


# ---------------------------------------------------------------- permessage-deflate bomb


def deflate_bomb() -> bytes:
    """A permessage-deflate message payload of about 1 MiB that inflates to 1 GiB of zeros.

    A full flush leaves the compressor as it started, so one compressed MiB
    of zeros, repeated, is a valid stream of as many MiB.
    """
    compressor = zlib.compressobj(9, zlib.DEFLATED, -15)
    zeros = bytes(MIB)
    compressor.compress(zeros)
    compressor.flush(zlib.Z_FULL_FLUSH)
    chunk = compressor.compress(zeros) + compressor.flush(zlib.Z_FULL_FLUSH)
    return (chunk * 1024)[:-4]  # without the flush's 00 00 ff ff (RFC 7692 7.2.1)


@pytest.mark.parametrize("kind", TRANSPORTS)
def test_permessage_deflate_bomb(server: CLIServer, kind: str) -> None:
    """1 MiB inflating to 1 GiB with --ws-max-size 1 MiB: closed with 1009 at
    once, having inflated at most about the limit."""
    bomb = frame(BINARY, deflate_bomb(), rsv=4, key=b"\0\0\0\0")
    assert len(bomb) < 1.1 * MIB
    with attack(server, cpu=1.0), closing(connect(kind, port_of(server), True)) as ws:
        assert ws.deflate, f"{kind}: permessage-deflate was not agreed"
        started = time.monotonic()
        with contextlib.suppress(OSError):  # the server may close before it read it all
            ws.send(bomb)
        assert ws.wait_close() == 1009
        took = time.monotonic() - started
        assert took < 2, f"{kind}: 1009 after {took:.1f} s"


# ---------------------------------------------------------------- 100,000 continuation frames


@pytest.mark.parametrize("kind", TRANSPORTS)
def test_a_hundred_thousand_continuation_frames(server: CLIServer, kind: str) -> None:
    """One message in 100,000 one-byte fragments (within --ws-max-size): it is
    delivered whole, for a bounded cost per fragment."""
    count = 100_000
    key = b"\x01\x02\x03\x04"
    fragments = frame(TEXT, b"a", fin=False, key=key)
    fragments += frame(CONT, b"a", fin=False, key=key) * (count - 2)
    fragments += frame(CONT, b"a", key=key)
    with attack(server), closing(connect(kind, port_of(server))) as ws:
        for start in range(0, len(fragments), 256 * 1024):
            ws.send(fragments[start : start + 256 * 1024])
        ws.wait(lambda: len(echoed(ws.received())) == count, "echo of the whole message")
        assert echoed(ws.received()) == b"a" * count


# ---------------------------------------------------------------- unmasked client frames


@pytest.mark.parametrize("kind", TRANSPORTS)
def test_unmasked_client_frame(server: CLIServer, kind: str) -> None:
    """RFC 6455 5.1 (kept by RFC 8441 and RFC 9220): a client frame must be masked: 1002."""
    with attack(server), closing(connect(kind, port_of(server))) as ws:
        ws.send(frame(TEXT, b"unmasked", masked=False))
        assert ws.wait_close() == 1002
