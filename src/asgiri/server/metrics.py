"""Prometheus metrics (``--metrics-bind HOST:PORT``), off by default.

When off, nothing here is imported and the hot paths pay one ``is None``
check at most.  When on, the counting points are:

* the end of every response (``HTTPStream`` calls ``ctx.exchange_done``, which
  then includes :meth:`Metrics.response_complete`): requests by protocol and
  status, the duration histogram, request and response body bytes;
* ``ServerContext.request_started/finished``: requests in flight;
* ``ServerContext.connections``, which becomes a :class:`_CountingSet`: every
  connection registers there anyway, so open connections by protocol are
  counted without a hook in any protocol;
* ``WSBridge``: WebSocket sessions accepted and open.

The endpoint is its own listener, served by asgiri's HTTP/1.1 code with a
tiny app, so it never shares a port, a concurrency limit or an access log
with the application.

Several processes: when ``PROMETHEUS_MULTIPROC_DIR`` is set before
``prometheus_client`` is first imported, every process writes its values to
files there and the endpoint adds them up (``MultiProcessCollector``);
gauges use the ``livesum`` mode, so a process that is gone stops counting.
A supervisor of workers calls :func:`prepare_multiprocess_dir` before it
starts them, serves the endpoint itself with :func:`start_metrics_listener`
and :func:`render_all_processes`, starts the workers with
``metrics_listen=False`` (they count, the supervisor listens) and calls
:func:`worker_exited` for each that ends.
"""

from __future__ import annotations

import asyncio
import os
import tempfile
import time
from collections.abc import Callable
from typing import Any

from ..config import Config, parse_host_port
from ..errors import BindError, StartupError

__all__ = [
    "Metrics",
    "prepare_multiprocess_dir",
    "render_all_processes",
    "start_metrics_listener",
    "worker_exited",
]

_ENV = "PROMETHEUS_MULTIPROC_DIR"
_PROTOCOLS = {"1.0": "h1", "1.1": "h1", "2": "h2", "3": "h3"}
#: Request durations: sub-millisecond answers up to slow uploads.
_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)


def _client() -> Any:
    try:
        import prometheus_client
    except ImportError:
        raise StartupError(
            "--metrics-bind needs prometheus_client: pip install 'asgiri[metrics]'"
        ) from None
    return prometheus_client


def multiprocess_dir() -> str | None:
    return os.environ.get(_ENV) or None


def prepare_multiprocess_dir() -> str:
    """For a supervisor: a fresh directory workers write their metrics to.

    Set in the environment so that workers (forked or spawned) inherit it
    before they import ``prometheus_client``.
    """
    path = os.environ.get(_ENV)
    if not path:
        path = tempfile.mkdtemp(prefix="asgiri-metrics-")
        os.environ[_ENV] = path
    return path


def worker_exited(pid: int) -> None:
    """For a supervisor: drop the live gauges of a worker that is gone."""
    if multiprocess_dir() is not None:
        from prometheus_client import multiprocess

        mp: Any = multiprocess  # its functions are untyped
        mp.mark_process_dead(pid)


class _CountingSet(set[Any]):
    """``ServerContext.connections`` that also keeps the open-connection gauges."""

    def __init__(self, metrics: Metrics) -> None:
        super().__init__()
        self._metrics = metrics

    def add(self, conn: Any) -> None:
        if conn not in self:
            super().add(conn)
            protocol = getattr(conn, "metrics_protocol", "other")
            self._metrics.connection_opened(protocol)

    def discard(self, conn: Any) -> None:
        if conn in self:
            super().discard(conn)
            self._metrics.connections_open(getattr(conn, "metrics_protocol", "other")).dec()


class Metrics:
    """The metric families of one server process."""

    def __init__(self) -> None:
        prom = _client()
        self.multiprocess = multiprocess_dir() is not None
        self.registry = prom.CollectorRegistry()
        registry = self.registry
        self._requests = prom.Counter(
            "asgiri_requests",
            "HTTP responses completed, by protocol (h1, h2, h3) and status code.",
            ["protocol", "status"],
            registry=registry,
        )
        self._duration = prom.Histogram(
            "asgiri_request_duration_seconds",
            "Time from the request head to the end of the response.",
            ["protocol"],
            buckets=_BUCKETS,
            registry=registry,
        )
        self._bytes_in = prom.Counter(
            "asgiri_request_body_bytes",
            "Request body bytes received.",
            ["protocol"],
            registry=registry,
        )
        self._bytes_out = prom.Counter(
            "asgiri_response_body_bytes",
            "Response body bytes sent.",
            ["protocol"],
            registry=registry,
        )
        self.in_flight = prom.Gauge(
            "asgiri_requests_in_flight",
            "HTTP requests being served.",
            registry=registry,
            multiprocess_mode="livesum",
        )
        self._connections = prom.Gauge(
            "asgiri_connections_open",
            "Open client connections, by protocol (h1, h2, websocket).",
            ["protocol"],
            registry=registry,
            multiprocess_mode="livesum",
        )
        self._connections_total = prom.Counter(
            "asgiri_connections",
            "Client connections accepted or switched to a protocol, by protocol.",
            ["protocol"],
            registry=registry,
        )
        self._ws_total = prom.Counter(
            "asgiri_websocket_sessions",
            "WebSocket sessions accepted.",
            registry=registry,
        )
        self._ws_open = prom.Gauge(
            "asgiri_websocket_sessions_open",
            "WebSocket sessions open now.",
            registry=registry,
            multiprocess_mode="livesum",
        )
        # Label children are looked up once, not per request.
        self._children: dict[tuple[str, int], Any] = {}
        self._per_protocol: dict[str, tuple[Any, Any, Any]] = {}
        self._conn_children: dict[str, tuple[Any, Any]] = {}

    # ------------------------------------------------------------ counting

    def response_complete(self, stream: Any) -> None:
        protocol = _PROTOCOLS.get(stream.scope["http_version"], "other")
        status = stream.status
        key = (protocol, status)
        requests = self._children.get(key)
        if requests is None:
            requests = self._children[key] = self._requests.labels(protocol, str(status))
        requests.inc()
        per = self._per_protocol.get(protocol)
        if per is None:
            per = self._per_protocol[protocol] = (
                self._duration.labels(protocol),
                self._bytes_in.labels(protocol),
                self._bytes_out.labels(protocol),
            )
        per[0].observe(time.perf_counter() - stream.started_at)
        if stream.bytes_received:
            per[1].inc(stream.bytes_received)
        if stream.bytes_sent:
            per[2].inc(stream.bytes_sent)

    def connection_set(self) -> set[Any]:
        return _CountingSet(self)

    def connections_open(self, protocol: str) -> Any:
        children = self._conn_children.get(protocol)
        if children is None:
            children = self._conn_children[protocol] = (
                self._connections.labels(protocol),
                self._connections_total.labels(protocol),
            )
        return children[0]

    def connection_opened(self, protocol: str) -> None:
        self.connections_open(protocol).inc()
        self._conn_children[protocol][1].inc()

    def websocket_opened(self) -> None:
        self._ws_total.inc()
        self._ws_open.inc()

    def websocket_closed(self) -> None:
        self._ws_open.dec()

    # ------------------------------------------------------------ exposition

    def render(self) -> tuple[bytes, str]:
        """The scrape body and its content type (every process's values in multiprocess mode)."""
        if self.multiprocess:
            return render_all_processes()
        prom = _client()
        return prom.generate_latest(self.registry), prom.CONTENT_TYPE_LATEST


def render_all_processes() -> tuple[bytes, str]:
    """The sum of every process writing to ``PROMETHEUS_MULTIPROC_DIR`` (for a supervisor)."""
    prom = _client()
    from prometheus_client import multiprocess

    mp: Any = multiprocess  # its functions are untyped
    registry = prom.CollectorRegistry()
    mp.MultiProcessCollector(registry)
    return prom.generate_latest(registry), prom.CONTENT_TYPE_LATEST


class MetricsListener:
    """The metrics endpoint: its own socket, served by asgiri's HTTP/1.1 code."""

    def __init__(self, server: asyncio.base_events.Server, ctx: Any) -> None:
        self._server = server
        self._ctx = ctx

    @property
    def port(self) -> int:
        return int(self._server.sockets[0].getsockname()[1])

    def close(self) -> None:
        self._server.close()
        for conn in list(self._ctx.connections):
            conn.abort()


async def start_metrics_listener(
    loop: asyncio.AbstractEventLoop, bind: str, render: Callable[[], tuple[bytes, str]]
) -> MetricsListener:
    """Listen on ``bind`` (HOST:PORT) and answer ``GET /metrics`` with ``render()``.

    A single server passes ``Metrics.render``; a supervisor of workers passes
    :func:`render_all_processes` and starts its workers with
    ``metrics_listen=False``, so that they count without binding the port.
    """
    from .context import ServerContext
    from .h1 import H1Protocol

    host, port = parse_host_port("metrics_bind", bind)

    async def app(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        if scope["path"] not in ("/metrics", "/"):
            status, body, ctype = 404, b"Not Found: metrics are at /metrics\n", "text/plain"
        else:
            # Rendering reads every worker's files in multiprocess mode: off the loop.
            body, ctype = await loop.run_in_executor(None, render)
            status = 200
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [(b"content-type", ctype.encode("latin-1"))],
            }
        )
        await send({"type": "http.response.body", "body": body})

    config = Config.from_options(
        app, host=host, port=port, http_version="1.1", access_log=False, lifespan="off"
    )
    ctx = ServerContext(config, app, loop, forwarded_allow_ips=None)  # no client is trusted
    try:
        server = await loop.create_server(lambda: H1Protocol(ctx), host, port)
    except OSError as exc:
        raise BindError(f"cannot bind --metrics-bind {bind}: {exc.strerror}") from None
    return MetricsListener(server, ctx)
