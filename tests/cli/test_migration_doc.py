"""docs/migration.md stays complete and true: every option of each peer, asgiri's real flags.

uvicorn's options are read from the installed uvicorn itself; hypercorn's and
granian's are their ``--help`` of the versions the page names (hypercorn
0.18, granian 2.8), kept here because they are not installed.
"""

from __future__ import annotations

import re

import pytest
from uvicorn.main import main as uvicorn_command

from asgiri.cli import build_parser
from asgiri.spellings import PEER_FLAGS
from tests.support.servers import ROOT

DOC = (ROOT / "docs" / "migration.md").read_text()

HYPERCORN = [
    "--access-log",
    "--access-logfile",
    "--access-logformat",
    "--backlog",
    "-b",
    "--bind",
    "--ca-certs",
    "--certfile",
    "--cert-reqs",
    "--ciphers",
    "-c",
    "--config",
    "-D",
    "--daemon",
    "--debug",
    "--error-log",
    "--error-logfile",
    "--log-file",
    "--graceful-timeout",
    "--read-timeout",
    "--max-requests",
    "--max-requests-jitter",
    "-g",
    "--group",
    "-k",
    "--worker-class",
    "--keep-alive",
    "--keyfile",
    "--keyfile-password",
    "--insecure-bind",
    "--log-config",
    "--log-level",
    "-p",
    "--pid",
    "--quic-bind",
    "--reload",
    "--root-path",
    "--server-name",
    "--statsd-host",
    "--statsd-prefix",
    "-m",
    "--umask",
    "-u",
    "--user",
    "--verify-mode",
    "--websocket-ping-interval",
    "-w",
    "--workers",
]

GRANIAN = [
    "--host",
    "--port",
    "--uds",
    "--uds-permissions",
    "--interface",
    "--http",
    "--ws",
    "--no-ws",
    "--workers",
    "--blocking-threads",
    "--blocking-threads-idle-timeout",
    "--runtime-threads",
    "--runtime-blocking-threads",
    "--runtime-mode",
    "--loop",
    "--task-impl",
    "--backlog",
    "--backpressure",
    "--http1-buffer-size",
    "--http1-header-read-timeout",
    "--http1-keep-alive",
    "--no-http1-keep-alive",
    "--http1-pipeline-flush",
    "--http2-adaptive-window",
    "--http2-initial-connection-window-size",
    "--http2-initial-stream-window-size",
    "--http2-keep-alive-interval",
    "--http2-keep-alive-timeout",
    "--http2-max-concurrent-streams",
    "--http2-max-frame-size",
    "--http2-max-headers-size",
    "--http2-max-send-buffer-size",
    "--log",
    "--no-log",
    "--log-level",
    "--log-config",
    "--access-log",
    "--no-access-log",
    "--access-log-fmt",
    "--ssl-certificate",
    "--ssl-keyfile",
    "--ssl-keyfile-password",
    "--ssl-protocol-min",
    "--ssl-ca",
    "--ssl-crl",
    "--ssl-client-verify",
    "--url-path-prefix",
    "--respawn-failed-workers",
    "--respawn-interval",
    "--rss-sample-interval",
    "--rss-samples",
    "--workers-lifetime",
    "--workers-max-rss",
    "--workers-kill-timeout",
    "--factory",
    "--no-factory",
    "--working-dir",
    "--env-files",
    "--static-path-route",
    "--static-path-mount",
    "--static-path-dir-to-file",
    "--static-path-expires",
    "--metrics",
    "--no-metrics",
    "--metrics-scrape-interval",
    "--metrics-address",
    "--metrics-port",
    "--reload",
    "--no-reload",
    "--reload-paths",
    "--reload-ignore-dirs",
    "--reload-ignore-patterns",
    "--reload-ignore-paths",
    "--reload-tick",
    "--reload-ignore-worker-failure",
    "--process-name",
    "--pid-file",
    "--version",
]


def _section(title: str) -> str:
    start = DOC.index(f"## {title}\n")
    end = DOC.find("\n## ", start + 1)
    return DOC[start : end if end > 0 else len(DOC)]


def _first_column(section: str) -> set[str]:
    flags: set[str] = set()
    for row in re.findall(r"^\| (.+?) \| .+ \|$", section, flags=re.M):
        flags.update(re.findall(r"(?<![\w-])(--?[A-Za-z][\w-]*)", row))
    return flags


def _uvicorn_options() -> list[str]:
    flags = []
    for param in uvicorn_command.params:
        flags += [o for o in (*param.opts, *param.secondary_opts) if o.startswith("-")]
    return flags


@pytest.mark.parametrize(
    ("title", "options"),
    [
        ("uvicorn", _uvicorn_options()),
        ("hypercorn", HYPERCORN),
        ("granian", GRANIAN),
    ],
)
def test_every_option_of_each_server_has_a_row(title: str, options: list[str]) -> None:
    listed = _first_column(_section(title))
    missing = sorted(set(options) - listed)
    assert not missing, f"{title} options missing from docs/migration.md: {missing}"


def test_the_asgiri_column_names_real_options() -> None:
    ours = {flag for action in build_parser()._actions for flag in action.option_strings}
    for title in ("uvicorn", "hypercorn", "granian"):
        for row in re.findall(r"^\| .+? \| (.+?) \| .*\|$", _section(title), flags=re.M):
            for flag in re.findall(r"(?<![\w-])(--?[A-Za-z][\w-]*)", row):
                assert flag in ours, f"{title}: {flag} is not an asgiri option"


def test_every_answer_of_the_command_line_is_on_the_page() -> None:
    """The one-line answers point at docs/migration.md: each of those options is there."""
    listed = set()
    for title in ("uvicorn", "hypercorn", "granian"):
        listed |= _first_column(_section(title))
    assert set(PEER_FLAGS) <= listed
