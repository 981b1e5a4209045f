"""WSGI apps (a plain PEP 3333 app, Flask and Django) over HTTP/1.1 and HTTP/2.

Each test runs a real server on port 0 and a real client (httpx; a raw socket
for the backpressure check).
"""

from __future__ import annotations

import functools
import hashlib
import os
import socket
import threading
import time
from collections.abc import Iterator

import httpx
import pytest
from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect

from asgiri.asgi.loader import detect_interface
from tests import apps
from tests.apps import wsgi as wsgiapps
from tests.support.servers import ThreadServer, cli_server, serve

PROTOCOLS = ["h1", "h2"]


def client_for(protocol: str, timeout: float = 30.0) -> httpx.Client:
    if protocol == "h2":
        return httpx.Client(http1=False, http2=True, timeout=timeout)  # h2c prior knowledge
    return httpx.Client(timeout=timeout)


@pytest.fixture(scope="module")
def plain_server() -> Iterator[ThreadServer]:
    with serve(wsgiapps.plain, root_path="/app", wsgi_max_workers=4) as srv:
        yield srv


@pytest.fixture(scope="module")
def flask_server() -> Iterator[ThreadServer]:
    with serve(wsgiapps.flask_app) as srv:
        yield srv


# ---------------------------------------------------------------- plain WSGI


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_environ_follows_pep_3333(plain_server: ThreadServer, protocol: str) -> None:
    with client_for(protocol) as client:
        response = client.post(
            plain_server.url + "/environ?x=1&y=%C3%A9",
            content=b"abc",
            headers={"x-custom": "v", "content-type": "text/x-test"},
        )
    env = response.json()
    assert response.status_code == 200
    assert env["REQUEST_METHOD"] == "POST"
    assert env["SCRIPT_NAME"] == "/app"
    assert env["PATH_INFO"] == "/environ"
    assert env["QUERY_STRING"] == "x=1&y=%C3%A9"
    assert env["CONTENT_TYPE"] == "text/x-test"
    assert env["CONTENT_LENGTH"] == "3"
    assert env["HTTP_X_CUSTOM"] == "v"
    assert env["HTTP_HOST"] == f"127.0.0.1:{plain_server.port}"
    assert env["SERVER_PROTOCOL"] == ("HTTP/2" if protocol == "h2" else "HTTP/1.1")
    assert env["SERVER_PORT"] == str(plain_server.port)
    assert env["REMOTE_ADDR"] == "127.0.0.1"
    assert env["wsgi.url_scheme"] == "http"
    assert env["wsgi.version"] == [1, 0]
    assert env["wsgi.multithread"] is True


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_large_upload_is_streamed_to_wsgi_input(plain_server: ThreadServer, protocol: str) -> None:
    body = os.urandom(8 * 1024 * 1024 + 123)

    def chunks() -> Iterator[bytes]:
        for i in range(0, len(body), 256 * 1024):
            yield body[i : i + 256 * 1024]

    with client_for(protocol) as client:
        # A generator body goes out chunked (h1) / without a length (h2).
        response = client.post(plain_server.url + "/upload", content=chunks())
    assert response.status_code == 200
    assert response.text == f"{len(body)} {hashlib.sha256(body).hexdigest()}"


def test_wsgi_input_iterates_lines(plain_server: ThreadServer) -> None:
    response = httpx.post(plain_server.url + "/lines", content=b"one\ntwo\nthree")
    assert response.json() == ["one\n", "two\n", "three"]


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_streamed_response_arrives_whole(plain_server: ThreadServer, protocol: str) -> None:
    with (
        client_for(protocol) as client,
        client.stream("GET", plain_server.url + "/stream?40") as response,
    ):
        assert response.status_code == 200
        received = b"".join(response.iter_bytes())
    assert received == wsgiapps.CHUNK * 40


def test_slow_client_holds_back_the_generator(plain_server: ThreadServer) -> None:
    """The iterator is only pulled as fast as the client reads."""
    before = wsgiapps.produced
    sock = socket.create_connection(("127.0.0.1", plain_server.port))
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)
    try:
        sock.sendall(b"GET /stream?2000 HTTP/1.1\r\nhost: x\r\n\r\n")
        received = 0
        while received < 1024 * 1024:
            received += len(sock.recv(65536))
        # 2000 chunks are 125 MiB: unthrottled, the generator finishes in well
        # under this window; with backpressure it stays a few MiB ahead.
        deadline = time.monotonic() + 1.0
        while time.monotonic() < deadline:
            time.sleep(0.05)
        ahead = (wsgiapps.produced - before) * len(wsgiapps.CHUNK) - received
        assert ahead < 32 * 1024 * 1024, f"generator ran {ahead} bytes ahead of the client"
    finally:
        sock.close()


def test_write_callable_and_returned_body(plain_server: ThreadServer) -> None:
    response = httpx.get(plain_server.url + "/write")
    assert response.text == "written then returned"


def test_exc_info_replaces_an_unsent_head(plain_server: ThreadServer) -> None:
    response = httpx.get(plain_server.url + "/exc-info")
    assert response.status_code == 503
    assert response.text == "replaced answer"


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_app_exception_is_a_500(plain_server: ThreadServer, protocol: str) -> None:
    with client_for(protocol) as client:
        response = client.get(plain_server.url + "/error")
    assert response.status_code == 500


def test_more_requests_than_threads_all_complete(plain_server: ThreadServer) -> None:
    """Requests beyond --wsgi-max-workers wait for a thread instead of failing."""
    with httpx.Client(http1=False, http2=True) as client:
        import concurrent.futures

        with concurrent.futures.ThreadPoolExecutor(12) as pool:
            results = list(
                pool.map(lambda _: client.get(plain_server.url + "/stream?8").content, range(12))
            )
    assert all(r == wsgiapps.CHUNK * 8 for r in results)


# ---------------------------------------------------------------- Flask


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_flask_route(flask_server: ThreadServer, protocol: str) -> None:
    with client_for(protocol) as client:
        response = client.get(flask_server.url + "/hello?name=asgiri")
    version = "HTTP/2" if protocol == "h2" else "HTTP/1.1"
    assert response.status_code == 200
    assert response.text == f"hello asgiri over {version}"


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_flask_large_post(flask_server: ThreadServer, protocol: str) -> None:
    body = os.urandom(5 * 1024 * 1024)
    with client_for(protocol) as client:
        response = client.post(flask_server.url + "/upload", content=body)
    assert response.json() == {"size": len(body), "sha256": hashlib.sha256(body).hexdigest()}


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_flask_streamed_response(flask_server: ThreadServer, protocol: str) -> None:
    with (
        client_for(protocol) as client,
        client.stream("GET", flask_server.url + "/stream?parts=50") as response,
    ):
        lines = list(response.iter_lines())
    assert response.headers.get("content-length") is None
    assert lines == [f"part {i}" for i in range(50)]


def test_flask_from_the_command_line_auto_detected() -> None:
    with cli_server("apps.wsgi:flask_app", "--port", "0") as srv:
        assert httpx.get(srv.url + "/hello").text == "hello world over HTTP/1.1"


def test_interface_wsgi_forced_on_the_command_line() -> None:
    with cli_server("apps.wsgi:plain", "--port", "0", "--interface", "wsgi") as srv:
        assert httpx.get(srv.url + "/environ").json()["PATH_INFO"] == "/environ"


# ---------------------------------------------------------------- detection


class ASGI2App:
    def __init__(self, scope: object) -> None:
        self.scope = scope

    async def __call__(self, receive: object, send: object) -> None:
        pass


def test_detect_interface() -> None:
    assert detect_interface(apps.hello) == "asgi3"
    assert detect_interface(wsgiapps.plain) == "wsgi"
    assert detect_interface(wsgiapps.flask_app) == "wsgi"
    assert detect_interface(ASGI2App) == "asgi2"
    assert detect_interface(lambda scope: ASGI2App(scope)) == "asgi2"
    assert detect_interface(functools.partial(apps.hello)) == "asgi3"
    assert detect_interface(functools.partial(wsgiapps.plain)) == "wsgi"


def test_websocket_to_a_wsgi_app_is_refused(plain_server: ThreadServer) -> None:
    with pytest.raises(InvalidStatus) as info:
        connect(f"ws://127.0.0.1:{plain_server.port}/", proxy=None, open_timeout=10)
    assert info.value.response.status_code == 403


def test_shutdown_with_a_blocked_wsgi_thread_ends_it() -> None:
    """A generator stuck on a client that reads nothing does not outlive the server."""
    others = set(threading.enumerate())  # the module's servers have WSGI threads too
    srv = ThreadServer(wsgiapps.plain, timeout_graceful_shutdown=0.5).start()
    sock = socket.create_connection(("127.0.0.1", srv.port))
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)
        sock.sendall(b"GET /stream?100000 HTTP/1.1\r\nhost: x\r\n\r\n")
        assert sock.recv(65536).startswith(b"HTTP/1.1 200")
        srv.stop()
        deadline = time.monotonic() + 10
        while any(t.name.startswith("asgiri-wsgi") for t in set(threading.enumerate()) - others):
            assert time.monotonic() < deadline, "a WSGI thread outlived the server"
            time.sleep(0.02)
    finally:
        sock.close()


# ---------------------------------------------------------------- Django (WSGI handler)


@pytest.fixture(scope="module")
def django_server() -> Iterator[str]:
    """Django's WSGIHandler from the command line, detected as WSGI without --interface."""
    with cli_server("tests.apps.django_project:application", "--port", "0") as srv:
        yield srv.url


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_django_wsgi_views(django_server: str, protocol: str) -> None:
    body = os.urandom(5 * 1024 * 1024)
    with client_for(protocol) as client:
        hello = client.get(django_server + "/hello?name=asgiri")
        upload = client.post(django_server + "/upload", content=body)
        with client.stream("GET", django_server + "/stream?parts=40") as streamed:
            lines = list(streamed.iter_lines())
    version = "HTTP/2" if protocol == "h2" else "HTTP/1.1"
    assert hello.status_code == 200
    assert hello.text == f"hello asgiri over {version}"
    assert upload.json() == {"size": len(body), "sha256": hashlib.sha256(body).hexdigest()}
    assert streamed.headers.get("content-length") is None
    assert lines == [f"part {i}" for i in range(40)]
