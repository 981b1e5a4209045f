"""Logging set-up: the ``asgiri.error`` and ``asgiri.access`` loggers.

``--log-config`` takes a dictConfig as JSON or YAML, or an INI fileConfig,
and then replaces the defaults entirely, so deployments own their format.
"""

from __future__ import annotations

import json
import logging
import logging.config
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
    log_level: str, access_log: bool, log_config: str | None, *, access_json: bool = False
) -> None:
    """Install handlers unless the host application already configured ours.

    JSON access lines go out bare (no timestamp prefix), so that each line
    is one JSON document a log shipper can parse; they carry their own time.
    """
    if log_config:
        _load_config(log_config)
    else:
        for name in ("asgiri.error", "asgiri.access"):
            log = logging.getLogger(name)
            if not log.handlers:
                handler = logging.StreamHandler(sys.stderr)
                handler.setFormatter(
                    logging.Formatter("%(asctime)s %(levelname)-7s %(message)s")
                    if name == "asgiri.error"
                    else logging.Formatter(
                        "%(message)s" if access_json else "%(asctime)s %(message)s"
                    )
                )
                log.addHandler(handler)
                log.propagate = False
    level = level_of(log_level)
    logging.getLogger("asgiri.error").setLevel(level)
    access = logging.getLogger("asgiri.access")
    access.setLevel(level if access_log else logging.CRITICAL + 1)


def _load_config(path: str) -> None:
    try:
        if path.endswith(".json"):
            with open(path) as fh:
                logging.config.dictConfig(json.load(fh))
        elif path.endswith((".yaml", ".yml")):
            try:
                import yaml
            except ImportError:
                raise StartupError("--log-config with YAML needs PyYAML installed") from None
            with open(path) as fh:
                config: Any = yaml.safe_load(fh)
            logging.config.dictConfig(config)
        else:
            logging.config.fileConfig(path, disable_existing_loggers=False)
    except StartupError:
        raise
    except Exception as exc:
        raise StartupError(f"invalid --log-config {path!r}: {exc}") from exc
