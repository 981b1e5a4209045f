"""``gunicorn -k asgiri.workers.AsgiriWorker``: real gunicorn, real clients.

gunicorn binds port 0 and is waited on through its own and asgiri's log
lines; HOME points into the test's directory, where gunicorn may put its
control socket.
"""

from __future__ import annotations

import re
import signal
import threading
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.support.servers import CLIServer

APP = "tests.apps.worker:app"


def start(home: Path, *args: str, worker: str = "asgiri.workers.AsgiriWorker") -> CLIServer:
    srv = CLIServer(
        "-k", worker, "-b", "127.0.0.1:0", *args, APP, env={"HOME": str(home)}, module="gunicorn"
    )
    match = srv.wait_for(r"Listening at: http://127\.0\.0\.1:(\d+)", 30)
    srv.port = int(match.group(1))
    return srv


def worker_pids(srv: CLIServer) -> set[int]:
    return {int(p) for p in re.findall(r"Booting worker with pid: (\d+)", srv.output)}


@pytest.fixture
def gunicorn(tmp_path: Path) -> Iterator[CLIServer]:
    srv = start(tmp_path, "-w", "2", "--access-logfile", "-")
    try:
        srv.wait_count(r"Listening on http://127\.0\.0\.1", 2)
        yield srv
    finally:
        srv.stop()


def test_gunicorn_runs_two_asgiri_workers(gunicorn: CLIServer) -> None:
    pids = worker_pids(gunicorn)
    assert len(pids) == 2
    with httpx.Client() as client:
        response = client.get(gunicorn.url + "/")
        assert response.status_code == 200
        assert response.headers["server"] == "asgiri"
        assert int(response.text) in pids
    # HTTP/2 with prior knowledge reaches asgiri's HTTP/2 too.
    with httpx.Client(http1=False, http2=True) as client:
        response = client.post(gunicorn.url + "/", content=b"-body")
        assert response.http_version == "HTTP/2"
        assert response.text.endswith("-body")
    # The access log goes through gunicorn's handler.
    gunicorn.wait_for(r'"POST / HTTP/2" 200')


def test_gunicorn_sigterm_is_graceful(gunicorn: CLIServer) -> None:
    result: dict[str, httpx.Response] = {}

    def slow() -> None:
        result["r"] = httpx.get(gunicorn.url + "/slow", timeout=30)

    thread = threading.Thread(target=slow)
    thread.start()
    gunicorn.wait_for(r"slow request started")
    gunicorn.signal(signal.SIGTERM)
    thread.join(30)
    assert result["r"].status_code == 200
    assert gunicorn.wait(30) == 0
    assert len(re.findall(r"Finished server process", gunicorn.output)) == 2
    with pytest.raises(httpx.ConnectError):
        httpx.get(gunicorn.url + "/")


def test_gunicorn_max_requests_recycles_the_worker(tmp_path: Path) -> None:
    srv = start(tmp_path, "-w", "1", "--max-requests", "3")
    try:
        srv.wait_count(r"Listening on http://127\.0\.0\.1", 1)
        served = set()
        for _ in range(7):
            # A new connection per request: the worker stopping after its third
            # request leaves the next one queued for its replacement.
            response = httpx.get(srv.url + "/", headers={"connection": "close"}, timeout=30)
            assert response.status_code == 200
            served.add(int(response.text))
        assert len(served) >= 2
        assert "Maximum request limit reached" in srv.output
    finally:
        assert srv.stop() == 0


def test_gunicorn_uvloop_worker(tmp_path: Path) -> None:
    srv = start(tmp_path, "-w", "1", worker="asgiri.workers.AsgiriUVLoopWorker")
    try:
        srv.wait_count(r"Listening on http://127\.0\.0\.1", 1)
        response = httpx.get(srv.url + "/")
        assert response.status_code == 200
        assert int(response.text) in worker_pids(srv)
    finally:
        assert srv.stop() == 0
