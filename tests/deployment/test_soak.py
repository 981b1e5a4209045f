"""A one-minute soak (``bench/soak.py``; ``make soak`` runs it for 30 minutes).

One asgiri with ``--workers 2`` under the whole mix at once: HTTP/1.1
keep-alive and one-request connections, multiplexed HTTP/2, HTTP/3,
WebSocket echoes and idle WebSockets, uploads and downloads of 4 MiB on
HTTP/1.1 and HTTP/2, clients that vanish mid-request and slow readers, with
one SIGHUP (a rolling restart) half-way.  Nothing may fail, every class must
be served, and no worker may grow in memory or descriptors after its warm-up
beyond a bound (a loose one for RSS here: a young worker's allocator still
settles by tens of MiB in its first minute, with 4 MiB bodies).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SECONDS = 60
#: MiB a worker may grow after its 10 s warm-up within this minute.
RSS_SLACK_MIB = 64
#: bench/soak.py's FD_SLACK.
FD_SLACK = 16
CLASSES = {
    "h1 keep-alive",
    "h1 short",
    "h2 multiplexed",
    "h1 upload",
    "h1 download",
    "h2 upload",
    "h2 download",
    "vanishing client",
    "slow reader",
    "h3",
    "WebSocket echo",
    "idle WebSocket",
}

pytestmark = pytest.mark.timeout(SECONDS + 150)


def test_one_minute_soak_with_a_rolling_restart(tmp_path: Path) -> None:
    summary_path = tmp_path / "soak.json"
    result = subprocess.run(
        [
            sys.executable,
            "bench/soak.py",
            "--seconds",
            str(SECONDS),
            "--sample",
            "5",
            "--sighup-every",
            str(SECONDS // 2),
            "--warmup",
            "10",
            "--rss-slack",
            str(RSS_SLACK_MIB),
            "--json",
            str(summary_path),
        ],
        cwd=ROOT,
        env=dict(os.environ, PYTHONUNBUFFERED="1"),
        capture_output=True,
        text=True,
        timeout=SECONDS + 120,
        check=False,
    )
    report = result.stdout[-6000:] + result.stderr[-3000:]
    summary = json.loads(summary_path.read_text())
    assert summary["errors"] == [], report
    assert summary["exit_code"] == 0, report
    assert set(summary["classes"]) == CLASSES, report
    assert all(summary["classes"][name] > 0 for name in CLASSES), report
    # One rolling restart, and it replaced the worker of each slot.
    assert summary["sighups"] == 1, report
    slots = {w["slot"] for w in summary["workers"]}
    assert slots == {0, 1}, report
    assert len(summary["workers"]) >= 4, report
    for worker in summary["workers"]:
        assert worker["judged"], (worker, report)
        assert worker["rss_growth"] <= RSS_SLACK_MIB * 2**20, (worker, report)
        assert worker["fds_growth"] <= FD_SLACK, (worker, report)
    assert summary["passed"], report
    assert result.returncode == 0, report
    assert "| time |" in result.stdout, report
