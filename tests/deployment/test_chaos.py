"""Chaos under load: ``--workers 2`` while its processes are killed and restarted.

One supervisor (the real CLI, TLS, so HTTP/3's UDP sockets are in play) is
loaded by clients of HTTP/1.1, HTTP/2 and HTTP/3 that retry an idempotent
request on a new connection when theirs fails, as browsers and HTTP client
libraries do.  Meanwhile, in one run:

1. a worker is SIGKILLed every second for 20 seconds;
2. five SIGHUPs arrive within a second (a storm of rolling restarts);
3. SIGTERM arrives in the middle of a rolling restart.

What must hold: no client request fails for good (each is answered 200
within its retry window), the supervisor keeps the same sockets and no more
file descriptors than before the chaos, its worker count comes back to 2,
and SIGTERM ends it cleanly (exit code 0) with no process left behind.
"""

from __future__ import annotations

import contextlib
import random
import re
import signal
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import httpx
import psutil
import pytest

from tests.support.h3_client import H3Client
from tests.support.servers import CLIServer

pytestmark = pytest.mark.timeout(150)

APP = "tests.contract.app:app"
#: How long one request may take, all its retries included, before it counts as failed.
RETRY_WINDOW = 20.0
#: One attempt on one connection (a connection to a killed worker goes silent on HTTP/3).
ATTEMPT_TIMEOUT = 3.0
KILLS = 20
STARTED_RE = r"Started worker process \[(\d+)\]"
READY_RE = r"Worker process \[(\d+)\] is ready"


@dataclass
class LoadStats:
    kind: str
    served: int = 0
    retries: int = 0
    failures: list[str] = field(default_factory=list)
    slowest: float = 0.0


class RetryingClient:
    """``GET /ok`` in a loop; a failed attempt is retried on a new connection."""

    def __init__(self, kind: str, port: int) -> None:
        self.kind = kind
        self.port = port
        self.stats = LoadStats(kind)
        self.stop = threading.Event()
        self._httpx: httpx.Client | None = None
        self._h3: H3Client | None = None
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _attempt(self) -> int:
        if self.kind == "h3":
            if self._h3 is None:
                self._h3 = H3Client(self.port, timeout=ATTEMPT_TIMEOUT)
                self._h3.connect()
            response = self._h3.get("/ok")
            if response.reset_code is not None:
                raise ConnectionError(f"stream reset with {response.reset_code:#x}")
            return response.status
        if self._httpx is None:
            http2 = self.kind == "h2"
            self._httpx = httpx.Client(
                base_url=f"https://127.0.0.1:{self.port}",
                http1=not http2,
                http2=http2,
                verify=False,
                timeout=ATTEMPT_TIMEOUT,
                limits=httpx.Limits(max_connections=1),
            )
        return self._httpx.get("/ok").status_code

    def _drop_connection(self) -> None:
        if self._h3 is not None:
            with contextlib.suppress(Exception):
                self._h3.close()
            self._h3 = None
        if self._httpx is not None:
            self._httpx.close()
            self._httpx = None

    def _request(self) -> None:
        started = time.monotonic()
        last = ""
        while time.monotonic() - started < RETRY_WINDOW:
            try:
                status = self._attempt()
            except (httpx.HTTPError, OSError, TimeoutError) as exc:
                last = f"{type(exc).__name__}: {exc}"
                self.stats.retries += 1
                self._drop_connection()
                time.sleep(0.05)
                continue
            if status != 200:
                self.stats.failures.append(f"{self.kind}: status {status}")
            else:
                self.stats.served += 1
            self.stats.slowest = max(self.stats.slowest, time.monotonic() - started)
            return
        self.stats.failures.append(f"{self.kind}: no answer within {RETRY_WINDOW} s ({last})")

    def _run(self) -> None:
        try:
            while not self.stop.is_set():
                self._request()
                self.stop.wait(0.01)
        finally:
            self._drop_connection()

    def __enter__(self) -> RetryingClient:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join(RETRY_WINDOW + 10)


class InFlight:
    """One slow request (``/slow?2``) on a new connection, in a thread: its status."""

    def __init__(self, kind: str, port: int) -> None:
        self.kind = kind
        self.port = port
        self.status: int | str = "no answer"
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        try:
            if self.kind == "h3":
                with H3Client(self.port, timeout=30) as client:
                    self.status = client.get("/slow?2").status
                return
            http2 = self.kind == "h2"
            with httpx.Client(http1=not http2, http2=http2, verify=False, timeout=30) as client:
                self.status = client.get(f"https://127.0.0.1:{self.port}/slow?2").status_code
        except Exception as exc:
            self.status = f"{type(exc).__name__}: {exc}"

    def result(self) -> int | str:
        self.thread.join(40)
        return self.status


def _workers(supervisor: psutil.Process) -> list[psutil.Process]:
    """The supervisor's live children (its workers)."""
    alive = []
    for child in supervisor.children():
        with contextlib.suppress(psutil.Error):
            if child.status() != psutil.STATUS_ZOMBIE:
                alive.append(child)
    return alive


def _wait_for(condition: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"not within {timeout} s: {what}"
        time.sleep(0.05)


def _steady(srv: CLIServer, supervisor: psutil.Process) -> None:
    """Two workers, each ready, and no restart going on (what fd counts compare in)."""

    def settled() -> bool:
        pids = {w.pid for w in _workers(supervisor)}
        ready = {int(p) for p in re.findall(READY_RE, srv.output)}
        return len(pids) == 2 and pids <= ready

    _wait_for(settled, 60, "two ready workers")


def _sockets(process: psutil.Process) -> set[tuple[str, int]]:
    """The supervisor's sockets, as (type, local port): listeners and UDP sockets."""
    return {(c.type.name, c.laddr.port) for c in process.net_connections("all") if c.laddr}


@pytest.fixture
def supervisor(cert_files: tuple[str, str]) -> Iterator[CLIServer]:
    srv = CLIServer(
        APP,
        "--port",
        "0",
        "--workers",
        "2",
        "--no-access-log",
        "--ssl-certfile",
        cert_files[0],
        "--ssl-keyfile",
        cert_files[1],
        "--timeout-graceful-shutdown",
        "5",
    )
    try:
        srv.wait_ready()
        srv.wait_count(READY_RE, 2)
        yield srv
    finally:
        if srv.proc.poll() is None:
            srv.proc.kill()
        srv.wait(10)


@pytest.fixture
def cert_files(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, str]:
    from asgiri.ssl_utils import generate_self_signed_cert

    cert, key = generate_self_signed_cert()
    folder = tmp_path_factory.mktemp("chaos-cert")
    (folder / "cert.pem").write_bytes(cert)
    (folder / "key.pem").write_bytes(key)
    return str(folder / "cert.pem"), str(folder / "key.pem")


def test_workers_killed_restarted_and_stopped_under_load(supervisor: CLIServer) -> None:
    srv = supervisor
    assert srv.port is not None
    sup = psutil.Process(srv.proc.pid)
    _steady(srv, sup)
    fds_before = sup.num_fds()
    sockets_before = _sockets(sup)
    assert ("SOCK_DGRAM", srv.port) in sockets_before, "no UDP socket for HTTP/3"
    rng = random.Random(15)

    clients = [RetryingClient(kind, srv.port) for kind in ("h1", "h1", "h2", "h2", "h3")]
    with contextlib.ExitStack() as stack:
        for client in clients:
            stack.enter_context(client)
        _wait_for(lambda: all(c.stats.served for c in clients), 30, "every client served")

        # 1. A worker SIGKILLed every second for 20 seconds.
        killed: list[int] = []
        for _ in range(KILLS):
            workers = _workers(sup)
            if workers:
                victim = rng.choice(workers)
                with contextlib.suppress(psutil.NoSuchProcess):
                    victim.kill()
                    killed.append(victim.pid)
            time.sleep(1.0)
        assert len(killed) == KILLS, "some second found no worker to kill"
        _steady(srv, sup)

        # 2. A storm of five SIGHUPs within a second.
        restarts = srv.output.count("Restart complete")
        for _ in range(5):
            srv.signal(signal.SIGHUP)
            time.sleep(0.15)
        srv.wait_count("Restart complete", restarts + 1, timeout=60)
        _steady(srv, sup)
        served = [c.stats.served for c in clients]
        _wait_for(
            lambda: all(c.stats.served > n + 2 for c, n in zip(clients, served, strict=True)),
            30,
            "every client served after the storm",
        )

    failures = [f for c in clients for f in c.stats.failures]
    assert failures == [], failures[:10]
    print("served, retries, slowest request (s):")
    for c in clients:
        print(f"  {c.kind}: {c.stats.served}, {c.stats.retries}, {c.stats.slowest:.2f}")
    # Nothing leaked over all of it: the same sockets, no more descriptors.
    assert _sockets(sup) == sockets_before
    fds_after = sup.num_fds()
    assert fds_after <= fds_before, f"supervisor fds {fds_before} -> {fds_after}"

    # 3. SIGTERM in the middle of a rolling restart, with requests in flight:
    # they are answered (no retry this time), and the supervisor ends cleanly.
    slow = len(re.findall(r"slow request started", srv.output))
    in_flight = [InFlight(kind, srv.port) for kind in ("h1", "h2", "h3")]
    srv.wait_count(r"slow request started", slow + len(in_flight))
    started = len(re.findall(STARTED_RE, srv.output))
    srv.signal(signal.SIGHUP)
    srv.wait_count(STARTED_RE, started + 1, timeout=30)
    srv.signal(signal.SIGTERM)
    assert srv.wait(60) == 0, srv.output[-3000:]
    assert [r.result() for r in in_flight] == [200, 200, 200]
    assert "Stopped supervisor process" in srv.output
    assert "Traceback" not in srv.output, srv.output[-3000:]
    # The new worker the shutdown stopped is not reported as one that failed to start.
    assert "did not start" not in srv.output, srv.output[-3000:]
    # No process left behind: every worker the supervisor ever started has gone.
    leftovers = []
    for pid in {int(p) for p in re.findall(STARTED_RE, srv.output)}:
        with contextlib.suppress(psutil.NoSuchProcess):
            if psutil.Process(pid).status() != psutil.STATUS_ZOMBIE:
                leftovers.append(pid)
    assert leftovers == []
