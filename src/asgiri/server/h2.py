"""HTTP/2 over an asyncio transport: the I/O edge of :mod:`asgiri.protocol.h2`.

A connection becomes HTTP/2 in one of three ways, all decided by
:class:`~asgiri.server.h1.H1Protocol`, which hands the transport over with
``transport.set_protocol``: TLS ALPN chose ``h2``, a cleartext connection
began with the HTTP/2 preface (prior knowledge), or an HTTP/1.1 request
asked to ``Upgrade: h2c``.

Every request stream is an :class:`~asgiri.asgi.http_stream.HTTPStream`, the
same state machine HTTP/1.1 uses; this class is its sink.  Frames produced
while handling one read (and by app steps in the same loop iteration) leave
in one ``transport.write``.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable
from typing import Any

from ..asgi.http_stream import HTTPStream
from ..protocol.events import Body, EndBody, Headers, Request, StreamClosed
from ..protocol.h2_common import ConnectionEnded, H2Codec, StreamWritable, codec_factory
from ..protocol.proxy_headers import TrustedProxies
from ..protocol.ws import HandshakeError
from .context import ServerContext
from .stall import WriteStallWatch
from .streams import StreamSink
from .ws import StreamOutlet

logger = logging.getLogger("asgiri.error")

#: On graceful shutdown, how long the GOAWAY may wait for the requests in flight
#: to be answered first (see :meth:`H2Protocol.shutdown`).
SHUTDOWN_GOAWAY_DELAY = 1.0
_NO_ERROR = 0x0
_PROTOCOL_ERROR = 0x1
_INTERNAL_ERROR = 0x2
_REFUSED_STREAM = 0x7
_CANCEL = 0x8


class H2WebSocketOutlet(StreamOutlet):
    """RFC 8441: WebSocket bytes as DATA on one extended CONNECT stream."""

    proto: H2Protocol

    def drain(self) -> Awaitable[None] | None:
        return self.proto._drain(self.stream_id, timed=False)

    def _response_headers(self, headers: Headers) -> Headers:
        return self.proto.ctx.response_header_list(headers)

    def _abort_stream(self) -> None:
        self.proto.conn.reset(self.stream_id, _CANCEL)

    def _stop_peer(self) -> None:
        self.proto.conn.reset(self.stream_id, _CANCEL)

    def _close_refused_peer(self) -> bool:
        conn = self.proto.conn
        if conn.buffered(self.stream_id):
            return False  # the reset waits until the answer has left
        conn.reset(self.stream_id, _NO_ERROR)  # RFC 9113 8.1
        return True


class H2Protocol(StreamSink, asyncio.Protocol):
    """One HTTP/2 connection."""

    #: Label of this connection in the open-connections metric.
    metrics_protocol = "h2"
    label = "HTTP/2"
    cancel_code = _CANCEL
    internal_code = _INTERNAL_ERROR
    outlet_class = H2WebSocketOutlet
    conn: H2Codec

    def __init__(
        self,
        ctx: ServerContext,
        transport: Any,
        *,
        scheme: str,
        client: tuple[str, int] | None,
        server: tuple[str, int | None] | None,
        extensions: dict[str, Any],
        forwarded: TrustedProxies | None = None,
    ) -> None:
        self._init_streams(ctx)
        self.transport = transport
        self.forwarded = forwarded
        self.scheme = scheme
        self.client = client
        self.server = server
        self.extensions = extensions
        self.conn = codec_factory(ctx.config.http2.h2_codec)(ctx.h2_limits)
        self._max_body = ctx.config.limits.limit_request_body
        self._timer: asyncio.TimerHandle | None = None
        #: Runs while the socket is not draining (``--timeout-write``).
        self._stall = WriteStallWatch(ctx.loop, ctx.write_timeout, self._stopped_reading)
        #: Runs while finished responses wait for the peer's window.
        self._output_timer: asyncio.TimerHandle | None = None
        self._upgrade_body_left = 0

    # ------------------------------------------------------------ start

    def start(self, data: bytes, upgrade: tuple[Request, bytes, int] | None = None) -> None:
        """Take over the transport; ``data`` is what was read already."""
        self.ctx.connections.add(self)
        if upgrade is not None:
            request, settings, body_length = upgrade
            self.conn.initiate_upgrade(settings)
            self._upgrade_body_left = body_length
            self._on_request(request)
            if not body_length:
                self.streams[1].body_ended()
        else:
            self.conn.initiate()
        if self.ctx.shutting_down:
            self.shutdown()
        if data:
            self.data_received(data)
        else:
            self._start_new()
            self._flush()
        self._arm_idle()

    # ------------------------------------------------------------ transport callbacks

    def data_received(self, data: bytes) -> None:
        if self._upgrade_body_left:
            data = self._upgrade_body(data)
            if not data:
                return
        self._in_receive = True
        try:
            events = self.conn.receive_data(data)
            streams = self.streams
            for event in events:
                kind = type(event)
                if kind is Body:
                    stream = streams.get(event.stream_id)  # type: ignore[union-attr]
                    if stream is not None:
                        limit = self._max_body
                        if limit is not None and self._over_limit(stream, event, limit):  # type: ignore[arg-type]
                            continue
                        stream.body_received(event.data)  # type: ignore[union-attr]
                    elif event.stream_id in self.websockets:  # type: ignore[union-attr]
                        outlet = self.websockets[event.stream_id]  # type: ignore[union-attr]
                        outlet.data_received(event.data)  # type: ignore[union-attr]
                    else:
                        # Nobody will read it: keep the connection window open.
                        self.conn.acknowledge(event.stream_id, len(event.data))  # type: ignore[union-attr]
                elif kind is Request:
                    self._on_request(event)  # type: ignore[arg-type]
                elif kind is EndBody:
                    stream = streams.get(event.stream_id)  # type: ignore[union-attr]
                    if stream is not None:
                        stream.body_ended()
                    elif event.stream_id in self.websockets:  # type: ignore[union-attr]
                        # END_STREAM is the WebSocket's TCP FIN (RFC 8441 5).
                        self.websockets[event.stream_id].peer_ended()  # type: ignore[union-attr]
                elif kind is StreamWritable:
                    self._wake(event.stream_id)  # type: ignore[union-attr]
                    if not self.conn.sending:
                        self._maybe_idle()
                elif kind is StreamClosed:
                    self._on_reset(event.stream_id)  # type: ignore[union-attr]
                elif kind is ConnectionEnded:
                    self._on_ended(event)  # type: ignore[arg-type]
            self._start_new()
        finally:
            self._in_receive = False
        self._flush()

    def _upgrade_body(self, data: bytes) -> bytes:
        """After ``Upgrade: h2c`` the request body still arrives as HTTP/1.1 bytes."""
        take = min(len(data), self._upgrade_body_left)
        self._upgrade_body_left -= take
        stream = self.streams.get(1)
        if stream is not None:
            stream.body_received(data[:take])
            if not self._upgrade_body_left:
                stream.body_ended()
        return data[take:]

    def connection_lost(self, exc: Exception | None) -> None:
        self._closed = True
        self.ctx.connections.discard(self)
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._stall.stop()
        if self._output_timer is not None:
            self._output_timer.cancel()
            self._output_timer = None
        self._disconnect_all()

    def pause_writing(self) -> None:
        # Frames are answered (SETTINGS, PING, responses without DATA) whether
        # or not the peer reads them: stop reading while it does not, or its
        # requests would pile answers up in the write buffer without bound.
        self._write_paused = True
        if not self._closed:
            self.transport.pause_reading()
            self._stall.start(self.transport)

    def resume_writing(self) -> None:
        self._write_paused = False
        self._stall.stop()
        if not self._closed:
            self.transport.resume_reading()
        self._wake_drained()

    def eof_received(self) -> bool | None:
        return None

    def _stopped_reading(self) -> None:
        logger.info("HTTP/2 client %s stopped reading; closing the connection", self.client)
        self.abort()

    # ------------------------------------------------------------ streams

    def _on_request(self, request: Request) -> None:
        stream_id = request.stream_id
        if request.protocol is not None:
            if not self.ctx.ws_enabled:
                # Not advertised: a malformed request (RFC 8441 section 4).
                self.conn.reset(stream_id, _PROTOCOL_ERROR)
            elif request.protocol == b"websocket":
                self._open_websocket(request)
            else:
                # Extended CONNECT is advertised only for WebSocket (RFC 8441).
                self.conn.reset(stream_id, _REFUSED_STREAM)
            return
        if self._max_body is not None and _declared_length(request.headers) > self._max_body:
            # Refused before the body is read, as HTTP/1.1 does.
            self._answer(stream_id, 413, b"413 request body too large\n")
            self.conn.reset(stream_id, _NO_ERROR)
            return
        self._new_stream(request)

    def _busy(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _extensions(self) -> dict[str, Any]:
        return self.extensions

    def _refuse_handshake(self, stream_id: int, exc: HandshakeError) -> None:
        self.conn.send_headers(stream_id, exc.status, exc.headers, True)
        # Complete answer; the client's side has nothing more to send.
        self.conn.reset(stream_id, _NO_ERROR)

    def _refuse(self, stream: HTTPStream) -> None:
        stream.status = 503
        self._answer(stream.stream_id, 503, b"Service Unavailable")
        self.streams.pop(stream.stream_id, None)

    def _answer(self, stream_id: int, status: int, body: bytes) -> None:
        """A complete error response from the server itself, in place of the app."""
        headers = [
            *self.ctx.default_header_list(),
            (b"content-type", b"text/plain; charset=utf-8"),
            (b"content-length", b"%d" % len(body)),
        ]
        if self.conn.send_headers(stream_id, status, headers, False):
            self.conn.send_data(stream_id, body, True)

    def _over_limit(self, stream: HTTPStream, event: Body, limit: int) -> bool:
        """``--limit-request-body``: a body growing past it is answered 413.

        The app sees ``http.disconnect``; a response it already began is
        reset instead.  Either way the rest of the upload is refused.
        """
        stream_id = stream.stream_id
        size = self._body_sizes.get(stream_id, 0) + len(event.data)
        self._body_sizes[stream_id] = size
        if size <= limit:
            return False
        self._body_sizes.pop(stream_id, None)
        self.conn.acknowledge(stream_id, len(event.data))
        self.streams.pop(stream_id, None)
        started = stream.response_started
        stream.disconnect()
        if started:
            self.conn.reset(stream_id, _CANCEL)
        else:
            stream.status = 413
            self._answer(stream_id, 413, b"413 request body too large\n")
            self.conn.reset(stream_id, _NO_ERROR)
        return True

    def _on_ended(self, event: ConnectionEnded) -> None:
        """The peer sent GOAWAY, or we ended the connection on an error.

        h2 sends nothing once a GOAWAY was received, so even after a graceful
        one the open streams cannot be answered: their apps see a disconnect.
        """
        if event.error_code:
            logger.debug("HTTP/2 connection from %s ended: code %d", self.client, event.error_code)
        self._closing = True
        for stream in list(self.streams.values()):
            stream.disconnect()
        self._close_after_flush()

    # ------------------------------------------------------------ output

    def _flush(self) -> None:
        self._flush_scheduled = False
        if self._closed:
            return
        data = self.conn.data_to_send()
        if data:
            self.transport.write(data)

    # ------------------------------------------------------------ lifecycle

    def _maybe_idle(self) -> None:
        if self.streams or self.websockets or self._closed:
            return
        if self.conn.sending and not self.conn.closed:
            # Responses whose apps are done may still wait for the peer's
            # window: the connection is neither idle nor finished, and closing
            # now would cut them off.  A peer that never opens its window is
            # dropped after --timeout-write.
            if self._output_timer is None:
                self._output_timer = self.loop.call_later(
                    self.ctx.write_timeout, self._output_stalled
                )
            return
        if self._output_timer is not None:
            self._output_timer.cancel()
            self._output_timer = None
        if self._closing or self.conn.closed:
            self.conn.goaway()  # no-op when sent already
            self._close_after_flush()
        else:
            self._arm_idle()

    def _output_stalled(self) -> None:
        self._output_timer = None
        if self._closed:
            return
        if self.conn.sending:
            logger.info("HTTP/2 client %s opens no window; closing the connection", self.client)
            self.abort()
        else:
            self._maybe_idle()

    def _arm_idle(self) -> None:
        if (
            self._timer is None
            and not self.streams
            and not self.websockets
            and not self.conn.sending
            and not self._closed
        ):
            self._timer = self.loop.call_later(self.ctx.keep_alive_timeout, self._idle_timeout)

    def _idle_timeout(self) -> None:
        self._timer = None
        if not self.streams and not self.websockets and not self._closed:
            if self.conn.sending:
                self._maybe_idle()
                return
            self.conn.goaway()
            self._close_after_flush()

    def _close_after_flush(self) -> None:
        if self._closed:
            return
        self._flush()
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if not self.transport.is_closing():
            self.transport.close()

    def shutdown(self) -> None:
        """Graceful: GOAWAY, let the accepted streams finish, then close.

        While requests are in flight the GOAWAY waits until they are answered
        (for at most :data:`SHUTDOWN_GOAWAY_DELAY`) and leaves right behind
        their last frames.  Clients such as httpcore fail every request whose
        answer has not arrived when they read a GOAWAY, even one the GOAWAY
        says will be processed; sent this way, it reaches them between requests.
        """
        self._closing = True
        for outlet in list(self.websockets.values()):
            if outlet.bridge is not None:
                outlet.bridge.shutdown()
        if self.streams and not self.conn.goaway_sent:
            if self._timer is not None:
                self._timer.cancel()
            self._timer = self.loop.call_later(SHUTDOWN_GOAWAY_DELAY, self._goaway_now)
            return
        self.conn.goaway()
        self._flush()
        if not self.streams and not self.websockets and not self.conn.sending:
            self._close_after_flush()

    def _goaway_now(self) -> None:
        self._timer = None
        if not self._closed:
            self.conn.goaway()
            self._flush()

    def abort(self) -> None:
        if not self._closed:
            self.transport.abort()


def _declared_length(headers: Headers) -> int:
    """The request's content-length (h2 has checked it is a number), or -1."""
    for name, value in headers:
        if name == b"content-length":
            return int(value)
    return -1
