"""WebSocket, sans I/O: handshake checks and a post-handshake session on wsproto.

The handshake differs per transport (HTTP/1.1 Upgrade with a 101, RFC 8441
extended CONNECT on HTTP/2 and RFC 9220 on HTTP/3 with a 200), but what
follows is the same byte stream of frames, so one :class:`WSSession` serves
all three: bytes in, whole messages out; messages in, frames out.

The session assembles fragmented messages itself so that ``max_size`` bounds
a message while it arrives (close 1009), answers pings, and turns framing
errors from wsproto into the close code RFC 6455 names (1002, 1007).
"""

from __future__ import annotations

import base64
import binascii
import zlib
from dataclasses import dataclass
from typing import Any, Final

from wsproto.connection import ConnectionState
from wsproto.extensions import Extension, PerMessageDeflate
from wsproto.frame_protocol import (
    CloseReason,
    FrameDecoder,
    FrameProtocol,
    Opcode,
    ParseFailed,
    RsvBits,
    XorMaskerNull,
    XorMaskerSimple,
)
from wsproto.utilities import generate_accept_token, split_comma_header

from .events import Headers

__all__ = [
    "CloseReceived",
    "HandshakeError",
    "MessageReceived",
    "PongReceived",
    "WSSession",
    "accept_token",
    "check_h1_handshake",
    "negotiate_extensions",
    "offered_subprotocols",
]

#: Close codes (RFC 6455 section 7.4.1).
NORMAL: Final = 1000
GOING_AWAY: Final = 1001
PROTOCOL_ERROR: Final = 1002
INVALID_DATA: Final = 1007
TOO_BIG: Final = 1009
INTERNAL_ERROR: Final = 1011
#: The server is restarting (a rolling restart); the client may reconnect at once.
SERVICE_RESTART: Final = 1012
NO_STATUS: Final = 1005
ABNORMAL: Final = 1006


@dataclass(slots=True)
class MessageReceived:
    """A complete message: ``str`` for text, ``bytes`` for binary."""

    data: str | bytes


@dataclass(slots=True)
class CloseReceived:
    """The peer closed (``error`` False) or broke the protocol (``error`` True).

    When ``error`` is set the session has already queued our close frame
    with ``code``; the transport should send it and then close.
    """

    code: int
    reason: str
    error: bool = False


@dataclass(slots=True)
class PongReceived:
    payload: bytes


WSEvent = MessageReceived | CloseReceived | PongReceived


class HandshakeError(Exception):
    """A bad opening handshake; ``status`` and ``headers`` make the HTTP answer."""

    def __init__(self, status: int, message: str, headers: Headers | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.headers = headers or []


# ---------------------------------------------------------------- handshake


def _header_values(headers: Headers, name: bytes) -> list[bytes]:
    return [value for key, value in headers if key == name]


def check_h1_handshake(method: str, headers: Headers) -> bytes:
    """Validate an HTTP/1.1 Upgrade request (RFC 6455 4.2.1); returns the key.

    Raises :class:`HandshakeError` with 400 (malformed) or 426 (wrong
    version, with the ``Sec-WebSocket-Version`` the server speaks).
    """
    if method != "GET":
        raise HandshakeError(400, "WebSocket handshake must be a GET request")
    connection = b",".join(_header_values(headers, b"connection")).lower()
    if b"upgrade" not in [token.strip() for token in connection.split(b",")]:
        raise HandshakeError(400, "Connection header must contain 'upgrade'")
    versions = _header_values(headers, b"sec-websocket-version")
    if versions != [b"13"]:
        raise HandshakeError(
            426, "unsupported WebSocket version", [(b"sec-websocket-version", b"13")]
        )
    keys = _header_values(headers, b"sec-websocket-key")
    if len(keys) != 1:
        raise HandshakeError(400, "exactly one Sec-WebSocket-Key is required")
    try:
        if len(base64.b64decode(keys[0], validate=True)) != 16:
            raise ValueError
    except (binascii.Error, ValueError):
        raise HandshakeError(400, "Sec-WebSocket-Key must be 16 bytes, base64") from None
    return keys[0]


def check_connect_handshake(headers: Headers) -> None:
    """RFC 8441 / RFC 9220: the version must be 13; there is no key."""
    versions = _header_values(headers, b"sec-websocket-version")
    if versions and versions != [b"13"]:
        raise HandshakeError(
            426, "unsupported WebSocket version", [(b"sec-websocket-version", b"13")]
        )


def accept_token(key: bytes) -> bytes:
    return generate_accept_token(key)


def offered_subprotocols(headers: Headers) -> list[str]:
    protocols: list[str] = []
    for value in _header_values(headers, b"sec-websocket-protocol"):
        protocols.extend(split_comma_header(value))
    return protocols


#: zlib level of the messages the server compresses (``--ws-deflate-level``).
DEFAULT_DEFLATE_LEVEL: Final = 1


class Deflate(PerMessageDeflate):
    """Server-side permessage-deflate: the server's zlib level, inflation bounded by max_size.

    Incoming: wsproto's own extension inflates a whole frame whatever it grows
    to (a 400 KB frame of compressed zeros is 400 MB) before any size check can
    see it; here inflating stops one byte past ``max_size`` and the message is
    refused with 1009, so the limit bounds memory as it does for plain messages.

    Outgoing: wsproto compresses at zlib's default level 6.  Level 1 deflates
    text three to five times faster for a few percent more bytes (Autobahn's
    text cases: 46% instead of 39% of the size), and on a server the CPU spent
    per message is the cost that matters; nginx's gzip defaults to level 1 for
    the same reason.  The level is the sender's choice: nothing to negotiate.
    """

    def __init__(self, level: int = DEFAULT_DEFLATE_LEVEL, max_size: int = 16 << 20) -> None:
        super().__init__()
        self.level = level
        #: Largest inflated message: inflating stops there (1009), so a
        #: small compressed message cannot make the server allocate more.
        self.max_size = max_size
        self._deflater: Any = None
        self._inflater: Any = None
        #: The message arriving is compressed (RSV1 on its first frame).
        self._inflating = False
        #: This frame carries message data (not a control frame between fragments).
        self._data_frame = False
        self._inflated = 0

    # ------------------------------------------------------------ incoming

    def frame_inbound_header(
        self,
        proto: FrameDecoder | FrameProtocol,
        opcode: Opcode,
        rsv: RsvBits,
        payload_length: int,
    ) -> CloseReason | RsvBits:
        if rsv.rsv1 and (opcode.iscontrol() or opcode is Opcode.CONTINUATION):
            return CloseReason.PROTOCOL_ERROR  # RFC 7692 6.1: RSV1 on a first frame only
        self._data_frame = not opcode.iscontrol()
        if opcode is Opcode.TEXT or opcode is Opcode.BINARY:
            self._inflating = rsv.rsv1
            self._inflated = 0
            if rsv.rsv1 and self._inflater is None:
                self._inflater = zlib.decompressobj(-int(self.client_max_window_bits))
        return RsvBits(True, False, False)

    def frame_inbound_payload_data(
        self, proto: FrameDecoder | FrameProtocol, data: bytes
    ) -> bytes | CloseReason:
        if not (self._inflating and self._data_frame):
            return data
        return self._inflate(data)

    def frame_inbound_complete(
        self, proto: FrameDecoder | FrameProtocol, fin: bool
    ) -> bytes | CloseReason | None:
        if not (fin and self._inflating and self._data_frame):
            return None
        self._inflating = False
        # RFC 7692 7.2.2: the sender removed the sync flush's 00 00 ff ff.
        out = self._inflate(b"\x00\x00\xff\xff")
        if self.client_no_context_takeover:
            self._inflater = None
        return out

    def _inflate(self, data: bytes) -> bytes | CloseReason:
        room = self.max_size - self._inflated
        try:
            # One byte more than there is room for tells "too big" without
            # inflating the rest.
            out: bytes = self._inflater.decompress(data, room + 1)
        except zlib.error:
            return CloseReason.INVALID_FRAME_PAYLOAD_DATA
        if len(out) > room:
            return CloseReason.MESSAGE_TOO_BIG
        self._inflated += len(out)
        return out

    # ------------------------------------------------------------ outgoing

    def frame_outbound(
        self,
        proto: FrameDecoder | FrameProtocol,
        opcode: Opcode,
        rsv: RsvBits,
        data: bytes,
        fin: bool,
    ) -> tuple[RsvBits, bytes]:
        if opcode is Opcode.TEXT or opcode is Opcode.BINARY:
            rsv = RsvBits(True, rsv.rsv2, rsv.rsv3)  # RSV1 marks a compressed message
        elif opcode is not Opcode.CONTINUATION:
            return rsv, data  # control frames are never compressed
        deflater = self._deflater
        if deflater is None:
            # The window the client allowed us (server_max_window_bits).  zlib
            # walks its whole hash table each time the window slides, so a
            # small window with zlib's default table (memLevel 8) spends its
            # time sliding: 512-byte windows compress several times slower.
            bits = int(self.server_max_window_bits)
            deflater = self._deflater = zlib.compressobj(
                self.level, zlib.DEFLATED, -bits, 8 if bits >= 12 else 5
            )
        out = deflater.compress(data)
        if fin:
            # RFC 7692 7.2.1: a sync flush, without its final 00 00 ff ff.
            out += deflater.flush(zlib.Z_SYNC_FLUSH)
            out = out[:-4]
            if self.server_no_context_takeover:
                self._deflater = None
        return rsv, out


def negotiate_extensions(
    headers: Headers, enabled: bool, level: int = DEFAULT_DEFLATE_LEVEL
) -> tuple[list[Extension], bytes | None]:
    """Accept permessage-deflate when offered (and enabled).

    Returns the wsproto extensions for the session and the
    ``Sec-WebSocket-Extensions`` response value (None when nothing agreed).
    """
    if not enabled:
        return [], None
    for value in _header_values(headers, b"sec-websocket-extensions"):
        for offer in split_comma_header(value):
            name = offer.split(";", 1)[0].strip()
            if name == PerMessageDeflate.name:
                extension = Deflate(level)
                accepted = extension.accept(offer)
                if accepted is None:
                    continue
                # accept() gives the parameters only ("" or True for none).
                agreed = f"{name}; {accepted}" if isinstance(accepted, str) and accepted else name
                return [extension], agreed.encode("ascii")
    return [], None


# ---------------------------------------------------------------- coalescing

_ZERO_KEY = b"\0\0\0\0"


def _unmask(payload: bytes, key: bytes) -> bytes:
    n = len(payload)
    if not n:
        return payload
    stream = (key * ((n >> 2) + 1))[:n]
    value = int.from_bytes(payload, "little") ^ int.from_bytes(stream, "little")
    return value.to_bytes(n, "little")


class FrameCoalescer:
    """Merges the fragments of a message into one frame before wsproto parses them.

    wsproto spends ~20 µs of Python per frame: a message cut into hundreds of
    small fragments (Autobahn 12.*/13.*: 128 KiB in 256-byte frames) costs
    more in framing than in everything else.  Only plainly well-formed frames
    that arrived together are merged: complete, masked, minimally encoded
    fragments of the message in progress (RSV bits on its first frame only).
    Pings and pongs between them pass as they are; a frame that is only partly
    here goes on at once (wsproto fails fast on what it can see).  At a close
    frame, or any frame that is not plainly well formed, the coalescer steps
    aside for good, so wsproto sees and judges every byte from there on exactly
    as sent.  A merged frame is masked with a zero key, which leaves its
    payload as is.
    """

    __slots__ = ("_held", "_in_message", "_off", "_passthrough")

    def __init__(self) -> None:
        self._held = b""
        #: Bytes of a large frame still to pass through untouched.
        self._passthrough = 0
        #: A data frame without FIN was seen: continuations are expected.
        self._in_message = False
        self._off = False

    def feed(self, data: bytes) -> bytes:
        if self._off:
            return data
        n = len(data)
        if (
            6 <= n < 132
            and (data[0] == 0x82 or data[0] == 0x81)
            and data[1] == 0x80 + n - 6
            and not (self._passthrough or self._held or self._in_message)
        ):
            return data  # the common case: exactly one small, whole, masked message
        out: list[bytes] = []
        if self._passthrough:
            if len(data) <= self._passthrough:
                self._passthrough -= len(data)
                return data
            out.append(data[: self._passthrough])
            data = data[self._passthrough :]
            self._passthrough = 0
        if self._held:
            buf = self._held + data
            self._held = b""
        else:
            buf = data
        end = len(buf)
        pos = 0
        run: list[tuple[int, int]] = []  # payload offsets of the fragments being merged
        run_start = run_head = 0
        while end - pos >= 2:
            b0 = buf[pos]
            b1 = buf[pos + 1]
            opcode = b0 & 0x0F
            fin = b0 & 0x80
            n = b1 & 0x7F
            if opcode >= 8:
                # A close frame, and whatever follows it, goes through as it is.
                ok = fin and n < 126 and not b0 & 0x70 and 9 <= opcode <= 10 and b1 & 0x80
            elif self._in_message:
                ok = opcode == 0 and not b0 & 0x70 and b1 & 0x80
            else:
                ok = (opcode == 1 or opcode == 2) and b1 & 0x80
            head = 6
            if ok and n >= 126:
                if n == 126:
                    head = 8
                    if end - pos < 4:
                        break
                    n = int.from_bytes(buf[pos + 2 : pos + 4], "big")
                    ok = n >= 126
                else:
                    head = 14
                    if end - pos < 10:
                        break
                    n = int.from_bytes(buf[pos + 2 : pos + 10], "big")
                    ok = 65536 <= n < 1 << 63
            if not ok:
                # Not plainly well formed: wsproto gets the rest as it is.
                if run:
                    out.append(self._merge(buf, run_start, pos, run_head, run))
                out.append(buf[pos:])
                self._off = True
                return b"".join(out)
            stop = pos + head + n
            if stop > end:
                # An incomplete frame goes on as it is (wsproto checks what it
                # can of it at once: fail fast); the rest of it follows untouched.
                if run:
                    out.append(self._merge(buf, run_start, pos, run_head, run))
                    run = []
                out.append(buf[pos:])
                self._passthrough = stop - end
                if opcode < 8:
                    self._in_message = not fin
                pos = end
                break
            if opcode >= 8:
                if run:
                    out.append(self._merge(buf, run_start, pos, run_head, run))
                    run = []
                out.append(buf[pos:stop])
            else:
                if not run:
                    run_start = pos
                    run_head = b0 & 0x7F
                run.append((pos + head, stop))
                self._in_message = not fin
                if fin:
                    out.append(self._merge(buf, run_start, stop, run_head | 0x80, run))
                    run = []
            pos = stop
        if run:
            out.append(self._merge(buf, run_start, pos, run_head, run))
        if pos < end:
            self._held = buf[pos:]
        return out[0] if len(out) == 1 else b"".join(out)

    def take_held(self) -> bytes:
        held, self._held = self._held, b""
        return held

    @staticmethod
    def _merge(buf: bytes, start: int, stop: int, head: int, run: list[tuple[int, int]]) -> bytes:
        if len(run) == 1:
            return buf[start:stop]  # a single frame goes as it came
        payload = b"".join(_unmask(buf[a:b], buf[a - 4 : a]) for a, b in run)
        n = len(payload)
        if n < 126:
            header = bytes((head, 0x80 | n))
        elif n < 65536:
            header = bytes((head, 0xFE)) + n.to_bytes(2, "big")
        else:
            header = bytes((head, 0xFF)) + n.to_bytes(8, "big")
        return header + _ZERO_KEY + payload


# ---------------------------------------------------------------- frames

#: Frames up to this size are unmasked with one big-int XOR, above it with
#: wsproto's own masker.  Both run in C, but CPython converts between bytes
#: and int at about 1-4 ns a byte while wsproto's four strided ``translate``
#: passes cost a fixed ~1.5 µs plus ~1.2 ns a byte: the XOR is three times
#: faster for a 64-byte message, still ahead at 1 KiB, and slower from a few
#: KiB on (8 KiB: 15 µs against 10; docs/performance.md has the table).
_INT_UNMASK_LIMIT: Final = 2048


class _IntMasker(XorMaskerSimple):
    """wsproto's masker, unmasking with one big-int XOR instead.

    Like wsproto's, it keeps its place in the key across the chunks of a
    frame that arrives in pieces.
    """

    def __init__(self, key: bytes) -> None:  # (wsproto's __init__ keeps the key only)
        self._key = key

    def process(self, data: bytearray) -> bytearray:
        n = len(data)
        if not n:
            return data
        key = self._key
        stream = (key * ((n >> 2) + 1))[:n]
        turn = n & 3
        if turn:
            self._key = key[turn:] + key[:turn]
        value = int.from_bytes(data, "little") ^ int.from_bytes(stream, "little")
        return bytearray(value.to_bytes(n, "little"))


class _Decoder(FrameDecoder):
    """wsproto's frame decoder, with a cheaper masker where there is one.

    wsproto picks its masker inside ``parse_header``; the key is the four
    bytes in front of the payload (RFC 6455 5.2), so they are read from the
    header about to be parsed and the masker is replaced once wsproto has
    accepted that header.  Everything else, every check included, is
    wsproto's.  A frame the coalescer merged carries a zero key: nothing to
    undo.
    """

    def parse_header(self) -> bool:
        buf = self.buffer.buffer
        if len(buf) < 6 or not buf[1] & 0x80:
            return super().parse_header()  # (incomplete, or wsproto refuses it: unmasked)
        size = buf[1] & 0x7F
        at = 2 if size < 126 else 4 if size == 126 else 10
        key = bytes(buf[at : at + 4])  # (short when incomplete: then wsproto waits)
        if not super().parse_header():
            return False
        if key == _ZERO_KEY:
            self.masker = XorMaskerNull()
        else:
            header = self.header
            if header is not None and header.payload_len <= _INT_UNMASK_LIMIT:
                self.masker = _IntMasker(key)
        return True

    @property
    def idle(self) -> bool:
        """No frame in progress and nothing buffered: parsing on would find nothing."""
        return self.header is None and not self.buffer.buffer


class _Frames(FrameProtocol):
    """wsproto's frame layer for a server, reading through :class:`_Decoder`.

    ``FrameProtocol`` makes its decoder in ``__init__`` and keeps no other
    reference to it; the swap happens before any byte is read.
    """

    def __init__(self, extensions: list[Extension]) -> None:
        super().__init__(False, extensions)
        self.decoder = self._frame_decoder = _Decoder(False, self.extensions)


# ---------------------------------------------------------------- session


class WSSession:
    """One WebSocket after its handshake, on any transport.

    Built on wsproto's frame layer (``FrameProtocol``) rather than its
    ``Connection``: the connection object adds an event object per frame, a
    generator and state checks this class makes anyway, at about a third of
    the per-message framing cost.  The states are wsproto's: OPEN,
    LOCAL_CLOSING (our close went out), REMOTE_CLOSING (the peer's came in
    and ours is not sent yet), CLOSED.
    """

    def __init__(self, extensions: list[Extension] | None = None, max_size: int = 16 << 20):
        for extension in extensions or ():
            if isinstance(extension, Deflate):
                extension.max_size = max_size
        self._proto = _Frames(extensions or [])
        self._state = ConnectionState.OPEN
        self._coalescer = FrameCoalescer()
        self._max_size = max_size
        self._parts: list[str | bytes] = []
        self._size = 0
        self._out: list[bytes] = []
        #: Our close frame went out; the next peer close ends the handshake.
        self.close_sent = False
        self.close_received = False

    @property
    def open(self) -> bool:
        return self._state is ConnectionState.OPEN

    def receive_data(
        self, data: bytes | None
    ) -> list[MessageReceived | CloseReceived | PongReceived]:
        """Feed bytes (None at end of stream); returns complete messages and closes."""
        state = self._state
        if state is ConnectionState.CLOSED or state is ConnectionState.REMOTE_CLOSING:
            # Bytes after the closing handshake (or a failure) are discarded
            # (RFC 6455 5.5.1).
            return []
        if data is None:
            held = self._coalescer.take_held()
            out = self._frames(held) if held else []
            if self._state is not ConnectionState.CLOSED:
                self._state = ConnectionState.CLOSED
                self.close_received = True
                out.append(CloseReceived(ABNORMAL, ""))
            return out
        data = self._coalescer.feed(data)
        if not data:
            return []
        return self._frames(data)

    def _frames(self, data: bytes) -> list[WSEvent]:
        proto = self._proto
        decoder = proto.decoder
        proto.receive_bytes(data)
        out: list[WSEvent] = []
        try:
            for frame in proto.received_frames():
                opcode = frame.opcode
                if opcode is Opcode.BINARY or opcode is Opcode.TEXT:
                    message = self._assemble(frame.payload, frame.message_finished)  # type: ignore[arg-type]
                    if message is not None:
                        out.append(message)
                        if type(message) is CloseReceived:
                            return out
                elif opcode is Opcode.PING:
                    if self._state is ConnectionState.OPEN:
                        self._out.append(proto.pong(frame.payload))  # type: ignore[arg-type]
                elif opcode is Opcode.PONG:
                    out.append(PongReceived(bytes(frame.payload)))  # type: ignore[arg-type]
                elif opcode is Opcode.CLOSE:
                    code, reason = frame.payload  # type: ignore[str-unpack]
                    out.append(self._on_close(int(code), str(reason)))
                    return out
                if decoder.idle:
                    break  # (wsproto would look for one more header first)
        except ParseFailed as exc:
            # wsproto names the close code to answer with (1002, 1007, 1009).
            code = int(exc.code)
            out.append(self._fail(code, "message too big" if code == TOO_BIG else str(exc)))
        return out

    def _assemble(self, data: str | bytes, finished: bool) -> WSEvent | None:
        # max_size counts bytes: text as the UTF-8 it came as (up to four bytes
        # a character; str.isascii() is a flag lookup, so ASCII costs nothing).
        if type(data) is str and not data.isascii():
            self._size += len(data.encode())
        else:
            self._size += len(data)
        if self._size > self._max_size:
            return self._fail(TOO_BIG, "message too big")
        if finished:
            if self._parts:
                self._parts.append(data)
                if type(data) is str:
                    whole: str | bytes = "".join(self._parts)  # type: ignore[arg-type]
                else:
                    whole = b"".join(self._parts)  # type: ignore[arg-type]
                self._parts = []
            else:
                whole = data
            self._size = 0
            return MessageReceived(whole)
        self._parts.append(data)
        return None

    def _on_close(self, code: int, reason: str) -> CloseReceived:
        self.close_received = True
        if self._state is ConnectionState.LOCAL_CLOSING:
            self._state = ConnectionState.CLOSED
        else:
            self._state = ConnectionState.REMOTE_CLOSING
            # Echo the peer's close (RFC 6455 5.5.1); 1005 is never sent.
            echo = code if code not in (NO_STATUS, ABNORMAL) else NORMAL
            self._send_close(echo, "")
        return CloseReceived(code, reason)

    def _fail(self, code: int, reason: str) -> CloseReceived:
        self._parts = []
        self._size = 0
        if self._state is ConnectionState.OPEN:
            self._send_close(code, reason[:120])
        # Failing the connection ends it (RFC 6455 7.1.7): nothing after the
        # bad frame is read, not even the rest of an oversized message.
        self._state = ConnectionState.CLOSED
        return CloseReceived(code, reason, error=True)

    def _send_close(self, code: int, reason: str) -> None:
        state = self._state
        if state is ConnectionState.OPEN:
            self._state = ConnectionState.LOCAL_CLOSING
        elif state is ConnectionState.REMOTE_CLOSING:
            self._state = ConnectionState.CLOSED
        else:
            return
        self._out.append(bytes(self._proto.close(code, reason)))
        self.close_sent = True

    # ------------------------------------------------------------ sending

    def send_message(self, data: str | bytes) -> bytes:
        if self._state is not ConnectionState.OPEN:
            return b""
        return bytes(self._proto.send_data(data))

    def close(self, code: int = NORMAL, reason: str = "") -> bytes:
        """Start (or answer) the closing handshake; b"" when already closed."""
        if self.close_sent:
            return b""
        self._send_close(code, reason)
        return self.data_to_send()

    def ping(self, payload: bytes) -> bytes:
        if self._state is not ConnectionState.OPEN:
            return b""
        return bytes(self._proto.ping(payload))

    def data_to_send(self) -> bytes:
        if not self._out:
            return b""
        out = b"".join(self._out)
        self._out.clear()
        return out

    @property
    def closed(self) -> bool:
        """Both close frames have been exchanged (or the session failed)."""
        return self._state is ConnectionState.CLOSED
