"""--bind (repeatable), --fd, fd://, systemd socket activation, and mTLS options on the CLI."""

from __future__ import annotations

import re
import socket
import ssl
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from cryptography.hazmat.primitives import serialization

from asgiri.config import Config
from asgiri.ssl_utils import generate_self_signed_cert
from tests.support.servers import ROOT, cli_server, run_cli, subprocess_env
from tests.support.tls import make_client_cert

TIMEOUT = 10.0
_LISTENING = re.compile(r"Listening on (\S+) ")


def listening(lines: list[str]) -> list[str]:
    return [m.group(1) for line in lines if (m := _LISTENING.search(line))]


def get_json(url: str, **kwargs: object) -> dict[str, object]:
    response = httpx.get(url, timeout=TIMEOUT, **kwargs)  # type: ignore[arg-type]
    assert response.status_code == 200, response.text
    result: dict[str, object] = response.json()
    return result


def test_bind_forms_are_validated() -> None:
    config = Config.from_options(
        "m:app", binds=["127.0.0.1:80", "[::1]:81", ":82", "unix:/x", "fd://3"]
    )
    assert config.bind.binds[2] == ":82"
    for bad in ("localhost", "::1:80", "unix:", "fd://x", "host:99999"):
        with pytest.raises(ValueError, match="binds entry"):
            Config.from_options("m:app", binds=[bad])
    result = run_cli("apps.proxy:whoami", "--bind", "localhost")
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1
    assert "--binds entry 'localhost' is not HOST:PORT" in result.stderr


def test_repeated_bind_tcp_ipv6_and_unix(tmp_path: Path) -> None:
    path = str(tmp_path / "asgiri.sock")
    args = ["--bind", "127.0.0.1:0", "--bind", "[::1]:0", "--bind", f"unix:{path}"]
    with cli_server("apps.proxy:whoami", *args) as srv:
        srv.wait_for(r"Listening on http\+unix://")
        urls = listening(srv.lines)
        assert len(urls) == 3, srv.output
        tcp4 = next(u for u in urls if u.startswith("http://127.0.0.1:"))
        tcp6 = next(u for u in urls if u.startswith("http://[::1]:"))
        assert get_json(tcp4 + "/")["client"][0] == "127.0.0.1"  # type: ignore[index]
        assert get_json(tcp6 + "/")["client"][0] == "::1"  # type: ignore[index]
        transport = httpx.HTTPTransport(uds=path)
        with httpx.Client(transport=transport, timeout=TIMEOUT) as client:
            got = client.get("http://unix/").json()
        assert got["client"] is None
        assert got["server"] == [path, None]


@pytest.fixture
def inherited_socket() -> Iterator[socket.socket]:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(16)
    with sock:
        yield sock


class Spawned:
    """A server started by a test-made command line, with descriptors passed down."""

    def __init__(self, argv: list[str], pass_fds: tuple[int, ...]) -> None:
        env = subprocess_env()
        self.proc = subprocess.Popen(
            argv,
            cwd=ROOT,
            env=env,
            pass_fds=pass_fds,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        self.lines: list[str] = []
        self.ready = threading.Event()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line)
            if "Listening on" in line:
                self.ready.set()
        self.ready.set()

    def __enter__(self) -> Spawned:
        assert self.ready.wait(15), self.lines
        assert self.proc.poll() is None, "".join(self.lines)
        return self

    def __exit__(self, *exc: object) -> None:
        self.proc.terminate()
        self.proc.wait(30)


def test_fd_and_fd_url(inherited_socket: socket.socket) -> None:
    fd = inherited_socket.fileno()
    port = inherited_socket.getsockname()[1]
    for option in (["--fd", str(fd)], ["--bind", f"fd://{fd}"]):
        argv = [sys.executable, "-m", "asgiri", "apps.proxy:whoami", *option]
        with Spawned(argv, (fd,)) as srv:
            assert listening(srv.lines) == [f"http://127.0.0.1:{port}"]
            assert get_json(f"http://127.0.0.1:{port}/")["server"] == ["127.0.0.1", port]


def test_systemd_socket_activation(inherited_socket: socket.socket) -> None:
    """LISTEN_PID/LISTEN_FDS as systemd sets them: the socket arrives as fd 3."""
    fd = inherited_socket.fileno()
    port = inherited_socket.getsockname()[1]
    # What systemd does between fork and exec: the socket to fd 3, the
    # variables naming this very process (exec keeps the pid).
    launcher = (
        "import os, sys\n"
        f"os.dup2({fd}, 3)\n"
        "os.environ.update(LISTEN_PID=str(os.getpid()), LISTEN_FDS='1')\n"
        "os.execv(sys.executable, [sys.executable, '-m', 'asgiri', *sys.argv[1:]])\n"
    )
    argv = [sys.executable, "-c", launcher, "apps.proxy:whoami", "--port", "1"]
    with Spawned(argv, (fd,)) as srv:
        assert listening(srv.lines) == [f"http://127.0.0.1:{port}"]
        assert get_json(f"http://127.0.0.1:{port}/")["scheme"] == "http"


# ----------------------------------------------------------------------------- mTLS


def test_mtls_options_from_the_cli(tmp_path: Path) -> None:
    cert_pem, key_pem = generate_self_signed_cert("localhost", key_type="ec")
    server_key = serialization.load_pem_private_key(key_pem, password=None)
    encrypted = server_key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(b"s3cret"),
    )
    (tmp_path / "cert.pem").write_bytes(cert_pem)
    (tmp_path / "key.pem").write_bytes(encrypted)
    client_cert, client_key, _ = make_client_cert(tmp_path, "proxy-client", organization=None)
    cipher = "ECDHE-ECDSA-AES128-GCM-SHA256"
    args = [
        "apps.proxy:whoami",
        "--port", "0",
        "--ssl-certfile", str(tmp_path / "cert.pem"),
        "--ssl-keyfile", str(tmp_path / "key.pem"),
        "--ssl-keyfile-password", "s3cret",
        "--ssl-ca-certs", client_cert,
        "--ssl-cert-reqs", "2",
        "--ssl-ciphers", cipher,
    ]  # fmt: skip
    with cli_server(*args) as srv:
        url = f"https://localhost:{srv.port}/"
        context = ssl.create_default_context(cafile=str(tmp_path / "cert.pem"))
        context.load_cert_chain(client_cert, client_key)
        got = get_json(url, verify=context)
        assert got["client_cert_name"] == "CN=proxy-client"
        # TLS 1.2 is limited to --ssl-ciphers.
        context.maximum_version = ssl.TLSVersion.TLSv1_2
        with (
            socket.create_connection(("127.0.0.1", srv.port), timeout=TIMEOUT) as plain,
            context.wrap_socket(plain, server_hostname="localhost") as tls,
        ):
            negotiated = tls.cipher()
        assert negotiated is not None and negotiated[0] == cipher
        # --ssl-cert-reqs 2: no client certificate, no connection.
        anonymous = ssl.create_default_context(cafile=str(tmp_path / "cert.pem"))
        with pytest.raises(httpx.HTTPError):
            httpx.get(url, verify=anonymous, timeout=TIMEOUT)
