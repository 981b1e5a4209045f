"""The request lifecycle of a multiplexed connection, written once for HTTP/2 and HTTP/3.

Both protocols carry each request on a stream of its own, report the same
events (:data:`~asgiri.protocol.events.StreamEvent`) and take the same calls
(:class:`~asgiri.protocol.multiplexed.StreamConnection`).  Everything that
follows from that alone lives here: the one dispatcher of those events,
admission (``--limit-concurrency``) of requests and WebSockets, the answers
the server gives in the app's place (413, 431, 425, 503, a refused
handshake) with their access-log lines, the
:class:`~asgiri.asgi.http_stream.HTTPSink` side of the request streams,
backpressure and the ``--timeout-write`` watch per stream, and the
WebSocket outlet of an extended CONNECT stream (RFC 8441, RFC 9220).  The
connection classes in :mod:`.h2` and :mod:`.h3` add how their transport is
read, written and timed, and how they drain.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any, ClassVar, Protocol

from ..asgi.access_log import Answered, answered_scope
from ..asgi.http_stream import HTTPStream
from ..asgi.scope import http_scope, websocket_scope
from ..protocol.events import (
    Body,
    ConnectionEnded,
    EndBody,
    Headers,
    Request,
    RequestRejected,
    StreamClosed,
    StreamEvent,
    StreamWritable,
)
from ..protocol.multiplexed import StreamConnection
from ..protocol.proxy_headers import TrustedProxies
from ..protocol.ws_handshake import (
    HandshakeError,
    check_connect_handshake,
    negotiate_extensions,
)
from .context import ServerContext
from .tasks import start_app
from .ws import StreamOutlet, WSBridge

__all__ = ["HIGH_WATER", "StreamSink", "Tunnel"]

logger = logging.getLogger("asgiri.error")

#: Response bytes a stream may have waiting (for flow-control credit, or in
#: the transport) before its app is made to wait.
HIGH_WATER = 64 * 1024
_NO_BODY_STATUSES = frozenset({204, 304})
_NO_ERROR = 0


class Tunnel(Protocol):
    """What an extended CONNECT stream carries: a WebSocket or a WebTransport session."""

    #: The CONNECT stream.
    stream_id: int
    #: The CONNECT request, for the 503 of a refused one and the access log.
    request: Request

    @property
    def finished(self) -> bool:
        """Over already (the peer went away before it was started)."""

    def start(self) -> None:
        """Run the app; the tunnel was admitted (``ServerContext.request_started``)."""

    def refuse(self) -> None:
        """Not admitted: the server answers 503 in its place; the app never runs."""

    def data_received(self, data: bytes) -> None:
        """DATA of the CONNECT stream."""

    def peer_ended(self) -> None:
        """The peer ended its side of the CONNECT stream."""

    def reset_by_peer(self) -> None:
        """The CONNECT stream was reset (or stopped)."""

    def connection_lost(self) -> None:
        """The connection is gone."""

    def shutdown(self) -> None:
        """Graceful shutdown: close what the tunnel carries."""


class StreamSink:
    """Base of :class:`~.h2.H2Protocol` and :class:`~.h3.H3Protocol`."""

    #: The protocol's name in log lines.
    label: ClassVar[str]
    #: ``http_version`` of the scopes of this protocol.
    http_version: ClassVar[str]
    #: Whether responses advertise HTTP/3 (pointless on HTTP/3 itself, and untrue
    #: on a cleartext connection: set per HTTP/2 connection).
    alt_svc: bool = True
    #: Whether ``100 Continue`` is sent (HTTP/3 clients do not wait for it).
    sends_continue: ClassVar[bool] = True

    ctx: ServerContext
    loop: asyncio.AbstractEventLoop
    conn: StreamConnection
    client: tuple[str, int] | None
    server: tuple[str, int | None] | None
    scheme: str
    forwarded: TrustedProxies | None
    extensions: dict[str, Any]

    def _init_streams(self, ctx: ServerContext) -> None:
        self.ctx = ctx
        self.loop = ctx.loop
        self.streams: dict[int, HTTPStream] = {}
        #: What extended CONNECT streams carry (WebSockets, WebTransport sessions),
        #: by the CONNECT stream's id.
        self.tunnels: dict[int, Tunnel] = {}
        #: Streams whose response carries no body (HEAD, 204, 304).
        self._no_body: set[int] = set()
        self._waiters: dict[int, list[asyncio.Future[None]]] = {}
        self._stall_timers: dict[int, asyncio.TimerHandle] = {}
        #: Streams opened by the read being handled, started once it is done.
        self._new: list[HTTPStream] = []
        #: Tunnels opened by the read being handled, admitted and started once it is done.
        self._new_tunnels: list[Tunnel] = []
        self._in_receive = False
        self._flush_scheduled = False
        #: Whether the transport stopped taking writes (HTTP/2 only).
        self._write_paused = False
        self._closing = False
        self._closed = False

    # ------------------------------------------------------------ hooks

    def _flush(self) -> None:
        """Hand what the connection has queued to the transport."""
        raise NotImplementedError

    def _maybe_idle(self) -> None:
        """A stream ended: close a connection that is draining and has nothing left."""
        raise NotImplementedError

    def abort(self) -> None:
        raise NotImplementedError

    def _on_ended(self, event: ConnectionEnded) -> None:
        """The peer ended the connection (or it failed)."""
        raise NotImplementedError

    def _on_other(self, event: Any) -> None:
        """An event only this protocol has (HTTP/3 connection ids)."""

    def _update_client(self) -> None:
        """Refresh ``client`` before a scope is built (QUIC peers may move)."""

    def _extensions(self) -> dict[str, Any]:
        """The scope extensions of this connection's requests."""
        return self.extensions

    def _busy(self) -> None:
        """A stream opened: the connection is no longer idle."""

    # ------------------------------------------------------------ for outlets and timers

    @property
    def closed(self) -> bool:
        """The transport is gone: nothing more can be written."""
        return self._closed

    def schedule_flush(self) -> None:
        """Write what is queued at the end of this loop iteration (one write for many steps)."""
        if not self._in_receive and not self._flush_scheduled and not self._closed:
            self._flush_scheduled = True
            self.loop.call_soon(self._flush)

    def response_headers(self, headers: Headers) -> Headers:
        """The server's default fields (date, server, alt-svc) followed by ``headers``."""
        return self.ctx.response_header_list(headers, alt_svc=self.alt_svc)

    # ------------------------------------------------------------ the dispatcher

    def _dispatch(self, events: list[Any]) -> None:
        """Route one read's events; the apps of streams it opened start after all of them."""
        streams = self.streams
        event: StreamEvent
        for event in events:
            kind = type(event)
            if kind is Body:
                stream = streams.get(event.stream_id)  # type: ignore[union-attr]
                if stream is not None:
                    stream.body_received(event.data)  # type: ignore[union-attr]
                    continue
                tunnel = self.tunnels.get(event.stream_id)  # type: ignore[union-attr]
                if tunnel is not None:
                    tunnel.data_received(event.data)  # type: ignore[union-attr]
                else:
                    # Nobody will read it: keep the connection window open.
                    self.conn.acknowledge(event.stream_id, len(event.data))  # type: ignore[union-attr]
            elif kind is Request:
                self._on_request(event)  # type: ignore[arg-type]
            elif kind is EndBody:
                stream = streams.get(event.stream_id)  # type: ignore[union-attr]
                if stream is not None:
                    stream.body_ended()
                    continue
                tunnel = self.tunnels.get(event.stream_id)  # type: ignore[union-attr]
                if tunnel is not None:
                    # END_STREAM / FIN is the WebSocket's TCP FIN (RFC 8441 5, RFC 9220 3).
                    tunnel.peer_ended()
            elif kind is StreamWritable:
                self._wake(event.stream_id)  # type: ignore[union-attr]
                self._maybe_idle()
            elif kind is StreamClosed:
                self._on_reset(event.stream_id)  # type: ignore[union-attr]
            elif kind is RequestRejected:
                self._on_rejected(event)  # type: ignore[arg-type]
            elif kind is ConnectionEnded:
                self._on_ended(event)  # type: ignore[arg-type]
            else:
                self._on_other(event)
        self._start_new()

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

    def _on_request(self, request: Request) -> None:
        if request.protocol is not None:
            # The protocol layer lets through only the extended CONNECTs served.
            if request.protocol == b"websocket":
                self._open_websocket(request)
            else:
                self._open_tunnel(request)
            return
        ctx = self.ctx
        scope = self._scope(http_scope, request, request.scheme or self.scheme)
        stream_id = request.stream_id
        stream = HTTPStream(
            self,
            self.loop,
            scope,
            stream_id,
            expect_continue=self.sends_continue and request.expect_continue,
            on_complete=ctx.exchange_done,
            head_flush=ctx.head_flush,
        )
        if request.method == "HEAD":
            self._no_body.add(stream_id)
        self.streams[stream_id] = stream
        self._new.append(stream)
        self._busy()

    def _open_websocket(self, request: Request) -> None:
        """RFC 8441 / RFC 9220: an extended CONNECT stream carries one WebSocket."""
        stream_id = request.stream_id
        ctx = self.ctx
        try:
            check_connect_handshake(request.headers)
        except HandshakeError as exc:
            self._answer(stream_id, exc.status, str(exc), request, exc.headers)
            return
        options = ctx.config.websocket
        extensions, extension_header = negotiate_extensions(
            request.headers, options.ws_per_message_deflate, options.ws_deflate_level
        )
        scheme = "wss" if (request.scheme or self.scheme) == "https" else "ws"
        scope = self._scope(websocket_scope, request, scheme)
        outlet = StreamOutlet(self, stream_id, request)
        bridge = WSBridge(
            ctx,
            outlet,
            scope,
            stream_id,
            key=None,
            extensions=extensions,
            extension_header=extension_header,
            request=request,
        )
        outlet.bridge = bridge
        self._add_tunnel(outlet)

    def _open_tunnel(self, request: Request) -> None:
        """An extended CONNECT for another protocol this connection serves (WebTransport)."""
        raise NotImplementedError

    def _add_tunnel(self, tunnel: Tunnel) -> None:
        self.tunnels[tunnel.stream_id] = tunnel
        self._new_tunnels.append(tunnel)
        self._busy()  # an open tunnel is not an idle connection

    def _start_new(self) -> None:
        """Admit and start the apps of streams opened by this read, their bodies now in."""
        ctx = self.ctx
        if self._new_tunnels:
            tunnels, self._new_tunnels = self._new_tunnels, []
            for tunnel in tunnels:
                if tunnel.finished:
                    continue
                if not ctx.request_started():
                    # A WebSocket or a WebTransport session counts as a request
                    # for --limit-concurrency: refused with 503 like one.
                    self.tunnels.pop(tunnel.stream_id, None)
                    tunnel.refuse()
                    self._answer(tunnel.stream_id, 503, "Service Unavailable", tunnel.request)
                    continue
                tunnel.start()
        if not self._new:
            return
        new, self._new = self._new, []
        for stream in new:
            if stream.disconnected:
                continue
            if not ctx.request_started():
                self.streams.pop(stream.stream_id, None)
                stream.disconnect()
                self._answer(stream.stream_id, 503, "Service Unavailable", scope=stream.scope)
                continue
            start_app(ctx, stream)

    def _answer(
        self,
        stream_id: int,
        status: int,
        reason: str,
        request: Request | None = None,
        extra: Headers | None = None,
        *,
        scope: dict[str, Any] | None = None,
    ) -> None:
        """A complete response from the server itself, in place of the app.

        The rest of the request is not wanted; the exchange gets its
        access-log line like any other.
        """
        ctx = self.ctx
        fields, body = ctx.answer(status, reason, extra)
        conn = self.conn
        if conn.send_headers(stream_id, status, self.response_headers(fields), False):
            conn.send_data(stream_id, body, True)
        conn.stop_reading(stream_id, _NO_ERROR)
        conn.forget(stream_id)
        if scope is None:
            self._update_client()
            scope = answered_scope(request, self.http_version, self.scheme, self.client)
        ctx.log_exchange(Answered(scope, status, len(body), response_headers=fields))
        self.schedule_flush()

    def _on_rejected(self, event: RequestRejected) -> None:
        """A wire limit refused a request (413, 431, 425): answer it, or cut a started response."""
        stream_id = event.stream_id
        stream = self.streams.pop(stream_id, None)
        self._no_body.discard(stream_id)
        if stream is None:
            self._answer(stream_id, event.status, event.reason, event.request)
            return
        if stream in self._new:
            self._new.remove(stream)
        started = stream.response_started
        # The app sees http.disconnect; whatever it sends from now on is dropped.
        stream.disconnect()
        if started:
            self.conn.reset(stream_id, self.conn.cancel_code)
            self._wake(stream_id)
            self.schedule_flush()
        else:
            self._answer(stream_id, event.status, event.reason, scope=stream.scope)

    def _on_reset(self, stream_id: int) -> None:
        tunnel = self.tunnels.get(stream_id)
        if tunnel is not None:
            tunnel.reset_by_peer()
        stream = self.streams.pop(stream_id, None)
        self._no_body.discard(stream_id)
        if stream is not None:
            # Rapid reset: the app's work for a client that left is wasted.
            stream.reset_by_peer()
        self._wake(stream_id)
        self._maybe_idle()

    def tunnel_done(self, stream_id: int) -> None:
        """A tunnel's CONNECT stream is over (both sides, or reset)."""
        if self.tunnels.pop(stream_id, None) is not None:
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
        all_headers = self.response_headers(headers)
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
        self.schedule_flush()

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
        self.schedule_flush()

    def send_trailers(self, stream: HTTPStream, trailers: Headers) -> None:
        stream_id = stream.stream_id
        if self._closed or stream_id not in self.streams:
            return
        conn = self.conn
        conn.responses.fields(trailers)
        conn.responses.data(stream_id, 0, True)
        if not conn.send_trailers(stream_id, trailers):
            stream.disconnect()
        self.schedule_flush()

    def send_informational(self, stream: HTTPStream, status: int, headers: Headers) -> None:
        if self._closed or stream.stream_id not in self.streams:
            return
        if status == 100 and not self.sends_continue:
            return
        self.conn.responses.fields(headers)
        self.conn.send_informational(stream.stream_id, status, headers)
        self.schedule_flush()

    def drain(self, stream: HTTPStream) -> asyncio.Future[None] | None:
        return self.stream_drain(stream.stream_id)

    def stream_drain(self, stream_id: int) -> asyncio.Future[None] | None:
        """A waiter while the stream has too much queued, else None.

        A peer that never opens its window (or never reads the socket) must
        not hold the app forever: after ``--timeout-write`` the stream is
        reset, for a response and a WebSocket alike.
        """
        if self._closed:
            return None
        conn = self.conn
        if conn.buffered(stream_id) <= HIGH_WATER and not self._write_paused:
            if conn.pending_output() <= HIGH_WATER:
                return None
            # The output is written once per loop iteration, and an app whose
            # sends never wait would not let one pass: write it now, so that
            # the transport's flow control (pause_writing) holds the app.
            # During a read the read's own flush comes first, then wakes it.
            if not self._in_receive:
                self._flush()
                if not self._write_paused or self._closed:
                    return None
        waiter = self.loop.create_future()
        self._waiters.setdefault(stream_id, []).append(waiter)
        if stream_id not in self._stall_timers:
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
        self.conn.reset(stream_id, self.conn.cancel_code)
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
            self.schedule_flush()

    def sendfile(
        self, stream: HTTPStream, file: Any, offset: int, count: int | None, end: bool
    ) -> None:
        return None  # frames are built in memory: the stream sends chunks

    def response_complete(self, stream: HTTPStream) -> None:
        if not stream.request_complete and not self._closed:
            # The answer is complete; the rest of the upload is not wanted.
            self.conn.stop_reading(stream.stream_id, _NO_ERROR)
            self.schedule_flush()

    def app_done(self, stream: HTTPStream, failed: bool) -> None:
        ctx = self.ctx
        ctx.request_finished()
        task = stream.task
        if task is not None:
            ctx.tasks.discard(task)
        stream_id = stream.stream_id
        if failed and not self._closed and self.streams.get(stream_id) is stream:
            self.conn.reset(stream_id, self.conn.internal_error_code)
        if self.streams.get(stream_id) is stream:
            del self.streams[stream_id]
            self._no_body.discard(stream_id)
        self.conn.forget(stream_id)
        self._wake(stream_id)
        self._maybe_idle()
        self.schedule_flush()
        ctx.check_drained()

    def _disconnect_all(self) -> None:
        """The connection is gone: every stream and WebSocket on it sees a disconnect.

        Each app is stopped as on a reset of its stream (see
        :meth:`HTTPStream.reset_by_peer`): no answer can reach the client any
        more, and a client could otherwise leave a hundred apps working for
        nothing per connection it opens and drops (or makes the server end
        with a bad frame), then do it again.
        """
        for stream in list(self.streams.values()):
            stream.reset_by_peer()
        tunnels = list(self.tunnels.values())
        # Each tunnel's outlet points back at this object: kept in the dict,
        # they would be a cycle holding the connection after it is gone.
        self.tunnels.clear()
        for tunnel in tunnels:
            tunnel.connection_lost()
        for stream_id in list(self._waiters):
            self._wake(stream_id)
        self.ctx.check_drained()

    def _shutdown_tunnels(self) -> None:
        """Graceful shutdown: every WebSocket (1001/1012) and WebTransport session closes."""
        for tunnel in list(self.tunnels.values()):
            tunnel.shutdown()

    def _has_work(self) -> bool:
        """A stream or WebSocket is open (the connection is not idle)."""
        return bool(self.streams or self.tunnels)
