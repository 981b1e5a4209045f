"""What the server itself adds to or answers for every protocol: --header and --health-path.

Each is checked on HTTP/1.1, HTTP/2 and HTTP/3 against one real TLS server,
with real clients (httpx over TCP, aioquic over QUIC).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from asgiri.ssl_utils import generate_self_signed_cert
from tests.h3_client import H3Client
from tests.servers import ThreadServer, cli_server, run_cli, serve

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
    import socket
    import ssl

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
