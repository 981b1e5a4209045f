"""Autobahn|Testsuite against asgiri's WebSocket over HTTP/1.1, driven by kosoku.

kosoku (PyPI) runs the Autobahn fuzzing-client cases natively; it lives in its
own virtualenv, ``.venv-autobahn/`` at the repository root, which
:func:`ensure_kosoku` creates on first use (``make test`` does it from a fresh
clone).  The server under test is ``apps.ws:echo`` (text and binary echo) run by
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

import os
import subprocess
import time
from pathlib import Path

import pytest

from tests.support.autobahn import (
    DEFAULT_CASES,
    PARALLEL_CASES,
    PASSING,
    _case_key,
    _group,
    ensure_kosoku,
    load_results,
    selection,
    write_summary,
)
from tests.support.servers import cli_server

# Part of `make test` (a few minutes; the marker lets `-m "not autobahn"` skip
# it in a quick local run).
pytestmark = [pytest.mark.autobahn, pytest.mark.timeout(1800)]


def test_autobahn_fuzzingclient(tmp_path: Path) -> None:
    kosoku = ensure_kosoku()
    include = selection()
    report_dir = tmp_path / "reports"
    args = [str(kosoku), "-m", "fuzzingclient", "-o", str(report_dir), "-p", PARALLEL_CASES]
    for case in include:
        args += ["-i", case]
    with cli_server(
        "apps.ws:echo",
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
