"""The checks options share, each raising a ValueError that names the option as spelled.

Every group validates its own fields with these (ranges, durations,
choices, file modes) and parses what has a syntax of its own (``--bind``
addresses, ``--header`` lines, ``HOST:PORT``), so the CLI, a config file
and ``Server(**options)`` refuse a value with the same sentence.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Mapping
from typing import Any

__all__ = [
    "bind_scheme",
    "coerce_choice",
    "int_range",
    "octal_mode",
    "parse_bind",
    "parse_header",
    "parse_host_port",
    "positive",
]


def coerce_choice(name: str, value: Any, choices: Mapping[str, Any], enum_cls: type[Any]) -> Any:
    if isinstance(value, enum_cls):
        return value
    if isinstance(value, str) and value.lower() in choices:
        return choices[value.lower()]
    if isinstance(value, str):
        with contextlib.suppress(ValueError):
            return enum_cls(value)
    allowed = ", ".join(sorted(choices))
    raise ValueError(f"{name} must be one of {allowed}, got {value!r}")


def int_range(name: str, value: Any, low: int, high: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"{name} must be an integer, got {value!r}")
    if not low <= value <= high:
        raise ValueError(f"{name} must be between {low} and {high}, got {value}")


def positive(name: str, value: Any, *, allow_zero: bool = False) -> None:
    """Every option in seconds comes through here, from the CLI, a file or ``Server()``.

    ``nan`` and ``inf`` parse as floats everywhere (argparse, TOML, Python) but
    are no duration: NaN fails every comparison, so it slipped through the
    range check and broke timers at run time.  No option gives infinity a
    meaning ("never" is spelled otherwise where it exists, as
    ``ws_ping_interval=0``), so both are refused.
    """
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"{name} must be a number of seconds, got {value!r}")
    if not math.isfinite(value):
        raise ValueError(f"{name} must be a finite number of seconds, got {value}")
    if value < 0 or (value == 0 and not allow_zero):
        raise ValueError(f"{name} must be {'>= 0' if allow_zero else '> 0'}, got {value}")


def octal_mode(name: str, value: Any) -> int:
    """``"660"``, ``"0o660"``, ``"0660"`` or the number itself -> a file mode, 0 to 0o777."""
    if isinstance(value, str):
        text = value.strip().lower().removeprefix("0o")
        if not text or any(c not in "01234567" for c in text):
            raise ValueError(f"{name} must be an octal file mode such as 660, got {value!r}")
        value = int(text, 8)
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 0o777:
        raise ValueError(f"{name} must be an octal file mode from 000 to 777, got {value!r}")
    return value


def bind_scheme(address: str) -> tuple[str | None, str]:
    """``"https://0.0.0.0:8443"`` -> ("https", "0.0.0.0:8443"); no scheme -> (None, address).

    The scheme says whether a listener speaks TLS; without one it does when a
    certificate is configured.  A trailing ``/`` after the scheme form is allowed.
    """
    for scheme in ("https", "http"):
        prefix = scheme + "://"
        if address[: len(prefix)].lower() == prefix:
            rest = address[len(prefix) :]
            return scheme, rest[:-1] if rest.endswith("/") and ":" in rest else rest
    return None, address


def parse_bind(address: str) -> tuple[str, str | int, int | None]:
    """``--bind`` forms -> ("tcp", host, port), ("unix", path, None) or ("fd", n, None).

    An ``http://`` / ``https://`` in front is allowed (see :func:`bind_scheme`).
    """
    scheme, address = bind_scheme(address)
    if scheme is not None and ":" not in address:
        raise ValueError(f"binds entry '{scheme}://{address}' needs a port: {scheme}://HOST:PORT")
    if address.startswith("unix:"):
        path = address[5:]
        if not path:
            raise ValueError(f"binds entry {address!r} needs a path after 'unix:'")
        return ("unix", path, None)
    if address.startswith("fd://"):
        fd = address[5:]
        if not fd.isdigit():
            raise ValueError(f"binds entry {address!r}: fd:// needs a file descriptor number")
        return ("fd", int(fd), None)
    host, sep, port = address.rpartition(":")
    if not sep or not port.isdigit() or int(port) > 65535:
        raise ValueError(f"binds entry {address!r} is not HOST:PORT, unix:PATH or fd://N")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    elif ":" in host:
        raise ValueError(f"binds entry {address!r}: write an IPv6 address as [ADDRESS]:PORT")
    return ("tcp", host or "0.0.0.0", int(port))


_TOKEN_CHARS = frozenset(
    "!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
)
#: Headers that frame the message or the connection: the protocol code owns them.
_FRAMING_HEADERS = frozenset(
    ("content-length", "transfer-encoding", "connection", "keep-alive", "upgrade", "te", "trailer")
)


def parse_header(text: str) -> tuple[str, str]:
    """``--header`` ``"NAME:VALUE"`` -> (NAME, VALUE); ValueError says what is wrong."""
    name, sep, value = text.partition(":")
    name, value = name.strip(), value.strip()
    if not sep or not name:
        raise ValueError(f"headers entry {text!r} is not NAME:VALUE")
    if not set(name) <= _TOKEN_CHARS:
        raise ValueError(f"headers entry {text!r}: {name!r} is not a valid header name")
    if name.lower() in _FRAMING_HEADERS:
        raise ValueError(
            f"headers entry {text!r}: {name.lower()} is set by the server for each response"
        )
    if any(c in value for c in "\r\n\0") or not value.isprintable() or not _latin1(value):
        raise ValueError(f"headers entry {text!r}: the value must be printable latin-1 text")
    return name, value


def _latin1(text: str) -> bool:
    try:
        text.encode("latin-1")
    except UnicodeEncodeError:
        return False
    return True


def parse_host_port(name: str, value: Any) -> tuple[str, int]:
    """``"127.0.0.1:9100"`` / ``"[::1]:9100"`` -> (host, port); ValueError names ``name``."""
    if isinstance(value, str):
        host, sep, port = value.rpartition(":")
        if host.startswith("[") and host.endswith("]"):
            host = host[1:-1]
        if sep and host and port.isdigit() and 0 <= int(port) <= 65535:
            return host, int(port)
    raise ValueError(f"{name} must be HOST:PORT, got {value!r}")
