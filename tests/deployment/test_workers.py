"""``--workers``: the supervisor and its worker processes, run for real.

Every server is a real ``asgiri`` process on port 0; tests wait for log lines
with deadlines (a loaded machine makes them slow, never wrong) and talk to it
with httpx over HTTP/1.1 and HTTP/2.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import psutil
import pytest

from asgiri.config import Config
from tests.support.processes import ready_pids, wait_ready_count
from tests.support.servers import CLIServer, run_cli

APP = "tests.apps.worker:app"


def wait_count(srv: CLIServer, pattern: str, count: int = 1, timeout: float = 30.0) -> list[str]:
    return srv.wait_count(pattern, count, timeout)


@pytest.fixture
def supervisor(request: pytest.FixtureRequest) -> Iterator[CLIServer]:
    args = getattr(request, "param", ("--workers", "2"))
    srv = CLIServer(APP, "--port", "0", "--no-access-log", *args)
    try:
        srv.wait_ready()
        yield srv
    finally:
        srv.stop()


def supervisor_pid(srv: CLIServer) -> int:
    return int(srv.wait_for(r"Started supervisor process \[(\d+)\]").group(1))


# ---------------------------------------------------------------- start-up and serving


def test_supervisor_starts_n_workers_that_share_the_port(supervisor: CLIServer) -> None:
    pids = wait_ready_count(supervisor, 2)
    sup = supervisor_pid(supervisor)
    assert "starting 2 workers" in supervisor.output
    assert len(set(pids)) == 2 and sup not in pids
    served = set()
    for _ in range(20):
        # A new connection each time: any worker may accept it.
        response = httpx.get(supervisor.url + "/", headers={"connection": "close"})
        assert response.status_code == 200
        served.add(int(response.text))
    assert served <= set(pids)


@pytest.mark.parametrize(
    ("env", "expected"),
    [({"WEB_CONCURRENCY": "2"}, 2), ({}, None)],
    ids=["web-concurrency", "auto"],
)
def test_worker_count_from_env_or_auto(env: dict[str, str], expected: int | None) -> None:
    args = ("--port", "0") if env else ("--port", "0", "--workers", "auto")
    count = expected or len(os.sched_getaffinity(0))
    srv = CLIServer(APP, *args, env=env)
    try:
        srv.wait_for(r"starting (\d+) worker")
        assert f"starting {count} worker" in srv.output
        wait_ready_count(srv, count)
        srv.wait_ready()
        assert httpx.get(srv.url + "/").status_code == 200
    finally:
        assert srv.stop() == 0


def test_reload_with_workers_is_refused() -> None:
    result = run_cli(APP, "--reload", "--workers", "2")
    assert result.returncode == 2
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1
    assert "--reload cannot be combined with workers > 1" in lines[0]


def test_web_concurrency_is_ignored_under_reload() -> None:
    srv = CLIServer(APP, "--reload", "--port", "0", env={"WEB_CONCURRENCY": "2"})
    try:
        srv.wait_ready()
        assert "Started reloader process" in srv.output
        assert "supervisor" not in srv.output
        assert httpx.get(srv.url + "/").status_code == 200
    finally:
        assert srv.stop() == 0


def test_bad_worker_count_is_a_usage_error() -> None:
    result = run_cli(APP, "--workers", "many")
    assert result.returncode == 2
    assert "--workers must be a number or 'auto'" in result.stderr
    with pytest.raises(ValueError, match="workers must be between 1 and 1024"):
        Config.from_options(APP, workers=0)


def test_app_that_cannot_start_stops_the_supervisor() -> None:
    result = run_cli("tests.no_such_module:app", "--port", "0", "--workers", "2")
    assert result.returncode == 1, result.stderr
    assert "Error:" in result.stderr
    assert "failed to start" in result.stderr


# ---------------------------------------------------------------- replacing workers


def test_dead_worker_is_replaced_and_crash_loop_backs_off(tmp_path: Path) -> None:
    marker = tmp_path / "fail"
    srv = CLIServer(
        APP,
        "--port",
        "0",
        "--workers",
        "1",
        "--no-access-log",
        env={"ASGIRI_TEST_FAIL_MARKER": str(marker)},
    )
    try:
        srv.wait_ready()
        [first] = wait_ready_count(srv, 1)
        # From now on every new worker fails its lifespan startup: a crash loop.
        marker.write_text("")
        with pytest.raises(httpx.HTTPError):
            httpx.get(srv.url + "/crash")
        delays = wait_count(srv, r"died \(code \d+\); starting a new one in [\d.]+s", 3)
        assert [re.findall(r"in ([\d.]+)s", d)[0] for d in delays[:3]] == ["0.5", "1", "2"]
        started = len(re.findall(r"Started worker process", srv.output))
        assert started <= 4  # the first worker and one per delay: no spinning
        marker.unlink()
        [_, second] = wait_ready_count(srv, 2, timeout=30)
        assert second != first
        assert int(httpx.get(srv.url + "/").text) == second
    finally:
        assert srv.stop() == 0


def test_workers_killed_from_outside_are_replaced_without_back_off() -> None:
    """Kills in a row (an operator, the OOM killer) are not a crash loop: each
    killed worker is replaced at once, not after a growing delay that would
    leave the service without any worker."""
    srv = CLIServer(APP, "--port", "0", "--workers", "1", "--no-access-log").wait_ready()
    try:
        pids = wait_ready_count(srv, 1)
        for kills in range(1, 5):
            os.kill(pids[-1], signal.SIGKILL)
            pids = wait_ready_count(srv, kills + 1, timeout=15)
        # No delay before any replacement (the back-off would have waited 0.5, 1, 2 and 4 s).
        assert "starting a new one in" not in srv.output
        assert len(re.findall(r"was stopped \(code -9\); starting a new one", srv.output)) == 4
        assert int(httpx.get(srv.url + "/").text) == pids[-1]
    finally:
        assert srv.stop() == 0


def test_hung_worker_is_killed_and_replaced() -> None:
    srv = CLIServer(
        APP, "--port", "0", "--workers", "1", "--timeout-worker-healthcheck", "1"
    ).wait_ready()
    try:
        [first] = wait_ready_count(srv, 1)
        with pytest.raises(httpx.HTTPError):
            httpx.get(srv.url + "/block", timeout=30)
        wait_count(srv, rf"Worker process \[{first}\] missed its heartbeat; killing it")
        [_, second] = wait_ready_count(srv, 2)
        assert int(httpx.get(srv.url + "/").text) == second
    finally:
        assert srv.stop() == 0


def test_max_requests_recycles_workers_without_failures() -> None:
    srv = CLIServer(
        APP,
        "--port",
        "0",
        "--workers",
        "1",
        "--no-access-log",
        "--limit-max-requests",
        "5",
        "--limit-max-requests-jitter",
        "2",
    ).wait_ready()
    try:
        wait_ready_count(srv, 1)
        served: list[int] = []
        deadline = time.monotonic() + 60
        # A worker over its limit keeps serving until its replacement is ready;
        # then it stops and its keep-alive connection moves to the new worker.
        with httpx.Client() as client:
            while len(set(served)) < 3 and time.monotonic() < deadline:
                response = client.get(srv.url + "/")
                assert response.status_code == 200
                served.append(int(response.text))
        assert len(set(served)) >= 3
        assert len(served) >= 10  # each worker served at least its limit of 5
        assert len(re.findall(r"reached its request limit", srv.output)) >= 2
    finally:
        assert srv.stop() == 0


# ---------------------------------------------------------------- stopping


def test_sigterm_stops_workers_gracefully(supervisor: CLIServer) -> None:
    wait_ready_count(supervisor, 2)
    result: dict[str, httpx.Response] = {}

    def slow() -> None:
        result["r"] = httpx.get(supervisor.url + "/slow", timeout=30)

    thread = threading.Thread(target=slow)
    thread.start()
    wait_count(supervisor, r"slow request started")
    supervisor.signal(signal.SIGTERM)
    thread.join(30)
    assert result["r"].status_code == 200
    assert supervisor.wait(30) == 0
    assert "Stopped supervisor process" in supervisor.output
    assert len(re.findall(r"Worker process \[\d+\] stopped \(code 0\)", supervisor.output)) == 2


# ---------------------------------------------------------------- zero-downtime restart


def _load(url: str, stop: threading.Event, kind: str) -> tuple[int, list[str]]:
    """Requests in a loop until ``stop``; (successes, failures)."""
    ok, failures = 0, []
    http2 = kind == "h2"
    client: httpx.Client | None = None
    while not stop.is_set():
        if client is None or kind == "new":
            if client is not None:
                client.close()
            client = httpx.Client(http1=not http2, http2=http2, timeout=30, verify=False)
        try:
            response = client.get(url + "/", params={"kind": kind})
            if response.status_code != 200:
                failures.append(f"{kind}: status {response.status_code}")
            elif kind == "h2" and response.http_version != "HTTP/2":
                failures.append(f"{kind}: {response.http_version}")
            else:
                ok += 1
        except httpx.HTTPError as exc:
            failures.append(f"{kind}: {type(exc).__name__}: {exc}")
    if client is not None:
        client.close()
    return ok, failures


@pytest.mark.parametrize(
    "supervisor",
    [("--workers", "2"), ("--workers", "2", "--selfcert")],
    ids=["cleartext", "tls"],
    indirect=True,
)
def test_sighup_restarts_workers_without_dropping_a_request(supervisor: CLIServer) -> None:
    old = set(wait_ready_count(supervisor, 2))
    stop = threading.Event()
    kinds = ["h1", "h1", "h2", "h2", "new", "new"]
    with ThreadPoolExecutor(len(kinds)) as pool:
        futures = [pool.submit(_load, supervisor.url, stop, kind) for kind in kinds]
        try:
            # Load first, then the restart, then a little more load on the new workers.
            wait_count(supervisor, r".", 1)
            supervisor.signal(signal.SIGHUP)
            wait_count(supervisor, r"Restart complete", 1, timeout=60)
            wait_count(supervisor, r"Worker process \[\d+\] stopped", 2, timeout=60)
        finally:
            stop.set()
        results = [f.result(timeout=60) for f in futures]
    failures = [failure for _, f in results for failure in f]
    assert failures == [], "\n".join(failures)
    assert all(ok > 0 for ok, _ in results)
    new = set(ready_pids(supervisor)) - old
    assert len(new) == 2
    # The new workers serve.
    assert int(httpx.get(supervisor.url + "/", verify=False).text) in new


def test_workers_stop_when_the_supervisor_is_killed(supervisor: CLIServer) -> None:
    pids = wait_ready_count(supervisor, 2)
    supervisor.signal(signal.SIGKILL)
    supervisor.wait(10)
    # Each worker sees its pipe from the supervisor end and drains by itself.
    procs = []
    for pid in pids:
        with contextlib.suppress(psutil.NoSuchProcess):
            procs.append(psutil.Process(pid))
    _, alive = psutil.wait_procs(procs, timeout=30)
    # An exited worker may linger as a zombie until init reaps it.
    assert [p for p in alive if p.status() != psutil.STATUS_ZOMBIE] == []
    assert len(re.findall(r"Finished server process", supervisor.output)) == 2


def test_server_api_with_workers_in_a_thread() -> None:
    from asgiri.server import Server

    server = Server(APP, port=0, workers=2, access_log=False)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        assert server.started.wait(30)
        assert server.port
        response = httpx.get(f"http://127.0.0.1:{server.port}/")
        assert response.status_code == 200
        assert int(response.text) != os.getpid()
    finally:
        server.request_shutdown()
        thread.join(30)
    assert not thread.is_alive()


def test_metrics_add_up_all_workers() -> None:
    from tests.support.metrics import scrape, value

    srv = CLIServer(
        APP, "--port", "0", "--workers", "2", "--metrics-bind", "127.0.0.1:0", "--no-access-log"
    )
    try:
        metrics_port = int(srv.wait_for(r"metrics of all workers on http://[^:]+:(\d+)").group(1))
        srv.wait_ready()
        pids = set(wait_ready_count(srv, 2))
        served: set[int] = set()
        requests = 0
        deadline = time.monotonic() + 30
        # New connections until both workers have answered (the kernel picks).
        while (served != pids or requests < 10) and time.monotonic() < deadline:
            response = httpx.get(srv.url + "/", headers={"connection": "close"})
            assert response.status_code == 200
            served.add(int(response.text))
            requests += 1
        assert served == pids
        total = value(scrape(metrics_port), "asgiri_requests_total", protocol="h1", status="200")
        assert total == requests
    finally:
        assert srv.stop() == 0
