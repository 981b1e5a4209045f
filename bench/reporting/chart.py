"""results.png: the ratios of a run as bars against their targets, and the memory figures."""

from __future__ import annotations

import sys
import textwrap
from pathlib import Path

from .markdown import by_family, cell_rps, family_of, rate_unit, run_warnings, size_text
from .targets import STREAM_GROWTH_MIB_TARGET

PEER_SHORT = {
    "uvloop": "uvicorn",
    "asyncio": "uvicorn, asyncio",
    "workers": "uvicorn, 2 workers",
    "h2-granian": "granian",
    "h2-hypercorn": "hypercorn",
    "ws-uvicorn": "uvicorn",
    "ws-hypercorn": "hypercorn",
    "ws-granian": "granian",
    "h3": "hypercorn",
}
COLOR_MET, COLOR_MISSED, COLOR_NO_TARGET, COLOR_PEER = "#2e7d32", "#c62828", "#4a6fa5", "#b0b0b0"


def draw_chart(meta: dict, summary: dict, paths: list[Path]) -> str | None:
    """Draw the run's chart (PNG) to every path; None, or why it was not drawn.

    Top: one bar per (scenario, peer), asgiri's rate ÷ the peer's on a log scale, so the
    peer is the line at 1.0 and a bar to the right means asgiri served more; the target as
    a diamond, the rates as text.  Bottom (when the run has them): the memory and scale
    figures against their targets.
    """
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        from matplotlib.lines import Line2D
        from matplotlib.patches import Patch
    except ImportError:
        return "matplotlib is not installed here (it is in bench/requirements.txt)"
    ratios = [s for s in summary["ratios"] if s["asgiri"]["rounds"] or s["peer"]["rounds"]]
    scale = summary["scale"]
    if not ratios and not scale:
        return "no results to draw"

    # Rows top to bottom, a heading row before each protocol family.
    rows: list[tuple[str, dict | None]] = []
    for family, items in by_family(ratios).items():
        rows.append((family, None))
        for s in items:
            peer = PEER_SHORT.get(s["pair"], s["pair"])
            rows.append((f"{s['scenario']} vs {peer}", s))
    idle = [e for e in scale if e["scenario"].startswith("idle_")]
    streams = [e for e in scale if e["scenario"].startswith("stream_")]
    scale_rows = max(len(idle), len(streams))

    st = meta["settings"]
    title = f"asgiri benchmarks, {meta['date']} (run {meta['run_id']}, commit {meta.get('git')})"
    warns = run_warnings(meta)
    if warns:
        title += "\n" + textwrap.fill("Not a reference run: " + "; ".join(warns), 150)
    top_h = 0.34 * len(rows) + 1.6 if rows else 0
    bottom_h = 0.34 * scale_rows + 1.8 if scale_rows else 0
    header_h = 0.2 * (title.count("\n") + 1) + 0.5
    height = top_h + bottom_h + header_h
    fig = plt.figure(figsize=(13, height))
    grid = fig.add_gridspec(
        2 if rows and scale_rows else 1,
        2,
        height_ratios=[r for r in (top_h, bottom_h) if r],
        hspace=0.35 if height < 12 else 0.2,
        wspace=0.55,
        top=1 - header_h / height,
        bottom=0.9 / height,
    )
    fig.suptitle(title, fontsize=10, y=1 - 0.1 / height, va="top")

    if rows:
        ax = fig.add_subplot(grid[0, :])
        values = [s["ratio"] for _, s in rows if s and s["ratio"]]
        targets = [s["target"] for _, s in rows if s and s["target"]]
        lo = min([0.1, *(v / 1.5 for v in values)])
        hi = max([20.0, *(v * 6 for v in values), *(t * 3 for t in targets)])
        ax.set_xscale("log")
        ax.set_xlim(lo, hi)
        ax.axvline(1.0, color="black", linewidth=0.8)
        labels = []
        for y, (label, s) in enumerate(rows):
            labels.append(label)
            if s is None:
                continue
            ratio, target, met = s["ratio"], s["target"], s.get("target_met")
            color = COLOR_NO_TARGET if target is None else (COLOR_MET if met else COLOR_MISSED)
            if ratio:
                ax.barh(
                    y,
                    ratio - 1.0,
                    left=1.0,
                    height=0.6,
                    color=color,
                    alpha=0.55 if s["extra"] else 1.0,
                )
            if target:
                ax.plot(target, y, marker="D", color="black", markersize=5, linestyle="none")
            a, p = s["asgiri"], s["peer"]
            unit = rate_unit(family_of(s["pair"]))
            if ratio:
                text = f"{ratio:.2f}x   {a['rps']:,.0f} vs {p['rps']:,.0f} {unit}"
                if a["p99_ms"] is not None and p["p99_ms"] is not None:
                    text += f", p99 {a['p99_ms']:.1f} vs {p['p99_ms']:.1f} ms"
            else:
                text = f"no ratio: asgiri {cell_rps(a)}, peer {cell_rps(p)}"
            ax.text(max(ratio or 1.0, 1.0, target or 0) * 1.12, y, text, va="center", fontsize=7.5)
        ax.set_yticks(range(len(rows)))
        ax.set_yticklabels(labels, fontsize=8.5)
        for tick, (_, s) in zip(ax.get_yticklabels(), rows, strict=True):
            if s is None:
                tick.set_fontweight("bold")
        ax.set_ylim(len(rows) - 0.5, -0.5)
        ticks = [t for t in (0.1, 0.25, 0.5, 1, 1.3, 2, 3, 5, 10, 20, 50, 100) if lo <= t <= hi]
        ax.set_xticks(ticks)
        ax.set_xticklabels([f"{t:g}x" for t in ticks], fontsize=8)
        ax.minorticks_off()
        ax.set_xlabel(
            "asgiri ÷ peer (req/s; WebSocket: msg/s), median of per-round ratios; "
            "peer = 1.0, right of it asgiri is faster",
            fontsize=8.5,
        )
        ax.grid(axis="x", color="#dddddd", linewidth=0.6)
        ax.set_axisbelow(True)
        ax.legend(
            handles=[
                Patch(color=COLOR_MET, label="target met"),
                Patch(color=COLOR_MISSED, label="target not met"),
                Patch(color=COLOR_NO_TARGET, label="no target"),
                Line2D(
                    [],
                    [],
                    marker="D",
                    color="black",
                    linestyle="none",
                    markersize=5,
                    label="target",
                ),
            ],
            loc="lower right",
            fontsize=7.5,
            framealpha=0.9,
        )
        ax.set_title(
            f"Throughput ratio ({st['rounds']} interleaved round(s) of {st['duration_s']} s, "
            f"server and load generator pinned to one core each)",
            fontsize=9.5,
        )

    if scale_rows:
        row = 1 if rows else 0
        if idle:
            ax = fig.add_subplot(grid[row, 0])
            labels = [_scale_label(e) for e in idle]
            for y, e in enumerate(idle):
                color = COLOR_NO_TARGET if e["role"] == "asgiri" else COLOR_PEER
                if e["kib_per_conn"] is not None:
                    ax.barh(y, e["kib_per_conn"], height=0.6, color=color)
                    ax.text(
                        e["kib_per_conn"], y, f" {e['kib_per_conn']:.1f}", va="center", fontsize=7.5
                    )
                if e.get("target_kib"):
                    ax.plot(e["target_kib"], y, marker="D", color="black", markersize=5)
            ax.set_yticks(range(len(idle)))
            ax.set_yticklabels(labels, fontsize=8.5)
            ax.set_ylim(len(idle) - 0.5, -0.5)
            conns = ", ".join(
                f"{sc} {int(c):,}"
                for sc, c in {e["scenario"]: e["connections"] or 0 for e in idle}.items()
            )
            ax.set_title(f"Idle connections ({conns}): server RSS per connection", fontsize=9.5)
            ax.set_xlabel("KiB per idle connection (target for h1: < 30, diamond)", fontsize=8.5)
            ax.grid(axis="x", color="#dddddd", linewidth=0.6)
            ax.set_axisbelow(True)
        if streams:
            ax = fig.add_subplot(grid[row, 1])
            labels = [_scale_label(e) for e in streams]
            for y, e in enumerate(streams):
                color = COLOR_NO_TARGET if e["role"] == "asgiri" else COLOR_PEER
                for dy, key, hatch in (
                    (-0.17, "growth_down_mib", ""),
                    (0.17, "growth_up_mib", "//"),
                ):
                    if e[key] is not None:
                        ax.barh(
                            y + dy, e[key], height=0.32, color=color, hatch=hatch, edgecolor="white"
                        )
                        ax.text(e[key], y + dy, f" {e[key]:.1f}", va="center", fontsize=7)
            ax.axvline(STREAM_GROWTH_MIB_TARGET, color="black", linestyle="--", linewidth=0.8)
            ax.set_yticks(range(len(streams)))
            ax.set_yticklabels(labels, fontsize=8.5)
            ax.set_ylim(len(streams) - 0.5, -0.5)
            stream_bytes = (st.get("stream_bytes") or {}).items()
            sizes = ", ".join(f"{k} {size_text(v)}" for k, v in stream_bytes)
            ax.set_title(
                f"Streaming{f' ({sizes})' if sizes else ''} each way: peak RSS growth",
                fontsize=9.5,
            )
            ax.set_xlabel(
                "MiB (plain: download, hatched: upload; target < 50, dashed)", fontsize=8.5
            )
            ax.grid(axis="x", color="#dddddd", linewidth=0.6)
            ax.set_axisbelow(True)
    for path in paths:
        fig.savefig(path, dpi=110, bbox_inches="tight")
        print(f"wrote {path}", file=sys.stderr)
    plt.close(fig)
    return None


def _scale_label(e: dict) -> str:
    """``idle_h2 hypercorn`` / ``idle_h2 asgiri (with hypercorn)``: which run a bar is."""
    peer = (e["peer_description"] or "").split(" (")[0]
    if e["role"] != "asgiri":
        return f"{e['scenario']} {peer}"
    return f"{e['scenario']} asgiri" + (f" (with {peer})" if peer else "")
