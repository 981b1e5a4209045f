"""Autobahn|Testsuite against asgiri's WebSocket over HTTP/1.1, driven by kosoku.

kosoku (PyPI) runs the Autobahn fuzzing-client cases natively; it lives in its
own virtualenv, ``.venv-autobahn/`` at the repository root, which
:func:`ensure_kosoku` creates on first use (``make test`` does it from a fresh
clone).  The server under test is ``wsapps:echo`` (text and binary echo) run by
the CLI with its default WebSocket settings (permessage-deflate on, so groups
12 and 13 exercise compression) except for keepalive pings, which are off: an
Autobahn case ends at the first frame it did not ask for, and a case that runs
longer than the ping interval on a loaded machine would get one.

``make test`` runs :data:`DEFAULT_CASES` (337 of the 517 cases);
``make conformance`` all 517 (groups 1-7, 9, 10, 12 and 13; the suite has no
8 or 11), two at a time (kosoku ``-p 2``: the client's work then overlaps the
server's).  Every case must end OK,
NON-STRICT or INFORMATIONAL; the test fails listing each FAILED /
UNIMPLEMENTED case with its description.

Environment:

* ``AUTOBAHN_CASES``: comma-separated case ids or globs to run instead
  (e.g. ``1.*,12.2.*``).
* ``AUTOBAHN_FULL=1``: all cases (``make conformance``).
* ``AUTOBAHN_WRITE_SUMMARY=1``: write the counts per group and status to
  ``docs/autobahn-results.md`` (``make conformance`` does).
"""

from __future__ import annotations

import collections
import datetime
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

import asgiri

from .servers import ROOT, cli_server

AUTOBAHN_VENV = ROOT / ".venv-autobahn"
KOSOKU = AUTOBAHN_VENV / "bin" / "kosoku"
#: The kosoku release the recorded results were produced with.
KOSOKU_REQUIREMENT = "kosoku==0.1.0"
SUMMARY = ROOT / "docs" / "autobahn-results.md"
#: Cases run at once: the client's work overlaps the server's.
PARALLEL_CASES = "2"

PASSING = {"OK", "NON-STRICT", "INFORMATIONAL"}
STATUSES = ["OK", "NON-STRICT", "INFORMATIONAL", "FAILED", "UNIMPLEMENTED"]

# Part of `make test` (a few minutes; the marker lets `-m "not autobahn"` skip
# it in a quick local run).
pytestmark = [pytest.mark.autobahn, pytest.mark.timeout(1800)]


def ensure_kosoku() -> Path:
    """Install kosoku into .venv-autobahn unless it is already there.

    The virtualenv is made by the interpreter running the tests (the project's
    .venv, whose base Python is known to have a working ``venv``).
    """
    if KOSOKU.exists():
        return KOSOKU
    if not (AUTOBAHN_VENV / "bin" / "python").exists():
        subprocess.run([sys.executable, "-m", "venv", str(AUTOBAHN_VENV)], check=True, timeout=300)
    install = subprocess.run(
        [str(AUTOBAHN_VENV / "bin" / "python"), "-m", "pip", "install", "-q", KOSOKU_REQUIREMENT],
        capture_output=True,
        text=True,
        timeout=900,
    )
    if install.returncode != 0 or not KOSOKU.exists():
        pytest.fail(f"could not install kosoku:\n{install.stdout}\n{install.stderr}")
    return KOSOKU


#: What ``make test`` runs on each transport: every case of the groups about
#: framing and the wire (1-7, 9 and 10: fragmentation, control frames, UTF-8,
#: reserved bits, close codes, large messages), and of the compression groups
#: those that differ in what is negotiated rather than in what is compressed:
#: 12.1 (the default offer), 13.7 (a list of offers, no context takeover and a
#: 512-byte window).  The rest of 12 and 13 (four fifths of the suite's time)
#: runs the same compression code with other data and window sizes;
#: ``make conformance`` runs it on every transport.
DEFAULT_CASES = ["1.*", "2.*", "3.*", "4.*", "5.*", "6.*", "7.*", "9.*", "10.*", "12.1.*", "13.7.*"]


def selection() -> list[str]:
    """The case globs to run (empty: all of them)."""
    cases = os.environ.get("AUTOBAHN_CASES", "").strip()
    if cases:
        return [case.strip() for case in cases.split(",") if case.strip()]
    if os.environ.get("AUTOBAHN_FULL") == "1":
        return []
    return list(DEFAULT_CASES)


def _group(case_id: str) -> int:
    return int(case_id.split(".", 1)[0])


def _case_key(case_id: str) -> tuple[int, ...]:
    return tuple(int(part) for part in case_id.split("."))


def _plain(text: str) -> str:
    return re.sub(r"<[^>]+>", "", text or "").strip()


def load_results(report_dir: Path) -> dict[str, dict[str, Any]]:
    """Case id -> index entry plus the description and result from its report file."""
    index = json.loads((report_dir / "index.json").read_text())
    (cases,) = index.values()  # one agent: the server under test
    results: dict[str, dict[str, Any]] = {}
    for case_id, entry in cases.items():
        detail = json.loads((report_dir / entry["reportfile"]).read_text())
        results[case_id] = {
            **entry,
            "description": _plain(detail.get("description", "")),
            "result": _plain(str(detail.get("result", ""))),
        }
    return results


SUMMARY_HEAD = """# Autobahn|Testsuite results

The fuzzing-client cases of the Autobahn|Testsuite, run by
[kosoku](https://pypi.org/project/kosoku/) against an echo app served by the CLI with the
default WebSocket settings (permessage-deflate on, zlib level 1) except keepalive pings, which
are off (an Autobahn case ends at the first frame it did not ask for).  `make test` runs 337
of them on each transport (groups 1-7, 9, 10 and the compression cases 12.1 and 13.7);
`make conformance` runs all of them on both and rewrites this file, one section per
transport.  See docs/WEBSOCKET.md.
"""


def write_summary(
    transport: str, results: dict[str, dict[str, Any]], include: list[str], elapsed: float
) -> None:
    """Rewrite the section of docs/autobahn-results.md about ``transport``."""
    counts: dict[int, collections.Counter[str]] = collections.defaultdict(collections.Counter)
    for case_id, entry in results.items():
        counts[_group(case_id)][entry["behavior"]] += 1
    total: collections.Counter[str] = collections.Counter()
    title = f"## WebSocket over {transport}"
    lines = [
        title,
        "",
        f"- Date: {datetime.date.today().isoformat()}",
        f"- asgiri {asgiri.__version__}, Python {sys.version.split()[0]}",
        f"- Cases run: {len(results)}" + (f" (selected: {', '.join(include)})" if include else ""),
        f"- Wall time: {elapsed:.0f} s on {os.cpu_count()} CPUs shared with kosoku, "
        f"{PARALLEL_CASES} cases at a time "
        "(groups 12 and 13, compression, take nearly all of it)",
        f"- Load average at the end of the run: {os.getloadavg()[0]:.1f} "
        "(other work on the machine stretches the wall time)",
        "",
        "| Group | " + " | ".join(STATUSES) + " | Total |",
        "| --- | " + " | ".join("---:" for _ in STATUSES) + " | ---: |",
    ]
    for group in sorted(counts):
        row = counts[group]
        total.update(row)
        cells = [str(row.get(status, 0)) for status in STATUSES]
        lines.append(f"| {group} | " + " | ".join(cells) + f" | {sum(row.values())} |")
    cells = [f"**{total.get(status, 0)}**" for status in STATUSES]
    lines.append("| **all** | " + " | ".join(cells) + f" | **{sum(total.values())}** |")
    others = sorted(
        (case_id for case_id, entry in results.items() if entry["behavior"] != "OK"),
        key=_case_key,
    )
    if others:
        lines += ["", "Cases not OK:", ""]
        for case_id in others:
            entry = results[case_id]
            lines.append(
                f"- {case_id} {entry['behavior']}: {entry['description']} ({entry['result']})"
            )
    sections: dict[str, str] = {}
    if SUMMARY.exists():
        for part in SUMMARY.read_text().split("\n## ")[1:]:
            sections["## " + part.split("\n", 1)[0]] = "## " + part.rstrip("\n")
    sections[title] = "\n".join(lines)
    order = sorted(sections, key=lambda name: (not name.endswith("HTTP/1.1"), name))
    SUMMARY.write_text(SUMMARY_HEAD + "".join("\n" + sections[name] + "\n" for name in order))


def test_autobahn_fuzzingclient(tmp_path: Path) -> None:
    kosoku = ensure_kosoku()
    include = selection()
    report_dir = tmp_path / "reports"
    args = [str(kosoku), "-m", "fuzzingclient", "-o", str(report_dir), "-p", PARALLEL_CASES]
    for case in include:
        args += ["-i", case]
    with cli_server(
        "wsapps:echo",
        "--port",
        "0",
        "--http",
        "1.1",
        "--no-access-log",
        "--ws-ping-interval",
        "0",
    ) as srv:
        started = time.monotonic()
        run = subprocess.run(
            [*args, f"127.0.0.1:{srv.port}"],
            capture_output=True,
            text=True,
            timeout=1700,
        )
        elapsed = time.monotonic() - started
        server_output = srv.output
    if not (report_dir / "index.json").exists():
        pytest.fail(f"kosoku wrote no report:\n{run.stdout}\n{run.stderr}\n{server_output}")
    results = load_results(report_dir)
    assert results, "no case ran"
    groups = {_group(case_id) for case_id in results}
    if include == DEFAULT_CASES:
        assert len(results) == 337, len(results)  # 517 less 180 compression cases
    elif not include:
        assert len(results) == 517, len(results)
        assert {1, 2, 3, 4, 5, 6, 7, 9, 10, 12, 13} <= groups, sorted(groups)
    if os.environ.get("AUTOBAHN_WRITE_SUMMARY") == "1":
        write_summary("HTTP/1.1", results, include, elapsed)
    failing = sorted(
        (case_id for case_id, entry in results.items() if entry["behavior"] not in PASSING),
        key=_case_key,
    )
    assert not failing, "Autobahn cases not passing:\n" + "\n".join(
        f"  {case_id} {results[case_id]['behavior']}: {results[case_id]['description']}"
        f" -> {results[case_id]['result']}"
        for case_id in failing
    )
