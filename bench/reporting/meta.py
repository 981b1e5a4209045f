"""The machine, versions and settings of a run, as meta.json records them."""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import time
from pathlib import Path
from typing import Any

from . import ROOT
from .targets import CONNECTION_VARS, STREAM_VARS


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


def build_meta(args: argparse.Namespace) -> dict[str, Any]:
    """meta.json of a run: ``args`` are those of ``report.py meta``."""
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
            "connections": {
                sc: (_env_int(v, d) if v else d) for sc, (v, d) in CONNECTION_VARS.items()
            },
            "streams_per_connection": {sc: _env_int(v, d) for sc, (v, d) in STREAM_VARS.items()},
            "stream_bytes": {
                "h1/h2": _env_int("STREAM_BYTES", 1 << 30),
                "h3": _env_int("STREAM_H3_BYTES", _env_int("STREAM_BYTES", 1 << 30)),
            },
        },
        "pairs": pairs,
    }
    return meta
