"""Malformed, oversized and smuggling HTTP/1.1 input against a real asgiri server.

Each bad request must get its exact status, then the connection must close
with nothing more on the wire; a request pipelined behind it (the "smuggled"
one) must never be answered; and the server must go on serving new
connections.  Request-smuggling vectors follow RFC 9112 section 6.3.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import threading
from collections.abc import Iterator
from typing import Any

import pytest

from . import apps
from .servers import serve
from .test_h1_protocol import RawClient, app, exchange, get

SMUGGLED = b"GET /path?smuggled HTTP/1.1\r\nHost: test\r\n\r\n"


@pytest.fixture(scope="module")
def server() -> Iterator[Any]:
    with serve(app) as srv:
        yield srv


def assert_still_serving(port: int) -> None:
    response = exchange(port, get("/path?alive"))
    assert response.status == 200
    assert response.body == b"/path?alive"


def assert_rejected(port: int, data: bytes, status: int) -> None:
    """``data`` gets exactly one response, ``status``, then the connection closes."""
    with RawClient(port) as client:
        client.send(data)
        response = client.read_response()
        assert response.status == status, response
        assert response.get(b"connection") == b"close"
        # Nothing else: in particular no answer to a request smuggled behind.
        client.assert_closed()
    assert_still_serving(port)


# ---------------------------------------------------------------- malformed requests (400)

MALFORMED = {
    "request line garbage": b"GARBAGE\r\n\r\n",
    "request line extra token": b"GET / HTTP/1.1 extra\r\nHost: test\r\n\r\n",
    "request line lower-case version": b"GET / http/1.1\r\nHost: test\r\n\r\n",
    "request line space in target": b"GET /a b HTTP/1.1\r\nHost: test\r\n\r\n",
    "request line control byte in target": b"GET /a\x01b HTTP/1.1\r\nHost: test\r\n\r\n",
    "request line bad method byte": b"G(T / HTTP/1.1\r\nHost: test\r\n\r\n",
    "request line bad version": b"GET / HTTP/1.x\r\nHost: test\r\n\r\n",
    "header name with (": b"GET / HTTP/1.1\r\nHost: test\r\nX(y): 1\r\n\r\n",
    "header name with control byte": b"GET / HTTP/1.1\r\nHost: test\r\nX\x01Y: 1\r\n\r\n",
    "header name with tab": b"GET / HTTP/1.1\r\nHost: test\r\nX\tY: 1\r\n\r\n",
    "header name non-ascii": b"GET / HTTP/1.1\r\nHost: test\r\nX\xffY: 1\r\n\r\n",
    "header name empty": b"GET / HTTP/1.1\r\nHost: test\r\n: 1\r\n\r\n",
    "header without colon": b"GET / HTTP/1.1\r\nHost: test\r\nNoColon\r\n\r\n",
    "header space before colon": b"GET / HTTP/1.1\r\nHost : test\r\n\r\n",
    "header value \\x01": b"GET / HTTP/1.1\r\nHost: test\r\nX: a\x01b\r\n\r\n",
    "header value NUL": b"GET / HTTP/1.1\r\nHost: test\r\nX: a\x00b\r\n\r\n",
    "header value DEL": b"GET / HTTP/1.1\r\nHost: test\r\nX: a\x7fb\r\n\r\n",
    "obs-fold": b"GET / HTTP/1.1\r\nHost: test\r\nX: a\r\n b\r\n\r\n",
    "obs-fold with tab": b"GET / HTTP/1.1\r\nHost: test\r\nX: a\r\n\tb\r\n\r\n",
    "whitespace before first header": b"GET / HTTP/1.1\r\n Host: test\r\n\r\n",
    "bare LF everywhere": b"GET / HTTP/1.1\nHost: test\n\n",
    "bare LF after request line": b"GET / HTTP/1.1\nHost: test\r\n\r\n",
    "bare LF after header": b"GET / HTTP/1.1\r\nHost: test\nX: y\r\n\r\n",
    "bare CR": b"GET / HTTP/1.1\r\nHost: test\rX: y\r\n\r\n",
    "missing Host on HTTP/1.1": b"GET / HTTP/1.1\r\nX: y\r\n\r\n",
    "duplicate Host": b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
    "duplicate Host same value": b"GET / HTTP/1.1\r\nHost: a\r\nHost: a\r\n\r\n",
}


@pytest.mark.parametrize("data", MALFORMED.values(), ids=MALFORMED.keys())
def test_malformed_request_gets_400(server: Any, data: bytes) -> None:
    assert_rejected(server.port, data + SMUGGLED, 400)


@pytest.mark.parametrize(
    "data",
    [b"GET / HTTP/2.0\r\nHost: test\r\n\r\n", b"GET /\r\n\r\n"],
    ids=["HTTP/2.0 request line", "HTTP/0.9 request line"],
)
def test_unsupported_http_version_gets_505(server: Any, data: bytes) -> None:
    assert_rejected(server.port, data + SMUGGLED, 505)


def test_lenient_but_valid_input_is_accepted(server: Any) -> None:
    # Controls for the cases above: these are valid HTTP/1.1 (RFC 9112).
    valid = [
        b"\r\nGET /path?a HTTP/1.1\r\nHost: test\r\n\r\n",  # empty line before a request
        b"GET /path?a HTTP/1.1\r\nHost:\r\n\r\n",  # empty Host is allowed
        b"GET /path?a HTTP/1.1\r\nHost: test\r\nX:  \t spaced \t \r\n\r\n",  # OWS
        b"GET /path?a HTTP/1.1\r\nHost: test\r\nX: caf\xe9\r\n\r\n",  # obs-text
        b"GET /path?a HTTP/1.0\r\n\r\n",  # no Host needed on HTTP/1.0
        b"GET http://test/path?a HTTP/1.1\r\nHost: test\r\n\r\n",  # absolute-form
    ]
    for data in valid:
        response = exchange(server.port, data)
        assert response.status == 200, data
        assert response.body == b"/path?a", data


# ---------------------------------------------------------------- request smuggling (400)

SMUGGLING = {
    "Content-Length with Transfer-Encoding": (
        b"POST /echo HTTP/1.1\r\nHost: test\r\nContent-Length: 5\r\n"
        b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n"
    ),
    "Transfer-Encoding with Content-Length": (
        b"POST /echo HTTP/1.1\r\nHost: test\r\nTransfer-Encoding: chunked\r\n"
        b"Content-Length: 44\r\n\r\n0\r\n\r\n"
    ),
    "duplicate Content-Length, same value": (
        b"POST /echo HTTP/1.1\r\nHost: test\r\nContent-Length: 3\r\nContent-Length: 3\r\n\r\nabc"
    ),
    "duplicate Content-Length, conflicting": (
        b"POST /echo HTTP/1.1\r\nHost: test\r\nContent-Length: 3\r\nContent-Length: 47\r\n\r\nabc"
    ),
    "Content-Length list, same values": (
        b"POST /echo HTTP/1.1\r\nHost: test\r\nContent-Length: 3, 3\r\n\r\nabc"
    ),
    "Content-Length list, conflicting": (
        b"POST /echo HTTP/1.1\r\nHost: test\r\nContent-Length: 3, 47\r\n\r\nabc"
    ),
    "Content-Length +3": b"POST /echo HTTP/1.1\r\nHost: test\r\nContent-Length: +3\r\n\r\nabc",
    "Content-Length -1": b"POST /echo HTTP/1.1\r\nHost: test\r\nContent-Length: -1\r\n\r\nabc",
    "Content-Length hex": b"POST /echo HTTP/1.1\r\nHost: test\r\nContent-Length: 0x3\r\n\r\nabc",
    "Content-Length inner space": (
        b"POST /echo HTTP/1.1\r\nHost: test\r\nContent-Length: 1 2\r\n\r\nabc"
    ),
    "Content-Length empty": b"POST /echo HTTP/1.1\r\nHost: test\r\nContent-Length:\r\n\r\nabc",
    "Content-Length overflow": (
        b"POST /echo HTTP/1.1\r\nHost: test\r\nContent-Length: 99999999999999999999999\r\n\r\n"
    ),
    "Transfer-Encoding gzip": (
        b"POST /echo HTTP/1.1\r\nHost: test\r\nTransfer-Encoding: gzip\r\n\r\n"
    ),
    "Transfer-Encoding identity": (
        b"POST /echo HTTP/1.1\r\nHost: test\r\nTransfer-Encoding: identity\r\n\r\n"
    ),
    "Transfer-Encoding chunked, identity": (
        b"POST /echo HTTP/1.1\r\nHost: test\r\nTransfer-Encoding: chunked, identity\r\n\r\n"
        b"0\r\n\r\n"
    ),
    "Transfer-Encoding chunked twice": (
        b"POST /echo HTTP/1.1\r\nHost: test\r\nTransfer-Encoding: chunked\r\n"
        b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n"
    ),
    "Transfer-Encoding xchunked": (
        b"POST /echo HTTP/1.1\r\nHost: test\r\nTransfer-Encoding: xchunked\r\n\r\n0\r\n\r\n"
    ),
    "Transfer-Encoding chunkedx": (
        b"POST /echo HTTP/1.1\r\nHost: test\r\nTransfer-Encoding: chunkedx\r\n\r\n0\r\n\r\n"
    ),
    "Transfer-Encoding with parameter": (
        b"POST /echo HTTP/1.1\r\nHost: test\r\nTransfer-Encoding: chunked;x=1\r\n\r\n0\r\n\r\n"
    ),
    "Transfer-Encoding vertical tab": (
        b"POST /echo HTTP/1.1\r\nHost: test\r\nTransfer-Encoding: \x0bchunked\r\n\r\n0\r\n\r\n"
    ),
    "space before colon in Transfer-Encoding": (
        b"POST /echo HTTP/1.1\r\nHost: test\r\nTransfer-Encoding : chunked\r\n\r\n0\r\n\r\n"
    ),
    "space before colon in Content-Length": (
        b"POST /echo HTTP/1.1\r\nHost: test\r\nContent-Length : 3\r\n\r\nabc"
    ),
    "invalid chunk size": (
        b"POST /echo HTTP/1.1\r\nHost: test\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"zz\r\nabc\r\n0\r\n\r\n"
    ),
    "negative chunk size": (
        b"POST /echo HTTP/1.1\r\nHost: test\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"-3\r\nabc\r\n0\r\n\r\n"
    ),
    "0x chunk size": (
        b"POST /echo HTTP/1.1\r\nHost: test\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"0x3\r\nabc\r\n0\r\n\r\n"
    ),
    "chunk size overflow": (
        b"POST /echo HTTP/1.1\r\nHost: test\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"fffffffffffffffff3\r\nabc\r\n0\r\n\r\n"
    ),
    "chunk size with trailing space": (
        b"POST /echo HTTP/1.1\r\nHost: test\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"3 \r\nabc\r\n0\r\n\r\n"
    ),
    "chunk longer than its size": (
        b"POST /echo HTTP/1.1\r\nHost: test\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"3\r\nabcdef\r\n0\r\n\r\n"
    ),
    "chunk lines with bare LF": (
        b"POST /echo HTTP/1.1\r\nHost: test\r\nTransfer-Encoding: chunked\r\n\r\n3\nabc\n0\n\n"
    ),
    "invalid chunk extension": (
        b"POST /echo HTTP/1.1\r\nHost: test\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"3;\x01\r\nabc\r\n0\r\n\r\n"
    ),
    "invalid trailer": (
        b"POST /echo HTTP/1.1\r\nHost: test\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"3\r\nabc\r\n0\r\nX\x01: y\r\n\r\n"
    ),
}


@pytest.mark.parametrize("data", SMUGGLING.values(), ids=SMUGGLING.keys())
def test_request_smuggling_vector_gets_400(server: Any, data: bytes) -> None:
    assert_rejected(server.port, data + SMUGGLED, 400)


@pytest.mark.parametrize("keep_alive", [True, False], ids=["keep-alive", "default"])
def test_transfer_encoding_on_http10_gets_400_and_close(server: Any, keep_alive: bool) -> None:
    # RFC 9112 6.1: HTTP/1.0 has no chunked coding, so the framing is faulty and
    # the connection must close; the request smuggled in the "body" is never served.
    head = b"POST /echo HTTP/1.0\r\n"
    if keep_alive:
        head += b"Connection: keep-alive\r\n"
    data = head + b"Transfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n"
    assert_rejected(server.port, data + SMUGGLED, 400)


# ---------------------------------------------------------------- size limits


def test_default_header_limits(server: Any) -> None:
    """16 KiB of header section and 8190 bytes of request target by default (docs/CLI.md)."""
    # A 20 KiB header section is refused, whether one line or many.
    assert_rejected(server.port, get("/", "X-Big: " + "a" * 20 * 1024) + SMUGGLED, 431)
    fields = [f"X-Field-{i}: {'b' * 400}" for i in range(50)]
    assert_rejected(server.port, get("/", *fields) + SMUGGLED, 431)
    # Just under 16 KiB is served.
    response = exchange(server.port, get("/path?big", "X-Ok: " + "c" * (16 * 1024 - 100)))
    assert (response.status, response.body) == (200, b"/path?big")
    target = "/path?" + "q" * (8190 - len("/path?"))
    response = exchange(server.port, get(target))
    assert (response.status, response.body) == (200, target.encode())
    assert_rejected(server.port, get(target + "q") + SMUGGLED, 414)


def test_header_section_over_limit_gets_431() -> None:
    with serve(app, limit_request_header_size=1024) as srv:
        # One long header line.
        assert_rejected(srv.port, get("/", "X-Big: " + "a" * 2000), 431)
        # Many ordinary ones adding up.
        fields = [f"X-Field-{i}: {'b' * 40}" for i in range(40)]
        assert_rejected(srv.port, get("/", *fields), 431)
        # A header line that never ends, dribbled in: cut off without waiting
        # for it (sending just enough to cross the limit, 40 + 10 * 100 bytes).
        with RawClient(srv.port) as client:
            client.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            client.send(b"GET / HTTP/1.1\r\nHost: test\r\nX-Endless: ")
            for _ in range(10):
                client.send(b"c" * 100)
            response = client.read_response()
            assert response.status == 431
            client.assert_closed()
        # Under the limit is fine.
        response = exchange(srv.port, get("/path?small", "X-Ok: " + "d" * 600))
        assert response.status == 200
        assert response.body == b"/path?small"


def test_too_many_header_fields_gets_431() -> None:
    with serve(app, limit_request_fields=5) as srv:
        four = [f"X-{i}: v" for i in range(4)]
        response = exchange(srv.port, get("/path?five", *four))  # Host + 4 = 5 fields
        assert response.status == 200
        assert response.body == b"/path?five"
        assert_rejected(srv.port, get("/path?six", *four, "X-4: v") + SMUGGLED, 431)


def test_request_target_over_limit_gets_414() -> None:
    with serve(app, limit_request_line=64) as srv:
        target = "/path?" + "q" * (64 - len("/path?"))
        response = exchange(srv.port, get(target))
        assert response.status == 200
        assert response.body == target.encode()
        assert_rejected(srv.port, get(target + "q") + SMUGGLED, 414)
        # Also when the target arrives in pieces (just enough to cross the limit).
        with RawClient(srv.port) as client:
            client.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            client.send(b"GET /")
            for _ in range(7):
                client.send(b"x" * 10)
            assert client.read_response().status == 414
            client.assert_closed()


def chunked_head(path: str = "/echo") -> bytes:
    return b"POST %b HTTP/1.1\r\nHost: test\r\nTransfer-Encoding: chunked\r\n\r\n" % path.encode()


def test_body_over_limit_gets_413() -> None:
    with serve(app, limit_request_body=10) as srv:
        # At the limit: served.
        ok = exchange(
            srv.port, b"POST /echo HTTP/1.1\r\nHost: test\r\nContent-Length: 10\r\n\r\n0123456789"
        )
        assert (ok.status, ok.body) == (200, b"0123456789")
        ok = exchange(srv.port, chunked_head() + b"5\r\nhello\r\n5\r\nworld\r\n0\r\n\r\n")
        assert (ok.status, ok.body) == (200, b"helloworld")
        # A declared Content-Length over the limit: refused before the body is read.
        assert_rejected(
            srv.port, b"POST /echo HTTP/1.1\r\nHost: test\r\nContent-Length: 11\r\n\r\n", 413
        )
        assert_rejected(
            srv.port,
            b"POST /echo HTTP/1.1\r\nHost: test\r\nContent-Length: 11\r\n\r\n" + b"z" * 11,
            413,
        )
        # A chunked body growing past the limit, in one write...
        assert_rejected(
            srv.port, chunked_head() + b"5\r\nhello\r\n5\r\nworld\r\n1\r\n!\r\n0\r\n\r\n", 413
        )
        # ...and with the head first, while the app is already reading.
        with RawClient(srv.port) as client:
            client.send(chunked_head())
            client.send(b"8\r\n12345678\r\n")
            client.send(b"8\r\n12345678\r\n0\r\n\r\n")
            response = client.read_response()
            assert response.status == 413
            client.assert_closed()
        assert_still_serving(srv.port)


def test_expect_continue_over_body_limit_gets_413_without_100() -> None:
    with serve(app, limit_request_body=10) as srv, RawClient(srv.port) as client:
        client.send(
            b"POST /echo HTTP/1.1\r\nHost: test\r\nContent-Length: 100\r\n"
            b"Expect: 100-continue\r\n\r\n"
        )
        response = client.read_response()
        assert response.status == 413
        assert response.interim == []
        client.assert_closed()


def test_transfer_coding_other_than_chunked_gets_501(server: Any) -> None:
    # RFC 9112 6.1: a coding the server does not understand gets 501, rather
    # than a body handed to the app still gzip-coded as if it were plain.
    for codings in (b"gzip, chunked", b"deflate,chunked", b"x-custom, chunked"):
        data = (
            b"POST /echo HTTP/1.1\r\nHost: test\r\nTransfer-Encoding: %b\r\n\r\n"
            b"3\r\nabc\r\n0\r\n\r\n" % codings
        )
        assert_rejected(server.port, data + SMUGGLED, 501)
    # Only the coding itself matters, not how it is spelt.
    ok = exchange(server.port, chunked_head().replace(b"chunked", b"Chunked") + b"0\r\n\r\n")
    assert (ok.status, ok.body) == (200, b"")


def assert_still_serving_echo(port: int) -> None:
    response = exchange(port, chunked_head() + b"2\r\nok\r\n0\r\n\r\n")
    assert (response.status, response.body) == (200, b"ok")


def test_trailer_section_over_limit_gets_431() -> None:
    with serve(app, limit_request_header_size=1024, limit_request_fields=5) as srv:
        # Within the limits: the trailers are accepted.
        ok = exchange(srv.port, chunked_head() + b"3\r\nabc\r\n0\r\nX-A: 1\r\nX-B: 2\r\n\r\n")
        assert (ok.status, ok.body) == (200, b"abc")
        # Many trailer fields adding up, and too many of them.
        fields = b"".join(b"X-Field-%d: %b\r\n" % (i, b"b" * 40) for i in range(30))
        big = chunked_head() + b"3\r\nabc\r\n0\r\n" + fields + b"\r\n"
        assert_rejected(srv.port, big + SMUGGLED, 431)
        many = b"".join(b"X-%d: v\r\n" % i for i in range(6))
        assert_rejected(srv.port, chunked_head() + b"0\r\n" + many + b"\r\n" + SMUGGLED, 431)
    # A trailer line that never ends, or a chunk-size line with an endless
    # extension, dribbled in after the app has read the body so far: the
    # connection is cut off instead of the line being buffered (llhttp keeps
    # an unfinished trailer line in memory).  The app echoes each chunk, so
    # the client knows when its body was read.
    for endless in (b"0\r\nX-Endless: ", b"3;ext="):
        with serve(apps.echo, limit_request_header_size=1024) as srv:
            with RawClient(srv.port) as client:
                client.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                client.send(chunked_head() + b"3\r\nabc\r\n")
                while b"abc" not in client.buf:
                    client._fill()
                client.send(endless)
                with contextlib.suppress(OSError):  # the server may be gone already
                    for _ in range(12):
                        client.send(b"c" * 100)
                # The response is cut off: its chunked body never ends.
                rest = client.read_until_eof()
                assert not rest.endswith(b"0\r\n\r\n"), rest
            assert_still_serving_echo(srv.port)
    with serve(app, limit_request_header_size=1024) as srv:
        # Many small chunks are progress, not framing abuse.
        chunks = b"".join(b"1\r\n%b\r\n" % bytes([97 + i % 26]) for i in range(600))
        ok = exchange(srv.port, chunked_head() + chunks + b"0\r\n\r\n")
        assert ok.status == 200
        assert len(ok.body) == 600


# ---------------------------------------------------------------- bad input while a response is due


class _Seen(logging.Handler):
    """Sets ``event`` once the server logs a line containing ``text``."""

    def __init__(self, text: str) -> None:
        super().__init__(logging.DEBUG)
        self.text = text
        self.event = threading.Event()

    def emit(self, record: logging.LogRecord) -> None:
        if self.text in record.getMessage():
            self.event.set()


@contextlib.contextmanager
def server_logs(text: str) -> Iterator[threading.Event]:
    """An event set when the server's error log (at debug level) mentions ``text``."""
    handler = _Seen(text)
    log = logging.getLogger("asgiri.error")
    log.addHandler(handler)
    try:
        yield handler.event
    finally:
        log.removeHandler(handler)


def gated_app(gate: threading.Event, started: threading.Event) -> Any:
    """``/gate`` streams "started", waits for ``gate``, ends with "done";
    ``/gate-head`` waits for ``gate`` before its response; anything else is ``app``."""

    async def gated(scope: Any, receive: Any, send: Any) -> None:
        path = scope.get("path")
        if path not in ("/gate", "/gate-head"):
            await app(scope, receive, send)
            return
        loop = asyncio.get_running_loop()
        if path == "/gate":
            await send({"type": "http.response.start", "status": 200, "headers": []})
            await send({"type": "http.response.body", "body": b"started", "more_body": True})
        started.set()
        await loop.run_in_executor(None, gate.wait, 10)
        if path == "/gate-head":
            await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"done"})

    return gated


def read_chunk(client: RawClient) -> bytes:
    size = int(client._line().split(b";")[0], 16)
    data = client._exact(size)
    assert client._exact(2) == b"\r\n"
    return data


def test_bad_request_behind_the_one_answered_lets_its_response_finish_then_closes() -> None:
    gate, started = threading.Event(), threading.Event()
    with (
        server_logs("protocol error") as broken,
        serve(gated_app(gate, started), log_level="debug") as srv,
        RawClient(srv.port) as client,
    ):
        try:
            client.send(get("/gate") + get("/path?second"))
            status, _, headers = client._head()
            assert status == 200 and (b"transfer-encoding", b"chunked") in headers
            assert read_chunk(client) == b"started"
            client.send(b"GARBAGE\r\n\r\n")
            assert broken.wait(5)
        finally:
            gate.set()
        # The response under way is completed; then the connection closes
        # without a 400 and without answering the request parsed behind it.
        assert read_chunk(client) == b"done"
        assert read_chunk(client) == b""  # the last chunk (and no trailers)
        client.assert_closed()


def test_bad_input_before_the_app_responds_is_answered_in_its_place() -> None:
    gate, started = threading.Event(), threading.Event()
    with (
        server_logs("protocol error") as broken,
        serve(gated_app(gate, started), log_level="debug") as srv,
        RawClient(srv.port) as client,
    ):
        try:
            client.send(get("/gate-head"))
            assert started.wait(5)
            client.send(b"GARBAGE\r\n\r\n")
            assert broken.wait(5)
            response = client.read_response()
            assert (response.status, response.get(b"connection")) == (400, b"close")
        finally:
            gate.set()
        # The app's own response, sent later, never follows the 400.
        client.assert_closed()
