"""``python -m fuzz``: run, replay and seed the fuzz targets (see docs/fuzzing.md)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .runner import FINDINGS, WORK, describe, fuzz, libfuzzer_main, replay
from .targets import TARGETS


def _targets(names: list[str]) -> list[str]:
    for name in names:
        if name not in TARGETS:
            raise SystemExit(f"unknown fuzz target {name!r}; targets: {', '.join(TARGETS)}")
    return names or list(TARGETS)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["libfuzzer"]:
        # The child process of `run`: everything after the target is libFuzzer's.
        libfuzzer_main(argv[1], argv[2:])
        return 0
    parser = argparse.ArgumentParser(prog="python -m fuzz", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("list", help="the targets and what they fuzz")
    run = commands.add_parser("run", help="fuzz targets one after another, each for a bounded time")
    run.add_argument("targets", nargs="*", metavar="TARGET", help="default: every target")
    run.add_argument("--seconds", type=int, default=180, help="per target (default 180)")
    run.add_argument("--runs", type=int, help="stop each target after this many new inputs")
    run.add_argument("--seed", type=int, help="libFuzzer's random seed (default: random)")
    run.add_argument("--findings", type=Path, default=FINDINGS, help="where findings are written")
    run.add_argument(
        "--work", type=Path, help="where new inputs go (default: fuzz/.work/TARGET, kept)"
    )
    again = commands.add_parser("replay", help="run saved inputs through a target's checks")
    again.add_argument("target", nargs="?", help="default: every target")
    again.add_argument("files", nargs="*", type=Path, help="default: corpus and regressions")
    record = commands.add_parser("record", help="record seeds from the test suite's own inputs")
    record.add_argument("pytest_args", nargs="*", help="which tests to run (default: a set)")
    merge = commands.add_parser(
        "merge", help="add to a target's corpus the inputs of a folder that reach new code"
    )
    merge.add_argument("target")
    merge.add_argument("folder", nargs="?", type=Path, help="default: fuzz/.work/TARGET")
    options = parser.parse_args(argv)

    if options.command == "list":
        for name, target in TARGETS.items():
            print(f"{name:15} {target.description}")
        return 0
    if options.command == "run":
        status = 0
        for name in _targets(options.targets):
            result = fuzz(
                name,
                seconds=options.seconds,
                runs=options.runs,
                seed=options.seed,
                findings=options.findings,
                work=options.work / name if options.work else None,
            )
            print(describe(result), flush=True)
            status = status or result.returncode
        return 1 if status else 0
    if options.command == "replay":
        names = _targets([options.target] if options.target else [])
        failed = 0
        for name in names:
            failures = replay(name, options.files or None)
            for path, text in failures:
                print(f"{name}: {path}\n{text}", file=sys.stderr)
            failed += len(failures)
            if not failures:
                print(f"{name}: every input passes")
        return 1 if failed else 0
    if options.command == "merge":
        from .record import merge as merge_into_corpus

        name = _targets([options.target])[0]
        added = merge_into_corpus(name, options.folder or WORK / name)
        print(f"{name}: {added} inputs added to fuzz/corpus/{name}")
        return 0
    from .record import record_seeds

    return record_seeds(options.pytest_args)


if __name__ == "__main__":
    sys.exit(main())
