"""The one ASGI WebSocket state machine, shared by HTTP/1.1, HTTP/2 and HTTP/3.

A connection (the *sink*) creates a :class:`WebSocketStream` for a request
that asked for a WebSocket, feeds it whole messages and the peer's close,
and runs the app through :meth:`run`.  The sink does the handshake answer
its transport needs (101 on HTTP/1.1, 200 on an extended CONNECT) and the
framing; everything the ASGI websocket spec says lives here once.

States (``_state``)::

    CONNECTING ──accept──▶ ACCEPTED ──close (either side)──▶ CLOSED
        │ └──http.response.start──▶ RESPONSE ──body(more_body=False)──▶ CLOSED
        └──close / app error / app returns──▶ CLOSED (403 / 500)

* CONNECTING: the handshake awaits the app's answer; ``receive`` gives
  ``websocket.connect`` first.
* RESPONSE: the app denies with its own HTTP response (the
  ``websocket.http.response`` extension).
* ACCEPTED: messages flow both ways.
* CLOSED: nothing more is sent; ``receive`` gives ``websocket.disconnect``
  once the peer's close (or the connection loss) is known.
"""

from __future__ import annotations

import enum
import logging
import re
from collections import deque
from collections.abc import Awaitable
from typing import Any, Final, Protocol

from ..protocol.events import Headers
from .http_stream import ASGIMessageError, ClientDisconnected, _check_headers, _header_list
from .types import ASGIApp, Loop, Message, is_cancellation

__all__ = ["WSSink", "WSState", "WebSocketStream"]

logger = logging.getLogger("asgiri.error")

_CONNECT: Message = {"type": "websocket.connect"}
_ONE_OF = "websocket.send needs exactly one of 'text' and 'bytes'"
#: An RFC 9110 token: what a Sec-WebSocket-Protocol value may be.
_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")


class WSState(enum.Enum):
    CONNECTING = "connecting"
    RESPONSE = "response"
    ACCEPTED = "accepted"
    CLOSED = "closed"


#: (A module constant: on Python 3.11 ``WSState.ACCEPTED`` goes through
#: ``EnumType.__getattr__`` each time, and ``send`` checks it per message.)
_ACCEPTED: Final = WSState.ACCEPTED


class WSSink(Protocol):
    """What a connection offers a WebSocket stream (one per transport)."""

    def ws_accept(self, stream: WebSocketStream, subprotocol: str | None, headers: Headers) -> None:
        """Complete the handshake (101 or 200)."""

    def ws_http_response(
        self, stream: WebSocketStream, status: int, headers: Headers, body: bytes, end: bool
    ) -> None:
        """Answer the handshake with an HTTP response instead (403, 500, the app's denial).

        The first call sends the head with ``body``; later ones more body;
        ``end``: the response is complete.
        """

    def ws_send(self, stream: WebSocketStream, data: str | bytes) -> Awaitable[None] | None:
        """Send one message; returns a waiter while the peer is not reading, else None.

        (One call per message instead of a send and a drain check: this is
        the hot path of every WebSocket app.)
        """

    def ws_close(self, stream: WebSocketStream, code: int, reason: str) -> None:
        """Start the closing handshake."""

    def ws_consumed(self, stream: WebSocketStream) -> None:
        """The app took a queued message: reading may resume."""

    def ws_done(self, stream: WebSocketStream) -> None:
        """The app returned."""


class _Ended:
    """The sink of a stream whose app has returned.

    The stream is then CLOSED, so every ``send`` is refused before it reaches
    a sink; only ``receive`` may still take a queued message.  Swapping the
    connection's sink for this one breaks the stream-sink reference cycle:
    the connection, its transport and buffers are freed when their last
    reference goes instead of waiting for the cyclic garbage collector.
    """

    def ws_consumed(self, stream: WebSocketStream) -> None:
        """Nobody reads for an app that has returned."""


_ENDED: Any = _Ended()


class WebSocketStream:
    """One WebSocket seen through the ASGI ``websocket`` scope."""

    def __init__(
        self,
        sink: WSSink,
        loop: Loop,
        scope: dict[str, Any],
        stream_id: int,
        *,
        max_queue: int = 32,
    ) -> None:
        self._sink = sink
        self._loop = loop
        self.scope = scope
        self.stream_id = stream_id
        self._state = WSState.CONNECTING
        self._queue: deque[str | bytes] = deque()
        self._max_queue = max_queue
        self._connect_sent = False
        self._waiter: Any = None
        self._response: tuple[int, Headers] | None = None
        #: The peer's close code, once known (connection loss is 1006).
        self.close_code: int | None = None
        self.close_reason = ""
        self._disconnect_sent = False
        self.task: Any = None

    # ------------------------------------------------------------ from the connection

    @property
    def state(self) -> WSState:
        return self._state

    @property
    def queue_full(self) -> bool:
        return len(self._queue) >= self._max_queue

    def message_received(self, data: str | bytes) -> bool:
        """Queue a message for ``receive``; returns whether the queue is now full.

        (The answer saves the sink a look at :attr:`queue_full` after each
        read: this runs once per message received.)
        """
        queue = self._queue
        if self.close_code is None:
            queue.append(data)
            waiter = self._waiter
            if waiter is not None:
                self._waiter = None
                if not waiter.done():
                    waiter.set_result(None)
        return len(queue) >= self._max_queue

    def peer_closed(self, code: int, reason: str = "") -> None:
        """The peer closed (or the connection is gone: 1006)."""
        if self.close_code is None:
            self.close_code = code
            self.close_reason = reason
            if self._state is WSState.ACCEPTED:
                self._state = WSState.CLOSED
            self._wake()

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None:
            self._waiter = None
            if not waiter.done():
                waiter.set_result(None)

    # ------------------------------------------------------------ ASGI receive

    async def receive(self) -> Message:
        if not self._connect_sent:
            self._connect_sent = True
            return _CONNECT
        while True:
            if self._queue:
                queue = self._queue
                data = queue.popleft()
                if len(queue) + 1 >= self._max_queue:
                    # It was full: the sink may have stopped reading.
                    self._sink.ws_consumed(self)
                if type(data) is str:
                    return {"type": "websocket.receive", "text": data}
                return {"type": "websocket.receive", "bytes": data}
            if self.close_code is not None:
                self._disconnect_sent = True
                return {
                    "type": "websocket.disconnect",
                    "code": self.close_code,
                    "reason": self.close_reason,
                }
            waiter = self._waiter
            if waiter is None or waiter.done():
                waiter = self._waiter = self._loop.create_future()
            await waiter

    # ------------------------------------------------------------ ASGI send

    async def send(self, message: Message) -> None:
        try:
            kind = message["type"]
        except (KeyError, TypeError):
            raise ASGIMessageError(f"ASGI message without a type: {message!r}") from None
        state = self._state
        if kind == "websocket.send":
            if state is not _ACCEPTED:
                if self.close_code is not None or state is WSState.CLOSED:
                    raise ClientDisconnected("the WebSocket is closed")
                raise ASGIMessageError(f"websocket.send in state {state.value!r}")
            text = message.get("text")
            data = message.get("bytes")
            payload: str | bytes
            if text is None:
                if data is None:
                    raise ASGIMessageError(_ONE_OF)
                if type(data) is not bytes:
                    if not isinstance(data, bytes | bytearray | memoryview):
                        raise ASGIMessageError("websocket.send 'bytes' must be bytes")
                    data = bytes(data)
                payload = data
            elif data is not None:
                raise ASGIMessageError(_ONE_OF)
            elif isinstance(text, str):
                payload = text
            else:
                raise ASGIMessageError("websocket.send 'text' must be str")
            waiter = self._sink.ws_send(self, payload)
            if waiter is not None:
                await waiter
        elif kind == "websocket.accept":
            if state is not WSState.CONNECTING:
                raise ASGIMessageError(f"websocket.accept in state {state.value!r}")
            if self.close_code is not None:
                raise ClientDisconnected("the client went away during the handshake")
            subprotocol = message.get("subprotocol")
            if subprotocol is not None and (
                not isinstance(subprotocol, str) or not _TOKEN.fullmatch(subprotocol)
            ):
                # Checked before the state changes: the client then gets a 500
                # instead of a handshake that never completes.
                raise ASGIMessageError(
                    f"websocket.accept 'subprotocol' must be a token or None, got {subprotocol!r}"
                )
            headers = _header_list(message.get("headers", ()))
            _check_headers(headers)
            self._state = WSState.ACCEPTED
            self._sink.ws_accept(self, subprotocol, headers)
        elif kind == "websocket.close":
            code = message.get("code", 1000)
            reason = message.get("reason") or ""
            if state is WSState.CONNECTING:
                # The client gets a 403 and never sees the code or reason, so
                # they are not checked (FastAPI's validation errors put a list
                # of errors in the reason here).
                self._state = WSState.CLOSED
                self._refuse(403, b"Forbidden")
                return
            if not isinstance(code, int) or not isinstance(reason, str):
                raise ASGIMessageError("websocket.close needs an int 'code' and a str 'reason'")
            if state is WSState.ACCEPTED:
                self._state = WSState.CLOSED
                self._sink.ws_close(self, code, reason)
            elif state is WSState.CLOSED and self.close_code is not None:
                return  # closing an already closed socket is harmless
            else:
                raise ASGIMessageError(f"websocket.close in state {state.value!r}")
        elif kind == "websocket.http.response.start":
            if state is not WSState.CONNECTING:
                raise ASGIMessageError(f"{kind!r} in state {state.value!r}")
            status = message.get("status")
            if type(status) is not int or not 100 <= status <= 599:
                raise ASGIMessageError(f"invalid response status {status!r}")
            headers = _header_list(message.get("headers", ()))
            _check_headers(headers)
            self._state = WSState.RESPONSE
            self._response = (status, headers)
        elif kind == "websocket.http.response.body":
            if state is not WSState.RESPONSE or self._response is None:
                raise ASGIMessageError(f"{kind!r} in state {state.value!r}")
            body = message.get("body", b"")
            if not isinstance(body, bytes):
                raise ASGIMessageError("websocket.http.response.body 'body' must be bytes")
            more = bool(message.get("more_body", False))
            status, headers = self._response
            if not more:
                self._state = WSState.CLOSED
            self._sink.ws_http_response(self, status, headers, body, not more)
            self._response = (status, [])  # the head went out with the first body
        else:
            raise ASGIMessageError(f"unexpected ASGI message type {kind!r} on a websocket scope")

    def _refuse(self, status: int, body: bytes) -> None:
        headers = [
            (b"content-type", b"text/plain; charset=utf-8"),
            (b"content-length", b"%d" % len(body)),
        ]
        self._sink.ws_http_response(self, status, headers, body, True)

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
            if state is WSState.CONNECTING:
                logger.error("ASGI app returned without accepting or closing the WebSocket")
                self._state = WSState.CLOSED
                self._refuse(500, b"Internal Server Error")
            elif state is WSState.ACCEPTED:
                self._state = WSState.CLOSED
                self._sink.ws_close(self, 1000, "")
            elif state is WSState.RESPONSE:
                logger.error("ASGI app returned without completing its denial response")
                self._state = WSState.CLOSED
                self._sink.ws_http_response(self, 500, [], b"", True)
        finally:
            self._sink.ws_done(self)
            self._sink = _ENDED

    def _failed(self, exc: BaseException) -> None:
        cancelled = is_cancellation(exc)
        gone = self.close_code is not None
        if cancelled or (gone and isinstance(exc, OSError)):
            logger.debug("WebSocket app ended after the client went away: %r", exc)
        elif isinstance(exc, ASGIMessageError):
            logger.error("ASGI app sent an invalid WebSocket message: %s", exc)
        else:
            logger.error("Exception in ASGI application", exc_info=exc)
        state = self._state
        self._state = WSState.CLOSED
        if state is WSState.CONNECTING:
            self._refuse(500, b"Internal Server Error")
        elif state is WSState.ACCEPTED:
            self._sink.ws_close(self, 1011, "")
        elif state is WSState.RESPONSE:
            self._sink.ws_http_response(self, 500, [], b"", True)
