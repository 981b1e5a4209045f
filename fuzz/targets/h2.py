"""HTTP/2: both codecs' ``H2Connection`` (h2 and nghttp2) and their frame screen (frames,
HPACK blocks, SETTINGS, flow control).

Input: one options byte, one byte choosing how the bytes are cut into reads,
then either raw bytes or, in structured mode, the choices of a generator
(:class:`fuzz.choices.Choices`) that writes frames with valid-looking headers:
HEADERS with HPACK blocks from a real encoder (split into CONTINUATION
frames, padded, prioritised), DATA, SETTINGS, WINDOW_UPDATE, RST_STREAM,
PING, GOAWAY, PRIORITY, PUSH_PROMISE, unknown types, and now and then raw
bytes or a length that lies.  Raw mutation alone rarely gets past the
preface, the SETTINGS frame and HPACK; the generator starts every input
there.

Options: bit 0 structured, bit 1 small limits (every flood and size limit
reachable), bit 2 answer requests as an app does (send responses larger than
the window, acknowledge bodies, reset, stop reading, GOAWAY), bit 3 (raw
mode) prepend the preface and an empty SETTINGS frame, bit 4 extended
CONNECT on, bit 5 a request-body limit, bit 6 the nghttp2 codec instead of the
h2 library's (``--h2-codec``; both are an ``H2Codec`` behind the same screen).

Invariants:

* ``receive_data`` never raises; errors come out as events: ``ConnectionEnded``
  with an RFC 9113 error code, which the GOAWAY sent carries too (or the peer
  sent a GOAWAY), ``StreamClosed``, ``RequestRejected`` with 413 or 431;
* every GOAWAY and RST_STREAM sent carries an RFC 9113 error code, and a
  GOAWAY with an error is always reported as ``ConnectionEnded``;
* after ``ConnectionEnded`` further input yields no events;
* events are well formed per stream (request, body, end; nothing after a
  reset or a rejection), requests pass the field rules;
* flow control: body not yet acknowledged never exceeds the windows the
  server advertised, per stream and for the connection;
* the screen holds at most a frame header, h2's buffer at most a frame and a
  header block, and the connection altogether a bounded amount plus one read;
* without answers, the same bytes cut into reads give the events of one read
  (the failing read's events are dropped with the connection; one read may
  be stricter, see :func:`compare`).

The same checks hold for both codecs.  Where they legitimately differ, the
checks allow both answers, and only these:

* a malformed request head (RFC 9113 8.1.1: a connection-specific field, an
  upper-case name, TE other than trailers...) ends the connection on h2
  (``ConnectionEnded``, GOAWAY PROTOCOL_ERROR) and only the stream on
  nghttp2 (RST_STREAM PROTOCOL_ERROR, no event: the request was never
  reported, so neither is its reset);
* a stream over the concurrent-stream limit ends the connection on h2 and is
  refused on nghttp2 (RST_STREAM REFUSED_STREAM, no event);
* when the peer's GOAWAY ends the connection, nghttp2 has already read the
  rest of that read and may answer a bad frame after it with its own error
  GOAWAY; ``ConnectionEnded`` carries the peer's code (the connection ended
  by the peer's GOAWAY), not that of the GOAWAY sent;
* the memory bound measures the Python objects only: nghttp2's own state and
  the response bytes it queues live in C, bounded by its configuration
  (``max_inbound_header_list_size``, the windows), not by this check.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from typing import Any, cast

import hpack

from asgiri.protocol.events import (
    Body,
    ConnectionEnded,
    EndBody,
    Request,
    RequestRejected,
    StreamClosed,
    StreamWritable,
)
from asgiri.protocol.h2_codecs import codec_factory
from asgiri.protocol.h2_common import PREFACE, ErrorCode, H2Codec, H2Limits

from ..choices import Choices
from ..invariants import check, fail, is_extension, reads, retained_bytes, sampled

MAX_LEN = 32768

DATA, HEADERS, PRIORITY, RST_STREAM, SETTINGS = 0x0, 0x1, 0x2, 0x3, 0x4
PUSH_PROMISE, PING, GOAWAY, WINDOW_UPDATE, CONTINUATION = 0x5, 0x6, 0x7, 0x8, 0x9
END_STREAM, ACK, END_HEADERS, PADDED, PRIORITY_FLAG = 0x1, 0x1, 0x4, 0x8, 0x20
#: RFC 9113 section 7: NO_ERROR (0x0) to HTTP_1_1_REQUIRED (0xd).
ERROR_CODES = range(0x0, 0xE)
REJECT_STATUSES = frozenset({413, 431})
#: What one read may end with where cut reads do not (see :func:`compare`), by
#: codec: the screen's PROTOCOL_ERROR, FRAME_SIZE_ERROR and ENHANCE_YOUR_CALM,
#: and h2's PROTOCOL_ERROR for the concurrent-stream limit; nghttp2's screen
#: also answers STREAM_CLOSED (a frame on a stream the client closed), which
#: nghttp2 itself leaves unchecked.
STRICTER_CODES = {
    "h2": frozenset({0x1, 0x6, 0xB}),
    "nghttp2": frozenset({0x1, 0x5, 0x6, 0xB}),
}
EMPTY_SETTINGS = b"\x00\x00\x00\x04\x00\x00\x00\x00\x00"


def limits(options: int) -> H2Limits:
    connect = bool(options & 16)
    body = 100 if options & 32 else None
    if options & 2:
        return H2Limits(
            max_concurrent_streams=4,
            initial_window_size=1000,
            max_header_list_size=1024,
            max_continuations=3,
            flood_budget=30,
            max_resets=4,
            max_body=body,
            max_header_size=300,
            max_fields=8,
            enable_connect_protocol=connect,
        )
    return H2Limits(enable_connect_protocol=connect, max_body=body)


def codec(options: int) -> str:
    """``--h2-codec``: libnghttp2 (the default where ngh2 installs) or the h2 library."""
    return "nghttp2" if options & 64 else "h2"


def frame(kind: int, flags: int, stream: int, payload: bytes, length: int | None = None) -> bytes:
    size = len(payload) if length is None else length
    return struct.pack("!I", size)[1:] + bytes([kind, flags]) + struct.pack("!I", stream) + payload


# ---------------------------------------------------------------- structured inputs

_METHODS = [b"GET", b"POST", b"HEAD", b"CONNECT", b"PUT", b"OPTIONS", b"get", b""]
_PATHS = [b"/", b"/a?b=c", b"", b"*", b"/%zz", b"/" + b"p" * 300, b"x"]
_SCHEMES = [b"https", b"http", b"", b"ftp"]
_AUTHORITIES = [b"localhost", b"", b"a b", b"example.com:443", b"h\x00"]
_FIELDS = [
    (b"content-length", b"5"),
    (b"content-length", b"0"),
    (b"content-length", b"+5"),
    (b"content-length", b"999999999999999999999"),
    (b"te", b"trailers"),
    (b"te", b"gzip"),
    (b"connection", b"close"),
    (b"keep-alive", b"1"),
    (b"upgrade", b"websocket"),
    (b"transfer-encoding", b"chunked"),
    (b"cookie", b"a=b"),
    (b"cookie", b"c=d"),
    (b"host", b"localhost"),
    (b"host", b"other"),
    (b"expect", b"100-continue"),
    (b"sec-websocket-version", b"13"),
    (b"User-Agent", b"x"),
    (b"x-a", b" padded "),
    (b"x-b", b"a\r\nb"),
    (b"x:c", b"1"),
    (b"", b"empty name"),
]


class Generator:
    """Frames from the choices of an input: valid-looking headers, payloads by choice."""

    def __init__(self, data: bytes) -> None:
        self.choose = Choices(data)
        self.encoder = hpack.Encoder()
        self.opened = 0

    def stream(self) -> int:
        choose = self.choose
        pick = choose.number(0, 7)
        if pick <= 2:
            return max(self.opened, 1)
        if pick == 3:
            self.opened += 2 if self.opened else 1
            return self.opened
        if pick == 4:
            return 0
        if pick == 5:
            return 2 * choose.number(1, 4)
        if pick == 6:
            return 0x7FFFFFFF
        return choose.number(0, 0xFFFFFFFF)

    def header_list(self, trailers: bool) -> list[tuple[bytes, bytes]]:
        choose = self.choose
        fields: list[tuple[bytes, bytes]] = []
        if not trailers:
            method = choose.pick(_METHODS)
            fields = [
                (b":method", method),
                (b":scheme", choose.pick(_SCHEMES)),
                (b":path", choose.pick(_PATHS)),
                (b":authority", choose.pick(_AUTHORITIES)),
            ]
            if method == b"CONNECT" or choose.number(0, 15) == 0:
                fields.append((b":protocol", b"websocket" if choose.flag() else b"other"))
            change = choose.number(0, 15)
            if change == 1:
                del fields[choose.number(0, len(fields) - 1)]
            elif change == 2:
                fields.append(fields[choose.number(0, len(fields) - 1)])
            elif change == 3:
                fields.insert(0, (b"x-first", b"1"))
            elif change == 4:
                fields.append((b":status", b"200"))
        for _ in range(choose.number(0, 6)):
            if choose.number(0, 3):
                fields.append(choose.pick(_FIELDS))
            else:
                fields.append((self.choose.some(12), self.choose.some(40)))
        if trailers and choose.number(0, 7) == 0:
            fields.append((b":path", b"/"))
        return fields

    def block(self, trailers: bool) -> bytes:
        choose = self.choose
        how = choose.number(0, 9)
        if how == 0:
            return self.choose.some(64)  # whatever HPACK makes of it
        headers = self.header_list(trailers)
        if choose.number(0, 7) == 0:
            headers.append((b"x-big", b"v" * choose.number(0, 3000)))
        try:
            return bytes(self.encoder.encode(headers, huffman=how % 2 == 0))
        except Exception:
            return b""

    def headers_frames(self, kind: int, stream: int) -> list[bytes]:
        choose = self.choose
        block = self.block(trailers=choose.number(0, 4) == 0)
        flags = END_STREAM if choose.flag() else 0
        prefix = b""
        if kind == PUSH_PROMISE:
            prefix = struct.pack("!I", self.stream())
        if choose.number(0, 7) == 0:
            flags |= PRIORITY_FLAG
            prefix += struct.pack("!IB", self.stream() | (0x80000000 * choose.flag()), 15)
        padding = b""
        if choose.number(0, 7) == 0:
            flags |= PADDED
            padding = bytes(choose.number(0, 20))
            prefix = bytes([len(padding) + choose.number(0, 1)]) + prefix
        pieces = choose.number(1, 4) if choose.number(0, 3) == 0 else 1
        size = -(-len(block) // pieces) if block else 0
        chunks = [block[i : i + size] for i in range(0, len(block), size)] if size else [b""]
        frames = []
        for index, chunk in enumerate(chunks):
            last = index == len(chunks) - 1
            end = END_HEADERS if last and choose.number(0, 15) else 0
            if index == 0:
                frames.append(frame(kind, flags | end, stream, prefix + chunk + padding))
            else:
                target = stream if choose.number(0, 15) else self.stream()
                frames.append(frame(CONTINUATION, end, target, chunk))
        return frames

    def settings(self) -> bytes:
        choose = self.choose
        payload = b""
        for _ in range(choose.number(0, 4)):
            ident = choose.number(0, 9)
            value = choose.pick(
                [0, 1, 100, 4096, 16383, 16384, 65535, 65536, 1 << 24, 0x7FFFFFFF, 0xFFFFFFFF]
            )
            payload += struct.pack("!HI", ident, value)
        return payload

    def one(self) -> list[bytes]:
        choose = self.choose
        kind = choose.number(0, 14)
        if kind in (HEADERS, PUSH_PROMISE) or kind == 10:
            return self.headers_frames(HEADERS if kind == 10 else kind, self.stream())
        stream = self.stream()
        if kind == DATA:
            size = choose.pick([0, 1, 10, 100, 1000, 16384, 16385, 70000])
            payload = b"d" * size if size > 100 else self.choose.some(size)
            flags = END_STREAM if choose.flag() else 0
            if choose.number(0, 7) == 0:
                flags |= PADDED
                pad = choose.number(0, 255)
                payload = bytes([pad]) + payload + bytes(max(0, pad - choose.number(0, 1)))
            return [frame(DATA, flags, stream, payload)]
        if kind == PRIORITY:
            return [frame(PRIORITY, 0, stream, struct.pack("!IB", self.stream(), 1))]
        if kind == RST_STREAM:
            code = choose.pick([0, 1, 2, 8, 0xB, 0xFF])
            return [frame(RST_STREAM, 0, stream, struct.pack("!I", code))]
        if kind == SETTINGS:
            ack = choose.number(0, 3) == 0
            payload = self.settings() if not ack or choose.number(0, 7) == 0 else b""
            return [
                frame(
                    SETTINGS,
                    ACK if ack else 0,
                    0 if choose.number(0, 7) else stream,
                    payload,
                )
            ]
        if kind == PING:
            payload = choose.data(8).ljust(8, b"\0")
            if choose.number(0, 15) == 0:
                payload = payload[: choose.number(0, 9)]
            return [frame(PING, ACK if choose.number(0, 3) == 0 else 0, 0, payload)]
        if kind == GOAWAY:
            code = choose.pick([0, 1, 2, 0xB, 0xDEAD])
            payload = struct.pack("!II", self.stream(), code) + self.choose.some(8)
            return [frame(GOAWAY, 0, 0, payload)]
        if kind == WINDOW_UPDATE:
            increment = choose.pick([0, 1, 1000, 65535, 1 << 20, 0x7FFFFFFF, 0x80000001])
            return [frame(WINDOW_UPDATE, 0, stream, struct.pack("!I", increment))]
        if kind == CONTINUATION:
            return [frame(CONTINUATION, END_HEADERS * choose.flag(), stream, self.block(False))]
        if kind == 11:
            payload = self.choose.some(30)
            return [frame(choose.number(10, 255), choose.number(0, 255), stream, payload)]
        if kind == 12:
            # A frame whose length field lies: the rest of the stream is misread.
            payload = self.choose.some(20)
            return [frame(choose.number(0, 9), 0, stream, payload, choose.number(0, 40))]
        return [self.choose.some(24)]

    def stream_bytes(self) -> bytes:
        out = [PREFACE, frame(SETTINGS, 0, 0, self.settings())]
        for _ in range(self.choose.number(1, 48)):
            if not self.choose.left():
                break
            out.extend(self.one())
        return b"".join(out)


# ---------------------------------------------------------------- one run


@dataclass
class Outcome:
    events: list[tuple[Any, ...]] = field(default_factory=list)
    ended: int | None = None


class Run:
    """One server connection fed reads, optionally answering like an app."""

    def __init__(self, options: int, answer: bool) -> None:
        self.limits = limits(options)
        self.codec = codec(options)
        self.conn: H2Codec = codec_factory(self.codec)(self.limits)
        self.conn.initiate()
        self.answer = answer
        self.output = bytearray(self.conn.data_to_send())
        self.outcome = Outcome()
        self.state: dict[int, str] = {}
        self.unacked: dict[int, int] = {}
        self.body: dict[int, int] = {}
        stream_window = self.limits.initial_window_size
        self.stream_window = stream_window
        self.conn_window = max(65535, stream_window)
        self.input = b""
        self.answered = 0

    def feed(self, chunks: list[bytes]) -> Outcome:
        for index, data in enumerate(chunks):
            self.input += data
            events = self.conn.receive_data(data)
            self._events(events)
            if self.answer:
                self._answer(events)
            self.output += self.conn.data_to_send()
            self._screen()
            if sampled(index, len(chunks)):
                self._bounded(max(len(c) for c in chunks[: index + 1]))
            if self.outcome.ended is not None:
                self._dead([*chunks[index + 1 :], frame(PING, 0, 0, bytes(8))])
                break
        self._check_output()
        return self.outcome

    # -------------------------------------------------------- events

    def _events(self, events: list[Any]) -> None:
        outcome = self.outcome
        for index, event in enumerate(events):
            kind = type(event)
            check(outcome.ended is None, f"{event!r} after ConnectionEnded")
            if kind is ConnectionEnded:
                check(index == len(events) - 1, "events after ConnectionEnded in one batch")
                outcome.ended = event.error_code
                outcome.events.append(("ended", event.error_code))
                continue
            if kind is StreamWritable:
                continue
            stream = event.stream_id
            state = self.state.get(stream)
            if kind is Request:
                check(stream % 2 == 1, f"request on even stream {stream}")
                check(state is None, f"second request on stream {stream}")
                self._request(event)
                self.state[stream] = "open"
                outcome.events.append(
                    (
                        "request",
                        stream,
                        event.method,
                        event.raw_path,
                        event.query_string,
                        tuple(event.headers),
                        event.scheme,
                        event.authority,
                        event.protocol,
                    )
                )
            elif kind is RequestRejected:
                check(event.status in REJECT_STATUSES, f"rejected with {event.status}")
                check(state in (None, "open"), f"rejected on stream {stream} in state {state}")
                self.state[stream] = "rejected"
                outcome.events.append(("rejected", stream, event.status))
            elif kind is Body:
                check(state == "open", f"body on stream {stream} in state {state}")
                check(event.data, "empty body event")
                self.unacked[stream] = self.unacked.get(stream, 0) + len(event.data)
                self.body[stream] = self.body.get(stream, 0) + len(event.data)
                if self.limits.max_body is not None:
                    check(self.body[stream] <= self.limits.max_body, "body over max_body")
                outcome.events.append(("body", stream, event.data))
            elif kind is EndBody:
                check(state == "open", f"end on stream {stream} in state {state}")
                self.state[stream] = "ended"
                outcome.events.append(("end", stream, event.trailers))
            elif kind is StreamClosed:
                check(state not in (None, "closed"), f"reset of stream {stream} in state {state}")
                self.state[stream] = "closed"
                self.unacked.pop(stream, None)
                outcome.events.append(("closed", stream, event.error_code))
            else:
                fail(f"unexpected event {event!r}")
        self._windows()

    def _request(self, request: Request) -> None:
        limits = self.limits
        check(request.method, "request without a method")
        if request.method == "CONNECT":
            check(limits.enable_connect_protocol, "CONNECT accepted without extended CONNECT")
            check(request.protocol == b"websocket", f"CONNECT for {request.protocol!r}")
        else:
            check(request.raw_path or request.query_string, "request without a path")
            check(request.scheme, "request without a scheme")
        check(len(request.headers) <= limits.max_fields + 1, "headers over max_fields")
        for name, _ in request.headers:
            check(name and not name.startswith(b":"), f"field {name!r} among the headers")
            check(name == name.lower(), f"upper-case field name {name!r}")

    def _windows(self) -> None:
        """Body not acknowledged stays within the windows advertised."""
        for stream, size in self.unacked.items():
            check(size <= self.stream_window, f"{size} bytes unacknowledged on stream {stream}")
        total = sum(self.unacked.values())
        check(total <= self.conn_window, f"{total} bytes unacknowledged on the connection")

    # -------------------------------------------------------- answering

    def _answer(self, events: list[Any]) -> None:
        conn = self.conn
        for event in events:
            kind = type(event)
            if kind is Request:
                self._respond(event.stream_id)
            elif kind is Body:
                if event.stream_id % 4 == 1:
                    conn.acknowledge(event.stream_id, len(event.data))
                    self.unacked[event.stream_id] -= len(event.data)
            elif kind is RequestRejected:
                conn.send_headers(event.stream_id, event.status, [], True)
                conn.stop_reading(event.stream_id, ErrorCode.NO_ERROR)
            elif kind in (EndBody, StreamClosed):
                conn.forget(event.stream_id)
                self.unacked.pop(event.stream_id, None)

    def _respond(self, stream: int) -> None:
        conn = self.conn
        self.answered += 1
        choice = self.answered % 6
        if choice == 0:
            conn.send_headers(stream, 200, [(b"content-type", b"text/plain")], True)
        elif choice == 1:
            conn.send_headers(stream, 200, [], False)
            conn.send_data(stream, b"x" * 100_000, True)
        elif choice == 2:
            conn.send_informational(stream, 103, [(b"link", b"</a>")])
            conn.send_headers(stream, 200, [], False)
            conn.send_data(stream, b"hello", False)
            conn.send_trailers(stream, [(b"x-t", b"1")])
        elif choice == 3:
            conn.reset(stream, conn.internal_error_code)
            self.unacked.pop(stream, None)
        elif choice == 4:
            conn.send_headers(stream, 200, [], False)
            conn.send_data(stream, b"y" * 70_000, True)
            conn.stop_reading(stream, ErrorCode.NO_ERROR)
        else:
            conn.goaway()
            conn.refuse_new_streams()
            conn.send_headers(stream, 204, [], True)

    # -------------------------------------------------------- bounds and the end

    def _screen(self) -> None:
        """The frame screen holds at most a frame header."""
        # (Private names: the one place to repoint if the screen moves.)
        held = cast(Any, self.conn)._screen._scan
        check(len(held) < 9, f"the frame screen holds {len(held)} bytes")

    def _bounded(self, largest_read: int) -> None:
        conn = cast(Any, self.conn)
        limits = self.limits
        frame_size = min(limits.max_frame_size, limits.max_inbound_frame_size)
        fixed = 9 + frame_size + 2 * limits.max_header_list_size + 3 * 4096 + 4096
        # h2 keeps response bytes waiting for window in ``_out``: the app's,
        # queued by this harness.  nghttp2 keeps them (and its own state) in C,
        # out of this measure's sight; its ``_out`` is output not yet taken,
        # empty here since ``data_to_send`` ran, and is counted.
        exclude = [conn._out] if self.codec == "h2" else []
        held = retained_bytes(conn, depth=5, exclude=exclude)
        check(
            held <= fixed + limits.max_concurrent_streams * 2048 + largest_read,
            f"the connection holds {held} bytes (limit {fixed} + one read)",
        )

    def _dead(self, more: list[bytes]) -> None:
        for data in more:
            events = self.conn.receive_data(data)
            check(not events, f"events after ConnectionEnded: {events!r}")

    def _check_output(self) -> None:
        """What the server wrote is whole frames with RFC 9113 error codes."""
        out = bytes(self.output)
        pos = 0
        errors: list[int] = []
        while pos < len(out):
            check(len(out) - pos >= 9, "output ends inside a frame header")
            length = int.from_bytes(out[pos : pos + 3], "big")
            kind = out[pos + 3]
            payload = out[pos + 9 : pos + 9 + length]
            check(len(payload) == length, "output ends inside a frame")
            if kind == GOAWAY:
                code = int.from_bytes(payload[4:8], "big")
                check(code in ERROR_CODES, f"GOAWAY with code {code:#x}")
                if code:
                    errors.append(code)
            elif kind == RST_STREAM:
                code = int.from_bytes(payload[:4], "big")
                check(code in ERROR_CODES, f"RST_STREAM with code {code:#x}")
            pos += 9 + length
        ended = self.outcome.ended
        if errors:
            check(len(errors) == 1, f"several error GOAWAYs: {errors}")
            # nghttp2 reads a whole read: a frame after the peer's GOAWAY may
            # still get its error GOAWAY, the connection ended by the peer's.
            after_peer = self.codec == "nghttp2" and _peer_goaway(self.input)
            check(
                ended == errors[0] or (ended is not None and after_peer),
                f"GOAWAY {errors[0]:#x} sent, ConnectionEnded {ended}",
            )
        elif ended is not None and ended != 0:
            check(_peer_goaway(self.input), f"ConnectionEnded {ended:#x} without a GOAWAY")


def _peer_goaway(data: bytes) -> bool:
    """Whether the client's bytes hold a GOAWAY frame (walking frame headers)."""
    pos = len(PREFACE) if data.startswith(PREFACE) else 0
    while len(data) - pos >= 9:
        if data[pos + 3] == GOAWAY:
            return True
        pos += 9 + int.from_bytes(data[pos : pos + 3], "big")
    return False


def one_input(data: bytes) -> None:
    if len(data) < 3:
        return
    options, pattern = data[0], data[1]
    if options & 1:
        payload = Generator(data[2:]).stream_bytes()
    elif options & 8:
        payload = PREFACE + EMPTY_SETTINGS + data[2:]
    else:
        payload = data[2:]
    answer = bool(options & 4)
    split = Run(options, answer).feed(reads(payload, pattern))
    if answer or pattern == 0:
        return
    whole = Run(options, answer).feed([payload])
    compare(split, whole, STRICTER_CODES[codec(options)])


def compare(split: Outcome, whole: Outcome, stricter: frozenset[int]) -> None:
    """The same bytes in one read and cut into many: the same events.

    One read may be stricter than cut reads, never the reverse: the screen
    reads all of a read's frame headers before h2 parses any of them (a flood
    is stopped before h2 sets up its streams), and h2 parses all of a read's
    frames before the requests in them are looked at (a stream refused in the
    same read still counts against the concurrent-stream limit).  So input
    that breaks a rule may end one read with the screen's or h2's error where
    cut reads end with another, or go on; ``stricter`` are those errors.
    """
    if split.ended is None and whole.ended is None:
        check(split.events == whole.events, "cut into reads, the events differ from one read")
        return
    check(
        whole.ended is not None and (split.ended is not None or whole.ended in stricter),
        f"the connection ends cut into reads ({split.ended}) or in one read ({whole.ended})",
    )
    check(
        split.ended == whole.ended or {split.ended, whole.ended} & stricter,
        f"ended {split.ended} cut into reads, {whole.ended} in one read",
    )
    check(is_extension(whole.events[:-1], split.events), "events before the end differ")
