"""Logging set-up: the ``asgiri.error`` and ``asgiri.access`` loggers.

``--log-config`` takes a dictConfig as JSON or YAML, or an INI fileConfig,
and then replaces the defaults entirely, so deployments own their format.
A configuration written for uvicorn works unchanged: access records carry
uvicorn's fields (``client_addr``, ``request_line``, ``status_code``), and
when the file configures uvicorn's loggers but not asgiri's, asgiri's
records are handed to uvicorn's loggers in the shape uvicorn's own
formatters read (see :class:`_ToUvicorn`).

Without a file, lines on a terminal are coloured (``--use-colors``): the
level, and the status of access lines.
"""

from __future__ import annotations

import configparser
import json
import logging
import logging.config
import os
import sys
from typing import Any

from .errors import StartupError

TRACE = 5
logging.addLevelName(TRACE, "TRACE")

_LEVELS = {
    "critical": logging.CRITICAL,
    "error": logging.ERROR,
    "warning": logging.WARNING,
    "info": logging.INFO,
    "debug": logging.DEBUG,
    "trace": TRACE,
}


def level_of(name: str) -> int:
    return _LEVELS[name]


def configure_logging(
    log_level: str,
    access_log: bool,
    log_config: str | None,
    *,
    access_json: bool = False,
    use_colors: bool | None = None,
) -> None:
    """Install handlers unless the host application already configured ours.

    JSON access lines go out bare (no timestamp prefix), so that each line
    is one JSON document a log shipper can parse; they carry their own time.
    ``use_colors`` None means: when stderr is a terminal and ``NO_COLOR`` is unset.
    """
    if use_colors is None:
        use_colors = sys.stderr.isatty() and not os.environ.get("NO_COLOR")
    if log_config:
        _bridge_to_uvicorn(_load_config(log_config))
    else:
        for name in ("asgiri.error", "asgiri.access"):
            log = logging.getLogger(name)
            if not log.handlers:
                handler = logging.StreamHandler(sys.stderr)
                formatter: logging.Formatter
                if name == "asgiri.error":
                    formatter = _ErrorFormatter(use_colors)
                elif access_json:
                    formatter = logging.Formatter("%(message)s")
                else:
                    formatter = _AccessFormatter(use_colors)
                handler.setFormatter(formatter)
                log.addHandler(handler)
                log.propagate = False
    level = level_of(log_level)
    logging.getLogger("asgiri.error").setLevel(level)
    access = logging.getLogger("asgiri.access")
    access.setLevel(level if access_log else logging.CRITICAL + 1)


def _load_config(path: str) -> set[str]:
    """Apply the file; the names of the loggers it configures."""
    try:
        if path.endswith(".json"):
            with open(path) as fh:
                config: Any = json.load(fh)
            logging.config.dictConfig(config)
        elif path.endswith((".yaml", ".yml")):
            try:
                import yaml
            except ImportError:
                raise StartupError("--log-config with YAML needs PyYAML installed") from None
            with open(path) as fh:
                config = yaml.safe_load(fh)
            logging.config.dictConfig(config)
        else:
            logging.config.fileConfig(path, disable_existing_loggers=False)
            parser = configparser.ConfigParser(interpolation=None)
            parser.read(path)
            return {
                parser.get(section, "qualname", fallback="")
                for section in parser.sections()
                if section.startswith("logger_")
            }
    except StartupError:
        raise
    except Exception as exc:
        raise StartupError(f"invalid --log-config {path!r}: {exc}") from exc
    loggers = config.get("loggers") if isinstance(config, dict) else None
    return set(loggers) if isinstance(loggers, dict) else set()


# ---------------------------------------------------------------- colours

_RESET = "\x1b[0m"
_LEVEL_COLORS = {
    logging.DEBUG: "\x1b[36m",  # cyan
    TRACE: "\x1b[34m",  # blue
    logging.INFO: "\x1b[32m",  # green
    logging.WARNING: "\x1b[33m",  # yellow
    logging.ERROR: "\x1b[31m",  # red
    logging.CRITICAL: "\x1b[1;31m",  # bright red
}
_STATUS_COLORS = {1: "\x1b[37m", 2: "\x1b[32m", 3: "\x1b[33m", 4: "\x1b[31m", 5: "\x1b[1;31m"}


class _ErrorFormatter(logging.Formatter):
    """``TIME LEVEL message``; the level coloured on a terminal."""

    def __init__(self, colors: bool) -> None:
        super().__init__("%(asctime)s %(levelname)-7s %(message)s")
        self.colors = colors

    def formatMessage(self, record: logging.LogRecord) -> str:
        if not self.colors:
            return super().formatMessage(record)
        color = _LEVEL_COLORS.get(record.levelno, "")
        padded = f"{record.levelname:<7}"
        line = super().formatMessage(record)
        return line.replace(padded, f"{color}{padded}{_RESET}", 1) if color else line


class _AccessFormatter(logging.Formatter):
    """``TIME line``; on a terminal the status code of the default line is coloured."""

    def __init__(self, colors: bool) -> None:
        super().__init__("%(asctime)s %(message)s")
        self.colors = colors

    def formatMessage(self, record: logging.LogRecord) -> str:
        line = super().formatMessage(record)
        status = getattr(record, "status_code", None)
        if not self.colors or not isinstance(status, int):
            return line
        color = _STATUS_COLORS.get(status // 100, "")
        marker = f'" {status} '
        return line.replace(marker, f'" {color}{status}{_RESET} ', 1) if color else line


# ---------------------------------------------------------------- uvicorn's loggers

#: uvicorn's logger that stands for each of asgiri's in a uvicorn --log-config.
_UVICORN = {"asgiri.error": "uvicorn.error", "asgiri.access": "uvicorn.access"}
#: uvicorn's access message; its AccessFormatter unpacks exactly these five arguments.
_UVICORN_ACCESS = '%s - "%s %s HTTP/%s" %d'


def _bridge_to_uvicorn(configured: set[str]) -> None:
    """Send asgiri's records to uvicorn's loggers when only those are configured."""
    for ours, theirs in _UVICORN.items():
        if ours in configured or not ({theirs, "uvicorn"} & configured):
            continue
        log = logging.getLogger(ours)
        log.handlers = [_ToUvicorn(theirs)]
        log.propagate = False


class _ToUvicorn(logging.Handler):
    """Re-issues a record on a uvicorn logger, shaped as uvicorn's own.

    An access record gets uvicorn's message and its five arguments (client
    address, method, path with query, HTTP version, status), which is what
    ``uvicorn.logging.AccessFormatter`` unpacks; every record keeps asgiri's
    fields too.  The uvicorn logger's level and handlers decide the rest.
    """

    def __init__(self, target: str) -> None:
        super().__init__()
        self.target = logging.getLogger(target)

    def emit(self, record: logging.LogRecord) -> None:
        target = self.target
        if not target.isEnabledFor(record.levelno):
            return
        fields = dict(record.__dict__)
        fields.pop("message", None)
        fields["name"] = target.name
        scope = fields.get("scope")
        if target.name == "uvicorn.access" and isinstance(scope, dict):
            path = scope.get("raw_path", b"").decode("latin-1")
            if scope.get("query_string"):
                path += "?" + scope["query_string"].decode("latin-1")
            fields["msg"] = _UVICORN_ACCESS
            fields["args"] = (
                fields.get("client_addr", "-"),
                scope.get("method", "-"),
                path,
                scope.get("http_version", "-"),
                fields.get("status_code", 0),
            )
        target.handle(logging.makeLogRecord(fields))
