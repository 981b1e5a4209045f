"""What every HTTP/2 codec of asgiri shares: limits, events, and the frame screen.

asgiri speaks HTTP/2 through one of two codecs with the same interface
(:class:`H2Codec`): :mod:`asgiri.protocol.h2_nghttp2` (libnghttp2, through
the ngh2 package) and :mod:`asgiri.protocol.h2` (the pure-Python h2 library).
The server layer sees only that interface, the settings in :class:`H2Limits`
and the events defined here next to the version-neutral ones of
:mod:`asgiri.protocol.events`.

:class:`FrameScreen` walks the 9-byte header of every received frame before
the codec parses it, for the defences whose answer must not depend on the
codec: a cap on header-block size and CONTINUATION count (CVE-2024-27316),
and budgets for frames that cost the server work without producing requests
(rapid reset CVE-2023-44487, PING/SETTINGS/PRIORITY/empty-DATA floods).  Exceeding one
ends the connection with ENHANCE_YOUR_CALM.  Each codec subclasses it for the
RFC 9113 frame rules its library leaves unchecked.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Final, Protocol

from .errors import RemoteProtocolError
from .events import ConnectionEnded, Request, RequestRejected, StreamEvent, StreamWritable
from .multiplexed import StreamConnection

__all__ = [
    "FRAME_HEADER",
    "PREFACE",
    "CodecError",
    "ConnectionEnded",
    "ErrorCode",
    "Frame",
    "FrameScreen",
    "H2Codec",
    "H2Limits",
    "RequestLimits",
    "StreamWritable",
    "connect_refusal",
    "goaway_frame",
    "rst_stream_frame",
]

#: The client connection preface (RFC 9113 section 3.4).
PREFACE: Final = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"


class ErrorCode:
    """RFC 9113 section 7 error codes (plain ints: both codecs take them)."""

    NO_ERROR: Final = 0x0
    PROTOCOL_ERROR: Final = 0x1
    INTERNAL_ERROR: Final = 0x2
    FLOW_CONTROL_ERROR: Final = 0x3
    STREAM_CLOSED: Final = 0x5
    FRAME_SIZE_ERROR: Final = 0x6
    REFUSED_STREAM: Final = 0x7
    CANCEL: Final = 0x8
    COMPRESSION_ERROR: Final = 0x9
    CONNECT_ERROR: Final = 0xA
    ENHANCE_YOUR_CALM: Final = 0xB


class Frame:
    """Frame types and flags (RFC 9113 section 6)."""

    DATA: Final = 0x0
    HEADERS: Final = 0x1
    PRIORITY: Final = 0x2
    RST_STREAM: Final = 0x3
    SETTINGS: Final = 0x4
    PING: Final = 0x6
    GOAWAY: Final = 0x7
    WINDOW_UPDATE: Final = 0x8
    CONTINUATION: Final = 0x9
    END_STREAM: Final = 0x1
    ACK: Final = 0x1
    END_HEADERS: Final = 0x4
    PADDED: Final = 0x8
    PRIORITY_FLAG: Final = 0x20


#: A frame header: length (high octet, low two), type, flags, stream id with its reserved bit.
FRAME_HEADER: Final = struct.Struct(">BHBBL")

_DATA: Final = Frame.DATA
_HEADERS: Final = Frame.HEADERS
_PRIORITY: Final = Frame.PRIORITY
_RST_STREAM: Final = Frame.RST_STREAM
_SETTINGS: Final = Frame.SETTINGS
_PING: Final = Frame.PING
_WINDOW_UPDATE: Final = Frame.WINDOW_UPDATE
_CONTINUATION: Final = Frame.CONTINUATION
_END_STREAM: Final = Frame.END_STREAM
_ACK: Final = Frame.ACK
_END_HEADERS: Final = Frame.END_HEADERS


@dataclass
class H2Limits:
    """Settings advertised to the peer and flood thresholds."""

    max_concurrent_streams: int = 100
    initial_window_size: int = 1024 * 1024
    max_frame_size: int = 16384
    max_header_list_size: int = 65536
    max_inbound_frame_size: int = 1 << 20
    enable_connect_protocol: bool = False
    #: Frames allowed for one header block (HEADERS and its CONTINUATIONs).
    max_continuations: int = 32
    #: Frames that produce no request (PING, SETTINGS, PRIORITY, empty DATA, RST_STREAM
    #: from the client) tolerated before the peer must show useful work.
    flood_budget: int = 1000
    #: Client resets tolerated beyond the streams that completed normally.
    max_resets: int = 200
    #: ``--limit-request-body``: a larger request body is answered 413.
    max_body: int | None = None
    #: ``--limit-request-header-size`` / ``--limit-request-fields``: a larger
    #: request head is answered 431, as on HTTP/1.1 and HTTP/3 (a header block
    #: over ``max_header_list_size`` is a connection error before that).
    max_header_size: int = 65536
    max_fields: int = 100

    @property
    def frame_size(self) -> int:
        """SETTINGS_MAX_FRAME_SIZE as advertised.

        The hard cap wins over the configured size: advertising more than is
        accepted would turn the peer's conforming frames into errors.
        """
        return min(self.max_frame_size, self.max_inbound_frame_size)


class H2Codec(StreamConnection, Protocol):
    """The server side of one HTTP/2 connection, as the server layer uses it.

    The :class:`~asgiri.protocol.multiplexed.StreamConnection` every
    multiplexed connection offers, plus what only HTTP/2 has: the client
    preface or an h2c Upgrade to start with, reading from and writing to a
    byte stream, and refusing new streams before the GOAWAY of a drain.
    ``receive_data`` returns events; the ``send_*`` methods queue frames and
    return False when the stream or the connection is already gone (so the
    caller treats the stream as disconnected instead of raising into the
    app); ``data_to_send`` hands out the bytes to write.
    """

    limits: H2Limits
    last_stream_id: int

    def initiate(self) -> None: ...
    def initiate_upgrade(self, settings_header: bytes) -> None: ...
    def receive_data(self, data: bytes) -> list[StreamEvent]: ...
    @property
    def sending(self) -> bool:
        """Response data still waits for the peer's flow-control window."""

    def refuse_new_streams(self) -> None:
        """Refuse streams opened from now on with REFUSED_STREAM, before any GOAWAY.

        RFC 9113 8.7: the client may retry them (elsewhere); the streams
        already accepted go on.
        """

    def data_to_send(self) -> bytes: ...


def connect_refusal(protocol: bytes | None, limits: H2Limits) -> int | None:
    """The RST_STREAM code for a CONNECT this server does not serve, or None.

    Plain CONNECT (tunnels) is not served: 405 would need a body the tunnel
    semantics forbid, so the stream is refused with CONNECT_ERROR.  Extended
    CONNECT (RFC 8441) is advertised for WebSocket only: not advertised, it
    is a malformed request (PROTOCOL_ERROR, RFC 8441 4); another protocol is
    refused (REFUSED_STREAM).
    """
    if protocol is None:
        return ErrorCode.CONNECT_ERROR
    if not limits.enable_connect_protocol:
        return ErrorCode.PROTOCOL_ERROR
    if protocol != b"websocket":
        return ErrorCode.REFUSED_STREAM
    return None


class RequestLimits:
    """``--limit-request-body`` and the request-head limits, the same on both codecs.

    A head over ``max_header_size`` or ``max_fields`` is answered 431, a
    declared body over ``max_body`` 413 before it is read, and a body that
    grows past it (no content-length, or a false one) 413 as it crosses:
    each reported as :class:`~asgiri.protocol.events.RequestRejected`, once.
    The rest of a rejected stream's body is dropped (its credit given back
    by the codec at once).
    """

    __slots__ = ("_sizes", "limits", "max_body", "rejected")

    def __init__(self, limits: H2Limits) -> None:
        self.limits = limits
        self.max_body = limits.max_body
        #: Body bytes received per stream, counted only under ``max_body``.
        self._sizes: dict[int, int] = {}
        #: Streams answered by the server: nothing more of them goes to the app.
        self.rejected: set[int] = set()

    def head(
        self, request: Request, size: int, fields: int, content_length: int | None
    ) -> RequestRejected | None:
        """The answer to a request head over a limit, or None."""
        limits = self.limits
        stream_id = request.stream_id
        if size > limits.max_header_size or fields > limits.max_fields:
            self.rejected.add(stream_id)
            return RequestRejected(stream_id, 431, "request header fields too large", request)
        limit = self.max_body
        if limit is not None and (content_length or 0) > limit:
            # Refused before the body is read, as HTTP/1.1 does.
            self.rejected.add(stream_id)
            return RequestRejected(stream_id, 413, "request body too large", request)
        return None

    def body(self, stream_id: int, size: int, events: list[StreamEvent]) -> bool:
        """Account body bytes; True when they are not to be handed on (rejected)."""
        if self.rejected and stream_id in self.rejected:
            return True
        limit = self.max_body
        if limit is None:
            return False
        sizes = self._sizes
        total = sizes.get(stream_id, 0) + size
        if total <= limit:
            sizes[stream_id] = total
            return False
        sizes.pop(stream_id, None)
        self.rejected.add(stream_id)
        events.append(RequestRejected(stream_id, 413, "request body too large"))
        return True

    def forget(self, stream_id: int) -> None:
        if self.max_body is not None:
            self._sizes.pop(stream_id, None)
        self.rejected.discard(stream_id)


class CodecError(RemoteProtocolError):
    """The peer broke a rule the screen enforces; answered with GOAWAY ``code``."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code


def goaway_frame(last_stream_id: int, code: int) -> bytes:
    """A GOAWAY frame, for when the codec cannot (or must not) build it."""
    return (
        b"\x00\x00\x08\x07\x00\x00\x00\x00\x00"
        + (last_stream_id & 0x7FFFFFFF).to_bytes(4, "big")
        + code.to_bytes(4, "big")
    )


def rst_stream_frame(stream_id: int, code: int) -> bytes:
    """A RST_STREAM frame, for a stream the codec no longer tracks."""
    return b"\x00\x00\x04\x03\x00" + stream_id.to_bytes(4, "big") + code.to_bytes(4, "big")


class FrameScreen:
    """Frame-header accounting in front of a codec (see the module docstring).

    Only the 9-byte headers are read, one per frame, so the cost is a few
    operations per frame, not per byte.  A codec adds the rules its library
    lacks in a subclass: :meth:`_rules` sees the frames whose type is in
    ``ruled``, with a way to read the first octets of their payload
    (:meth:`_peek`, for priority fields); ``mask_reserved_bit`` clears the
    reserved bit of WINDOW_UPDATE increments, which the h2 library would read
    as part of the increment and reject (RFC 9113 6.9 says to ignore it), and
    ``continuation_size`` holds CONTINUATION frames to the advertised frame size.

    The owner counts ``completed`` streams (each pays for ``max_resets``
    more resets) and lowers ``flood`` for useful work (a request).
    """

    __slots__ = (
        "_block_bytes",
        "_block_frames",
        "_mask_next",
        "_peeking",
        "_preface",
        "_reset_frames",
        "_scan",
        "_skip",
        "completed",
        "flood",
        "limits",
        "ruled",
    )

    #: Clear the reserved bit of WINDOW_UPDATE increments.
    mask_reserved_bit = False
    #: Hold CONTINUATION frames to SETTINGS_MAX_FRAME_SIZE (RFC 9113 4.2).
    continuation_size = False

    def __init__(self, limits: H2Limits) -> None:
        self.limits = limits
        #: Frame types :meth:`_rules` looks at.
        self.ruled: frozenset[int] = frozenset()
        #: Streams that completed normally (the owner counts them).
        self.completed = 0
        #: Frames that produced no request, less the requests since.
        self.flood = 0
        #: A frame header split across reads.
        self._scan = b""
        #: The next read begins with a WINDOW_UPDATE increment (see ``mask_reserved_bit``).
        self._mask_next = False
        #: How much of a frame payload (or of the client preface, which is
        #: not a frame) is still to come.
        self._skip = len(PREFACE)
        #: How much of the client preface is still to be checked: a frame
        #: header read out of garbage would otherwise be refused for its size
        #: (FRAME_SIZE_ERROR) before the codec sees that it is no preface.
        self._preface = len(PREFACE)
        #: A :meth:`_peek` waiting for later reads: (stream id, octets to
        #: skip, octets read so far).
        self._peeking: tuple[int, int, bytes] | None = None
        self._block_frames = 0
        self._block_bytes = 0
        #: RST_STREAM frames seen (before the codec processes them).
        self._reset_frames = 0

    def screen(self, data: bytes) -> bytes:
        """Account for the frame headers in ``data``; raises :class:`CodecError`.

        Returns ``data``, with the reserved bit of WINDOW_UPDATE increments
        cleared when ``mask_reserved_bit``.
        """
        pos = 0
        size = len(data)
        masks: list[int] | None = None
        if self._peeking is not None:
            self._peek_more(self._peeking, data)
        if self._mask_next and size:
            self._mask_next = False
            if data[0] & 0x80:
                masks = [0]
        if self._preface:
            offset = len(PREFACE) - self._preface
            seen = data[: self._preface]
            if seen != PREFACE[offset : offset + len(seen)]:
                raise CodecError(ErrorCode.PROTOCOL_ERROR, "invalid connection preface")
            self._preface -= len(seen)
        if self._skip:
            if self._skip >= size:
                self._skip -= size
                return data if masks is None else _masked(data, masks)
            pos = self._skip
            self._skip = 0
        mask = self.mask_reserved_bit
        if self._scan:
            header = self._scan + data[pos : pos + 9 - len(self._scan)]
            if len(header) < 9:
                self._scan = header
                return data if masks is None else _masked(data, masks)
            pos += 9 - len(self._scan)
            self._scan = b""
            length = self._check_frame(header, 0, data, pos)
            if mask and header[3] == _WINDOW_UPDATE and length == 4:
                masks = self._reserved_bit(data, pos, masks)
            pos += length
        while size - pos >= 9:
            length = self._check_frame(data, pos, data, pos + 9)
            if mask and data[pos + 3] == _WINDOW_UPDATE and length == 4:
                masks = self._reserved_bit(data, pos + 9, masks)
            pos += 9 + length
        if pos > size:
            self._skip = pos - size
        elif pos < size:
            self._scan = data[pos:]
        return data if masks is None else _masked(data, masks)

    def _reserved_bit(self, data: bytes, at: int, masks: list[int] | None) -> list[int] | None:
        """Note a WINDOW_UPDATE increment starting at ``data[at]`` whose reserved bit is set."""
        if at >= len(data):
            self._mask_next = True  # the payload begins with the next read
        elif data[at] & 0x80:
            masks = [at] if masks is None else [*masks, at]
        return masks

    def _check_frame(self, buf: bytes, pos: int, data: bytes, payload: int) -> int:
        """Account for one frame header at ``buf[pos]``; returns its payload length.

        The payload starts at ``data[payload]`` (``data`` is the read, ``buf``
        the read too, or the header when it was split across reads).
        """
        length = int.from_bytes(buf[pos : pos + 3], "big")
        ftype = buf[pos + 3]
        flags = buf[pos + 4]
        if ftype in self.ruled:
            self._rules(buf, pos, ftype, flags, length, data, payload)
        limits = self.limits
        if ftype in (_HEADERS, _CONTINUATION):
            if ftype == _HEADERS:
                self._block_frames = 0
                self._block_bytes = 0
            self._block_frames += 1
            self._block_bytes += length
            if (
                self._block_frames > limits.max_continuations
                or self._block_bytes > limits.max_header_list_size * 2
            ):
                raise CodecError(
                    ErrorCode.ENHANCE_YOUR_CALM, "header block too large (CONTINUATION flood)"
                )
            if self.continuation_size and length > limits.frame_size:
                raise CodecError(ErrorCode.FRAME_SIZE_ERROR, "CONTINUATION larger than allowed")
            if flags & _END_HEADERS:
                self._block_frames = 0
                self._block_bytes = 0
        elif (
            (ftype in (_PING, _SETTINGS) and not flags & _ACK)
            or ftype == _PRIORITY
            or (ftype == _DATA and length == 0 and not flags & _END_STREAM)
        ):
            # PRIORITY is deprecated (RFC 9113 5.3.2) and changes nothing here,
            # but each one still costs the codec a parse: the h2 library has
            # no bound at all, libnghttp2 only its "glitch" bucket of 10,000.
            self.flood += 1
            if self.flood > limits.flood_budget:
                raise CodecError(ErrorCode.ENHANCE_YOUR_CALM, "too many control frames")
        elif ftype == _RST_STREAM:
            self._count_reset()
        return length

    def _count_reset(self) -> None:
        """One more stream reset by the peer, or provoked by it in this read.

        Rapid reset: stop before the codec and the server set up the streams
        of this read (one read can hold thousands), not after.
        """
        self._reset_frames += 1
        if self._reset_frames > self.limits.max_resets + self.completed:
            raise CodecError(ErrorCode.ENHANCE_YOUR_CALM, "too many stream resets")

    def _rules(
        self, buf: bytes, pos: int, ftype: int, flags: int, length: int, data: bytes, payload: int
    ) -> None:
        """The codec's own frame rules, for the frame types in ``ruled``."""

    def _peek(self, stream_id: int, data: bytes, at: int) -> None:
        """Hand the 4 octets at ``data[at]`` to :meth:`_peeked`, now or from later reads."""
        got = data[at : at + 4]
        if len(got) == 4:
            self._peeked(stream_id, got)
        else:
            self._peeking = (stream_id, max(at - len(data), 0), got)

    def _peek_more(self, peeking: tuple[int, int, bytes], data: bytes) -> None:
        stream_id, skip, got = peeking
        if skip >= len(data):
            self._peeking = (stream_id, skip - len(data), got)
            return
        got += data[skip : skip + 4 - len(got)]
        if len(got) < 4:
            self._peeking = (stream_id, 0, got)
            return
        self._peeking = None
        self._peeked(stream_id, got)

    def _peeked(self, stream_id: int, octets: bytes) -> None:
        """The 4 octets a :meth:`_peek` asked for."""


def _masked(data: bytes, positions: list[int]) -> bytes:
    """``data`` with the top bit of the bytes at ``positions`` cleared."""
    buf = bytearray(data)
    for at in positions:
        buf[at] &= 0x7F
    return bytes(buf)
