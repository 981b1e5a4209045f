"""PROXY protocol v1/v2: the sans-I/O parser, and --proxy-protocol servers fed by raw sockets."""

from __future__ import annotations

import ipaddress
import json
import socket
import ssl
import struct
import time
from pathlib import Path
from typing import Any

import pytest

from asgiri.protocol.proxy_protocol import V2_SIGNATURE, ProxyProtocolError, parse
from tests.apps.proxy import whoami
from tests.support.servers import cli_server, serve

TIMEOUT = 10.0
V1 = b"PROXY TCP4 198.51.100.7 192.0.2.1 50123 443\r\n"


def v2(
    src: str = "198.51.100.7",
    dst: str = "192.0.2.1",
    sport: int = 50123,
    dport: int = 443,
    command: int = 1,
    tlvs: bytes = b"",
) -> bytes:
    a, b = ipaddress.ip_address(src), ipaddress.ip_address(dst)
    family = 0x11 if a.version == 4 else 0x21
    body = a.packed + b.packed + struct.pack("!HH", sport, dport) + tlvs
    return V2_SIGNATURE + bytes([0x20 | command, family]) + struct.pack("!H", len(body)) + body


# ----------------------------------------------------------------------------- sans-I/O


def test_v1_header_and_what_follows() -> None:
    header = parse(V1 + b"GET / HTTP/1.1\r\n")
    assert header is not None
    assert header.version == 1
    assert header.length == len(V1)
    assert header.client == ("198.51.100.7", 50123)
    assert header.server == ("192.0.2.1", 443)
    six = parse(b"PROXY TCP6 2001:db8::1 2001:db8::2 1 65535\r\n")
    assert six is not None and six.client == ("2001:db8::1", 1)
    unknown = parse(b"PROXY UNKNOWN whatever\r\n\x16\x03")
    assert unknown is not None and unknown.client is None and unknown.length == 24


def test_v2_header_with_tlvs_ipv6_and_local() -> None:
    data = v2(tlvs=b"\x01\x00\x02h2") + b"\x16\x03\x01"
    header = parse(data)
    assert header is not None
    assert header.version == 2
    assert header.length == len(data) - 3
    assert header.client == ("198.51.100.7", 50123)
    six = parse(v2("2001:db8::5", "2001:db8::6", 7, 8))
    assert six is not None and six.client == ("2001:db8::5", 7) and six.server == ("2001:db8::6", 8)
    local = parse(v2(command=0))
    assert local is not None and local.client is None and local.server is None


@pytest.mark.parametrize("header", [V1, v2(tlvs=b"\x04\x00\x05abcde")])
def test_every_split_point_needs_more(header: bytes) -> None:
    """Short of the full header the answer is always "more", never an error or a guess."""
    for n in range(len(header)):
        assert parse(header[:n]) is None, n
    assert parse(header) is not None


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", "no PROXY protocol header"),
        (b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03", "no PROXY protocol header"),
        (b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2 3\r\n", "malformed"),
        (b"PROXY TCP4 1.2.3.400 5.6.7.8 1 2\r\n", "bad address"),
        (b"PROXY TCP4 ::1 5.6.7.8 1 2\r\n", "does not match"),
        (b"PROXY TCP4 1.2.3.4 5.6.7.8 01 2\r\n", "bad port"),
        (b"PROXY TCP4 1.2.3.4 5.6.7.8 1 65536\r\n", "out of range"),
        (b"PROXY " + b"x" * 120, "no CRLF"),
        (b"PROXY TCP4 1.2.3.4\n", "no CRLF"),
        (V2_SIGNATURE + b"\x10\x11\x00\x0c" + bytes(12), "version 1"),
        (V2_SIGNATURE + b"\x22\x11\x00\x0c" + bytes(12), "unknown command"),
        (V2_SIGNATURE + b"\x21\x11\x00\x04" + bytes(4), "address block"),
        (V2_SIGNATURE + b"\x21\x41\x00\x00", "unknown address family"),
    ],
)
def test_malformed_headers(data: bytes, message: str) -> None:
    with pytest.raises(ProxyProtocolError, match=message):
        parse(data)


# ----------------------------------------------------------------------------- real servers


def exchange(port: int, chunks: list[bytes], tls: ssl.SSLContext | None = None) -> bytes:
    """Send ``chunks`` (PROXY header first, in pieces) and read the answer to EOF."""
    with socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT) as sock:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        for index, chunk in enumerate(chunks):
            if index:
                # Spread the pieces over separate reads on the server (the
                # result does not depend on it: any split must work).
                time.sleep(0.02)
            sock.sendall(chunk)
        request = b"GET / HTTP/1.1\r\nHost: app.example\r\nConnection: close\r\n\r\n"
        if tls is not None:
            with tls.wrap_socket(sock, server_hostname="localhost") as tls_sock:
                tls_sock.sendall(request)
                return read_all(tls_sock)
        sock.sendall(request)
        return read_all(sock)


def read_all(sock: socket.socket) -> bytes:
    data = b""
    while chunk := sock.recv(65536):
        data += chunk
    return data


def closed_unanswered(port: int, data: bytes) -> bool:
    """Send ``data``; True when the server closes (or resets) without a byte of answer."""
    with socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT) as sock:
        sock.sendall(data)
        try:
            return sock.recv(65536) == b""
        except ConnectionResetError:
            return True


def body_json(raw: bytes) -> dict[str, Any]:
    head, _, body = raw.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 "), raw[:200]
    result: dict[str, Any] = json.loads(body)
    return result


def test_v1_and_v2_set_client_and_server() -> None:
    with serve(whoami, proxy_protocol=True) as srv:
        got = body_json(exchange(srv.port, [V1]))
        assert got["client"] == ["198.51.100.7", 50123]
        assert got["server"] == ["192.0.2.1", 443]
        got = body_json(exchange(srv.port, [v2("2001:db8::9", "2001:db8::1", 4000, 80)]))
        assert got["client"] == ["2001:db8::9", 4000]
        assert got["server"] == ["2001:db8::1", 80]


@pytest.mark.parametrize("loop", ["asyncio", "uvloop"])
def test_header_split_across_reads(loop: str) -> None:
    header = v2(tlvs=b"\x02\x00\x0bexample.com")
    with serve(whoami, proxy_protocol=True, loop=loop) as srv:
        got = body_json(exchange(srv.port, [header[:5], header[5:14], header[14:30], header[30:]]))
        assert got["client"] == ["198.51.100.7", 50123]
        got = body_json(exchange(srv.port, [V1[:3], V1[3:20], V1[20:]]))
        assert got["client"] == ["198.51.100.7", 50123]


def test_v2_local_keeps_the_real_peer() -> None:
    with serve(whoami, proxy_protocol=True) as srv:
        port = srv.port
        got = body_json(exchange(port, [v2(command=0)]))
    assert got["client"][0] == "127.0.0.1"
    assert got["server"] == ["127.0.0.1", port]


def test_proxy_header_address_is_what_forwarded_allow_ips_checks() -> None:
    """The PROXY header's client is the peer: a proxy behind the balancer is trusted by it."""
    forwarded = b"X-Forwarded-For: 203.0.113.50\r\n"
    with serve(whoami, proxy_protocol=True, forwarded_allow_ips="10.0.0.0/8") as srv:
        request = b"GET / HTTP/1.1\r\nHost: a\r\n" + forwarded + b"Connection: close\r\n\r\n"
        trusted = v2("10.1.2.3", "10.0.0.1", 1000, 80)
        with socket.create_connection(("127.0.0.1", srv.port), timeout=TIMEOUT) as sock:
            sock.sendall(trusted + request)
            assert body_json(read_all(sock))["client"] == ["203.0.113.50", 0]
        with socket.create_connection(("127.0.0.1", srv.port), timeout=TIMEOUT) as sock:
            sock.sendall(v2() + request)
            assert body_json(read_all(sock))["client"] == ["198.51.100.7", 50123]


@pytest.mark.parametrize("loop", ["asyncio", "uvloop"])
def test_proxy_header_before_tls(cert_files: tuple[str, str], loop: str) -> None:
    certfile, keyfile = cert_files
    context = ssl.create_default_context(cafile=certfile)
    with serve(whoami, proxy_protocol=True, certfile=certfile, keyfile=keyfile, loop=loop) as srv:
        got = body_json(exchange(srv.port, [v2()], tls=context))
        assert got["scheme"] == "https"
        assert got["client"] == ["198.51.100.7", 50123]
        # The header and the ClientHello in one segment: nothing of TLS is eaten.
        with socket.create_connection(("127.0.0.1", srv.port), timeout=TIMEOUT) as sock:
            incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
            tls = context.wrap_bio(incoming, outgoing, server_hostname="localhost")
            with pytest.raises(ssl.SSLWantReadError):
                tls.do_handshake()
            sock.sendall(V1 + outgoing.read())
            while True:
                try:
                    tls.do_handshake()
                    break
                except ssl.SSLWantReadError:
                    sock.sendall(outgoing.read())
                    data = sock.recv(65536)
                    assert data, "server closed during the handshake"
                    incoming.write(data)
            sock.sendall(outgoing.read())
            tls.write(b"GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
            sock.sendall(outgoing.read())
            raw = b""
            while True:
                try:
                    raw += tls.read(65536)
                except ssl.SSLWantReadError:
                    data = sock.recv(65536)
                    if not data:
                        break
                    incoming.write(data)
                except ssl.SSLZeroReturnError:
                    break
                if raw.count(b"}") and raw.endswith(b"}"):
                    break
        assert body_json(raw)["client"] == ["198.51.100.7", 50123]


def test_bad_or_missing_header_closes_with_one_log_line(tmp_path: Path) -> None:
    with cli_server(
        "apps.proxy:whoami", "--port", "0", "--proxy-protocol", "--timeout-request-header", "0.5"
    ) as srv:
        assert srv.port is not None
        before = len(srv.lines)
        assert closed_unanswered(srv.port, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        srv.wait_for(r"closing connection from 127\.0\.0\.1:\d+: no PROXY protocol header")
        assert closed_unanswered(srv.port, b"PROXY TCP4 1.2.3.4 5.6.7.8 1 99999\r\n")
        srv.wait_for(r"closing connection from 127\.0\.0\.1:\d+: port 99999 out of range")
        # A header that never completes is cut off by --timeout-request-header.
        assert closed_unanswered(srv.port, V1[:10])
        srv.wait_for(r"no complete PROXY protocol header within 0.5s")
        new = srv.lines[before:]
    # Start-up lines logged after "Listening on" may land in ``new`` too; what
    # counts is one line per refused connection, and nothing else of note.
    notable = [line for line in new if " INFO " not in line]
    assert len(notable) == 3, new
    assert all("closing connection from 127.0.0.1:" in line for line in notable), new
    assert not any("Traceback" in line for line in new)
