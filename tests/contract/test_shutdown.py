"""Graceful shutdown on every transport: what is in flight finishes, what is idle does not wait.

Each test runs a server of its own and stops it from another thread
(``ThreadServer.stop``, the same drain as SIGTERM) or by a signal to a CLI
process, at a point the test knows from the app's record or a log line.
"""

from __future__ import annotations

import contextlib
import logging
import signal
import socket
import ssl
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support.logs import LogRecords
from tests.support.servers import CLIServer, ThreadServer

from .app import RECORD
from .conftest import Servers
from .transports import (
    H1,
    H1_TLS,
    H2_TLS,
    H2C,
    H3,
    HTTP_TRANSPORTS,
    TIMEOUT,
    WS_TRANSPORTS,
    HTTPTransport,
    WSTransport,
    client_tls,
)

pytestmark = pytest.mark.timeout(90)

SLOW = 1.5
SLOW_BODY = b"finished after a while"


# ----------------------------------------------------------------------------- clients


def _httpx(transport: HTTPTransport, srv: ThreadServer) -> tuple[int, bytes]:
    with transport.httpx_client(srv) as client:
        response = client.get(f"/slow?{SLOW}")
        assert response.http_version == transport.version, response.http_version
        return response.status_code, response.content


def _aioquic(transport: HTTPTransport, srv: ThreadServer) -> tuple[int, bytes]:
    with transport.connect(srv) as conn:
        reply = conn.response(conn.start("GET", f"/slow?{SLOW}"))
        assert reply.complete, reply
        return reply.status, reply.body


def _curl(transport: HTTPTransport, srv: ThreadServer) -> tuple[int, bytes]:
    scheme, flag = ("https", "--http2") if transport.tls else ("http", "--http2-prior-knowledge")
    result = subprocess.run(
        [
            "curl",
            "-sSk",
            flag,
            "-w",
            "\n%{http_version} %{http_code}",
            f"{scheme}://127.0.0.1:{srv.port}/slow?{SLOW}",
        ],
        capture_output=True,
        timeout=TIMEOUT,
    )
    assert result.returncode == 0, result.stderr
    body, _, meta = result.stdout.rpartition(b"\n")
    version, status = meta.split()
    assert version == b"2", meta
    return int(status), body


def _nghttp(transport: HTTPTransport, srv: ThreadServer) -> tuple[int, bytes]:
    scheme = "https" if transport.tls else "http"
    result = subprocess.run(
        ["nghttp", f"{scheme}://127.0.0.1:{srv.port}/slow?{SLOW}"],
        capture_output=True,
        timeout=TIMEOUT,
    )
    assert result.returncode == 0, (result.stdout, result.stderr)
    # nghttp prints the body only of a response it received whole.
    return 200, result.stdout


Client = Callable[[HTTPTransport, ThreadServer], tuple[int, bytes]]
IN_FLIGHT: list[tuple[HTTPTransport, str, Client]] = [
    (H1, "httpx", _httpx),
    (H1_TLS, "httpx", _httpx),
    (H2_TLS, "httpx", _httpx),
    (H2C, "httpx", _httpx),
    (H3, "aioquic", _aioquic),
    (H2_TLS, "curl", _curl),
    (H2C, "curl", _curl),
    (H2_TLS, "nghttp", _nghttp),
    (H2C, "nghttp", _nghttp),
]


def _stop_in_background(srv: ThreadServer) -> threading.Thread:
    stopper = threading.Thread(target=srv.stop, daemon=True)
    stopper.start()
    return stopper


# ----------------------------------------------------------------------------- HTTP


@pytest.mark.parametrize(
    ("transport", "client"),
    [(t, run) for t, _, run in IN_FLIGHT],
    ids=[f"{t}-{name}" for t, name, _ in IN_FLIGHT],
)
def test_request_in_flight_completes(
    transport: HTTPTransport, client: Client, servers: Servers
) -> None:
    srv = servers.start(transport, timeout_graceful_shutdown=10)
    result: dict[str, Any] = {}

    def run() -> None:
        try:
            result["answer"] = client(transport, srv)
        except BaseException as exc:
            result["error"] = exc

    requester = threading.Thread(target=run, daemon=True)
    requester.start()
    RECORD.wait("slow")  # the app has the request and is taking its time
    stopper = _stop_in_background(srv)
    requester.join(TIMEOUT)
    assert "error" not in result, f"the request in flight failed: {result['error']!r}"
    assert result.get("answer") == (200, SLOW_BODY)
    stopper.join(TIMEOUT)
    assert not srv.thread.is_alive()


@pytest.mark.parametrize("transport", HTTP_TRANSPORTS, ids=str)
def test_idle_keep_alive_connection_does_not_hold_the_shutdown(
    transport: HTTPTransport, servers: Servers
) -> None:
    srv = servers.start(transport, timeout_graceful_shutdown=30, timeout_keep_alive=60)
    idle: Any
    if transport.version == "HTTP/3":
        idle = transport.connect(srv)
        assert idle.response(idle.start("GET", "/ok")).status == 200
    else:
        idle = transport.httpx_client(srv)
        assert idle.get("/ok").status_code == 200
    try:
        # The connection now sits idle in the client's pool, as clients keep them.
        started = time.monotonic()
        srv.server.request_shutdown()
        if transport.version == "HTTP/3":
            # A QUIC stack keeps acknowledging while idle (TCP's kernel does it for httpx).
            with contextlib.suppress(ConnectionError, TimeoutError):
                idle.client.run_until(lambda: not srv.thread.is_alive(), 5)
        srv.thread.join(5)
        stopped_in = time.monotonic() - started
        assert not srv.thread.is_alive(), "an idle keep-alive connection holds the shutdown"
        assert stopped_in < 5
    finally:
        idle.close()
        srv.thread.join(TIMEOUT)


# ----------------------------------------------------------------------------- WebSocket


@pytest.mark.parametrize("transport", WS_TRANSPORTS, ids=str)
def test_open_websocket_is_closed_1001(transport: WSTransport, servers: Servers) -> None:
    srv = servers.start(transport, timeout_graceful_shutdown=10)
    with transport.connect(srv) as ws:
        assert ws.status == transport.accepted
        ws.send_text("before the shutdown")
        assert ws.receive_message() == "before the shutdown"
        stopper = _stop_in_background(srv)
        close = ws.receive_close()
        assert close is not None, "the carrier ended without a close frame"
        assert close.code == 1001
    stopper.join(TIMEOUT)
    assert not srv.thread.is_alive()


# ----------------------------------------------------------------------------- lifespan

FAILING_SHUTDOWN_APP = """
async def app(scope, receive, send):
    if scope["type"] == "lifespan":
        await receive()
        await send({"type": "lifespan.startup.complete"})
        await receive()
        if SEND_FAILED:
            await send({"type": "lifespan.shutdown.failed", "message": "the pool would not close"})
        if RAISE:
            raise RuntimeError("the pool would not close")
        return
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"ok"})
"""
#: How frameworks fail a shutdown: the message alone, the message then the
#: error raised (Starlette), the error alone.
SHUTDOWN_FAILURES = {
    "sends-failed": (True, False),
    "sends-failed-and-raises": (True, True),
    "raises": (False, True),
}


@pytest.mark.parametrize("how", list(SHUTDOWN_FAILURES))
def test_failed_lifespan_shutdown_is_one_error_line(how: str, tmp_path: Path) -> None:
    send_failed, raises = SHUTDOWN_FAILURES[how]
    (tmp_path / "failing_shutdown.py").write_text(
        f"SEND_FAILED = {send_failed}\nRAISE = {raises}\n" + FAILING_SHUTDOWN_APP
    )
    srv = CLIServer("failing_shutdown:app", "--app-dir", str(tmp_path), "--port", "0")
    try:
        srv.wait_ready()
        # A request answered: the signal handlers are in place (they follow "Listening on").
        assert httpx.get(srv.url + "/", timeout=TIMEOUT).status_code == 200
        srv.signal(signal.SIGTERM)
        srv.wait(TIMEOUT)
    finally:
        srv.stop()
    output = srv.output
    assert "Traceback" not in output, output
    errors = [line for line in srv.lines if " ERROR " in line or line.startswith("Error:")]
    assert len(errors) == 1, output
    assert "shutdown failed" in errors[0] and "the pool would not close" in errors[0], errors
    # The shutdown still ran to its end: the failure is reported, not raised through it.
    assert "Finished server process" in output, output


# ----------------------------------------------------------------------------- TLS handshakes

PROXY_HEADER = b"PROXY TCP4 10.1.2.3 10.4.5.6 40000 443\r\n"


class Handshake:
    """A TLS client driven by hand: the handshake stops where the test says."""

    def __init__(self, port: int, proxy: bool) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT)
        self.incoming = ssl.MemoryBIO()
        self.outgoing = ssl.MemoryBIO()
        self.tls = client_tls(["http/1.1"]).wrap_bio(
            self.incoming, self.outgoing, server_hostname="localhost"
        )
        self._step()
        self.hello = self.outgoing.read()
        self.prefix = PROXY_HEADER if proxy else b""

    def _step(self) -> bool:
        try:
            self.tls.do_handshake()
        except ssl.SSLWantReadError:
            return False
        return True

    def send_partial_hello(self) -> None:
        self.sock.sendall(self.prefix + self.hello[:40])

    def stop_before_finished(self) -> None:
        """Send the ClientHello, read the server's flight, keep our Finished back."""
        self.sock.sendall(self.prefix + self.hello)
        while True:
            data = self.sock.recv(65536)
            assert data, "the server closed during the handshake"
            self.incoming.write(data)
            if self._step():
                return

    def finish_and_get(self) -> bytes:
        """Complete the handshake, send ``GET /ok``, read its answer (content-length framed)."""
        self.tls.write(b"GET /ok HTTP/1.1\r\nHost: localhost\r\n\r\n")
        self.sock.sendall(self.outgoing.read())
        answer = b""
        while not _whole(answer):
            data = self.sock.recv(65536)
            if not data:
                return answer
            self.incoming.write(data)
            try:
                answer += self.tls.read(65536)
            except ssl.SSLWantReadError:
                continue
            except (ssl.SSLZeroReturnError, ssl.SSLEOFError):
                return answer
        return answer

    def close(self) -> None:
        self.sock.close()


def _whole(answer: bytes) -> bool:
    head, found, body = answer.partition(b"\r\n\r\n")
    if not found:
        return False
    for line in head.lower().split(b"\r\n"):
        if line.startswith(b"content-length:"):
            return len(body) >= int(line.split(b":", 1)[1])
    return False


@pytest.fixture
def drain_log() -> Iterator[LogRecords]:
    handler = LogRecords()
    logger = logging.getLogger("asgiri.error")
    logger.addHandler(handler)
    try:
        yield handler
    finally:
        logger.removeHandler(handler)


def _drain_began(srv: ThreadServer, log: LogRecords) -> str | None:
    """The drain's "Waiting for N connection(s)" line, or None if it had nothing to wait for."""
    deadline = time.monotonic() + TIMEOUT
    while time.monotonic() < deadline:
        waiting = [m for m in log.messages() if m.startswith("Waiting for")]
        if waiting:
            return waiting[0]
        if not srv.thread.is_alive():
            return None
        time.sleep(0.01)
    raise AssertionError(f"the drain neither waited nor ended: {log.messages()}")


@pytest.mark.parametrize("proxy", [False, True], ids=["tls", "proxy-protocol-tls"])
def test_tls_handshake_in_progress_is_drained_like_a_connection(
    proxy: bool, servers: Servers, drain_log: LogRecords
) -> None:
    options = {"proxy_protocol": proxy, "log_level": "info", "enable_http3": False}
    # A handshake under way when the shutdown starts is waited for, then served.
    srv = servers.start(H1_TLS, timeout_graceful_shutdown=10, **options)
    client = Handshake(srv.port, proxy)
    try:
        client.stop_before_finished()
        srv.server.request_shutdown()
        began = _drain_began(srv, drain_log)
        assert began == "Waiting for 1 connection(s) to finish", drain_log.messages()
        answer = client.finish_and_get()
    finally:
        client.close()
    assert answer.startswith(b"HTTP/1.1 200 "), answer
    assert b"connection: close" in answer.lower()
    srv.thread.join(TIMEOUT)
    assert not srv.thread.is_alive()

    # Handshakes that never finish hold the drain no longer than its timeout.
    srv = servers.start(H1_TLS, timeout_graceful_shutdown=1, **options)
    stalled, partial = Handshake(srv.port, proxy), Handshake(srv.port, proxy)
    try:
        stalled.stop_before_finished()
        partial.send_partial_hello()
        started = time.monotonic()
        srv.server.request_shutdown()
        srv.thread.join(5)
        assert not srv.thread.is_alive(), "stalled handshakes held the shutdown"
        assert time.monotonic() - started < 4
    finally:
        stalled.close()
        partial.close()


@pytest.mark.parametrize("proxy", [False, True], ids=["tls", "proxy-protocol-tls"])
def test_failed_tls_handshake_does_not_hold_the_drain(proxy: bool, servers: Servers) -> None:
    """A handshake that failed is not waited for (asyncio never reports the failure)."""
    options = {"proxy_protocol": proxy, "enable_http3": False}
    srv = servers.start(H1_TLS, timeout_graceful_shutdown=10, **options)
    with socket.create_connection(("127.0.0.1", srv.port), timeout=TIMEOUT) as sock:
        if proxy:
            sock.sendall(b"PROXY TCP4 10.0.0.1 10.0.0.2 1000 443\r\n")
        # Plain HTTP on the TLS port: the handshake fails at its first byte.
        sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        with contextlib.suppress(OSError):
            while sock.recv(4096):
                pass
    started = time.monotonic()
    srv.server.request_shutdown()
    srv.thread.join(TIMEOUT)
    assert not srv.thread.is_alive()
    assert time.monotonic() - started < 3
