"""RFC 9113 section 5.1 (stream states, identifiers, concurrency) and 5.3 (priority)."""

from __future__ import annotations

import pytest
from hyperframe.frame import (
    ContinuationFrame,
    DataFrame,
    Frame,
    HeadersFrame,
    PriorityFrame,
    RstStreamFrame,
    WindowUpdateFrame,
)

from .app import HELLO
from .driver import (
    END_HEADERS,
    END_STREAM,
    HEADERS,
    PRIORITY_FLAG,
    ErrorCodes,
    RawH2,
    encode,
    raw_frame,
    request_headers,
)

E = ErrorCodes
BLOCK = encode(request_headers())


def _frame(kind: str, stream_id: int) -> Frame | bytes:
    """One frame of ``kind`` for ``stream_id`` (a complete, valid request for HEADERS)."""
    if kind == "DATA":
        return DataFrame(stream_id, b"test", flags=["END_STREAM"])
    if kind == "HEADERS":
        return HeadersFrame(stream_id, BLOCK, flags=["END_STREAM", "END_HEADERS"])
    if kind == "CONTINUATION":
        return ContinuationFrame(stream_id, BLOCK, flags=["END_HEADERS"])
    if kind == "RST_STREAM":
        return RstStreamFrame(stream_id, error_code=E.CANCEL)
    if kind == "WINDOW_UPDATE":
        return WindowUpdateFrame(stream_id, window_increment=100)
    if kind == "PRIORITY":
        return PriorityFrame(stream_id, depends_on=0, stream_weight=15)
    raise AssertionError(kind)


# ---------------------------------------------------------------- 5.1 idle


@pytest.mark.parametrize("kind", ["DATA", "RST_STREAM", "WINDOW_UPDATE", "CONTINUATION"])
def test_5_1_idle_stream_frame_is_connection_error(port: int, kind: str) -> None:
    """h2spec 5.1/1-4 (and 6.4/2): only HEADERS and PRIORITY may be sent on an idle stream."""
    with RawH2(port) as conn:
        conn.handshake()
        conn.send(_frame(kind, 1))
        conn.expect_connection_error(E.PROTOCOL_ERROR)


@pytest.mark.parametrize("kind", ["DATA", "RST_STREAM", "WINDOW_UPDATE", "CONTINUATION"])
def test_5_1_idle_stream_frame_after_other_streams(port: int, kind: str) -> None:
    """The same, once the connection has streams: stream 5 is idle after 1 and 3."""
    with RawH2(port) as conn:
        conn.handshake()
        conn.request(1)
        conn.request(3)
        conn.expect_response(1)
        conn.expect_response(3)
        conn.send(_frame(kind, 5))
        conn.expect_connection_error(E.PROTOCOL_ERROR)


@pytest.mark.parametrize("kind", ["DATA", "RST_STREAM", "WINDOW_UPDATE"])
def test_5_1_idle_server_stream_frame_is_connection_error(port: int, kind: str) -> None:
    """Even streams are the server's; it never opened (pushed) stream 2."""
    with RawH2(port) as conn:
        conn.handshake()
        conn.request(1)
        conn.expect_response(1)
        conn.send(_frame(kind, 2))
        conn.expect_connection_error(E.PROTOCOL_ERROR)


def test_5_1_idle_stream_priority_is_allowed(port: int) -> None:
    """h2spec generic 2/1: PRIORITY on an idle stream, which can then still open."""
    with RawH2(port) as conn:
        conn.handshake()
        conn.send(_frame("PRIORITY", 1))
        conn.expect_ping_ack(conn.ping())
        conn.request(1)
        assert conn.expect_response(1).body == HELLO


# ---------------------------------------------------------------- 5.1 half-closed (remote)


def _half_closed(conn: RawH2) -> None:
    """Stream 1 half-closed (remote) on the server: a request whose response cannot finish."""
    conn.handshake({0x4: 0})  # INITIAL_WINDOW_SIZE 0: no response DATA can leave
    conn.request(1)
    conn.wait_for(lambda f: isinstance(f, HeadersFrame) and f.stream_id == 1, "response HEADERS")


@pytest.mark.parametrize("kind", ["DATA", "HEADERS"])
def test_5_1_half_closed_remote_rejects_frames(port: int, kind: str) -> None:
    """h2spec 5.1/5-6, 6.1/2: after END_STREAM, DATA or HEADERS -> STREAM_CLOSED."""
    with RawH2(port) as conn:
        _half_closed(conn)
        conn.send(_frame(kind, 1))
        conn.expect_stream_error(1, E.STREAM_CLOSED)


def test_5_1_half_closed_remote_continuation(port: int) -> None:
    """h2spec 5.1/7: a CONTINUATION with no open field block is a PROTOCOL_ERROR too."""
    with RawH2(port) as conn:
        _half_closed(conn)
        conn.send(_frame("CONTINUATION", 1))
        conn.expect_stream_error(1, E.STREAM_CLOSED, E.PROTOCOL_ERROR)


@pytest.mark.parametrize("kind", ["WINDOW_UPDATE", "PRIORITY", "RST_STREAM"])
def test_5_1_half_closed_remote_allows(port: int, kind: str) -> None:
    """h2spec generic 2/2-4: WINDOW_UPDATE, PRIORITY and RST_STREAM stay legal."""
    with RawH2(port) as conn:
        _half_closed(conn)
        conn.send(_frame(kind, 1))
        conn.expect_ping_ack(conn.ping())
        if kind == "WINDOW_UPDATE":
            assert conn.expect_response(1).body == HELLO


# ---------------------------------------------------------------- 5.1 closed


def _reset_by_client(conn: RawH2) -> None:
    conn.handshake()
    conn.send(conn.headers(1, request_headers(b"/echo", b"POST"), end_stream=False))
    conn.send(RstStreamFrame(1, error_code=E.CANCEL))


@pytest.mark.parametrize("kind", ["DATA", "HEADERS", "WINDOW_UPDATE"])
def test_5_1_closed_after_rst_stream(port: int, kind: str) -> None:
    """h2spec 5.1/8-9: frames other than PRIORITY after the client's own
    RST_STREAM -> stream error STREAM_CLOSED."""
    with RawH2(port) as conn:
        _reset_by_client(conn)
        conn.send(_frame(kind, 1))
        conn.expect_stream_error(1, E.STREAM_CLOSED)


def test_5_1_closed_after_rst_stream_continuation(port: int) -> None:
    """h2spec 5.1/10."""
    with RawH2(port) as conn:
        _reset_by_client(conn)
        conn.send(_frame("CONTINUATION", 1))
        conn.expect_stream_error(1, E.STREAM_CLOSED, E.PROTOCOL_ERROR)


def test_5_1_closed_after_rst_stream_priority_is_allowed(port: int) -> None:
    with RawH2(port) as conn:
        _reset_by_client(conn)
        conn.send(_frame("PRIORITY", 1))
        assert conn.still_works(3).body == HELLO


def _closed(conn: RawH2) -> None:
    conn.handshake()
    conn.request(1)
    conn.expect_response(1)


@pytest.mark.parametrize("kind", ["DATA", "HEADERS"])
def test_5_1_closed_stream_rejects_frames(port: int, kind: str) -> None:
    """h2spec 5.1/11-12: frames after END_STREAM (stream closed both ways) are a
    *connection* error of type STREAM_CLOSED (RFC 9113 5.1, "closed")."""
    with RawH2(port) as conn:
        _closed(conn)
        conn.send(_frame(kind, 1))
        conn.expect_connection_error(E.STREAM_CLOSED)


def test_5_1_closed_stream_continuation(port: int) -> None:
    """h2spec 5.1/13: STREAM_CLOSED (5.1) or PROTOCOL_ERROR (6.10), on the connection."""
    with RawH2(port) as conn:
        _closed(conn)
        conn.send(_frame("CONTINUATION", 1))
        conn.expect_connection_error(E.STREAM_CLOSED, E.PROTOCOL_ERROR)


@pytest.mark.parametrize("kind", ["PRIORITY", "WINDOW_UPDATE", "RST_STREAM"])
def test_5_1_closed_stream_allows(port: int, kind: str) -> None:
    """h2spec generic 2/5; 5.1: WINDOW_UPDATE/RST_STREAM just after END_STREAM are ignored."""
    with RawH2(port) as conn:
        _closed(conn)
        conn.send(_frame(kind, 1))
        assert conn.still_works(3).body == HELLO


# ---------------------------------------------------------------- 5.1.1 stream identifiers


def test_5_1_1_even_stream_id(port: int) -> None:
    """h2spec 5.1.1/1: a client may only open odd-numbered streams."""
    with RawH2(port) as conn:
        conn.handshake()
        conn.send(_frame("HEADERS", 2))
        conn.expect_connection_error(E.PROTOCOL_ERROR)


def test_5_1_1_decreasing_stream_id(port: int) -> None:
    """h2spec 5.1.1/2: stream 3 after stream 5 -> PROTOCOL_ERROR."""
    with RawH2(port) as conn:
        conn.handshake()
        conn.request(5)
        conn.expect_response(5)
        conn.send(_frame("HEADERS", 3))
        conn.expect_connection_error(E.PROTOCOL_ERROR)


def test_5_1_1_implicitly_closed_stream(port: int) -> None:
    """Opening stream 7 closes idle streams 1-5; HEADERS on 3 is then a PROTOCOL_ERROR."""
    with RawH2(port) as conn:
        conn.handshake()
        conn.request(7)
        conn.expect_response(7)
        conn.send(_frame("HEADERS", 3))
        conn.expect_connection_error(E.PROTOCOL_ERROR)


def test_5_1_1_stream_ids_may_skip(port: int) -> None:
    with RawH2(port) as conn:
        conn.handshake()
        conn.request(1)
        conn.request(11)
        conn.request(101)
        for stream_id in (1, 11, 101):
            assert conn.expect_response(stream_id).body == HELLO


def test_5_1_1_reserved_bit_does_not_change_the_id(port: int) -> None:
    """Stream 1 | R is stream 1: reusing it after it closed is STREAM_CLOSED."""
    with RawH2(port) as conn:
        _closed(conn)
        conn.send(raw_frame(HEADERS, END_STREAM | END_HEADERS, 1 | 1 << 31, BLOCK))
        conn.expect_connection_error(E.STREAM_CLOSED)


# ---------------------------------------------------------------- 5.1.2 concurrency


def test_5_1_2_max_concurrent_streams_is_advertised(port: int) -> None:
    with RawH2(port) as conn:
        conn.handshake()
        assert conn.server_settings.get(0x3) == 100


def test_5_1_2_streams_up_to_the_limit_are_served(port: int) -> None:
    """All 100 advertised streams open at once get their response HEADERS."""
    with RawH2(port) as conn:
        conn.handshake({0x4: 0})  # responses cannot finish: all streams stay open
        conn.send(*(_frame("HEADERS", 1 + 2 * i) for i in range(100)))
        for i in range(100):
            sid = 1 + 2 * i
            conn.wait_for(
                lambda f, sid=sid: isinstance(f, HeadersFrame) and f.stream_id == sid,
                f"HEADERS on {sid}",
            )
        conn.expect_ping_ack(conn.ping())


def test_5_1_2_exceeding_max_concurrent_streams(port: int) -> None:
    """h2spec 5.1.2/1: stream 101 of 101 open -> REFUSED_STREAM or PROTOCOL_ERROR."""
    with RawH2(port) as conn:
        conn.handshake({0x4: 0})
        conn.send(*(_frame("HEADERS", 1 + 2 * i) for i in range(101)))
        conn.expect_stream_error(201, E.REFUSED_STREAM, E.PROTOCOL_ERROR, no_response=True)


# ---------------------------------------------------------------- 5.3 priority


def _priority_payload(depends_on: int, weight: int, exclusive: bool = False) -> bytes:
    return (depends_on | (1 << 31 if exclusive else 0)).to_bytes(4, "big") + bytes([weight])


def test_5_3_1_headers_depending_on_itself(port: int) -> None:
    """h2spec 5.3.1/1."""
    with RawH2(port) as conn:
        conn.handshake()
        payload = _priority_payload(1, 15) + BLOCK
        conn.send(raw_frame(HEADERS, END_STREAM | END_HEADERS | PRIORITY_FLAG, 1, payload))
        conn.expect_stream_error(1, E.PROTOCOL_ERROR)


@pytest.mark.parametrize("state", ["idle", "open", "closed"])
def test_5_3_1_priority_depending_on_itself(port: int, state: str) -> None:
    """h2spec 5.3.1/2: a stream cannot depend on itself, whatever its state."""
    with RawH2(port) as conn:
        conn.handshake()
        if state == "open":
            conn.send(conn.headers(1, request_headers(b"/echo", b"POST"), end_stream=False))
        elif state == "closed":
            conn.request(1)
            conn.expect_response(1)
        conn.send(PriorityFrame(1, depends_on=1, stream_weight=15))
        conn.expect_stream_error(1, E.PROTOCOL_ERROR)


@pytest.mark.parametrize(
    ("depends_on", "weight", "exclusive"),
    [(0, 0, False), (0, 255, False), (1, 15, False), (1, 15, True), (0x7FFFFFFF, 7, False)],
    ids=["weight-1", "weight-256", "dependency", "exclusive", "unknown-parent"],
)
def test_5_3_priority_frames_are_accepted(
    port: int, depends_on: int, weight: int, exclusive: bool
) -> None:
    """h2spec generic 3.3/1-4: priority signals are advisory and never an error."""
    with RawH2(port) as conn:
        conn.handshake()
        conn.send(conn.headers(1, request_headers(b"/echo", b"POST"), end_stream=False))
        conn.send(
            PriorityFrame(3, depends_on=depends_on, stream_weight=weight, exclusive=exclusive)
        )
        conn.request(3)
        conn.send(DataFrame(1, b"one", flags=["END_STREAM"]))
        assert conn.expect_response(1).body == b"one"
        assert conn.expect_response(3).body == HELLO


def test_5_3_priority_on_idle_stream_then_lower_stream(port: int) -> None:
    """h2spec generic 3.3/5: PRIORITY for idle stream 5, then HEADERS on stream 3."""
    with RawH2(port) as conn:
        conn.handshake()
        conn.send(PriorityFrame(5, depends_on=0, stream_weight=15))
        conn.request(3)
        assert conn.expect_response(3).body == HELLO


def test_5_3_headers_with_priority(port: int) -> None:
    """h2spec generic 3.2/3."""
    with RawH2(port) as conn:
        conn.handshake()
        payload = _priority_payload(0, 255, exclusive=True) + BLOCK
        conn.send(raw_frame(HEADERS, END_STREAM | END_HEADERS | PRIORITY_FLAG, 1, payload))
        assert conn.expect_response(1).body == HELLO
