"""State shared by every connection of one server.

Connections read their settings from here instead of carrying copies, and
register themselves so that graceful shutdown can reach them.  The Date and
Server headers are rendered once per second, not once per response.
"""

from __future__ import annotations

import asyncio
import gc
import time
import weakref
from email.utils import formatdate
from typing import Any, Protocol

from ..asgi.access_log import AccessLog, Exchange
from ..asgi.http_stream import HeadFlush
from ..asgi.types import ASGIApp
from ..config import Config, HttpProtocolVersion, parse_header
from ..protocol.events import Headers
from ..protocol.h1 import simple_response
from ..protocol.h2_common import H2Limits
from ..protocol.proxy_headers import TrustedProxies

#: How often a drain looks for failed TLS handshakes (see ServerContext._probe_handshakes).
HANDSHAKE_PROBE = 0.5


class Connection(Protocol):
    """What shutdown needs from any connection, whatever its protocol."""

    def shutdown(self) -> None:
        """Finish what was accepted, then close."""

    def abort(self) -> None:
        """Close now (the graceful timeout ran out)."""


class ServerContext:
    """Per-server state; one instance, shared by all connections."""

    def __init__(
        self,
        config: Config,
        app: ASGIApp,
        loop: asyncio.AbstractEventLoop,
        *,
        forwarded_allow_ips: str | None,
    ) -> None:
        """``forwarded_allow_ips``: the trusted proxies in effect (``ProxyConfig.allow_ips``,
        which the server reads from the environment as it starts); None trusts none."""
        self.config = config
        self.app = app
        self.loop = loop
        #: Response heads held back until the end of a loop iteration, for every stream.
        self.head_flush = HeadFlush(loop)
        self.state: dict[str, Any] | None = None
        self.connections: set[Connection] = set()
        self.tasks: set[asyncio.Task[None]] = set()
        #: TLS connections accepted whose handshake has not finished: not yet in
        #: ``connections``, but a drain must wait for them like for the others.
        self.handshakes = 0
        #: Handshakes of :meth:`track_handshake_task`, cancelled by :meth:`abort_handshakes`.
        self.handshake_tasks: set[asyncio.Task[Any]] = set()
        self.shutting_down = False
        #: The drain is a rolling restart (SIGHUP, worker recycling): WebSockets
        #: are closed with 1012 (service restart) instead of 1001 (going away).
        self.restarting = False
        self.active_requests = 0
        self.total_requests = 0
        limits = config.limits
        self.limit_concurrency = limits.limit_concurrency
        self.limit_max_requests = limits.limit_max_requests
        access = config.access
        self._access: AccessLog | None = (
            AccessLog(access.access_log_format, as_json=access.access_log_json)
            if config.logging.access_log
            else None
        )
        #: What every exchange calls once it is complete, an app's response
        #: (``HTTPStream.on_complete``) or the server's own: the access log, the
        #: metrics, both, or None (then nothing is called).
        self.exchange_done: Any = self._access
        #: The Prometheus metrics (server.metrics.Metrics) or None when off;
        #: every hook on a hot path is behind an ``is not None`` check.
        self.metrics: Any = None
        self.root_path = config.app_options.root_path
        self.keep_alive_timeout = config.timeouts.timeout_keep_alive
        self.header_timeout = config.timeouts.timeout_request_header
        self.write_timeout = config.timeouts.timeout_write
        self.on_max_requests: Any = None
        #: Per-server TLS facts for the ``tls`` scope extension (None in cleartext).
        self.tls_info: Any = None
        self._drained: asyncio.Future[None] | None = None
        custom = [parse_header(header) for header in config.http.headers]
        custom_names = {name.lower() for name, _ in custom}
        #: ``--header server:...`` replaces ours, as ``--header date:...`` does the date.
        server_header = config.http.server_header and "server" not in custom_names
        static = []
        if server_header:
            static.append(b"server: asgiri\r\n")
        static += [f"{name}: {value}\r\n".encode("latin-1") for name, value in custom]
        #: Extra pre-encoded header lines (Alt-Svc once HTTP/3 is on).
        self.extra_header_lines: list[bytes] = []
        self.extra_header_pairs: list[tuple[bytes, bytes]] = []
        self._extra_length = 0
        self._static = b"".join(static)
        self._static_list: list[tuple[bytes, bytes]] = (
            [(b"server", b"asgiri")] if server_header else []
        ) + [(name.lower().encode("latin-1"), value.encode("latin-1")) for name, value in custom]
        self._list_stamp = -1
        self._header_list = self._static_list
        mode = config.http.http_version
        #: Which TCP protocols this server speaks.
        self.h1_enabled = mode in (HttpProtocolVersion.AUTO, HttpProtocolVersion.HTTP_1_1)
        self.h2_enabled = mode in (HttpProtocolVersion.AUTO, HttpProtocolVersion.HTTP_2)
        #: WebSocket upgrades are served (``--ws`` is not none).
        self.ws_enabled = config.websocket.enabled
        h2c = config.http2
        self.h2_limits = H2Limits(
            max_concurrent_streams=h2c.h2_max_concurrent_streams,
            initial_window_size=h2c.h2_initial_window_size,
            max_frame_size=h2c.h2_max_frame_size,
            max_header_list_size=h2c.h2_max_header_list_size,
            max_inbound_frame_size=h2c.h2_max_inbound_frame_size,
            enable_connect_protocol=self.ws_enabled,
            max_body=limits.limit_request_body,
            max_header_size=limits.limit_request_header_size,
            max_fields=limits.limit_request_fields,
        )
        proxy = config.proxy
        #: ``--forwarded-allow-ips`` when ``--proxy-headers`` is on, else None.
        self.trusted_proxies: TrustedProxies | None = None
        if proxy.proxy_headers and forwarded_allow_ips:
            self.trusted_proxies = TrustedProxies(forwarded_allow_ips)
        self._date_enabled = config.http.date_header and "date" not in custom_names
        self._stamp = -1
        self._header_block = self._static
        self._cleartext_block = self._static

    def default_headers(self) -> bytes:
        """The ``date``/``server``/``alt-svc`` block every response starts with."""
        if self._date_enabled:
            now = int(time.time())
            if now != self._stamp:
                self._refresh_blocks(now)
            return self._header_block
        return self._static + b"".join(self.extra_header_lines)

    def cleartext_headers(self) -> bytes:
        """:meth:`default_headers` for a cleartext connection: without Alt-Svc.

        HTTP/3 is TLS only, so an ``http://`` origin has no alternative to
        advertise (browsers ignore one).  The extra lines end the block.
        """
        if self._date_enabled:
            now = int(time.time())
            if now != self._stamp:
                self._refresh_blocks(now)
            return self._cleartext_block
        block = self.default_headers()
        extra = self._extra_length
        return block[:-extra] if extra else block

    def _refresh_blocks(self, now: int) -> None:
        """Both header blocks for the second ``now``: built once a second, not per response."""
        self._stamp = now
        date = formatdate(now, usegmt=True).encode("ascii")
        block = b"date: " + date + b"\r\n" + self._static + b"".join(self.extra_header_lines)
        self._header_block = block
        extra = self._extra_length
        self._cleartext_block = block[:-extra] if extra else block

    def default_header_list(self) -> list[tuple[bytes, bytes]]:
        """The same defaults as :meth:`default_headers`, as pairs (HTTP/2, HTTP/3)."""
        if self._date_enabled:
            now = int(time.time())
            if now != self._list_stamp:
                self._list_stamp = now
                date = formatdate(now, usegmt=True).encode("ascii")
                self._header_list = [(b"date", date), *self._static_list, *self.extra_header_pairs]
            return self._header_list
        return [*self._static_list, *self.extra_header_pairs]

    def advertise_h3(self, port: int, max_age: int) -> None:
        """Point TCP clients at HTTP/3 on UDP ``port`` (RFC 7838 Alt-Svc)."""
        value = b'h3=":%d"; ma=%d' % (port, max_age)
        self.extra_header_lines = [b"alt-svc: " + value + b"\r\n"]
        self.extra_header_pairs = [(b"alt-svc", value)]
        self._extra_length = len(self.extra_header_lines[0])
        self._stamp = self._list_stamp = -1  # rebuild the cached blocks

    def response_header_list(
        self, headers: list[tuple[bytes, bytes]], alt_svc: bool = True
    ) -> list[tuple[bytes, bytes]]:
        """Defaults + the app's headers (HTTP/2, HTTP/3); an app's own Alt-Svc wins.

        ``alt_svc=False`` (HTTP/3 itself) leaves the server's advertisement out.
        """
        defaults = self.default_header_list()
        if self.extra_header_pairs:
            if not alt_svc:
                return [pair for pair in defaults if pair[0] != b"alt-svc"] + headers
            for name, _ in headers:
                if name.lower() == b"alt-svc":
                    return [pair for pair in defaults if pair[0] != b"alt-svc"] + headers
        return defaults + headers

    @staticmethod
    def answer(status: int, reason: str, extra: Headers | None = None) -> tuple[Headers, bytes]:
        """A response the server gives in the app's place: its fields and body.

        The same on every protocol (400, 413, 431, 503...); the default
        fields (date, server) are added by each protocol's framing.
        """
        body = b"%d %b\n" % (status, reason.encode("latin-1", "replace"))
        fields = [
            (b"content-type", b"text/plain; charset=utf-8"),
            (b"content-length", b"%d" % len(body)),
        ]
        if extra:
            fields.extend(extra)
        return fields, body

    def h1_answer(
        self, status: int, reason: str, headers: bytes, extra: Headers | None = None
    ) -> tuple[bytes, int]:
        """:meth:`answer` as HTTP/1.1 bytes (the connection closes after it), and its body size.

        ``headers`` is the connection's default block (:meth:`default_headers`,
        or :meth:`cleartext_headers` without Alt-Svc).
        """
        _, body = self.answer(status, reason)
        if extra:
            headers += b"".join(b"%b: %b\r\n" % pair for pair in extra)
        return simple_response(status, body, headers), len(body)

    def log_exchange(self, exchange: Exchange) -> None:
        """The access-log line (and metrics) of an exchange the app did not complete itself."""
        if self.exchange_done is not None:
            self.exchange_done(exchange)

    def enable_metrics(self, metrics: Any) -> None:
        """Count into ``metrics`` from now on (called before any connection exists)."""
        self.metrics = metrics
        self.connections = metrics.connection_set()
        access = self._access
        if access is None:
            self.exchange_done = metrics.response_complete
        else:
            observe = metrics.response_complete

            def both(stream: Any) -> None:
                observe(stream)
                access(stream)

            self.exchange_done = both

    def forwarded_for(self, client: tuple[str, int] | None) -> TrustedProxies | None:
        """What ``http_scope(forwarded=...)`` gets for a connection from ``client``.

        Decided once per connection, so that requests from untrusted peers,
        or with ``--no-proxy-headers``, pay nothing for the feature.
        """
        proxies = self.trusted_proxies
        if proxies is None or not proxies.trusts(client[0] if client else None):
            return None
        return proxies

    def request_started(self) -> bool:
        """Count a request in; False when ``--limit-concurrency`` says to refuse it."""
        if self.limit_concurrency is not None and self.active_requests >= self.limit_concurrency:
            return False
        self.active_requests += 1
        self.total_requests += 1
        if self.metrics is not None:
            self.metrics.in_flight.inc()
        if (
            self.limit_max_requests is not None
            and self.total_requests >= self.limit_max_requests
            and self.on_max_requests is not None
        ):
            callback, self.on_max_requests = self.on_max_requests, None
            self.loop.call_soon(callback)
        return True

    def request_finished(self) -> None:
        self.active_requests -= 1
        if self.metrics is not None:
            self.metrics.in_flight.dec()

    def track_handshake(self, protocol: object) -> weakref.finalize[Any, Any]:
        """Count ``protocol``'s TLS handshake until it is called or ``protocol`` is dropped.

        asyncio never tells the protocol of a failed handshake; the protocol
        object being freed is the only sign, hence the finalizer.
        """
        self.handshakes += 1
        return weakref.finalize(protocol, self._handshake_ended)

    def _handshake_ended(self) -> None:
        self.handshakes -= 1
        self.check_drained()

    def track_handshake_task(self, task: asyncio.Task[Any]) -> None:
        """Count a TLS handshake run as a task (PROXY protocol listeners) until it ends.

        A drain waits for it like for a connection; :meth:`abort_handshakes`
        cancels it when the graceful timeout runs out.
        """
        self.handshakes += 1
        self.handshake_tasks.add(task)
        task.add_done_callback(self._handshake_task_ended)

    def _handshake_task_ended(self, task: asyncio.Task[Any]) -> None:
        self.handshake_tasks.discard(task)
        self._handshake_ended()

    def abort_handshakes(self) -> None:
        for task in list(self.handshake_tasks):
            task.cancel()

    def drained(self) -> asyncio.Future[None]:
        """A future that completes once no connection and no app task is left."""
        if self._drained is None:
            self._drained = self.loop.create_future()
            self.loop.call_soon(self._probe_handshakes)
        self.check_drained()
        return self._drained

    def _probe_handshakes(self) -> None:
        """While draining, find the TLS handshakes that have failed.

        asyncio never tells a protocol that its handshake failed: the protocol
        object becoming garbage is the only sign (see :meth:`track_handshake`),
        and it can sit in a reference cycle with its transport until the
        collector runs, which an idle draining process may not do for a long
        time.  A handshake still in progress is reachable and stays counted.
        """
        waiter = self._drained
        if waiter is None or waiter.done() or not self.handshakes:
            return
        gc.collect()
        self.check_drained()
        if not waiter.done():
            self.loop.call_later(HANDSHAKE_PROBE, self._probe_handshakes)

    def check_drained(self) -> None:
        """Called when a connection or a task ends; cheap unless draining."""
        waiter = self._drained
        if (
            waiter is not None
            and not self.connections
            and not self.tasks
            and not self.handshakes
            and not waiter.done()
        ):
            waiter.set_result(None)
