"""results.jsonl reduced to figures: per scenario and side, medians over the ok rounds."""

from __future__ import annotations

import json
import statistics
from pathlib import Path

from .targets import (
    CONNECTION_VARS,
    IDLE_KIB_TARGET,
    OK,
    SCALE_SCENARIOS,
    STREAM_GROWTH_MIB_TARGET,
    TARGETS,
)


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
        if sc in SCALE_SCENARIOS:
            continue
        conns = _connections(meta, sc)
        side = {}
        for role in ("asgiri", "peer"):
            name = pair[role]  # "" for a pair that runs asgiri alone: no rows
            rs = sorted(
                (r for r in rows if name and r["server"] == name and r["scenario"] == sc),
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
        target = TARGETS.get((pair["label"], sc))
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
        ratio = _median(per_round)
        met = None
        if target is not None and ratio is not None:
            met = ratio >= target.ratio and not a["errors"]
        out.append(
            {
                "pair": pair["label"],
                "scenario": sc,
                "extra": sc in pair.get("extras", []),
                "asgiri": a,
                "peer": p,
                "ratio": ratio,
                "cpu_ratio": _median(cpu_per_round),
                "target": None if target is None else target.ratio,
                "target_label": None if target is None else target.label(),
                "target_met": met,
                "ratios": [round(x, 4) for x in per_round],
                "connections": conns,
            }
        )
    return out


def summarize_scale(pair: dict, rows: list[dict]) -> list[dict]:
    """The memory and scale scenarios of a pair: one entry per (scenario, server).

    Figures are medians over the server's ok rounds of what scale_bench.py sampled (one
    round by default); an idle scenario also says how many connections were asked for,
    opened and still open when the RSS was sampled.
    """
    out = []
    for sc in pair["scenarios"]:
        if sc not in SCALE_SCENARIOS:
            continue
        for role in ("peer", "asgiri"):
            name = pair[role]
            if not name:
                continue
            rs = [r for r in rows if r["server"] == name and r["scenario"] == sc]
            ok = [r["scale"] for r in rs if r["status"] == OK and r.get("scale")]
            every = [r["scale"] for r in rs if r.get("scale")]

            def med(key: str, pool: list[dict] = ok) -> float | None:
                return _median([d.get(key) for d in pool])

            entry = {
                "pair": pair["label"],
                "scenario": sc,
                "server": name,
                "role": role,
                "description": "asgiri" if role == "asgiri" else pair["description"],
                "peer_description": pair["description"] if pair["peer"] else None,
                "rounds": len(rs),
                "ok_rounds": len(ok),
                "statuses": sorted({r["status"] for r in rs}),
                "notes": sorted({r["note"] for r in rs if r.get("note")}),
            }
            if sc.startswith("idle_"):
                pool = ok or every
                entry.update(
                    connections=med("connections", pool),
                    opened=med("opened", pool),
                    held=med("held", pool),
                    rss_before_mib=mib(med("rss_before_kb", pool)),
                    rss_held_mib=mib(med("rss_held_kb", pool)),
                    kib_per_conn=med("kib_per_conn"),
                    target_kib=IDLE_KIB_TARGET.get(sc),
                )
                if entry["target_kib"] is not None and entry["kib_per_conn"] is not None:
                    entry["target_met"] = entry["kib_per_conn"] < entry["target_kib"]
            else:
                entry.update(
                    bytes=med("bytes", every),
                    down_mib_s=med("down_mib_s"),
                    up_mib_s=med("up_mib_s"),
                    growth_down_mib=med("growth_down_mib"),
                    growth_up_mib=med("growth_up_mib"),
                    peak_reset=all(d.get("peak_reset") for d in ok) if ok else None,
                    target_mib=STREAM_GROWTH_MIB_TARGET,
                    # The HTTP/3 client (rows from before it was recorded: aioquic's).
                    client=", ".join(sorted({d.get("client") or "aioquic" for d in every}))
                    if sc == "stream_h3"
                    else None,
                )
                growths = [entry["growth_down_mib"], entry["growth_up_mib"]]
                if None not in growths:
                    entry["target_met"] = max(growths) < STREAM_GROWTH_MIB_TARGET
            out.append(entry)
    return out


def mib(kb: float | None) -> float | None:
    return None if kb is None else kb / 1024
