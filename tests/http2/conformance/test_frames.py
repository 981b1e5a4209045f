"""RFC 9113 section 6 (frame definitions) and section 7 (error codes)."""

from __future__ import annotations

import pytest
from hyperframe.frame import (
    ContinuationFrame,
    DataFrame,
    GoAwayFrame,
    HeadersFrame,
    PingFrame,
    RstStreamFrame,
    SettingsFrame,
)

from .app import HELLO
from .driver import (
    ACK,
    CONTINUATION,
    DATA,
    END_HEADERS,
    END_STREAM,
    GOAWAY,
    HEADERS,
    PADDED,
    PING,
    PRIORITY,
    PRIORITY_FLAG,
    RST_STREAM,
    SETTINGS,
    WINDOW_UPDATE,
    ErrorCodes,
    RawH2,
    encode,
    raw_frame,
    request_headers,
)

E = ErrorCodes
BLOCK = encode(request_headers())
POST_ECHO = request_headers(b"/echo", b"POST")


def _open_echo(conn: RawH2, stream_id: int = 1) -> None:
    conn.send(conn.headers(stream_id, POST_ECHO, end_stream=False))


# ---------------------------------------------------------------- 6.1 DATA


def test_6_1_data_frame(port: int) -> None:
    """h2spec generic 3.1/1."""
    with RawH2(port) as conn:
        conn.handshake()
        _open_echo(conn)
        conn.send(DataFrame(1, b"test", flags=["END_STREAM"]))
        assert conn.expect_response(1).body == b"test"


def test_6_1_multiple_data_frames(port: int) -> None:
    """h2spec generic 3.1/2."""
    with RawH2(port) as conn:
        conn.handshake()
        _open_echo(conn)
        conn.send(
            DataFrame(1, b"one,"), DataFrame(1, b""), DataFrame(1, b"two", flags=["END_STREAM"])
        )
        assert conn.expect_response(1).body == b"one,two"


@pytest.mark.parametrize("pad_length", [0, 1, 200, 255])
def test_6_1_data_frame_with_padding(port: int, pad_length: int) -> None:
    """h2spec generic 3.1/3: padding is removed, never given to the application."""
    with RawH2(port) as conn:
        conn.handshake()
        _open_echo(conn)
        conn.send(DataFrame(1, b"padded", pad_length=pad_length, flags=["END_STREAM", "PADDED"]))
        assert conn.expect_response(1).body == b"padded"


def test_6_1_data_frame_padding_only(port: int) -> None:
    """Pad Length = payload length - 1: valid, no data at all."""
    with RawH2(port) as conn:
        conn.handshake()
        _open_echo(conn)
        conn.send(raw_frame(DATA, PADDED | END_STREAM, 1, b"\x04" + b"\x00" * 4))
        assert conn.expect_response(1).body == b""


def test_6_1_data_on_stream_zero(port: int) -> None:
    """h2spec 6.1/1."""
    with RawH2(port) as conn:
        conn.handshake()
        conn.send(raw_frame(DATA, END_STREAM, 0, b"test"))
        conn.expect_connection_error(E.PROTOCOL_ERROR)


def test_6_1_data_after_end_stream_on_data(port: int) -> None:
    """h2spec 6.1/2 (half-closed by DATA's END_STREAM this time) -> STREAM_CLOSED."""
    with RawH2(port) as conn:
        conn.handshake({0x4: 0})
        _open_echo(conn)
        conn.send(DataFrame(1, b"x", flags=["END_STREAM"]))
        conn.wait_for(lambda f: isinstance(f, HeadersFrame) and f.stream_id == 1, "HEADERS")
        conn.send(DataFrame(1, b"y", flags=["END_STREAM"]))
        conn.expect_stream_error(1, E.STREAM_CLOSED)


@pytest.mark.parametrize("pad_length", [5, 6, 255], ids=["equal", "longer", "max"])
def test_6_1_data_invalid_pad_length(port: int, pad_length: int) -> None:
    """h2spec 6.1/3: Pad Length >= the payload length -> PROTOCOL_ERROR."""
    with RawH2(port) as conn:
        conn.handshake()
        _open_echo(conn)
        # Payload: Pad Length (1 octet) + "Test": 5 octets.
        conn.send(raw_frame(DATA, PADDED | END_STREAM, 1, bytes([pad_length]) + b"Test"))
        conn.expect_connection_error(E.PROTOCOL_ERROR)


def test_6_1_data_padded_without_pad_length(port: int) -> None:
    """PADDED on an empty DATA frame: too small to hold the Pad Length field."""
    with RawH2(port) as conn:
        conn.handshake()
        _open_echo(conn)
        conn.send(raw_frame(DATA, PADDED | END_STREAM, 1, b""))
        conn.expect_connection_error(E.PROTOCOL_ERROR, E.FRAME_SIZE_ERROR)


# ---------------------------------------------------------------- 6.2 HEADERS


def test_6_2_headers_frame(port: int) -> None:
    """h2spec generic 3.2/1."""
    with RawH2(port) as conn:
        conn.handshake()
        conn.send(HeadersFrame(1, BLOCK, flags=["END_STREAM", "END_HEADERS"]))
        assert conn.expect_response(1).body == HELLO


@pytest.mark.parametrize("pad_length", [0, 10, 255])
def test_6_2_headers_frame_with_padding(port: int, pad_length: int) -> None:
    """h2spec generic 3.2/2."""
    with RawH2(port) as conn:
        conn.handshake()
        frame = HeadersFrame(
            1, BLOCK, pad_length=pad_length, flags=["END_STREAM", "END_HEADERS", "PADDED"]
        )
        conn.send(frame)
        assert conn.expect_response(1).body == HELLO


def test_6_2_headers_with_priority_and_padding(port: int) -> None:
    with RawH2(port) as conn:
        conn.handshake()
        payload = b"\x03" + b"\x00\x00\x00\x00" + b"\x10" + BLOCK + b"\x00" * 3
        conn.send(raw_frame(HEADERS, END_STREAM | END_HEADERS | PADDED | PRIORITY_FLAG, 1, payload))
        assert conn.expect_response(1).body == HELLO


def test_6_2_headers_end_stream_with_continuation(port: int) -> None:
    """END_STREAM on a HEADERS frame whose block ends in a CONTINUATION."""
    with RawH2(port) as conn:
        conn.handshake()
        conn.send(
            HeadersFrame(1, BLOCK[:4], flags=["END_STREAM"]),
            ContinuationFrame(1, BLOCK[4:], flags=["END_HEADERS"]),
        )
        assert conn.expect_response(1).body == HELLO


def test_6_2_headers_on_stream_zero(port: int) -> None:
    """h2spec 6.2/3."""
    with RawH2(port) as conn:
        conn.handshake()
        conn.send(raw_frame(HEADERS, END_STREAM | END_HEADERS, 0, BLOCK))
        conn.expect_connection_error(E.PROTOCOL_ERROR)


@pytest.mark.parametrize("pad_length", [len(BLOCK) + 1, 255], ids=["longer", "max"])
def test_6_2_headers_invalid_pad_length(port: int, pad_length: int) -> None:
    """h2spec 6.2/4: Pad Length >= the payload length -> PROTOCOL_ERROR."""
    with RawH2(port) as conn:
        conn.handshake()
        payload = bytes([pad_length]) + BLOCK
        conn.send(raw_frame(HEADERS, END_STREAM | END_HEADERS | PADDED, 1, payload))
        conn.expect_connection_error(E.PROTOCOL_ERROR)


def test_6_2_headers_priority_flag_too_short(port: int) -> None:
    """PRIORITY flag set but fewer than the 5 octets it announces."""
    with RawH2(port) as conn:
        conn.handshake()
        conn.send(raw_frame(HEADERS, END_STREAM | END_HEADERS | PRIORITY_FLAG, 1, b"\x00\x00"))
        conn.expect_connection_error(E.PROTOCOL_ERROR, E.FRAME_SIZE_ERROR)


# ---------------------------------------------------------------- 6.3 PRIORITY


def test_6_3_priority_on_stream_zero(port: int) -> None:
    """h2spec 6.3/1."""
    with RawH2(port) as conn:
        conn.handshake()
        conn.send(raw_frame(PRIORITY, 0, 0, b"\x00\x00\x00\x01\x10"))
        conn.expect_connection_error(E.PROTOCOL_ERROR)


@pytest.mark.parametrize("length", [0, 4, 6])
def test_6_3_priority_bad_length(port: int, length: int) -> None:
    """h2spec 6.3/2: a PRIORITY frame is exactly 5 octets -> FRAME_SIZE_ERROR."""
    with RawH2(port) as conn:
        conn.handshake()
        _open_echo(conn)
        conn.send(raw_frame(PRIORITY, 0, 1, b"\x00\x00\x00\x00\x10\x00"[:length]))
        conn.expect_stream_error(1, E.FRAME_SIZE_ERROR)


# ---------------------------------------------------------------- 6.4 RST_STREAM


def test_6_4_rst_stream_frame(port: int) -> None:
    """h2spec generic 3.4/1: the stream ends, the connection goes on."""
    with RawH2(port) as conn:
        conn.handshake()
        _open_echo(conn)
        conn.send(RstStreamFrame(1, error_code=E.CANCEL))
        assert conn.still_works(3).body == HELLO
        assert conn.exchanges.get(1) is None or not conn.exchanges[1].ended


def test_6_4_rst_stream_on_stream_zero(port: int) -> None:
    """h2spec 6.4/1."""
    with RawH2(port) as conn:
        conn.handshake()
        conn.send(raw_frame(RST_STREAM, 0, 0, b"\x00\x00\x00\x08"))
        conn.expect_connection_error(E.PROTOCOL_ERROR)


@pytest.mark.parametrize("length", [3, 5])
def test_6_4_rst_stream_bad_length(port: int, length: int) -> None:
    """h2spec 6.4/3: RST_STREAM is exactly 4 octets -> FRAME_SIZE_ERROR."""
    with RawH2(port) as conn:
        conn.handshake()
        _open_echo(conn)
        conn.send(raw_frame(RST_STREAM, 0, 1, b"\x00\x00\x00\x08\x00"[:length]))
        conn.expect_connection_error(E.FRAME_SIZE_ERROR)


# ---------------------------------------------------------------- 6.5 SETTINGS


def test_6_5_settings_frame(port: int) -> None:
    """h2spec generic 3.5/1 and 6.5.3/2: SETTINGS is acknowledged, exactly once."""
    with RawH2(port) as conn:
        conn.handshake()
        conn.send(SettingsFrame(0, settings={0x3: 10}))
        conn.expect_ping_ack(conn.ping())
        acks = [f for f in conn.received if isinstance(f, SettingsFrame) and "ACK" in f.flags]
        assert len(acks) == 2  # one for the preface's SETTINGS, one for this


@pytest.mark.parametrize("payload", [b"\x00\x03\x00\x00\x00\x64", b"\x00"])
def test_6_5_settings_ack_with_payload(port: int, payload: bytes) -> None:
    """h2spec 6.5/1: SETTINGS with ACK and a payload -> FRAME_SIZE_ERROR."""
    with RawH2(port) as conn:
        conn.handshake()
        conn.send(raw_frame(SETTINGS, ACK, 0, payload))
        conn.expect_connection_error(E.FRAME_SIZE_ERROR)


def test_6_5_settings_on_a_stream(port: int) -> None:
    """h2spec 6.5/2."""
    with RawH2(port) as conn:
        conn.handshake()
        conn.send(raw_frame(SETTINGS, 0, 1, b"\x00\x03\x00\x00\x00\x64"))
        conn.expect_connection_error(E.PROTOCOL_ERROR)


@pytest.mark.parametrize("length", [1, 3, 7, 11])
def test_6_5_settings_length_not_multiple_of_6(port: int, length: int) -> None:
    """h2spec 6.5/3."""
    with RawH2(port) as conn:
        conn.handshake()
        conn.send(raw_frame(SETTINGS, 0, 0, (b"\x00\x03\x00\x00\x00\x64" * 2)[:length]))
        conn.expect_connection_error(E.FRAME_SIZE_ERROR)


@pytest.mark.parametrize(
    ("setting", "value", "code"),
    [
        (0x2, 2, E.PROTOCOL_ERROR),  # ENABLE_PUSH: only 0 or 1
        (0x2, 0xFFFFFFFF, E.PROTOCOL_ERROR),
        (0x4, 2**31, E.FLOW_CONTROL_ERROR),  # INITIAL_WINDOW_SIZE above 2^31-1
        (0x4, 0xFFFFFFFF, E.FLOW_CONTROL_ERROR),
        (0x5, 16383, E.PROTOCOL_ERROR),  # MAX_FRAME_SIZE below 2^14
        (0x5, 0, E.PROTOCOL_ERROR),
        (0x5, 2**24, E.PROTOCOL_ERROR),  # MAX_FRAME_SIZE above 2^24-1
        (0x8, 2, E.PROTOCOL_ERROR),  # ENABLE_CONNECT_PROTOCOL (RFC 8441): 0 or 1
    ],
    ids=[
        "enable-push-2",
        "enable-push-max",
        "window-2^31",
        "window-max",
        "frame-16383",
        "frame-0",
        "frame-2^24",
        "connect-protocol-2",
    ],
)
def test_6_5_2_invalid_setting_values(port: int, setting: int, value: int, code: int) -> None:
    """h2spec 6.5.2/1-4 and 6.9.2/3."""
    with RawH2(port) as conn:
        conn.handshake()
        conn.send(raw_frame(SETTINGS, 0, 0, setting.to_bytes(2, "big") + value.to_bytes(4, "big")))
        conn.expect_connection_error(code)


@pytest.mark.parametrize(
    ("setting", "value"),
    [
        (0x1, 0),  # HEADER_TABLE_SIZE
        (0x1, 2**32 - 1),
        (0x2, 0),
        (0x2, 1),
        (0x3, 0),  # MAX_CONCURRENT_STREAMS (for server pushes: none)
        (0x4, 2**31 - 1),
        (0x5, 16384),
        (0x5, 2**24 - 1),
        (0x6, 1),  # MAX_HEADER_LIST_SIZE
    ],
)
def test_6_5_2_valid_setting_values(port: int, setting: int, value: int) -> None:
    with RawH2(port) as conn:
        conn.handshake()
        conn.send(raw_frame(SETTINGS, 0, 0, setting.to_bytes(2, "big") + value.to_bytes(4, "big")))
        conn.wait_for(lambda f: isinstance(f, SettingsFrame) and "ACK" in f.flags, "ACK")
        conn.expect_ping_ack(conn.ping())


def test_6_5_2_header_table_size_zero_is_honoured(port: int) -> None:
    """With SETTINGS_HEADER_TABLE_SIZE 0 the server must not index into a dynamic table."""
    with RawH2(port) as conn:
        conn.decoder.max_allowed_table_size = 0
        conn.handshake({0x1: 0})
        for stream_id in (1, 3, 5):
            conn.request(stream_id)
            assert conn.expect_response(stream_id).body == HELLO
        assert conn.decoder.header_table_size == 0


def test_6_5_3_multiple_values_of_one_setting(port: int) -> None:
    """h2spec 6.5.3/1: the last value of INITIAL_WINDOW_SIZE in the frame wins (1)."""
    with RawH2(port) as conn:
        conn.handshake()
        payload = b"\x00\x04\x00\x00\x00\x64" + b"\x00\x04\x00\x00\x00\x01"
        conn.send(raw_frame(SETTINGS, 0, 0, payload))
        conn.wait_for(lambda f: isinstance(f, SettingsFrame) and "ACK" in f.flags, "ACK")
        conn.request(1)
        conn.wait_for(lambda f: isinstance(f, DataFrame) and f.stream_id == 1, "DATA")
        assert conn.exchanges[1].data_frames == [1]


# ---------------------------------------------------------------- 6.7 PING


@pytest.mark.parametrize("data", [b"h2spec\x00\x00", b"\xff" * 8, b"\x00" * 8])
def test_6_7_ping(port: int, data: bytes) -> None:
    """h2spec 6.7/1: the ACK echoes the opaque data."""
    with RawH2(port) as conn:
        conn.handshake()
        conn.send(PingFrame(0, opaque_data=data))
        conn.expect_ping_ack(data)


def test_6_7_ping_ack_is_not_answered(port: int) -> None:
    """h2spec 6.7/2: a PING with ACK gets no response."""
    with RawH2(port) as conn:
        conn.handshake()
        conn.send(PingFrame(0, opaque_data=b"unsolici", flags=["ACK"]))
        conn.expect_ping_ack(conn.ping(b"real one"))
        echoes = [
            f for f in conn.received if isinstance(f, PingFrame) and f.opaque_data == b"unsolici"
        ]
        assert not echoes


@pytest.mark.parametrize("stream_id", [1, 3, 0x7FFFFFFF])
def test_6_7_ping_on_a_stream(port: int, stream_id: int) -> None:
    """h2spec 6.7/3."""
    with RawH2(port) as conn:
        conn.handshake()
        conn.send(raw_frame(PING, 0, stream_id, b"\x00" * 8))
        conn.expect_connection_error(E.PROTOCOL_ERROR)


@pytest.mark.parametrize(("length", "flags"), [(0, 0), (6, 0), (9, 0), (7, ACK)])
def test_6_7_ping_bad_length(port: int, length: int, flags: int) -> None:
    """h2spec 6.7/4: PING is exactly 8 octets -> FRAME_SIZE_ERROR."""
    with RawH2(port) as conn:
        conn.handshake()
        conn.send(raw_frame(PING, flags, 0, b"\x00" * length))
        conn.expect_connection_error(E.FRAME_SIZE_ERROR)


# ---------------------------------------------------------------- 6.8 GOAWAY


def test_6_8_goaway_on_a_stream(port: int) -> None:
    """h2spec 6.8/1."""
    with RawH2(port) as conn:
        conn.handshake()
        conn.send(raw_frame(GOAWAY, 0, 1, b"\x00" * 8))
        conn.expect_connection_error(E.PROTOCOL_ERROR)


@pytest.mark.parametrize("length", [0, 7])
def test_6_8_goaway_too_short(port: int, length: int) -> None:
    with RawH2(port) as conn:
        conn.handshake()
        conn.send(raw_frame(GOAWAY, 0, 0, b"\x00" * length))
        conn.expect_connection_error(E.FRAME_SIZE_ERROR)


@pytest.mark.parametrize("debug", [b"", b"closing: debug data"])
def test_6_8_goaway_from_client(port: int, debug: bytes) -> None:
    """h2spec generic 3.8/1: the client says goodbye; the server closes, without error."""
    with RawH2(port) as conn:
        conn.handshake()
        conn.request(1)
        conn.expect_response(1)
        conn.send(GoAwayFrame(0, last_stream_id=0, error_code=0, additional_data=debug))
        conn.wait_closed()
        assert all(f.error_code == 0 for f in conn.goaways), conn.describe()


def test_6_8_goaway_from_client_with_a_request_in_flight(port: int) -> None:
    """The client's GOAWAY concerns streams *it* would accept (pushes): a request
    it already sent is still answered, or at worst cut without an error."""
    with RawH2(port) as conn:
        conn.handshake({0x4: 4})
        conn.request(1)
        conn.wait_for(lambda f: isinstance(f, DataFrame) and f.stream_id == 1, "DATA")
        conn.send(GoAwayFrame(0, last_stream_id=0, error_code=0))
        conn.send(PingFrame(0, opaque_data=b"ignored?"))
        conn.wait_closed()
        assert all(f.error_code == 0 for f in conn.goaways), conn.describe()


# ---------------------------------------------------------------- 6.9 WINDOW_UPDATE


@pytest.mark.parametrize("stream_id", [0, 1])
def test_6_9_window_update(port: int, stream_id: int) -> None:
    """h2spec generic 3.9/1-2."""
    with RawH2(port) as conn:
        conn.handshake()
        _open_echo(conn)
        conn.send(raw_frame(WINDOW_UPDATE, 0, stream_id, (1000).to_bytes(4, "big")))
        conn.send(DataFrame(1, b"x", flags=["END_STREAM"]))
        assert conn.expect_response(1).body == b"x"


def test_6_9_zero_increment_on_connection(port: int) -> None:
    """h2spec 6.9/1."""
    with RawH2(port) as conn:
        conn.handshake()
        conn.send(raw_frame(WINDOW_UPDATE, 0, 0, b"\x00" * 4))
        conn.expect_connection_error(E.PROTOCOL_ERROR)


def test_6_9_zero_increment_on_stream(port: int) -> None:
    """h2spec 6.9/2: a stream error (or connection error) of type PROTOCOL_ERROR."""
    with RawH2(port) as conn:
        conn.handshake()
        _open_echo(conn)
        conn.send(raw_frame(WINDOW_UPDATE, 0, 1, b"\x00" * 4))
        conn.expect_stream_error(1, E.PROTOCOL_ERROR)


@pytest.mark.parametrize(("stream_id", "length"), [(0, 3), (0, 5), (1, 3), (1, 5)])
def test_6_9_window_update_bad_length(port: int, stream_id: int, length: int) -> None:
    """h2spec 6.9/3: WINDOW_UPDATE is exactly 4 octets -> FRAME_SIZE_ERROR."""
    with RawH2(port) as conn:
        conn.handshake()
        _open_echo(conn)
        conn.send(raw_frame(WINDOW_UPDATE, 0, stream_id, b"\x00\x00\x00\x01\x00"[:length]))
        conn.expect_connection_error(E.FRAME_SIZE_ERROR)


def test_6_9_1_initial_window_of_one(port: int) -> None:
    """h2spec 6.9.1/1: INITIAL_WINDOW_SIZE 1 -> the first DATA frame carries 1 octet."""
    with RawH2(port) as conn:
        conn.handshake({0x4: 1})
        conn.request(1)
        conn.wait_for(lambda f: isinstance(f, DataFrame) and f.stream_id == 1, "DATA")
        assert conn.exchanges[1].data_frames == [1]
        conn.send(raw_frame(WINDOW_UPDATE, 0, 1, (100).to_bytes(4, "big")))
        assert conn.expect_response(1).body == HELLO


def test_6_9_1_connection_window_overflow(port: int) -> None:
    """h2spec 6.9.1/2: connection window beyond 2^31-1 -> FLOW_CONTROL_ERROR."""
    with RawH2(port) as conn:
        conn.handshake()
        increment = (2**31 - 1).to_bytes(4, "big")
        conn.send(
            raw_frame(WINDOW_UPDATE, 0, 0, increment), raw_frame(WINDOW_UPDATE, 0, 0, increment)
        )
        conn.expect_connection_error(E.FLOW_CONTROL_ERROR)


def test_6_9_1_stream_window_overflow(port: int) -> None:
    """h2spec 6.9.1/3: stream window beyond 2^31-1 -> FLOW_CONTROL_ERROR (stream error)."""
    with RawH2(port) as conn:
        conn.handshake({0x4: 0})
        conn.request(1)
        conn.wait_for(lambda f: isinstance(f, HeadersFrame) and f.stream_id == 1, "HEADERS")
        increment = (2**31 - 1).to_bytes(4, "big")
        conn.send(
            raw_frame(WINDOW_UPDATE, 0, 1, increment), raw_frame(WINDOW_UPDATE, 0, 1, increment)
        )
        conn.expect_stream_error(1, E.FLOW_CONTROL_ERROR)


def test_6_9_1_stream_window_overflow_is_a_stream_error(port: int) -> None:
    """h2spec 6.9.1/3 to the letter: the overflowing stream is reset with
    RST_STREAM FLOW_CONTROL_ERROR (RFC 9113 6.9.1 "for streams"), nothing
    ends the connection, and the next stream is served on it."""
    with RawH2(port) as conn:
        conn.handshake()
        conn.request(1, b"/echo", end_stream=False)
        increment = (2**31 - 1).to_bytes(4, "big")
        conn.send(
            raw_frame(WINDOW_UPDATE, 0, 1, increment), raw_frame(WINDOW_UPDATE, 0, 1, increment)
        )
        reset = conn.wait_for(lambda f: isinstance(f, (RstStreamFrame, GoAwayFrame)), "RST_STREAM")
        assert isinstance(reset, RstStreamFrame), conn.describe()
        assert (reset.stream_id, reset.error_code) == (1, E.FLOW_CONTROL_ERROR)
        assert conn.still_works(3).body == HELLO


def test_6_9_2_initial_window_change_after_headers(port: int) -> None:
    """h2spec 6.9.2/1: raising INITIAL_WINDOW_SIZE from 0 to 1 releases 1 octet."""
    with RawH2(port) as conn:
        conn.handshake({0x4: 0})
        conn.request(1)
        conn.wait_for(lambda f: isinstance(f, HeadersFrame) and f.stream_id == 1, "HEADERS")
        conn.send(SettingsFrame(0, settings={0x4: 1}))
        conn.wait_for(lambda f: isinstance(f, DataFrame) and f.stream_id == 1, "DATA")
        assert conn.exchanges[1].data_frames == [1]


def test_6_9_2_negative_window(port: int) -> None:
    """h2spec 6.9.2/2: a SETTINGS change can make a window negative; it is tracked.

    Window 5: 5 octets leave.  INITIAL_WINDOW_SIZE 2 makes it -3; +4 makes it
    1: exactly one more octet may leave, and the rest only after more credit.
    (A PING is sent only once the trigger's effect has been seen, so its ACK
    comes after any DATA the trigger released.)
    """
    with RawH2(port) as conn:
        conn.handshake({0x4: 5})
        conn.request(1)
        conn.wait_for(lambda f: conn.octets(1) >= 5, "5 octets")
        conn.send(SettingsFrame(0, settings={0x4: 2}))
        conn.wait_for(lambda f: isinstance(f, SettingsFrame) and "ACK" in f.flags, "ACK")
        conn.expect_ping_ack(conn.ping(b"settled!"))
        assert conn.octets(1) == 5, conn.describe()
        conn.send(raw_frame(WINDOW_UPDATE, 0, 1, (4).to_bytes(4, "big")))
        conn.wait_for(lambda f: isinstance(f, DataFrame) and f.stream_id == 1, "DATA")
        conn.expect_ping_ack(conn.ping(b"one more"))
        assert conn.octets(1) == 6, conn.describe()
        conn.send(raw_frame(WINDOW_UPDATE, 0, 1, (100).to_bytes(4, "big")))
        assert conn.expect_response(1).body == HELLO


def test_6_9_2_initial_window_change_overflows_a_stream(port: int) -> None:
    """A SETTINGS change that lifts an open stream's window past 2^31-1 -> FLOW_CONTROL_ERROR.

    The stream's window is opened to 2^31-1; the connection window (65535)
    keeps the response from finishing, so at most 65535 octets of it leave,
    and raising INITIAL_WINDOW_SIZE by more than that overflows the stream.
    """
    with RawH2(port) as conn:
        conn.handshake({0x4: 0})
        conn.request(1, b"/big?n=200000")
        conn.wait_for(lambda f: isinstance(f, HeadersFrame) and f.stream_id == 1, "HEADERS")
        conn.send(raw_frame(WINDOW_UPDATE, 0, 1, (2**31 - 1).to_bytes(4, "big")))
        conn.send(SettingsFrame(0, settings={0x4: 65536 + 10}))
        conn.expect_connection_error(E.FLOW_CONTROL_ERROR)


# ---------------------------------------------------------------- 6.10 CONTINUATION


@pytest.mark.parametrize("pieces", [2, 3, len(BLOCK)])
def test_6_10_continuation_frames(port: int, pieces: int) -> None:
    """h2spec generic 3.10/1-2, 6.10/1: a block split anywhere, even inside a literal."""
    size = -(-len(BLOCK) // pieces)
    chunks = [BLOCK[i : i + size] for i in range(0, len(BLOCK), size)]
    frames = [HeadersFrame(1, chunks[0], flags=["END_STREAM"])]
    frames += [ContinuationFrame(1, chunk) for chunk in chunks[1:]]
    frames[-1].flags.add("END_HEADERS")
    with RawH2(port) as conn:
        conn.handshake()
        conn.send(*frames)
        assert conn.expect_response(1).body == HELLO


def test_6_10_empty_continuation_frames(port: int) -> None:
    with RawH2(port) as conn:
        conn.handshake()
        conn.send(
            HeadersFrame(1, BLOCK, flags=["END_STREAM"]),
            ContinuationFrame(1, b""),
            ContinuationFrame(1, b"", flags=["END_HEADERS"]),
        )
        assert conn.expect_response(1).body == HELLO


def test_6_10_continuation_followed_by_other_frame(port: int) -> None:
    """h2spec 6.10/2."""
    with RawH2(port) as conn:
        conn.handshake()
        conn.send(
            HeadersFrame(1, BLOCK[:2], flags=["END_STREAM"]),
            ContinuationFrame(1, BLOCK[2:4]),
            DataFrame(1, b"test", flags=["END_STREAM"]),
        )
        conn.expect_connection_error(E.PROTOCOL_ERROR)


def test_6_10_continuation_on_stream_zero(port: int) -> None:
    """h2spec 6.10/3."""
    with RawH2(port) as conn:
        conn.handshake()
        conn.send(
            HeadersFrame(1, BLOCK[:2], flags=["END_STREAM"]),
            raw_frame(CONTINUATION, END_HEADERS, 0, BLOCK[2:]),
        )
        conn.expect_connection_error(E.PROTOCOL_ERROR)


def test_6_10_continuation_after_end_headers(port: int) -> None:
    """h2spec 6.10/4: HEADERS had END_HEADERS (stream still open)."""
    with RawH2(port) as conn:
        conn.handshake()
        conn.send(HeadersFrame(1, BLOCK, flags=["END_HEADERS"]), ContinuationFrame(1, BLOCK))
        conn.expect_connection_error(E.PROTOCOL_ERROR)


def test_6_10_continuation_after_continuation_with_end_headers(port: int) -> None:
    """h2spec 6.10/5."""
    with RawH2(port) as conn:
        conn.handshake()
        conn.send(
            HeadersFrame(1, BLOCK[:2]),
            ContinuationFrame(1, BLOCK[2:], flags=["END_HEADERS"]),
            ContinuationFrame(1, BLOCK, flags=["END_HEADERS"]),
        )
        conn.expect_connection_error(E.PROTOCOL_ERROR)


def test_6_10_continuation_after_data(port: int) -> None:
    """h2spec 6.10/6."""
    with RawH2(port) as conn:
        conn.handshake()
        _open_echo(conn)
        conn.send(DataFrame(1, b"test"), ContinuationFrame(1, BLOCK, flags=["END_HEADERS"]))
        conn.expect_connection_error(E.PROTOCOL_ERROR)


def test_6_10_continuation_on_another_stream(port: int) -> None:
    with RawH2(port) as conn:
        conn.handshake()
        conn.send(
            HeadersFrame(1, BLOCK[:2], flags=["END_STREAM"]),
            ContinuationFrame(3, BLOCK[2:], flags=["END_HEADERS"]),
        )
        conn.expect_connection_error(E.PROTOCOL_ERROR)


# ---------------------------------------------------------------- 7 error codes


@pytest.mark.parametrize("code", [0xFF, 0x7FFFFFFF])
def test_7_goaway_with_unknown_error_code(port: int, code: int) -> None:
    """h2spec 7/1: no special behaviour: a PING is answered or the connection just closes."""
    with RawH2(port) as conn:
        conn.handshake()
        conn.send(
            GoAwayFrame(0, last_stream_id=0, error_code=code), PingFrame(0, opaque_data=b"code????")
        )
        conn.wait_closed()
        assert all(f.error_code == 0 for f in conn.goaways), conn.describe()


@pytest.mark.parametrize("code", [0xFF, 0x7FFFFFFF])
def test_7_rst_stream_with_unknown_error_code(port: int, code: int) -> None:
    """h2spec 7/2: the stream is reset like any other; the connection goes on."""
    with RawH2(port) as conn:
        conn.handshake()
        _open_echo(conn)
        conn.send(RstStreamFrame(1, error_code=code))
        assert conn.still_works(3).body == HELLO
