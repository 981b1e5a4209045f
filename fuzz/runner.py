"""Running targets: under libFuzzer for a bounded time, or replaying saved inputs.

A libFuzzer run happens in a child process (``python -m fuzz libfuzzer``),
because libFuzzer ends the process when it stops; the parent reads its exit
status, and on a finding names the input libFuzzer wrote and the command that
replays it.  Replays run in this process, without instrumentation: the same
``one_input`` and the same checks, one saved input after another.
"""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
import time
import traceback
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from .targets import TARGETS, load

HERE = Path(__file__).resolve().parent
#: Seeds, kept in the repository (recorded from the test suite, merged runs).
CORPUS = HERE / "corpus"
#: Inputs of findings that were fixed; replayed by the test suite for good.
REGRESSIONS = HERE / "regressions"
#: Where a run writes the input of a finding (not kept in the repository).
FINDINGS = HERE / "findings"
#: Inputs a run found interesting, kept between runs (not in the repository).
WORK = HERE / ".work"
DICTS = HERE / "dicts"


@dataclass
class Result:
    target: str
    returncode: int
    #: The input of the finding, when there is one.
    finding: Path | None
    seconds: float

    @property
    def ok(self) -> bool:
        return self.returncode == 0


def inputs(target: str) -> list[Path]:
    """The saved inputs of ``target``: its corpus and its regression inputs."""
    found: list[Path] = []
    for base in (CORPUS, REGRESSIONS):
        folder = base / target
        if folder.is_dir():
            found.extend(sorted(p for p in folder.iterdir() if p.is_file()))
    return found


def replay(target: str, paths: Iterable[Path] | None = None) -> list[tuple[Path, str]]:
    """Run ``target`` on saved inputs; returns (input, traceback) for each that fails."""
    one_input = load(target).one_input
    failures: list[tuple[Path, str]] = []
    for path in inputs(target) if paths is None else paths:
        try:
            one_input(path.read_bytes())
        except Exception:
            failures.append((path, traceback.format_exc()))
    return failures


def fuzz(
    target: str,
    *,
    seconds: int,
    runs: int | None = None,
    seed: int | None = None,
    findings: Path = FINDINGS,
    work: Path | None = None,
    quiet: bool = False,
) -> Result:
    """Fuzz ``target`` for at most ``seconds`` (and ``runs`` new inputs, if given).

    New interesting inputs go to ``work`` (``fuzz/.work/<target>``), never to
    the committed corpus, which is read only.
    """
    module = load(target)
    work = WORK / target if work is None else work
    work.mkdir(parents=True, exist_ok=True)
    findings.mkdir(parents=True, exist_ok=True)
    saved = [d for d in (CORPUS / target, REGRESSIONS / target) if d.is_dir()]
    args = [
        f"-max_total_time={seconds}",
        f"-max_len={module.MAX_LEN}",
        f"-artifact_prefix={findings}/{target}-",
        "-timeout=20",
        "-rss_limit_mb=2048",
        "-use_value_profile=1",
        "-print_final_stats=1",
    ]
    if runs is not None:
        # libFuzzer counts the saved inputs it loads as runs too.
        args.append(f"-runs={runs + len(inputs(target))}")
    if seed is not None:
        args.append(f"-seed={seed}")
    dictionary = DICTS / f"{target}.dict"
    if dictionary.is_file():
        args.append(f"-dict={dictionary}")
    command = [sys.executable, "-m", "fuzz", "libfuzzer", target, *args, str(work)]
    command += [str(d) for d in saved]
    started = time.time()
    output = subprocess.DEVNULL if quiet else None
    returncode = subprocess.run(
        command, cwd=HERE.parent, stdout=output, stderr=output, check=False
    ).returncode
    finding = None
    if returncode:
        written = [p for p in findings.glob(f"{target}-*") if p.stat().st_mtime >= started - 1]
        finding = max(written, key=lambda p: p.stat().st_mtime, default=None)
    return Result(target, returncode, finding, time.time() - started)


def libfuzzer_main(target: str, args: list[str]) -> None:
    """The child process: instrument the code under test, hand the target to libFuzzer."""
    import atheris

    with atheris.instrument_imports(include=list(TARGETS[target].instrument)):
        module = load(target)
    # libFuzzer starts helper processes (for -merge) through the shell with
    # argv[0] and its flags: make argv[0] the command that gets here again.
    again = f"{shlex.quote(sys.executable)} -m fuzz libfuzzer {target}"
    atheris.Setup([again, *args], module.one_input)
    atheris.Fuzz()


def describe(result: Result) -> str:
    if result.ok:
        return f"{result.target}: no finding in {result.seconds:.0f} s"
    if result.finding is None:
        return f"{result.target}: libFuzzer exited with status {result.returncode}"
    here = Path(os.getcwd())
    try:
        shown = result.finding.relative_to(here)
    except ValueError:
        shown = result.finding
    return (
        f"{result.target}: FINDING {shown} (libFuzzer status {result.returncode});"
        f" reproduce with: python -m fuzz replay {result.target} {shown}"
    )
