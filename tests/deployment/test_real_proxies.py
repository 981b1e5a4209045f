"""asgiri behind real nginx and HAProxy (Debian packages, installed by `make test`).

The client connects to the proxy from another loopback address (127.0.0.5,
127.0.0.6...), so "the app sees the original client" is distinguishable
from "the app sees the proxy" (127.0.0.1).
"""

from __future__ import annotations

import json
import re
import socket
import ssl
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from websockets.sync.client import connect as ws_connect

from tests.apps.proxy import whoami
from tests.support import realproxies as realproxies
from tests.support.realproxies import haproxy, nginx
from tests.support.servers import ThreadServer, serve

TIMEOUT = 10.0


def client_from(
    source: str, verify: ssl.SSLContext | bool = False, http2: bool = False
) -> httpx.Client:
    """An httpx client whose connections come from loopback address ``source``."""
    transport = httpx.HTTPTransport(
        local_address=source, verify=verify, http1=not http2, http2=http2
    )
    return httpx.Client(transport=transport, timeout=TIMEOUT)


def connected_from(source: str, port: int) -> socket.socket:
    sock = socket.socket()
    sock.settimeout(TIMEOUT)
    sock.bind((source, 0))
    sock.connect(("127.0.0.1", port))
    return sock


# ----------------------------------------------------------------------------- nginx


@pytest.fixture(scope="module")
def behind_nginx(
    cert_files: tuple[str, str], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[ThreadServer, Any]]:
    certfile, keyfile = cert_files
    directory = tmp_path_factory.mktemp("nginx")
    with serve(whoami) as srv, nginx(srv.port, certfile, keyfile, directory) as proxy:
        yield srv, proxy


def test_nginx_http_original_client_scheme_and_host(behind_nginx: tuple[ThreadServer, Any]) -> None:
    _, proxy = behind_nginx
    with client_from("127.0.0.5") as client:
        response = client.get(
            f"http://127.0.0.1:{proxy.ports[0]}/", headers={"Host": "shop.example"}
        )
    assert response.status_code == 200, response.text
    got = response.json()
    assert got["client"] == ["127.0.0.5", 0]
    assert got["scheme"] == "http"
    assert got["host"] == "shop.example"


def test_nginx_https_sets_scheme_https(
    behind_nginx: tuple[ThreadServer, Any], cert_files: tuple[str, str]
) -> None:
    _, proxy = behind_nginx
    context = ssl.create_default_context(cafile=cert_files[0])
    url = f"https://localhost:{proxy.ports[1]}/"
    with client_from("127.0.0.5", verify=context) as client:
        got = client.get(url).json()
    assert got["scheme"] == "https"
    assert got["client"] == ["127.0.0.5", 0]
    assert got["host"] == f"localhost:{proxy.ports[1]}"


def test_nginx_forged_x_forwarded_for_does_not_win(behind_nginx: tuple[ThreadServer, Any]) -> None:
    """nginx appends the real peer; the forged entry left of it is not believed."""
    _, proxy = behind_nginx
    with client_from("127.0.0.5") as client:
        got = client.get(
            f"http://127.0.0.1:{proxy.ports[0]}/", headers={"X-Forwarded-For": "6.6.6.6"}
        ).json()
    assert got["client"] == ["127.0.0.5", 0]


def test_nginx_websocket_pass_through(
    behind_nginx: tuple[ThreadServer, Any], cert_files: tuple[str, str]
) -> None:
    _, proxy = behind_nginx
    sock = connected_from("127.0.0.5", proxy.ports[0])
    with ws_connect(f"ws://127.0.0.1:{proxy.ports[0]}/ws", sock=sock) as ws:
        got = json.loads(ws.recv(timeout=TIMEOUT))
        ws.send("through nginx")
        assert ws.recv(timeout=TIMEOUT) == "echo:through nginx"
    assert got["type"] == "websocket"
    assert got["scheme"] == "ws"
    assert got["client"] == ["127.0.0.5", 0]
    context = ssl.create_default_context(cafile=cert_files[0])
    sock = connected_from("127.0.0.5", proxy.ports[1])
    url = f"wss://localhost:{proxy.ports[1]}/ws"
    with ws_connect(url, sock=sock, ssl=context, server_hostname="localhost") as ws:
        got = json.loads(ws.recv(timeout=TIMEOUT))
    assert got["scheme"] == "wss"


def test_nginx_peer_not_trusted_headers_ignored(
    cert_files: tuple[str, str], tmp_path: Path
) -> None:
    certfile, keyfile = cert_files
    with (
        serve(whoami, forwarded_allow_ips="192.0.2.1") as srv,
        nginx(srv.port, certfile, keyfile, tmp_path) as proxy,
        client_from("127.0.0.5") as client,
    ):
        got = client.get(f"http://127.0.0.1:{proxy.ports[0]}/").json()
    assert got["client"][0] == "127.0.0.1"  # nginx itself


# ----------------------------------------------------------------------------- HAProxy


def raw_get(sock: socket.socket, host: str) -> dict[str, Any]:
    with sock:
        sock.sendall(f"GET / HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n".encode())
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 "), data[:300]
    result: dict[str, Any] = json.loads(body)
    return result


@pytest.mark.parametrize("send_proxy", ["send-proxy-v2", "send-proxy"])
def test_haproxy_proxy_protocol(send_proxy: str, tmp_path: Path) -> None:
    with (
        serve(whoami, proxy_protocol=True) as srv,
        haproxy(srv.port, send_proxy, tmp_path) as proxy,
    ):
        sock = connected_from("127.0.0.6", proxy.port)
        local_port = sock.getsockname()[1]
        got = raw_get(sock, "lb.example")
    assert got["client"] == ["127.0.0.6", local_port]
    assert got["server"] == ["127.0.0.1", proxy.port]
    assert got["host"] == "lb.example"
    assert got["scheme"] == "http"


def test_haproxy_v2_tls_passthrough_and_http2(cert_files: tuple[str, str], tmp_path: Path) -> None:
    """TLS passes through HAProxy untouched; the PROXY header comes before the handshake."""
    certfile, keyfile = cert_files
    context = ssl.create_default_context(cafile=certfile)
    with (
        serve(whoami, proxy_protocol=True, certfile=certfile, keyfile=keyfile) as srv,
        haproxy(srv.port, "send-proxy-v2", tmp_path) as proxy,
        client_from("127.0.0.6", verify=context, http2=True) as client,
    ):
        response = client.get(f"https://localhost:{proxy.port}/")
    assert response.http_version == "HTTP/2"
    got = response.json()
    assert got["scheme"] == "https"
    assert got["client"][0] == "127.0.0.6"


def test_haproxy_v2_cleartext_http2(tmp_path: Path) -> None:
    with (
        serve(whoami, proxy_protocol=True) as srv,
        haproxy(srv.port, "send-proxy-v2", tmp_path) as proxy,
        client_from("127.0.0.7", http2=True) as client,
    ):
        response = client.get(f"http://127.0.0.1:{proxy.port}/")
    assert response.http_version == "HTTP/2"
    assert response.json()["client"][0] == "127.0.0.7"


def test_haproxy_http_mode_forwardfor(tmp_path: Path) -> None:
    with (
        serve(whoami) as srv,
        haproxy(srv.port, "http", tmp_path) as proxy,
    ):
        sock = connected_from("127.0.0.8", proxy.port)
        got = raw_get(sock, "www.example")
        ws_sock = connected_from("127.0.0.8", proxy.port)
        with ws_connect(f"ws://127.0.0.1:{proxy.port}/ws", sock=ws_sock) as ws:
            ws_got = json.loads(ws.recv(timeout=TIMEOUT))
            ws.send("through haproxy")
            assert ws.recv(timeout=TIMEOUT) == "echo:through haproxy"
    assert got["client"] == ["127.0.0.8", 0]
    assert got["scheme"] == "http"
    assert got["host"] == "www.example"
    assert ws_got["client"] == ["127.0.0.8", 0]
    assert ws_got["scheme"] == "ws"


def test_deployment_doc_shows_the_tested_configs() -> None:
    """The proxy directives in docs/deployment.md are the ones these tests run."""
    doc = (Path(__file__).resolve().parents[2] / "docs" / "deployment.md").read_text()
    blocks = re.findall(r"```(nginx|haproxy)\n(.*?)```", doc, re.S)
    assert {kind for kind, _ in blocks} == {"nginx", "haproxy"}
    tested = {
        "nginx": _directives(realproxies.NGINX_CONF.replace("{{", "{").replace("}}", "}")),
        "haproxy": _directives(realproxies.HAPROXY_CONF + realproxies.HAPROXY_HTTP_CONF)
        | {"timeout tunnel 1h"},
    }
    tested["haproxy"] = {line.replace("{{", "{").replace("}}", "}") for line in tested["haproxy"]}
    skip = re.compile(
        r"^(listen|bind|server |ssl_certificate|server_name|frontend|backend|\}|.*\{$)"
    )
    for kind, text in blocks:
        for line in _directives(text):
            if not skip.match(line):
                assert line in tested[kind], f"{kind}: {line!r} is not in the tested config"


def _directives(text: str) -> set[str]:
    return {
        line.strip()
        for line in text.splitlines()
        if line.strip() and not line.strip().startswith("#")
    }
