"""A raw RFC 6455 client over a socket, for tests that send frames no library would
(unmasked, fragmented, bad opcodes) and read the server's frames as they are.
"""

from __future__ import annotations

import base64
import os
import socket
import time
from dataclasses import dataclass

TIMEOUT = 10.0


CONT, TEXT, BINARY, CLOSE, PING, PONG = 0x0, 0x1, 0x2, 0x8, 0x9, 0xA


class RawWS:
    """A WebSocket client on a bare socket: every byte is the test's choice."""

    def __init__(
        self, port: int, path: str = "/", *, early: bytes = b"", extra: bytes = b""
    ) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT)
        self.sock.sendall(handshake_request(path, extra=extra) + early)
        self.buf = b""
        while b"\r\n\r\n" not in self.buf:
            self._fill()
        head, _, self.buf = self.buf.partition(b"\r\n\r\n")
        self.head = head
        assert head.startswith(b"HTTP/1.1 101 "), head

    def _fill(self) -> None:
        chunk = self.sock.recv(65536)
        if not chunk:
            raise EOFError("connection closed")
        self.buf += chunk

    def _take(self, n: int) -> bytes:
        while len(self.buf) < n:
            self._fill()
        data, self.buf = self.buf[:n], self.buf[n:]
        return data

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def recv_frame(self) -> Frame:
        b0, b1 = self._take(2)
        assert not b1 & 0x80, "server frames must not be masked"
        n = b1 & 0x7F
        if n == 126:
            n = int.from_bytes(self._take(2), "big")
        elif n == 127:
            n = int.from_bytes(self._take(8), "big")
        return Frame(bool(b0 & 0x80), (b0 >> 4) & 7, b0 & 0x0F, self._take(n))

    def expect_close(self, code: int) -> Frame:
        """Read frames up to the server's close; it must carry ``code``, then EOF."""
        while True:
            got = self.recv_frame()
            if got.opcode == CLOSE:
                break
        assert got.close_code == code, got
        self.expect_eof()
        return got

    def expect_eof(self) -> None:
        deadline = time.monotonic() + TIMEOUT
        while time.monotonic() < deadline:
            try:
                chunk = self.sock.recv(65536)
            except ConnectionResetError:
                return
            if not chunk:
                return
            self.buf += chunk
        raise AssertionError("the server did not close the connection")

    def close(self) -> None:
        self.sock.close()

    def __enter__(self) -> RawWS:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


@dataclass
class Frame:
    fin: bool
    rsv: int
    opcode: int
    payload: bytes

    @property
    def close_code(self) -> int | None:
        assert self.opcode == CLOSE
        return int.from_bytes(self.payload[:2], "big") if self.payload else None


def handshake_request(path: str = "/", key: bytes | None = None, extra: bytes = b"") -> bytes:
    key = base64.b64encode(os.urandom(16)) if key is None else key
    return (
        b"GET %b HTTP/1.1\r\n"
        b"Host: 127.0.0.1\r\n"
        b"Upgrade: websocket\r\n"
        b"Connection: Upgrade\r\n"
        b"Sec-WebSocket-Key: %b\r\n"
        b"Sec-WebSocket-Version: 13\r\n"
        b"%b\r\n" % (path.encode(), key, extra)
    )


def frame(
    opcode: int,
    payload: bytes = b"",
    *,
    fin: bool = True,
    rsv: int = 0,
    masked: bool = True,
    key: bytes | None = None,
) -> bytes:
    """One client frame, built by hand (masked unless told otherwise)."""
    first = (0x80 if fin else 0) | (rsv << 4) | opcode
    bit = 0x80 if masked else 0
    n = len(payload)
    if n < 126:
        head = bytes([first, bit | n])
    elif n < 65536:
        head = bytes([first, bit | 126]) + n.to_bytes(2, "big")
    else:
        head = bytes([first, bit | 127]) + n.to_bytes(8, "big")
    if not masked:
        return head + payload
    key = os.urandom(4) if key is None else key
    return head + key + mask(payload, key)


def mask(data: bytes, key: bytes) -> bytes:
    if not data or key == b"\0\0\0\0":
        return data
    n = len(data)
    keystream = (key * (n // 4 + 1))[:n]
    return (int.from_bytes(data, "big") ^ int.from_bytes(keystream, "big")).to_bytes(n, "big")
