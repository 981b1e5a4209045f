"""Every way an ASGI app can misbehave, and proof that the server keeps serving.

One server runs a dispatcher app for the whole module; each test hits one
misbehaving path and then checks a good request still succeeds.  Errors the
server logs are captured from the ``asgiri.error`` logger.
"""

from __future__ import annotations

import asyncio
import builtins
import logging
import queue
import socket
import sys
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest

from asgiri.asgi.types import is_cancellation

from .servers import ThreadServer, serve

TIMEOUT = 10.0

# --------------------------------------------------------------------------- the app

events: queue.Queue[Any] = queue.Queue()


async def start(send: Any, status: Any = 200, headers: Any = None) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [(b"content-type", b"text/plain")] if headers is None else headers,
        }
    )


async def body(send: Any, data: bytes, more: bool = False) -> None:
    await send({"type": "http.response.body", "body": data, "more_body": more})


async def raise_before_start(send: Any) -> None:
    raise RuntimeError("boom before start")


async def raise_after_start(send: Any) -> None:
    await start(send)
    await body(send, b"first", more=True)
    await asyncio.sleep(0.01)
    await body(send, b"second", more=True)
    raise RuntimeError("boom mid-stream")


async def raise_right_after_start(send: Any) -> None:
    await start(send)
    raise RuntimeError("boom after start, before any body")


async def return_without_response(send: Any) -> None:
    return


async def return_after_partial_body(send: Any) -> None:
    await start(send)
    await body(send, b"partial", more=True)


async def return_after_start_204(send: Any) -> None:
    await start(send, 204, [])


async def unknown_type(send: Any) -> None:
    await send({"type": "http.response.bogus", "status": 200})


async def missing_type(send: Any) -> None:
    await send({"status": 200})


async def str_headers(send: Any) -> None:
    await start(send, 200, [("content-type", "text/plain")])
    await body(send, b"never")


async def status_not_int(send: Any) -> None:
    await start(send, "200")
    await body(send, b"never")


async def status_out_of_range(send: Any) -> None:
    await start(send, 99)
    await body(send, b"never")


async def body_before_start(send: Any) -> None:
    await body(send, b"too early")


async def body_after_final(send: Any) -> None:
    await start(send)
    await body(send, b"complete")
    await body(send, b"extra")


async def double_start(send: Any) -> None:
    await start(send)
    await start(send, 201)
    await body(send, b"never")


async def crlf_header(send: Any) -> None:
    await start(send, 200, [(b"x-good", b"1"), (b"x-evil", b"ok\r\nx-injected: yes")])
    await body(send, b"never")


async def crlf_header_flushed(send: Any) -> None:
    await start(send, 200, [(b"x-evil", b"ok\r\nx-injected: yes")])
    await asyncio.sleep(0.01)  # the server tries to write the head meanwhile
    await body(send, b"never")


async def bad_header_name(send: Any) -> None:
    await start(send, 200, [(b"x bad:name", b"1")])
    await body(send, b"never")


async def length_long(send: Any) -> None:
    await start(send, 200, [(b"content-length", b"10")])
    await body(send, b"x" * 20)


async def length_short(send: Any) -> None:
    await start(send, 200, [(b"content-length", b"10")])
    await body(send, b"y" * 5)


async def length_long_streamed(send: Any) -> None:
    await start(send, 200, [(b"content-length", b"10")])
    await body(send, b"a" * 6, more=True)
    await asyncio.sleep(0.01)
    await body(send, b"b" * 14, more=True)
    await body(send, b"")


async def length_short_streamed(send: Any) -> None:
    await start(send, 200, [(b"content-length", b"10")])
    await body(send, b"c" * 5, more=True)
    await asyncio.sleep(0.01)
    await body(send, b"")


async def bad_trailer(send: Any) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [(b"trailer", b"x-checksum")],
            "trailers": True,
        }
    )
    await body(send, b"hello")
    await send(
        {"type": "http.response.trailers", "headers": [(b"x-checksum", b"a\r\nx-injected: 1")]}
    )


async def raise_after_complete(send: Any) -> None:
    await start(send)
    await body(send, b"delivered")
    raise RuntimeError("boom after the response")


BEHAVIOURS: dict[str, Callable[[Any], Any]] = {
    f.__name__: f
    for f in (
        raise_before_start,
        raise_after_start,
        raise_right_after_start,
        return_without_response,
        return_after_partial_body,
        return_after_start_204,
        unknown_type,
        missing_type,
        str_headers,
        status_not_int,
        status_out_of_range,
        body_before_start,
        body_after_final,
        double_start,
        crlf_header,
        crlf_header_flushed,
        bad_header_name,
        length_long,
        length_short,
        length_long_streamed,
        length_short_streamed,
        raise_after_complete,
        bad_trailer,
    )
}


async def send_after_disconnect(receive: Any, send: Any) -> None:
    """Streams on after the client left; records what its sends did."""
    outcome = "no error"
    try:
        await start(send)
        await body(send, b"tick", more=True)
        events.put("streaming")
        while (await receive())["type"] != "http.disconnect":
            pass
        for _ in range(50):
            try:
                await body(send, b"tick" * 1024, more=True)
            except OSError as exc:  # ASGI 2.4: a server-specific OSError subclass
                outcome = f"OSError {type(exc).__name__}"
                return
        await body(send, b"")
    except BaseException as exc:
        outcome = f"unexpected {exc!r}"
        raise
    finally:
        events.put(("finally", outcome))


async def app(scope: Any, receive: Any, send: Any) -> None:
    if scope["type"] != "http":
        return
    name = scope["path"].strip("/")
    if name == "ok":
        await start(send)
        await body(send, b"ok")
    elif name == "send_after_disconnect":
        await send_after_disconnect(receive, send)
    else:
        await BEHAVIOURS[name](send)


# --------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def server() -> Iterator[ThreadServer]:
    with serve(app) as srv:
        yield srv


class LogRecords(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []
        self.guard = threading.Lock()

    def emit(self, record: logging.LogRecord) -> None:
        with self.guard:
            self.records.append(record)

    def messages(self) -> list[str]:
        with self.guard:
            return [r.getMessage() for r in self.records]

    def wait_for(self, *fragments: str, timeout: float = TIMEOUT) -> str:
        """The first ERROR message containing every fragment (polled, not slept)."""
        deadline = time.monotonic() + timeout
        while True:
            with self.guard:
                for record in self.records:
                    message = record.getMessage()
                    if record.levelno >= logging.ERROR and all(f in message for f in fragments):
                        return message
            if time.monotonic() > deadline:
                raise AssertionError(f"no error log with {fragments}: {self.messages()}")
            time.sleep(0.01)


@pytest.fixture
def error_log() -> Iterator[LogRecords]:
    handler = LogRecords()
    logger = logging.getLogger("asgiri.error")
    logger.addHandler(handler)
    try:
        yield handler
    finally:
        logger.removeHandler(handler)


def exchange(port: int, path: str, method: str = "GET") -> tuple[bytes, bool]:
    """Send one request; return everything received and whether the server closed."""
    with socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT) as sock:
        sock.sendall(f"{method} /{path} HTTP/1.1\r\nHost: test\r\n\r\n".encode())
        data = b""
        while True:
            try:
                chunk = sock.recv(65536)
            except TimeoutError:
                return data, False
            if not chunk:
                return data, True
            data += chunk


def assert_still_serving(server: ThreadServer) -> None:
    with httpx.Client(base_url=server.url, timeout=TIMEOUT) as client:
        for _ in range(2):
            response = client.get("/ok")
            assert (response.status_code, response.text) == (200, "ok")


def assert_500(raw: bytes, closed: bool) -> None:
    assert closed, "a 500 in place of the app's response closes the connection"
    head, _, content = raw.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 500 Internal Server Error\r\n")
    assert b"\r\ncontent-length: 21" in head.lower()
    assert head.lower().count(b"\r\nconnection: close") == 1
    assert content == b"Internal Server Error"


# --------------------------------------------------------------------------- tests


def test_raise_before_start_is_500(server: ThreadServer, error_log: LogRecords) -> None:
    raw, closed = exchange(server.port, "raise_before_start")
    assert_500(raw, closed)
    record = next(r for r in error_log.records if r.levelno >= logging.ERROR)
    assert record.getMessage() == "Exception in ASGI application"
    assert record.exc_info is not None and "boom before start" in str(record.exc_info[1])
    assert_still_serving(server)


def test_raise_mid_stream_aborts_chunked_body(server: ThreadServer, error_log: LogRecords) -> None:
    raw, closed = exchange(server.port, "raise_after_start")
    assert closed
    head, _, content = raw.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 ")
    assert b"transfer-encoding: chunked" in head.lower()
    assert content == b"5\r\nfirst\r\n6\r\nsecond\r\n"
    assert not content.endswith(b"0\r\n\r\n")
    error_log.wait_for("Exception in ASGI application")
    assert_still_serving(server)


def test_raise_mid_stream_httpx_sees_an_error(server: ThreadServer) -> None:
    with pytest.raises(httpx.RemoteProtocolError):
        httpx.get(f"{server.url}/raise_after_start", timeout=TIMEOUT)
    assert_still_serving(server)


def test_raise_right_after_start_is_500(server: ThreadServer, error_log: LogRecords) -> None:
    """The head was accepted but not written yet: a 500 can still replace it."""
    raw, closed = exchange(server.port, "raise_right_after_start")
    assert_500(raw, closed)
    error_log.wait_for("Exception in ASGI application")
    assert_still_serving(server)


def test_return_without_response_is_500(server: ThreadServer, error_log: LogRecords) -> None:
    raw, closed = exchange(server.port, "return_without_response")
    assert_500(raw, closed)
    error_log.wait_for("returned without starting a response")
    assert_still_serving(server)


def test_return_after_partial_body_closes(server: ThreadServer, error_log: LogRecords) -> None:
    raw, closed = exchange(server.port, "return_after_partial_body")
    assert closed
    head, _, content = raw.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 ")
    assert content == b"7\r\npartial\r\n"
    error_log.wait_for("returned without completing the response")
    assert_still_serving(server)


def test_return_after_bodyless_start_still_sends_head(server: ThreadServer) -> None:
    """A 204 whose body message never came: the head is whole, then the connection closes."""
    raw, closed = exchange(server.port, "return_after_start_204")
    assert closed
    assert raw.startswith(b"HTTP/1.1 204 No Content\r\n")
    assert raw.endswith(b"\r\n\r\n")
    assert_still_serving(server)


@pytest.mark.parametrize(
    ("path", "fragments"),
    [
        ("unknown_type", ("invalid message", "http.response.bogus")),
        ("missing_type", ("invalid message", "without a type")),
        ("str_headers", ("invalid message", "bytes", "content-type")),
        ("status_not_int", ("invalid message", "status", "'200'")),
        ("status_out_of_range", ("invalid message", "status", "99")),
        ("body_before_start", ("invalid message", "http.response.body", "start")),
        ("double_start", ("invalid message", "http.response.start")),
        ("crlf_header", ("invalid message", "x-injected")),
        ("crlf_header_flushed", ("invalid message", "x-injected")),
        ("bad_header_name", ("invalid message", "x bad:name")),
        ("length_long", ("invalid message", "Content-Length")),
        ("length_short", ("invalid message", "Content-Length")),
    ],
)
def test_invalid_message_before_anything_sent_is_500(
    server: ThreadServer, error_log: LogRecords, path: str, fragments: tuple[str, ...]
) -> None:
    raw, closed = exchange(server.port, path)
    assert_500(raw, closed)
    assert b"never" not in raw
    assert b"x-injected" not in raw.lower()
    assert b"xxxxxxxxxx" not in raw and b"yyyyy" not in raw
    error_log.wait_for(*fragments)
    assert_still_serving(server)


def test_body_after_final_body(server: ThreadServer, error_log: LogRecords) -> None:
    with socket.create_connection(("127.0.0.1", server.port), timeout=TIMEOUT) as sock:
        sock.sendall(b"GET /body_after_final HTTP/1.1\r\nHost: test\r\n\r\n")
        data = b""
        while not data.endswith(b"complete"):
            chunk = sock.recv(65536)
            assert chunk, f"closed early: {data!r}"
            data += chunk
        assert data.startswith(b"HTTP/1.1 200 ")
        assert b"\r\ncontent-length: 8\r\n" in data
        error_log.wait_for("invalid message", "http.response.body", "done")
        # The response was complete: the keep-alive connection stays usable
        # and the extra body never reaches the wire.
        sock.sendall(b"GET /ok HTTP/1.1\r\nHost: test\r\n\r\n")
        rest = b""
        while not rest.endswith(b"ok"):
            chunk = sock.recv(65536)
            assert chunk, f"closed early: {rest!r}"
            rest += chunk
    assert b"extra" not in rest
    assert rest.startswith(b"HTTP/1.1 200 ")


def test_raise_after_complete_response(server: ThreadServer, error_log: LogRecords) -> None:
    with httpx.Client(base_url=server.url, timeout=TIMEOUT) as client:
        response = client.get("/raise_after_complete")
        assert (response.status_code, response.text) == (200, "delivered")
        error_log.wait_for("Exception in ASGI application")
        assert client.get("/ok").text == "ok"


def test_streamed_body_longer_than_content_length(
    server: ThreadServer, error_log: LogRecords
) -> None:
    raw, closed = exchange(server.port, "length_long_streamed")
    assert closed
    head, _, content = raw.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 ")
    assert b"\r\ncontent-length: 10" in head
    assert content == b"aaaaaa"  # not one byte past the declared length
    error_log.wait_for("invalid message", "longer than its Content-Length")
    assert_still_serving(server)


def test_streamed_body_shorter_than_content_length(
    server: ThreadServer, error_log: LogRecords
) -> None:
    raw, closed = exchange(server.port, "length_short_streamed")
    assert closed, "a short body must end with a close, or the client waits forever"
    head, _, content = raw.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 ")
    assert content == b"ccccc"
    error_log.wait_for("invalid message", "shorter than its Content-Length")
    assert_still_serving(server)


def test_head_request_with_error_has_no_body(server: ThreadServer) -> None:
    raw, closed = exchange(server.port, "raise_before_start", method="HEAD")
    assert closed
    assert raw.startswith(b"HTTP/1.1 500 ")
    assert raw.endswith(b"\r\n\r\n")
    assert_still_serving(server)


def test_send_after_client_disconnect(server: ThreadServer) -> None:
    while not events.empty():
        events.get_nowait()
    with socket.create_connection(("127.0.0.1", server.port), timeout=TIMEOUT) as sock:
        sock.sendall(b"GET /send_after_disconnect HTTP/1.1\r\nHost: test\r\n\r\n")
        assert sock.recv(65536).startswith(b"HTTP/1.1 200 ")
        assert events.get(timeout=TIMEOUT) == "streaming"
    tag, outcome = events.get(timeout=TIMEOUT)
    assert tag == "finally"
    # The scope says spec 2.4, which asks send() on a closed connection to
    # raise an OSError subclass (frameworks rely on it to stop streaming).
    assert outcome == "OSError ClientDisconnected", outcome
    assert_still_serving(server)


def test_many_failures_do_not_leak_requests() -> None:
    """After a burst of failing requests the server still shuts down cleanly."""
    with serve(app) as srv:
        for name in ("raise_before_start", "raise_after_start", "double_start", "length_short"):
            for _ in range(5):
                exchange(srv.port, name)
        assert_still_serving(srv)
        ctx = srv.server._ctx
        assert ctx is not None
        deadline = time.monotonic() + TIMEOUT
        while ctx.active_requests and time.monotonic() < deadline:
            time.sleep(0.01)
        assert ctx.active_requests == 0
        assert not ctx.tasks


def test_invalid_trailers_abort_the_response(server: ThreadServer, error_log: LogRecords) -> None:
    """Trailers that cannot be written leave the body unterminated and close the connection."""
    with socket.create_connection(("127.0.0.1", server.port), timeout=TIMEOUT) as sock:
        sock.sendall(b"GET /bad_trailer HTTP/1.1\r\nHost: test\r\nTE: trailers\r\n\r\n")
        raw = b""
        while chunk := sock.recv(65536):
            raw += chunk
    head, _, content = raw.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 ")
    assert content == b"5\r\nhello\r\n"
    assert b"x-injected" not in raw
    error_log.wait_for("invalid message", "invalid header value")
    assert_still_serving(server)


def test_a_cancelled_app_is_told_apart_from_a_failing_one_by_kind() -> None:
    # The ASGI layer logs a cancelled app at debug level and a failing one as an error.
    assert is_cancellation(asyncio.CancelledError())
    for failure in (ValueError("x"), KeyboardInterrupt(), SystemExit(1), GeneratorExit()):
        assert not is_cancellation(failure)
    if sys.version_info >= (3, 11):  # a task group cancelled as a whole
        group = builtins.BaseExceptionGroup
        cancelled = [asyncio.CancelledError(), asyncio.CancelledError()]
        assert is_cancellation(group("task group", cancelled))
        assert not is_cancellation(group("task group", [asyncio.CancelledError(), ValueError()]))
