"""The ASGI side of WebTransport over HTTP/3 (experimental), in two modes.

*Session mode* (scope type ``"webtransport"``) gives the app the whole
session, in the spirit of the ASGI websocket spec: it accepts or denies the
session, reads the session's streams and datagrams from one receive
channel, opens streams of its own and closes the session with a code and a
reason.  Messages (see docs/WEBTRANSPORT.md)::

    receive: webtransport.connect
             webtransport.stream.receive  {stream, data, stream_ended, unidirectional}
             webtransport.stream.opened   {stream, ref}   (answer to stream.open)
             webtransport.stream.reset    {stream, error_code}
             webtransport.datagram.receive {data}
             webtransport.disconnect      {code, reason}
    send:    webtransport.accept          {headers?}
             webtransport.http.response.start / .body    (deny with a status)
             webtransport.close           {code?, reason?}
             webtransport.stream.open     {unidirectional?, ref?}
             webtransport.stream.send     {stream, data, end_stream?}
             webtransport.stream.reset    {stream, error_code?}
             webtransport.datagram.send   {data}

*Per-stream mode* (scope type ``"webtransport.stream"``, the original
asgiri's) calls the app once per stream the client opens; the session itself
is accepted by the server.  An app gets it by ignoring the session scope:
one that returns from a ``"webtransport"`` call without receiving or sending
anything (what an app does with a scope type it does not know) is served in
per-stream mode.

Session states (``WTSession._state``)::

    CONNECTING ──accept──▶ ACCEPTED ──close (either side)──▶ CLOSED
        │ └──http.response.start──▶ RESPONSE ──body(more_body=False)──▶ CLOSED
        └──close / app error / app returns──▶ CLOSED (403 / 500)

Flow control: stream bytes handed to the app are credited to the peer only
as the app receives them (``wt_consumed``), so a session whose app does not
read holds at most one stream window per stream; datagrams beyond
``max_datagrams`` waiting for the app are dropped, as datagrams may be.
"""

from __future__ import annotations

import enum
import logging
from collections import deque
from collections.abc import Awaitable
from typing import Any, Protocol

from ..protocol.events import Headers
from .http_stream import ASGIMessageError, ClientDisconnected, _check_headers, _header_list
from .types import ASGIApp, Loop, Message, is_cancellation

__all__ = [
    "StreamSink",
    "WTSession",
    "WTSessionSink",
    "WTState",
    "WTStream",
]

logger = logging.getLogger("asgiri.error")

_CONNECT: Message = {"type": "webtransport.connect"}


class WTState(enum.Enum):
    #: The session awaits the app's answer; ``receive`` gives ``webtransport.connect``.
    CONNECTING = "connecting"
    #: The app denies with an HTTP response of its own.
    RESPONSE = "response"
    #: Streams and datagrams flow.
    ACCEPTED = "accepted"
    #: Nothing more is sent; ``receive`` ends with ``webtransport.disconnect``.
    CLOSED = "closed"


class WTSessionSink(Protocol):
    """What the server offers a session-mode app (one per session)."""

    def wt_accept(self, session: WTSession, headers: Headers) -> None: ...

    def wt_reject(
        self, session: WTSession, status: int, headers: Headers, body: bytes, end: bool
    ) -> None: ...

    def wt_close(self, session: WTSession, code: int, reason: str) -> None: ...

    def wt_open(self, session: WTSession, unidirectional: bool) -> int | None:
        """Open a stream of ours; its id, or None when none can be opened now."""

    def wt_send(
        self, session: WTSession, stream_id: int, data: bytes, end: bool
    ) -> Awaitable[None] | None:
        """Send on a stream; a waiter while the peer is not reading, else None."""

    def wt_reset(self, session: WTSession, stream_id: int, code: int) -> None: ...

    def wt_datagram(self, session: WTSession, data: bytes) -> None: ...

    def wt_consumed(self, stream_id: int, nbytes: int) -> None:
        """The app took ``nbytes`` of the stream: the peer may send that much more."""

    def wt_done(self, session: WTSession) -> None:
        """The app returned."""


class _EndedSession:
    """The sink of a session whose app has returned and that is closed.

    Swapped in for the server's bridge when the app returns, so that session
    and bridge are not a reference cycle that keeps the connection alive until
    the cyclic garbage collector runs.  A task the app left behind finds the
    session gone: what it sends raises, what it takes is not credited.
    """

    def wt_accept(self, session: WTSession, headers: Headers) -> None:
        raise ClientDisconnected("the WebTransport session is over")

    def wt_reject(
        self, session: WTSession, status: int, headers: Headers, body: bytes, end: bool
    ) -> None:
        raise ClientDisconnected("the WebTransport session is over")

    def wt_close(self, session: WTSession, code: int, reason: str) -> None:
        """Already closed."""

    def wt_open(self, session: WTSession, unidirectional: bool) -> int | None:
        raise ClientDisconnected("the WebTransport session is over")

    def wt_send(
        self, session: WTSession, stream_id: int, data: bytes, end: bool
    ) -> Awaitable[None] | None:
        raise ClientDisconnected("the WebTransport session is over")

    def wt_reset(self, session: WTSession, stream_id: int, code: int) -> None:
        """Nothing left to reset."""

    def wt_datagram(self, session: WTSession, data: bytes) -> None:
        raise ClientDisconnected("the WebTransport session is over")

    def wt_consumed(self, stream_id: int, nbytes: int) -> None:
        """Nobody reads for an app that has returned."""

    def wt_done(self, session: WTSession) -> None:
        """Reported once already."""


_ENDED_SESSION = _EndedSession()


class WTSession:
    """One WebTransport session seen through the ASGI ``webtransport`` scope."""

    def __init__(
        self,
        sink: WTSessionSink,
        loop: Loop,
        scope: dict[str, Any],
        session_id: int,
        *,
        max_datagrams: int,
    ) -> None:
        self._sink = sink
        self._loop = loop
        self.scope = scope
        self.session_id = session_id
        self._state = WTState.CONNECTING
        self._queue: deque[Message] = deque()
        self._datagrams = 0
        self._max_datagrams = max_datagrams
        #: Datagrams dropped because the app did not read them in time.
        self.dropped = 0
        self._connect_sent = False
        self._waiter: Any = None
        self._response: tuple[int, Headers] | None = None
        #: The peer's close code and reason once known (None: still open).
        self.close_code: int | None = None
        self.close_reason = ""
        #: The app has called ``receive`` or ``send``: it speaks session mode.
        self.touched = False
        self.task: Any = None

    # ------------------------------------------------------------ from the server

    @property
    def state(self) -> WTState:
        return self._state

    def stream_data(self, stream_id: int, data: bytes, ended: bool, unidirectional: bool) -> None:
        if self.close_code is not None:
            return
        self._queue.append(
            {
                "type": "webtransport.stream.receive",
                "stream": stream_id,
                "data": data,
                "stream_ended": ended,
                "unidirectional": unidirectional,
            }
        )
        self._wake()

    def stream_reset(self, stream_id: int, code: int) -> None:
        if self.close_code is None:
            self._queue.append(
                {"type": "webtransport.stream.reset", "stream": stream_id, "error_code": code}
            )
            self._wake()

    def datagram(self, data: bytes) -> None:
        if self.close_code is not None:
            return
        if self._datagrams >= self._max_datagrams:
            self.dropped += 1
            return
        self._datagrams += 1
        self._queue.append({"type": "webtransport.datagram.receive", "data": data})
        self._wake()

    def peer_closed(self, code: int, reason: str = "") -> None:
        """The session is over (the peer closed it, or its connection went away)."""
        if self.close_code is None:
            self.close_code = code
            self.close_reason = reason
            if self._state is WTState.ACCEPTED:
                self._state = WTState.CLOSED
            self._wake()

    def drain_stream_messages(self) -> list[Message]:
        """Take back the stream data queued for an app that turned out to ignore the session.

        (Per-stream mode: the server hands it to the streams' own apps.)
        """
        taken = [m for m in self._queue if m["type"] == "webtransport.stream.receive"]
        self._queue.clear()
        self._datagrams = 0
        return taken

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None:
            self._waiter = None
            if not waiter.done():
                waiter.set_result(None)

    # ------------------------------------------------------------ ASGI receive

    async def receive(self) -> Message:
        self.touched = True
        if not self._connect_sent:
            self._connect_sent = True
            return _CONNECT
        while True:
            # Until the app accepts, nothing of the session is handed over.
            if self._queue and self._state is not WTState.CONNECTING:
                message = self._queue.popleft()
                kind = message["type"]
                if kind == "webtransport.stream.receive":
                    if message["data"]:
                        self._sink.wt_consumed(message["stream"], len(message["data"]))
                elif kind == "webtransport.datagram.receive":
                    self._datagrams -= 1
                return message
            if self.close_code is not None:
                return {
                    "type": "webtransport.disconnect",
                    "code": self.close_code,
                    "reason": self.close_reason,
                }
            waiter = self._waiter
            if waiter is None or waiter.done():
                waiter = self._waiter = self._loop.create_future()
            await waiter

    # ------------------------------------------------------------ ASGI send

    async def send(self, message: Message) -> None:
        self.touched = True
        try:
            kind = message["type"]
        except (KeyError, TypeError):
            raise ASGIMessageError(f"ASGI message without a type: {message!r}") from None
        state = self._state
        if kind in _SESSION_SENDS:
            if state is not WTState.ACCEPTED:
                if self.close_code is not None or state is WTState.CLOSED:
                    raise ClientDisconnected("the WebTransport session is closed")
                raise ASGIMessageError(f"{kind} in state {state.value!r}")
            await self._session_send(kind, message)
        elif kind == "webtransport.accept":
            if state is not WTState.CONNECTING:
                raise ASGIMessageError(f"webtransport.accept in state {state.value!r}")
            if self.close_code is not None:
                raise ClientDisconnected("the client went away during the handshake")
            headers = _header_list(message.get("headers", ()))
            _check_headers(headers)
            self._state = WTState.ACCEPTED
            self._sink.wt_accept(self, headers)
            if self._queue:
                self._wake()
        elif kind == "webtransport.close":
            code = message.get("code", 0)
            reason = message.get("reason") or ""
            if state is WTState.CONNECTING:
                self._state = WTState.CLOSED
                self._reject(403, b"Forbidden")
                return
            if not isinstance(code, int) or not isinstance(reason, str):
                raise ASGIMessageError("webtransport.close needs an int 'code' and a str 'reason'")
            if not 0 <= code <= 0xFFFFFFFF:
                raise ASGIMessageError(f"webtransport.close code {code} is not a 32-bit value")
            if state is WTState.ACCEPTED:
                self._state = WTState.CLOSED
                self._sink.wt_close(self, code, reason)
            elif state is WTState.CLOSED and self.close_code is not None:
                return  # closing a session that is already closed is harmless
            else:
                raise ASGIMessageError(f"webtransport.close in state {state.value!r}")
        elif kind == "webtransport.http.response.start":
            if state is not WTState.CONNECTING:
                raise ASGIMessageError(f"{kind!r} in state {state.value!r}")
            status = message.get("status")
            if type(status) is not int or not 100 <= status <= 599 or 200 <= status <= 299:
                raise ASGIMessageError(f"invalid denial status {status!r}")
            headers = _header_list(message.get("headers", ()))
            _check_headers(headers)
            self._state = WTState.RESPONSE
            self._response = (status, headers)
        elif kind == "webtransport.http.response.body":
            if state is not WTState.RESPONSE or self._response is None:
                raise ASGIMessageError(f"{kind!r} in state {state.value!r}")
            body = message.get("body", b"")
            if not isinstance(body, bytes):
                raise ASGIMessageError("webtransport.http.response.body 'body' must be bytes")
            more = bool(message.get("more_body", False))
            status, headers = self._response
            if not more:
                self._state = WTState.CLOSED
            self._sink.wt_reject(self, status, headers, body, not more)
            self._response = (status, [])  # the head went out with the first body
        else:
            raise ASGIMessageError(f"unexpected ASGI message type {kind!r} on a webtransport scope")

    async def _session_send(self, kind: str, message: Message) -> None:
        sink = self._sink
        if kind == "webtransport.stream.send":
            stream_id = _stream_id(message)
            data = _bytes(message, "data")
            waiter = sink.wt_send(self, stream_id, data, bool(message.get("end_stream", False)))
            if waiter is not None:
                await waiter
        elif kind == "webtransport.datagram.send":
            sink.wt_datagram(self, _bytes(message, "data"))
        elif kind == "webtransport.stream.open":
            opened = sink.wt_open(self, bool(message.get("unidirectional", False)))
            self._queue.append(
                {"type": "webtransport.stream.opened", "stream": opened, "ref": message.get("ref")}
            )
            self._wake()
        else:  # webtransport.stream.reset
            code = message.get("error_code", 0)
            if not isinstance(code, int) or not 0 <= code <= 0xFFFFFFFF:
                raise ASGIMessageError(f"webtransport.stream.reset error_code {code!r}")
            sink.wt_reset(self, _stream_id(message), code)

    def _reject(self, status: int, body: bytes) -> None:
        headers = [
            (b"content-type", b"text/plain; charset=utf-8"),
            (b"content-length", b"%d" % len(body)),
        ]
        self._sink.wt_reject(self, status, headers, body, True)

    # ------------------------------------------------------------ running the app

    async def run(self, app: ASGIApp) -> None:
        try:
            await app(self.scope, self.receive, self.send)
        except BaseException as exc:
            self._failed(exc)
            if isinstance(exc, KeyboardInterrupt | SystemExit):
                raise
        else:
            state = self._state
            if state is WTState.CONNECTING and self.touched:
                logger.error("ASGI app returned without accepting or closing the WebTransport")
                self._state = WTState.CLOSED
                self._reject(500, b"Internal Server Error")
            elif state is WTState.ACCEPTED:
                self._state = WTState.CLOSED
                self._sink.wt_close(self, 0, "")
            elif state is WTState.RESPONSE:
                logger.error("ASGI app returned without completing its denial response")
                self._state = WTState.CLOSED
                self._sink.wt_reject(self, 500, [], b"", True)
        finally:
            self._sink.wt_done(self)
            if self._state is WTState.CLOSED:
                # Per-stream mode (an app that never touched the session)
                # keeps its sink: the bridge still serves the streams.
                self._sink = _ENDED_SESSION

    def _failed(self, exc: BaseException) -> None:
        gone = self.close_code is not None
        if is_cancellation(exc) or (gone and isinstance(exc, OSError)):
            logger.debug("WebTransport app ended after the session was closed: %r", exc)
        elif isinstance(exc, ASGIMessageError):
            logger.error("ASGI app sent an invalid WebTransport message: %s", exc)
        else:
            logger.error("Exception in ASGI application", exc_info=exc)
        self.touched = True  # a failure is an answer, not per-stream mode
        state = self._state
        self._state = WTState.CLOSED
        if state is WTState.CONNECTING:
            self._reject(500, b"Internal Server Error")
        elif state is WTState.ACCEPTED:
            self._sink.wt_close(self, 0, "internal error")
        elif state is WTState.RESPONSE:
            self._sink.wt_reject(self, 500, [], b"", True)


_SESSION_SENDS = frozenset(
    {
        "webtransport.stream.send",
        "webtransport.stream.open",
        "webtransport.stream.reset",
        "webtransport.datagram.send",
    }
)


def _stream_id(message: Message) -> int:
    stream_id = message.get("stream")
    if type(stream_id) is not int:
        raise ASGIMessageError(f"{message['type']} needs the int 'stream' it is for")
    return stream_id


def _bytes(message: Message, key: str) -> bytes:
    data = message.get(key, b"")
    if type(data) is not bytes:
        if not isinstance(data, bytes | bytearray | memoryview):
            raise ASGIMessageError(f"{message['type']} {key!r} must be bytes")
        data = bytes(data)
    return data


# ---------------------------------------------------------------------- per-stream mode


class StreamSink(Protocol):
    """What the server offers a per-stream-mode app (one per stream)."""

    def stream_send(self, stream: WTStream, data: bytes, end: bool) -> Awaitable[None] | None: ...

    def stream_close(self, stream: WTStream) -> None: ...

    def wt_consumed(self, stream_id: int, nbytes: int) -> None: ...

    def stream_done(self, stream: WTStream) -> None: ...


class WTStream:
    """One WebTransport stream seen through the ``webtransport.stream`` scope (per-stream mode).

    ``receive`` gives ``webtransport.stream.receive`` (``data``,
    ``stream_ended``) as the peer sends, then ``webtransport.stream.disconnect``
    once the stream is over (both sides ended, reset, or the session gone);
    ``send`` takes ``webtransport.stream.send`` (``data``, ``end_stream``) and
    ``webtransport.stream.close``.
    """

    def __init__(
        self,
        sink: StreamSink,
        loop: Loop,
        scope: dict[str, Any],
        stream_id: int,
        *,
        can_send: bool,
    ) -> None:
        self._sink = sink
        self._loop = loop
        self.scope = scope
        self.stream_id = stream_id
        self.can_send = can_send
        self._chunks: deque[tuple[bytes, bool]] = deque()
        self._waiter: Any = None
        self.peer_ended = False
        self.local_ended = not can_send
        #: The stream is over from the server's side (reset, session gone, closed).
        self.gone = False
        self.task: Any = None

    def data(self, data: bytes, ended: bool) -> None:
        if self.gone:
            return
        self._chunks.append((data, ended))
        self._wake()

    def disconnect(self) -> None:
        if not self.gone:
            self.gone = True
            self._wake()

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None:
            self._waiter = None
            if not waiter.done():
                waiter.set_result(None)

    async def receive(self) -> Message:
        while True:
            if self._chunks:
                data, ended = self._chunks.popleft()
                if data:
                    self._sink.wt_consumed(self.stream_id, len(data))
                if ended:
                    self.peer_ended = True
                return {"type": "webtransport.stream.receive", "data": data, "stream_ended": ended}
            if self.gone or (self.peer_ended and self.local_ended):
                return {"type": "webtransport.stream.disconnect"}
            waiter = self._waiter
            if waiter is None or waiter.done():
                waiter = self._waiter = self._loop.create_future()
            await waiter

    async def send(self, message: Message) -> None:
        try:
            kind = message["type"]
        except (KeyError, TypeError):
            raise ASGIMessageError(f"ASGI message without a type: {message!r}") from None
        if kind == "webtransport.stream.send":
            if self.gone:
                raise ClientDisconnected("the WebTransport stream is gone")
            if self.local_ended:
                raise ASGIMessageError(
                    "webtransport.stream.send on a stream that has ended"
                    if self.can_send
                    else "webtransport.stream.send on the client's unidirectional stream"
                )
            end = bool(message.get("end_stream", False))
            if end:
                self.local_ended = True
            waiter = self._sink.stream_send(self, _bytes(message, "data"), end)
            if waiter is not None:
                await waiter
            if end:
                self._wake()
        elif kind == "webtransport.stream.close":
            if not self.gone:
                self._sink.stream_close(self)
                self.gone = True
                self._wake()
        else:
            raise ASGIMessageError(
                f"unexpected ASGI message type {kind!r} on a webtransport.stream scope"
            )

    async def run(self, app: ASGIApp) -> None:
        try:
            await app(self.scope, self.receive, self.send)
        except BaseException as exc:
            if is_cancellation(exc) or (self.gone and isinstance(exc, OSError)):
                logger.debug("WebTransport stream app ended after the stream was gone: %r", exc)
            elif isinstance(exc, ASGIMessageError):
                logger.error("ASGI app sent an invalid WebTransport message: %s", exc)
            else:
                logger.error("Exception in ASGI application", exc_info=exc)
            if isinstance(exc, KeyboardInterrupt | SystemExit):
                raise
        finally:
            if not self.gone:
                self._sink.stream_close(self)
                self.gone = True
            self._sink.stream_done(self)
