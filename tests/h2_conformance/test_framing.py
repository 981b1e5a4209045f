"""RFC 9113 sections 3.4 (preface), 4 (frames), 5.4 (error handling), 5.5 (extensions)."""

from __future__ import annotations

import socket
import time

import pytest
from hyperframe.frame import (
    ContinuationFrame,
    DataFrame,
    HeadersFrame,
    PingFrame,
    PriorityFrame,
    RstStreamFrame,
    SettingsFrame,
    WindowUpdateFrame,
)

from ..servers import H2_CODEC
from . import driver
from .app import HELLO
from .driver import (
    ACK,
    CLOSED_ERRORS,
    CONTINUATION,
    DATA,
    END_HEADERS,
    END_STREAM,
    GOAWAY,
    HEADERS,
    PING,
    PREFACE,
    PRIORITY,
    RST_STREAM,
    SETTINGS,
    WINDOW_UPDATE,
    ErrorCodes,
    RawH2,
    connect,
    encode,
    raw_frame,
    request_headers,
)

E = ErrorCodes
RESERVED = 1 << 31

# ---------------------------------------------------------------- 3.4 connection preface


def test_3_4_valid_preface(port: int) -> None:
    """The server answers the client preface with its own SETTINGS, then serves."""
    with RawH2(port) as conn:
        conn.handshake()
        assert conn.received[0].type == SETTINGS, "the server preface is a SETTINGS frame"
        assert conn.still_works(1).body == HELLO


def test_3_4_preface_and_request_in_one_write(port: int) -> None:
    with RawH2(port) as conn:
        conn.send(PREFACE, SettingsFrame(0), conn.headers(1))
        assert conn.expect_response(1).body == HELLO


def split_frames(data: bytes) -> list[tuple[int, int, bytes]]:
    """(type, stream id, payload) of each frame in ``data``."""
    frames = []
    while data:
        length = int.from_bytes(data[:3], "big")
        assert len(data) >= 9 + length, f"truncated frame in {data!r}"
        frames.append((data[3], int.from_bytes(data[5:9], "big"), data[9 : 9 + length]))
        data = data[9 + length :]
    return frames


def _read_until_closed(sock: socket.socket, timeout: float = 5.0) -> bytes:
    data = b""
    deadline = time.monotonic() + timeout
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise AssertionError(f"the server kept the connection open; got {data!r}")
        sock.settimeout(remaining)
        try:
            chunk = sock.recv(65536)
        except CLOSED_ERRORS:
            return data
        if not chunk:
            return data
        data += chunk


@pytest.mark.parametrize(
    ("preface", "answer"),
    [
        (b"INVALID CONNECTION PREFACE\r\n\r\n", "http/1.1"),  # h2spec 3.5/2
        (b"PRI * HTTP/2.0\r\n\r\nXX\r\n\r\n", "h2"),  # diverges in its last line
        (b"PRI * HTTP/1.1\r\n\r\nSM\r\n\r\n", "http/1.1"),
    ],
    ids=["garbage", "bad-tail", "bad-version"],
)
def test_3_4_invalid_preface(port: int, preface: bytes, answer: str) -> None:
    """An invalid preface is a connection error: answered, then the connection is closed.

    A cleartext port that also speaks HTTP/1.1 reads a non-preface as an
    HTTP/1.1 request and answers it with an HTTP/1.1 error; bytes that start
    as the HTTP/2 preface and then go wrong are HTTP/2's to refuse, with
    GOAWAY(PROTOCOL_ERROR) (RFC 9113 3.4).  Over TLS, ALPN chose h2 before
    any byte: every invalid preface is HTTP/2's to refuse.  Closing without a
    word would be no answer at all.
    """
    with connect(port, timeout=5) as sock:
        sock.sendall(preface + SettingsFrame(0).serialize())
        data = _read_until_closed(sock)
    if answer == "http/1.1" and driver.TLS is None:
        assert data.startswith(b"HTTP/1.1 4"), data
    else:
        frames = split_frames(data)
        assert frames, "closed without a GOAWAY"
        assert frames[-1][0] == GOAWAY, data
        assert frames[-1][2][4:8] == (E.PROTOCOL_ERROR).to_bytes(4, "big"), data
        assert all(frame[1] == 0 for frame in frames), "no stream may be answered"


@pytest.mark.parametrize(
    "first",
    [
        PingFrame(0, opaque_data=b"12345678").serialize(),
        raw_frame(SETTINGS, ACK, 0),
        HeadersFrame(1, encode(request_headers()), flags=["END_STREAM", "END_HEADERS"]).serialize(),
        WindowUpdateFrame(0, window_increment=1000).serialize(),
    ],
    ids=["ping", "settings-ack", "headers", "window-update"],
)
def test_3_4_preface_not_followed_by_settings(port: int, first: bytes) -> None:
    """The preface is the magic *and* a SETTINGS frame: anything else is PROTOCOL_ERROR."""
    with RawH2(port) as conn:
        conn.send(PREFACE, first)
        conn.expect_connection_error(E.PROTOCOL_ERROR)


# ---------------------------------------------------------------- 4.1 frame format


@pytest.mark.parametrize("ftype", [0x0C, 0x20, 0xFF])
def test_4_1_unknown_frame_type_is_ignored(port: int, ftype: int) -> None:
    with RawH2(port) as conn:
        conn.handshake()
        conn.send(raw_frame(ftype, 0xFF, 0, b"unknown payload"))
        conn.expect_ping_ack(conn.ping())


PRIORITY_UPDATE = 0x10


def test_4_1_priority_update_for_a_request_stream(port: int) -> None:
    """RFC 9218 PRIORITY_UPDATE (0x10) for an open request stream: a hint, never an
    error (the nghttp2 codec knows the frame; to the h2 codec it is unknown)."""
    with RawH2(port) as conn:
        conn.handshake()
        conn.send(conn.headers(1, request_headers(b"/echo", b"POST"), end_stream=False))
        conn.send(raw_frame(PRIORITY_UPDATE, 0, 0, (1).to_bytes(4, "big") + b"u=1, i"))
        conn.send(DataFrame(1, b"one", flags=["END_STREAM"]))
        assert conn.expect_response(1).body == b"one"


def test_4_1_priority_update_for_an_idle_push_stream(port: int) -> None:
    """A PRIORITY_UPDATE naming an idle push stream (an even id; the payload
    reads as stream 0x756E6B6E).

    RFC 9218 7.1 makes it a connection error PROTOCOL_ERROR for a server that
    implements the frame, as the nghttp2 codec does; to the h2 codec the type
    is unknown, and unknown frames are ignored (RFC 9113 5.5).
    """
    with RawH2(port) as conn:
        conn.handshake()
        conn.send(raw_frame(PRIORITY_UPDATE, 0xFF, 0, b"unknown payload"))
        if H2_CODEC == "nghttp2":
            conn.expect_connection_error(E.PROTOCOL_ERROR)
        else:
            conn.expect_ping_ack(conn.ping())


# Every flag bit the frame type does not define, set.
UNDEFINED_FLAGS = {
    "DATA": 0xF6,
    "HEADERS": 0xD2,
    "PRIORITY": 0xFF,
    "RST_STREAM": 0xFF,
    "SETTINGS": 0xFE,
    "PING": 0xFE,
    "WINDOW_UPDATE": 0xFF,
    "CONTINUATION": 0xFB,
}


@pytest.mark.parametrize("kind", list(UNDEFINED_FLAGS))
def test_4_1_undefined_flags_are_ignored(port: int, kind: str) -> None:
    junk = UNDEFINED_FLAGS[kind]
    block = encode(request_headers(b"/echo", b"POST"))
    with RawH2(port) as conn:
        conn.handshake()
        if kind == "DATA":
            conn.send(
                conn.headers(1, request_headers(b"/echo", b"POST"), end_stream=False),
                raw_frame(DATA, junk | END_STREAM, 1, b"body"),
            )
            assert conn.expect_response(1).body == b"body"
        elif kind == "HEADERS":
            conn.send(raw_frame(HEADERS, junk | END_STREAM | END_HEADERS, 1, block))
            assert conn.expect_response(1).status == 200
        elif kind == "CONTINUATION":
            conn.send(
                raw_frame(HEADERS, END_STREAM, 1, block[:3]),
                raw_frame(CONTINUATION, junk | END_HEADERS, 1, block[3:]),
            )
            assert conn.expect_response(1).status == 200
        elif kind == "PRIORITY":
            conn.send(raw_frame(PRIORITY, junk, 1, b"\x00\x00\x00\x00\x10"))
            conn.expect_ping_ack(conn.ping())
            assert conn.still_works(1).status == 200
        elif kind == "RST_STREAM":
            conn.send(conn.headers(1, request_headers(b"/echo", b"POST"), end_stream=False))
            conn.send(raw_frame(RST_STREAM, junk, 1, (E.CANCEL).to_bytes(4, "big")))
            assert conn.still_works(3).status == 200
        elif kind == "SETTINGS":
            conn.send(raw_frame(SETTINGS, junk, 0, b""))
            conn.wait_for(lambda f: isinstance(f, SettingsFrame) and "ACK" in f.flags, "ACK")
            conn.expect_ping_ack(conn.ping())
        elif kind == "PING":
            conn.send(raw_frame(PING, junk, 0, b"flagtest"))
            conn.expect_ping_ack(b"flagtest")
        elif kind == "WINDOW_UPDATE":
            conn.send(raw_frame(WINDOW_UPDATE, junk, 0, (1).to_bytes(4, "big")))
            conn.expect_ping_ack(conn.ping())


def test_4_1_reserved_bit_in_stream_id_is_ignored(port: int) -> None:
    """h2spec 4.1/3: the R bit is ignored on receipt (HEADERS on stream 1 | R)."""
    with RawH2(port) as conn:
        conn.handshake()
        block = encode(request_headers())
        conn.send(raw_frame(HEADERS, END_STREAM | END_HEADERS, 1 | RESERVED, block))
        assert conn.expect_response(1).body == HELLO


def test_4_1_reserved_bit_on_data_frame_is_ignored(port: int) -> None:
    with RawH2(port) as conn:
        conn.handshake()
        conn.send(
            conn.headers(1, request_headers(b"/echo", b"POST"), end_stream=False),
            raw_frame(DATA, END_STREAM, 1 | RESERVED, b"payload"),
        )
        assert conn.expect_response(1).body == b"payload"


def test_4_1_reserved_bit_on_ping_stream_zero_is_ignored(port: int) -> None:
    with RawH2(port) as conn:
        conn.handshake()
        conn.send(raw_frame(PING, 0, RESERVED, b"reserved"))
        conn.expect_ping_ack(b"reserved")


def test_4_1_reserved_bit_in_window_update_increment_is_ignored(port: int) -> None:
    """6.9: the bit is reserved and MUST be ignored when receiving (h2spec 6.9)."""
    with RawH2(port) as conn:
        conn.handshake()
        conn.send(raw_frame(WINDOW_UPDATE, 0, 0, (RESERVED | 1).to_bytes(4, "big")))
        conn.expect_ping_ack(conn.ping())


@pytest.mark.parametrize("split", [False, True], ids=["one-write", "byte-by-byte"])
def test_4_1_reserved_bit_in_window_update_is_not_part_of_the_increment(
    port: int, split: bool
) -> None:
    """The increment is the 31 bits after the reserved one: a stream window of
    0 opened by RESERVED|10 lets exactly 10 octets through, then RESERVED|90
    the rest."""
    with RawH2(port) as conn:
        conn.handshake({0x4: 0})
        conn.send(conn.headers(1, request_headers(b"/big?n=100")))
        conn.wait_for(lambda f: isinstance(f, HeadersFrame) and f.stream_id == 1, "HEADERS")
        first = raw_frame(WINDOW_UPDATE, 0, 1, (RESERVED | 10).to_bytes(4, "big"))
        if split:
            for i in range(len(first)):
                conn.send(first[i : i + 1])
        else:
            conn.send(first)
        conn.wait_for(lambda f: isinstance(f, DataFrame) and f.stream_id == 1, "DATA")
        conn.expect_ping_ack(conn.ping())
        assert conn.octets(1) == 10
        conn.send(raw_frame(WINDOW_UPDATE, 0, 1, (RESERVED | 90).to_bytes(4, "big")))
        assert conn.expect_response(1).body == b"x" * 100


def test_4_1_reserved_bit_alone_is_a_zero_increment(port: int) -> None:
    """With the reserved bit ignored, an increment of 0 remains a PROTOCOL_ERROR (6.9)."""
    with RawH2(port) as conn:
        conn.handshake()
        conn.send(raw_frame(WINDOW_UPDATE, 0, 0, RESERVED.to_bytes(4, "big")))
        conn.expect_connection_error(E.PROTOCOL_ERROR)


# ---------------------------------------------------------------- 4.2 frame size


def test_4_2_data_frame_of_max_frame_size(port: int) -> None:
    """h2spec generic: a DATA frame of exactly SETTINGS_MAX_FRAME_SIZE (2^14) is fine."""
    payload = b"y" * 16384
    with RawH2(port) as conn:
        conn.handshake()
        assert conn.server_settings.get(0x5, 16384) == 16384
        conn.send(
            conn.headers(1, request_headers(b"/echo", b"POST"), end_stream=False),
            DataFrame(1, payload, flags=["END_STREAM"]),
        )
        ex = conn.expect_response(1, timeout=10)
        assert ex.get(b"x-body-length") == b"16384"


def test_4_2_data_frame_too_large(port: int) -> None:
    """h2spec 4.2/2: DATA beyond SETTINGS_MAX_FRAME_SIZE -> FRAME_SIZE_ERROR."""
    with RawH2(port) as conn:
        conn.handshake()
        conn.send(
            conn.headers(1, request_headers(b"/echo", b"POST"), end_stream=False),
            DataFrame(1, b"y" * 16385, flags=["END_STREAM"]),
        )
        conn.expect_stream_error(1, E.FRAME_SIZE_ERROR)


@pytest.mark.parametrize(
    "kind", ["headers", "continuation", "settings", "ping", "extension", "window-update"]
)
def test_4_2_connection_frame_too_large(port: int, kind: str) -> None:
    """A too-large frame that carries a field block or is on stream 0: connection error."""
    big = 16385
    with RawH2(port) as conn:
        conn.handshake()
        block = encode(request_headers())
        if kind == "headers":
            # h2spec 4.2/3: a field block padded out past the limit.
            filler = encode([(b"x-filler", b"f" * 16400)])
            conn.send(raw_frame(HEADERS, END_STREAM | END_HEADERS, 1, block + filler))
        elif kind == "continuation":
            filler = encode([(b"x-filler", b"f" * 16400)])
            conn.send(
                raw_frame(HEADERS, END_STREAM, 1, block),
                raw_frame(CONTINUATION, END_HEADERS, 1, filler),
            )
        elif kind == "settings":
            conn.send(raw_frame(SETTINGS, 0, 0, b"\x00\x03\x00\x00\x00\x64" * 2731))
        elif kind == "ping":
            conn.send(raw_frame(PING, 0, 0, b"p" * big))
        elif kind == "extension":
            conn.send(raw_frame(0x20, 0, 0, b"e" * big))
        else:
            conn.send(raw_frame(WINDOW_UPDATE, 0, 0, b"\x00\x00\x00\x01" + b"\x00" * (big - 4)))
        conn.expect_connection_error(E.FRAME_SIZE_ERROR)


@pytest.mark.parametrize("max_frame", [16384, 32768])
def test_4_2_server_respects_peer_max_frame_size(port: int, max_frame: int) -> None:
    """The server's DATA frames never exceed the client's SETTINGS_MAX_FRAME_SIZE."""
    size = 3 * max_frame + 123
    with RawH2(port) as conn:
        conn.handshake({0x5: max_frame, 0x4: 1 << 20})
        conn.send(WindowUpdateFrame(0, window_increment=1 << 20))
        conn.request(1, b"/big?n=%d" % size)
        ex = conn.expect_response(1)
        assert len(ex.body) == size
        assert max(ex.data_frames) <= max_frame
        if max_frame > 16384 and H2_CODEC == "nghttp2":
            # libnghttp2 frames DATA in at most 16,384 octets unless a
            # callback raises it, which ngh2 (0.3) does not offer.
            assert max(ex.data_frames) == 16384
        elif max_frame > 16384:
            assert max(ex.data_frames) > 16384, "the larger frame size was not used"


# ---------------------------------------------------------------- 4.3 field blocks


def test_4_3_invalid_field_block(port: int) -> None:
    """h2spec 4.3/1: an undecodable field block -> COMPRESSION_ERROR."""
    with RawH2(port) as conn:
        conn.handshake()
        conn.send(raw_frame(HEADERS, END_STREAM | END_HEADERS, 1, b"\x40"))
        conn.expect_connection_error(E.COMPRESSION_ERROR)


@pytest.mark.parametrize(
    "interloper",
    [
        "priority",
        "headers-other-stream",
        "data",
        "ping",
        "settings",
        "window-update",
        "rst-stream",
        "continuation-other-stream",
        "unknown-extension",
    ],
)
def test_4_3_field_block_must_be_contiguous(port: int, interloper: str) -> None:
    """h2spec 4.3/2-3, 6.2/1-2, 5.5/2: nothing may interrupt a field block."""
    block = encode(request_headers())
    frames = {
        "priority": PriorityFrame(1, depends_on=0, stream_weight=16),
        "headers-other-stream": HeadersFrame(3, block, flags=["END_STREAM", "END_HEADERS"]),
        "data": DataFrame(1, b"x"),
        "ping": PingFrame(0, opaque_data=b"pingping"),
        "settings": SettingsFrame(0),
        "window-update": WindowUpdateFrame(0, window_increment=100),
        "rst-stream": RstStreamFrame(1, error_code=E.CANCEL),
        "continuation-other-stream": ContinuationFrame(3, block[3:], flags=["END_HEADERS"]),
        "unknown-extension": raw_frame(0x20, 0, 1, b"extension"),
    }
    with RawH2(port) as conn:
        conn.handshake()
        conn.send(
            HeadersFrame(1, block[:3], flags=["END_STREAM"]),
            frames[interloper],
            ContinuationFrame(1, block[3:], flags=["END_HEADERS"]),
        )
        conn.expect_connection_error(E.PROTOCOL_ERROR)


# ---------------------------------------------------------------- 5.4 error handling


def test_5_4_1_connection_error_sends_goaway_then_closes(port: int) -> None:
    """h2spec 5.4.1/1-2: PING on stream 3 -> GOAWAY(PROTOCOL_ERROR), then TCP close."""
    with RawH2(port) as conn:
        conn.handshake()
        conn.send(b"\x00\x00\x08\x06\x00\x00\x00\x00\x03", b"\x00" * 8)
        conn.expect_connection_error(E.PROTOCOL_ERROR)
        assert conn.closed


def test_5_4_1_goaway_names_the_last_processed_stream(port: int) -> None:
    with RawH2(port) as conn:
        conn.handshake()
        conn.request(1)
        conn.expect_response(1)
        conn.request(3)
        conn.expect_response(3)
        conn.send(raw_frame(PING, 0, 5, b"\x00" * 8))
        goaway = conn.expect_connection_error(E.PROTOCOL_ERROR)
        assert goaway.last_stream_id == 3


def test_5_4_2_stream_error_leaves_other_streams_alone(port: int) -> None:
    """A stream error ends that stream only: the connection goes on serving."""
    with RawH2(port) as conn:
        conn.handshake({0x4: 0})  # keep stream 1 open: its response cannot finish
        conn.request(1)
        conn.wait_for(lambda f: isinstance(f, HeadersFrame) and f.stream_id == 1, "HEADERS")
        conn.send(DataFrame(1, b"late", flags=["END_STREAM"]))  # half-closed (remote)
        frame = conn.expect_stream_error(1, E.STREAM_CLOSED)
        if isinstance(frame, RstStreamFrame):
            conn.send(SettingsFrame(0, settings={0x4: 65535}))
            assert conn.still_works(3).body == HELLO


# ---------------------------------------------------------------- 5.5 extensions


@pytest.mark.parametrize("where", ["stream-0", "open-stream", "idle-stream", "closed-stream"])
def test_5_5_unknown_extension_frame_is_ignored(port: int, where: str) -> None:
    """h2spec 5.5/1: unknown frame types are ignored wherever they appear."""
    with RawH2(port) as conn:
        conn.handshake()
        if where == "open-stream":
            conn.send(conn.headers(1, request_headers(b"/echo", b"POST"), end_stream=False))
            conn.send(raw_frame(0x21, 0x5, 1, b"abc"), DataFrame(1, b"z", flags=["END_STREAM"]))
            assert conn.expect_response(1).body == b"z"
        elif where == "idle-stream":
            conn.send(raw_frame(0x21, 0, 7, b"abc"))
            conn.expect_ping_ack(conn.ping())
            assert conn.still_works(1).status == 200
        elif where == "closed-stream":
            conn.request(1)
            conn.expect_response(1)
            conn.send(raw_frame(0x21, 0, 1, b"abc"))
            conn.expect_ping_ack(conn.ping())
        else:
            conn.send(raw_frame(0x21, 0, 0, b""))
            conn.expect_ping_ack(conn.ping())


def test_5_5_unknown_setting_is_ignored(port: int) -> None:
    """h2spec 6.5.2/5: an unknown SETTINGS identifier is ignored (and acknowledged)."""
    with RawH2(port) as conn:
        conn.handshake()
        conn.send(SettingsFrame(0, settings={0xFF: 1, 0x4242: 7}))
        conn.wait_for(lambda f: isinstance(f, SettingsFrame) and "ACK" in f.flags, "ACK")
        assert conn.still_works(1).status == 200
