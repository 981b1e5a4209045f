"""Graceful shutdown: signals, in-flight requests, idle connections, the API.

Readiness is always an event (a log line, ``Server.started``, a first body
chunk received), never a fixed sleep.
"""

from __future__ import annotations

import asyncio
import signal
import socket
import threading
import time
from pathlib import Path

import httpx
import pytest

from asgiri.server import Server
from asgiri.server.h1 import SHUTDOWN_IDLE_GRACE
from tests import apps
from tests.support.servers import CLIServer


def _raw_get(port: int, path: str = "/") -> socket.socket:
    """Open a connection and send one keep-alive GET on it."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    sock.sendall(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode())
    return sock


def _read_response(sock: socket.socket) -> bytes:
    """Read one response with a content-length body (apps.hello's)."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        assert chunk, data
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = next(
        int(line.split(b":", 1)[1])
        for line in head.split(b"\r\n")
        if line.lower().startswith(b"content-length:")
    )
    while len(body) < length:
        chunk = sock.recv(65536)
        assert chunk
        body += chunk
    return head + b"\r\n\r\n" + body


def _connection_refused(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=5).close()
    except ConnectionRefusedError:
        return True
    return False


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_signal_lets_the_in_flight_request_finish(sig: signal.Signals) -> None:
    srv = CLIServer("apps:slow", "--port", "0").wait_ready()
    try:
        assert srv.port is not None
        with (
            httpx.Client(timeout=10) as client,
            client.stream("GET", srv.url + "/?s=1.5") as response,
        ):
            chunks = response.iter_raw()
            first = next(chunks)  # the request is now in flight
            assert first == b"begin;"
            srv.signal(sig)
            srv.wait_for(f"Received {sig.name}")
            srv.wait_for("Waiting for 1 connection")
            # The listener is closed while the request is still running...
            assert _connection_refused(srv.port)
            assert srv.proc.poll() is None
            # ...and the request still completes with its whole body.
            rest = b"".join(chunks)
        assert first + rest == b"begin;end"
        assert response.status_code == 200
        assert srv.wait(10) == 0
    finally:
        srv.stop()


def test_idle_keep_alive_connections_are_closed_promptly() -> None:
    srv = CLIServer(
        "apps:slow",
        "--port",
        "0",
        "--timeout-keep-alive",
        "60",
        "--timeout-graceful-shutdown",
        "30",
    ).wait_ready()
    assert srv.port is not None
    try:
        # A keep-alive connection that finished one request and sits idle...
        idle = _raw_get(srv.port, "/?s=0")
        data = b""
        while not data.endswith(b"end\r\n0\r\n\r\n"):
            chunk = idle.recv(65536)
            assert chunk, data
            data += chunk
        # ...a connection that never sent anything...
        silent = socket.create_connection(("127.0.0.1", srv.port), timeout=10)
        # ...and a request in flight that keeps the server draining.
        with (
            httpx.Client(timeout=10) as client,
            client.stream("GET", srv.url + "/?s=2") as busy,
        ):
            busy_chunks = busy.iter_raw()
            assert next(busy_chunks) == b"begin;"
            srv.signal(signal.SIGTERM)
            started = time.monotonic()
            for sock in (idle, silent):
                assert sock.recv(65536) == b""  # EOF, not a timeout
            closed_after = time.monotonic() - started
            # Within the moment an idle connection gets in case a request is on its way.
            assert closed_after < SHUTDOWN_IDLE_GRACE + 1.0
            assert srv.proc.poll() is None  # it was the shutdown, not the exit
            assert b"".join(busy_chunks) == b"end"
        assert srv.wait(10) == 0
    finally:
        srv.stop()


def test_graceful_timeout_bounds_a_request_that_never_finishes() -> None:
    srv = CLIServer("apps:slow", "--port", "0", "--timeout-graceful-shutdown", "1").wait_ready()
    try:
        with (
            httpx.Client(timeout=10) as client,
            client.stream("GET", srv.url + "/?s=3600") as response,
        ):
            chunks = response.iter_raw()
            assert next(chunks) == b"begin;"
            srv.signal(signal.SIGTERM)
            started = time.monotonic()
            with pytest.raises(httpx.RemoteProtocolError):
                b"".join(chunks)  # the connection is cut: the body is incomplete
            code = srv.wait(10)
            elapsed = time.monotonic() - started
        assert 0.9 <= elapsed <= 3.5, elapsed
        assert code == 0
        assert "Graceful shutdown timed out" in srv.output
    finally:
        srv.stop()


DRAIN_APP = """
import asyncio


async def app(scope, receive, send):
    if scope["type"] == "lifespan":
        await receive()
        await send({"type": "lifespan.startup.complete"})
        await receive()
        print("LIFESPAN-SHUTDOWN", flush=True)
        await send({"type": "lifespan.shutdown.complete"})
        return
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"begin;", "more_body": True})
    await asyncio.sleep(1)
    print("REQUEST-DONE", flush=True)
    await send({"type": "http.response.body", "body": b"end"})
"""


def test_lifespan_shutdown_runs_after_requests_drained(tmp_path: Path) -> None:
    (tmp_path / "drain_app.py").write_text(DRAIN_APP)
    srv = CLIServer("drain_app:app", "--app-dir", str(tmp_path), "--port", "0").wait_ready()
    try:
        with (
            httpx.Client(timeout=10) as client,
            client.stream("GET", srv.url + "/") as response,
        ):
            chunks = response.iter_raw()
            assert next(chunks) == b"begin;"
            srv.signal(signal.SIGTERM)
            assert b"".join(chunks) == b"end"
        assert srv.wait(10) == 0
    finally:
        srv.stop()
    lines = [line.strip() for line in srv.lines]
    assert lines.index("REQUEST-DONE") < lines.index("LIFESPAN-SHUTDOWN")


# ---------------------------------------------------------------- Python API


def test_run_in_a_thread_stops_on_request_shutdown() -> None:
    server = Server(apps.hello, port=0, log_level="warning")
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    assert server.started.wait(10)
    port = server.port
    assert port is not None and port != 0
    assert httpx.get(f"http://127.0.0.1:{port}/").content == apps.HELLO
    server.request_shutdown()
    thread.join(10)
    assert not thread.is_alive()
    assert not server.started.is_set()
    assert _connection_refused(port)


def test_request_shutdown_before_run_returns_promptly() -> None:
    server = Server(apps.hello, port=0, log_level="warning")
    server.request_shutdown()
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    thread.join(10)
    assert not thread.is_alive()


def test_serve_inside_an_existing_event_loop() -> None:
    async def main() -> tuple[bytes, bool]:
        server = Server(apps.hello, port=0, log_level="warning")
        task = asyncio.create_task(server.serve())
        loop = asyncio.get_running_loop()
        started = await loop.run_in_executor(None, server.started.wait, 10)
        assert started, "server did not start"
        async with httpx.AsyncClient() as client:
            response = await client.get(f"http://127.0.0.1:{server.port}/")
        server.request_shutdown()
        await asyncio.wait_for(task, 10)
        return response.content, task.done()

    body, done = asyncio.run(main())
    assert body == apps.HELLO
    assert done


def test_await_shutdown_from_inside_the_loop() -> None:
    async def main() -> None:
        server = Server(apps.hello, port=0, log_level="warning")
        task = asyncio.create_task(server.serve())
        loop = asyncio.get_running_loop()
        assert await loop.run_in_executor(None, server.started.wait, 10)
        await server.shutdown()
        await asyncio.wait_for(task, 10)

    asyncio.run(main())


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_second_signal_closes_everything_at_once(sig: signal.Signals) -> None:
    srv = CLIServer("apps:slow", "--port", "0", "--timeout-graceful-shutdown", "30").wait_ready()
    try:
        with (
            httpx.Client(timeout=10) as client,
            client.stream("GET", srv.url + "/?s=3600") as response,
        ):
            chunks = response.iter_raw()
            assert next(chunks) == b"begin;"
            srv.signal(sig)
            srv.wait_for("Waiting for 1 connection")
            srv.signal(sig)
            started = time.monotonic()
            with pytest.raises(httpx.RemoteProtocolError):
                b"".join(chunks)
            code = srv.wait(10)
            assert time.monotonic() - started < 3
        # The server closed the connections itself and finished normally (it was
        # not killed by the signal's default action).
        assert code == 0, srv.output
        assert f"Received {sig.name} again" in srv.output
        assert "Finished server process" in srv.output
    finally:
        srv.stop()


LATE_HEAD_APP = """
import asyncio


async def app(scope, receive, send):
    if scope["type"] != "http":
        return
    print("IN-APP", flush=True)
    await asyncio.sleep(0.5)
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"late"})
"""


def test_response_started_during_shutdown_says_connection_close(tmp_path: Path) -> None:
    (tmp_path / "late_head_app.py").write_text(LATE_HEAD_APP)
    srv = CLIServer("late_head_app:app", "--app-dir", str(tmp_path), "--port", "0").wait_ready()
    assert srv.port is not None
    try:
        sock = _raw_get(srv.port)  # HTTP/1.1: persistent unless told otherwise
        srv.wait_for("^IN-APP")
        srv.signal(signal.SIGTERM)
        srv.wait_for("Waiting for 1 connection")
        response = _read_response(sock)
        head, _, body = response.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 200")
        assert b"\r\nconnection: close" in head.lower()
        assert body == b"late"
        assert sock.recv(65536) == b""  # and the server does close it
        sock.close()
        assert srv.wait(10) == 0
    finally:
        srv.stop()


def test_request_arriving_on_an_idle_connection_during_shutdown_is_answered() -> None:
    """The next keep-alive request, sent just as the server starts draining, is not cut off."""
    srv = CLIServer("apps:slow", "--port", "0", "--timeout-keep-alive", "60").wait_ready()
    assert srv.port is not None
    try:
        idle = _raw_get(srv.port, "/?s=0")
        data = b""
        while not data.endswith(b"end\r\n0\r\n\r\n"):
            chunk = idle.recv(65536)
            assert chunk, data
            data += chunk
        # Something in flight keeps the server draining while the request comes.
        with (
            httpx.Client(timeout=10) as client,
            client.stream("GET", srv.url + "/?s=2") as busy,
        ):
            busy_chunks = busy.iter_raw()
            assert next(busy_chunks) == b"begin;"
            srv.signal(signal.SIGTERM)
            srv.wait_for("shutting down gracefully")
            idle.sendall(b"GET /?s=0 HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
            answer = b""
            while True:
                chunk = idle.recv(65536)
                if not chunk:
                    break
                answer += chunk
            assert answer.startswith(b"HTTP/1.1 200 ")
            assert b"connection: close" in answer.lower()
            assert answer.endswith(b"end\r\n0\r\n\r\n")
            assert b"".join(busy_chunks) == b"end"
        assert srv.wait(10) == 0
    finally:
        srv.stop()


def test_h2_goaway_follows_the_answers_in_flight() -> None:
    """On shutdown the GOAWAY comes after the response in flight, not before it."""
    import h2.config
    import h2.connection
    import h2.events

    srv = CLIServer("apps:slow", "--port", "0").wait_ready()
    assert srv.port is not None
    try:
        sock = socket.create_connection(("127.0.0.1", srv.port), timeout=10)
        conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
        conn.initiate_connection()
        conn.send_headers(
            1,
            # Answered well within SHUTDOWN_GOAWAY_DELAY after the signal.
            [(":method", "GET"), (":path", "/?s=0.3"), (":scheme", "http"), (":authority", "x")],
            end_stream=True,
        )
        sock.sendall(conn.data_to_send())
        order: list[str] = []
        while "goaway" not in order:
            data = sock.recv(65536)
            assert data, order
            for event in conn.receive_data(data):
                if isinstance(event, h2.events.DataReceived):
                    if not order:
                        # The response has begun: the app is running; now stop.
                        srv.signal(signal.SIGTERM)
                    order.append("data")
                    conn.acknowledge_received_data(event.flow_controlled_length, 1)
                elif isinstance(event, h2.events.StreamEnded):
                    order.append("end")
                elif isinstance(event, h2.events.ConnectionTerminated):
                    assert event.error_code == 0
                    assert event.last_stream_id == 1
                    order.append("goaway")
            sock.sendall(conn.data_to_send())
        assert order.index("end") < order.index("goaway")
        sock.close()
        assert srv.wait(10) == 0
    finally:
        srv.stop()
