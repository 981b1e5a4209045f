"""The ``--access-log-format`` language: what a format may say, checked without a request.

A format is a string of literal text and ``{atom}`` placeholders, for example
``{client} "{method} {path}" {status} {duration_ms}ms``; ``{{`` and ``}}`` are
literal braces, and ``{header:NAME}`` / ``{response_header:NAME}`` name a
request or response header.  :func:`parse_format` turns one into a
``%``-template and the atoms it fills in, raising ValueError for anything it
cannot mean, so the configuration refuses a bad format before the server
starts (``config/groups.py``), and the access log
(:mod:`asgiri.asgi.access_log`) gives each atom its value per request.

A format written for gunicorn or hypercorn (``%(h)s %(r)s %(s)s``) or granian
(``%(addr)s %(status)s``) is read as the atoms it means
(:func:`translate_percent_format`); a ``%(…)s`` placeholder with no
counterpart is an error.

:data:`ATOM_NAMES` is the authority on the atoms (docs/operations.md lists them).
"""

from __future__ import annotations

import re
from typing import Final

__all__ = [
    "ARG_ATOMS",
    "ATOM_NAMES",
    "DEFAULT_FORMAT",
    "parse_format",
    "translate_percent_format",
]

#: What the default line looks like, spelled as a format (used by JSON mode
#: and in the documentation; the text mode has a faster path of its own).
DEFAULT_FORMAT: Final = (
    '{client} - "{method} {path_query} {http_version}" {status} {bytes} {duration_ms}ms'
)

#: Every atom without an argument.
ATOM_NAMES: Final = (
    "client",
    "client_host",
    "client_port",
    "method",
    "scheme",
    "path",
    "query",
    "path_query",
    "protocol",
    "http_version",
    "status",
    "bytes",
    "bytes_in",
    "duration_ms",
    "duration_s",
    "duration_us",
    "time",
)

#: Atoms that take an argument: ``{header:user-agent}``.
ARG_ATOMS: Final = ("header", "response_header")

_TOKEN = re.compile(r"\{\{|\}\}|\{([a-z_]+)(?::([^{}]*))?\}|[{}]")


_PERCENT = re.compile(r"%\(([^)]*)\)s|%%")

#: gunicorn's and hypercorn's access-log placeholders (``%(h)s``), and granian's.
_PERCENT_ATOMS = {
    "h": "{client_host}",
    "l": "-",
    "u": "-",
    "t": "{time}",
    "r": "{method} {path_query} {http_version}",
    "m": "{method}",
    "U": "{path}",
    "q": "{query}",
    "H": "{http_version}",
    "s": "{status}",
    "st": "{status}",
    "B": "{bytes}",
    "b": "{bytes}",
    "f": "{header:referer}",
    "a": "{header:user-agent}",
    "T": "{duration_s}",
    "D": "{duration_us}",
    "M": "{duration_ms}",
    "L": "{duration_s}",
    "S": "{scheme}",
    # granian
    "addr": "{client_host}",
    "time": "{time}",
    "dt_ms": "{duration_ms}",
    "status": "{status}",
    "path": "{path}",
    "query_string": "{query}",
    "method": "{method}",
    "scheme": "{scheme}",
    "protocol": "{http_version}",
}


def translate_percent_format(fmt: str) -> str | None:
    """A ``%(…)s`` format of another server as asgiri's ``{atom}`` one; None if it is none.

    ``%({Name}i)s`` and ``%({Name}o)s`` (gunicorn's request and response
    headers) become ``{header:Name}`` and ``{response_header:Name}``; braces
    in the literal text are escaped.  ValueError names a placeholder that
    has no asgiri counterpart.
    """
    if not any(match.group(0) != "%%" for match in _PERCENT.finditer(fmt)):
        return None
    out: list[str] = []
    pos = 0
    for match in _PERCENT.finditer(fmt):
        out.append(fmt[pos : match.start()].replace("{", "{{").replace("}", "}}"))
        pos = match.end()
        name = match.group(1)
        if name is None:
            out.append("%")
            continue
        header = re.fullmatch(r"\{([^{}]+)\}([io])", name)
        if header is not None:
            kind = "header" if header.group(2) == "i" else "response_header"
            out.append(f"{{{kind}:{header.group(1).lower()}}}")
        elif name in _PERCENT_ATOMS:
            out.append(_PERCENT_ATOMS[name])
        else:
            raise ValueError(
                f"access_log_format placeholder %({name})s has no asgiri counterpart; "
                "write the format with {atom} placeholders (see docs/operations.md)"
            )
    out.append(fmt[pos:].replace("{", "{{").replace("}", "}}"))
    return "".join(out)


def parse_format(fmt: str) -> tuple[str, list[tuple[str, str | None]]]:
    """``fmt`` as a ``%``-template and its ``(atom, argument)`` pairs; ValueError names a bad atom.

    A ``%(…)s`` format of another server is translated first.  The argument
    is the header name of ``header`` and ``response_header``, None otherwise.
    """
    translated = translate_percent_format(fmt)
    if translated is not None:
        fmt = translated
    template: list[str] = []
    atoms: list[tuple[str, str | None]] = []
    pos = 0
    for match in _TOKEN.finditer(fmt):
        template.append(fmt[pos : match.start()].replace("%", "%%"))
        pos = match.end()
        token = match.group(0)
        if token in ("{{", "}}"):
            template.append(token[0])
            continue
        name, arg = match.group(1), match.group(2)
        if name is None:
            raise ValueError(f"access_log_format has an unmatched {token!r} (write {token * 2})")
        if name in ARG_ATOMS:
            if not arg:
                raise ValueError(f"access_log_format atom {{{name}:NAME}} needs a header name")
            try:
                arg.encode("latin-1")
            except UnicodeEncodeError:
                raise ValueError(f"access_log_format header name {arg!r} is not latin-1") from None
            atoms.append((name, arg))
        elif name in ATOM_NAMES and arg is None:
            atoms.append((name, None))
        else:
            raise ValueError(f"access_log_format has an unknown atom {match.group(0)!r}")
        template.append("%s")
    template.append(fmt[pos:].replace("%", "%%"))
    return "".join(template), atoms
