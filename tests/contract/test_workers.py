"""``--workers 2``: a rolling restart (SIGHUP) and a worker lost in the middle of one.

The supervisor runs as a CLI process serving ``tests.contract.app:app``;
what happens is read from its log (``Worker process [PID] ...`` lines) and
from clients of each transport.  Over TLS the supervisor also serves HTTP/3,
whose UDP sockets pass from an old worker to its replacement.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import psutil
import pytest

from tests.support.processes import READY_RE, ready_pids, wait_ready_count
from tests.support.servers import CLIServer

from .transports import (
    H1,
    H2_TLS,
    H2C,
    TIMEOUT,
    WS_H1,
    WS_H2,
    WS_H2C,
    HTTPTransport,
    WSTransport,
)

pytestmark = pytest.mark.timeout(120)

APP = "tests.contract.app:app"
#: Each HTTP transport with the WebSocket transport of the same connection kind.
TRANSPORTS: list[tuple[HTTPTransport, WSTransport]] = [
    (H1, WS_H1),
    (H2C, WS_H2C),
    (H2_TLS, WS_H2),
]
IDS = [str(t) for t, _ in TRANSPORTS]
SERVICE_RESTART = 1012
#: How long old workers may take to go, from the SIGHUP (not --timeout-graceful-shutdown).
RESTART_WITHIN = 8.0


@pytest.fixture
def supervisor(request: pytest.FixtureRequest, cert_files: tuple[str, str]) -> Iterator[CLIServer]:
    transport: HTTPTransport = request.param
    tls = ["--ssl-certfile", cert_files[0], "--ssl-keyfile", cert_files[1]] if transport.tls else []
    srv = CLIServer(APP, "--port", "0", "--workers", "2", "--timeout-graceful-shutdown", "30", *tls)
    try:
        srv.wait_ready()
        wait_ready_count(srv, 2)
        yield srv
    finally:
        _stop(srv)


def _stop(srv: CLIServer) -> None:
    """Stop the supervisor; a second SIGTERM if its workers are slow to drain."""
    if srv.proc.poll() is None:
        srv.signal(signal.SIGTERM)
        try:
            srv.proc.wait(10)
        except subprocess.TimeoutExpired:
            srv.signal(signal.SIGTERM)  # the second one closes every connection now
    srv.stop()


def _load(
    transport: HTTPTransport, srv: CLIServer, stop: threading.Event, served: list[int]
) -> list[str]:
    """Requests on a keep-alive connection (renewed when the server closes it) until ``stop``."""
    failures = []
    with transport.httpx_client(srv, timeout=30) as client:
        while not stop.is_set():
            try:
                response = client.get("/ok")
            except httpx.HTTPError as exc:
                failures.append(f"{type(exc).__name__}: {exc}")
                continue
            if response.status_code != 200 or response.http_version != transport.version:
                failures.append(f"{response.status_code} over {response.http_version}")
            else:
                served.append(1)
    return failures


def _events(srv: CLIServer) -> str:
    """The supervisor's and workers' log without the access lines (for failure messages)."""
    return "".join(line for line in srv.lines if '" 200 ' not in line)


def _stopped(srv: CLIServer, pids: set[int]) -> set[int]:
    found = re.findall(r"Worker process \[(\d+)\] stopped", srv.output)
    return {int(pid) for pid in found} & pids


def _poll(condition: Any, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


@pytest.mark.parametrize(
    ("supervisor", "pair"),
    [(t, (t, w)) for t, w in TRANSPORTS],
    ids=IDS,
    indirect=["supervisor"],
)
def test_rolling_restart_under_keep_alive_load(
    supervisor: CLIServer, pair: tuple[HTTPTransport, WSTransport]
) -> None:
    transport, ws_transport = pair
    old = set(ready_pids(supervisor))
    stop = threading.Event()
    served: list[int] = []
    closed: dict[str, Any] = {}
    with ThreadPoolExecutor(5) as pool, ws_transport.connect(supervisor) as ws:
        assert ws.status == ws_transport.accepted
        # The WebSocket answers its close at once, as a browser would.
        closing = pool.submit(lambda: closed.setdefault("close", ws.receive_close(timeout=40)))
        loads = [pool.submit(_load, transport, supervisor, stop, served) for _ in range(4)]
        try:
            assert _poll(lambda: len(served) >= 8, TIMEOUT), "the load did not get going"
            started = time.monotonic()
            supervisor.signal(signal.SIGHUP)
            _poll(
                lambda: (
                    _stopped(supervisor, old) == old and "Restart complete" in supervisor.output
                ),
                RESTART_WITHIN,
            )
            took = time.monotonic() - started
            assert "Restart complete" in supervisor.output, _events(supervisor)
            assert _stopped(supervisor, old) == old, (
                f"old workers still draining after {took:.1f}s\n{_events(supervisor)}"
            )
        finally:
            stop.set()
        failures = [failure for future in loads for failure in future.result(timeout=40)]
        closing.result(timeout=40)
    assert failures == []
    assert len(set(ready_pids(supervisor)) - old) == 2
    # The WebSocket's worker was replaced: it was told why.
    close = closed["close"]
    assert close is not None, "the WebSocket ended without a close frame"
    assert close.code == SERVICE_RESTART


def _slot_of(srv: CLIServer, pid: int) -> int:
    match = re.search(rf"Started worker process \[{pid}\] \(slot (\d+)\)", srv.output)
    assert match, srv.output
    return int(match.group(1))


def _live_workers(srv: CLIServer) -> int:
    children = psutil.Process(srv.proc.pid).children()
    return sum(1 for c in children if c.is_running() and c.status() != psutil.STATUS_ZOMBIE)


@pytest.mark.parametrize(
    ("supervisor", "transport"), [(t, t) for t, _ in TRANSPORTS], ids=IDS, indirect=["supervisor"]
)
def test_worker_killed_during_a_rolling_restart_is_replaced_at_once(
    supervisor: CLIServer, transport: HTTPTransport
) -> None:
    old0 = next(pid for pid in ready_pids(supervisor) if _slot_of(supervisor, pid) == 0)
    # A slow request on slot 0's worker keeps it draining while the restart goes on.
    deadline = time.monotonic() + TIMEOUT
    while True:
        holder = transport.connect(supervisor)  # the kernel picks the worker
        pid = holder.response(holder.start("GET", "/pid")).body
        if int(pid) == old0:
            break
        holder.close()
        assert time.monotonic() < deadline, "no connection reached slot 0's worker"
    slow: dict[str, Any] = {}

    def slow_request() -> None:
        slow["reply"] = holder.response(holder.start("GET", "/slow?4"), timeout=30)

    thread = threading.Thread(target=slow_request, daemon=True)
    thread.start()
    try:
        supervisor.wait_for(rf"slow request started in {old0}")
        supervisor.signal(signal.SIGHUP)
        supervisor.wait_count(READY_RE, 3)  # slot 0's new worker is ready...
        new0 = ready_pids(supervisor)[2]
        assert _slot_of(supervisor, new0) == 0
        os.kill(new0, signal.SIGKILL)  # ...and dies while its predecessor drains
        killed = time.monotonic()
        starts = r"Started worker process \[(\d+)\] \(slot 0\)"
        replaced = _poll(lambda: len(re.findall(starts, supervisor.output)) >= 3, TIMEOUT)
        took = time.monotonic() - killed
        assert replaced and took < 1.5, (
            f"slot 0 had no new worker {took:.1f}s after the kill\n{_events(supervisor)}"
        )
        with transport.httpx_client(supervisor) as client:
            assert client.get("/ok").status_code == 200  # the supervisor serves
        assert _poll(lambda: _live_workers(supervisor) == 2, 20), "the count did not return to 2"
    finally:
        thread.join(30)
        holder.close()
    assert slow["reply"].status == 200 and slow["reply"].complete, slow
