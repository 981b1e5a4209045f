"""The access log: one line per completed response, in a format the user chose.

The format (its language is :mod:`asgiri.access_format`, checked when the
configuration is built) is compiled once, when the server starts, into a
``%``-template and a tuple of small getters, so a line costs one call per atom
and one string formatting.  The default format keeps its own hand-written
path, the cheapest there is.

In JSON mode each line is one JSON object whose keys are the atoms of the
format (literal text is dropped), with numbers as numbers.

A line is written for every *exchange*: a request the app answered (an
:class:`~asgiri.asgi.http_stream.HTTPStream`), a response the server gave
itself in the app's place (400, 413, 431, 503...) and a WebSocket session,
on every protocol; the last two are :class:`Answered` records.

Atoms (``access_format.ATOM_NAMES``; docs/operations.md lists them):
client, client_host, client_port, method, scheme, path, query, path_query,
protocol (h1, h2, h3), http_version (``HTTP/1.1``), status, bytes, bytes_in,
duration_ms, duration_s, duration_us, time (``[10/Oct/2000:13:55:36 +0000]``),
``header:NAME`` (a request header), ``response_header:NAME`` (a response
header).  A missing value is ``-`` (``null`` in JSON).

A format written for gunicorn, hypercorn or granian (``%(h)s %(r)s %(s)s``)
is read as the atoms it means, with a warning, rather than printed as it stands.

Every record also carries uvicorn's fields ``client_addr``, ``request_line``
and ``status_code`` (and ``scope``, ``status``, ``bytes``), so logging
configurations written for uvicorn format it unchanged.
"""

from __future__ import annotations

import datetime
import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from ..access_format import DEFAULT_FORMAT, parse_format, translate_percent_format
from ..protocol.events import Headers, Request

__all__ = [
    "ATOMS",
    "DEFAULT_FORMAT",
    "AccessLog",
    "Answered",
    "Exchange",
    "answered_scope",
    "compile_format",
    "translate_percent_format",
]


class Exchange(Protocol):
    """What the access log and the metrics read of one answered request."""

    @property
    def scope(self) -> dict[str, Any]: ...

    @property
    def status(self) -> int: ...

    @property
    def bytes_sent(self) -> int: ...

    @property
    def bytes_received(self) -> int: ...

    @property
    def started_at(self) -> float: ...

    @property
    def response_headers(self) -> Headers: ...


@dataclass(slots=True)
class Answered:
    """An exchange the app did not answer itself: a server response or a WebSocket session."""

    scope: dict[str, Any]
    status: int
    bytes_sent: int = 0
    bytes_received: int = 0
    started_at: float = field(default_factory=time.perf_counter)
    response_headers: Headers = field(default_factory=list)


def answered_scope(
    request: Request | None,
    http_version: str,
    scheme: str,
    client: tuple[str, int] | None,
    method: str | None = None,
) -> dict[str, Any]:
    """The little of a scope a log line needs, for a request no app saw.

    ``request`` is None when its head could not be parsed; its method and
    path are then logged as ``-``.  ``method`` overrides the request's (a
    WebSocket scope has none of its own).
    """
    if request is None:
        return {
            "type": "http",
            "http_version": http_version,
            "method": method or "-",
            "scheme": scheme,
            "raw_path": b"-",
            "query_string": b"",
            "headers": [],
            "client": client,
        }
    return {
        "type": "http",
        "http_version": http_version,
        "method": method or request.method,
        "scheme": scheme,
        "raw_path": request.raw_path,
        "query_string": request.query_string,
        "headers": request.headers,
        "client": client,
    }


access_logger = logging.getLogger("asgiri.access")

#: A getter receives the exchange and the duration in seconds.
Getter = Callable[[Exchange, float], Any]

_PROTOCOLS = {"1.0": "h1", "1.1": "h1", "2": "h2", "3": "h3"}


def _client(stream: Exchange, _: float) -> str:
    client = stream.scope.get("client")
    return f"{client[0]}:{client[1]}" if client else "-"


def _client_host(stream: Exchange, _: float) -> str | None:
    client = stream.scope.get("client")
    return client[0] if client else None


def _client_port(stream: Exchange, _: float) -> int | None:
    client = stream.scope.get("client")
    return client[1] if client else None


def _path(stream: Exchange, _: float) -> str:
    return str(stream.scope["raw_path"].decode("latin-1"))


def _query(stream: Exchange, _: float) -> str:
    return str(stream.scope["query_string"].decode("latin-1"))


def _path_query(stream: Exchange, _: float) -> str:
    scope = stream.scope
    path = str(scope["raw_path"].decode("latin-1"))
    if scope["query_string"]:
        path += "?" + scope["query_string"].decode("latin-1")
    return path


#: The value of every atom without an argument (``access_format.ATOM_NAMES``), by name.
ATOMS: dict[str, Getter] = {
    "client": _client,
    "client_host": _client_host,
    "client_port": _client_port,
    "method": lambda s, _: s.scope["method"],
    "scheme": lambda s, _: s.scope["scheme"],
    "path": _path,
    "query": _query,
    "path_query": _path_query,
    "protocol": lambda s, _: _PROTOCOLS.get(s.scope["http_version"], "-"),
    "http_version": lambda s, _: "HTTP/" + s.scope["http_version"],
    "status": lambda s, _: s.status,
    "bytes": lambda s, _: s.bytes_sent,
    "bytes_in": lambda s, _: s.bytes_received,
    "duration_ms": lambda _, d: round(d * 1000.0, 1),
    "duration_s": lambda _, d: round(d, 6),
    "duration_us": lambda _, d: int(d * 1_000_000),
    "time": lambda _, __: time.strftime("[%d/%b/%Y:%H:%M:%S %z]"),
}


def _request_header(name: str) -> Getter:
    key = name.lower().encode("latin-1")

    def get(stream: Exchange, _: float) -> str | None:
        values = [v for n, v in stream.scope["headers"] if n == key]
        return b", ".join(values).decode("latin-1") if values else None

    return get


def _response_header(name: str) -> Getter:
    key = name.lower().encode("latin-1")

    def get(stream: Exchange, _: float) -> str | None:
        values = [v for n, v in stream.response_headers if n.lower() == key]
        return b", ".join(values).decode("latin-1") if values else None

    return get


def compile_format(fmt: str) -> tuple[str, list[tuple[str, Getter]]]:
    """``fmt`` as a ``%``-template and its (key, getter) pairs; ValueError names a bad atom.

    The key is the atom's name (``header:user-agent`` for a header), as JSON
    lines name it.
    """
    template, atoms = parse_format(fmt)
    getters: list[tuple[str, Getter]] = []
    for name, arg in atoms:
        if arg is None:
            getters.append((name, ATOMS[name]))
        else:
            getter = _request_header(arg) if name == "header" else _response_header(arg)
            getters.append((f"{name}:{arg.lower()}", getter))
    return template, getters


class AccessLog:
    """Called with each exchange that completed; writes its line."""

    __slots__ = ("_getters", "_json", "_template", "wants_response_headers")

    def __init__(self, fmt: str | None = None, *, as_json: bool = False) -> None:
        self._json = as_json
        translated = translate_percent_format(fmt) if fmt is not None else None
        if translated is not None:
            logging.getLogger("asgiri.error").warning(
                "--access-log-format has %%(...)s placeholders (gunicorn/hypercorn/granian "
                "style); read as %r",
                translated,
            )
        self._template: str | None = None
        self._getters: list[tuple[str, Getter]] = []
        if fmt is not None or as_json:
            self._template, self._getters = compile_format(fmt or DEFAULT_FORMAT)
        self.wants_response_headers = any(
            k.startswith("response_header:") for k, _ in self._getters
        )

    def __call__(self, stream: Exchange) -> None:
        if not access_logger.isEnabledFor(logging.INFO):
            return
        duration = time.perf_counter() - stream.started_at
        scope = stream.scope
        client = scope.get("client")
        addr = f"{client[0]}:{client[1]}" if client else "-"
        path = scope["raw_path"].decode("latin-1")
        if scope["query_string"]:
            path += "?" + scope["query_string"].decode("latin-1")
        extra = {
            "scope": scope,
            "status": stream.status,
            "bytes": stream.bytes_sent,
            # uvicorn's record fields, for logging configurations written for it.
            "client_addr": addr,
            "request_line": f"{scope['method']} {path} HTTP/{scope['http_version']}",
            "status_code": stream.status,
        }
        template = self._template
        if template is None:
            access_logger.info(
                '%s - "%s %s HTTP/%s" %d %d %.1fms',
                addr,
                scope["method"],
                path,
                scope["http_version"],
                stream.status,
                stream.bytes_sent,
                duration * 1000.0,
                extra=extra,
            )
        elif self._json:
            record: dict[str, Any] = {
                "time": datetime.datetime.now(datetime.timezone.utc).isoformat(
                    timespec="milliseconds"
                )
            }
            for key, getter in self._getters:
                record[key] = getter(stream, duration)
            access_logger.info("%s", json.dumps(record, ensure_ascii=False), extra=extra)
        else:
            values = []
            for _, getter in self._getters:
                value = getter(stream, duration)
                values.append("-" if value is None else value)
            access_logger.info("%s", template % tuple(values), extra=extra)
