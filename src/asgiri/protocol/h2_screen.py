"""The HTTP/2 frame screen: every frame header read before the h2 library parses the frame.

Defences the h2 library does not provide are here, so that they hold
whatever h2 does: a cap on header-block size and CONTINUATION count
(CVE-2024-27316), and budgets for frames that cost the server work without
producing requests (rapid reset CVE-2023-44487, PING/SETTINGS/empty-DATA
floods).  Exceeding one ends the connection with ENHANCE_YOUR_CALM.  The same
walk enforces the RFC 9113 frame rules h2 leaves unchecked (or answers with
another code), and clears the reserved bit of WINDOW_UPDATE increments, which
RFC 9113 6.9 says to ignore and hyperframe would reject.

Only the 9-byte headers are read, one per frame, so the cost is a few
operations per frame, not per byte.
"""

from __future__ import annotations

from typing import Final

from .errors import RemoteProtocolError

__all__ = ["PREFACE", "FrameScreen", "ScreenError"]

#: The client connection preface (RFC 9113 section 3.4).
PREFACE: Final = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"

# Frame types and flags (RFC 9113 section 6).
_DATA: Final = 0x0
_HEADERS: Final = 0x1
_RST_STREAM: Final = 0x3
_SETTINGS: Final = 0x4
_PING: Final = 0x6
_WINDOW_UPDATE: Final = 0x8
_CONTINUATION: Final = 0x9
_END_STREAM: Final = 0x1
_ACK: Final = 0x1
_END_HEADERS: Final = 0x4

# Error codes (RFC 9113 section 7).
PROTOCOL_ERROR: Final = 0x1
FRAME_SIZE_ERROR: Final = 0x6
ENHANCE_YOUR_CALM: Final = 0xB

#: Frame types :meth:`FrameScreen._conform` looks at.
_CONFORM: Final = frozenset({_HEADERS, _RST_STREAM, _SETTINGS})


class ScreenError(RemoteProtocolError):
    """A frame broke a limit or a rule; the connection ends with GOAWAY ``code``."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code


class FrameScreen:
    """Frame-header accounting for one connection, in front of h2.

    The connection counts the streams that ``completed`` (each pays for
    ``max_resets`` more client resets) and calls :meth:`request_seen` for
    useful work, which pays back the control-frame budget.
    """

    __slots__ = (
        "_block_bytes",
        "_block_frames",
        "_expect_settings",
        "_mask_next",
        "_max_opened",
        "_reset_frames",
        "_scan",
        "_skip",
        "completed",
        "flood",
        "flood_budget",
        "max_block",
        "max_continuations",
        "max_resets",
    )

    def __init__(
        self, *, max_continuations: int, max_block: int, flood_budget: int, max_resets: int
    ) -> None:
        #: CONTINUATION frames allowed for one header block.
        self.max_continuations = max_continuations
        #: Bytes of encoded header block allowed (HEADERS and its CONTINUATIONs).
        self.max_block = max_block
        #: Frames that produce no request tolerated before the peer must show useful work.
        self.flood_budget = flood_budget
        #: Client resets tolerated beyond the streams that completed normally.
        self.max_resets = max_resets
        #: Streams that completed normally (the connection counts them).
        self.completed = 0
        #: Frames that produced no request, less the requests since.
        self.flood = 0
        #: A frame header split across reads.
        self._scan = b""
        #: The next read begins with a WINDOW_UPDATE increment (see :meth:`screen`).
        self._mask_next = False
        #: How much of a frame payload (or of the client preface, which is not
        #: a frame) is still to come.
        self._skip = len(PREFACE)
        #: The preface ends with a SETTINGS frame (RFC 9113 3.4).
        self._expect_settings = True
        #: Highest client stream id a HEADERS frame has used.
        self._max_opened = 0
        self._block_frames = 0
        self._block_bytes = 0
        #: RST_STREAM frames seen (before h2 processes them).
        self._reset_frames = 0

    def opened(self, stream_id: int) -> None:
        """Stream ``stream_id`` was opened without a HEADERS frame (h2c Upgrade: stream 1)."""
        self._max_opened = max(self._max_opened, stream_id)

    def request_seen(self) -> None:
        """A request arrived: useful work pays back one control frame of the budget."""
        if self.flood:
            self.flood -= 1

    def screen(self, data: bytes) -> bytes:
        """Account for the frame headers in ``data``; raises :class:`ScreenError`.

        Only the 9-byte headers are read, one per frame, so the cost is a
        few operations per frame, not per byte.  ``_skip`` is how much of a
        frame payload (or of the client preface) is still to come;
        ``_scan`` holds a frame header split across reads.

        Returns ``data`` with the reserved bit of WINDOW_UPDATE increments
        cleared: RFC 9113 6.9 says to ignore it, and hyperframe would read
        it as part of the increment and reject the frame.
        """
        pos = 0
        size = len(data)
        masks: list[int] | None = None
        if self._mask_next and size:
            self._mask_next = False
            if data[0] & 0x80:
                masks = [0]
        if self._skip:
            if self._skip >= size:
                self._skip -= size
                return data if masks is None else _masked(data, masks)
            pos = self._skip
            self._skip = 0
        if self._scan:
            header = self._scan + data[pos : pos + 9 - len(self._scan)]
            if len(header) < 9:
                self._scan = header
                return data if masks is None else _masked(data, masks)
            pos += 9 - len(self._scan)
            self._scan = b""
            length = self._check_frame(header, 0)
            if header[3] == _WINDOW_UPDATE and length == 4:
                masks = self._reserved_bit(data, pos, masks)
            pos += length
        while size - pos >= 9:
            length = self._check_frame(data, pos)
            if data[pos + 3] == _WINDOW_UPDATE and length == 4:
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

    def _check_frame(self, buf: bytes, pos: int) -> int:
        """Account for one frame header at ``buf[pos]``; returns its payload length."""
        length = int.from_bytes(buf[pos : pos + 3], "big")
        ftype = buf[pos + 3]
        flags = buf[pos + 4]
        if ftype in _CONFORM or self._expect_settings:
            self._conform(buf, pos, ftype, flags, length)
        if ftype in (_HEADERS, _CONTINUATION):
            if ftype == _HEADERS:
                self._block_frames = 0
                self._block_bytes = 0
            self._block_frames += 1
            self._block_bytes += length
            if self._block_frames > self.max_continuations or self._block_bytes > self.max_block:
                raise ScreenError(ENHANCE_YOUR_CALM, "header block too large (CONTINUATION flood)")
            if flags & _END_HEADERS:
                self._block_frames = 0
                self._block_bytes = 0
        elif ((ftype in (_PING, _SETTINGS)) and not flags & _ACK) or (
            ftype == _DATA and length == 0 and not flags & _END_STREAM
        ):
            self.flood += 1
            if self.flood > self.flood_budget:
                raise ScreenError(ENHANCE_YOUR_CALM, "too many control frames")
        elif ftype == _RST_STREAM:
            # Rapid reset: stop before h2 and the server set up the streams
            # of this read (one read can hold thousands), not after.
            self._reset_frames += 1
            if self._reset_frames > self.max_resets + self.completed:
                raise ScreenError(ENHANCE_YOUR_CALM, "too many stream resets")
        return length

    def _conform(self, buf: bytes, pos: int, ftype: int, flags: int, length: int) -> None:
        """RFC 9113 rules h2 leaves unchecked (or answers with another code)."""
        if self._expect_settings:
            self._expect_settings = False
            if ftype != _SETTINGS or flags & _ACK:
                raise ScreenError(PROTOCOL_ERROR, "client preface not followed by SETTINGS")
        if ftype == _SETTINGS:
            if flags & _ACK and length:
                # 6.5 (h2 would say PROTOCOL_ERROR).
                raise ScreenError(FRAME_SIZE_ERROR, "SETTINGS ACK with payload")
            return
        stream_id = int.from_bytes(buf[pos + 5 : pos + 9], "big") & 0x7FFFFFFF
        if ftype == _HEADERS:
            if stream_id & 1 and stream_id > self._max_opened:
                self._max_opened = stream_id
        elif stream_id and (not stream_id & 1 or stream_id > self._max_opened):
            # 5.1: RST_STREAM on an idle stream (h2 ignores it once a stream was opened).
            raise ScreenError(PROTOCOL_ERROR, "RST_STREAM on an idle stream")


def _masked(data: bytes, positions: list[int]) -> bytes:
    """``data`` with the top bit of the bytes at ``positions`` cleared."""
    buf = bytearray(data)
    for at in positions:
        buf[at] &= 0x7F
    return bytes(buf)
