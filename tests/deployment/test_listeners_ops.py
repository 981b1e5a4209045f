"""Listener options for deployments: socket file modes and clean-up, pid files,
TLS and cleartext listeners in one process, HTTP/3 on its own address.

Every case runs a real server (the CLI in a subprocess, or a thread) and
talks to it with real clients.
"""

from __future__ import annotations

import asyncio
import os
import re
import signal
import socket
import stat
from pathlib import Path

import httpx
import pytest
import websockets

from asgiri.server import Server
from tests.apps import hello, scope_json
from tests.support.h3_client import H3Client
from tests.support.servers import CLIServer, run_cli, serve


def _get_uds(path: Path) -> httpx.Response:
    with httpx.Client(transport=httpx.HTTPTransport(uds=str(path))) as client:
        return client.get("http://localhost/")


# ---------------------------------------------------------------- --uds-permissions, clean-up


@pytest.mark.parametrize(
    ("extra", "mode"),
    [
        ([], 0o666),
        (["--uds-permissions", "600"], 0o600),
        (["--uds-permissions", "0o660", "--workers", "2"], 0o660),
        (["--uds-permissions", "0640", "--reload"], 0o640),
    ],
)
def test_uds_mode_and_the_socket_file_is_removed_on_exit(
    tmp_path: Path, extra: list[str], mode: int
) -> None:
    sock = tmp_path / "app.sock"
    srv = CLIServer("apps:hello", "--uds", str(sock), *extra, cwd=tmp_path)
    try:
        srv.wait_for(r"Listening on http\+unix://")
        assert stat.S_IMODE(sock.stat().st_mode) == mode
        assert _get_uds(sock).text == "Hello, World!"
    finally:
        code = srv.stop()
    assert code == 0, srv.output
    assert not sock.exists(), "the socket file was left behind"


def test_a_replaced_socket_file_is_not_removed(tmp_path: Path) -> None:
    """A server that finds its socket file replaced (a newer server) leaves that one alone."""
    sock = tmp_path / "app.sock"
    srv = CLIServer("apps:hello", "--bind", f"unix:{sock}")
    try:
        srv.wait_for(r"Listening on http\+unix://")
        sock.unlink()
        newer = socket.socket(socket.AF_UNIX)
        newer.bind(str(sock))
    finally:
        srv.stop()
    try:
        assert sock.exists()
    finally:
        newer.close()


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("999", "--uds-permissions must be an octal file mode such as 660, got '999'"),
        ("1777", "--uds-permissions must be an octal file mode from 000 to 777"),
    ],
)
def test_bad_uds_permissions_are_one_line(value: str, message: str) -> None:
    result = run_cli("apps:hello", "--uds", "/tmp/x.sock", "--uds-permissions", value)
    assert result.returncode == 2
    assert message in result.stderr


def test_uds_permissions_from_file_environment_and_python(tmp_path: Path) -> None:
    config = tmp_path / "c.toml"
    config.write_text(f'uds = "{tmp_path / "f.sock"}"\nuds_permissions = 0o620\n')
    srv = CLIServer("apps:hello", "--config", str(config))
    try:
        srv.wait_for(r"Listening on http\+unix://")
        assert stat.S_IMODE((tmp_path / "f.sock").stat().st_mode) == 0o620
    finally:
        srv.stop()
    env_sock = tmp_path / "e.sock"
    srv = CLIServer(
        "apps:hello", env={"ASGIRI_UDS": str(env_sock), "ASGIRI_UDS_PERMISSIONS": "604"}
    )
    try:
        srv.wait_for(r"Listening on http\+unix://")
        assert stat.S_IMODE(env_sock.stat().st_mode) == 0o604
    finally:
        srv.stop()
    assert Server(
        "apps:hello", uds="/tmp/x", uds_permissions="660"
    ).config.bind.uds_permissions == (0o660)
    printed = run_cli("apps:hello", "--uds", "/tmp/x", "--uds-permissions", "660", "--print-config")
    assert "uds_permissions = 0o660" in printed.stdout


# ---------------------------------------------------------------- --pid


@pytest.mark.parametrize("extra", [[], ["--workers", "2"]])
def test_pid_file_names_the_process_to_signal_and_goes_on_exit(
    tmp_path: Path, extra: list[str]
) -> None:
    pid_path = tmp_path / "run" / "asgiri.pid"
    pid_path.parent.mkdir()
    srv = CLIServer("apps:hello", "--port", "0", "--pid", str(pid_path), *extra)
    try:
        srv.wait_ready()
        if extra:
            srv.wait_count(r"Worker process \[\d+\] is ready", 2)
        assert pid_path.read_text() == f"{srv.proc.pid}\n"
        assert httpx.get(srv.url).status_code == 200  # serving: its signal handlers are in
        os.kill(int(pid_path.read_text()), signal.SIGTERM)  # what an init script does
        assert srv.wait(30) == 0
    finally:
        srv.stop()
    assert not pid_path.exists()


def test_pid_file_spellings_and_errors(tmp_path: Path) -> None:
    pid_path = tmp_path / "g.pid"
    srv = CLIServer("apps:hello", "--port", "0", "--pid-file", str(pid_path))
    try:
        srv.wait_ready()
        assert pid_path.read_text().strip() == str(srv.proc.pid)
    finally:
        srv.stop()
    result = run_cli("apps:hello", "--port", "0", "--pid", str(tmp_path / "no" / "dir" / "x.pid"))
    assert result.returncode == 1
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert lines[-1].startswith("Error: cannot write --pid file"), result.stderr


# ---------------------------------------------------------------- TLS and cleartext together


_LISTEN = r"Listening on (https?)://127\.0\.0\.1:(\d+) \(([^)]*)\)(.*)"


def _ports(srv: CLIServer) -> dict[str, tuple[int, str]]:
    """scheme -> (port, the rest of its "Listening on" line), from the log."""
    found: dict[str, tuple[int, str]] = {}
    for line in srv.wait_count(_LISTEN, 2):
        match = re.search(_LISTEN, line)
        assert match is not None
        found[match.group(1)] = (int(match.group(2)), match.group(3) + match.group(4))
    return found


def _alt_svc(url: str, http2: bool) -> str | None:
    with httpx.Client(verify=False, http1=not http2, http2=http2) as client:
        response = client.get(url)
    assert response.status_code == 200
    assert response.http_version == ("HTTP/2" if http2 else "HTTP/1.1")
    return response.headers.get("alt-svc")


@pytest.mark.parametrize("mode", [[], ["--workers", "2"], ["--reload"]])
def test_tls_and_cleartext_listeners_in_one_process(
    cert_files: tuple[str, str], tmp_path: Path, mode: list[str]
) -> None:
    cert, key = cert_files
    srv = CLIServer(
        "apps:scope_json",
        "--bind",
        "https://127.0.0.1:0",
        "--bind",
        "http://127.0.0.1:0",
        "--certfile",
        cert,
        "--keyfile",
        key,
        *mode,
        cwd=tmp_path if mode == ["--reload"] else None,
    )
    try:
        ports = _ports(srv)
        if mode == ["--workers", "2"]:
            srv.wait_count(r"Worker process \[\d+\] is ready", 2)
        https_port, https_line = ports["https"]
        http_port, http_line = ports["http"]
        assert https_line.startswith("h1, h2") and "+ udp (h3)" in https_line
        assert http_line == "h1, h2c"  # no HTTP/3 next to cleartext
        secure = f"https://127.0.0.1:{https_port}/"
        plain = f"http://127.0.0.1:{http_port}/"
        advertised = f'h3=":{https_port}"; ma=86400'
        assert _alt_svc(secure, http2=False) == advertised
        assert _alt_svc(secure, http2=True) == advertised
        assert _alt_svc(plain, http2=False) is None  # Alt-Svc only where it is true
        with httpx.Client(http1=False, http2=True) as client:  # h2c, prior knowledge
            h2c = client.get(plain)
        assert h2c.http_version == "HTTP/2" and "alt-svc" not in h2c.headers
        assert httpx.get(plain).json()["scheme"] == "http"
        assert httpx.get(secure, verify=False).json()["scheme"] == "https"
        with H3Client(https_port) as client:
            assert client.get("/").status == 200
    finally:
        assert srv.stop() == 0, srv.output


def test_redirect_http_answers_cleartext_with_308(cert_files: tuple[str, str]) -> None:
    cert, key = cert_files
    with serve(
        scope_json,
        binds=["http://127.0.0.1:0", "https://127.0.0.1:0"],
        certfile=cert,
        keyfile=key,
        redirect_http=True,
        health_path="/healthz",
    ) as srv:
        listeners = srv.server.listeners
        http_port = next(lst.port for lst in listeners if lst.scheme == "http")
        https_port = next(lst.port for lst in listeners if lst.scheme == "https")
        plain = f"http://127.0.0.1:{http_port}"
        moved = httpx.get(plain + "/a/b?x=1", headers={"host": "example.test:80"})
        assert moved.status_code == 308
        assert moved.headers["location"] == f"https://example.test:{https_port}/a/b?x=1"
        with httpx.Client(http1=False, http2=True) as client:
            h2c = client.post(plain + "/form", content=b"data")
        assert h2c.status_code == 308  # 308: the method and body are to be repeated
        assert h2c.headers["location"] == f"https://127.0.0.1:{https_port}/form"
        assert httpx.get(plain + "/healthz").text == "ok\n"  # checked as it is
        proxied = httpx.get(plain + "/p", headers={"x-forwarded-proto": "https"})
        assert proxied.status_code == 200 and proxied.json()["scheme"] == "https"
        followed = httpx.get(plain + "/x", verify=False, follow_redirects=True)
        assert followed.status_code == 200
        assert followed.json()["scheme"] == "https" and followed.json()["path"] == "/x"

        async def cleartext_websocket() -> int:
            try:
                async with websockets.connect(f"ws://127.0.0.1:{http_port}/"):
                    return 101
            except websockets.InvalidStatus as exc:
                return exc.response.status_code

        assert asyncio.run(cleartext_websocket()) == 403


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--bind", "https://127.0.0.1:0"], "--binds has an https:// entry but no certificate"),
        (["--bind", "http://127.0.0.1"], "--binds entry 'http://127.0.0.1' needs a port"),
        (["--redirect-http"], "--redirect-http needs a cleartext listener to answer on"),
        (
            ["--redirect-http", "--bind", "http://127.0.0.1:0"],
            "--redirect-http needs an https listener to redirect to",
        ),
        (["--quic-bind", "127.0.0.1:0"], "--quic-bind needs a TLS certificate"),
        (["--quic-bind", "127.0.0.1"], "--quic-bind must be HOST:PORT, got '127.0.0.1'"),
    ],
)
def test_listener_mistakes_are_one_line(args: list[str], message: str) -> None:
    result = run_cli("apps:hello", *args)
    assert result.returncode == 2
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and message in lines[0], result.stderr


# ---------------------------------------------------------------- --quic-bind


@pytest.mark.parametrize("mode", [[], ["--workers", "2"]])
def test_quic_bind_puts_http3_on_its_own_address(
    cert_files: tuple[str, str], mode: list[str]
) -> None:
    cert, key = cert_files
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.bind(("127.0.0.1", 0))
        udp_port = probe.getsockname()[1]
    srv = CLIServer(
        "apps:hello",
        "--port",
        "0",
        "--certfile",
        cert,
        "--keyfile",
        key,
        "--quic-bind",
        f"127.0.0.1:{udp_port}",
        *mode,
    )
    try:
        srv.wait_ready()
        if mode:
            srv.wait_count(r"Worker process \[\d+\] is ready", 2)
        srv.wait_for(rf"Listening on https://127\.0\.0\.1:{udp_port} udp \(h3\)")
        reply = httpx.get(srv.url, verify=False)
        assert reply.headers["alt-svc"] == f'h3=":{udp_port}"; ma=86400'
        with H3Client(udp_port) as client:
            response = client.get("/")
        assert (response.status, bytes(response.body)) == (200, b"Hello, World!")
    finally:
        assert srv.stop() == 0, srv.output


def test_quic_bind_from_python_and_environment(cert_files: tuple[str, str]) -> None:
    cert, key = cert_files
    with serve(hello, certfile=cert, keyfile=key, quic_bind=["127.0.0.1:0"]) as srv:
        port = srv.server.http3_port
        assert port is not None
        with H3Client(port) as client:
            assert client.get("/").status == 200
    env = {"ASGIRI_QUIC_BIND": "127.0.0.1:0", "ASGIRI_CERTFILE": cert, "ASGIRI_KEYFILE": key}
    srv2 = CLIServer("apps:hello", "--port", "0", env=env)
    try:
        match = srv2.wait_for(r"Listening on https://127\.0\.0\.1:(\d+) udp \(h3\)")
        with H3Client(int(match.group(1))) as client:
            assert client.get("/").status == 200
    finally:
        srv2.stop()


def test_redirect_without_an_https_tcp_listener_is_one_line(tmp_path: Path) -> None:
    sock = tmp_path / "tls.sock"
    result = run_cli(
        "apps:hello",
        "--redirect-http",
        "--bind",
        "http://127.0.0.1:0",
        "--bind",
        f"https://unix:{sock}",
        "--selfcert",
    )
    assert result.returncode == 1
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert lines[-1] == "Error: --redirect-http: no https:// TCP listener to redirect to"
    assert not sock.exists()  # what was bound is closed and removed again
