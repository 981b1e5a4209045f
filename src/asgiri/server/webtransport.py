"""WebTransport sessions over HTTP/3: the server side of one session.

A :class:`WTBridge` is the :class:`~.streams.Tunnel` of one extended CONNECT
stream with ``:protocol webtransport`` on an :class:`~.h3.H3Protocol`.  It
runs the app in session mode (:class:`~asgiri.asgi.webtransport.WTSession`)
or, when the app ignores the session scope, in per-stream mode (one
:class:`~asgiri.asgi.webtransport.WTStream` app call per stream the client
opens), and it is the sink of both: it answers the CONNECT, opens, writes
and resets the session's streams, sends datagrams and capsules, returns
flow-control credit as the app reads, and ends the session (the peer's
CLOSE_WEBTRANSPORT_SESSION capsule or FIN, a reset, the app's close, the
connection's end, or a graceful shutdown).

It plugs into the same lifecycle as a request or a WebSocket: admitted by
``--limit-concurrency`` (and counted by ``--limit-max-requests`` and the
metrics) for its whole life, bounded by ``--webtransport-max-streams`` and
``--webtransport-max-datagrams``, cut by ``--timeout-write`` on a stream the
peer does not read, closed by a graceful shutdown, and logged once when it
ends (``"CONNECT /path HTTP/3" 200``).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable
from typing import Any, Protocol

from ..asgi.access_log import Answered
from ..asgi.http_stream import ASGIMessageError, ClientDisconnected
from ..asgi.webtransport import WTSession, WTState, WTStream
from ..protocol.events import Headers, Request
from ..protocol.h3 import H3Connection
from ..protocol.webtransport import (
    DRAFT_HEADER,
    SESSION_GONE,
    CapsuleParser,
    SessionClosed,
    close_capsule,
    drain_capsule,
)
from .context import ServerContext
from .tasks import start_eagerly

__all__ = ["WTBridge", "h3_error_code", "webtransport_error_code"]

logger = logging.getLogger("asgiri.error")

#: WebTransport application error codes (32 bits) travel in stream resets as
#: HTTP/3 error codes of a reserved range (draft-ietf-webtrans-http3 4.3).
_FIRST_CODE = 0x52E4A40FA8DB
_LAST_CODE = 0x52E5AC983162
#: A stream the peer opened beyond --webtransport-max-streams.
_BUFFERED_STREAM_REJECTED = 0x3994BD84
_NO_ERROR = 0


def h3_error_code(code: int) -> int:
    """A WebTransport error code as the HTTP/3 code a stream reset carries."""
    return _FIRST_CODE + code + code // 0x1E


def webtransport_error_code(h3_code: int) -> int:
    """The WebTransport error code of an HTTP/3 stream error (0 for codes outside the range)."""
    if not _FIRST_CODE <= h3_code <= _LAST_CODE or (h3_code - 0x21) % 0x1F == 0:
        return 0
    shifted = h3_code - _FIRST_CODE
    return shifted - shifted // 0x1F


class SessionCarrier(Protocol):
    """What a :class:`WTBridge` uses of its HTTP/3 connection.

    (:class:`~asgiri.server.h3.H3Protocol` provides it; named here so that
    this module, which that one imports, needs nothing back from it.)
    """

    ctx: ServerContext
    conn: H3Connection

    @property
    def closed(self) -> bool: ...
    def response_headers(self, headers: Headers) -> Headers: ...
    def schedule_flush(self) -> None: ...
    def stream_drain(self, stream_id: int) -> Awaitable[None] | None: ...
    def tunnel_done(self, stream_id: int) -> None: ...


class _Stream:
    """One stream of the session, with what the bridge must remember of it."""

    __slots__ = ("app", "local_ended", "peer_ended", "unidirectional")

    def __init__(self, unidirectional: bool, ours: bool) -> None:
        self.unidirectional = unidirectional
        # A unidirectional stream has only one side: the other is ended from the start.
        self.local_ended = unidirectional and not ours
        self.peer_ended = unidirectional and ours
        #: Its app in per-stream mode.
        self.app: WTStream | None = None


class WTBridge:
    """One WebTransport session: a Tunnel of the HTTP/3 connection."""

    def __init__(self, proto: SessionCarrier, request: Request, scope: dict[str, Any]) -> None:
        self.proto = proto
        self.ctx = ctx = proto.ctx
        self.loop = ctx.loop
        self.request = request
        self.stream_id = self.session_id = request.stream_id
        options = ctx.config.webtransport
        self._max_streams = options.webtransport_max_streams
        self.scope = scope
        self.session = WTSession(
            self,
            self.loop,
            scope,
            self.session_id,
            max_datagrams=options.webtransport_max_datagrams,
        )
        self._capsules = CapsuleParser()
        self.streams: dict[int, _Stream] = {}
        #: "session" or "streams" once the app has shown which it speaks.
        self.mode: str | None = None
        self._head_sent = False
        #: The CONNECT stream: our side ended (capsule + FIN), and done altogether.
        self._ended_local = False
        self.finished = False
        self._started = False
        self._admitted = False
        self._app_running = False
        self._logged = False
        self.status = 0
        self.bytes_sent = 0
        self.bytes_received = 0
        self.started_at = 0.0

    # ------------------------------------------------------------ Tunnel

    def start(self) -> None:
        ctx = self.ctx
        self._admitted = True
        self._started = True
        self._app_running = True
        self.started_at = time.perf_counter()
        task = start_eagerly(self.loop, self.session.run(ctx.app))
        if task is not None:
            self.session.task = task
            ctx.tasks.add(task)

    def refuse(self) -> None:
        self.finished = True

    def data_received(self, data: bytes) -> None:
        """Capsules on the CONNECT stream."""
        self.proto.conn.acknowledge(self.session_id, len(data))
        try:
            capsules = self._capsules.feed(data)
        except ValueError as exc:
            logger.debug("WebTransport session %d: %s", self.session_id, exc)
            self._gone(_NO_ERROR, "malformed capsule", reset=True)
            return
        for capsule in capsules:
            if isinstance(capsule, SessionClosed):
                self._peer_closed(capsule.code, capsule.reason)
                return
            # DRAIN: the peer opens no more streams; nothing to do.

    def peer_ended(self) -> None:
        """The client's FIN on the CONNECT stream ends the session (code 0)."""
        self._peer_closed(0, "")

    def reset_by_peer(self) -> None:
        self._gone(_NO_ERROR, "session reset", reset=True)

    def connection_lost(self) -> None:
        self._ended_local = True
        self._close_all(0, "connection lost", send=False)

    def shutdown(self) -> None:
        """Graceful shutdown: DRAIN, then CLOSE with 0 and a reason, every stream reset."""
        if self._ended_local:
            return
        if self._head_sent:
            self.proto.conn.send_data(self.session_id, drain_capsule(), False)
        if self.session.state is WTState.CONNECTING and self.mode is None:
            self.session.peer_closed(0, "server shutting down")
        self._close_all(0, "server shutting down", send=True)

    # ------------------------------------------------------------ streams and datagrams

    def stream_data(self, stream_id: int, data: bytes, ended: bool) -> None:
        """Bytes of one of the session's streams (the peer's or ours)."""
        stream = self.streams.get(stream_id)
        conn = self.proto.conn
        if stream is None:
            if self._ended_local or len(self.streams) >= self._max_streams:
                conn.reset(stream_id, _BUFFERED_STREAM_REJECTED)
                conn.forget_webtransport_stream(stream_id)
                self.proto.schedule_flush()
                return
            stream = self.streams[stream_id] = _Stream(bool(stream_id & 2), ours=False)
            if self.mode == "streams":
                self._start_stream_app(stream_id, stream)
        self.bytes_received += len(data)
        if ended:
            stream.peer_ended = True
        if self.mode == "streams":
            if stream.app is not None:
                stream.app.data(data, ended)
        else:
            self.session.stream_data(stream_id, data, ended, stream.unidirectional)
        self._maybe_forget(stream_id, stream)

    def stream_reset(self, stream_id: int, code: int) -> None:
        """The peer reset (or stopped reading) one of the session's streams."""
        stream = self.streams.pop(stream_id, None)
        if stream is None:
            return
        conn = self.proto.conn
        if not stream.local_ended:
            conn.reset(stream_id, h3_error_code(0))
        conn.forget_webtransport_stream(stream_id)
        self.proto.schedule_flush()
        if stream.app is not None:
            stream.app.disconnect()
        elif self.mode != "streams":
            self.session.stream_reset(stream_id, webtransport_error_code(code))

    def datagram(self, data: bytes) -> None:
        self.bytes_received += len(data)
        if self.mode != "streams":
            self.session.datagram(data)

    def _maybe_forget(self, stream_id: int, stream: _Stream) -> None:
        if stream.local_ended and stream.peer_ended and stream.app is None:
            self.streams.pop(stream_id, None)
            self.proto.conn.forget_webtransport_stream(stream_id)

    # ------------------------------------------------------------ WTSessionSink

    def wt_accept(self, session: WTSession, headers: Headers) -> None:
        self.mode = "session"
        self._answer_connect(headers)

    def _answer_connect(self, headers: Headers) -> None:
        if self._ended_local or self._head_sent:
            return
        proto = self.proto
        self._head_sent = True
        self.status = 200
        fields = proto.response_headers([DRAFT_HEADER, *headers])
        if not proto.conn.send_headers(self.session_id, 200, fields, False):
            self._gone(_NO_ERROR, "session reset", reset=False)
        proto.schedule_flush()

    def wt_reject(
        self, session: WTSession, status: int, headers: Headers, body: bytes, end: bool
    ) -> None:
        self.mode = "session"
        if self._ended_local:
            return
        proto = self.proto
        conn = proto.conn
        if not self._head_sent:
            self._head_sent = True
            self.status = status
            conn.send_headers(self.session_id, status, proto.response_headers(headers), False)
        self.bytes_sent += len(body)
        conn.send_data(self.session_id, body, end)
        if end:
            self._ended_local = True
            conn.stop_reading(self.session_id, _NO_ERROR)
            self._close_all(0, "", send=False)
        proto.schedule_flush()

    def wt_close(self, session: WTSession, code: int, reason: str) -> None:
        self._close_all(code, reason, send=True)

    def wt_open(self, session: WTSession, unidirectional: bool) -> int | None:
        if self._ended_local or len(self.streams) >= self._max_streams:
            return None
        stream_id = self.proto.conn.open_webtransport_stream(self.session_id, unidirectional)
        if stream_id is not None:
            self.streams[stream_id] = _Stream(unidirectional, ours=True)
            self.proto.schedule_flush()
        return stream_id

    def wt_send(
        self, session: WTSession, stream_id: int, data: bytes, end: bool
    ) -> Awaitable[None] | None:
        return self._send(stream_id, self._sendable(stream_id), data, end)

    def _sendable(self, stream_id: int) -> _Stream:
        """The session's stream ``stream_id``, if data may still be sent on it."""
        stream = self.streams.get(stream_id)
        if stream is None:
            raise ClientDisconnected(f"WebTransport stream {stream_id} is gone")
        if stream.local_ended:
            raise ASGIMessageError(
                f"WebTransport stream {stream_id} is the client's unidirectional stream"
                if stream.unidirectional and not stream.peer_ended
                else f"WebTransport stream {stream_id} has ended"
            )
        return stream

    def _send(
        self, stream_id: int, stream: _Stream, data: bytes, end: bool
    ) -> Awaitable[None] | None:
        proto = self.proto
        if end:
            stream.local_ended = True
        self.bytes_sent += len(data)
        if not proto.conn.send_stream_data(stream_id, data, end):
            stream.local_ended = True
        proto.schedule_flush()
        waiter = None if end else proto.stream_drain(stream_id)
        if end:
            self._maybe_forget(stream_id, stream)
        return waiter

    def wt_reset(self, session: WTSession, stream_id: int, code: int) -> None:
        stream = self.streams.pop(stream_id, None)
        if stream is None:
            return
        conn = self.proto.conn
        conn.reset(stream_id, h3_error_code(code))
        conn.forget_webtransport_stream(stream_id)
        self.proto.schedule_flush()

    def wt_datagram(self, session: WTSession, data: bytes) -> None:
        if self._ended_local:
            return
        if self.proto.conn.send_datagram(self.session_id, data):
            self.bytes_sent += len(data)
            self.proto.schedule_flush()
        else:
            logger.debug("WebTransport datagram of %d bytes not sent (too large?)", len(data))

    def wt_consumed(self, stream_id: int, nbytes: int) -> None:
        proto = self.proto
        if not proto.closed:
            proto.conn.acknowledge(stream_id, nbytes)
            proto.schedule_flush()

    def wt_done(self, session: WTSession) -> None:
        ctx = self.ctx
        task = session.task
        if task is not None:
            ctx.tasks.discard(task)
        self._app_running = False
        if not session.touched and session.state is WTState.CONNECTING and not self._ended_local:
            # The app ignored the session scope: per-stream mode.
            self._per_stream_mode()
        else:
            self._finish()
        ctx.check_drained()

    # ------------------------------------------------------------ per-stream mode

    def _per_stream_mode(self) -> None:
        self.mode = "streams"
        self._answer_connect([])
        for stream_id, stream in list(self.streams.items()):
            self._start_stream_app(stream_id, stream)
        # What the session queued while the app decided goes to the streams' apps.
        for message in self.session.drain_stream_messages():
            queued = self.streams.get(message["stream"])
            if queued is not None and queued.app is not None:
                queued.app.data(message["data"], message["stream_ended"])

    def _start_stream_app(self, stream_id: int, stream: _Stream) -> None:
        scope = dict(self.scope)
        scope["type"] = "webtransport.stream"
        scope["session_id"] = self.session_id
        scope["stream_id"] = stream_id
        scope["http_version"] = "3"
        app = stream.app = WTStream(
            self, self.loop, scope, stream_id, can_send=not stream.unidirectional
        )
        task = start_eagerly(self.loop, app.run(self.ctx.app))
        if task is not None:
            app.task = task
            self.ctx.tasks.add(task)

    # StreamSink (asgi.webtransport) for the per-stream apps

    def stream_send(self, app: WTStream, data: bytes, end: bool) -> Awaitable[None] | None:
        return self._send(app.stream_id, self._sendable(app.stream_id), data, end)

    def stream_close(self, app: WTStream) -> None:
        stream = self.streams.get(app.stream_id)
        if stream is None:
            return
        conn = self.proto.conn
        if not stream.local_ended:
            stream.local_ended = True
            conn.send_stream_data(app.stream_id, b"", True)
        if not stream.peer_ended:
            stream.peer_ended = True
            conn.stop_reading(app.stream_id, h3_error_code(0))
        self.proto.schedule_flush()

    def stream_done(self, app: WTStream) -> None:
        task = app.task
        if task is not None:
            self.ctx.tasks.discard(task)
        stream = self.streams.get(app.stream_id)
        if stream is not None and stream.app is app:
            stream.app = None
            self._maybe_forget(app.stream_id, stream)
        self.ctx.check_drained()
        if self.finished:
            self._finish()

    # ------------------------------------------------------------ the end of the session

    def _peer_closed(self, code: int, reason: str) -> None:
        """The client closed the session: its streams go, our side of the CONNECT ends too."""
        self.session.peer_closed(code, reason)
        self._close_all(code, reason, send=False)
        if not self._ended_local:
            self._ended_local = True
            self.proto.conn.send_data(self.session_id, b"", True)
            self.proto.schedule_flush()
        self._finish()

    def _gone(self, code: int, reason: str, *, reset: bool) -> None:
        self.session.peer_closed(code, reason)
        if reset and not self._ended_local:
            self._ended_local = True
            self.proto.conn.reset(self.session_id, SESSION_GONE)
        self._close_all(code, reason, send=False)

    def _close_all(self, code: int, reason: str, *, send: bool) -> None:
        """End the session from our side: the CLOSE capsule (``send``) and every stream."""
        proto = self.proto
        conn = proto.conn
        if send and not self._ended_local and not proto.closed:
            self._ended_local = True
            if self._head_sent:
                conn.send_data(self.session_id, close_capsule(code, reason), True)
                # Nothing more is read from the client on it.
                conn.stop_reading(self.session_id, _NO_ERROR)
            else:
                conn.reset(self.session_id, SESSION_GONE)
        self.session.peer_closed(code, reason)
        for stream_id, stream in list(self.streams.items()):
            if not proto.closed and not (stream.local_ended and stream.peer_ended):
                conn.reset(stream_id, SESSION_GONE)
            conn.forget_webtransport_stream(stream_id)
            if stream.app is not None:
                stream.app.disconnect()
        self.streams.clear()
        proto.schedule_flush()
        self._finish()

    def _finish(self) -> None:
        """Once both the app side and the CONNECT stream are done: release and log."""
        if not self._ended_local or self._app_running:
            return
        if any(stream.app is not None for stream in self.streams.values()):
            return
        if not self.finished:
            self.finished = True
        if self._admitted:
            self._admitted = False
            self.ctx.request_finished()
            if self.status and not self._logged:
                self._logged = True
                record = dict(self.scope)
                record["method"] = "CONNECT"
                self.ctx.log_exchange(
                    Answered(
                        record, self.status, self.bytes_sent, self.bytes_received, self.started_at
                    )
                )
        self.proto.tunnel_done(self.session_id)
