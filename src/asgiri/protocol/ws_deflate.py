"""permessage-deflate (RFC 7692) for the server: its own zlib level, inflation bounded by size."""

from __future__ import annotations

import zlib
from typing import Any, Final

from wsproto.extensions import PerMessageDeflate
from wsproto.frame_protocol import (
    CloseReason,
    FrameDecoder,
    FrameProtocol,
    Opcode,
    RsvBits,
)

__all__ = ["DEFAULT_DEFLATE_LEVEL", "Deflate"]


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
