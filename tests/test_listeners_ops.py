"""Listener options for deployments: socket file modes and clean-up, pid files,
TLS and cleartext listeners in one process, HTTP/3 on its own address.

Every case runs a real server (the CLI in a subprocess, or a thread) and
talks to it with real clients.
"""

from __future__ import annotations

import os
import signal
import stat
from pathlib import Path

import httpx
import pytest

from asgiri.server import Server
from tests.servers import CLIServer, run_cli


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
        import socket

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
