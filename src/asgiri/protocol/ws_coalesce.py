"""The WebSocket fast path: the fragments of a message merged into one frame before parsing.

wsproto spends ~20 µs of Python per frame, so a message cut into hundreds of
small fragments costs more in framing than in everything else;
:class:`FrameCoalescer` merges what is plainly well formed and steps aside
for everything else (see its docstring and docs/performance.md).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Final

from wsproto.frame_protocol import XorMaskerSimple

__all__ = ["APPLY_MASK", "INT_UNMASK_LIMIT", "ZERO_KEY", "FrameCoalescer", "unmask"]


#: The masking key of a merged frame: XOR with it leaves the payload as it is.
ZERO_KEY: Final = b"\0\0\0\0"

#: XOR with the mask in C (SIMD), a MiB in ~50 µs, where wsproto's masker
#: takes 1.2-2 ms and the big-int XOR 4 ms (docs/performance.md); None
#: where websockets has no compiled speedups (PyPy, a build without a compiler).
APPLY_MASK: Callable[[bytes | bytearray, bytes], bytes] | None
try:
    from websockets.speedups import apply_mask as _compiled_apply_mask
except ImportError:
    APPLY_MASK = None
else:
    APPLY_MASK = _compiled_apply_mask


#: Without websockets' compiled ``apply_mask``, payloads up to this size are
#: unmasked with one big-int XOR, above it with wsproto's own masker.  Both
#: run in C, but CPython converts between bytes and int at about 1-4 ns a
#: byte while wsproto's four strided ``translate`` passes cost a fixed ~1.5 µs
#: plus ~1.2 ns a byte: the XOR is three times faster for a 64-byte message,
#: still ahead at 1 KiB, and slower from a few KiB on (8 KiB: 15 µs against
#: 10; docs/performance.md has the table).
INT_UNMASK_LIMIT: Final = 2048


def unmask(payload: bytes, key: bytes) -> bytes:
    """The payload of one whole masked frame, unmasked the cheapest way there is."""
    n = len(payload)
    if not n:
        return payload
    if APPLY_MASK is not None:
        return APPLY_MASK(payload, key)
    if n > INT_UNMASK_LIMIT:
        return bytes(XorMaskerSimple(key).process(bytearray(payload)))
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

    @property
    def idle(self) -> bool:
        """Between frames, with nothing held back: the next byte starts a frame."""
        return not (self._held or self._passthrough or self._in_message)

    def take_held(self) -> bytes:
        held, self._held = self._held, b""
        return held

    @staticmethod
    def _merge(buf: bytes, start: int, stop: int, head: int, run: list[tuple[int, int]]) -> bytes:
        if len(run) == 1:
            return buf[start:stop]  # a single frame goes as it came
        payload = b"".join(unmask(buf[a:b], buf[a - 4 : a]) for a, b in run)
        n = len(payload)
        if n < 126:
            header = bytes((head, 0x80 | n))
        elif n < 65536:
            header = bytes((head, 0xFE)) + n.to_bytes(2, "big")
        else:
            header = bytes((head, 0xFF)) + n.to_bytes(8, "big")
        return header + ZERO_KEY + payload
