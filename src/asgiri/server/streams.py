"""What an HTTP/2 and an HTTP/3 connection share: being the sink of many request streams.

Both protocols carry each request on a stream of its own, send the response
as HEADERS + DATA with flow control per stream, and carry a WebSocket on an
extended CONNECT stream (RFC 8441, RFC 9220).  Everything that follows from
that alone, the :class:`~asgiri.asgi.http_stream.HTTPSink` side of the
request streams, backpressure, stalled-peer timers, starting apps and
WebSockets once a read is handled, is written once here; the connection
classes in :mod:`.h2` and :mod:`.h3` add how their transport is read,
written and timed, and the few wire details that differ.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any, ClassVar

from ..asgi.http_stream import HTTPStream
from ..asgi.scope import http_scope, websocket_scope
from ..protocol.events import Headers, Request
from ..protocol.proxy_headers import TrustedProxies
from ..protocol.ws import HandshakeError, check_connect_handshake, negotiate_extensions
from .context import ServerContext
from .tasks import start_app
from .ws import StreamOutlet, WSBridge

__all__ = ["HIGH_WATER", "StreamSink"]

logger = logging.getLogger("asgiri.error")

#: Response bytes a stream may have waiting (for flow-control credit, or in
#: the transport) before its app is made to wait.
HIGH_WATER = 64 * 1024
_NO_BODY_STATUSES = frozenset({204, 304})


class StreamSink:
    """Base of :class:`~.h2.H2Protocol` and :class:`~.h3.H3Protocol`.

    ``conn`` is the sans-I/O connection (:class:`~asgiri.protocol.h2.H2Connection`
    or :class:`~asgiri.protocol.h3.H3Connection`); both offer the same
    stream-level calls (``responses`` checks, ``send_*``, ``buffered``,
    ``acknowledge``, ``reset``, ``stop_reading``, ``forget``).
    """

    #: The protocol's name in log lines.
    label: ClassVar[str]
    #: Stream error codes: a stream given up (stalled, cancelled) and an app failure.
    cancel_code: ClassVar[int]
    internal_code: ClassVar[int]
    #: Whether responses advertise HTTP/3 (pointless on HTTP/3 itself, and untrue
    #: on a cleartext connection: set per HTTP/2 connection).
    alt_svc: bool = True
    #: Whether ``100 Continue`` is sent (HTTP/3 clients do not wait for it).
    sends_continue: ClassVar[bool] = True
    #: The WebSocket outlet class of this protocol.
    outlet_class: ClassVar[type[StreamOutlet]]

    ctx: ServerContext
    loop: asyncio.AbstractEventLoop
    conn: Any
    client: tuple[str, int] | None
    server: tuple[str, int | None] | None
    scheme: str
    forwarded: TrustedProxies | None

    def _init_streams(self, ctx: ServerContext) -> None:
        self.ctx = ctx
        self.loop = ctx.loop
        self.streams: dict[int, HTTPStream] = {}
        #: WebSockets over extended CONNECT streams, by stream id.
        self.websockets: dict[int, StreamOutlet] = {}
        #: Streams whose response carries no body (HEAD, 204, 304).
        self._no_body: set[int] = set()
        self._waiters: dict[int, list[asyncio.Future[None]]] = {}
        self._stall_timers: dict[int, asyncio.TimerHandle] = {}
        #: Streams opened by the read being handled, started once it is done.
        self._new: list[HTTPStream] = []
        self._new_websockets: list[WSBridge] = []
        #: Body bytes received per stream, kept only under ``--limit-request-body``.
        self._body_sizes: dict[int, int] = {}
        self._in_receive = False
        self._flush_scheduled = False
        #: Whether the transport stopped taking writes (HTTP/2 only).
        self._write_paused = False
        self._closing = False
        self._closed = False

    # ------------------------------------------------------------ hooks

    def _flush(self) -> None:
        raise NotImplementedError

    def _maybe_idle(self) -> None:
        """A stream ended: close a connection that is draining and has nothing left."""
        raise NotImplementedError

    def abort(self) -> None:
        raise NotImplementedError

    def _refuse(self, stream: HTTPStream) -> None:
        """Answer 503 in place of an app that may not start (``--limit-concurrency``)."""
        raise NotImplementedError

    def _refuse_handshake(self, stream_id: int, exc: HandshakeError) -> None:
        raise NotImplementedError

    def _extensions(self) -> dict[str, Any]:
        raise NotImplementedError

    def _update_client(self) -> None:
        """Refresh ``client`` before a scope is built (QUIC peers may move)."""

    def _busy(self) -> None:
        """A stream opened: the connection is no longer idle."""

    # ------------------------------------------------------------ streams

    def _scope(self, build: Callable[..., dict[str, Any]], request: Request, scheme: str) -> Any:
        """An ``http`` or ``websocket`` scope for a request on this connection."""
        ctx = self.ctx
        self._update_client()
        return build(
            request,
            scheme,
            self.client,
            self.server,
            ctx.root_path,
            ctx.state,
            self._extensions(),
            forwarded=self.forwarded,
        )

    def _new_stream(self, request: Request) -> HTTPStream:
        """The stream of a request, started once the read that carried it is handled."""
        ctx = self.ctx
        scope = self._scope(http_scope, request, request.scheme or self.scheme)
        stream_id = request.stream_id
        stream = HTTPStream(
            self,
            self.loop,
            scope,
            stream_id,
            expect_continue=self.sends_continue and request.expect_continue,
            access_log=ctx.access_log,
        )
        if request.method == "HEAD":
            self._no_body.add(stream_id)
        self.streams[stream_id] = stream
        self._new.append(stream)
        self._busy()
        return stream

    def _open_websocket(self, request: Request) -> None:
        """RFC 8441 / RFC 9220: an extended CONNECT stream carries one WebSocket."""
        stream_id = request.stream_id
        ctx = self.ctx
        try:
            check_connect_handshake(request.headers)
        except HandshakeError as exc:
            self._refuse_handshake(stream_id, exc)
            return
        options = ctx.config.websocket
        extensions, extension_header = negotiate_extensions(
            request.headers, options.ws_per_message_deflate, options.ws_deflate_level
        )
        scheme = "wss" if (request.scheme or self.scheme) == "https" else "ws"
        scope = self._scope(websocket_scope, request, scheme)
        outlet = self.outlet_class(self, stream_id)
        bridge = WSBridge(
            ctx,
            outlet,
            scope,
            stream_id,
            key=None,
            extensions=extensions,
            extension_header=extension_header,
        )
        outlet.bridge = bridge
        self.websockets[stream_id] = outlet
        self._new_websockets.append(bridge)
        self._busy()  # an open WebSocket is not an idle connection

    def _start_new(self) -> None:
        """Start the apps of streams opened by this read, now that their bodies are in."""
        if self._new_websockets:
            websockets, self._new_websockets = self._new_websockets, []
            for bridge in websockets:
                bridge.start()
        if not self._new:
            return
        new, self._new = self._new, []
        ctx = self.ctx
        for stream in new:
            if stream.disconnected:
                continue
            if not ctx.request_started():
                self._refuse(stream)
                continue
            start_app(ctx, stream)

    def _on_reset(self, stream_id: int) -> None:
        websocket = self.websockets.get(stream_id)
        if websocket is not None:
            websocket.reset_by_peer()
        stream = self.streams.pop(stream_id, None)
        self._no_body.discard(stream_id)
        if stream is not None:
            # Rapid reset: the app's work for a client that left is wasted.
            stream.reset_by_peer()
        self._wake(stream_id)
        self._maybe_idle()

    def websocket_done(self, stream_id: int) -> None:
        """A WebSocket's carrier stream is over (both sides, or reset)."""
        if self.websockets.pop(stream_id, None) is not None:
            self.conn.forget(stream_id)
            self._wake(stream_id)
            self._maybe_idle()

    # ------------------------------------------------------------ HTTPSink

    def send_head(
        self,
        stream: HTTPStream,
        status: int,
        headers: Headers,
        body: bytes,
        end: bool,
        trailers: bool,
    ) -> None:
        stream_id = stream.stream_id
        if self._closed or stream_id not in self.streams:
            return
        if status in _NO_BODY_STATUSES:
            self._no_body.add(stream_id)
        no_body = stream_id in self._no_body
        conn = self.conn
        # Raises LocalProtocolError before anything is queued (see HTTPStream).
        conn.responses.head(stream_id, headers, len(body), end, no_body)
        all_headers = self.ctx.response_header_list(headers, alt_svc=self.alt_svc)
        if end and (no_body or not body):
            sent = conn.send_headers(stream_id, status, all_headers, True)
        else:
            sent = conn.send_headers(stream_id, status, all_headers, False)
            if no_body:
                body = b""
            if sent and (body or end):
                sent = conn.send_data(stream_id, body, end)
        if not sent:
            stream.disconnect()
        self._schedule_flush()

    def send_body(self, stream: HTTPStream, data: bytes, end: bool) -> None:
        stream_id = stream.stream_id
        if self._closed or stream_id not in self.streams:
            return
        if stream_id in self._no_body:
            if not end:
                return
            data = b""
        self.conn.responses.data(stream_id, len(data), end)
        if not self.conn.send_data(stream_id, data, end):
            stream.disconnect()
        self._schedule_flush()

    def send_trailers(self, stream: HTTPStream, trailers: Headers) -> None:
        stream_id = stream.stream_id
        if self._closed or stream_id not in self.streams:
            return
        conn = self.conn
        conn.responses.fields(trailers)
        conn.responses.data(stream_id, 0, True)
        if not conn.send_trailers(stream_id, trailers):
            stream.disconnect()
        self._schedule_flush()

    def send_informational(self, stream: HTTPStream, status: int, headers: Headers) -> None:
        if self._closed or stream.stream_id not in self.streams:
            return
        if status == 100 and not self.sends_continue:
            return
        self.conn.responses.fields(headers)
        self.conn.send_informational(stream.stream_id, status, headers)
        self._schedule_flush()

    def drain(self, stream: HTTPStream) -> asyncio.Future[None] | None:
        return self._drain(stream.stream_id, timed=True)

    def _drain(self, stream_id: int, timed: bool) -> asyncio.Future[None] | None:
        """A waiter while the stream has too much queued, else None.

        ``timed``: a peer that never opens its window must not hold the app
        forever; after ``--timeout-write`` the stream is reset.
        """
        if self._closed:
            return None
        if self.conn.buffered(stream_id) <= HIGH_WATER and not self._write_paused:
            return None
        waiter = self.loop.create_future()
        self._waiters.setdefault(stream_id, []).append(waiter)
        if timed and stream_id not in self._stall_timers:
            self._stall_timers[stream_id] = self.loop.call_later(
                self.ctx.write_timeout, self._stalled, stream_id
            )
        return waiter

    def _stalled(self, stream_id: int) -> None:
        self._stall_timers.pop(stream_id, None)
        if self._closed or stream_id not in self._waiters:
            return
        logger.info(
            "%s stream %d from %s stalled; resetting it", self.label, stream_id, self.client
        )
        if self._write_paused:
            # The socket itself is not draining: nothing on it can progress.
            self.abort()
            return
        self.conn.reset(stream_id, self.cancel_code)
        self._on_reset(stream_id)
        self._flush()

    def _wake_drained(self) -> None:
        """Wake the apps whose streams have room again."""
        buffered = self.conn.buffered
        for stream_id in list(self._waiters):
            if buffered(stream_id) <= HIGH_WATER:
                self._wake(stream_id)

    def _wake(self, stream_id: int) -> None:
        timer = self._stall_timers.pop(stream_id, None)
        if timer is not None:
            timer.cancel()
        waiters = self._waiters.pop(stream_id, None)
        if waiters:
            for waiter in waiters:
                if not waiter.done():
                    waiter.set_result(None)

    def body_consumed(self, stream: HTTPStream, nbytes: int) -> None:
        if not self._closed:
            self.conn.acknowledge(stream.stream_id, nbytes)
            self._schedule_flush()

    def sendfile(
        self, stream: HTTPStream, file: Any, offset: int, count: int | None, end: bool
    ) -> None:
        return None  # frames are built in memory: the stream sends chunks

    def response_complete(self, stream: HTTPStream) -> None:
        if not stream.request_complete and not self._closed:
            # The answer is complete; the rest of the upload is not wanted.
            self.conn.stop_reading(stream.stream_id)
            self._schedule_flush()

    def app_done(self, stream: HTTPStream, failed: bool) -> None:
        ctx = self.ctx
        ctx.request_finished()
        task = stream.task
        if task is not None:
            ctx.tasks.discard(task)
        stream_id = stream.stream_id
        if failed and not self._closed and stream_id in self.streams:
            self.conn.reset(stream_id, self.internal_code)
        self.streams.pop(stream_id, None)
        self._no_body.discard(stream_id)
        if self._body_sizes:
            self._body_sizes.pop(stream_id, None)
        self.conn.forget(stream_id)
        self._wake(stream_id)
        self._maybe_idle()
        self._schedule_flush()
        ctx.check_drained()

    def _schedule_flush(self) -> None:
        if not self._in_receive and not self._flush_scheduled and not self._closed:
            self._flush_scheduled = True
            self.loop.call_soon(self._flush)

    def _disconnect_all(self) -> None:
        """The connection is gone: every stream and WebSocket on it sees a disconnect."""
        for stream in list(self.streams.values()):
            stream.disconnect()
        for outlet in list(self.websockets.values()):
            if outlet.bridge is not None:
                outlet.bridge.connection_lost()
        for stream_id in list(self._waiters):
            self._wake(stream_id)
        self.ctx.check_drained()
