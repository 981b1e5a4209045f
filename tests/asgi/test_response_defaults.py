"""What the server itself adds to or answers for every protocol: --header and --health-path.

Each is checked on HTTP/1.1, HTTP/2 and HTTP/3 against one real TLS server,
with real clients (httpx over TCP, aioquic over QUIC).
"""

from __future__ import annotations

import socket
import ssl
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from asgiri.ssl_utils import generate_self_signed_cert
from tests.support.h3_client import H3Client
from tests.support.servers import ThreadServer, cli_server, run_cli, serve

CERT, KEY = generate_self_signed_cert("localhost", key_type="ec")
HEADERS = [
    "X-Frame-Options: DENY",
    "Strict-Transport-Security:max-age=63072000; includeSubDomains",
    "server: edge-1",
]


async def hello(scope: Any, receive: Any, send: Any) -> None:
    if scope["type"] != "http":
        return
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"hello"})


def _get(srv: ThreadServer, protocol: str, path: str = "/") -> tuple[int, dict[str, list[str]]]:
    """(status, headers by lower-case name) of a GET over ``protocol``."""
    if protocol == "h3":
        port = srv.server.http3_port
        assert port is not None
        with H3Client(port) as client:
            response = client.get(path)
        headers: dict[str, list[str]] = {}
        for name, value in response.headers:
            headers.setdefault(name.decode(), []).append(value.decode())
        return response.status, headers
    with httpx.Client(verify=False, http1=protocol == "h1", http2=protocol == "h2") as client:
        reply = client.get(srv.url + path)
    assert reply.http_version == {"h1": "HTTP/1.1", "h2": "HTTP/2"}[protocol]
    grouped: dict[str, list[str]] = {}
    for name, value in reply.headers.multi_items():
        grouped.setdefault(name.lower(), []).append(value)
    return reply.status_code, grouped


PROTOCOLS = ["h1", "h2", "h3"]


@pytest.fixture(scope="module")
def header_server() -> Iterator[ThreadServer]:
    with serve(hello, cert_data=CERT, key_data=KEY, headers=HEADERS) as srv:
        yield srv


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_header_option_adds_to_every_response(header_server: ThreadServer, protocol: str) -> None:
    status, headers = _get(header_server, protocol)
    assert status == 200
    assert headers["x-frame-options"] == ["DENY"]
    assert headers["strict-transport-security"] == ["max-age=63072000; includeSubDomains"]
    assert headers["server"] == ["edge-1"]  # replaces "asgiri", not added to it
    assert len(headers["date"]) == 1


def test_header_option_on_responses_the_server_makes_itself(header_server: ThreadServer) -> None:
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    raw = socket.create_connection(("127.0.0.1", header_server.port))
    with context.wrap_socket(raw) as tls:
        tls.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nBad Header\r\n\r\n")
        answer = tls.recv(65536)
    assert answer.startswith(b"HTTP/1.1 400 ")
    assert b"\r\nX-Frame-Options: DENY\r\n" in answer


def test_header_option_from_cli_file_and_environment(tmp_path: Any) -> None:
    config = tmp_path / "h.toml"
    config.write_text('headers = ["x-from-file: 1"]\n')
    with cli_server("apps:hello", "--port", "0", "--header", "X-From-Cli:2") as srv:
        assert httpx.get(srv.url).headers["x-from-cli"] == "2"
    with cli_server("apps:hello", "--port", "0", "--config", str(config)) as srv:
        assert httpx.get(srv.url).headers["x-from-file"] == "1"
    with cli_server("apps:hello", "--port", "0", env={"ASGIRI_HEADER": "x-env:3 x-env2:4"}) as srv:
        reply = httpx.get(srv.url)
    assert (reply.headers["x-env"], reply.headers["x-env2"]) == ("3", "4")


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("NoColon", "'NoColon' is not NAME:VALUE"),
        ("Bad Name:1", "'Bad Name' is not a valid header name"),
        ("content-length:1", "content-length is set by the server for each response"),
        ("x-a:caf\u00e9\u2603", "the value must be printable latin-1 text"),
    ],
)
def test_bad_header_option_is_one_line(value: str, expected: str) -> None:
    result = run_cli("apps:hello", "--header", value)
    assert result.returncode == 2
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and expected in lines[0], result.stderr


# ---------------------------------------------------------------- --health-path


def _wait_draining(srv: ThreadServer, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not srv.server._draining():
        assert time.monotonic() < deadline, "the server did not start draining"
        time.sleep(0.01)


def _tls_client_socket(port: int, alpn: list[str]) -> ssl.SSLSocket:
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    context.set_alpn_protocols(alpn)
    return context.wrap_socket(socket.create_connection(("127.0.0.1", port), timeout=10))


def _health_h1(srv: ThreadServer, drain_first: bool) -> tuple[int, bytes]:
    """A health check whose last request byte arrives after the drain began (or not)."""
    with _tls_client_socket(srv.port, ["http/1.1"]) as tls:
        tls.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\n\r\n")
        if drain_first:
            srv.server.request_shutdown()
            _wait_draining(srv)
        tls.sendall(b"x")
        data = b""
        while b"\r\n\r\n" not in data or not data.endswith(b"\n"):
            chunk = tls.recv(65536)
            if not chunk:
                break
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    return int(head.split(b" ")[1]), body


def _health_h2(srv: ThreadServer, drain_first: bool) -> tuple[int, bytes]:
    import h2.config
    import h2.connection
    import h2.events

    with _tls_client_socket(srv.port, ["h2"]) as tls:
        conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
        conn.initiate_connection()
        conn.send_headers(
            1,
            [(":method", "GET"), (":scheme", "https"), (":authority", "x"), (":path", "/healthz")],
        )
        tls.sendall(conn.data_to_send())
        if drain_first:
            srv.server.request_shutdown()
            _wait_draining(srv)
        conn.send_data(1, b"", end_stream=True)
        tls.sendall(conn.data_to_send())
        status, body, ended = 0, b"", False
        while not ended:
            chunk = tls.recv(65536)
            assert chunk, "connection closed before the answer"
            for event in conn.receive_data(chunk):
                if isinstance(event, h2.events.ResponseReceived):
                    status = int(dict(event.headers)[b":status"])
                elif isinstance(event, h2.events.DataReceived):
                    body += event.data
                    conn.acknowledge_received_data(len(event.data), 1)
                elif isinstance(event, h2.events.StreamEnded):
                    ended = True
            tls.sendall(conn.data_to_send())
    return status, body


def _health_h3(srv: ThreadServer, drain_first: bool) -> tuple[int, bytes]:
    port = srv.server.http3_port
    assert port is not None
    with H3Client(port) as client:
        stream = client.send_request("GET", "/healthz", end=False)
        if drain_first:
            srv.server.request_shutdown()
            _wait_draining(srv)
        client.send_data(stream, b"", end=True)
        response = client.wait_response(stream)
    return response.status, bytes(response.body)


HEALTH = {"h1": _health_h1, "h2": _health_h2, "h3": _health_h3}


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_health_path_is_200_while_serving_and_503_while_draining(protocol: str) -> None:
    check = HEALTH[protocol]
    srv = ThreadServer(hello, cert_data=CERT, key_data=KEY, health_path="/healthz").start()
    try:
        assert check(srv, False) == (200, b"ok\n")
        assert _get(srv, protocol, "/other")[0] == 200  # everything else reaches the app
        assert check(srv, True) == (503, b"draining\n")
    finally:
        srv.stop()


def test_health_path_from_cli_environment_and_file(tmp_path: Any) -> None:
    with cli_server("apps:scope_json", "--port", "0", "--health-path", "/healthz") as srv:
        answer = httpx.get(srv.url + "/healthz")
        app_answer = httpx.get(srv.url + "/healthz/not")
    assert (answer.status_code, answer.text) == (200, "ok\n")
    assert answer.headers["cache-control"] == "no-store"
    assert app_answer.json()["path"] == "/healthz/not"
    with cli_server("apps:scope_json", "--port", "0", env={"ASGIRI_HEALTH_PATH": "/hz"}) as srv:
        assert httpx.get(srv.url + "/hz").text == "ok\n"
    config = tmp_path / "c.toml"
    config.write_text('health_path = "/live"\nroot_path = "/app"\n')
    with cli_server("apps:scope_json", "--port", "0", "--config", str(config)) as srv:
        assert httpx.get(srv.url + "/live").text == "ok\n"  # root_path is the proxy's
    bad = run_cli("apps:hello", "--health-path", "healthz")
    assert bad.returncode == 2
    assert "--health-path must be a path starting with '/'" in bad.stderr
