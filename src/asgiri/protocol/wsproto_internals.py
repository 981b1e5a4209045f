"""Where asgiri reaches into wsproto's internals: the frame decoder, with a cheaper masker.

wsproto's frame layer (``FrameProtocol``) is used through its methods
everywhere else.  To unmask in C with websockets' ``apply_mask``
(:class:`CMasker`), or, without it, small frames with one big-int XOR (see
:data:`~.ws_coalesce.INT_UNMASK_LIMIT`), its decoder is subclassed here: the decoder
replaces the masker wsproto picked inside ``parse_header`` (reading the
decoder's ``buffer``, ``header`` and ``masker``), :class:`IntMasker` keeps
wsproto's masker state (``_key``), and :class:`ServerFrames` swaps the
decoder ``FrameProtocol`` made (``_frame_decoder``).  ``pyproject.toml``
bounds the wsproto version to the releases this was checked against, and
tests/websocket/test_websocket.py checks that the session's decoder does the parsing.
"""

from __future__ import annotations

from collections.abc import Callable

from wsproto.extensions import Extension
from wsproto.frame_protocol import FrameDecoder, FrameProtocol, XorMaskerNull, XorMaskerSimple

from .ws_coalesce import APPLY_MASK, INT_UNMASK_LIMIT, ZERO_KEY

__all__ = ["CMasker", "IntMasker", "ServerFrames"]


class CMasker(XorMaskerSimple):
    """wsproto's masker, unmasking with websockets' compiled ``apply_mask``.

    Like wsproto's, it keeps its place in the key across the chunks of a
    frame that arrives in pieces.
    """

    def __init__(self, key: bytes, apply: Callable[[bytes | bytearray, bytes], bytes]) -> None:
        self._key = key  # (wsproto's __init__ keeps the key only)
        self._apply = apply

    # wsproto declares bytearray, and needs only bytes: it appends to the
    # result with ``+=`` and takes ``bytes()`` of it, which for bytes is no
    # copy (a bytearray of 1 MiB would cost more than the XOR itself).
    def process(self, data: bytearray) -> bytes:  # type: ignore[override]
        key = self._key
        turn = len(data) & 3
        if turn:
            self._key = key[turn:] + key[:turn]
        return self._apply(data, key)


class IntMasker(XorMaskerSimple):
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
        if key == ZERO_KEY:
            self.masker = XorMaskerNull()
        elif APPLY_MASK is not None:
            self.masker = CMasker(key, APPLY_MASK)
        else:
            header = self.header
            if header is not None and header.payload_len <= INT_UNMASK_LIMIT:
                self.masker = IntMasker(key)
        return True

    @property
    def idle(self) -> bool:
        """No frame in progress and nothing buffered: parsing on would find nothing."""
        return self.header is None and not self.buffer.buffer


class ServerFrames(FrameProtocol):
    """wsproto's frame layer for a server, reading through :class:`_Decoder`.

    ``FrameProtocol`` makes its decoder in ``__init__`` and keeps no other
    reference to it; the swap happens before any byte is read.
    """

    def __init__(self, extensions: list[Extension]) -> None:
        super().__init__(False, extensions)
        self.decoder = self._frame_decoder = _Decoder(False, self.extensions)
