"""--workers-max-rss and --workers-lifetime: workers replaced for memory or age, under load.

The replacement is the graceful one SIGHUP uses, so clients requesting all
along (keep-alive and new connections) must see no failure.
"""

from __future__ import annotations

import re
import threading
from pathlib import Path

import httpx
import pytest

from asgiri.server import Server
from tests.support.servers import CLIServer, run_cli


class Load:
    """Two clients requesting ``/`` in a loop; the worker pids that answered."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.stop = threading.Event()
        self.pids: set[int] = set()
        self.done = 0
        self.failures: list[str] = []
        self.threads = [
            threading.Thread(target=self._run, args=(keep_alive,), daemon=True)
            for keep_alive in (True, False)
        ]

    def __enter__(self) -> Load:
        for thread in self.threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join(30)

    def _run(self, keep_alive: bool) -> None:
        headers = {} if keep_alive else {"connection": "close"}
        with httpx.Client(timeout=30) as client:
            while not self.stop.is_set():
                try:
                    response = client.get(self.url, headers=headers)
                except httpx.HTTPError as exc:
                    self.failures.append(repr(exc))
                    continue
                if response.status_code != 200:
                    self.failures.append(f"status {response.status_code}")
                    continue
                self.pids.add(int(response.text))
                self.done += 1


def test_a_worker_over_max_rss_is_replaced_without_failing_a_request() -> None:
    srv = CLIServer(
        "apps.ops:leak",
        "--port",
        "0",
        "--workers",
        "2",
        "--workers-max-rss",
        "120",
        "--rss-sample-interval",
        "0.3",
        "--rss-samples",
        "2",
    )
    try:
        srv.wait_ready()
        srv.wait_count(r"Worker process \[\d+\] is ready", 2)
        with Load(srv.url + "/") as load:
            leaky = int(httpx.get(srv.url + "/?mib=100", timeout=30).text)  # leaks on purpose
            line = srv.wait_for(rf"Worker process \[{leaky}\]: its memory .*; replacing it")
            srv.wait_for(rf"Worker process \[{leaky}\] stopped")
            done = load.done
            srv.wait_count(r"Worker process \[\d+\] is ready", 3)
            while load.done < done + 20:  # served on after the replacement
                threading.Event().wait(0.05)
        assert not load.failures, load.failures
        assert re.search(r"its memory \(\d+ MiB\) stayed over --workers-max-rss 120 MiB", line[0])
        assert "2 samples" in line.string
        replaced = re.findall(r"Worker process \[(\d+)\]: its memory", srv.output)
        assert replaced == [str(leaky)]  # the other worker stays
    finally:
        assert srv.stop() == 0, srv.output


def test_workers_are_replaced_by_age_without_failing_a_request() -> None:
    srv = CLIServer(
        "apps.ops:pid",
        "--port",
        "0",
        "--workers",
        "2",
        "--workers-lifetime",
        "2",
        "--workers-lifetime-jitter",
        "1",
    )
    try:
        srv.wait_ready()
        srv.wait_count(r"Worker process \[\d+\] is ready", 2)
        first = {int(p) for p in re.findall(r"Started worker process \[(\d+)\]", srv.output)}
        with Load(srv.url + "/") as load:
            lines = srv.wait_count(r"Worker process \[\d+\]: it reached its lifetime \(\ds\)", 2)
            srv.wait_count(r"Worker process \[\d+\] stopped", 2, timeout=60)
            done = load.done
            while load.done < done + 20:
                threading.Event().wait(0.05)
        assert not load.failures, load.failures
        retired = {int(p) for p in re.findall(r"\[(\d+)\]", " ".join(lines))}
        assert retired == first
        assert load.pids - first, "no replacement served"
    finally:
        assert srv.stop() == 0, srv.output


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--workers-max-rss", "100"], "--workers-max-rss replaces worker processes: it needs"),
        (["--workers-lifetime", "60"], "--workers-lifetime replaces worker processes: it needs"),
        (["--workers", "2", "--workers-lifetime", "-1"], "--workers-lifetime must be > 0"),
        (["--workers", "2", "--rss-samples", "0"], "--workers-rss-samples must be between 1"),
    ],
)
def test_recycling_mistakes_are_one_line(args: list[str], message: str) -> None:
    result = run_cli("apps:hello", *args)
    assert result.returncode == 2
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and message in lines[0], result.stderr


def test_recycling_options_from_python_file_and_environment(tmp_path: Path) -> None:
    server = Server("apps:hello", workers=2, workers_max_rss=512, workers_lifetime=3600.0)
    assert server.config.workers.workers_max_rss == 512
    assert server.config.workers.workers_lifetime == 3600.0
    config = tmp_path / "w.toml"
    config.write_text("workers = 2\nworkers_lifetime = 600\nworkers_rss_samples = 5\n")
    env = {"ASGIRI_WORKERS_MAX_RSS": "256", "ASGIRI_RSS_SAMPLE_INTERVAL": "2.5"}
    srv = CLIServer("apps:hello", "--config", str(config), "--print-config", env=env)
    assert srv.wait() == 0
    for expected in (
        "workers_lifetime = 600.0",
        "workers_rss_samples = 5",
        "workers_max_rss = 256",
        "workers_rss_interval = 2.5",
    ):
        assert expected in srv.output, srv.output
