"""HTTP/2 over an asyncio transport: the I/O edge of :mod:`asgiri.protocol.h2`.

A connection becomes HTTP/2 in one of three ways, all decided by
:class:`~asgiri.server.h1.H1Protocol`, which hands the transport over with
``transport.set_protocol``: TLS ALPN chose ``h2``, a cleartext connection
began with the HTTP/2 preface (prior knowledge), or an HTTP/1.1 request
asked to ``Upgrade: h2c``.

The request lifecycle (events, admission, answers, streams, WebSockets) is
:class:`~.streams.StreamSink`'s, shared with HTTP/3; this class adds reading
and writing the TCP transport (frames produced while handling one read, and
by app steps in the same loop iteration, leave in one ``transport.write``),
the idle and stalled-output timers, and a graceful shutdown that no client
loses a response to (see :meth:`H2Protocol.shutdown`).
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from ..protocol.events import ConnectionEnded, Request
from ..protocol.h2_codecs import codec_factory
from ..protocol.h2_common import H2Codec
from ..protocol.proxy_headers import TrustedProxies
from .closing import close_transport
from .context import ServerContext
from .stall import WriteStallWatch
from .streams import StreamSink

logger = logging.getLogger("asgiri.error")

#: On graceful shutdown, how long streams the client opens while others are
#: still being answered are served; after that they are refused.
SHUTDOWN_ACCEPT_GRACE = 1.0
#: On graceful shutdown, how long a connection that never carried a request
#: is given for the one its client may be sending (as HTTP/1.1 does).
SHUTDOWN_IDLE_GRACE = 1.0


class H2Protocol(StreamSink, asyncio.Protocol):
    """One HTTP/2 connection."""

    #: Label of this connection in the open-connections metric.
    metrics_protocol = "h2"
    label = "HTTP/2"
    http_version = "2"
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
        self.alt_svc = scheme == "https"
        self.client = client
        self.server = server
        self.extensions = extensions
        self.conn = codec_factory(ctx.config.http2.h2_codec)(ctx.h2_limits)
        self._timer: asyncio.TimerHandle | None = None
        #: Runs while the socket is not draining (``--timeout-write``).
        self._stall = WriteStallWatch(ctx.loop, ctx.write_timeout)
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
            self._dispatch(self.conn.receive_data(data))
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
        self._cancel_timer()
        self._stall.stop()
        if self._output_timer is not None:
            self._output_timer.cancel()
            self._output_timer = None
        self._disconnect_all()
        self.conn.release()

    def pause_writing(self) -> None:
        # Frames are answered (SETTINGS, PING, responses without DATA) whether
        # or not the peer reads them: stop reading while it does not, or its
        # requests would pile answers up in the write buffer without bound.
        self._write_paused = True
        if not self._closed:
            self.transport.pause_reading()
            self._stall.start(self.transport, self._stopped_reading)

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

    # ------------------------------------------------------------ protocol hooks

    def _busy(self) -> None:
        self._cancel_timer()

    def _on_ended(self, event: ConnectionEnded) -> None:
        """The peer sent GOAWAY, or we ended the connection on an error.

        h2 sends nothing once a GOAWAY was received, so even after a graceful
        one the open streams cannot be answered: their apps are stopped as on
        a reset (see :meth:`_disconnect_all`).
        """
        if event.error_code:
            logger.debug("HTTP/2 connection from %s ended: code %d", self.client, event.error_code)
        self._closing = True
        for stream in list(self.streams.values()):
            stream.reset_by_peer()
        self._close_after_flush()

    # ------------------------------------------------------------ output

    def _flush(self) -> None:
        self._flush_scheduled = False
        if self._closed:
            return
        data = self.conn.data_to_send()
        if data:
            self.transport.write(data)
        if self._waiters and not self._write_paused:
            self._wake_drained()

    # ------------------------------------------------------------ lifecycle

    def _maybe_idle(self) -> None:
        if self._has_work() or self._closed:
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
            self._goaway_and_close()
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
            and not self._has_work()
            and not self.conn.sending
            and not self._closed
        ):
            self._timer = self.loop.call_later(self.ctx.keep_alive_timeout, self._idle_timeout)

    def _idle_timeout(self) -> None:
        self._timer = None
        if not self._has_work() and not self._closed:
            if self.conn.sending:
                self._maybe_idle()
                return
            self._goaway_and_close()

    def _cancel_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _goaway_and_close(self) -> None:
        self.conn.goaway()  # a no-op when sent already
        self._close_after_flush()

    def _close_after_flush(self) -> None:
        if self._closed:
            return
        self._flush()
        self._cancel_timer()
        close_transport(self.transport, self.loop)

    def shutdown(self) -> None:
        """Graceful: every stream accepted is answered before the GOAWAY.

        The GOAWAY goes out only once no stream is in flight, with the last
        stream answered as its bound, and the connection closes right behind
        it.  The h2 library (and so httpx/httpcore) fails every stream it has
        not finished reading when a GOAWAY arrives, whatever the GOAWAY's
        bound says; a request it sends after the GOAWAY left is above the
        bound, which it retries on a new connection.  Streams the client opens
        while others are still answered are served for
        :data:`SHUTDOWN_ACCEPT_GRACE`, then refused with REFUSED_STREAM (a
        refusal every client may retry), so a busy connection still ends.
        """
        if self._closing:
            return
        self._closing = True
        self._shutdown_tunnels()
        if self._has_work() or self.conn.sending:
            self._cancel_timer()
            self.loop.call_later(SHUTDOWN_ACCEPT_GRACE, self._refuse_new)
            return
        if self.conn.last_stream_id:
            self._goaway_and_close()
            return
        # Never used: its first request may be on its way.
        self._cancel_timer()
        self._timer = self.loop.call_later(SHUTDOWN_IDLE_GRACE, self._idle_timeout)

    def _refuse_new(self) -> None:
        if not self._closed:
            self.conn.refuse_new_streams()

    def abort(self) -> None:
        if not self._closed:
            self.transport.abort()
