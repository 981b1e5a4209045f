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

__all__ = ["did_you_mean", "normalize_argv", "normalize_values"]

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
