"""A raw HTTP/2 client for conformance cases, plus the checks they share.

:class:`RawH2` speaks frames to a real server over TCP (cleartext, prior
knowledge).  Frames are built with hyperframe (``*Frame(...).serialize()``),
or byte by byte with :func:`raw_frame` when even hyperframe refuses to
serialize them; header blocks come from :func:`encode` (a stateless HPACK
encoder: static-table indexes and literals without indexing, so a block
the server drops cannot desynchronise later ones) or from the ``hpack_*`` builders for
exact representations.  Server frames are parsed with hyperframe (9-byte
header, then payload) and server header blocks decoded with hpack.

Every wait is bounded by a timeout and ends on the awaited frame, a GOAWAY
or the connection closing; nothing sleeps for a fixed time.  The usual way
to show that a frame was *ignored* is to follow it with a PING and see the
PING's ACK come back with no error before it.

:func:`h2_request` is an independent client built on the h2 library, used
for well-formed exchanges and for "the server still serves new connections".
"""

from __future__ import annotations

import contextlib
import socket
import ssl
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

import h2.config
import h2.connection
import h2.events
import hpack
from h2.errors import ErrorCodes
from hpack.hpack import encode_integer
from hpack.huffman_constants import REQUEST_CODES, REQUEST_CODES_LENGTH
from hpack.table import HeaderTable
from hyperframe.frame import (
    ContinuationFrame,
    DataFrame,
    Frame,
    GoAwayFrame,
    HeadersFrame,
    PingFrame,
    RstStreamFrame,
    SettingsFrame,
)

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"

#: Wait for an expected answer at most this long.
IO_TIMEOUT = 5.0

#: The client side of TLS when the suite runs over TLS (ALPN h2), else None.
TLS: ssl.SSLContext | None = None


def connect(port: int, timeout: float = IO_TIMEOUT) -> socket.socket:
    """A connection to the server under test: cleartext, or TLS with ALPN ``h2``."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    if TLS is None:
        return sock
    tls = TLS.wrap_socket(sock, server_hostname="localhost")
    if tls.selected_alpn_protocol() != "h2":
        raise AssertionError(f"ALPN chose {tls.selected_alpn_protocol()!r}, not h2")
    return tls


#: How a connection can end under the client's reads (a TLS close is an EOF too).
CLOSED_ERRORS = (ConnectionResetError, ssl.SSLEOFError, ssl.SSLZeroReturnError)

# Frame types and flags, for raw_frame.
DATA, HEADERS, PRIORITY, RST_STREAM, SETTINGS = 0x0, 0x1, 0x2, 0x3, 0x4
PUSH_PROMISE, PING, GOAWAY, WINDOW_UPDATE, CONTINUATION = 0x5, 0x6, 0x7, 0x8, 0x9
END_STREAM, ACK, END_HEADERS, PADDED, PRIORITY_FLAG = 0x1, 0x1, 0x4, 0x8, 0x20

#: A request the server answers with 200 and app.HELLO.
GET = [
    (b":method", b"GET"),
    (b":scheme", b"http"),
    (b":path", b"/"),
    (b":authority", b"localhost"),
]


def request_headers(
    path: bytes = b"/", method: bytes = b"GET", extra: Sequence[tuple[bytes, bytes]] = ()
) -> list[tuple[bytes, bytes]]:
    return [
        (b":method", method),
        (b":scheme", b"http"),
        (b":path", path),
        (b":authority", b"localhost"),
        *extra,
    ]


def code_name(code: int) -> str:
    try:
        return f"{ErrorCodes(code).name}({code:#x})"
    except ValueError:
        return f"unknown({code:#x})"


# ---------------------------------------------------------------- frame building


def raw_frame(
    ftype: int, flags: int, stream_id: int, payload: bytes = b"", *, length: int | None = None
) -> bytes:
    """A frame byte by byte; ``stream_id`` may carry the reserved bit (``| 1 << 31``)."""
    size = len(payload) if length is None else length
    return size.to_bytes(3, "big") + bytes([ftype, flags]) + stream_id.to_bytes(4, "big") + payload


def _integer(value: int, prefix_bits: int, flags: int) -> bytes:
    data = encode_integer(value, prefix_bits)
    data[0] |= flags
    return bytes(data)


def huffman_bits(data: bytes, *, eos_after: int | None = None) -> tuple[int, int]:
    """The Huffman code of ``data`` as (bits, bit length), optionally with EOS inserted."""
    bits = 0
    nbits = 0
    for i, byte in enumerate(data):
        if eos_after is not None and i == eos_after:
            bits = (bits << REQUEST_CODES_LENGTH[256]) | REQUEST_CODES[256]
            nbits += REQUEST_CODES_LENGTH[256]
        bits = (bits << REQUEST_CODES_LENGTH[byte]) | REQUEST_CODES[byte]
        nbits += REQUEST_CODES_LENGTH[byte]
    return bits, nbits


def huffman(data: bytes) -> bytes:
    """Huffman-encode ``data`` with the padding RFC 7541 section 5.2 requires (1 bits)."""
    bits, nbits = huffman_bits(data)
    pad = -nbits % 8
    bits = (bits << pad) | ((1 << pad) - 1)
    return bits.to_bytes((nbits + pad) // 8, "big")


def hpack_string(value: bytes, *, huffman_coded: bool = False, raw: bytes | None = None) -> bytes:
    """A string literal; ``raw`` gives the (Huffman) octets verbatim."""
    if raw is not None:
        return _integer(len(raw), 7, 0x80 if huffman_coded else 0) + raw
    if huffman_coded:
        coded = huffman(value)
        return _integer(len(coded), 7, 0x80) + coded
    return _integer(len(value), 7, 0) + value


def hpack_indexed(index: int) -> bytes:
    """Indexed header field representation (RFC 7541 section 6.1)."""
    return _integer(index, 7, 0x80)


_LITERAL_KINDS = {
    "incremental": (6, 0x40),  # 6.2.1
    "without": (4, 0x00),  # 6.2.2
    "never": (4, 0x10),  # 6.2.3
}


def hpack_literal(
    name: bytes | int, value: bytes, *, kind: str = "without", huffman_coded: bool = False
) -> bytes:
    """Literal header field; ``name`` is a table index or a new name."""
    prefix, flags = _LITERAL_KINDS[kind]
    if isinstance(name, int):
        head = _integer(name, prefix, flags)
    else:
        head = bytes([flags]) + hpack_string(name, huffman_coded=huffman_coded)
    return head + hpack_string(value, huffman_coded=huffman_coded)


def hpack_size_update(size: int) -> bytes:
    """Dynamic table size update (RFC 7541 section 6.3)."""
    return _integer(size, 5, 0x20)


_STATIC = HeaderTable.STATIC_TABLE


def encode(headers: Iterable[tuple[bytes, bytes]]) -> bytes:
    """Stateless HPACK: static-table indexes and literals without indexing only."""
    out = bytearray()
    for name, value in headers:
        name_index = 0
        for i, (sname, svalue) in enumerate(_STATIC, 1):
            if sname == name:
                if svalue == value:
                    out += hpack_indexed(i)
                    break
                name_index = name_index or i
        else:
            out += hpack_literal(name_index or name, value)
    return bytes(out)


# ---------------------------------------------------------------- responses


@dataclass
class Exchange:
    """What a stream received: the response head, body, trailers, and how it ended."""

    stream_id: int
    status: int | None = None
    headers: list[tuple[bytes, bytes]] = field(default_factory=list)
    body: bytes = b""
    trailers: list[tuple[bytes, bytes]] | None = None
    data_frames: list[int] = field(default_factory=list)
    ended: bool = False
    reset: int | None = None

    def get(self, name: bytes) -> bytes | None:
        values = [v for n, v in self.headers if n == name]
        return values[0] if values else None


class ServerClosed(AssertionError):
    pass


# ---------------------------------------------------------------- the raw client


class RawH2:
    """One raw HTTP/2 connection to ``127.0.0.1:port``."""

    def __init__(self, port: int, timeout: float = IO_TIMEOUT) -> None:
        self.sock = connect(port, timeout)
        self.timeout = timeout
        self.buf = bytearray()
        self.decoder = hpack.Decoder()
        self.server_settings: dict[int, int] = {}
        #: Every frame received so far (for failure messages).
        self.received: list[Frame] = []
        self.goaways: list[GoAwayFrame] = []
        self.closed = False
        self._block: list[Frame] = []
        self.exchanges: dict[int, Exchange] = {}

    def __enter__(self) -> RawH2:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self.sock.close()

    # ------------------------------------------------------------ sending

    def send(self, *items: Frame | bytes) -> None:
        data = b"".join(item if isinstance(item, bytes) else item.serialize() for item in items)
        # If the server closed first, what it sent before is still to be read.
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            self.sock.sendall(data)

    def handshake(self, settings: dict[int, int] | None = None, *, ack: bool = True) -> RawH2:
        """Client preface + SETTINGS; wait for the server's SETTINGS and the ACK of ours."""
        self.send(PREFACE, SettingsFrame(0, settings=settings or {}))
        frame = self.wait_for(
            lambda f: isinstance(f, SettingsFrame) and "ACK" not in f.flags, "server SETTINGS"
        )
        assert isinstance(frame, SettingsFrame)
        self.server_settings.update(frame.settings)
        if ack:
            self.send(SettingsFrame(0, flags=["ACK"]))
        self.wait_for(lambda f: isinstance(f, SettingsFrame) and "ACK" in f.flags, "SETTINGS ACK")
        return self

    def headers(
        self,
        stream_id: int,
        headers: Sequence[tuple[bytes, bytes]] | None = None,
        *,
        end_stream: bool = True,
        end_headers: bool = True,
        block: bytes | None = None,
    ) -> HeadersFrame:
        flags = []
        if end_stream:
            flags.append("END_STREAM")
        if end_headers:
            flags.append("END_HEADERS")
        data = block if block is not None else encode(GET if headers is None else headers)
        return HeadersFrame(stream_id, data, flags=flags)

    def request(self, stream_id: int, path: bytes = b"/", *, end_stream: bool = True) -> None:
        method = b"GET" if end_stream else b"POST"
        self.send(self.headers(stream_id, request_headers(path, method), end_stream=end_stream))

    def ping(self, data: bytes = b"conform!") -> bytes:
        self.send(PingFrame(0, opaque_data=data))
        return data

    # ------------------------------------------------------------ reading

    def _recv(self, deadline: float) -> bool:
        """Read more bytes; False once the server closed the connection."""
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError
        self.sock.settimeout(remaining)
        try:
            chunk = self.sock.recv(65536)
        except CLOSED_ERRORS:
            chunk = b""
        if not chunk:
            self.closed = True
            return False
        self.buf += chunk
        return True

    def read_frame(self, timeout: float | None = None) -> Frame | None:
        """The next frame, or None if the connection is closed; TimeoutError if none came."""
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        while len(self.buf) < 9:
            if self.closed or not self._recv(deadline):
                return None
        frame, length = Frame.parse_frame_header(memoryview(bytes(self.buf[:9])))
        while len(self.buf) < 9 + length:
            if self.closed or not self._recv(deadline):
                raise AssertionError(f"connection closed inside a {frame!r}")
        payload = bytes(self.buf[9 : 9 + length])
        del self.buf[: 9 + length]
        frame.parse_body(memoryview(payload))
        self.received.append(frame)
        self._track(frame)
        return frame

    def _track(self, frame: Frame) -> None:
        sid = frame.stream_id
        if isinstance(frame, GoAwayFrame):
            self.goaways.append(frame)
        elif isinstance(frame, HeadersFrame | ContinuationFrame):
            self._block.append(frame)
            if "END_HEADERS" in frame.flags:
                first = self._block[0]
                block = b"".join(f.data for f in self._block)
                self._block = []
                headers = [(bytes(n), bytes(v)) for n, v in self.decoder.decode(block, raw=True)]
                ex = self.exchanges.setdefault(first.stream_id, Exchange(first.stream_id))
                status = next((v for n, v in headers if n == b":status"), None)
                if status is not None and int(status) >= 200:
                    ex.status = int(status)
                    ex.headers = headers
                elif status is None:
                    ex.trailers = headers
                if "END_STREAM" in first.flags:
                    ex.ended = True
        elif isinstance(frame, DataFrame):
            ex = self.exchanges.setdefault(sid, Exchange(sid))
            ex.body += frame.data
            ex.data_frames.append(len(frame.data))
            if "END_STREAM" in frame.flags:
                ex.ended = True
        elif isinstance(frame, RstStreamFrame):
            self.exchanges.setdefault(sid, Exchange(sid)).reset = frame.error_code

    def octets(self, stream_id: int) -> int:
        """DATA octets received so far on ``stream_id``."""
        ex = self.exchanges.get(stream_id)
        return len(ex.body) if ex is not None else 0

    def describe(self) -> str:
        frames = ", ".join(repr(f) for f in self.received[-12:])
        return f"received so far: [{frames}]" + (" then EOF" if self.closed else "")

    def wait_for(
        self, match: Callable[[Frame], bool], what: str, timeout: float | None = None
    ) -> Frame:
        """The first frame ``match`` accepts; fails on an error GOAWAY, EOF or timeout."""
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        while True:
            try:
                frame = self.read_frame(max(deadline - time.monotonic(), 0.001))
            except TimeoutError:
                raise AssertionError(f"timed out waiting for {what}; {self.describe()}") from None
            if frame is None:
                raise ServerClosed(f"connection closed while waiting for {what}; {self.describe()}")
            if match(frame):
                return frame
            if isinstance(frame, GoAwayFrame) and frame.error_code:
                raise AssertionError(
                    f"GOAWAY {code_name(frame.error_code)} while waiting for {what}; "
                    f"{self.describe()}"
                )

    def wait_closed(self, timeout: float | None = None) -> None:
        """Read until EOF (frames allowed); fails if the server keeps the connection open."""
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        while True:
            try:
                frame = self.read_frame(max(deadline - time.monotonic(), 0.001))
            except TimeoutError:
                raise AssertionError(
                    f"server did not close the connection; {self.describe()}"
                ) from None
            if frame is None:
                return

    # ------------------------------------------------------------ expectations

    def expect_ping_ack(self, data: bytes = b"conform!") -> None:
        """The PING with ``data`` came back acknowledged, with no error before it.

        An error GOAWAY or an RST_STREAM other than NO_ERROR/CANCEL while
        waiting fails: the frames sent before the PING were to be ignored.
        """
        start = len(self.received)
        self.wait_for(
            lambda f: isinstance(f, PingFrame) and "ACK" in f.flags and f.opaque_data == data,
            f"PING ACK {data!r}",
        )
        for f in self.received[start:]:
            if isinstance(f, RstStreamFrame) and f.error_code not in (0, ErrorCodes.CANCEL):
                raise AssertionError(f"unexpected {f!r}; {self.describe()}")

    def still_works(self, stream_id: int, path: bytes = b"/") -> Exchange:
        """The connection still answers a new request (PING round trip first)."""
        self.expect_ping_ack(self.ping(b"alive?!!"))
        self.request(stream_id, path)
        return self.expect_response(stream_id)

    def expect_response(self, stream_id: int, timeout: float | None = None) -> Exchange:
        """The complete response (END_STREAM) on ``stream_id``."""

        def done(_: Frame | None = None) -> bool:
            ex = self.exchanges.get(stream_id)
            if ex is not None and ex.reset is not None and not ex.ended:
                raise AssertionError(
                    f"stream {stream_id} reset with {code_name(ex.reset)}; {self.describe()}"
                )
            return ex is not None and ex.ended

        if not done():
            self.wait_for(done, f"response on stream {stream_id}", timeout)
        return self.exchanges[stream_id]

    def expect_connection_error(self, *codes: int) -> GoAwayFrame:
        """A GOAWAY with one of ``codes``, then the server closes the connection."""
        allowed = ", ".join(code_name(c) for c in codes)
        goaway = self._wait_goaway(allowed)
        if goaway.error_code not in codes:
            raise AssertionError(
                f"GOAWAY {code_name(goaway.error_code)}, expected {allowed}; {self.describe()}"
            )
        self._check_closed_after(goaway, codes)
        return goaway

    def _wait_goaway(self, allowed: str) -> GoAwayFrame:
        for frame in self.received:
            if isinstance(frame, GoAwayFrame):
                return frame
        deadline = time.monotonic() + self.timeout
        while True:
            try:
                frame = self.read_frame(max(deadline - time.monotonic(), 0.001))
            except TimeoutError:
                raise AssertionError(
                    f"no GOAWAY ({allowed}) within {self.timeout}s; {self.describe()}"
                ) from None
            if frame is None:
                raise AssertionError(f"closed without GOAWAY ({allowed}); {self.describe()}")
            if isinstance(frame, GoAwayFrame):
                return frame

    def _check_closed_after(self, goaway: GoAwayFrame, codes: Sequence[int]) -> None:
        # RFC 9113 5.4.1: after the GOAWAY for a connection error, close the connection.
        self.wait_closed()
        last = goaway.last_stream_id
        for frame in self.goaways:
            assert frame.error_code in codes, f"second GOAWAY {frame!r}; {self.describe()}"
            assert frame.last_stream_id <= last, f"GOAWAY last_stream_id grew; {self.describe()}"
            last = frame.last_stream_id

    def expect_stream_error(self, stream_id: int, *codes: int, no_response: bool = False) -> Frame:
        """RST_STREAM on ``stream_id`` or a GOAWAY, with one of ``codes``.

        RFC 9113 5.4.2 lets an endpoint treat a stream error as a connection
        error, so both count; a GOAWAY must then be followed by the close.
        With ``no_response``, response HEADERS on the stream fail the case
        (a malformed request must not reach the application).
        """
        allowed = ", ".join(code_name(c) for c in codes)
        deadline = time.monotonic() + self.timeout
        while True:
            try:
                frame = self.read_frame(max(deadline - time.monotonic(), 0.001))
            except TimeoutError:
                raise AssertionError(
                    f"no RST_STREAM/GOAWAY ({allowed}) for stream {stream_id}; {self.describe()}"
                ) from None
            if frame is None:
                raise AssertionError(
                    f"closed without RST_STREAM/GOAWAY ({allowed}); {self.describe()}"
                )
            if no_response and isinstance(frame, HeadersFrame) and frame.stream_id == stream_id:
                raise AssertionError(f"the malformed request was answered; {self.describe()}")
            if isinstance(frame, RstStreamFrame) and frame.stream_id == stream_id:
                if frame.error_code not in codes:
                    raise AssertionError(
                        f"RST_STREAM {code_name(frame.error_code)}, expected {allowed}; "
                        f"{self.describe()}"
                    )
                return frame
            if isinstance(frame, GoAwayFrame):
                if frame.error_code not in codes:
                    raise AssertionError(
                        f"GOAWAY {code_name(frame.error_code)}, expected {allowed}; "
                        f"{self.describe()}"
                    )
                self._check_closed_after(frame, codes)
                return frame


# ---------------------------------------------------------------- h2 library client


def h2_request(
    port: int,
    path: bytes = b"/",
    *,
    method: bytes = b"GET",
    headers: Sequence[tuple[bytes, bytes]] = (),
    body: bytes | None = None,
    trailers: Sequence[tuple[bytes, bytes]] | None = None,
    timeout: float = IO_TIMEOUT,
) -> Exchange:
    """One request on a new connection, by the h2 library (a well-behaved client).

    The body is sent as the server's flow-control windows allow.
    """
    config = h2.config.H2Configuration(client_side=True, header_encoding=None)
    conn = h2.connection.H2Connection(config=config)
    conn.initiate_connection()
    with connect(port, timeout) as sock:
        stream_id = conn.get_next_available_stream_id()
        end = body is None and trailers is None
        conn.send_headers(stream_id, request_headers(path, method, headers), end_stream=end)
        pending = memoryview(body or b"")
        finish = not end
        ex = Exchange(stream_id)
        deadline = time.monotonic() + timeout
        while True:
            while finish and conn.local_flow_control_window(stream_id) > 0:
                size = min(
                    len(pending),
                    conn.local_flow_control_window(stream_id),
                    conn.max_outbound_frame_size,
                )
                last = size == len(pending)
                conn.send_data(stream_id, bytes(pending[:size]), end_stream=last and not trailers)
                pending = pending[size:]
                if last:
                    if trailers:
                        conn.send_headers(stream_id, list(trailers), end_stream=True)
                    finish = False
            out = conn.data_to_send()
            if out:
                sock.sendall(out)
            if ex.ended:
                break
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(f"no complete response from the server: {ex!r}")
            sock.settimeout(remaining)
            data = sock.recv(65536)
            if not data:
                raise AssertionError(f"server closed the connection: {ex!r}")
            for event in conn.receive_data(data):
                if isinstance(event, h2.events.ResponseReceived):
                    ex.headers = [(bytes(n), bytes(v)) for n, v in event.headers]
                    ex.status = int(dict(ex.headers)[b":status"])
                elif isinstance(event, h2.events.DataReceived):
                    ex.body += event.data
                    ex.data_frames.append(len(event.data))
                    conn.acknowledge_received_data(event.flow_controlled_length, stream_id)
                elif isinstance(event, h2.events.TrailersReceived):
                    ex.trailers = [(bytes(n), bytes(v)) for n, v in event.headers]
                elif isinstance(event, h2.events.StreamEnded):
                    ex.ended = True
                elif isinstance(event, h2.events.StreamReset):
                    raise AssertionError(f"stream reset: {event!r}")
                elif isinstance(event, h2.events.ConnectionTerminated):
                    raise AssertionError(f"GOAWAY: {event!r}")
        conn.close_connection()
        sock.sendall(conn.data_to_send())
    return ex
