"""HTTP/1.1 over an asyncio transport: the I/O edge of :mod:`asgiri.protocol.h1`.

This is a plain ``asyncio.Protocol``: bytes arrive in ``data_received``, go
through the sans-I/O :class:`~asgiri.protocol.h1.H1Connection`, and each
request becomes one :class:`~asgiri.asgi.http_stream.HTTPStream`, for which
this class is the sink.

Pipelined requests are parsed as they arrive but answered strictly in order:
the stream being answered is ``_current``; later ones wait in ``_queue``
(their bodies already buffer into their own streams).  Reading pauses when
the stream being read holds more than ``HIGH_WATER`` unread bytes or too
many requests are queued, which is what bounds memory for slow apps.

Timers: while idle between requests the keep-alive timer runs; once the
first byte of a request head arrives the header timer runs until the head
is complete (a client dribbling headers, slowloris, is cut off with 408).
"""

from __future__ import annotations

import asyncio
import logging
import os
import weakref
from collections import deque
from typing import Any

from ..asgi.access_log import Answered, answered_scope
from ..asgi.http_stream import HTTPStream
from ..asgi.scope import http_scope, websocket_scope
from ..protocol.errors import RemoteProtocolError
from ..protocol.events import Body, EndBody, Headers, Request
from ..protocol.h1 import (
    CONTINUE_RESPONSE,
    H1Connection,
    H1Response,
    RequestInfo,
)
from ..protocol.h2_common import PREFACE
from ..protocol.proxy_headers import TrustedProxies
from ..protocol.ws_handshake import HandshakeError, check_h1_handshake, negotiate_extensions
from .closing import close_transport
from .context import ServerContext
from .h2 import H2Protocol
from .stall import WriteStallWatch
from .tasks import start_app
from .tls import tls_extension
from .ws import WSBridge, WSH1Protocol

logger = logging.getLogger("asgiri.error")

#: Loop classes whose ``sendfile`` really uses os.sendfile (uvloop's does not
#: implement it; there file bodies go through the chunked path).
_NATIVE_SENDFILE: dict[type, bool] = {}

HIGH_WATER = 64 * 1024
LOW_WATER = 16 * 1024
MAX_PIPELINE = 16

_H2C_HOP_BY_HOP = frozenset({b"connection", b"upgrade", b"http2-settings", b"keep-alive"})
#: The start of the HTTP/2 preface that no HTTP/1.1 request line can have.
_PRI = PREFACE[:14]
_IDLE = 1
_HEADER = 2

#: On graceful shutdown a keep-alive connection is closed only once it has been
#: idle this long (at most the keep-alive timeout).  A client that has just read
#: a response may already be sending its next request; closing under it would
#: fail that request (or reset it, with the request unread in our buffer).  Given
#: this moment, the request arrives and is answered with ``connection: close``.
SHUTDOWN_IDLE_GRACE = 1.0


class H1Protocol(asyncio.Protocol):
    """One HTTP/1.1 connection."""

    #: Label of this connection in the open-connections metric.
    metrics_protocol = "h1"

    def __init__(
        self,
        ctx: ServerContext,
        addresses: tuple[tuple[str, int], tuple[str, int]] | None = None,
    ) -> None:
        """``addresses`` (client, server) replace the socket's, from a PROXY protocol header."""
        self.ctx = ctx
        self._addresses = addresses
        self.loop = ctx.loop
        limits = ctx.config.limits
        self.conn = H1Connection(
            max_header_size=limits.limit_request_header_size,
            max_request_line=limits.limit_request_line,
            max_fields=limits.limit_request_fields,
            max_body=limits.limit_request_body,
            max_requests=MAX_PIPELINE,
        )
        self.transport: Any = None
        #: Set by the server while this connection's TLS handshake runs.
        self.handshake: weakref.finalize[Any, Any] | None = None
        loop_type = type(self.loop)
        if loop_type not in _NATIVE_SENDFILE:
            _NATIVE_SENDFILE[loop_type] = (
                loop_type.sendfile is not asyncio.AbstractEventLoop.sendfile
            )
        self.scheme = "http"
        #: The server's header block for this connection's responses (no Alt-Svc in cleartext).
        self._default_headers = ctx.default_headers
        self.client: tuple[str, int] | None = None
        self.server: tuple[str, int | None] | None = None
        self.extensions: dict[str, Any] = {}
        self.forwarded: TrustedProxies | None = None
        self._current: HTTPStream | None = None
        self._info: RequestInfo | None = None
        self._response: H1Response | None = None
        self._reading: HTTPStream | None = None
        self._queue: deque[tuple[HTTPStream, RequestInfo]] = deque()
        self._timer: asyncio.TimerHandle | None = None
        self._timer_kind = 0
        self._deadline = 0.0
        self._read_paused = False
        #: Parsing of held bytes is scheduled (see _maybe_resume_reading).
        self._parse_scheduled = False
        #: Input after a bad pipelined request is never read again.
        self._input_stopped = False
        self._write_paused = False
        self._drain_waiters: list[asyncio.Future[None]] = []
        self._stall = WriteStallWatch(ctx.loop, ctx.write_timeout, self._stopped_reading)
        self._closing = False
        self._closed = False
        self._tls = False
        #: Cleartext and HTTP/2 enabled: the first bytes still have to be checked.
        self._detect = False
        self._prefix = b""
        self._switched = False
        #: An h2c Upgrade waiting for the rest of its request body: (upgrade, body so far).
        self._h2c_wait: tuple[Any, bytes] | None = None

    # ------------------------------------------------------------ transport callbacks

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport
        self.ctx.connections.add(self)
        if self.handshake is not None:
            self.handshake()
            self.handshake = None
        peer = transport.get_extra_info("peername")
        if isinstance(peer, tuple) and len(peer) >= 2:
            self.client = (str(peer[0]), int(peer[1]))
        sock = transport.get_extra_info("sockname")
        if isinstance(sock, tuple) and len(sock) >= 2:
            self.server = (str(sock[0]), int(sock[1]))
        elif isinstance(sock, str) and sock:
            self.server = (sock, None)
        if self._addresses is not None:
            self.client, self.server = self._addresses
        #: Trusted proxy whose forwarding headers apply to this connection's requests.
        self.forwarded = self.ctx.forwarded_for(self.client)
        ssl_object = transport.get_extra_info("ssl_object")
        self.extensions = {
            "http.response.trailers": {},
            "http.response.early_hint": {},
            "http.response.pathsend": {},
        }
        if ssl_object is not None:
            self._tls = True
            self.scheme = "https"
            self.extensions["tls"] = tls_extension(ssl_object, self.ctx)
        else:
            self.extensions["http.response.zerocopy"] = {}
            self._default_headers = self.ctx.cleartext_headers
        if self.ctx.shutting_down:
            self._closing = True
        ctx = self.ctx
        if ssl_object is not None:
            if ssl_object.selected_alpn_protocol() == "h2" and ctx.h2_enabled:
                self._switch_to_h2(b"")
                return
            if not ctx.h1_enabled:
                # HTTP/2 only, and the client did not choose h2 through ALPN.
                transport.close()
                return
        else:
            self._detect = ctx.h2_enabled
        self._arm(_IDLE)

    def connection_lost(self, exc: Exception | None) -> None:
        self._closed = True
        self.ctx.connections.discard(self)
        self._stop_timer()
        if self._current is not None:
            self._current.disconnect()
        if self._reading is not None:
            self._reading.disconnect()
        for stream, _ in self._queue:
            stream.disconnect()
        self._queue.clear()
        self._wake_writers()
        self.ctx.check_drained()

    def pause_writing(self) -> None:
        # A client that does not read its responses must not make the server
        # read (and answer) more of its requests: pipelined requests would
        # otherwise pile their responses up in the write buffer without bound.
        self._write_paused = True
        self._pause_reading()
        if not self._closed:
            self._stall.start(self.transport)

    def resume_writing(self) -> None:
        self._write_paused = False
        self._wake_writers()
        self._start_next()
        self._maybe_resume_reading()

    def _wake_writers(self) -> None:
        self._stall.stop()
        waiters, self._drain_waiters = self._drain_waiters, []
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(None)

    def data_received(self, data: bytes) -> None:
        if self._h2c_wait is not None:
            upgrade, received = self._h2c_wait
            self._h2c_wait = None
            self._finish_h2c(upgrade, received + data)
            return
        if self._detect:
            # The first bytes of a cleartext connection decide its protocol:
            # the HTTP/2 preface (even split over reads) means prior knowledge.
            data = self._prefix + data
            n = min(len(data), len(PREFACE))
            if data[:n] == PREFACE[:n]:
                if n < len(PREFACE):
                    self._prefix = data
                    return
                self._switch_to_h2(data)
                return
            if data.startswith(_PRI):
                # An HTTP/2 preface gone wrong is HTTP/2's to answer: a
                # connection error PROTOCOL_ERROR (RFC 9113 3.4), not a 505.
                self._switch_to_h2(data)
                return
            self._detect = False
            self._prefix = b""
            if not self.ctx.h1_enabled:
                self._answer(505, "This server speaks HTTP/2 only", None)
                return
        self._receive(data)

    def _receive(self, data: bytes) -> None:
        """Parse received (or held, ``b""``) bytes and act on the requests they complete."""
        # The idle timer keeps running until a request head begins: empty
        # lines between requests (RFC 9112 2.2) must not keep a connection open.
        try:
            events = self.conn.receive_data(data)
            while not self._dispatch(events):
                # An Upgrade this server does not act on: HTTP/1.1 goes on,
                # body of the Upgrade request included.
                events = self.conn.decline_upgrade()
        except RemoteProtocolError as exc:
            self._protocol_error(exc)
            return
        if self._switched:
            return
        if self.conn.holding:
            # More pipelined requests than are queued at once: the rest of
            # the bytes wait in the parser, and no more are read meanwhile.
            self._pause_reading()
        self._start_next()
        if self.conn.in_head and self._timer_kind != _HEADER and self._current is None:
            self._arm(_HEADER)

    def _parse_held(self) -> None:
        self._parse_scheduled = False
        if not self._closed and not self._switched and not self._input_stopped:
            self._receive(b"")
            self._maybe_resume_reading()

    def _dispatch(self, events: list[Any]) -> bool:
        """Hand parsed events to their streams; False when an Upgrade must be declined."""
        for event in events:
            kind = type(event)
            if kind is Body:
                reading = self._reading
                if reading is not None:
                    reading.body_received(event.data)
                    if reading.buffered > HIGH_WATER and not self._read_paused:
                        self._pause_reading()
            elif kind is Request:
                upgrade = self.conn.upgrade_to
                if upgrade is not None:
                    if upgrade == b"h2c" and self._h2c_acceptable(event):
                        self._upgrade_h2c(event)
                        return True
                    if (
                        upgrade == b"websocket"
                        and self.ctx.ws_enabled
                        and self._current is None
                        and not self._queue
                    ):
                        self._upgrade_websocket(event)
                        return True
                self._on_request(event)
            elif kind is EndBody and self._reading is not None:
                self._reading.body_ended()
        return not self.conn.upgraded

    # ------------------------------------------------------------ switching to HTTP/2

    def _h2c_acceptable(self, request: Request) -> bool:
        """RFC 7540 section 3.2: cleartext only, one HTTP2-Settings, a body we can frame.

        A body larger than one stream window, chunked, or held back until a
        100 Continue is not worth the switch: the upgrade is declined and the
        request served as HTTP/1.1.
        """
        if self._tls or not self.ctx.h2_enabled or self._current is not None or self._queue:
            return False
        settings = [v for n, v in request.headers if n == b"http2-settings"]
        if len(settings) != 1:
            return False
        for name, value in request.headers:
            if name == b"transfer-encoding":
                return False
            if name == b"content-length":
                length = int(value)
                if length > self.ctx.h2_limits.initial_window_size:
                    return False
                if length and request.expect_continue:
                    # The 101 waits for the body, the client for a 100 before
                    # sending it: HTTP/1.1 answers both in the right order.
                    return False
        return True

    def _upgrade_h2c(self, request: Request) -> None:
        settings = next(v for n, v in request.headers if n == b"http2-settings")
        length = 0
        for name, value in request.headers:
            if name == b"content-length":
                length = int(value)
        request.stream_id = 1
        request.http_version = "2"
        # Hop-by-hop headers of the HTTP/1.1 request mean nothing on stream 1.
        request.headers = [(n, v) for n, v in request.headers if n not in _H2C_HOP_BY_HOP]
        self._finish_h2c((request, settings, length), self.conn.trailing_data)

    def _finish_h2c(self, upgrade: tuple[Request, bytes, int], data: bytes) -> None:
        if len(data) < upgrade[2] <= self.ctx.h2_limits.initial_window_size:
            # The 101 waits for the whole body (at most one stream window):
            # clients such as curl stop sending the body once the 101 is in.
            self._h2c_wait = (upgrade, data)
            self._arm(_HEADER)
            return
        self.transport.write(
            b"HTTP/1.1 101 Switching Protocols\r\nconnection: Upgrade\r\nupgrade: h2c\r\n\r\n"
        )
        self._switch_to_h2(data, upgrade)

    def _upgrade_websocket(self, request: Request) -> None:
        """RFC 6455 opening handshake: the app answers it through the ASGI scope."""
        info = self.conn.request_info(request)
        try:
            key = check_h1_handshake(request.method, request.headers)
        except HandshakeError as exc:
            self._answer(exc.status, str(exc), request, exc.headers)
            return
        ctx = self.ctx
        if not ctx.request_started():
            # A WebSocket counts as a request for --limit-concurrency.
            self._answer(503, "Service Unavailable", request)
            return
        extensions, extension_header = negotiate_extensions(
            request.headers,
            ctx.config.websocket.ws_per_message_deflate,
            ctx.config.websocket.ws_deflate_level,
        )
        scope = websocket_scope(
            request,
            "wss" if self._tls else "ws",
            self.client,
            self.server,
            ctx.root_path,
            ctx.state,
            self.extensions,
            forwarded=self.forwarded,
        )
        self._stop_timer()
        self._switched = True
        ctx.connections.discard(self)
        proto = WSH1Protocol(ctx, self.transport, info, self._default_headers)
        bridge = WSBridge(
            ctx,
            proto,
            scope,
            request.stream_id,
            key=key,
            extensions=extensions,
            extension_header=extension_header,
            request=request,
        )
        self.transport.set_protocol(proto)
        if self._read_paused:
            self._read_paused = False
            self.transport.resume_reading()
        proto.start(bridge, self.conn.trailing_data)

    def _switch_to_h2(self, data: bytes, upgrade: Any = None) -> None:
        """Hand the transport to an HTTP/2 connection; this object is done."""
        self._stop_timer()
        self._switched = True
        self.ctx.connections.discard(self)
        extensions = {k: v for k, v in self.extensions.items() if k != "http.response.zerocopy"}
        proto = H2Protocol(
            self.ctx,
            self.transport,
            scheme=self.scheme,
            client=self.client,
            server=self.server,
            extensions=extensions,
            forwarded=self.forwarded,
        )
        self.transport.set_protocol(proto)
        if self._read_paused:
            self._read_paused = False
            self.transport.resume_reading()
        try:
            proto.start(data, upgrade)
        except Exception:
            logger.exception("HTTP/2 connection failed to start")
            self.transport.abort()

    # ------------------------------------------------------------ requests

    def _on_request(self, request: Request) -> None:
        self._timer_kind = 0  # the lazy timer: see _arm
        info = self.conn.request_info(request)
        ctx = self.ctx
        scope = http_scope(
            request,
            self.scheme,
            self.client,
            self.server,
            ctx.root_path,
            ctx.state,
            self.extensions,
            forwarded=self.forwarded,
        )
        stream = HTTPStream(
            self,
            self.loop,
            scope,
            request.stream_id,
            expect_continue=request.expect_continue and info.http11,
            on_complete=ctx.exchange_done,
        )
        self._reading = stream
        # Started once this read's events are all dispatched (see data_received),
        # so that a body that came in the same read is already there.
        self._queue.append((stream, info))
        if len(self._queue) >= MAX_PIPELINE:
            self._pause_reading()

    def _start_next(self) -> None:
        """Start the first queued request, unless one runs or writing is paused.

        A response sent as one body message never waits for the transport
        to drain; starting the next pipelined request while writing is
        paused would pile every answer of a client that does not read into
        the write buffer.  It starts on :meth:`resume_writing` instead.
        """
        if self._current is None and self._queue and not self._write_paused and not self._closed:
            self._start(*self._queue.popleft())

    def _start(self, stream: HTTPStream, info: RequestInfo) -> None:
        self._current = stream
        self._info = info
        self._response = None
        ctx = self.ctx
        if self._closing or ctx.shutting_down:
            info.keep_alive = False
        if not ctx.request_started():
            stream.disconnect()
            self._answer(503, "Service Unavailable", scope=stream.scope)
            return
        start_app(ctx, stream)

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
        info = self._info
        if stream is not self._current or info is None or self._closed:
            return
        parts, self._response = H1Connection.start_response(
            info, status, headers, self._default_headers(), body, end, trailers and info.http11
        )
        self._send(parts)

    def send_body(self, stream: HTTPStream, data: bytes, end: bool) -> None:
        response = self._response
        if stream is not self._current or response is None or self._closed:
            return
        self._send(response.end(data) if end else response.data(data))

    def send_trailers(self, stream: HTTPStream, trailers: Headers) -> None:
        response = self._response
        if stream is not self._current or response is None or self._closed:
            return
        self._send(response.end(b"", trailers))

    def _send(self, parts: list[bytes]) -> None:
        # One buffer is the common case; several mean a large body kept
        # apart from its framing, which writelines sends without joining
        # (uvloop, and asyncio from 3.12, use writev/sendmsg).
        if len(parts) == 1:
            self.transport.write(parts[0])
        elif parts:
            self.transport.writelines(parts)

    def send_informational(self, stream: HTTPStream, status: int, headers: Headers) -> None:
        info = self._info
        if stream is not self._current or info is None or not info.http11 or self._closed:
            return
        if self._response is not None:
            return
        if status == 100:
            self.transport.write(CONTINUE_RESPONSE)
        else:
            self.transport.write(H1Connection.informational(status, headers))

    def drain(self, stream: HTTPStream) -> asyncio.Future[None] | None:
        if not self._write_paused or self._closed:
            return None
        waiter = self.loop.create_future()
        self._drain_waiters.append(waiter)
        # A client that stops reading must not hold the app forever.
        self._stall.start(self.transport)
        return waiter

    def _stopped_reading(self) -> None:
        logger.info("client %s stopped reading; closing the connection", self.client)
        self.abort()

    def body_consumed(self, stream: HTTPStream, nbytes: int) -> None:
        if self._read_paused and stream is self._reading:
            self._maybe_resume_reading()

    def sendfile(
        self, stream: HTTPStream, file: Any, offset: int, count: int | None, end: bool
    ) -> Any:
        response = self._response
        if (
            self._tls
            or not _NATIVE_SENDFILE.get(type(self.loop), False)
            or response is None
            or response.chunked
            or stream is not self._current
            or self._closed
        ):
            return None
        if count is None:
            count = max(0, os.fstat(file.fileno()).st_size - offset)
        return self._sendfile(response, file, offset, count, end)

    async def _sendfile(
        self, response: H1Response, file: Any, offset: int, count: int, end: bool
    ) -> None:
        response.account(count)
        try:
            await self.loop.sendfile(self.transport, file, offset, count, fallback=True)
        except (ConnectionError, RuntimeError):
            if self._current is not None:
                self._current.disconnect()
            return
        if end:
            response.end()

    def response_complete(self, stream: HTTPStream) -> None:
        if stream is not self._current:
            return
        response = self._response
        keep_alive = (
            response is not None
            and response.keep_alive
            and stream.request_complete
            and not self.conn.upgraded
        )
        if not keep_alive or (self._closing and not self._queue):
            self._close()
            return
        self._current = None
        self._info = None
        self._response = None
        if self._queue:
            self._start_next()
        elif self.conn.in_head:
            self._arm(_HEADER)
        else:
            self._arm(_IDLE)
        if self._read_paused:
            self._maybe_resume_reading()

    def app_done(self, stream: HTTPStream, failed: bool) -> None:
        ctx = self.ctx
        ctx.request_finished()
        task = stream.task
        if task is not None:
            ctx.tasks.discard(task)
            ctx.check_drained()
        if failed and stream is self._current and not self._closed:
            # The response cannot be completed: closing is the only way to
            # tell an HTTP/1.1 client that what it received is truncated.
            self._close()

    # ------------------------------------------------------------ lifecycle

    def shutdown(self) -> None:
        """Graceful shutdown: finish the request in flight, then close.

        An idle connection closes once it has been idle for
        :data:`SHUTDOWN_IDLE_GRACE`; one with a request head on its way
        gets that request answered first.
        """
        self._closing = True
        if self._current is not None:
            if self._info is not None:
                self._info.keep_alive = False
            return
        if self._queue:
            return  # started once writing resumes, answered with connection: close
        if self._timer_kind == _HEADER:
            return  # the request comes, is answered with connection: close
        if self._timer_kind == _IDLE:
            keep_alive = self.ctx.keep_alive_timeout
            close_at = self._deadline - keep_alive + min(SHUTDOWN_IDLE_GRACE, keep_alive)
            if close_at > self.loop.time():
                self._deadline = close_at
                if self._timer is not None:
                    self._timer.cancel()
                self._timer = self.loop.call_at(close_at, self._on_timer)
                return
        self._close()

    def abort(self) -> None:
        if self.transport is not None and not self._closed:
            self.transport.abort()

    def _protocol_error(self, exc: RemoteProtocolError) -> None:
        logger.debug("HTTP/1.1 protocol error from %s: %s", self.client, exc)
        reading = self._reading
        if reading is not None and not reading.request_complete:
            reading.disconnect()
        current = self._current
        if current is None or (current is reading and not current.response_started):
            if reading is not None and not reading.request_complete:
                self._answer(exc.status, str(exc), scope=reading.scope)
            else:
                self._answer(exc.status, str(exc), exc.request)
        elif current is reading:
            self._close()
        else:
            # A pipelined request behind the one being answered is bad: finish
            # the current response, then close.
            self._queue.clear()
            self._closing = True
            self._input_stopped = True
            self._pause_reading()

    def _answer(
        self,
        status: int,
        reason: str,
        request: Request | None = None,
        extra: Headers | None = None,
        *,
        scope: dict[str, Any] | None = None,
    ) -> None:
        """A response from the server itself, in place of the app; the connection closes.

        ``scope`` (the request's, when its head was parsed) or ``request``
        names the request in its access-log line.
        """
        ctx = self.ctx
        data, size = ctx.h1_answer(status, reason, self._default_headers(), extra)
        self._write(data)
        self._close()
        if scope is None:
            scope = answered_scope(
                request,
                request.http_version if request is not None else "1.1",
                self.scheme,
                self.client,
            )
        ctx.log_exchange(Answered(scope, status, size))

    def _write(self, data: bytes) -> None:
        if not self._closed and self.transport is not None:
            self.transport.write(data)

    def _close(self) -> None:
        self._stop_timer()
        if not self._closed and self.transport is not None:
            close_transport(self.transport, self.loop)

    def _pause_reading(self) -> None:
        if not self._read_paused and not self._closed:
            self._read_paused = True
            self.transport.pause_reading()

    def _resume_reading(self) -> None:
        if self._read_paused and not self._closed:
            self._read_paused = False
            self.transport.resume_reading()

    def _maybe_resume_reading(self) -> None:
        """Read again once no reason to pause is left (see ``_pause_reading`` callers)."""
        reading = self._reading
        if (
            self._read_paused
            and not self._write_paused
            and not self._input_stopped
            and (reading is None or reading.buffered < LOW_WATER)
            and len(self._queue) < MAX_PIPELINE
            and not self.conn.upgraded
        ):
            if self.conn.holding:
                # Parsed outside of the caller (which may be an app's receive()).
                if not self._parse_scheduled:
                    self._parse_scheduled = True
                    self.loop.call_soon(self._parse_held)
                return
            self._resume_reading()

    # ------------------------------------------------------------ timers

    # One lazily re-armed timer per connection: arming only moves a deadline,
    # so a busy keep-alive connection does not create and cancel a timer
    # handle for every request.  When the handle fires early (the deadline
    # moved), it re-arms itself for the remainder.

    def _arm(self, kind: int) -> None:
        if self._closed:
            return
        delay = self.ctx.keep_alive_timeout if kind == _IDLE else self.ctx.header_timeout
        self._timer_kind = kind
        deadline = self._deadline = self.loop.time() + delay
        timer = self._timer
        if timer is not None:
            if timer.when() <= deadline:
                return
            timer.cancel()
        self._timer = self.loop.call_at(deadline, self._on_timer)

    def _stop_timer(self) -> None:
        self._timer_kind = 0
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _on_timer(self) -> None:
        self._timer = None
        kind = self._timer_kind
        if kind == 0 or self._closed:
            return
        if self.loop.time() < self._deadline:
            self._timer = self.loop.call_at(self._deadline, self._on_timer)
            return
        self._timer_kind = 0
        if self._current is not None:
            return
        if kind == _HEADER and self.conn.in_head:
            self._answer(408, "Request Timeout")
            return
        self._close()
