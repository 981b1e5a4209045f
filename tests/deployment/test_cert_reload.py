"""Certificates renewed without a restart: SIGUSR1, --ssl-watch, reload_certificates().

The files are swapped under a running server while clients keep requesting
over HTTP/1.1, HTTP/2 and HTTP/3; new handshakes must present the new
certificate (compared by SHA-256 fingerprint of what the client received),
connections already open must keep working, and no request may fail.
"""

from __future__ import annotations

import hashlib
import os
import re
import signal
import socket
import ssl
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Literal

import httpx
import pytest

from asgiri.ssl_utils import generate_self_signed_cert, save_cert_and_key
from tests.apps import hello
from tests.support.h3_client import H3Client
from tests.support.servers import CLIServer, ThreadServer, cli_server, run_cli
from tests.support.tls import make_client_cert


def _pair(key_type: Literal["rsa", "ec"] = "ec") -> tuple[bytes, bytes]:
    return generate_self_signed_cert("localhost", key_type=key_type)


def _fingerprint(pem: bytes) -> str:
    return hashlib.sha256(ssl.PEM_cert_to_DER_cert(pem.decode())).hexdigest()


def _tcp_fingerprint(port: int, alpn: str, client: tuple[str, str] | None = None) -> str:
    """A fresh TLS handshake: SHA-256 of the certificate the server presented."""
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    context.set_alpn_protocols([alpn])
    if client is not None:
        context.load_cert_chain(*client)
    with (
        socket.create_connection(("127.0.0.1", port), timeout=10) as raw,
        context.wrap_socket(raw, server_hostname="localhost") as tls,
    ):
        assert tls.selected_alpn_protocol() == alpn
        der = tls.getpeercert(binary_form=True)
        if client is not None:
            tls.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            assert tls.recv(12).startswith(b"HTTP/1.1 200")
    assert der is not None
    return hashlib.sha256(der).hexdigest()


def _h3_fingerprint(port: int) -> str:
    with H3Client(port) as client:
        assert client.get("/").status == 200
        der = client.peer_certificate
    assert der is not None
    return hashlib.sha256(der).hexdigest()


def _all_fingerprints(port: int) -> set[str]:
    return {
        _tcp_fingerprint(port, "http/1.1"),
        _tcp_fingerprint(port, "h2"),
        _h3_fingerprint(port),
    }


class Load:
    """Clients requesting in a loop over h1 (new connections and keep-alive), h2 and h3."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.stop = threading.Event()
        self.done = 0
        self.failures: list[str] = []
        self.threads = [
            threading.Thread(target=self._run, args=(target,), daemon=True)
            for target in (self._h1_new, self._h1_keep_alive, self._h2, self._h3)
        ]

    def __enter__(self) -> Load:
        for thread in self.threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join(30)

    def _run(self, target: Callable[[], None]) -> None:
        try:
            target()
        except Exception as exc:  # recorded: the test asserts there is none
            self.failures.append(f"{target.__name__}: {exc!r}")

    def _count(self, status: int) -> None:
        if status != 200:
            self.failures.append(f"status {status}")
        self.done += 1

    def _h1_new(self) -> None:
        while not self.stop.is_set():
            self._count(
                httpx.get(f"https://127.0.0.1:{self.port}/", verify=False, timeout=10).status_code
            )

    def _h1_keep_alive(self) -> None:
        with httpx.Client(verify=False, timeout=10) as client:
            while not self.stop.is_set():
                self._count(client.get(f"https://127.0.0.1:{self.port}/").status_code)

    def _h2(self) -> None:
        with httpx.Client(verify=False, http1=False, http2=True, timeout=10) as client:
            while not self.stop.is_set():
                self._count(client.get(f"https://127.0.0.1:{self.port}/").status_code)

    def _h3(self) -> None:
        with H3Client(self.port) as client:
            while not self.stop.is_set():
                self._count(client.get("/").status)


@pytest.fixture
def files(tmp_path: Path) -> Iterator[tuple[Path, Path]]:
    cert, key = _pair("rsa")
    paths = tmp_path / "cert.pem", tmp_path / "key.pem"
    save_cert_and_key(cert, key, *paths)
    yield paths


def _renew(files: tuple[Path, Path], key_type: Literal["rsa", "ec"] = "ec") -> str:
    """Write a new pair the way certbot does (each file replaced whole); its fingerprint."""
    cert, key = _pair(key_type)
    save_cert_and_key(cert, key, *files)
    return _fingerprint(cert)


@pytest.mark.parametrize("mode", [[], ["--workers", "2"]])
def test_sigusr1_renews_the_certificate_under_load(
    files: tuple[Path, Path], mode: list[str]
) -> None:
    old = _fingerprint(files[0].read_bytes())
    srv = CLIServer(
        "apps:hello", "--port", "0", "--certfile", str(files[0]), "--keyfile", str(files[1]), *mode
    )
    try:
        srv.wait_ready()
        workers = 2 if mode else 1
        if mode:
            srv.wait_count(r"Worker process \[\d+\] is ready", 2)
        port = srv.port or 0
        assert _all_fingerprints(port) == {old}
        with Load(port) as load:
            before = load.done
            new = _renew(files)  # RSA to ECDSA: no old certificate may linger
            srv.signal(signal.SIGUSR1)
            srv.wait_count(r"Reloaded the TLS certificate \(SIGUSR1\)", workers)
            # Many fresh handshakes, so that every worker is asked.
            seen = set()
            for _ in range(3 * workers):
                seen |= _all_fingerprints(port)
            assert seen == {new}
            assert load.done > before
        assert not load.failures, load.failures
        assert load.done > 20
        if mode:  # no worker was replaced for it
            assert srv.output.count("Started worker process") == 2, srv.output
    finally:
        assert srv.stop() == 0, srv.output


def test_a_renewal_that_does_not_load_keeps_the_certificate(files: tuple[Path, Path]) -> None:
    old = _fingerprint(files[0].read_bytes())
    srv = CLIServer(
        "apps:hello", "--port", "0", "--certfile", str(files[0]), "--keyfile", str(files[1])
    )
    try:
        srv.wait_ready()
        port = srv.port or 0
        cert, _ = _pair()
        _, other_key = _pair()
        save_cert_and_key(cert, other_key, *files)  # the key of another certificate
        srv.signal(signal.SIGUSR1)
        failed = srv.wait_count(r"TLS certificate reload \(SIGUSR1\) failed.*", 1)
        assert "keeping the current certificate" in failed[0]
        assert "does not belong to the certificate" in "".join(srv.lines)
        assert _all_fingerprints(port) == {old}
        files[0].write_bytes(cert[: len(cert) // 2])  # half-written
        srv.signal(signal.SIGUSR1)
        srv.wait_count(r"TLS certificate reload \(SIGUSR1\) failed", 2)
        assert _all_fingerprints(port) == {old}
        new = _renew(files)
        srv.signal(signal.SIGUSR1)
        srv.wait_count(r"Reloaded the TLS certificate", 1)
        assert _all_fingerprints(port) == {new}
    finally:
        assert srv.stop() == 0, srv.output
    failures = [line for line in srv.lines if "reload (SIGUSR1) failed" in line]
    assert len(failures) == 2  # one line per failed attempt, no traceback
    assert "Traceback" not in srv.output


def test_ssl_watch_reloads_when_the_files_change(files: tuple[Path, Path], tmp_path: Path) -> None:
    """Also through a symlink swap, as a Kubernetes secret volume does it."""
    live = tmp_path / "live"
    first = tmp_path / "v1"
    first.mkdir()
    for path in files:
        os.replace(path, first / path.name)
    live.symlink_to(first)
    old = _fingerprint((first / "cert.pem").read_bytes())
    srv = CLIServer(
        "apps:hello",
        "--port",
        "0",
        "--certfile",
        str(live / "cert.pem"),
        "--keyfile",
        str(live / "key.pem"),
        "--ssl-watch",
    )
    try:
        srv.wait_ready()
        srv.wait_for("Watching .*cert.pem.*key.pem for a renewed certificate")
        port = srv.port or 0
        assert _all_fingerprints(port) == {old}
        second = tmp_path / "v2"
        second.mkdir()
        new = _renew((second / "cert.pem", second / "key.pem"))
        swap = tmp_path / "live.new"
        swap.symlink_to(second)
        os.replace(swap, live)
        srv.wait_for(r"Reloaded the TLS certificate \(the files changed\)")
        assert _all_fingerprints(port) == {new}
        newer = _renew((second / "cert.pem", second / "key.pem"))  # in place, both files
        srv.wait_count(r"Reloaded the TLS certificate \(the files changed\)", 2)
        assert _all_fingerprints(port) == {newer}
    finally:
        assert srv.stop() == 0, srv.output
    assert "failed" not in srv.output  # certificate then key was one reload, not a mismatch


def test_ca_bundle_is_reloaded_too(files: tuple[Path, Path], tmp_path: Path) -> None:
    first_dir, second_dir = tmp_path / "a", tmp_path / "b"
    first_dir.mkdir()
    second_dir.mkdir()
    first = make_client_cert(first_dir, "first-client")
    second = make_client_cert(second_dir, "second-client")
    bundle = tmp_path / "clients.pem"
    bundle.write_text(first[2])
    srv = CLIServer(
        "apps:hello",
        "--port",
        "0",
        "--certfile",
        str(files[0]),
        "--keyfile",
        str(files[1]),
        "--ca-certs",
        str(bundle),
        "--cert-reqs",
        "2",
        # A refused client certificate leaves a handshake counted until the graceful
        # timeout (a drain issue of its own); keep the stop short.
        "--timeout-graceful-shutdown",
        "1",
    )
    try:
        srv.wait_ready()
        port = srv.port or 0
        _tcp_fingerprint(port, "http/1.1", client=(first[0], first[1]))
        with pytest.raises((ssl.SSLError, ConnectionError, AssertionError)):
            _tcp_fingerprint(port, "http/1.1", client=(second[0], second[1]))
        bundle.write_text(second[2])
        srv.signal(signal.SIGUSR1)
        srv.wait_for("Reloaded the TLS certificate")
        _tcp_fingerprint(port, "http/1.1", client=(second[0], second[1]))
        with pytest.raises((ssl.SSLError, ConnectionError, AssertionError)):
            _tcp_fingerprint(port, "http/1.1", client=(first[0], first[1]))
    finally:
        srv.stop()


def test_reload_certificates_from_python(files: tuple[Path, Path]) -> None:
    srv = ThreadServer(hello, certfile=str(files[0]), keyfile=str(files[1])).start()
    try:
        port = srv.port
        with httpx.Client(verify=False) as kept:
            assert kept.get(f"https://127.0.0.1:{port}/").status_code == 200
            new = _renew(files)
            srv.server.reload_certificates()
            deadline = 50
            while _tcp_fingerprint(port, "http/1.1") != new and deadline:
                deadline -= 1
                threading.Event().wait(0.1)
            assert _all_fingerprints(port) == {new}
            # The connection opened before the swap is untouched and still serves.
            assert kept.get(f"https://127.0.0.1:{port}/").status_code == 200
    finally:
        srv.stop()


def test_ssl_watch_needs_certificate_files() -> None:
    result = run_cli("apps:hello", "--selfcert", "--ssl-watch")
    assert result.returncode == 2
    assert "--ssl-watch needs the certificate as files to watch" in result.stderr


def test_gunicorn_sigusr1_reopens_logs_and_renews_the_certificate(
    files: tuple[Path, Path], tmp_path: Path
) -> None:
    """gunicorn's convention: USR1 to the arbiter goes to every worker (log files reopened)."""
    srv = CLIServer(
        "-k",
        "asgiri.workers.AsgiriWorker",
        "-b",
        "127.0.0.1:0",
        "-w",
        "2",
        "--certfile",
        str(files[0]),
        "--keyfile",
        str(files[1]),
        "tests.apps.worker:app",
        env={"HOME": str(tmp_path)},
        module="gunicorn",
    )
    try:
        port = int(srv.wait_for(r"Listening at: https://127\.0\.0\.1:(\d+)", 30).group(1))
        srv.wait_count(r"Listening on https://127\.0\.0\.1", 2)
        old = _fingerprint(files[0].read_bytes())
        assert {_tcp_fingerprint(port, "h2") for _ in range(4)} == {old}
        new = _renew(files)
        srv.signal(signal.SIGUSR1)
        srv.wait_count(r"Reloaded the TLS certificate \(reload_certificates\(\)\)", 2)
        assert {_tcp_fingerprint(port, alpn) for alpn in ("h2", "http/1.1") * 3} == {new}
        assert len(set(re.findall(r"Booting worker with pid: (\d+)", srv.output))) == 2
    finally:
        assert srv.stop() == 0, srv.output


def test_ssl_watch_from_the_environment_file_and_python(
    files: tuple[Path, Path], tmp_path: Path
) -> None:
    env = {"ASGIRI_CERTFILE": str(files[0]), "ASGIRI_KEYFILE": str(files[1])}
    env["ASGIRI_SSL_WATCH"] = "true"
    with cli_server("apps:hello", "--port", "0", env=env) as srv:
        srv.wait_for("Watching .* for a renewed certificate")
    config = tmp_path / "tls.toml"
    config.write_text(f'certfile = "{files[0]}"\nkeyfile = "{files[1]}"\nssl_watch = true\n')
    with cli_server("apps:hello", "--port", "0", "--config", str(config)) as srv:
        srv.wait_for("Watching .* for a renewed certificate")
    srv2 = ThreadServer(hello, certfile=str(files[0]), keyfile=str(files[1]), ssl_watch=True)
    srv2.start()
    try:
        new = _renew(files)
        deadline = 100
        while _tcp_fingerprint(srv2.port, "h2") != new and deadline:
            deadline -= 1
            threading.Event().wait(0.1)
        assert _all_fingerprints(srv2.port) == {new}
    finally:
        srv2.stop()
