"""HTTP/1.1 behaviour of a real asgiri server (RFC 9112), seen from the wire.

Every test runs a real :class:`asgiri.server.Server` on port 0 (``serve``) and
talks to it with raw sockets (for exact bytes), httpx or curl.  The raw
client here (:class:`RawClient`) parses responses strictly by their framing
so that a stray byte (a body on a HEAD answer, a wrong Content-Length) shows
up as a garbled *next* response; ``tests/http1/test_h1_bad_input.py`` reuses it.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests import apps
from tests.apps.h1 import app
from tests.support.h1_client import RawClient, exchange, get, post, wait_until
from tests.support.servers import serve

# ---------------------------------------------------------------- raw client


# ---------------------------------------------------------------- the app under test


@pytest.fixture
def server() -> Iterator[Any]:
    with serve(app, timeout_keep_alive=5) as srv:
        yield srv


# ---------------------------------------------------------------- keep-alive


def test_keep_alive_serves_many_requests_on_one_socket(server: Any) -> None:
    with RawClient(server.port) as client:
        ports = set()
        for i in range(5):
            client.send(get(f"/path?n={i}"))
            response = client.read_response()
            assert response.status == 200
            assert response.body == f"/path?n={i}".encode()
            assert response.get(b"connection") is None
        for i in range(2):
            client.send(post("/info", b"x" * i))
            response = client.read_response()
            ports.add(json.loads(response.body)["client_port"])
            assert json.loads(response.body)["body"] == "x" * i
        assert len(ports) == 1


def test_http10_closes_by_default(server: Any) -> None:
    with RawClient(server.port) as client:
        client.send(get("/path?v=10", version="1.0", host=False))
        response = client.read_response()
        assert response.status == 200
        assert response.body == b"/path?v=10"
        assert response.get(b"connection") != b"keep-alive"
        assert response.get(b"content-length") == b"10"
        client.assert_closed()


def test_http10_keep_alive_when_asked(server: Any) -> None:
    with RawClient(server.port) as client:
        for i in range(3):
            client.send(get(f"/path?{i}", "Connection: keep-alive", version="1.0"))
            response = client.read_response()
            assert response.status == 200
            assert response.body == f"/path?{i}".encode()
            assert response.get(b"connection") == b"keep-alive"
        # Without the header again, HTTP/1.0 goes back to closing.
        client.send(get("/path?last", version="1.0"))
        assert client.read_response().body == b"/path?last"
        client.assert_closed()


def test_client_connection_close(server: Any) -> None:
    with RawClient(server.port) as client:
        client.send(get("/path?a", "Connection: close"))
        response = client.read_response()
        assert response.status == 200
        assert response.body == b"/path?a"
        assert response.get(b"connection") == b"close"
        client.assert_closed()


def test_client_connection_close_ignores_later_pipelined_requests(server: Any) -> None:
    # RFC 9112 9.6: answer the request carrying "close", process nothing after it.
    with RawClient(server.port) as client:
        client.send(get("/path?first", "Connection: close") + get("/path?second"))
        response = client.read_response()
        assert response.status == 200
        assert response.body == b"/path?first"
        client.assert_closed()
    with RawClient(server.port) as client:
        client.send(get("/path?first", version="1.0", host=False) + get("/path?second"))
        response = client.read_response()
        assert (response.status, response.body) == (200, b"/path?first")
        client.assert_closed()


def test_app_connection_close_closes(server: Any) -> None:
    with RawClient(server.port) as client:
        client.send(get("/close"))
        response = client.read_response()
        assert response.status == 200
        assert response.body == b"bye"
        assert response.get_all(b"connection") == [b"close"]
        client.assert_closed()


def test_httpx_client_reuses_the_connection(server: Any) -> None:
    with httpx.Client(base_url=server.url) as client:
        ports = set()
        for i in range(4):
            response = client.post("/info", content=f"body {i}".encode())
            assert response.status_code == 200
            info = response.json()
            assert info["body"] == f"body {i}"
            assert info["http_version"] == "1.1"
            ports.add(info["client_port"])
        assert len(ports) == 1


# ---------------------------------------------------------------- pipelining


def test_pipelined_requests_are_answered_in_order(server: Any) -> None:
    with RawClient(server.port) as client:
        client.send(
            get("/path?1")
            + post("/echo", b"posted body")
            + get("/path?3")
            + post("/info", b"abc", "X-Seq: 4")
            + get("/stream")
            + get("/path?6")
        )
        responses = [client.read_response() for _ in range(6)]
    assert [r.status for r in responses] == [200] * 6
    assert responses[0].body == b"/path?1"
    assert responses[1].body == b"posted body"
    assert responses[2].body == b"/path?3"
    info = json.loads(responses[3].body)
    assert info["body"] == "abc"
    assert ["x-seq", "4"] in info["headers"]
    assert responses[4].body == b"onetwothree"
    assert responses[5].body == b"/path?6"


def test_pipelined_slow_first_request_still_answered_first(server: Any) -> None:
    with RawClient(server.port) as client:
        client.send(get("/sleep?0.3") + get("/path?fast") + get("/sleep?0.01"))
        first = client.read_response()
        second = client.read_response()
        third = client.read_response()
    assert first.body == b"slept 0.3"
    assert second.body == b"/path?fast"
    assert third.body == b"slept 0.01"


def test_pipelined_byte_by_byte(server: Any) -> None:
    data = get("/path?a") + post("/echo", b"hello") + get("/path?c")
    with RawClient(server.port) as client:
        client.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        for i in range(len(data)):
            client.send(data[i : i + 1])
        bodies = [client.read_response().body for _ in range(3)]
    assert bodies == [b"/path?a", b"hello", b"/path?c"]


# ---------------------------------------------------------------- request and response bodies


CHUNKED_BODY = (
    b"5;name=value\r\nhello\r\n"
    b"1\r\n \r\n"
    b'6;ext;quoted="a b"\r\nworld!\r\n'
    b"A\r\n0123456789\r\n"
    b"0\r\nX-Trailer: yes\r\nX-Other: 1\r\n\r\n"
)


def chunked_post(path: str) -> bytes:
    return b"POST %b HTTP/1.1\r\nHost: test\r\nTransfer-Encoding: chunked\r\n\r\n%b" % (
        path.encode(),
        CHUNKED_BODY,
    )


def test_chunked_request_body_with_extensions_and_trailers(server: Any) -> None:
    with RawClient(server.port) as client:
        client.send(chunked_post("/info") + get("/path?next"))
        response = client.read_response()
        info = json.loads(response.body)
        assert info["body"] == "hello world!0123456789"
        assert ["transfer-encoding", "chunked"] in info["headers"]
        # The trailers were consumed as trailers: the next request parses.
        assert client.read_response().body == b"/path?next"


def test_chunked_request_body_in_small_writes(server: Any) -> None:
    data = chunked_post("/echo")
    with RawClient(server.port) as client:
        client.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        for i in range(0, len(data), 3):
            client.send(data[i : i + 3])
        assert client.read_response().body == b"hello world!0123456789"


def test_httpx_streamed_upload_is_chunked(server: Any) -> None:
    def parts() -> Iterator[bytes]:
        for i in range(20):
            yield b"%d," % i

    with httpx.Client(base_url=server.url) as client:
        response = client.post("/info", content=parts())
    info = response.json()
    assert info["body"] == "".join(f"{i}," for i in range(20))
    assert ["transfer-encoding", "chunked"] in info["headers"]


def test_streamed_response_is_chunked(server: Any) -> None:
    with RawClient(server.port) as client:
        client.send(get("/stream") + get("/path?after"))
        response = client.read_response()
        assert response.get(b"transfer-encoding") == b"chunked"
        assert response.get(b"content-length") is None
        assert response.body == b"onetwothree"
        assert b"3\r\none\r\n3\r\ntwo\r\n5\r\nthree\r\n0\r\n\r\n" in response.raw
        assert client.read_response().body == b"/path?after"
    with httpx.Client(base_url=server.url) as http:
        assert http.get("/stream").content == b"onetwothree"


def test_single_body_gets_content_length(server: Any) -> None:
    response = exchange(server.port, get("/"))
    assert response.status == 200
    assert response.get(b"content-length") == b"13"
    assert response.get(b"transfer-encoding") is None
    assert response.body == b"Hello, World!"


def test_http10_streamed_response_is_close_delimited(server: Any) -> None:
    for extra in ((), ("Connection: keep-alive",)):
        with RawClient(server.port) as client:
            client.send(get("/stream", *extra, version="1.0"))
            response = client.read_response()
            assert response.status == 200
            assert response.get(b"transfer-encoding") is None
            assert response.get(b"content-length") is None
            assert response.get(b"connection") != b"keep-alive"
            # Body read until EOF: the close is the end of the body.
            assert response.body == b"onetwothree"


# ---------------------------------------------------------------- Expect: 100-continue


def test_expect_continue_sent_when_app_reads(server: Any) -> None:
    with RawClient(server.port) as client:
        client.send(
            b"POST /echo HTTP/1.1\r\nHost: test\r\nContent-Length: 10\r\n"
            b"Expect: 100-continue\r\n\r\n"
        )
        # The 100 arrives before any body byte is sent.
        assert client._line() == b"HTTP/1.1 100 Continue"
        assert client._line() == b""
        client.send(b"0123456789")
        response = client.read_response()
        assert response.status == 200
        assert response.body == b"0123456789"
        assert response.interim == []
        # The connection stays usable.
        client.send(get("/path?x"))
        assert client.read_response().body == b"/path?x"


def test_expect_continue_sent_once_for_a_body_read_in_pieces(server: Any) -> None:
    with RawClient(server.port) as client:
        client.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        client.send(
            b"POST /echo HTTP/1.1\r\nHost: test\r\nTransfer-Encoding: chunked\r\n"
            b"Expect: 100-continue\r\n\r\n"
        )
        assert client._line() == b"HTTP/1.1 100 Continue"
        assert client._line() == b""
        # The app calls receive() once per piece; only the first asked for a 100.
        for piece in (b"one", b"two", b"three"):
            client.send(b"%x\r\n%b\r\n" % (len(piece), piece))
        client.send(b"0\r\n\r\n")
        response = client.read_response()
        assert (response.status, response.body) == (200, b"onetwothree")
        assert response.interim == []
        assert b"100 Continue" not in response.raw


@pytest.mark.parametrize("status", [417, 200])
def test_expect_continue_not_sent_when_app_does_not_read(server: Any, status: int) -> None:
    with RawClient(server.port) as client:
        client.send(
            b"POST /no-read?%d HTTP/1.1\r\nHost: test\r\nContent-Length: 10\r\n"
            b"Expect: 100-continue\r\n\r\n" % status
        )
        response = client.read_response()
        assert response.status == status
        assert response.interim == []
        assert response.raw.startswith(b"HTTP/1.1 %d " % status)
        assert response.body == b"not read"
        # The body was never sent, so the connection cannot be reused.
        client.assert_closed()


def test_expect_continue_ignored_for_http10(server: Any) -> None:
    with RawClient(server.port) as client:
        client.send(b"POST /echo HTTP/1.0\r\nContent-Length: 3\r\nExpect: 100-continue\r\n\r\nabc")
        response = client.read_response()
        assert response.interim == []
        assert response.body == b"abc"


# ---------------------------------------------------------------- HEAD, 204, 304


def test_head_keeps_headers_and_sends_no_body(server: Any) -> None:
    with RawClient(server.port) as client:
        client.send(
            b"HEAD / HTTP/1.1\r\nHost: test\r\n\r\n"
            + b"HEAD /stream HTTP/1.1\r\nHost: test\r\n\r\n"
            + get("/path?after-head")
        )
        head = client.read_response(head_request=True)
        assert head.status == 200
        assert head.get(b"content-length") == b"13"
        assert head.get(b"content-type") == b"text/plain"
        assert head.raw.endswith(b"\r\n\r\n")
        streamed = client.read_response(head_request=True)
        assert streamed.status == 200
        assert streamed.raw.endswith(b"\r\n\r\n")
        # If any body byte had leaked, this would not parse as a response.
        after = client.read_response()
        assert after.status == 200
        assert after.body == b"/path?after-head"


def test_204_and_304_have_no_body_and_no_content_length(server: Any) -> None:
    with RawClient(server.port) as client:
        client.send(
            get("/status/204")
            + get("/status/304")
            + get("/status/204?body")
            + get("/status/304?body")
            + get("/path?after")
        )
        for status in (204, 304, 204, 304):
            response = client.read_response()
            assert response.status == status
            assert response.get(b"content-length") is None
            assert response.get(b"transfer-encoding") is None
            assert response.raw.endswith(b"\r\n\r\n")
        after = client.read_response()
        assert after.body == b"/path?after"


# ---------------------------------------------------------------- default headers


def test_date_and_server_headers_by_default(server: Any) -> None:
    response = exchange(server.port, get("/"))
    assert response.get(b"server") == b"asgiri"
    date = response.get(b"date")
    assert date is not None
    parsed = time.mktime(time.strptime(date.decode(), "%a, %d %b %Y %H:%M:%S GMT"))
    assert abs(parsed - time.mktime(time.gmtime())) < 5


def test_date_and_server_headers_can_be_disabled() -> None:
    with serve(app, server_header=False, date_header=False) as srv:
        response = exchange(srv.port, get("/"))
    assert response.status == 200
    assert response.get(b"server") is None
    assert response.get(b"date") is None


# ---------------------------------------------------------------- request target


def test_absolute_form_target_authority_is_the_host_the_app_sees() -> None:
    # RFC 9112 3.2.2: with an absolute-form target, the target's authority
    # replaces the Host header; the app must never see the other host.
    with serve(apps.scope_json) as srv, RawClient(srv.port) as client:
        client.send(b"GET http://evil.example:8080/path?q=1 HTTP/1.1\r\nHost: good.example\r\n\r\n")
        scope = json.loads(client.read_response().body)
        assert [v for k, v in scope["headers"] if k == "host"] == ["evil.example:8080"]
        assert (scope["path"], scope["query_string"]) == ("/path", "q=1")
        # The next request on the connection, in origin form, keeps its own Host.
        client.send(get("/again"))
        scope = json.loads(client.read_response().body)
        assert [v for k, v in scope["headers"] if k == "host"] == ["test"]


# ---------------------------------------------------------------- timeouts


def test_slowloris_header_timeout() -> None:
    with serve(app, timeout_request_header=1) as srv, RawClient(srv.port) as client:
        client.sock.settimeout(0.2)
        started = time.monotonic()
        client.send(b"GET / HTTP/1.1\r\nHost: test\r\nX-Slow: ")
        received = b""
        closed = False
        while time.monotonic() - started < 4:
            with contextlib.suppress(OSError):  # the server may be gone already
                client.send(b"a")
            try:
                chunk = client.sock.recv(65536)
            except TimeoutError:
                continue
            except ConnectionResetError:
                closed = True
                break
            if not chunk:
                closed = True
                break
            received += chunk
        elapsed = time.monotonic() - started
    assert closed, "a client dribbling its header section was never cut off"
    assert 0.8 < elapsed < 2.5
    assert received.startswith(b"HTTP/1.1 408 ")


def test_keep_alive_timeout_closes_idle_connection() -> None:
    with serve(app, timeout_keep_alive=0.5) as srv, RawClient(srv.port, timeout=3) as client:
        client.send(get("/path?x"))
        assert client.read_response().body == b"/path?x"
        started = time.monotonic()
        client.assert_closed()
        assert 0.3 < time.monotonic() - started < 2.0


def test_keep_alive_timeout_closes_connection_sending_only_blank_lines() -> None:
    # Empty lines between requests are allowed (RFC 9112 2.2) but are not a
    # request: they must not stop the idle timer.
    with serve(app, timeout_keep_alive=0.5) as srv, RawClient(srv.port, timeout=3) as client:
        client.send(get("/path?x"))
        assert client.read_response().body == b"/path?x"
        started = time.monotonic()
        client.send(b"\r\n")
        client.assert_closed()
        assert time.monotonic() - started < 2.0


def test_keep_alive_timeout_spares_active_connections() -> None:
    with serve(app, timeout_keep_alive=0.5) as srv, RawClient(srv.port) as client:
        # A request that takes longer than the idle timeout is not cut off...
        client.send(get("/sleep?0.8"))
        assert client.read_response().body == b"slept 0.8"
        # ...and a connection used more often than the timeout stays open
        # longer than the timeout in total.
        started = time.monotonic()
        for i in range(4):
            client.send(get(f"/sleep?0.25&{i}"))
            response = client.read_response()
            assert response.status == 200
        assert time.monotonic() - started > 0.9


# ---------------------------------------------------------------- concurrency limit


def test_limit_concurrency_answers_503() -> None:
    with serve(app, limit_concurrency=1) as srv:
        with RawClient(srv.port) as holder:
            holder.send(get("/hold"))
            assert holder._line() == b"HTTP/1.1 200 OK"  # the app is now running
            busy = exchange(srv.port, get("/path?second"))
            assert busy.status == 503
            assert busy.get(b"connection") == b"close"

        # Once the held request is gone, requests are served again.
        def served() -> bool:
            return exchange(srv.port, get("/path?third")).status == 200

        assert wait_until(served)


# ---------------------------------------------------------------- curl


CURL = shutil.which("curl")
needs_curl = pytest.mark.skipif(CURL is None, reason="curl is not installed")


def curl(*args: str) -> subprocess.CompletedProcess[bytes]:
    assert CURL is not None
    return subprocess.run([CURL, "--max-time", "10", *args], capture_output=True, timeout=20)


@needs_curl
def test_curl_get(server: Any) -> None:
    result = curl("-sv", f"{server.url}/")
    assert result.returncode == 0, result.stderr
    assert result.stdout == b"Hello, World!"
    stderr = result.stderr.decode()
    assert "< HTTP/1.1 200 OK" in stderr
    assert "< server: asgiri" in stderr
    assert "< content-length: 13" in stderr


@needs_curl
def test_curl_uploads_a_file(server: Any, tmp_path: Path) -> None:
    data = os.urandom(1 << 20)
    source = tmp_path / "upload.bin"
    source.write_bytes(data)
    result = curl("-s", "--data-binary", f"@{source}", f"{server.url}/echo")
    assert result.returncode == 0, result.stderr
    assert len(result.stdout) == len(data)
    assert result.stdout == data


@needs_curl
def test_curl_expect_continue(server: Any) -> None:
    result = curl(
        "-sv", "-H", "Expect: 100-continue", "--data-binary", "x" * 5000, f"{server.url}/echo"
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout == b"x" * 5000
    stderr = result.stderr.decode()
    assert "< HTTP/1.1 100 Continue" in stderr
    assert "< HTTP/1.1 200 OK" in stderr
