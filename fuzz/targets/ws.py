"""WebSocket: ``WSSession`` after the handshake (frames, fragmentation,
permessage-deflate).

Input: one options byte, one byte choosing how the bytes are cut into reads,
then raw bytes or, in structured mode, the choices of a generator of masked
client frames: data frames fragmented or not, control frames between
fragments, close frames with codes and reasons, reserved opcodes and bits,
non-minimal lengths, compressed messages (deflated with the window the offer
set, now and then a bomb of zeros far over the size limit), and raw bytes.
Masking and deflating are what raw mutation cannot get right.

Options: bit 0 structured, bit 1 permessage-deflate agreed, bits 2-3 the
client's offer (plain, client_no_context_takeover, client_max_window_bits=9,
both), bit 4 a large size limit (64 KiB instead of 256 bytes).

Invariants:

* ``receive_data`` never raises; a framing error comes out as
  ``CloseReceived(error=True)`` with 1002, 1007 or 1009, and the close frame
  the session queues carries that code;
* a peer's close is reported with its code (1005 when none) and echoed;
* after a close the session reports nothing more, and after a failure it
  says it is closed;
* a message never exceeds the size limit in bytes, inflated or not, text or
  binary;
* the session holds at most the size limit plus what one read brings;
* the same bytes cut into reads give the events of one read.
"""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass, field
from typing import Any

from asgiri.protocol.ws import CloseReceived, MessageReceived, PongReceived, WSSession
from asgiri.protocol.ws_handshake import negotiate_extensions

from ..choices import Choices
from ..invariants import check, fail, reads, retained_bytes, sampled

MAX_LEN = 16384

TEXT, BINARY, CONT, CLOSE, PING, PONG = 0x1, 0x2, 0x0, 0x8, 0x9, 0xA
ERROR_CODES = frozenset({1002, 1007, 1009})
_OFFERS = [
    b"permessage-deflate",
    b"permessage-deflate; client_no_context_takeover",
    b"permessage-deflate; client_max_window_bits=9",
    b"permessage-deflate; client_max_window_bits=9; client_no_context_takeover",
]
_CLOSE_CODES = [1000, 1001, 1002, 1003, 1005, 1006, 1007, 1011, 1015, 999, 3000, 4999, 5000]


def _valid_peer_code(code: int) -> bool:
    return code in (1000, 1001, 1002, 1003, 1005, 1007, 1008, 1009, 1010, 1011) or (
        1012 <= code <= 1014 or 3000 <= code <= 4999
    )


def session(options: int) -> tuple[WSSession, int]:
    max_size = 65536 if options & 16 else 256
    extensions: list[Any] = []
    if options & 2:
        offer = [(b"sec-websocket-extensions", _OFFERS[(options >> 2) & 3])]
        extensions, agreed = negotiate_extensions(offer, True)
        check(agreed is not None and extensions, "permessage-deflate offered, not agreed")
    return WSSession(extensions, max_size), max_size


def client_frame(
    opcode: int,
    payload: bytes,
    *,
    fin: bool = True,
    rsv: int = 0,
    key: bytes | None = b"abcd",
    wide: int = 0,
) -> bytes:
    """One client frame; ``wide`` forces a 2- or 8-byte length (non-minimal if small)."""
    first = (0x80 if fin else 0) | (rsv << 4) | opcode
    bit = 0x80 if key is not None else 0
    n = len(payload)
    if wide == 8 or n >= 65536:
        head = bytes([first, bit | 127]) + struct.pack("!Q", n)
    elif wide == 2 or n >= 126:
        head = bytes([first, bit | 126]) + struct.pack("!H", n)
    else:
        head = bytes([first, bit | n])
    if key is None:
        return head + payload
    stream = (key * (n // 4 + 1))[:n]
    masked = (int.from_bytes(payload, "big") ^ int.from_bytes(stream, "big")).to_bytes(n, "big")
    return head + key + masked


class Generator:
    def __init__(self, data: bytes, options: int) -> None:
        self.choose = Choices(data)
        self.deflate = bool(options & 2)
        self.bits = 9 if (options >> 3) & 1 else 15  # client_max_window_bits=9 offered
        self.no_takeover = bool((options >> 2) & 1)  # client_no_context_takeover offered
        self.compressor = zlib.compressobj(wbits=-self.bits)

    def key(self) -> bytes | None:
        pick = self.choose.number(0, 31)
        if pick == 0:
            return None  # unmasked: a protocol error from a client
        if pick == 1:
            return b"\0\0\0\0"
        return self.choose.data(4).ljust(4, b"k")

    def payload(self) -> bytes:
        choose = self.choose
        pick = choose.number(0, 7)
        if pick == 0:
            return choose.text(100).encode()
        if pick == 1:
            return b"\xf0\x9f\x98" if choose.flag() else b"\xce\xba\xe1\xbd\xb9\xcf\x83\xff"
        if pick == 2:
            return b"z" * choose.pick([125, 126, 255, 256, 257, 65535, 65536, 70000])
        return choose.some(64)

    def compressed(self, data: bytes) -> bytes:
        packed = self.compressor.compress(data) + self.compressor.flush(zlib.Z_SYNC_FLUSH)
        return packed[:-4] if packed.endswith(b"\x00\x00\xff\xff") else packed

    def message(self) -> list[bytes]:
        choose = self.choose
        opcode = TEXT if choose.flag() else BINARY
        data = self.payload()
        rsv = 0
        if self.deflate and choose.number(0, 3):
            if self.no_takeover and not choose.rarely(8):
                # (A fresh context per message, as agreed; now and then not.)
                self.compressor = zlib.compressobj(wbits=-self.bits)
            if choose.number(0, 15) == 0:
                data = bytes(choose.pick([300, 70000, 1 << 20]))  # a bomb
            data, rsv = self.compressed(data), 4
        pieces = choose.number(1, 5)
        size = -(-len(data) // pieces) if data else 0
        chunks = [data[i : i + size] for i in range(0, len(data), size)] if size else [b""]
        frames = []
        for index, chunk in enumerate(chunks):
            first = index == 0
            frames.append(
                client_frame(
                    opcode if first else CONT,
                    chunk,
                    fin=index == len(chunks) - 1,
                    rsv=rsv if first else (4 if choose.number(0, 31) == 0 else 0),
                    key=self.key(),
                    wide=choose.pick([0, 0, 0, 2, 8]),
                )
            )
            if choose.number(0, 7) == 0:
                frames.append(self.control())
        return frames

    def control(self) -> bytes:
        choose = self.choose
        pick = choose.number(0, 3)
        if pick == 0:
            code = choose.pick(_CLOSE_CODES)
            reason = choose.some(125)
            payload = b"" if code == 1005 else struct.pack("!H", code) + reason
            if choose.number(0, 15) == 0:
                payload = payload[:1]
            return client_frame(CLOSE, payload, key=self.key())
        opcode = PING if pick < 3 else PONG
        return client_frame(
            opcode,
            choose.data(choose.pick([0, 4, 125, 126])),
            fin=choose.number(0, 15) != 0,
            key=self.key(),
        )

    def stream_bytes(self) -> bytes:
        choose = self.choose
        out: list[bytes] = []
        for _ in range(choose.number(1, 12)):
            if not choose.left():
                break
            pick = choose.number(0, 9)
            if pick < 6:
                out.extend(self.message())
            elif pick < 8:
                out.append(self.control())
            elif pick == 8:
                opcode = choose.pick([CONT, TEXT, 0x3, 0x7, 0xB, 0xF])
                out.append(
                    client_frame(
                        opcode,
                        self.payload(),
                        fin=choose.flag(),
                        rsv=choose.number(0, 7),
                        key=self.key(),
                    )
                )
            else:
                out.append(choose.data(choose.number(1, 16)))
        return b"".join(out)


@dataclass
class Outcome:
    events: list[tuple[Any, ...]] = field(default_factory=list)
    closed: bool = False


def _close_codes(output: bytes) -> list[int]:
    """The codes of the close frames the server wrote (its frames are unmasked)."""
    codes = []
    pos = 0
    while len(output) - pos >= 2:
        opcode = output[pos] & 0x0F
        n = output[pos + 1] & 0x7F
        at = pos + 2
        if n == 126:
            n, at = int.from_bytes(output[at : at + 2], "big"), at + 2
        elif n == 127:
            n, at = int.from_bytes(output[at : at + 8], "big"), at + 8
        check(not output[pos + 1] & 0x80, "a server frame is masked")
        check(len(output) >= at + n, "the server wrote part of a frame")
        if opcode == CLOSE:
            codes.append(int.from_bytes(output[at : at + 2], "big") if n >= 2 else 1005)
        pos = at + n
    check(pos == len(output), "the server wrote part of a frame header")
    return codes


class Run:
    def __init__(self, options: int) -> None:
        self.session, self.max_size = session(options)
        self.outcome = Outcome()
        self.expected_close: int | None = None
        self.output = b""

    def feed(self, chunks: list[bytes]) -> Outcome:
        session = self.session
        for index, data in enumerate(chunks):
            events = session.receive_data(data)
            self._events(events)
            self.output += session.data_to_send()
            if sampled(index, len(chunks)):
                largest = max(len(c) for c in chunks[: index + 1])
                held = retained_bytes(session, depth=5)
                limit = self.max_size + 2 * largest + 4096
                check(held <= limit, f"the session holds {held} bytes (limit {limit})")
        if not self.outcome.closed:
            self._events(session.receive_data(None))
            self.output += session.data_to_send()
        codes = _close_codes(self.output)
        if self.expected_close is not None:
            check(
                codes[:1] == [self.expected_close],
                f"close {self.expected_close} expected, the server wrote {codes}",
            )
        check(len(codes) <= 1, f"several close frames: {codes}")
        return self.outcome

    def _events(self, events: list[Any]) -> None:
        outcome = self.outcome
        for event in events:
            check(not outcome.closed, f"{event!r} after the close")
            kind = type(event)
            if kind is MessageReceived:
                data = event.data
                size = len(data.encode() if isinstance(data, str) else data)
                check(size <= self.max_size, f"a message of {size} bytes > {self.max_size}")
                outcome.events.append(("message", data))
            elif kind is PongReceived:
                check(len(event.payload) <= 125, "a pong over 125 bytes")
                outcome.events.append(("pong", event.payload))
            elif kind is CloseReceived:
                outcome.closed = True
                code = event.code
                if event.error:
                    check(code in ERROR_CODES, f"failed with close code {code}")
                    check(self.session.closed, "a failed session does not say it is closed")
                    self.expected_close = code
                elif code == 1006:
                    check(event.reason == "", "1006 with a reason")
                else:
                    check(_valid_peer_code(code), f"peer close code {code} accepted")
                    self.expected_close = 1000 if code == 1005 else code
                outcome.events.append(("close", code, event.error))
            else:
                fail(f"unexpected event {event!r}")


def one_input(data: bytes) -> None:
    if len(data) < 3:
        return
    options, pattern = data[0], data[1]
    payload = Generator(data[2:], options).stream_bytes() if options & 1 else data[2:]
    split = Run(options).feed(reads(payload, pattern))
    if pattern == 0:
        return
    whole = Run(options).feed([payload])
    check(split.events == whole.events, "cut into reads, the events differ from one read")
