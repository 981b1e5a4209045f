"""The fuzz targets (fuzz/, docs/fuzzing.md): saved inputs replayed, and a short run of each.

The replay is cheap and deterministic: every input of the committed corpus
and every regression input (a finding that was fixed) goes through its
target's checks again.  The short run fuzzes each target under libFuzzer for
a bounded number of new inputs, from a fixed seed, so that a change that
breaks an invariant the corpus does not reach yet still has a chance to be
caught here and not only by ``make fuzz``.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from fuzz.runner import inputs, replay
from fuzz.targets import TARGETS

ROOT = Path(__file__).resolve().parents[2]
#: New inputs per target: a few seconds of each on an idle core (their speeds
#: differ a hundredfold); and a cap on the time each run may take on a busy one.
RUNS = {
    "h1": 15000,
    "h2": 2000,
    "ws": 5000,
    "proxy_protocol": 8000,
    "proxy_headers": 25000,
    "quic": 3000,
    "fields": 50000,
}
SECONDS = 6


@pytest.mark.parametrize("target", TARGETS)
def test_saved_inputs_pass(target: str) -> None:
    saved = inputs(target)
    assert saved, f"fuzz/corpus/{target} holds no seeds"
    failures = replay(target)
    assert not failures, "\n".join(f"{path}\n{text}" for path, text in failures)


def test_every_target_has_a_run_size() -> None:
    assert set(RUNS) == set(TARGETS)


@pytest.mark.parametrize("target", TARGETS)
def test_short_fuzz_run_finds_nothing(target: str, tmp_path: Path) -> None:
    command = [sys.executable, "-m", "fuzz", "run", target, "--seed", "1"]
    command += ["--runs", str(RUNS[target]), "--seconds", str(SECONDS)]
    command += ["--findings", str(tmp_path / "findings"), "--work", str(tmp_path / "work")]
    result = subprocess.run(
        command, cwd=ROOT, capture_output=True, text=True, timeout=SECONDS + 60, check=False
    )
    summary = result.stdout.strip().splitlines()[-1:] or ["(no output)"]
    assert result.returncode == 0, f"{summary[0]}\n{result.stderr[-4000:]}"
    assert "no finding" in summary[0], result.stdout
