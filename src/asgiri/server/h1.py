"""HTTP/1.1 over an asyncio transport: the I/O edge of :mod:`asgiri.protocol.h1`.

This is a plain ``asyncio.Protocol``.  Bytes arrive in ``data_received``
and go to the sans-I/O :class:`~asgiri.protocol.h1.H1Connection`, which
holds every HTTP/1.1 rule: framing, keep-alive, which pipelined request is
answered next, whether an Upgrade can be offered.  This class does what
needs an event loop: each request becomes one
:class:`~asgiri.asgi.http_stream.HTTPStream` whose app runs as a task and
for which this class is the sink (its calls become connection calls whose
bytes are written), plus timers, backpressure and the server lifecycle
(admission, server answers, access log, drain).

Pipelined requests are parsed as they arrive and their streams created at
once (a body buffers into its own stream), kept in ``_streams`` until the
connection says it is their turn (``next_request``).  Reading pauses when
the stream being read holds more than ``HIGH_WATER`` unread bytes, when
``MAX_PIPELINE`` requests wait, when the connection holds bytes it has not
parsed yet, or while writing is paused: that is what bounds memory for
slow apps and for clients that do not read.

What a connection speaks, if not HTTP/1.1 (HTTP/2 by ALPN, preface or h2c
Upgrade; WebSocket), is decided and handed over in :mod:`asgiri.server.switch`.

Timers: while idle between requests the keep-alive timer runs; once the
first byte of a request head arrives the header timer runs until the head
is complete (a client dribbling headers, slowloris, is cut off with 408).
"""

from __future__ import annotations

import asyncio
import logging
import os
import weakref
from typing import Any

from ..asgi.access_log import Answered, answered_scope
from ..asgi.http_stream import HTTPStream
from ..asgi.scope import http_scope
from ..protocol.errors import RemoteProtocolError
from ..protocol.events import Body, EndBody, Headers, Request
from ..protocol.h1 import AfterError, H1Connection, H1Event, ReadState, WriteState
from ..protocol.proxy_headers import TrustedProxies
from . import switch
from .closing import close_transport
from .context import ServerContext
from .stall import WriteStallWatch
from .switch import Switching
from .tasks import start_app
from .tls import tls_extension

logger = logging.getLogger("asgiri.error")

#: Loop classes whose ``sendfile`` really uses os.sendfile (uvloop's does not
#: implement it; there file bodies go through the chunked path).
_NATIVE_SENDFILE: dict[type, bool] = {}

HIGH_WATER = 64 * 1024
LOW_WATER = 16 * 1024
MAX_PIPELINE = 16

_IDLE = 1
_HEADER = 2
_READ_HEAD = ReadState.HEAD
_WRITE_IDLE = WriteState.IDLE

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
        self.tls = False
        #: The server's header block for this connection's responses (no Alt-Svc in cleartext).
        self.default_headers = ctx.default_headers
        self.client: tuple[str, int] | None = None
        self.server: tuple[str, int | None] | None = None
        self.extensions: dict[str, Any] = {}
        self.forwarded: TrustedProxies | None = None
        #: Bytes go here instead of to HTTP/1.1 while a switch is decided or prepared.
        self.switching: Switching | None = None
        #: The stream being answered; the one whose request was parsed last;
        #: streams parsed and waiting for their turn, by request number.
        self._current: HTTPStream | None = None
        self._reading: HTTPStream | None = None
        self._streams: dict[int, HTTPStream] = {}
        self._timer: asyncio.TimerHandle | None = None
        self._timer_kind = 0
        self._deadline = 0.0
        self._read_paused = False
        #: Parsing of held bytes is scheduled (see _maybe_resume_reading).
        self._parse_scheduled = False
        self._write_paused = False
        self._drain_waiters: list[asyncio.Future[None]] = []
        self._stall = WriteStallWatch(ctx.loop, ctx.write_timeout)
        self._closed = False
        self._switched = False

    # ------------------------------------------------------------ transport callbacks

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport
        ctx = self.ctx
        ctx.connections.add(self)
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
        self.forwarded = ctx.forwarded_for(self.client)
        ssl_object = transport.get_extra_info("ssl_object")
        self.extensions = {
            "http.response.trailers": {},
            "http.response.early_hint": {},
            "http.response.pathsend": {},
        }
        alpn = None
        if ssl_object is not None:
            self.tls = True
            self.scheme = "https"
            self.extensions["tls"] = tls_extension(ssl_object, ctx)
            alpn = ssl_object.selected_alpn_protocol()
        else:
            self.extensions["http.response.zerocopy"] = {}
            self.default_headers = ctx.cleartext_headers
        if ctx.shutting_down:
            self.conn.close_when_done()
        if switch.choose(self, alpn):
            self._arm(_IDLE)

    def connection_lost(self, exc: Exception | None) -> None:
        self._closed = True
        self.ctx.connections.discard(self)
        self._stop_timer()
        if self._current is not None:
            self._current.disconnect()
        if self._reading is not None:
            self._reading.disconnect()
        for stream in self._streams.values():
            stream.disconnect()
        self._streams.clear()
        self._wake_writers()
        self._release()
        self.ctx.check_drained()

    def _release(self) -> None:
        """Let go of what points back at this object, now that the connection is over.

        A stream's sink is this object and the parser's callbacks are the
        codec's methods: kept, those cycles would leave every closed
        connection, its transport and TLS buffers included, to the cyclic
        garbage collector instead of freeing it when its last reference goes.
        """
        self._current = None
        self._reading = None
        self.conn.release()

    def pause_writing(self) -> None:
        # A client that does not read its responses must not make the server
        # read (and answer) more of its requests: pipelined requests would
        # otherwise pile their responses up in the write buffer without bound.
        self._write_paused = True
        self._pause_reading()
        if not self._closed:
            self._stall.start(self.transport, self._stopped_reading)

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
        switching = self.switching
        if switching is not None:
            data = switching.received(data)
            if not data:
                return
        self._receive(data)

    def _receive(self, data: bytes) -> None:
        """Parse received (or held, ``b""``) bytes and act on the requests they complete."""
        # The idle timer keeps running until a request head begins: empty
        # lines between requests (RFC 9112 2.2) must not keep a connection open.
        try:
            self._dispatch(self.conn.receive_data(data))
        except RemoteProtocolError as exc:
            self._protocol_error(exc)
            return
        if self._switched:
            return
        conn = self.conn
        if conn.holding:
            # More pipelined requests than are parsed at once: the rest of
            # the bytes wait in the parser, and no more are read meanwhile.
            self._pause_reading()
        self._start_next()
        if conn.read_state is _READ_HEAD and self._timer_kind != _HEADER and self._current is None:
            self._arm(_HEADER)

    def _parse_held(self) -> None:
        self._parse_scheduled = False
        if not self._closed and not self._switched:
            self._receive(b"")
            self._maybe_resume_reading()

    def _dispatch(self, events: list[H1Event]) -> None:
        """Hand parsed events to their streams (started later, in order: _start_next)."""
        event: Any  # one type test per event, not an isinstance chain
        for event in events:
            kind = type(event)
            if kind is Body:
                reading = self._reading
                if reading is not None:
                    reading.body_received(event.data)
                    if reading.buffered > HIGH_WATER and not self._read_paused:
                        self._pause_reading()
            elif kind is Request:
                self._on_request(event)
            elif kind is EndBody:
                if self._reading is not None:
                    self._reading.body_ended()
            # The last event of its read: an Upgrade the connection can offer.
            elif not switch.upgrade(self, event):
                self._dispatch(self.conn.decline_upgrade())

    # ------------------------------------------------------------ switching (see switch.py)

    def hand_over(self, proto: asyncio.BaseProtocol) -> None:
        """The transport now belongs to ``proto``; this object is done."""
        self._stop_timer()
        self._switched = True
        self.ctx.connections.discard(self)
        self.transport.set_protocol(proto)
        if self._read_paused:
            self._read_paused = False
            self.transport.resume_reading()
        self._release()

    def wait_for(self, switching: Switching) -> None:
        """Received bytes go to ``switching``; they must come within the header timeout."""
        self.switching = switching
        self._arm(_HEADER)

    # ------------------------------------------------------------ requests

    def _on_request(self, request: Request) -> None:
        self._timer_kind = 0  # the lazy timer: see _arm
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
            # Sent only to HTTP/1.1 clients: the connection says (send_informational).
            expect_continue=request.expect_continue,
            on_complete=ctx.exchange_done,
            head_flush=ctx.head_flush,
        )
        self._reading = stream
        # Started once this read's events are all dispatched (see _receive),
        # so that a body that came in the same read is already there.
        streams = self._streams
        streams[request.stream_id] = stream
        if len(streams) >= MAX_PIPELINE:
            self._pause_reading()

    def _start_next(self) -> None:
        """Start the request the connection says is next, unless writing is paused.

        A response sent as one body message never waits for the transport
        to drain; starting the next pipelined request while writing is
        paused would pile every answer of a client that does not read into
        the write buffer.  It starts on :meth:`resume_writing` instead.
        """
        if self._write_paused or self._closed:
            return
        stream_id = self.conn.next_request()
        if stream_id is not None:
            self._start(self._streams.pop(stream_id))

    def _start(self, stream: HTTPStream) -> None:
        self._current = stream
        ctx = self.ctx
        if ctx.shutting_down:
            self.conn.close_when_done()
        if not ctx.request_started():
            stream.disconnect()
            self.answer(503, "Service Unavailable", scope=stream.scope)
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
        if stream is not self._current or self._closed:
            return
        defaults = self.default_headers()
        parts = self.conn.send_response(status, headers, defaults, body, end, trailers)
        if len(parts) == 1:
            self.transport.write(parts[0])  # the usual response: head and body in one buffer
        else:
            self._send(parts)

    def send_body(self, stream: HTTPStream, data: bytes, end: bool) -> None:
        if stream is not self._current or self._closed:
            return
        self._send(self.conn.send_data(data, end))

    def send_trailers(self, stream: HTTPStream, trailers: Headers) -> None:
        if stream is not self._current or self._closed:
            return
        self._send(self.conn.send_trailers(trailers))

    def _send(self, parts: list[bytes]) -> None:
        # One buffer is the common case; several mean a large body kept
        # apart from its framing, which writelines sends without joining
        # (uvloop, and asyncio from 3.12, use writev/sendmsg).
        if len(parts) == 1:
            self.transport.write(parts[0])
        elif parts:
            self.transport.writelines(parts)

    def send_informational(self, stream: HTTPStream, status: int, headers: Headers) -> None:
        if stream is not self._current or self._closed:
            return
        data = self.conn.send_informational(status, headers)
        if data:
            self.transport.write(data)

    def drain(self, stream: HTTPStream) -> asyncio.Future[None] | None:
        if not self._write_paused or self._closed:
            return None
        waiter = self.loop.create_future()
        self._drain_waiters.append(waiter)
        # A client that stops reading must not hold the app forever.
        self._stall.start(self.transport, self._stopped_reading)
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
        if (
            self.tls
            or not _NATIVE_SENDFILE.get(type(self.loop), False)
            or stream is not self._current
            or self._closed
            or not self.conn.raw_body
        ):
            return None
        if count is None:
            count = max(0, os.fstat(file.fileno()).st_size - offset)
        return self._sendfile(file, offset, count, end)

    async def _sendfile(self, file: Any, offset: int, count: int, end: bool) -> None:
        self.conn.send_raw(count)
        try:
            await self.loop.sendfile(self.transport, file, offset, count, fallback=True)
        except (ConnectionError, RuntimeError):
            if self._current is not None:
                self._current.disconnect()
            return
        if end:
            self._send(self.conn.send_data(b"", True))

    def response_complete(self, stream: HTTPStream) -> None:
        if stream is not self._current:
            return
        conn = self.conn
        if conn.write_state is not _WRITE_IDLE:
            # The response was the connection's last (or never went out whole).
            self._close()
            return
        self._current = None
        if self._streams:
            self._start_next()
        elif conn.read_state is _READ_HEAD:
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
        self.conn.close_when_done()
        if self._current is not None:
            return
        if self._streams:
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
        broken = self._reading
        if broken is not None and not broken.request_complete:
            # Its body will never be complete: its app sees the client gone.
            broken.disconnect()
        else:
            broken = None
        after = self.conn.after_error
        if after is AfterError.ANSWER:
            if broken is not None:
                self.answer(exc.status, str(exc), scope=broken.scope)
            else:
                self.answer(exc.status, str(exc), exc.request)
        elif after is AfterError.CLOSE:
            self._close()
        else:
            # FINISH: the response under way ends, then the connection closes.
            self._pause_reading()

    def answer(
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
        if self._current is not None:
            # Its app must not write after this answer: to it the client is gone.
            self._current.disconnect()
        data, size = ctx.h1_answer(status, reason, self.default_headers(), extra)
        if not self._closed and self.transport is not None:
            self.transport.write(data)
        self._close()
        if scope is None:
            scope = answered_scope(
                request,
                request.http_version if request is not None else "1.1",
                self.scheme,
                self.client,
            )
        ctx.log_exchange(Answered(scope, status, size))

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
            and self.conn.read_state is not ReadState.ERROR
            and (reading is None or reading.buffered < LOW_WATER)
            and len(self._streams) < MAX_PIPELINE
            and not self._switched
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
        if kind == _HEADER and self.conn.read_state is _READ_HEAD:
            self.answer(408, "Request Timeout")
            return
        self._close()
