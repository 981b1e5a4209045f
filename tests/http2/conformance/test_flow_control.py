"""RFC 9113 5.2 / 6.9: the server's *receive* windows (a server with a 16-octet window).

The other modules check how the server obeys the client's windows; here the
client must obey the server's, and overrunning them is a FLOW_CONTROL_ERROR.
"""

from __future__ import annotations

from hyperframe.frame import DataFrame, WindowUpdateFrame

from .driver import ErrorCodes, RawH2, request_headers

E = ErrorCodes
WINDOW = 16
SERVER_OPTIONS = {"h2_initial_window_size": WINDOW}
POST_ECHO = request_headers(b"/echo", b"POST")


def test_window_is_advertised(port: int) -> None:
    with RawH2(port) as conn:
        conn.handshake()
        assert conn.server_settings.get(0x4) == WINDOW


def test_data_filling_the_window_exactly(port: int) -> None:
    with RawH2(port) as conn:
        conn.handshake()
        conn.send(conn.headers(1, POST_ECHO, end_stream=False))
        conn.send(DataFrame(1, b"w" * WINDOW, flags=["END_STREAM"]))
        assert conn.expect_response(1).body == b"w" * WINDOW


def test_data_beyond_the_stream_window(port: int) -> None:
    """RFC 9113 6.9.1: a sender MUST NOT exceed the window; the receiver answers
    FLOW_CONTROL_ERROR (a stream error here; a connection error is allowed)."""
    with RawH2(port) as conn:
        conn.handshake()
        conn.send(conn.headers(1, POST_ECHO, end_stream=False))
        conn.send(DataFrame(1, b"w" * (WINDOW + 1), flags=["END_STREAM"]))
        conn.expect_stream_error(1, E.FLOW_CONTROL_ERROR)


def test_padding_counts_against_the_window(port: int) -> None:
    """RFC 9113 6.1: the whole DATA payload, padding included, is flow-controlled."""
    with RawH2(port) as conn:
        conn.handshake()
        conn.send(conn.headers(1, POST_ECHO, end_stream=False))
        conn.send(DataFrame(1, b"w" * 8, pad_length=8, flags=["END_STREAM", "PADDED"]))
        conn.expect_stream_error(1, E.FLOW_CONTROL_ERROR)


def test_upload_paced_by_window_updates(port: int) -> None:
    """A body far larger than the window gets through as the server grants credit."""
    body = bytes(range(256)) * 8
    with RawH2(port) as conn:
        conn.handshake()
        conn.send(conn.headers(1, POST_ECHO, end_stream=False))
        stream_window, conn_window = WINDOW, 65535
        sent = 0
        while sent < len(body):
            size = min(stream_window, conn_window, len(body) - sent)
            if size:
                last = sent + size == len(body)
                conn.send(
                    DataFrame(1, body[sent : sent + size], flags=["END_STREAM"] if last else [])
                )
                sent += size
                stream_window -= size
                conn_window -= size
                continue
            update = conn.wait_for(lambda f: isinstance(f, WindowUpdateFrame), "WINDOW_UPDATE")
            assert isinstance(update, WindowUpdateFrame)
            if update.stream_id == 1:
                stream_window += update.window_increment
            elif update.stream_id == 0:
                conn_window += update.window_increment
        assert conn.expect_response(1).body == body
