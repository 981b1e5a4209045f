"""WebSocket after its handshake, sans I/O: one session on wsproto's frame layer.

The handshake differs per transport (:mod:`.ws_handshake`), but what follows
is the same byte stream of frames, so one :class:`WSSession` serves HTTP/1.1,
HTTP/2 and HTTP/3: bytes in, whole messages out; messages in, frames out.

The session assembles fragmented messages itself so that ``max_size`` bounds
a message while it arrives (close 1009), answers pings, and turns framing
errors from wsproto into the close code RFC 6455 names (1002, 1007).  On the
way in, plain whole messages are read by the session itself (the lean path of
:meth:`WSSession.receive_data`); everything else passes the fast path of
:mod:`.ws_coalesce` and the decoder of :mod:`.wsproto_internals`.  On the way
out, a plain message is framed by the session, anything an extension changes
by wsproto; compression is :mod:`.ws_deflate`.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Final

from wsproto.connection import ConnectionState
from wsproto.extensions import Extension
from wsproto.frame_protocol import Opcode, ParseFailed

from . import ws_coalesce
from .ws_coalesce import FrameCoalescer, unmask
from .ws_deflate import Deflate
from .wsproto_internals import ServerFrames

__all__ = [
    "CloseReceived",
    "MessageReceived",
    "PongReceived",
    "WSSession",
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

# Enum members read on every message, as module constants: on Python 3.11
# each ``Enum.MEMBER`` lookup goes through ``EnumType.__getattr__``, four
# times the cost of reading a global (with ws_stream's, a tenth of a 64-byte
# echo's instructions went there).
_OPEN: Final = ConnectionState.OPEN
_LOCAL_CLOSING: Final = ConnectionState.LOCAL_CLOSING
_REMOTE_CLOSING: Final = ConnectionState.REMOTE_CLOSING
_CLOSED: Final = ConnectionState.CLOSED
_BINARY: Final = Opcode.BINARY
_TEXT: Final = Opcode.TEXT
_PING: Final = Opcode.PING
_PONG: Final = Opcode.PONG
_CLOSE: Final = Opcode.CLOSE

#: Headers of an unmasked server frame (RFC 6455 5.2): FIN and opcode, then
#: the length in 7 bits, or 126 and 16 bits, or 127 and 64 bits.
_HEAD7: Final = struct.Struct("!BB").pack
_HEAD16: Final = struct.Struct("!BBH").pack
_HEAD64: Final = struct.Struct("!BBQ").pack


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
        self._proto = ServerFrames(extensions or [])
        #: Plain messages take the lean path of :meth:`receive_data`
        #: (permessage-deflate is the only extension the server agrees to; its
        #: state does not change across an uncompressed message).
        self._lean = all(isinstance(extension, Deflate) for extension in self._proto.extensions)
        self._lean_limit = min(max_size, 0xFFFF)
        #: The lean path may read: no message or frame in progress anywhere
        #: (set after each read that went through wsproto; a read of plain
        #: messages only leaves it as it was).
        self._between_messages = self._lean
        #: No extension in use: outgoing frames are built by :meth:`send_message`.
        self._plain_out = not self._proto.extensions
        self._state = _OPEN
        self._coalescer = FrameCoalescer()
        self._max_size = max_size
        self._parts: list[str | bytes] = []
        self._size = 0
        #: Frames the session queued itself (pongs, close frames) for
        #: :meth:`data_to_send`: non-empty when there is something to take.
        self.outgoing: list[bytes] = []
        #: Our close frame went out; the next peer close ends the handshake.
        self.close_sent = False
        self.close_received = False

    @property
    def open(self) -> bool:
        return self._state is _OPEN

    def receive_data(
        self, data: bytes | None
    ) -> list[MessageReceived | CloseReceived | PongReceived]:
        """Feed bytes (None at end of stream); returns complete messages and closes.

        The common frame, most of what a WebSocket server reads, is read here
        (the lean path): a whole, masked, unfragmented text or binary frame
        with no RSV bit, its length in 7 or 16 bits.  Between messages
        (wsproto and the coalescer idle, nothing assembled) such a frame is a
        message on its own, and reading it costs a few index operations and
        one unmask in C where wsproto spends 10-14 µs of Python
        (docs/performance.md).  The first frame that is anything else (a
        control frame, a fragment, RSV bits, an unmasked frame, a needlessly
        long length, one that is only partly here, text that is not UTF-8,
        more than ``max_size``) ends the lean path for this read: it and
        everything after it go the way they always went, through the
        coalescer and wsproto, which judge them and name the close code
        exactly as before.  With permessage-deflate, RSV1 marks a compressed
        message, which wsproto inflates.  (One function on purpose: a call
        more per read was 3% of a 64-byte echo's instructions.)
        """
        state = self._state
        if state is _CLOSED or state is _REMOTE_CLOSING:
            # Bytes after the closing handshake (or a failure) are discarded
            # (RFC 6455 5.5.1).
            return []
        if data is None:
            return self._end_of_stream()
        out: list[WSEvent] = []
        if self._between_messages:
            end = len(data)
            limit = self._lean_limit
            apply = ws_coalesce.APPLY_MASK
            pos = 0
            while end - pos >= 6:
                first = data[pos]
                if first != 0x82 and first != 0x81:
                    break
                n = data[pos + 1] - 0x80  # (negative: unmasked)
                if 0 <= n < 126:
                    start = pos + 6
                elif n == 126 and end - pos >= 8:
                    n = (data[pos + 2] << 8) | data[pos + 3]
                    if n < 126:
                        break
                    start = pos + 8
                else:
                    break
                stop = start + n
                if stop > end or n > limit:
                    break
                if apply is not None:
                    payload = apply(data[start:stop], data[start - 4 : start])
                else:
                    payload = unmask(data[start:stop], data[start - 4 : start])
                if first == 0x81:
                    try:
                        out.append(MessageReceived(payload.decode()))
                    except UnicodeDecodeError:
                        break
                else:
                    out.append(MessageReceived(payload))
                pos = stop
            if pos == end:
                return out
            if pos:
                data = data[pos:]
        coalescer = self._coalescer
        data = coalescer.feed(data)
        if data:
            out += self._frames(data)
        self._between_messages = (
            self._lean and not self._parts and coalescer.idle and self._proto.decoder.idle
        )
        return out

    def _end_of_stream(self) -> list[WSEvent]:
        held = self._coalescer.take_held()
        out = self._frames(held) if held else []
        if self._state is not _CLOSED:
            self._state = _CLOSED
            self.close_received = True
            out.append(CloseReceived(ABNORMAL, ""))
        return out

    def _frames(self, data: bytes) -> list[WSEvent]:
        proto = self._proto
        decoder = proto.decoder
        proto.receive_bytes(data)
        out: list[WSEvent] = []
        try:
            for frame in proto.received_frames():
                opcode = frame.opcode
                if opcode is _BINARY or opcode is _TEXT:
                    message = self._assemble(frame.payload, frame.message_finished)  # type: ignore[arg-type]
                    if message is not None:
                        out.append(message)
                        if type(message) is CloseReceived:
                            return out
                elif opcode is _PING:
                    if self._state is _OPEN:
                        self.outgoing.append(proto.pong(frame.payload))  # type: ignore[arg-type]
                elif opcode is _PONG:
                    out.append(PongReceived(bytes(frame.payload)))  # type: ignore[arg-type]
                elif opcode is _CLOSE:
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
        if self._state is _LOCAL_CLOSING:
            self._state = _CLOSED
        else:
            self._state = _REMOTE_CLOSING
            # Echo the peer's close (RFC 6455 5.5.1); 1005 is never sent.
            echo = code if code not in (NO_STATUS, ABNORMAL) else NORMAL
            self._send_close(echo, "")
        return CloseReceived(code, reason)

    def _fail(self, code: int, reason: str) -> CloseReceived:
        self._parts = []
        self._size = 0
        if self._state is _OPEN:
            self._send_close(code, reason[:120])
        # Failing the connection ends it (RFC 6455 7.1.7): nothing after the
        # bad frame is read, not even the rest of an oversized message.
        self._state = _CLOSED
        return CloseReceived(code, reason, error=True)

    def _send_close(self, code: int, reason: str) -> None:
        state = self._state
        if state is _OPEN:
            self._state = _LOCAL_CLOSING
        elif state is _REMOTE_CLOSING:
            self._state = _CLOSED
        else:
            return
        self.outgoing.append(bytes(self._proto.close(code, reason)))
        self.close_sent = True

    # ------------------------------------------------------------ sending

    def send_message(self, data: str | bytes) -> bytes:
        """One whole message as one frame.

        Without an extension the frame is built here: a header and the
        payload, one copy, where wsproto's ``send_data`` makes four and
        checks what the session already knows (the message is whole and its
        type given).
        """
        if self._state is not _OPEN:
            return b""
        if not self._plain_out:
            return bytes(self._proto.send_data(data))
        if isinstance(data, str):
            payload = data.encode()
            first = 0x81
        else:
            payload = data
            first = 0x82
        n = len(payload)
        if n < 126:
            return _HEAD7(first, n) + payload
        if n < 0x10000:
            return _HEAD16(first, 126, n) + payload
        return _HEAD64(first, 127, n) + payload

    def close(self, code: int = NORMAL, reason: str = "") -> bytes:
        """Start (or answer) the closing handshake; b"" when already closed."""
        if self.close_sent:
            return b""
        self._send_close(code, reason)
        return self.data_to_send()

    def ping(self, payload: bytes) -> bytes:
        if self._state is not _OPEN:
            return b""
        return bytes(self._proto.ping(payload))

    def data_to_send(self) -> bytes:
        outgoing = self.outgoing
        if not outgoing:
            return b""
        out = b"".join(outgoing)
        outgoing.clear()
        return out

    @property
    def closed(self) -> bool:
        """Both close frames have been exchanged (or the session failed)."""
        return self._state is _CLOSED
