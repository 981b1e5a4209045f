"""WebSocket over asyncio: one bridge for every transport.

:class:`WSBridge` is the sink of a :class:`~asgiri.asgi.ws_stream.WebSocketStream`
and owns the :class:`~asgiri.protocol.ws.WSSession`; it does the closing
handshake, keepalive pings and flow control the same way whatever carries
the bytes.  What differs per transport is a small :class:`Outlet`: how the
handshake is answered (101 vs 200), how bytes leave, and how the carrier
ends (TCP close vs END_STREAM / RST_STREAM).  :class:`WSH1Protocol` is the
HTTP/1.1 outlet; HTTP/2 (RFC 8441) and HTTP/3 (RFC 9220) provide theirs.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

from ..asgi.access_log import Answered
from ..asgi.ws_stream import WebSocketStream, WSState
from ..protocol.events import Headers, Request
from ..protocol.h1 import H1Connection, H1Response, RequestInfo
from ..protocol.multiplexed import StreamConnection
from ..protocol.ws import (
    ABNORMAL,
    GOING_AWAY,
    SERVICE_RESTART,
    CloseReceived,
    MessageReceived,
    PongReceived,
    WSSession,
)
from ..protocol.ws_handshake import accept_token
from .closing import close_transport
from .context import ServerContext
from .stall import WriteStallWatch
from .tasks import start_eagerly

logger = logging.getLogger("asgiri.error")


class Outlet(Protocol):
    """How WebSocket bytes travel on one transport."""

    #: The status of an accepted handshake (101 on HTTP/1.1, 200 on a CONNECT stream).
    handshake_status: int

    def accept(self, headers: Headers) -> None:
        """Send the success answer of the handshake with these extra headers."""

    def http_response(self, status: int, headers: Headers, body: bytes, end: bool) -> None:
        """Answer the handshake with an HTTP response: the head with the first body piece."""

    def write(self, data: bytes) -> None: ...

    def send(self, data: bytes) -> Awaitable[None] | None:
        """Write a message's frame; returns what :meth:`drain` would after it.

        (One call where a write and a drain check were two: every message
        the app sends passes here.)
        """

    def finish(self, error: bool) -> None:
        """The WebSocket is over: end the carrier.

        What was written (a close frame included) is delivered either way;
        ``error``: the peer is not waited for or heard any more.
        """

    def pause_reading(self) -> None: ...

    def resume_reading(self) -> None: ...

    def drain(self) -> Awaitable[None] | None: ...


class WSBridge:
    """Connects a WebSocketStream to a WSSession over an Outlet."""

    def __init__(
        self,
        ctx: ServerContext,
        outlet: Outlet,
        scope: dict[str, Any],
        stream_id: int,
        *,
        key: bytes | None,
        extensions: Any,
        extension_header: bytes | None,
        request: Request,
    ) -> None:
        self.ctx = ctx
        self.loop = ctx.loop
        self.outlet = outlet
        self.stream_id = stream_id
        #: The handshake request, for the session's access-log line.
        self.request = request
        cfg = ctx.config.websocket
        self.stream = WebSocketStream(self, self.loop, scope, stream_id, max_queue=cfg.ws_max_queue)
        self._key = key
        self._extensions = extensions
        self._extension_header = extension_header
        self.session: WSSession | None = None
        self._early: list[bytes] = []
        self._paused = False
        self._ping_timer: asyncio.TimerHandle | None = None
        self._pong_timer: asyncio.TimerHandle | None = None
        self._close_timer: asyncio.TimerHandle | None = None
        self._ping_payload = b""
        self.finished = False
        self._counted = False
        #: What the handshake was answered with (0: not yet), and the bytes sent.
        self.status = 0
        self.bytes_sent = 0
        self.bytes_received = 0
        self.started_at = 0.0

    # ------------------------------------------------------------ lifecycle

    def start(self) -> None:
        """Run the app (eagerly where the interpreter allows).

        The caller has admitted the session (``ServerContext.request_started``):
        a WebSocket counts as a request for ``--limit-concurrency``,
        ``--limit-max-requests`` and the in-flight metric, whatever carries it.
        """
        ctx = self.ctx
        self.started_at = time.perf_counter()
        task = start_eagerly(self.loop, self.stream.run(ctx.app))
        if task is not None:
            self.stream.task = task
            ctx.tasks.add(task)

    def data_received(self, data: bytes) -> None:
        session = self.session
        if session is None:
            if not self.finished:
                self._early.append(data)  # frames sent before our answer
                if not self._paused:
                    # Nothing reads them before the app answers: hold the
                    # peer back instead of buffering whatever it sends.
                    self._paused = True
                    self.outlet.pause_reading()
            return
        self.bytes_received += len(data)
        stream = self.stream
        # Only a message fills the app's queue, and only a close ends the
        # session: per read, the common case (messages only) asks no more.
        full = closing = False
        for event in session.receive_data(data):
            kind = type(event)
            if kind is MessageReceived:
                full = stream.message_received(event.data)  # type: ignore[union-attr]
            elif kind is CloseReceived:
                closing = True
                self._on_close(event)  # type: ignore[arg-type]
            elif kind is PongReceived:
                self._on_pong(event)  # type: ignore[arg-type]
        if session.outgoing:  # (pongs, our close)
            self.outlet.write(session.data_to_send())
        if full and not self._paused:
            self._paused = True
            self.outlet.pause_reading()
        if closing and session.closed and not self.finished:
            self._finish(error=False)

    def connection_lost(self) -> None:
        """The carrier is gone (TCP closed, stream reset)."""
        self._stop_timers()
        self.finished = True
        self.stream.peer_closed(ABNORMAL)

    def shutdown(self) -> None:
        """Graceful shutdown: close 1001 (1012 in a rolling restart), wait for the peer's close."""
        code = SERVICE_RESTART if self.ctx.restarting else GOING_AWAY
        if self.session is not None and self.stream.state is WSState.ACCEPTED:
            self.stream.peer_closed(code, "server shutting down")
            self._send_close(code, "")
        elif self.session is None and not self.finished:
            self.stream.peer_closed(code)

    def _on_close(self, event: CloseReceived) -> None:
        self.stream.peer_closed(event.code, event.reason)
        if event.error:
            logger.debug("WebSocket protocol error from client: %s", event.reason)
            out = self.session.data_to_send() if self.session else b""
            if out:
                self.outlet.write(out)
            self._finish(error=True)

    def _finish(self, error: bool) -> None:
        if self.finished:
            return
        self.finished = True
        self._stop_timers()
        self.outlet.finish(error)

    # ------------------------------------------------------------ keepalive

    def _arm_ping(self) -> None:
        interval = self.ctx.config.websocket.ws_ping_interval
        if interval:
            self._ping_timer = self.loop.call_later(interval, self._ping)

    def _ping(self) -> None:
        self._ping_timer = None
        session = self.session
        if session is None or self.finished or not session.open:
            return
        self._ping_payload = os.urandom(4)
        self.outlet.write(session.ping(self._ping_payload))
        timeout = self.ctx.config.websocket.ws_ping_timeout
        if timeout:
            self._pong_timer = self.loop.call_later(timeout, self._pong_missing)
        else:
            self._arm_ping()

    def _on_pong(self, event: PongReceived) -> None:
        if self._pong_timer is not None and event.payload == self._ping_payload:
            self._pong_timer.cancel()
            self._pong_timer = None
            self._arm_ping()

    def _pong_missing(self) -> None:
        self._pong_timer = None
        logger.info("WebSocket client did not answer a ping; closing")
        self.stream.peer_closed(ABNORMAL, "ping timeout")
        self._finish(error=True)

    def _stop_timers(self) -> None:
        for name in ("_ping_timer", "_pong_timer", "_close_timer"):
            timer = getattr(self, name)
            if timer is not None:
                timer.cancel()
                setattr(self, name, None)

    # ------------------------------------------------------------ WSSink

    def ws_accept(self, stream: WebSocketStream, subprotocol: str | None, headers: Headers) -> None:
        if self.finished:
            return
        answer: Headers = []
        if self._key is not None:
            answer.append((b"sec-websocket-accept", accept_token(self._key)))
        if subprotocol is not None:
            answer.append((b"sec-websocket-protocol", subprotocol.encode("ascii")))
        if self._extension_header is not None:
            answer.append((b"sec-websocket-extensions", self._extension_header))
        skip = {name for name, _ in answer}
        answer.extend((n, v) for n, v in headers if n.lower() not in skip)
        self.session = WSSession(self._extensions, self.ctx.config.websocket.ws_max_size)
        if self.ctx.metrics is not None:
            self._counted = True
            self.ctx.metrics.websocket_opened()
        self.status = self.outlet.handshake_status
        self.outlet.accept(answer)
        self._arm_ping()
        early, self._early = self._early, []
        for data in early:
            self.data_received(data)
        if self._paused and not stream.queue_full:
            self._paused = False
            self.outlet.resume_reading()

    def ws_http_response(
        self, stream: WebSocketStream, status: int, headers: Headers, body: bytes, end: bool
    ) -> None:
        if self.finished:
            return
        if not self.status:
            self.status = status
        self.bytes_sent += len(body)
        self.outlet.http_response(status, headers, body, end)
        if end:
            self.finished = True
            self._stop_timers()

    def ws_send(self, stream: WebSocketStream, data: str | bytes) -> Awaitable[None] | None:
        session = self.session
        if session is None or self.finished:
            return None
        out = session.send_message(data)
        if not out:
            return self.outlet.drain()
        self.bytes_sent += len(out)
        return self.outlet.send(out)

    def ws_close(self, stream: WebSocketStream, code: int, reason: str) -> None:
        self._send_close(code, reason)

    def _send_close(self, code: int, reason: str) -> None:
        session = self.session
        if session is None or self.finished:
            return
        out = session.close(code, reason)
        if out:
            self.outlet.write(out)
        if session.closed:
            self._finish(error=False)
        elif self._close_timer is None:
            # Wait for the peer's close frame, but not forever.
            self._close_timer = self.loop.call_later(
                self.ctx.config.websocket.ws_close_timeout, self._close_timed_out
            )

    def _close_timed_out(self) -> None:
        self._close_timer = None
        self.stream.peer_closed(ABNORMAL, "close handshake timed out")
        # The peer broke the closing handshake: fail the connection (on
        # HTTP/2 a reset, not an END_STREAM that leaves its side open).
        self._finish(error=True)

    def ws_consumed(self, stream: WebSocketStream) -> None:
        if self._paused and not stream.queue_full:
            self._paused = False
            self.outlet.resume_reading()

    def ws_done(self, stream: WebSocketStream) -> None:
        ctx = self.ctx
        ctx.request_finished()
        if self._counted:
            self._counted = False
            ctx.metrics.websocket_closed()
        if self.status:
            # One line per session, when it ends: "GET /ws HTTP/1.1" 101,
            # "CONNECT /ws HTTP/2" 200, or the status it was denied with.
            record = dict(self.stream.scope)
            record["method"] = "GET" if record["http_version"][0] == "1" else "CONNECT"
            ctx.log_exchange(
                Answered(record, self.status, self.bytes_sent, self.bytes_received, self.started_at)
            )
        task = stream.task
        if task is not None:
            ctx.tasks.discard(task)
        ctx.check_drained()


class StreamCarrier(Protocol):
    """What a :class:`StreamOutlet` uses of its HTTP/2 or HTTP/3 connection.

    (:class:`~asgiri.server.streams.StreamSink` provides it; named here so
    that this module, which that one imports, needs nothing back from it.)
    """

    ctx: ServerContext
    loop: asyncio.AbstractEventLoop
    conn: StreamConnection

    @property
    def closed(self) -> bool: ...
    def response_headers(self, headers: Headers) -> Headers: ...
    def schedule_flush(self) -> None: ...
    def stream_drain(self, stream_id: int) -> Awaitable[None] | None: ...
    def tunnel_done(self, stream_id: int) -> None: ...


class StreamOutlet:
    """The outlet of a WebSocket carried by one stream of an HTTP/2 or HTTP/3 connection.

    RFC 8441 and RFC 9220 are one design: the handshake is an extended
    CONNECT answered with 200, the frames travel as the stream's DATA, a clean
    end is END_STREAM (FIN) and an abort is a stream reset.  The connection
    (``proto``) offers the same calls on both protocols, so this class serves
    both; a peer is never left with a half-open stream.
    """

    handshake_status = 200

    def __init__(self, proto: StreamCarrier, stream_id: int, request: Request) -> None:
        self.proto = proto
        self.stream_id = stream_id
        self.request = request
        self.bridge: WSBridge | None = None
        self._paused = False
        self._unacked = 0
        self._ended_local = False
        self._ended_remote = False
        self._head_sent = False

    def accept(self, headers: Headers) -> None:
        proto = self.proto
        self._head_sent = True
        if not proto.conn.send_headers(self.stream_id, 200, proto.response_headers(headers), False):
            self.reset_by_peer()
        proto.schedule_flush()

    def http_response(self, status: int, headers: Headers, body: bytes, end: bool) -> None:
        proto = self.proto
        conn = proto.conn
        if self._ended_local:
            return
        if not self._head_sent:
            self._head_sent = True
            conn.send_headers(self.stream_id, status, proto.response_headers(headers), False)
        conn.send_data(self.stream_id, body, end)
        if end:
            self._ended_local = True
            if not self._ended_remote:
                # The client's side of a refused CONNECT has nothing more to
                # say: close it too, or the stream would stay half-open.
                self._ended_remote = True
                conn.stop_reading(self.stream_id, 0)
            self._maybe_done()
        proto.schedule_flush()

    def write(self, data: bytes) -> None:
        proto = self.proto
        if not self._ended_local and not proto.conn.send_data(self.stream_id, data, False):
            self.reset_by_peer()
        proto.schedule_flush()

    def send(self, data: bytes) -> Awaitable[None] | None:
        self.write(data)
        if self.finished:  # (the write found the stream reset)
            return None
        return self.drain()

    def finish(self, error: bool) -> None:
        """End our side with END_STREAM/FIN after what was written (a close frame included).

        ``error``: the peer is not heard any more either (its direction is
        stopped at once).  Without a response head there is nothing to end
        cleanly: DATA would break the client's HTTP framing, so the stream
        is reset.
        """
        if self._ended_local:
            return
        self._ended_local = True
        proto = self.proto
        conn = proto.conn
        if not self._head_sent:
            conn.reset(self.stream_id, conn.cancel_code)
            self._ended_remote = True
        else:
            conn.send_data(self.stream_id, b"", True)
            if error:
                self._stop_peer()
            elif not self._ended_remote:
                # The peer must end its side too, as it would close TCP; one
                # that does not is stopped rather than kept half-open.
                proto.loop.call_later(
                    proto.ctx.config.websocket.ws_close_timeout, self._peer_end_timed_out
                )
        proto.schedule_flush()
        self._maybe_done()

    def _stop_peer(self) -> None:
        if not self._ended_remote:
            self._ended_remote = True
            self.proto.conn.stop_reading(self.stream_id, self.proto.conn.cancel_code)

    def _peer_end_timed_out(self) -> None:
        if self._ended_remote or self.proto.closed:
            return
        self._stop_peer()
        self.proto.schedule_flush()
        self._maybe_done()

    def peer_ended(self) -> None:
        self._ended_remote = True
        bridge = self.bridge
        if bridge is not None and not bridge.finished:
            bridge.connection_lost()
            self.finish(error=False)
        self._maybe_done()

    def reset_by_peer(self) -> None:
        self._ended_local = self._ended_remote = True
        if self.bridge is not None:
            self.bridge.connection_lost()
        self._maybe_done()

    def _maybe_done(self) -> None:
        if self._ended_local and self._ended_remote:
            self.proto.tunnel_done(self.stream_id)

    # ------------------------------------------------------------ Tunnel

    @property
    def finished(self) -> bool:
        return self.bridge is None or self.bridge.finished

    def start(self) -> None:
        if self.bridge is not None:
            self.bridge.start()

    def refuse(self) -> None:
        if self.bridge is not None:
            self.bridge.finished = True
            self.bridge = None

    def connection_lost(self) -> None:
        # As in WSH1Protocol.connection_lost: outlet and bridge must not stay a cycle.
        bridge, self.bridge = self.bridge, None
        if bridge is not None:
            bridge.connection_lost()

    def shutdown(self) -> None:
        if self.bridge is not None:
            self.bridge.shutdown()

    def data_received(self, data: bytes) -> None:
        if self.bridge is not None:
            self.bridge.data_received(data)
        # Credit is given back as the bridge takes the bytes, unless the app's
        # message queue is full (then the window closes: backpressure).
        self.data_consumed(len(data))

    def data_consumed(self, nbytes: int) -> None:
        self._unacked += nbytes
        if not self._paused:
            self.proto.conn.acknowledge(self.stream_id, self._unacked)
            self._unacked = 0
            self.proto.schedule_flush()

    def pause_reading(self) -> None:
        self._paused = True

    def resume_reading(self) -> None:
        self._paused = False
        self.data_consumed(0)

    def drain(self) -> Awaitable[None] | None:
        """A waiter while the stream's send buffer is full (``--timeout-write`` applies)."""
        return self.proto.stream_drain(self.stream_id)


class WSH1Protocol(asyncio.Protocol):
    """The HTTP/1.1 outlet: owns the TCP transport from the Upgrade on."""

    #: Label of this connection in the open-connections metric.
    metrics_protocol = "websocket"
    handshake_status = 101

    def __init__(
        self,
        ctx: ServerContext,
        transport: Any,
        info: RequestInfo,
        default_headers: Callable[[], bytes],
    ) -> None:
        self.ctx = ctx
        self.transport = transport
        self._info = info
        #: The connection's default header block (no Alt-Svc in cleartext).
        self._default_headers = default_headers
        self.bridge: WSBridge | None = None
        self._write_paused = False
        self._waiters: list[asyncio.Future[None]] = []
        self._closed = False
        #: The framing of a denial response once its head went out.
        self._response: H1Response | None = None
        #: A peer that reads nothing while the app sends is dropped (``--timeout-write``).
        self._stall = WriteStallWatch(ctx.loop, ctx.write_timeout)
        self._abort_timer: asyncio.TimerHandle | None = None

    def start(self, bridge: WSBridge, data: bytes) -> None:
        self.bridge = bridge
        self.ctx.connections.add(self)
        bridge.start()
        if data:
            bridge.data_received(data)

    # ------------------------------------------------------------ transport callbacks

    def data_received(self, data: bytes) -> None:
        if self.bridge is not None:
            self.bridge.data_received(data)

    def eof_received(self) -> bool | None:
        return None

    def connection_lost(self, exc: Exception | None) -> None:
        self._closed = True
        self._stall.stop()
        if self._abort_timer is not None:
            self._abort_timer.cancel()
            self._abort_timer = None
        self.ctx.connections.discard(self)
        # The bridge's outlet is this object: let go of it, or the two would
        # be a cycle holding the transport until the cyclic collector runs.
        bridge, self.bridge = self.bridge, None
        if bridge is not None:
            bridge.connection_lost()
        self._wake()
        self.ctx.check_drained()

    def pause_writing(self) -> None:
        self._write_paused = True
        if not self._closed:
            self._stall.start(self.transport, self._stopped_reading)

    def resume_writing(self) -> None:
        self._write_paused = False
        self._stall.stop()
        self._wake()

    def _wake(self) -> None:
        waiters, self._waiters = self._waiters, []
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(None)

    def _stopped_reading(self) -> None:
        logger.info("WebSocket client stopped reading; closing the connection")
        if self.bridge is not None:
            self.bridge.connection_lost()
        self.abort()

    # ------------------------------------------------------------ Outlet

    def accept(self, headers: Headers) -> None:
        lines = [
            b"HTTP/1.1 101 Switching Protocols\r\nupgrade: websocket\r\nconnection: Upgrade\r\n",
            self._default_headers(),
        ]
        lines.extend(b"%b: %b\r\n" % (name, value) for name, value in headers)
        lines.append(b"\r\n")
        self.write(b"".join(lines))

    def http_response(self, status: int, headers: Headers, body: bytes, end: bool) -> None:
        if self._closed:
            return
        response = self._response
        if response is None:
            info = self._info
            info.keep_alive = False
            parts, self._response = H1Connection.start_response(
                info, status, headers, self._default_headers(), body, end
            )
        else:
            # A later chunk of a streamed denial body: only its framing.
            parts = response.end(body) if end else response.data(body)
        if parts:
            self.transport.writelines(parts)
        if end:
            close_transport(self.transport, self.ctx.loop)

    def write(self, data: bytes) -> None:
        if not self._closed:
            self.transport.write(data)

    def send(self, data: bytes) -> Awaitable[None] | None:
        if self._closed:
            return None
        transport = self.transport
        transport.write(data)
        # (A write that finds the connection gone leaves it closing: drain()
        # answers for that case as for a paused one.)
        if not self._write_paused and not transport.is_closing():
            return None
        return self.drain()

    def finish(self, error: bool) -> None:
        if self._closed:
            return
        # What was written (our close frame included) goes out, then the TCP
        # close; a peer that stopped reading does not hold the connection
        # open past the close timeout.
        close_transport(self.transport, self.ctx.loop)
        if self.transport.get_write_buffer_size():
            self._abort_timer = self.ctx.loop.call_later(
                self.ctx.config.websocket.ws_close_timeout, self.abort
            )

    def pause_reading(self) -> None:
        if not self._closed:
            self.transport.pause_reading()

    def resume_reading(self) -> None:
        if not self._closed:
            self.transport.resume_reading()

    def drain(self) -> Awaitable[None] | None:
        if self._closed:
            return None
        if not self._write_paused and not self.transport.is_closing():
            return None
        # Paused, or the connection is going away (reset by the peer):
        # connection_lost comes on a later loop iteration, so an app sending
        # in a loop must wait for it here instead of spinning on a dead
        # transport that no longer pauses it.
        waiter = self.ctx.loop.create_future()
        self._waiters.append(waiter)
        if self._write_paused:
            self._stall.start(self.transport, self._stopped_reading)
        return waiter

    # ------------------------------------------------------------ server lifecycle

    def shutdown(self) -> None:
        if self.bridge is not None:
            self.bridge.shutdown()

    def abort(self) -> None:
        if not self._closed:
            self.transport.abort()
