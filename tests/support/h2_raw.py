"""A raw HTTP/2 client connection for attack tests: frames built and sent as an attacker
would (floods, resets, HPACK bombs), with the h2 library only to encode heads and read answers.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any

import h2.config
import h2.connection
import h2.events
import h2.frame_buffer
import hpack
from hyperframe.frame import (
    Frame,
    GoAwayFrame,
    HeadersFrame,
    SettingsFrame,
)

from asgiri.protocol.h2 import PREFACE, H2Limits

TIMEOUT = 10.0

LIMITS = H2Limits()


PROTOCOL_ERROR = 0x1


CANCEL = 0x8


COMPRESSION_ERROR = 0x9


ENHANCE_YOUR_CALM = 0xB


END_HEADERS = "END_HEADERS"


END_STREAM = "END_STREAM"


def parse_frames(data: bytes, *, whole: bool = False) -> list[Frame]:
    """The HTTP/2 frames in ``data``, up to the first incomplete one
    (``whole=True``: an incomplete frame at the end fails the test)."""
    frames = []
    while len(data) >= 9:
        frame, length = Frame.parse_frame_header(memoryview(data[:9]))
        if len(data) < 9 + length:
            break
        frame.parse_body(memoryview(data[9 : 9 + length]))
        frames.append(frame)
        data = data[9 + length :]
    assert not (whole and data), f"an incomplete frame at the end: {data!r}"
    return frames


def request_block(path: str = "/", method: str = "GET", extra: Iterable[Any] = ()) -> bytes:
    """An HPACK block that leaves the peer's dynamic table untouched (never-indexed)."""
    fields = [
        (b":method", method.encode()),
        (b":scheme", b"http"),
        (b":authority", b"test"),
        (b":path", path.encode()),
        *extra,
    ]
    return hpack.Encoder().encode([hpack.NeverIndexedHeaderTuple(n, v) for n, v in fields])


def request(stream_id: int, path: str = "/", end_stream: bool = True) -> HeadersFrame:
    flags = [END_HEADERS, END_STREAM] if end_stream else [END_HEADERS]
    return HeadersFrame(stream_id, request_block(path), flags=flags)


class RawConn:
    """An HTTP/2 client connection that writes whatever frames it is given.

    It reads the server's frames with hyperframe, decodes response headers
    with its own HPACK decoder, and remembers everything it read.
    """

    def __init__(
        self, port: int, settings: dict[int, int] | None = None, *, ack: bool = True
    ) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT)
        self.buf = bytearray()
        self.decoder = hpack.Decoder()
        self.frames: list[Frame] = []
        self.status: dict[int, int] = {}
        self.eof = False
        self.send(PREFACE, SettingsFrame(0, settings=settings or {}))
        server_settings = self.wait_for(
            lambda f: isinstance(f, SettingsFrame) and "ACK" not in f.flags, "server SETTINGS"
        )
        assert isinstance(server_settings, SettingsFrame)
        self.server_settings = server_settings.settings
        if ack:
            self.send(SettingsFrame(0, flags=["ACK"]))

    def send(self, *items: Frame | bytes) -> None:
        self.sock.sendall(b"".join(i if isinstance(i, bytes) else i.serialize() for i in items))

    def flood(self, chunks: Iterable[bytes]) -> threading.Thread:
        """Send ``chunks`` from a thread until done or the server hangs up."""
        sock = self.sock.dup()

        def run() -> None:
            with sock:
                for chunk in chunks:
                    try:
                        sock.sendall(chunk)
                    except OSError:
                        return

        thread = threading.Thread(target=run, daemon=True)
        thread.start()
        return thread

    def _next_frame(self, deadline: float) -> Frame | None:
        """The next frame from the server; None at end of stream."""
        while True:
            if len(self.buf) >= 9:
                frame, length = Frame.parse_frame_header(memoryview(bytes(self.buf[:9])))
                if len(self.buf) >= 9 + length:
                    frame.parse_body(memoryview(bytes(self.buf[9 : 9 + length])))
                    del self.buf[: 9 + length]
                    self._note(frame)
                    return frame
            if self.eof:
                return None
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError
            self.sock.settimeout(remaining)
            try:
                chunk = self.sock.recv(1 << 20)
            except ConnectionResetError:
                chunk = b""
            if not chunk:
                self.eof = True
            self.buf += chunk

    def _note(self, frame: Frame) -> None:
        self.frames.append(frame)
        if isinstance(frame, HeadersFrame):
            assert END_HEADERS in frame.flags, "test client expects one-frame header blocks"
            for name, value in self.decoder.decode(frame.data, raw=True):
                if name == b":status":
                    self.status[frame.stream_id] = int(value)

    def wait_for(
        self, predicate: Callable[[Frame], bool], what: str, timeout: float = TIMEOUT
    ) -> Frame:
        """Read until a frame matches ``predicate``; fail on timeout or end of stream."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                frame = self._next_frame(deadline)
            except TimeoutError:
                raise AssertionError(
                    f"no {what} within {timeout} s; read {self.summary()}"
                ) from None
            if frame is None:
                raise AssertionError(f"connection closed before {what}; read {self.summary()}")
            if predicate(frame):
                return frame

    def wait_goaway(self, timeout: float = TIMEOUT) -> GoAwayFrame:
        frame = self.wait_for(lambda f: isinstance(f, GoAwayFrame), "GOAWAY", timeout)
        assert isinstance(frame, GoAwayFrame)
        return frame

    def count(self, predicate: Callable[[Frame], bool]) -> int:
        return sum(1 for frame in self.frames if predicate(frame))

    def summary(self) -> str:
        kinds: dict[str, int] = {}
        for frame in self.frames:
            kinds[type(frame).__name__] = kinds.get(type(frame).__name__, 0) + 1
        return f"{kinds} eof={self.eof}"

    def close(self) -> None:
        self.sock.close()

    def __enter__(self) -> RawConn:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def get(port: int, path: str = "/") -> tuple[int, bytes]:
    """One request on a fresh, well-behaved connection."""
    client = Client(port)
    try:
        return client.get(path)
    finally:
        client.close()


def hpack_bomb(value_size: int, references: int) -> bytes:
    """A request whose one large field is entered in the dynamic table, then repeated.

    Each repetition is a one-byte indexed representation (index 62, the
    newest dynamic entry), so the block is tiny and the header list huge.
    """
    literal = hpack.Encoder().encode([(b"x-bomb", b"a" * value_size)], huffman=False)
    assert literal[0] & 0xC0 == 0x40, "expected a literal with incremental indexing"
    return request_block() + literal + bytes([0x80 | 62]) * references


class Client:
    """A well-behaved client on the h2 library: the bystander attacks must not hurt."""

    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT)
        config = h2.config.H2Configuration(client_side=True, header_encoding=None)
        self.conn = h2.connection.H2Connection(config=config)
        self.conn.initiate_connection()
        self.sock.sendall(self.conn.data_to_send())

    def get(self, path: str = "/") -> tuple[int, bytes]:
        conn = self.conn
        stream_id = conn.get_next_available_stream_id()
        headers = [
            (b":method", b"GET"),
            (b":scheme", b"http"),
            (b":authority", b"test"),
            (b":path", path.encode()),
        ]
        conn.send_headers(stream_id, headers, end_stream=True)
        self.sock.sendall(conn.data_to_send())
        status = 0
        body = b""
        deadline = time.monotonic() + TIMEOUT
        while True:
            self.sock.settimeout(max(deadline - time.monotonic(), 0.001))
            data = self.sock.recv(65536)
            assert data, f"the server closed a well-behaved connection ({path})"
            ended = False
            for event in conn.receive_data(data):
                if getattr(event, "stream_id", None) != stream_id:
                    assert not isinstance(event, h2.events.ConnectionTerminated), event
                    continue
                if isinstance(event, h2.events.ResponseReceived):
                    status = int(dict(event.headers)[b":status"])
                elif isinstance(event, h2.events.DataReceived):
                    body += event.data
                    conn.acknowledge_received_data(event.flow_controlled_length, stream_id)
                elif isinstance(event, h2.events.StreamEnded):
                    ended = True
                elif isinstance(event, h2.events.StreamReset):
                    raise AssertionError(f"{path} was reset: {event}")
            out = conn.data_to_send()
            if out:
                self.sock.sendall(out)
            if ended:
                return status, body

    def close(self) -> None:
        self.sock.close()
