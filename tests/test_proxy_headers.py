"""--proxy-headers, --forwarded-allow-ips: parsing, and servers with trusted and untrusted peers."""

from __future__ import annotations

import json
import os
import socket
from pathlib import Path
from typing import Any

import httpx
import pytest
from websockets.sync.client import connect as ws_connect

from asgiri.config import Config
from asgiri.protocol.proxy_headers import TrustedProxies, forwarded_info
from asgiri.ssl_utils import generate_self_signed_cert

from .h3_client import H3Client
from .proxyapps import whoami
from .servers import run_cli, serve

TIMEOUT = 10.0


def info(headers: dict[str, str], trusted: str = "127.0.0.1", websocket: bool = False) -> Any:
    pairs = [(k.lower().encode(), v.encode()) for k, v in headers.items()]
    return forwarded_info(pairs, TrustedProxies(trusted), websocket)


# ----------------------------------------------------------------------------- sans-I/O


def test_trusted_list_addresses_networks_and_keywords() -> None:
    proxies = TrustedProxies("127.0.0.1, 10.0.0.0/8,[::1], fd00::/8")
    assert proxies.trusts("127.0.0.1")
    assert proxies.trusts("10.20.30.40")
    assert proxies.trusts("::1")
    assert proxies.trusts("fd00::5")
    assert proxies.trusts("::ffff:10.1.1.1")  # a dual-stack socket's IPv4 peer
    assert not proxies.trusts("127.0.0.2")
    assert not proxies.trusts("11.0.0.1")
    assert not proxies.trusts("unknown")
    assert not proxies.trusts(None)  # a Unix socket peer needs 'unix'
    assert TrustedProxies("unix").trusts(None)
    assert TrustedProxies("*").trusts("198.51.100.1")
    assert not TrustedProxies("").trusts("127.0.0.1")


@pytest.mark.parametrize("bad", ["10.0.0.300", "example.com", "10.0.0.0/33"])
def test_trusted_list_rejects_what_is_not_an_address(bad: str) -> None:
    with pytest.raises(ValueError, match="not an IP"):
        TrustedProxies(f"127.0.0.1,{bad}")


def test_x_forwarded_for_rightmost_untrusted_hop_is_the_client() -> None:
    # client forged "6.6.6.6"; 203.0.113.9 is who reached our first proxy, 10.0.0.5.
    got = info({"X-Forwarded-For": "6.6.6.6, 203.0.113.9, 10.0.0.5"}, "127.0.0.1,10.0.0.0/8")
    assert got.client == ("203.0.113.9", 0)
    # Every hop trusted: the leftmost is the client.
    got = info({"X-Forwarded-For": "10.0.0.7, 10.0.0.5"}, "127.0.0.1,10.0.0.0/8")
    assert got.client == ("10.0.0.7", 0)
    # '*' believes the whole chain.
    assert info({"X-Forwarded-For": "6.6.6.6, 10.0.0.5"}, "*").client == ("6.6.6.6", 0)


def test_x_forwarded_proto_and_host() -> None:
    got = info({"X-Forwarded-Proto": "HTTPS", "X-Forwarded-Host": "example.com:8443"})
    assert got.scheme == "https"
    assert got.host == b"example.com:8443"
    assert info({"X-Forwarded-Proto": "https"}, websocket=True).scheme == "wss"
    assert info({"X-Forwarded-Proto": "http"}, websocket=True).scheme == "ws"
    assert info({"X-Forwarded-Proto": "wss"}).scheme == "https"
    assert info({"X-Forwarded-Proto": "gopher"}).scheme is None
    assert info({"X-Forwarded-Host": "evil.com/path x"}).host is None
    # Lists that line up with X-Forwarded-For: the client's own proxy wrote its entry.
    got = info(
        {"X-Forwarded-For": "203.0.113.9, 10.0.0.5", "X-Forwarded-Proto": "https, http"},
        "127.0.0.1,10.0.0.0/8",
    )
    assert got.scheme == "https"


def test_forwarded_rfc7239() -> None:
    got = info(
        {
            "Forwarded": 'for=6.6.6.6, for="[2001:db8::1]:4711";proto=https;host=example.com, '
            "for=10.0.0.5;proto=http"
        },
        "127.0.0.1,10.0.0.0/8",
    )
    assert got.client == ("2001:db8::1", 4711)
    assert got.scheme == "https"
    assert got.host == b"example.com"
    # Forwarded first, X-Forwarded-* for what it lacks.
    got = info({"Forwarded": "for=192.0.2.60", "X-Forwarded-Proto": "https"})
    assert got.client == ("192.0.2.60", 0)
    assert got.scheme == "https"
    # A malformed Forwarded header is not believed at all.
    got = info({"Forwarded": "for=1.2.3.4;;=x", "X-Forwarded-For": "192.0.2.1"})
    assert got.client == ("192.0.2.1", 0)


def test_no_proxy_headers_no_change() -> None:
    assert info({"Host": "a", "X-Other": "b"}) is None


def test_forwarded_allow_ips_from_environment_is_read_at_start_up(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("FORWARDED_ALLOW_IPS", "10.1.0.0/16")
    config = Config.from_options("m:app")
    assert config.proxy.forwarded_allow_ips is None  # building a config reads no environment
    assert config.proxy.allow_ips(os.environ) == "10.1.0.0/16"
    given = Config.from_options("m:app", forwarded_allow_ips="192.0.2.1")
    assert given.proxy.allow_ips(os.environ) == "192.0.2.1"
    assert config.proxy.allow_ips({}) == "127.0.0.1"
    with pytest.raises(ValueError, match="FORWARDED_ALLOW_IPS must list IP addresses"):
        config.proxy.allow_ips({"FORWARDED_ALLOW_IPS": "localhost"})


def test_a_server_trusts_the_proxies_of_its_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FORWARDED_ALLOW_IPS", "127.0.0.0/24")
    with serve(whoami) as srv:
        got = raw_get(srv.port, PROXY_HEADERS, source="127.0.0.2")
    assert got["client"] == ["198.51.100.20", 0]
    monkeypatch.setenv("FORWARDED_ALLOW_IPS", "127.0.0.1,localhost")
    result = run_cli("apps:hello", "--port", "0")
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [
        "Error: FORWARDED_ALLOW_IPS must list IP addresses and networks: "
        "not an IP address or network: 'localhost'"
    ]


def test_cli_rejects_a_bad_forwarded_allow_ips() -> None:
    result = run_cli("apps:hello", "--forwarded-allow-ips", "127.0.0.1,localhost")
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1
    assert "--forwarded-allow-ips" in result.stderr and "'localhost'" in result.stderr


# ----------------------------------------------------------------------------- real servers

PROXY_HEADERS = (
    b"X-Forwarded-For: 198.51.100.20, 127.0.0.1\r\n"
    b"X-Forwarded-Proto: https\r\n"
    b"X-Forwarded-Host: shop.example\r\n"
)


def raw_get(port: int, extra: bytes, source: str = "127.0.0.1") -> dict[str, Any]:
    """One request from ``source`` (any 127/8 address is a distinct peer on loopback)."""
    with socket.socket() as sock:
        sock.settimeout(TIMEOUT)
        sock.bind((source, 0))
        sock.connect(("127.0.0.1", port))
        sock.sendall(
            b"GET / HTTP/1.1\r\nHost: internal:8000\r\n" + extra + b"Connection: close\r\n\r\n"
        )
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 "), head
    result: dict[str, Any] = json.loads(body)
    return result


def test_trusted_peer_headers_apply() -> None:
    with serve(whoami) as srv:
        got = raw_get(srv.port, PROXY_HEADERS)
    assert got["client"] == ["198.51.100.20", 0]
    assert got["scheme"] == "https"
    assert got["host"] == "shop.example"


def test_untrusted_peer_headers_are_ignored() -> None:
    with serve(whoami) as srv:
        got = raw_get(srv.port, PROXY_HEADERS, source="127.0.0.2")
    assert got["client"][0] == "127.0.0.2"
    assert got["scheme"] == "http"
    assert got["host"] == "internal:8000"


def test_trusted_network_and_no_proxy_headers() -> None:
    with serve(whoami, forwarded_allow_ips="127.0.0.0/24") as srv:
        got = raw_get(srv.port, PROXY_HEADERS, source="127.0.0.2")
    assert got["client"] == ["198.51.100.20", 0]
    with serve(whoami, proxy_headers=False) as srv:
        got = raw_get(srv.port, PROXY_HEADERS)
    assert got["client"][0] == "127.0.0.1"
    assert got["scheme"] == "http"


def test_forwarded_header_over_http2() -> None:
    headers = {"Forwarded": 'for="[2001:db8::7]:5000";proto=https;host=api.example'}
    with serve(whoami) as srv, httpx.Client(http1=False, http2=True, timeout=TIMEOUT) as client:
        response = client.get(srv.url, headers=headers)
    assert response.http_version == "HTTP/2"
    got = response.json()
    assert got["client"] == ["2001:db8::7", 5000]
    assert got["scheme"] == "https"
    assert got["host"] == "api.example"


def test_forwarded_header_over_http3() -> None:
    cert, key = generate_self_signed_cert("localhost", key_type="ec")
    headers = [(b"forwarded", b"for=203.0.113.9:4000;proto=http;host=h3.example")]
    with serve(whoami, cert_data=cert, key_data=key) as srv:
        assert srv.server.http3_port is not None
        with H3Client(srv.server.http3_port) as client:
            trusted = json.loads(client.get("/", headers=headers).body)
        with serve(whoami, cert_data=cert, key_data=key, proxy_headers=False) as off:
            assert off.server.http3_port is not None
            with H3Client(off.server.http3_port) as client:
                ignored = json.loads(client.get("/", headers=headers).body)
    assert trusted["http_version"] == "3"
    assert trusted["client"] == ["203.0.113.9", 4000]
    assert trusted["scheme"] == "http"
    assert trusted["host"] == "h3.example"
    assert ignored["client"][0] == "127.0.0.1"
    assert ignored["scheme"] == "https"


def test_websocket_scheme_from_x_forwarded_proto() -> None:
    with serve(whoami) as srv:
        url = f"ws://127.0.0.1:{srv.port}/"
        headers = {"X-Forwarded-Proto": "https", "X-Forwarded-For": "192.0.2.33"}
        with ws_connect(url, additional_headers=headers, open_timeout=TIMEOUT) as ws:
            got = json.loads(ws.recv(timeout=TIMEOUT))
    assert got["type"] == "websocket"
    assert got["scheme"] == "wss"
    assert got["client"] == ["192.0.2.33", 0]


def test_unix_socket_peers_trusted_with_unix(tmp_path: Path) -> None:
    path = str(tmp_path / "app.sock")
    headers = {"X-Forwarded-For": "192.0.2.9", "X-Forwarded-Proto": "https"}
    for allow, expected in (("unix", ["192.0.2.9", 0]), ("127.0.0.1", None)):
        with (
            serve(whoami, uds=path, forwarded_allow_ips=allow),
            httpx.Client(transport=httpx.HTTPTransport(uds=path), timeout=TIMEOUT) as client,
        ):
            got = client.get("http://proxy/", headers=headers).json()
        assert got["client"] == expected, allow
        assert got["scheme"] == ("https" if expected else "http")
