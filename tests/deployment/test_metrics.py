"""Prometheus metrics on ``--metrics-bind``: scraped with httpx after real traffic.

h1 and h2 requests, a WebSocket session and a request held in flight are made
against a server on port 0 whose metrics listener is on port 0 too; the
scrape is parsed with prometheus_client's own text parser.
"""

from __future__ import annotations

import asyncio
import queue
import re
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from websockets.sync.client import connect

from tests.support.metrics import Samples, scrape, value
from tests.support.servers import ThreadServer, cli_server, run_cli, serve, subprocess_env

_release: asyncio.Event | None = None


async def app(scope: Any, receive: Any, send: Any) -> None:
    """/hold waits until /release is requested; other paths echo the body; WebSocket echoes."""
    global _release
    if scope["type"] == "websocket":
        await receive()
        await send({"type": "websocket.accept"})
        while True:
            message = await receive()
            if message["type"] == "websocket.disconnect":
                return
            await send({"type": "websocket.send", "text": message.get("text") or ""})
    if scope["type"] != "http":
        return
    if scope["path"] == "/hold":
        _release = asyncio.Event()
        await _release.wait()
    elif scope["path"] == "/release" and _release is not None:
        _release.set()
    body = b""
    more = True
    while more:
        message = await receive()
        body += message.get("body", b"")
        more = message.get("more_body", False)
    status = 201 if scope["path"] == "/created" else 200
    await send({"type": "http.response.start", "status": status, "headers": []})
    await send({"type": "http.response.body", "body": body})


def wait_until(port: int, check: Callable[[Samples], bool], timeout: float = 10.0) -> Samples:
    deadline = time.monotonic() + timeout
    while True:
        samples = scrape(port)
        if check(samples):
            return samples
        if time.monotonic() > deadline:
            raise AssertionError("metrics never reached the expected state")
        time.sleep(0.02)


@pytest.fixture
def server() -> Iterator[ThreadServer]:
    with serve(app, metrics_bind="127.0.0.1:0") as srv:
        yield srv


def metrics_port(srv: ThreadServer) -> int:
    port = srv.server.metrics_port
    assert port is not None
    return port


def test_requests_by_protocol_status_duration_and_bytes(server: ThreadServer) -> None:
    port = metrics_port(server)
    with httpx.Client() as h1:
        for _ in range(3):
            assert h1.post(server.url + "/", content=b"x" * 100).status_code == 200
        assert h1.get(server.url + "/created").status_code == 201
        with httpx.Client(http1=False, http2=True) as h2:
            for _ in range(2):
                assert h2.post(server.url + "/", content=b"y" * 1000).status_code == 200
            # Both connections are open now.
            samples = scrape(port)
            assert value(samples, "asgiri_connections_open", protocol="h1") == 1
            assert value(samples, "asgiri_connections_open", protocol="h2") == 1
    samples = wait_until(port, lambda s: value(s, "asgiri_connections_open", protocol="h2") == 0)
    assert value(samples, "asgiri_requests_total", protocol="h1", status="200") == 3
    assert value(samples, "asgiri_requests_total", protocol="h1", status="201") == 1
    assert value(samples, "asgiri_requests_total", protocol="h2", status="200") == 2
    assert value(samples, "asgiri_request_duration_seconds_count", protocol="h1") == 4
    assert value(samples, "asgiri_request_duration_seconds_count", protocol="h2") == 2
    assert value(samples, "asgiri_request_duration_seconds_sum", protocol="h1") > 0
    assert value(samples, "asgiri_request_body_bytes_total", protocol="h1") == 300
    assert value(samples, "asgiri_request_body_bytes_total", protocol="h2") == 2000
    assert value(samples, "asgiri_response_body_bytes_total", protocol="h1") == 300
    assert value(samples, "asgiri_response_body_bytes_total", protocol="h2") == 2000
    assert value(samples, "asgiri_connections_total", protocol="h1") >= 2
    assert value(samples, "asgiri_connections_total", protocol="h2") == 1
    wait_until(port, lambda s: value(s, "asgiri_connections_open", protocol="h1") == 0)


def test_in_flight_requests(server: ThreadServer) -> None:
    port = metrics_port(server)
    result: list[int] = []
    holder = threading.Thread(
        target=lambda: result.append(httpx.get(server.url + "/hold", timeout=30).status_code)
    )
    holder.start()
    wait_until(port, lambda s: value(s, "asgiri_requests_in_flight") == 1)
    assert httpx.get(server.url + "/release").status_code == 200
    holder.join(30)
    assert result == [200]
    wait_until(port, lambda s: value(s, "asgiri_requests_in_flight") == 0)


def test_websocket_sessions(server: ThreadServer) -> None:
    port = metrics_port(server)
    with connect(f"ws://127.0.0.1:{server.port}/ws", proxy=None) as ws:
        ws.send("ping")
        assert ws.recv(timeout=10) == "ping"
        samples = scrape(port)
        assert value(samples, "asgiri_websocket_sessions_total") == 1
        assert value(samples, "asgiri_websocket_sessions_open") == 1
        assert value(samples, "asgiri_connections_open", protocol="websocket") == 1
    samples = wait_until(port, lambda s: value(s, "asgiri_websocket_sessions_open") == 0)
    assert value(samples, "asgiri_websocket_sessions_total") == 1


def test_metrics_listener_is_not_the_app(server: ThreadServer) -> None:
    port = metrics_port(server)
    assert port != server.port
    assert httpx.get(f"http://127.0.0.1:{port}/other").status_code == 404
    # Scrapes are not requests of the app.
    scrape(port)
    assert value(scrape(port), "asgiri_requests_total", protocol="h1", status="200") == 0


def test_metrics_off_by_default_leaves_the_hot_path_alone() -> None:
    with serve(app) as srv:
        ctx = srv.server._ctx
        assert ctx is not None
        assert ctx.metrics is None
        assert type(ctx.connections) is set
        assert srv.server.metrics_port is None
        assert httpx.get(srv.url + "/").status_code == 200


def test_processes_sharing_a_multiproc_dir_are_added_up(tmp_path: Path) -> None:
    """What workers do: each process writes its values, either endpoint sums them."""
    env = {"PROMETHEUS_MULTIPROC_DIR": str(tmp_path)}
    args = ["apps:hello", "--port", "0", "--metrics-bind", "127.0.0.1:0"]
    with cli_server(*args, env=env) as one, cli_server(*args, env=env) as two:
        for _ in range(2):
            assert httpx.get(one.url + "/").status_code == 200
        for _ in range(3):
            assert httpx.get(two.url + "/").status_code == 200
        port = int(one.wait_for(r"Prometheus metrics on http://[^ ]+:(\d+)/metrics").group(1))
        samples = wait_until(
            port,
            lambda s: value(s, "asgiri_requests_total", protocol="h1", status="200") == 5,
        )
        assert value(samples, "asgiri_request_duration_seconds_count", protocol="h1") == 5


class Process:
    """``python -m MODULE ARGS`` with its output read line by line."""

    def __init__(self, *args: str, env: dict[str, str]) -> None:
        full_env = subprocess_env(env)
        self.proc = subprocess.Popen(
            [sys.executable, "-m", *args],
            env=full_env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        self.lines: queue.Queue[str | None] = queue.Queue()
        self.seen: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.seen.append(line)
            self.lines.put(line)
        self.lines.put(None)

    def wait_for(self, pattern: str, timeout: float = 15.0) -> re.Match[str]:
        deadline = time.monotonic() + timeout
        while True:
            line = self.lines.get(timeout=max(0.0, deadline - time.monotonic()))
            assert line is not None, "process exited"
            match = re.search(pattern, line)
            if match:
                return match

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(30)
        self._reader.join(10)


def test_supervisor_serves_the_sum_of_workers_without_their_own_listeners(
    tmp_path: Path,
) -> None:
    env = {"PROMETHEUS_MULTIPROC_DIR": str(tmp_path)}
    procs = [
        Process("support.metrics_processes", role, env=env) for role in ("supervisor", "w", "w")
    ]
    try:
        port = int(procs[0].wait_for(r"all processes on port (\d+)").group(1))
        worker_ports = [
            int(p.wait_for(r"Listening on http://[^ ]+:(\d+)").group(1)) for p in procs[1:]
        ]
        for worker, count in zip(worker_ports, (2, 3), strict=True):
            for _ in range(count):
                assert httpx.get(f"http://127.0.0.1:{worker}/").status_code == 200
        samples = wait_until(
            port,
            lambda s: value(s, "asgiri_requests_total", protocol="h1", status="200") == 5,
        )
        assert value(samples, "asgiri_requests_in_flight") == 0
    finally:
        for proc in procs:
            proc.stop()
    # The workers opened no metrics listener of their own.
    for worker in procs[1:]:
        assert any("Listening on" in line for line in worker.seen)
        assert not any("Prometheus metrics on" in line for line in worker.seen)


def test_missing_prometheus_client_is_one_line(tmp_path: Path) -> None:
    fake = tmp_path / "prometheus_client"
    fake.mkdir()
    (fake / "__init__.py").write_text("raise ImportError('not installed')\n")
    # ``python -m`` puts the working directory first on sys.path.
    result = run_cli("apps:hello", "--port", "0", "--metrics-bind", "127.0.0.1:0", cwd=tmp_path)
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [
        "Error: --metrics-bind needs prometheus_client: pip install 'asgiri[metrics]'"
    ]


@pytest.mark.parametrize("bind", ["9100", "host:", ":x", "127.0.0.1:99999"])
def test_bad_metrics_bind_is_a_usage_error(bind: str) -> None:
    result = run_cli("apps:hello", "--metrics-bind", bind)
    assert result.returncode == 2
    assert "--metrics-bind must be HOST:PORT" in result.stderr
