"""h2spec, the HTTP/2 conformance tool, against a real server: all 146 cases must pass.

h2spec (``third_party/h2spec``, built by ``make h2spec`` into ``.tools/bin``; ``H2SPEC``
names another binary) runs its RFC 7540 and RFC 7541 cases over cleartext (prior
knowledge) and over TLS (ALPN ``h2``), on each HTTP/2 codec.  Its JUnit report
is read case by case: a failed, errored or skipped case fails the run, and so
does a missing binary (``make test`` builds it; a run that cannot is broken,
not excused).

The cleartext server speaks HTTP/2 only (``--http 2``).  h2spec's case 3.5/2
sends ``INVALID CONNECTION PREFACE\\r\\n\\r\\n`` and wants a GOAWAY or a close:
on a port that also speaks HTTP/1.1 those bytes are an HTTP/1.1 request, which
is answered 400 (``tests/http2/conformance/test_framing.py``), and no
answer could satisfy both.  On an HTTP/2-only port they are an invalid
connection preface (RFC 9113 3.4).  Over TLS, ALPN has chosen ``h2`` before
any byte, so the server there runs in its default mode.

The app is ``apps.h2:main`` at ``/json`` (``-P``): it reads the whole request
body (h2spec sends POSTs with DATA) and answers every request with a body, so
h2spec's cases that wait for response DATA, or hold it back with a shut window,
have some.

``tests/http2/conformance`` covers the same sections (and more) with its own
raw client, case by case; this module is the independent check.
"""

from __future__ import annotations

import logging
import os
import subprocess
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.apps import h2 as h2apps
from tests.support.logs import LogRecords
from tests.support.servers import ROOT, serve
from tests.support.tls import client_context

#: The number of cases h2spec 2.6.0 runs without ``--strict``.
CASES = 146
H2SPEC = Path(os.environ.get("H2SPEC") or ROOT / ".tools" / "bin" / "h2spec")
#: h2spec's wait for each expected frame, in seconds: a passing case never waits it out.
CASE_TIMEOUT = 2

pytestmark = pytest.mark.timeout(120)


@pytest.fixture(scope="module")
def h2spec() -> Path:
    if not (H2SPEC.is_file() and os.access(H2SPEC, os.X_OK)):
        pytest.fail(
            f"h2spec is not built at {H2SPEC}: run `make h2spec` (third_party/h2spec/VENDORED.md)"
        )
    return H2SPEC


@pytest.fixture
def server_errors() -> Iterator[LogRecords]:
    """What the server logs as an error (asyncio's protocol callbacks, ``asgiri.error``)."""
    records = LogRecords()
    records.setLevel(logging.ERROR)
    loggers = [logging.getLogger(name) for name in ("asyncio", "asgiri.error")]
    for logger in loggers:
        logger.addHandler(records)
    try:
        yield records
    finally:
        for logger in loggers:
            logger.removeHandler(records)


def _results(report: Path) -> tuple[int, list[str]]:
    """The number of cases in h2spec's JUnit report, and the ones that did not pass."""
    cases = ET.parse(report).getroot().iter("testcase")
    total = 0
    bad: list[str] = []
    for case in cases:
        total += 1
        for outcome in ("failure", "error", "skipped"):
            if case.find(outcome) is not None:
                bad.append(f"{case.get('package')}: {case.get('classname')} ({outcome})")
    return total, bad


@pytest.mark.parametrize("codec", ["nghttp2", "h2"])
@pytest.mark.parametrize("transport", ["h2c", "tls"])
def test_h2spec_passes_every_case(
    h2spec: Path,
    transport: str,
    codec: str,
    pems: tuple[bytes, bytes],
    tmp_path: Path,
    server_errors: LogRecords,
) -> None:
    options: dict[str, Any] = {"h2_codec": codec}
    args = [str(h2spec), "-h", "127.0.0.1", "-P", "/json", "-o", str(CASE_TIMEOUT)]
    if transport == "tls":
        options.update(cert_data=pems[0], key_data=pems[1])
        args += ["-t", "-k"]
    else:
        options["http_version"] = "2"
    report = tmp_path / "h2spec.xml"
    with serve(h2apps.main, **options) as srv:
        run = subprocess.run(
            [*args, "-p", str(srv.port), "-j", str(report)],
            capture_output=True,
            text=True,
            timeout=90,
        )
        # The server still serves after everything h2spec threw at it.
        verify = client_context(pems) if transport == "tls" else False
        with httpx.Client(http1=False, http2=True, verify=verify, timeout=10) as client:
            response = client.get(f"{srv.url}/json")
    output = run.stdout + run.stderr
    assert report.is_file(), f"h2spec wrote no report (exit {run.returncode}):\n{output}"
    total, bad = _results(report)
    summary = output[output.find("Failures:") :] if bad else ""
    assert not bad, f"{len(bad)} of {total} h2spec cases did not pass:\n{summary}"
    assert total == CASES, output
    assert run.returncode == 0, output
    assert f"{CASES} tests, {CASES} passed, 0 skipped, 0 failed" in run.stdout
    assert (response.status_code, response.http_version) == (200, "HTTP/2")
    errors = [f"{r.name}: {r.getMessage()}" for r in server_errors.records]
    assert not errors, f"the server logged errors: {errors}"
