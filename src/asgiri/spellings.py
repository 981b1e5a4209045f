"""Other servers' spellings, answered instead of refused.

People arrive with uvicorn, hypercorn or granian command lines and files.
Where such a spelling means the same thing here it is simply an alias (the
option's ``flags`` in :mod:`asgiri.config`); this module handles the rest:

- **Values that name an implementation asgiri does not let you choose**
  (``--http h11``, ``--ws websockets``): accepted with a one-line notice,
  because the intent (serve HTTP, serve WebSocket) is met either way.
- **Booleans given a value** (uvicorn's ``--ws-per-message-deflate false``):
  rewritten to ``--no-ws-per-message-deflate``.
- **Names that are close to a real option** (a TOML key ``bind``, a keyword
  ``http=``, an environment variable ``ASGIRI_WORKRES``): a "did you mean"
  naming the option, instead of a bare "unknown option".
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Iterable
from typing import Any

__all__ = ["PEER_FLAGS", "did_you_mean", "normalize_argv", "normalize_values", "peer_flag_answer"]

#: uvicorn's ``--http`` implementations: the version is asgiri's choice of parser.
_HTTP_IMPLEMENTATIONS = ("h11", "httptools", "zttp")
#: uvicorn's ``--ws`` implementations; asgiri's WebSocket framing is wsproto's.
_WS_IMPLEMENTATIONS = ("websockets", "websockets-sansio")

_TRUE = frozenset(("true", "1", "yes", "on"))
_FALSE = frozenset(("false", "0", "no", "off"))

#: Other servers' names for asgiri options (config keys, keyword arguments):
#: hypercorn's TOML keys, granian's and gunicorn's option names.
_PEER_NAMES = {
    "bind": "binds",
    "insecure_bind": "binds",
    "insecure_binds": "binds",
    "quic_binds": "quic_bind",
    "http": "http_version",
    "keep_alive_timeout": "timeout_keep_alive",
    "keep_alive": "timeout_keep_alive",
    "keepalive": "timeout_keep_alive",
    "graceful_timeout": "timeout_graceful_shutdown",
    "max_requests": "limit_max_requests",
    "max_requests_jitter": "limit_max_requests_jitter",
    "accesslog": "access_log",
    "access_log_fmt": "access_log_format",
    "access_logformat": "access_log_format",
    "loglevel": "log_level",
    "logconfig": "log_config",
    "ssl_certificate": "certfile",
    "ssl_ca": "ca_certs",
    "ssl_client_verify": "cert_reqs",
    "verify_mode": "cert_reqs",
    "pid": "pid_file",
    "pid_path": "pid_file",
    "url_path_prefix": "root_path",
    "env_files": "env_file",
    "include_server_header": "server_header",
    "websocket_max_message_size": "ws_max_size",
    "websocket_ping_interval": "ws_ping_interval",
}


def did_you_mean(name: str, known: Iterable[str], aliases: dict[str, str] | None = None) -> str:
    """``" (did you mean 'binds'?)"`` for a name close to one of ``known``, else ``""``.

    ``aliases`` maps other spellings (command-line flags without dashes) to
    option names; they and other servers' names are tried before a fuzzy match.
    """
    names = set(known)
    key = name.strip().lstrip("-").lower().replace("-", "_")
    for table in (aliases or {}, _PEER_NAMES):
        target = table.get(key)
        if target is not None and target in names and target != name:
            return f" (did you mean {target!r}?)"
    close = difflib.get_close_matches(key, sorted(names), n=1, cutoff=0.75)
    if close and close[0] != name:
        return f" (did you mean {close[0]!r}?)"
    return ""


def normalize_values(options: dict[str, Any], label: Callable[[str], str]) -> list[str]:
    """Replace uvicorn's implementation choices in ``options``; the notices to print.

    ``label(option)`` names where the value was given (``asgiri.toml: http_version =``,
    ``ASGIRI_HTTP=``).
    """
    notices: list[str] = []
    http = options.get("http_version")
    if isinstance(http, str) and http.lower() in _HTTP_IMPLEMENTATIONS:
        del options["http_version"]
        notices.append(_http_notice(label("http_version"), http))
    ws = options.get("ws")
    if isinstance(ws, str) and ws.lower() in _WS_IMPLEMENTATIONS:
        options["ws"] = "auto"
        notices.append(_ws_notice(label("ws"), ws))
    return notices


def _http_notice(where: str, value: str) -> str:
    return (
        f"{where} {value}: asgiri picks its HTTP parsers itself (httptools for HTTP/1.1, h2, "
        "aioquic); here --http chooses versions (auto, 1.1, 2, 3), and auto is kept"
    )


def _ws_notice(where: str, value: str) -> str:
    return (
        f"{where} {value}: asgiri frames WebSocket with wsproto whatever is chosen; "
        "serving WebSocket as --ws auto"
    )


def normalize_argv(
    argv: list[str], negatable: Iterable[str], switches: Iterable[str]
) -> tuple[list[str], list[str]]:
    """uvicorn command-line spellings made asgiri's: (new argv, notices to print).

    ``--http h11`` is dropped with a notice, ``--ws websockets`` becomes
    ``--ws auto`` with one, and ``--FLAG true|false`` becomes ``--FLAG`` /
    ``--no-FLAG`` for an on/off option (``negatable``), or ``--FLAG`` /
    nothing for one that is only switched on (``switches``, e.g. ``--reload``).
    Anything else passes untouched, to be judged by the parser.
    """
    flags = set(negatable)
    only_on = set(switches)
    out: list[str] = []
    notices: list[str] = []
    i = 0
    while i < len(argv):
        arg = argv[i]
        if arg == "--":
            out.extend(argv[i:])
            break
        name, eq, inline = arg.partition("=")
        has_next = i + 1 < len(argv)
        value = inline if eq else (argv[i + 1] if has_next else None)
        step = 1 if eq else 2
        if (
            name in ("--http", "--http-version")
            and value
            and value.lower() in _HTTP_IMPLEMENTATIONS
        ):
            notices.append(_http_notice(name, value))
            i += step
            continue
        if name in ("--http", "--http-version") and value == "1":
            out += [name, "1.1"]  # granian's spelling of HTTP/1.1
            i += step
            continue
        if name == "--ws" and value and value.lower() in _WS_IMPLEMENTATIONS:
            notices.append(_ws_notice(name, value))
            out += ["--ws", "auto"]
            i += step
            continue
        if (name in flags or name in only_on) and value and value.lower() in _TRUE | _FALSE:
            on = value.lower() in _TRUE
            if on:
                out.append(name)
            elif name in flags:
                out.append("--no-" + name[2:])
            i += step
            continue
        out.append(arg)
        i += 1
    return out, notices


#: Options of uvicorn, hypercorn and granian that asgiri spells differently or does
#: not have, with the one-line answer its command line gives instead of "unrecognized
#: arguments".  (Options spelled the same are asgiri's own; docs/migration.md has all.)
PEER_FLAGS: dict[str, tuple[str, str]] = {
    # uvicorn
    "--ssl-version": ("uvicorn", "asgiri has none: it offers TLS 1.2 and 1.3, always"),
    "--h11-max-incomplete-event-size": (
        "uvicorn",
        "asgiri has none: its parser is httptools; --limit-request-header-size bounds a head",
    ),
    "--reset-contextvars": ("uvicorn", "asgiri has none"),
    # hypercorn
    "--access-logfile": ("hypercorn", "asgiri logs to stderr; send it elsewhere with --log-config"),
    "--access-logformat": ("hypercorn", "asgiri's is --access-log-format (%(h)s formats work)"),
    "--error-logfile": ("hypercorn", "asgiri logs to stderr; send it elsewhere with --log-config"),
    "--error-log": ("hypercorn", "asgiri logs to stderr; send it elsewhere with --log-config"),
    "--log-file": ("hypercorn", "asgiri logs to stderr; send it elsewhere with --log-config"),
    "-D": ("hypercorn", "asgiri does not daemonize: run it under systemd or a supervisor"),
    "--daemon": ("hypercorn", "asgiri does not daemonize: run it under systemd or a supervisor"),
    "--debug": ("hypercorn", "asgiri's is --log-level debug"),
    "--graceful-timeout": ("hypercorn", "asgiri's is --timeout-graceful-shutdown SECONDS"),
    "--read-timeout": (
        "hypercorn",
        "asgiri's are --timeout-request-header and --timeout-keep-alive",
    ),
    "--max-requests": ("hypercorn", "asgiri's is --limit-max-requests N"),
    "--max-requests-jitter": ("hypercorn", "asgiri's is --limit-max-requests-jitter N"),
    "-g": ("hypercorn", "asgiri has none: set the socket's mode with --uds-permissions"),
    "--group": ("hypercorn", "asgiri has none: set the socket's mode with --uds-permissions"),
    "-u": ("hypercorn", "asgiri has none: run asgiri as that user"),
    "--user": ("hypercorn", "asgiri has none: run asgiri as that user"),
    "-m": ("hypercorn", "asgiri's is --uds-permissions MODE (a mode, not a mask)"),
    "--umask": ("hypercorn", "asgiri's is --uds-permissions MODE (a mode, not a mask)"),
    "-k": ("hypercorn", "asgiri's is --loop asyncio|uvloop"),
    "--worker-class": ("hypercorn", "asgiri's is --loop asyncio|uvloop"),
    "--keep-alive": ("hypercorn", "asgiri's is --timeout-keep-alive SECONDS"),
    "--insecure-bind": ("hypercorn", "asgiri's is --bind http://HOST:PORT"),
    "-p": ("hypercorn", "asgiri's is --pid PATH"),
    "--server-name": ("hypercorn", "asgiri has none: check the Host header in the app"),
    "--statsd-host": (
        "hypercorn",
        "asgiri has none: it exports Prometheus metrics, --metrics-bind",
    ),
    "--statsd-prefix": (
        "hypercorn",
        "asgiri has none: it exports Prometheus metrics, --metrics-bind",
    ),
    "--verify-mode": ("hypercorn", "asgiri's is --cert-reqs 0|1|2 (CERT_NONE, OPTIONAL, REQUIRED)"),
    "--websocket-ping-interval": ("hypercorn", "asgiri's is --ws-ping-interval SECONDS"),
    # granian
    "--no-ws": ("granian", "asgiri's is --ws none"),
    "--blocking-threads": ("granian", "asgiri's is --wsgi-max-workers N (for WSGI apps)"),
    "--blocking-threads-idle-timeout": ("granian", "asgiri has none"),
    "--runtime-threads": ("granian", "asgiri has none: one event loop per worker, use --workers"),
    "--runtime-blocking-threads": ("granian", "asgiri has none"),
    "--runtime-mode": ("granian", "asgiri has none: one event loop per worker, use --workers"),
    "--task-impl": ("granian", "asgiri has none: it runs asyncio tasks"),
    "--backpressure": ("granian", "asgiri's is --limit-concurrency N"),
    "--http1-buffer-size": ("granian", "asgiri's is --limit-request-header-size BYTES"),
    "--http1-header-read-timeout": (
        "granian",
        "asgiri's is --timeout-request-header SECONDS (seconds, not milliseconds)",
    ),
    "--http1-keep-alive": ("granian", "asgiri keeps connections alive: --timeout-keep-alive"),
    "--no-http1-keep-alive": ("granian", "asgiri has none: --timeout-keep-alive bounds idle time"),
    "--http1-pipeline-flush": ("granian", "asgiri has none: pipelined answers are always batched"),
    "--no-http1-pipeline-flush": ("granian", "asgiri has none"),
    "--http2-adaptive-window": ("granian", "asgiri has none: --h2-initial-window-size"),
    "--no-http2-adaptive-window": ("granian", "asgiri has none: --h2-initial-window-size"),
    "--http2-initial-connection-window-size": ("granian", "asgiri's is --h2-initial-window-size"),
    "--http2-initial-stream-window-size": ("granian", "asgiri's is --h2-initial-window-size"),
    "--http2-keep-alive-interval": ("granian", "asgiri has none: it sends no HTTP/2 pings"),
    "--http2-keep-alive-timeout": ("granian", "asgiri has none: it sends no HTTP/2 pings"),
    "--http2-max-concurrent-streams": ("granian", "asgiri's is --h2-max-concurrent-streams N"),
    "--http2-max-frame-size": ("granian", "asgiri's is --h2-max-frame-size BYTES"),
    "--http2-max-headers-size": ("granian", "asgiri's is --h2-max-header-list-size BYTES"),
    "--http2-max-send-buffer-size": ("granian", "asgiri has none"),
    "--log": ("granian", "asgiri logs by default; --log-level sets how much"),
    "--no-log": ("granian", "asgiri's is --log-level critical --no-access-log"),
    "--access-log-fmt": ("granian", "asgiri's is --access-log-format (%(addr)s formats work)"),
    "--ssl-certificate": ("granian", "asgiri's is --ssl-certfile PATH"),
    "--ssl-protocol-min": ("granian", "asgiri has none: it offers TLS 1.2 and 1.3, always"),
    "--ssl-ca": ("granian", "asgiri's is --ssl-ca-certs PATH"),
    "--ssl-crl": ("granian", "asgiri has none"),
    "--ssl-client-verify": ("granian", "asgiri's is --ssl-cert-reqs 2"),
    "--no-ssl-client-verify": ("granian", "asgiri's is --ssl-cert-reqs 0 (the default)"),
    "--url-path-prefix": ("granian", "asgiri's is --root-path PATH"),
    "--respawn-failed-workers": ("granian", "asgiri always replaces a worker that dies"),
    "--no-respawn-failed-workers": ("granian", "asgiri has none: it always replaces dead workers"),
    "--respawn-interval": ("granian", "asgiri has none: replacements back off from 0.5 s to 30 s"),
    "--workers-kill-timeout": (
        "granian",
        "asgiri has none: a worker is killed after --timeout-graceful-shutdown plus "
        "--lifespan-shutdown-timeout plus 5 s",
    ),
    "--no-factory": ("granian", "asgiri's default: leave --factory out"),
    "--working-dir": ("granian", "asgiri's is --app-dir DIR (put on sys.path; no chdir)"),
    "--env-files": ("granian", "asgiri's is --env-file PATH"),
    "--static-path-route": ("granian", "asgiri has none: serve static files from the app"),
    "--static-path-mount": ("granian", "asgiri has none: serve static files from the app"),
    "--static-path-dir-to-file": ("granian", "asgiri has none"),
    "--static-path-expires": ("granian", "asgiri has none"),
    "--metrics": ("granian", "asgiri's is --metrics-bind HOST:PORT"),
    "--no-metrics": ("granian", "asgiri's default: leave --metrics-bind out"),
    "--metrics-scrape-interval": ("granian", "asgiri has none: values are current when scraped"),
    "--metrics-address": ("granian", "asgiri's is --metrics-bind HOST:PORT"),
    "--metrics-port": ("granian", "asgiri's is --metrics-bind HOST:PORT"),
    "--no-reload": ("granian", "asgiri's default: leave --reload out"),
    "--reload-paths": ("granian", "asgiri's is --reload-dir DIR"),
    "--reload-ignore-dirs": ("granian", "asgiri's is --reload-exclude 'NAME/'"),
    "--reload-ignore-patterns": (
        "granian",
        "asgiri's is --reload-exclude GLOB (a glob, not a regex)",
    ),
    "--reload-ignore-paths": ("granian", "asgiri's is --reload-exclude GLOB"),
    "--reload-tick": (
        "granian",
        "asgiri has none: it is told of changes (--reload-delay debounces)",
    ),
    "--reload-ignore-worker-failure": ("granian", "asgiri's reloader always waits for a fix"),
    "--no-reload-ignore-worker-failure": ("granian", "asgiri has none"),
    "--process-name": ("granian", "asgiri has none"),
}


def peer_flag_answer(argv: list[str]) -> str | None:
    """The answer for the first other server's option in ``argv``, if there is one."""
    for arg in argv:
        if arg == "--":
            return None
        flag = arg.partition("=")[0]
        entry = PEER_FLAGS.get(flag)
        if entry is not None:
            server, answer = entry
            return f"{flag} is {server}'s option; {answer} (see docs/migration.md)"
    return None
