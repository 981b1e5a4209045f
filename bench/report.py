#!/usr/bin/env python3
"""Benchmark bookkeeping for bench/run.sh (standard library only).

  report.py meta --out RUN/meta.json [options]   record machine, versions and run settings
  report.py render [RUN_DIR] [-o RESULTS.md] [--chart results.png]
                                                 RUN_DIR/results.jsonl + meta.json -> Markdown
                                                 and the chart (default RUN_DIR: newest in
                                                 bench/out/)

A run directory (bench/out/<run-id>/) holds:
  meta.json      what `meta` wrote: date, machine, versions, settings, the compared pairs
  results.jsonl  one JSON line per (server, scenario, round), written by the harness (bench.sh)
  RESULTS.md     what `render` wrote; summary.json, the same figures machine-readable;
                 results.png, the chart (matplotlib, the only import outside the standard
                 library, and only for the chart)
  <pair>.log     the harness's console output; logs-*/ the server logs

Ratios are asgiri / peer requests per second, so > 1 means asgiri served more.  In every
round the peer and asgiri run back to back on the same scenario (peer first); the ratio of
a scenario is the median of its per-round ratios, over rounds where both sides were "ok".
The req/s and p99 columns are medians over each side's ok rounds.  Memory: the harness
samples the server's RSS (summed over its process group) once idle after start-up and as
the high-water mark after the load; "per connection" is (peak - idle) / the scenario's
number of client connections, a rough upper bound (it also counts buffers of the requests
in flight and the allocator's slack).  The memory and scale scenarios (idle connections held
open, 1 GiB streamed each way) have no rate: their rows carry the client's own RSS samples
("scale"), reported in a table of their own.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from reporting import BENCH_DIR
from reporting.chart import draw_chart
from reporting.markdown import render
from reporting.meta import build_meta


def cmd_meta(args: argparse.Namespace) -> int:
    meta = build_meta(args)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    with open(args.out, "w") as fh:
        json.dump(meta, fh, indent=2)
        fh.write("\n")
    return 0


def latest_run() -> Path:
    out = BENCH_DIR / "out"
    runs = sorted(p for p in out.glob("*/meta.json")) if out.exists() else []
    if not runs:
        sys.exit(f"report.py: no run in {out} (run bench/run.sh first)")
    return max(runs, key=lambda p: p.stat().st_mtime).parent


def cmd_render(args: argparse.Namespace) -> int:
    run_dir = Path(args.run_dir) if args.run_dir else latest_run()
    charts = [Path(c) for c in args.chart or []]
    md, summary = render(run_dir)
    with open(run_dir / "summary.json", "w") as fh:
        json.dump(summary, fh, indent=2)
        fh.write("\n")
    if charts:
        meta = json.loads((run_dir / "meta.json").read_text())
        why = draw_chart(meta, summary, charts)
        if why:
            print(f"report.py: no chart: {why}", file=sys.stderr)
            charts = []
    for target in args.out or []:
        # Each Markdown file shows the chart written next to it, if any.
        near = [c for c in charts if c.resolve().parent == Path(target).resolve().parent]
        text = render(run_dir, near[0].name)[0] if near else md
        Path(target).write_text(text)
        print(f"wrote {target}", file=sys.stderr)
    if not args.out or args.print:
        print(md)
    return 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = ap.add_subparsers(dest="command", required=True)

    m = sub.add_parser("meta", help="record machine, versions and settings of a run")
    m.add_argument("--out", required=True)
    m.add_argument("--project-python", required=True)
    m.add_argument("--bench-python", required=True)
    m.add_argument("--harness", default="")
    m.add_argument("--rounds", type=int, required=True)
    m.add_argument("--duration", type=int, required=True)
    m.add_argument("--warmup", type=int, required=True)
    m.add_argument("--quick", action="store_true")
    m.add_argument("--server-cpu", default="1")
    m.add_argument("--load-cpu", default="0")
    m.add_argument("--loadavg-before", default="")
    m.add_argument(
        "--pair",
        nargs=6,
        action="append",
        default=[],
        metavar=("LABEL", "PEER", "ASGIRI", "SCENARIOS", "EXTRAS", "DESCRIPTION"),
    )
    m.set_defaults(func=cmd_meta)

    r = sub.add_parser("render", help="write RESULTS.md from a run directory")
    r.add_argument("run_dir", nargs="?")
    r.add_argument("-o", "--out", action="append", help="write the Markdown here (repeatable)")
    r.add_argument("--print", action="store_true", help="also print it")
    r.add_argument(
        "--chart", action="append", help="draw the chart (PNG, needs matplotlib) here (repeatable)"
    )
    r.set_defaults(func=cmd_render)

    args = ap.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
