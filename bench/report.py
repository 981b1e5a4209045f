#!/usr/bin/env python3
"""Benchmark bookkeeping for bench/run.sh (standard library only).

  report.py meta --out RUN/meta.json [options]   record machine, versions and run settings
  report.py render [RUN_DIR] [-o RESULTS.md]     RUN_DIR/results.jsonl + meta.json -> Markdown
                                                 (default RUN_DIR: newest in bench/out/)

A run directory (bench/out/<run-id>/) holds:
  meta.json      what `meta` wrote: date, machine, versions, settings, the compared pairs
  results.jsonl  one JSON line per (server, scenario, round), written by the harness (bench.sh)
  RESULTS.md     what `render` wrote; summary.json, the same figures machine-readable
  <pair>.log     the harness's console output; logs-*/ the server logs

Ratios are asgiri / peer requests per second, so > 1 means asgiri served more.  In every
round the peer and asgiri run back to back on the same scenario (peer first); the ratio of
a scenario is the median of its per-round ratios, over rounds where both sides were "ok".
The req/s and p99 columns are medians over each side's ok rounds.  Memory: the harness
samples the server's RSS (summed over its process group) once idle after start-up and as
the high-water mark after the load; "per connection" is (peak - idle) / the scenario's
number of client connections, a rough upper bound (it also counts buffers of the requests
in flight and the allocator's slack).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent
ROOT = BENCH_DIR.parent

# Row statuses written by the harness: ok, error, unsupported, not_configured.
OK = "ok"

# Client connections per scenario: the harness's defaults, overridden by the same
# environment variables the harness reads (recorded in meta.json at the start of a run).
CONNECTION_VARS = {
    "h1_hello": ("WRK_CONNS", 64),
    "h1_echo": ("WRK_CONNS", 64),
    "h1_big": ("BIG_CONNS", 16),
    "h2c_hello": ("H2_CONNS", 16),
    "h2tls_hello": ("H2_CONNS", 16),
    "h2c_big": ("H2_BIG_CONNS", 16),
    "h3_hello": ("H3_CONNS", 4),
    "ws_echo": ("WS_CONNS", 16),
    "ws_echo_raw": ("WS_CONNS", 16),
    "ws_big": ("WS_BIG_CONNS", 16),
}
STREAM_VARS = {
    "h2c_hello": ("H2_STREAMS", 16),
    "h2tls_hello": ("H2_STREAMS", 16),
    "h2c_big": ("H2_BIG_STREAMS", 1),
}


# Targets of the issues, asgiri / peer, by (pair, scenario): issue 2 (HTTP/1.1 >= uvicorn),
# issue 3 (HTTP/2 >= 2x hypercorn), issue 4 (WebSocket echo >= 1.2x uvicorn).  Shown next to
# each ratio; the stricter targets of the performance issue (h1 1.3x, h2 10x hypercorn and
# 0.25x granian, ws 1.5x granian) are listed in docs/performance.md.
TARGETS = {
    ("uvloop", "h1_hello"): 1.0,
    ("uvloop", "h1_echo"): 1.0,
    ("asyncio", "h1_hello"): 1.0,
    ("asyncio", "h1_echo"): 1.0,
    ("h2-hypercorn", "h2c_hello"): 2.0,
    ("h2-hypercorn", "h2tls_hello"): 2.0,
    ("ws-uvicorn", "ws_echo"): 1.2,
}


def _env_int(name: str, default: int) -> int:
    try:
        return int(os.environ.get(name, default))
    except ValueError:
        return default


# --------------------------------------------------------------------------- meta


def _run(cmd: list[str], timeout: float = 20) -> str:
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False)
    except (OSError, subprocess.SubprocessError):
        return ""
    return (out.stdout or out.stderr).strip()


_VERSIONS_SNIPPET = """
import json, sys
from importlib import metadata
out = {"python": sys.version.split()[0], "executable": sys.executable}
for name in sys.argv[1:]:
    try:
        out[name] = metadata.version(name)
    except metadata.PackageNotFoundError:
        out[name] = None
print(json.dumps(out))
"""


def _versions(python: str, packages: list[str]) -> dict[str, str | None]:
    text = _run([python, "-c", _VERSIONS_SNIPPET, *packages])
    try:
        return json.loads(text.splitlines()[-1])
    except (ValueError, IndexError):
        return {"error": text[-300:]}


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                key, _, value = line.partition(":")
                if key.strip() in ("model name", "Hardware", "cpu model", "Processor"):
                    return value.strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _mem_total_gib() -> float | None:
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemTotal:"):
                    return round(int(line.split()[1]) / 1024 / 1024, 1)
    except (OSError, ValueError):
        pass
    return None


def _deb_version(pkg: str) -> str | None:
    return _run(["dpkg-query", "-W", "-f", "${Version}", pkg]) or None


def cmd_meta(args: argparse.Namespace) -> int:
    pairs = [
        {
            "label": label,
            "peer": peer,
            "asgiri": asgiri,
            "scenarios": [s for s in scenarios.split(",") if s],
            "extras": [s for s in extras.split(",") if s],
            "description": desc,
        }
        for label, peer, asgiri, scenarios, extras, desc in args.pair
    ]
    meta = {
        "run_id": Path(args.out).parent.name,
        "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        "date_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": {
            "nproc": os.cpu_count(),
            "cpu_model": _cpu_model(),
            "kernel": platform.release(),
            "arch": platform.machine(),
            "mem_total_gib": _mem_total_gib(),
            "loadavg_before": args.loadavg_before,
        },
        "git": _run(["git", "-C", str(ROOT), "describe", "--always", "--dirty", "--abbrev=12"]),
        "project": _versions(args.project_python, ["asgiri", "httptools", "uvloop"]),
        "bench_venv": _versions(
            args.bench_python,
            ["uvicorn", "httptools", "uvloop", "hypercorn", "granian", "websockets"],
        ),
        "tools": {
            "wrk": _deb_version("wrk"),
            "nghttp2-client (h2load)": _deb_version("nghttp2-client"),
            "ngtcp2-client (gtlsclient)": _deb_version("ngtcp2-client"),
        },
        "settings": {
            "rounds": args.rounds,
            "duration_s": args.duration,
            "warmup_s": args.warmup,
            "quick": args.quick,
            "server_cpu": args.server_cpu,
            "load_cpu": args.load_cpu,
            "harness": args.harness,
            "connections": {sc: _env_int(v, d) for sc, (v, d) in CONNECTION_VARS.items()},
            "streams_per_connection": {sc: _env_int(v, d) for sc, (v, d) in STREAM_VARS.items()},
        },
        "pairs": pairs,
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    with open(args.out, "w") as fh:
        json.dump(meta, fh, indent=2)
        fh.write("\n")
    return 0


# --------------------------------------------------------------------------- render


def load_rows(path: Path) -> list[dict]:
    rows = []
    if not path.exists():
        return rows
    with open(path) as fh:
        for line in fh:
            line = line.strip()
            if not line.startswith("{"):
                continue
            d = json.loads(line)
            if "server" not in d or "scenario" not in d:
                continue
            # Same rule as the harness: > 1% failed requests => the rate is not comparable.
            if (
                d.get("status") == OK
                and d.get("errors")
                and d.get("rps")
                and d.get("duration_s")
                and d["errors"] * 100 > d["rps"] * d["duration_s"]
            ):
                d["status"] = "error"
                d["note"] = (d.get("note", "") + f"; {d['errors']} failed (>1%)").strip("; ")
            rows.append(d)
    return rows


def _median(xs: list) -> float | None:
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else None


def _cpu_us(row: dict) -> float | None:
    """Server CPU microseconds per request (or message) of one run.

    The harness samples the server's CPU time over warm-up + measurement; the measured rate
    stands for both.  Unlike the rate, this barely moves when other work on the machine
    takes CPU time away from the server, so it is the steadier figure on a busy machine.
    """
    cpu, rps = row.get("server_cpu_s"), row.get("rps")
    seconds = (row.get("duration_s") or 0) + (row.get("warmup_s") or 0)
    if not cpu or cpu <= 0 or not rps or not seconds:
        return None
    return cpu / (rps * seconds) * 1e6


def _connections(meta: dict | None, scenario: str) -> int | None:
    conns = ((meta or {}).get("settings") or {}).get("connections") or {}
    if scenario in conns:
        return conns[scenario]
    default = CONNECTION_VARS.get(scenario)
    return default[1] if default else None


def summarize_pair(pair: dict, rows: list[dict], meta: dict | None = None) -> list[dict]:
    out = []
    for sc in pair["scenarios"]:
        conns = _connections(meta, sc)
        side = {}
        for role in ("asgiri", "peer"):
            name = pair[role]
            rs = sorted(
                (r for r in rows if r["server"] == name and r["scenario"] == sc),
                key=lambda r: r["round"],
            )
            ok = [r for r in rs if r["status"] == OK]
            errs = [r["errors"] for r in rs if r.get("errors") is not None]
            # Memory of the ok rounds, or of every round that sampled it when none was ok.
            mem_rows = [r for r in (ok or rs) if r.get("rss_idle_kb") and r.get("rss_peak_kb")]
            growth = _median([r["rss_peak_kb"] - r["rss_idle_kb"] for r in mem_rows])
            failed = [r for r in rs if r["status"] != OK and r.get("rps")]
            side[role] = {
                "name": name,
                "rounds": len(rs),
                "ok_rounds": len(ok),
                "rps": _median([r["rps"] for r in ok]),
                "cpu_us": _median([_cpu_us(r) for r in ok]),
                "p99_ms": _median([r["p99_ms"] for r in ok]),
                "errors": sum(errs) if errs else None,
                "statuses": sorted({r["status"] for r in rs}),
                "notes": sorted({r["note"] for r in rs if r.get("note")}),
                "by_round": {r["round"]: r for r in ok},
                "peak_rss_mib": max(
                    (r["rss_peak_kb"] / 1024 for r in rs if r.get("rss_peak_kb")), default=None
                ),
                "idle_rss_mib": _median([r["rss_idle_kb"] / 1024 for r in mem_rows]),
                "kib_per_conn": (max(growth, 0) / conns if growth is not None and conns else None),
                # req/s measured in rounds that did not count (errors), for orientation only.
                "failed_rps": _median([r["rps"] for r in failed]),
                "failed_p99_ms": _median([r.get("p99_ms") for r in failed]),
            }
        a, p = side["asgiri"], side["peer"]
        per_round = [
            a["by_round"][rnd]["rps"] / p["by_round"][rnd]["rps"]
            for rnd in sorted(set(a["by_round"]) & set(p["by_round"]))
            if p["by_round"][rnd]["rps"]
        ]
        cpu_per_round = []
        for rnd in sorted(set(a["by_round"]) & set(p["by_round"])):
            ca, cp = _cpu_us(a["by_round"][rnd]), _cpu_us(p["by_round"][rnd])
            if ca and cp:
                cpu_per_round.append(cp / ca)
        for s in (a, p):
            del s["by_round"]
        out.append(
            {
                "pair": pair["label"],
                "scenario": sc,
                "extra": sc in pair.get("extras", []),
                "asgiri": a,
                "peer": p,
                "ratio": _median(per_round),
                "cpu_ratio": _median(cpu_per_round),
                "target": TARGETS.get((pair["label"], sc)),
                "ratios": [round(x, 4) for x in per_round],
                "connections": conns,
            }
        )
    return out


def _f(v: float | None, nd: int = 0) -> str:
    return "-" if v is None else f"{v:,.{nd}f}"


def _cell_rps(s: dict) -> str:
    if s["rps"] is not None:
        return _f(s["rps"])
    if not s["rounds"]:
        return "not run"
    cell = "/".join(s["statuses"]) or "-"
    if s.get("failed_rps") is not None:
        cell += f" ({_f(s['failed_rps'])})"
    return cell


def _cell_p99(s: dict) -> str:
    if s["p99_ms"] is not None:
        return _f(s["p99_ms"], 2)
    if s.get("failed_p99_ms") is not None:
        return f"({_f(s['failed_p99_ms'], 2)})"
    return "-"


def _family(label: str) -> str:
    """Section of RESULTS.md a pair belongs to, from its label."""
    for prefix, name in (("h2", "HTTP/2"), ("h3", "HTTP/3"), ("ws", "WebSocket")):
        if label == prefix or label.startswith(prefix + "-"):
            return name
    return "HTTP/1.1"


def _unit(family: str) -> str:
    """What one unit of the rate is: a request, or a WebSocket message echoed."""
    return "msg/s" if family == "WebSocket" else "req/s"


def _warnings(meta: dict) -> list[str]:
    st = meta["settings"]
    w = []
    if st.get("quick"):
        w.append(
            "quick run (`make bench-quick`): a subset for checking the harness, not a comparison"
        )
    if st["rounds"] < 3:
        w.append(f"only {st['rounds']} round(s); full runs use 3 interleaved rounds")
    if st["duration_s"] < 10:
        w.append(f"{st['duration_s']} s per measurement; full runs use 10 s")
    la = meta["machine"].get("loadavg_before")
    try:
        load1 = float(str(la).split()[0])
    except (ValueError, IndexError, TypeError):
        load1 = None
    if load1 is not None and load1 > 0.5:
        w.append(
            f"the machine was busy before the run started (load average {la}); "
            "other work competes for the 2 pinned cores, so the figures are noisy"
        )
    nproc = meta["machine"].get("nproc") or 0
    if nproc < 2:
        w.append("fewer than 2 CPUs: server and load generator cannot be pinned apart")
    return w


def render(run_dir: Path) -> tuple[str, list[dict]]:
    meta = json.loads((run_dir / "meta.json").read_text())
    rows = load_rows(run_dir / "results.jsonl")
    summary = [s for pair in meta["pairs"] for s in summarize_pair(pair, rows, meta)]
    m, st, pv, bv = meta["machine"], meta["settings"], meta["project"], meta["bench_venv"]
    L = []
    L.append("# asgiri benchmark results")
    L.append("")
    L.append(
        "Generated by `bench/report.py` from a `bench/run.sh` run (`make bench`); do not edit by "
        "hand. See [README.md](README.md) for what the scenarios are and how ratios are computed."
    )
    L.append("")
    warns = _warnings(meta)
    if warns:
        L.append("> **Not a reference run:**")
        for w in warns:
            L.append(f"> - {w}")
        L.append("")
    git = meta.get("git") or "?"
    L.append(f"- **Date:** {meta['date']} (run `{meta['run_id']}`, commit `{git}`)")
    L.append(
        f"- **Machine:** {m['nproc']} CPUs, {m['cpu_model']}, {m.get('mem_total_gib')} GiB RAM; "
        f"Linux {m['kernel']} ({m.get('arch')}); "
        f"load average before the run: {m.get('loadavg_before')}"
    )
    py = pv.get("python")
    if bv.get("python") and bv.get("python") != py:
        py = f"{py} (asgiri) / {bv.get('python')} (peers)"
    L.append(f"- **Python:** {py}")

    def both(k: str) -> str | None:
        if pv.get(k) == bv.get(k):
            return pv.get(k)
        return f"{pv.get(k)} (asgiri) / {bv.get(k)} (uvicorn)"

    hv, uv = both("httptools"), both("uvloop")
    L.append(
        f"- **Versions:** asgiri {pv.get('asgiri')}, uvicorn {bv.get('uvicorn')}, httptools {hv}, "
        f"uvloop {uv}; also installed: hypercorn {bv.get('hypercorn')}, "
        f"granian {bv.get('granian')}, websockets {bv.get('websockets')}"
    )
    tools = ", ".join(f"{k} {v}" for k, v in meta.get("tools", {}).items() if v)
    L.append(f"- **Load generators:** {tools or 'unknown'}")
    L.append(
        f"- **Method:** server pinned to CPU {st['server_cpu']}, load generator to CPU "
        f"{st['load_cpu']} (taskset); {st['rounds']} round(s), each round runs peer then asgiri "
        f"back to back per scenario; {st['warmup_s']} s warm-up + {st['duration_s']} s measured "
        f"per run; harness {st['harness']}"
    )
    L.append("")
    L.append(
        "Ratio = asgiri req/s ÷ peer req/s (WebSocket: messages echoed per second) (> 1: asgiri "
        "faster), median of the per-round ratios. Rates and p99 are medians over rounds; errors "
        "are summed over rounds (socket errors + non-2xx responses; WebSocket: failed "
        "connections and wrong echoes)."
    )
    L.append("")
    L.append(
        "Server CPU µs per unit: the server's CPU time (user + system, whole process group) "
        "over warm-up and measurement, divided by the requests (messages) served in that time; "
        "CPU ratio = peer ÷ asgiri of that, median over rounds (> 1: asgiri needs less CPU per "
        "request). Other work on the machine distorts it far less than the rate, so on a busy "
        "machine it is the steadier comparison."
    )
    L.append("")
    L.append(
        "A cell like `error (1,234)` is a side whose rounds did not count (more than 1% of its "
        "requests failed, or its connections were reset): the bracketed req/s or p99 was "
        "measured anyway, for orientation, and is left out of the ratio."
    )
    L.append("")
    descs = {p["label"]: p for p in meta["pairs"]}
    families: dict[str, list[dict]] = {}
    for s in summary:
        families.setdefault(_family(s["pair"]), []).append(s)
    for family, items in families.items():
        L.append(f"### {family}")
        L.append("")
        if family == "HTTP/2":
            streams = st.get("streams_per_connection") or {}
            parts = [
                f"{sc} {s['connections']} connections x {streams.get(sc, '?')} "
                f"stream{'' if streams.get(sc) == 1 else 's'} each"
                for sc, s in {s["scenario"]: s for s in items}.items()
            ]
            L.append(f"h2load, {'; '.join(parts)}.")
            L.append("")
        elif family == "WebSocket":
            conns = {s["scenario"]: s["connections"] for s in items}
            L.append(
                "`ws_bench.py` (websockets client), ping-pong: each connection sends one binary "
                "message and waits for its echo. "
                + "; ".join(f"{sc}: {c} connections" for sc, c in conns.items())
                + ". ws_echo sends 64 B messages (round trips/s), ws_big 1 MiB messages "
                "(msg/s = MiB/s each way)."
            )
            L.append("")
        unit = _unit(family)
        L.append(
            f"| scenario | peer | asgiri {unit} | peer {unit} | ratio | target | asgiri p99 ms "
            "| peer p99 ms | errors asgiri / peer | per-round ratios "
            "| server CPU µs per unit, asgiri / peer | CPU ratio |"
        )
        L.append("|---|---|--:|--:|--:|--:|--:|--:|--:|---|--:|--:|")
        for s in items:
            a, p = s["asgiri"], s["peer"]
            name = f"{s['scenario']} (extra)" if s["extra"] else s["scenario"]
            ratio = (
                f"**{s['ratio']:.3f}**"
                if s["ratio"] is not None and not s["extra"]
                else _f(s["ratio"], 3)
            )
            errs = f"{_f(a['errors'])} / {_f(p['errors'])}"
            target = "-" if s["target"] is None else f"≥ {s['target']:.1f}"
            L.append(
                f"| {name} | {descs[s['pair']]['description']} | {_cell_rps(a)} "
                f"| {_cell_rps(p)} | {ratio} | {target} | {_cell_p99(a)} | {_cell_p99(p)} | {errs} "
                f"| {' '.join(f'{x:.3f}' for x in s['ratios']) or '-'} "
                f"| {_f(a['cpu_us'], 1)} / {_f(p['cpu_us'], 1)} | {_f(s['cpu_ratio'], 3)} |"
            )
        L.append("")
    L.append("### Memory")
    L.append("")
    L.append(
        "Server RSS (process group): idle after start-up, high-water mark after the load, and "
        "(peak - idle) ÷ client connections, a rough per-connection upper bound. Medians over "
        "rounds, peak is the maximum."
    )
    L.append("")
    L.append("| scenario | server | connections | idle MiB | peak MiB | KiB per connection |")
    L.append("|---|---|--:|--:|--:|--:|")
    for s in summary:
        for role in ("peer", "asgiri"):
            side = s[role]
            if not side["rounds"]:
                continue
            L.append(
                f"| {s['scenario']} | {side['name']} | {_f(s['connections'])} "
                f"| {_f(side['idle_rss_mib'], 1)} | {_f(side['peak_rss_mib'], 1)} "
                f"| {_f(side['kib_per_conn'], 0)} |"
            )
    L.append("")
    problems = []
    for s in summary:
        for role in ("asgiri", "peer"):
            side = s[role]
            if side["rounds"] and side["ok_rounds"] < side["rounds"]:
                notes = "; ".join(side["notes"])
                problems.append(
                    f"- {s['scenario']} / {side['name']}: {side['ok_rounds']}/{side['rounds']} "
                    f"rounds ok ({', '.join(side['statuses'])}){': ' + notes if notes else ''}"
                )
            elif not side["rounds"]:
                problems.append(f"- {s['scenario']} / {side['name']}: no result rows")
    if problems:
        L.append("Rounds that did not count:")
        L.append("")
        L.extend(problems)
        L.append("")
    L.append("Server commands (`{APP}` = `app:app` from bench/app.py, run from bench/):")
    L.append("")
    seen = set()
    for r in rows:
        key = (r["server"], r["cmd"])
        if key in seen:
            continue
        seen.add(key)
        cmd = r["cmd"].replace(str(ROOT) + "/", "")
        L.append(f"- `{r['server']}`: `{cmd}`")
    L.append("")
    return "\n".join(L), summary


def latest_run() -> Path:
    out = BENCH_DIR / "out"
    runs = sorted(p for p in out.glob("*/meta.json")) if out.exists() else []
    if not runs:
        sys.exit(f"report.py: no run in {out} (run bench/run.sh first)")
    return max(runs, key=lambda p: p.stat().st_mtime).parent


def cmd_render(args: argparse.Namespace) -> int:
    run_dir = Path(args.run_dir) if args.run_dir else latest_run()
    md, summary = render(run_dir)
    with open(run_dir / "summary.json", "w") as fh:
        json.dump(summary, fh, indent=2)
        fh.write("\n")
    for target in args.out or []:
        Path(target).write_text(md)
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
    r.set_defaults(func=cmd_render)

    args = ap.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
