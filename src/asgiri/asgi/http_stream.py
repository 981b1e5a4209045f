"""The one ASGI HTTP stream state machine, shared by HTTP/1.1, HTTP/2 and HTTP/3.

A connection (the *sink*) creates one :class:`HTTPStream` per request, feeds
it the request body as it arrives and runs the app through :meth:`run`.  The
stream validates what the app sends and turns it into calls on the sink,
which frames it for its wire protocol.  Anything fixed here is fixed for
every protocol at once.

Response states (``_state``)::

    START ──start──▶ BODY ──body(more_body=False)──▶ DONE
                       └──────── (trailers=True) ──▶ TRAILERS ──trailers──▶ DONE

* START: nothing accepted yet; an app failure can still become a 500.
* BODY: the head is accepted (it may still sit in ``_pending_head`` so that
  it leaves in one write with the first body chunk); body chunks flow.
* TRAILERS: the body is over and the app promised trailers.
* DONE: the response is complete; further messages are an app error.

The request side is two flags: ``_body_complete`` (the peer finished the
body) and ``disconnected`` (the peer is gone: reset, connection lost, or the
connection was aborted by us).  After a disconnect ``send`` raises
:class:`ClientDisconnected`, an ``OSError``, as ASGI spec 2.4 asks: the
scope says 2.4, so frameworks (Starlette's StreamingResponse) rely on that
error, not on ``http.disconnect``, to stop streaming to a client that left.

Flow control: request body chunks are buffered here and handed to the app
on ``receive``; the sink is told how much was consumed so it can resume
reading (HTTP/1.1) or acknowledge flow-control credit (HTTP/2, HTTP/3).
``send`` awaits the sink's drain waiter when the peer is not reading.
"""

from __future__ import annotations

import enum
import logging
import os
import time
from collections.abc import Awaitable, Callable
from typing import Any, BinaryIO, Final, Protocol

from ..protocol.errors import LocalProtocolError
from ..protocol.events import Headers
from .types import ASGIApp, Loop, Message, is_cancellation

__all__ = [
    "ASGIMessageError",
    "ClientDisconnected",
    "HTTPSink",
    "HTTPStream",
    "HeadFlush",
    "ResponseState",
]

logger = logging.getLogger("asgiri.error")

_FILE_CHUNK = 256 * 1024
_DISCONNECT: Message = {"type": "http.disconnect"}


class ASGIMessageError(RuntimeError):
    """The app sent a message the ASGI spec does not allow at this point."""


class ClientDisconnected(OSError):
    """``send`` was called after the client went away (ASGI spec 2.4)."""


class ResponseState(enum.Enum):
    START = "start"
    BODY = "body"
    TRAILERS = "trailers"
    DONE = "done"


# The states as module constants: on Python 3.11 every ``ResponseState.X``
# is a class attribute lookup through the enum's metaclass (~0.1 µs each),
# and a request goes through about ten of them.
_START: Final = ResponseState.START
_BODY: Final = ResponseState.BODY
_TRAILERS: Final = ResponseState.TRAILERS
_DONE: Final = ResponseState.DONE


class HTTPSink(Protocol):
    """What a protocol connection offers a stream (implemented per wire protocol)."""

    def send_head(
        self,
        stream: HTTPStream,
        status: int,
        headers: Headers,
        body: bytes,
        end: bool,
        trailers: bool,
    ) -> None:
        """Write the response head with the first body chunk."""

    def send_body(self, stream: HTTPStream, data: bytes, end: bool) -> None:
        """Write a later body chunk (``end``: it is the last)."""

    def send_trailers(self, stream: HTTPStream, trailers: Headers) -> None:
        """Write response trailers; they end the response."""

    def send_informational(self, stream: HTTPStream, status: int, headers: Headers) -> None:
        """Write a 1xx interim response (100 Continue, 103 Early Hints)."""

    def drain(self, stream: HTTPStream) -> Awaitable[None] | None:
        """A waiter when the peer is not reading fast enough, else None."""

    def body_consumed(self, stream: HTTPStream, nbytes: int) -> None:
        """The app took ``nbytes`` of request body: resume reading / grant credit."""

    def sendfile(
        self, stream: HTTPStream, file: Any, offset: int, count: int | None, end: bool
    ) -> Awaitable[None] | None:
        """Zero-copy file send when the transport allows it, else None."""

    def response_complete(self, stream: HTTPStream) -> None:
        """The whole response was handed over (the app may still be running)."""

    def app_done(self, stream: HTTPStream, failed: bool) -> None:
        """The app returned; ``failed``: the response is incomplete and must be aborted."""


class HeadFlush:
    """Response heads held back during this loop iteration, sent by one callback for all.

    A head waits for the app's first body chunk so that both leave in one
    write, but never past the current loop iteration (an app that sends the
    head and then waits on something else still gets its headers out).  One
    callback per iteration for every stream, rather than one per response:
    on Python before 3.12 (no eager tasks) that callback was a measurable
    share of a small request, several times that on asyncio's own loop.
    """

    __slots__ = ("_loop", "_streams")

    def __init__(self, loop: Loop) -> None:
        self._loop = loop
        self._streams: list[HTTPStream] = []

    def hold(self, stream: HTTPStream) -> None:
        streams = self._streams
        if not streams:
            self._loop.call_soon(self._flush)
        streams.append(stream)

    def _flush(self) -> None:
        streams = self._streams
        self._streams = []
        for stream in streams:
            stream.flush_head()


class HTTPStream:
    """One request/response exchange seen through the ASGI ``http`` scope."""

    __slots__ = (
        "_abandoned",
        "_buffered",
        "_chunks",
        "_expect_continue",
        "_final_sent",
        "_head_flush",
        "_loop",
        "_pending_head",
        "_pending_trailers",
        "_running",
        "_sink",
        "_state",
        "_trailers",
        "_waiter",
        "bytes_received",
        "bytes_sent",
        "disconnected",
        "eager",
        "on_complete",
        "request_complete",
        "response_headers",
        "scope",
        "started_at",
        "status",
        "stream_id",
        "task",
    )

    def __init__(
        self,
        sink: HTTPSink,
        loop: Loop,
        scope: dict[str, Any],
        stream_id: int,
        *,
        expect_continue: bool = False,
        on_complete: Callable[[HTTPStream], None] | None = None,
        head_flush: HeadFlush,
    ) -> None:
        self._sink = sink
        self._loop = loop
        #: Where a held-back head waits for the end of the loop iteration.
        self._head_flush = head_flush
        self.scope = scope
        self.stream_id = stream_id
        self._state = _START
        self._chunks: list[bytes] = []
        self._buffered = 0
        self.request_complete = False
        self._final_sent = False
        self._expect_continue = expect_continue
        self._waiter: Any = None
        self._pending_head: tuple[int, Headers, bool] | None = None
        self._pending_trailers: Headers | None = None
        self._trailers = False
        self.disconnected = False
        self.status = 0
        self.bytes_sent = 0
        self.bytes_received = 0
        self.response_headers: Headers = []
        #: Called once the response is complete (the server's access log and/or
        #: metrics, see server.context); None costs nothing per request.
        self.on_complete = on_complete
        self.started_at = time.perf_counter() if on_complete is not None else 0.0
        self.task: Any = None
        self._running = False
        self._abandoned = False
        #: Set by a connection while the app's first step runs inside its
        #: callback (see server.tasks.start_eagerly); the connection then
        #: calls flush_head() itself when that step ends.
        self.eager = False

    # ------------------------------------------------------------ from the connection

    @property
    def buffered(self) -> int:
        """Request body bytes received but not yet taken by the app."""
        return self._buffered

    @property
    def receiving(self) -> bool:
        """The app is blocked in ``receive()`` (a disconnect reaches it at once)."""
        waiter = self._waiter
        return waiter is not None and not waiter.done()

    @property
    def state(self) -> ResponseState:
        return self._state

    @property
    def response_started(self) -> bool:
        return self._state is not _START

    def body_received(self, data: bytes) -> None:
        if self._state is _DONE or self.disconnected:
            # Nobody will read it; the connection may still owe flow-control
            # credit for it (HTTP/2, HTTP/3).
            self._sink.body_consumed(self, len(data))
            return
        self._chunks.append(data)
        self._buffered += len(data)
        self.bytes_received += len(data)
        self._wake()

    def body_ended(self) -> None:
        self.request_complete = True
        if self._waiter is not None:
            self._wake()

    def disconnect(self) -> None:
        """The peer is gone: wake the app so ``receive`` returns ``http.disconnect``."""
        if not self.disconnected:
            self.disconnected = True
            self._chunks.clear()
            self._buffered = 0
            self._wake()

    def reset_by_peer(self) -> None:
        """The stream was reset, or its HTTP/2 or HTTP/3 connection ended: stop wasted work.

        An app blocked in ``receive()`` is not cancelled; it gets
        ``http.disconnect``.  A task that has not taken its first step yet is
        not cancelled either: a coroutine cancelled before it starts never
        runs :meth:`run`'s ``finally``, so the sink would never hear
        ``app_done`` and graceful shutdown would wait for that task forever.
        It is marked instead, and :meth:`run` returns without calling the app.
        """
        receiving = self.receiving
        self.disconnect()
        task = self.task
        if task is None or task.done() or receiving:
            return
        if self._running:
            task.cancel()
        else:
            self._abandoned = True

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None:
            self._waiter = None
            if not waiter.done():
                waiter.set_result(None)

    # ------------------------------------------------------------ ASGI receive

    async def receive(self) -> Message:
        if self._chunks or not (self.request_complete or self.disconnected):
            if not self._chunks:
                if self._expect_continue:
                    self._expect_continue = False
                    if self._state is _START:
                        self._sink.send_informational(self, 100, [])
                await self._wait()
            if self._chunks:
                chunks = self._chunks
                body = chunks[0] if len(chunks) == 1 else b"".join(chunks)
                self._chunks = []
                self._buffered = 0
                self._sink.body_consumed(self, len(body))
                more = not self.request_complete
                if not more:
                    self._final_sent = True
                return {"type": "http.request", "body": body, "more_body": more}
        if self.request_complete and not self._final_sent and not self.disconnected:
            self._final_sent = True
            return {"type": "http.request", "body": b"", "more_body": False}
        # The body has been handed over: the next event is the disconnect.
        # Waiting for it ends as soon as the response is complete, so apps
        # that listen for disconnects while streaming are released.
        while not self.disconnected and self._state is not _DONE:
            await self._wait()
        return _DISCONNECT

    def _wait(self) -> Any:
        waiter = self._waiter
        if waiter is None or waiter.done():
            # A receive() cancelled while waiting (wait_for, a cancel scope)
            # leaves its waiter cancelled: never hand that one out again.
            waiter = self._waiter = self._loop.create_future()
        return waiter

    # ------------------------------------------------------------ ASGI send

    async def send(self, message: Message) -> None:
        try:
            kind = message["type"]
        except (KeyError, TypeError):
            raise ASGIMessageError(f"ASGI message without a type: {message!r}") from None
        if self.disconnected:
            raise ClientDisconnected(f"client disconnected; cannot send {kind!r}")
        state = self._state
        if kind == "http.response.body":
            if state is not _BODY:
                raise ASGIMessageError(_out_of_order(kind, state))
            body = message.get("body", b"")
            more = message.get("more_body", False)
            if type(body) is not bytes:
                if not isinstance(body, _BODY_TYPES):
                    raise ASGIMessageError(f"body must be bytes, got {type(body).__name__}")
                body = bytes(body)
            waiter = self._send_body(body, bool(more))
            if waiter is not None:
                await waiter
        elif kind == "http.response.start":
            if state is not _START:
                raise ASGIMessageError(_out_of_order(kind, state))
            status = message.get("status")
            if type(status) is not int or not (200 <= status <= 599 or status == 101):
                raise ASGIMessageError(f"invalid response status {status!r}")
            headers = message.get("headers", ())
            if type(headers) is not list:
                headers = _header_list(headers)
            _check_headers(headers)
            self.status = status
            self.response_headers = headers
            self._state = _BODY
            self._trailers = bool(message.get("trailers", False))
            self._pending_head = (status, headers, self._trailers)
            # Hold the head so it leaves in one write with the first body chunk,
            # but never past this loop iteration: an app that sends the head and
            # then waits still gets its headers out at once.  While the app runs
            # eagerly inside the connection's callback, the connection flushes
            # it when that first step ends instead.
            if not self.eager:
                self._head_flush.hold(self)
        elif kind == "http.response.trailers":
            if state is not _TRAILERS:
                raise ASGIMessageError(_out_of_order(kind, state))
            trailers = _header_list(message.get("headers", ()))
            _check_headers(trailers)
            if self._pending_trailers is None:
                self._pending_trailers = trailers
            else:
                self._pending_trailers.extend(trailers)
            if not message.get("more_trailers", False):
                if not self.disconnected:
                    try:
                        self._sink.send_trailers(self, self._pending_trailers)
                    except LocalProtocolError as exc:
                        # Nothing was written: the response stays incomplete
                        # (TRAILERS), so the app's failure aborts it.
                        raise ASGIMessageError(str(exc)) from None
                self._state = _DONE
                self._complete()
        elif kind == "http.response.early_hint":
            if state is not _START:
                raise ASGIMessageError(_out_of_order(kind, state))
            links = message.get("links", ())
            hints = []
            for link in links:
                if not isinstance(link, bytes):
                    raise ASGIMessageError("early hint links must be bytes")
                hints.append((b"link", link))
            _check_headers(hints)
            if not self.disconnected:
                self._sink.send_informational(self, 103, hints)
        elif kind == "http.response.pathsend":
            if state is not _BODY:
                raise ASGIMessageError(_out_of_order(kind, state))
            path = message.get("path")
            if not isinstance(path, str):
                raise ASGIMessageError("pathsend needs a 'path' string")
            try:
                # In a thread, as every read of the file: a slow disk or a
                # network file system must not stall the event loop.
                file = await self._loop.run_in_executor(None, _open_binary, path)
            except OSError as exc:
                raise ASGIMessageError(f"pathsend cannot open {path!r}: {exc}") from None
            try:
                await self._send_file(file, 0, None, more=False)
            finally:
                file.close()
        elif kind == "http.response.zerocopy":
            if state is not _BODY:
                raise ASGIMessageError(_out_of_order(kind, state))
            zfile: Any = message.get("file")
            if zfile is None or not hasattr(zfile, "fileno"):
                raise ASGIMessageError("zerocopy needs a 'file' with a fileno()")
            offset = message.get("offset")
            count = message.get("count")
            if offset is None:
                offset = os.lseek(zfile.fileno(), 0, os.SEEK_CUR)
            await self._send_file(zfile, offset, count, more=bool(message.get("more_body", False)))
        else:
            raise ASGIMessageError(f"unexpected ASGI message type {kind!r} on an http scope")

    def flush_head(self) -> None:
        """Send a response head that is still held back waiting for a body."""
        head = self._pending_head
        if head is not None and self._state is _BODY and not self.disconnected:
            self._pending_head = None
            try:
                self._sink.send_head(self, head[0], head[1], b"", False, head[2])
            except LocalProtocolError:
                # Nothing was written: keep the head, so the app's next send
                # raises this error and a 500 can still be answered.
                self._pending_head = head

    def _send_body(self, body: bytes, more: bool) -> Awaitable[None] | None:
        """Hand a body chunk over; returns what to await before the app may go on, if anything.

        A plain function rather than a coroutine: most responses are one
        body message that never waits, and they need no coroutine object.
        """
        head = self._pending_head
        trailers = self._trailers
        if not more:
            self._state = _TRAILERS if trailers else _DONE
        if not self.disconnected:
            self.bytes_sent += len(body)
            try:
                if head is not None:
                    self._pending_head = None
                    end = not more and not trailers
                    self._sink.send_head(self, head[0], head[1], body, end, trailers)
                elif body or not more:
                    self._sink.send_body(self, body, not more and self._state is _DONE)
            except LocalProtocolError as exc:
                # Nothing of this message was written: the response is not
                # complete, and with its head unsent it can still become a 500.
                self._state = _START if head is not None else _BODY
                raise ASGIMessageError(str(exc)) from None
        if self._state is _DONE:
            self._complete()
        elif more and not self.disconnected:
            return self._sink.drain(self)
        return None

    async def _send_file(self, file: Any, offset: int, count: int | None, more: bool) -> None:
        """Send a file's bytes, zero-copy when the sink can, else in chunks read in a thread."""
        if self._pending_head is not None:
            # The head goes first; with a file the body is never coalesced.
            self.flush_head()
        if not self.disconnected:
            direct = self._sink.sendfile(self, file, offset, count, not more)
            if direct is not None:
                try:
                    await direct
                except LocalProtocolError as exc:  # the file does not fit Content-Length
                    raise ASGIMessageError(str(exc)) from None
                if not more:
                    self._state = _DONE
                    self._complete()
                return
        fileno = file.fileno()
        remaining = count
        while remaining is None or remaining > 0:
            if self.disconnected:
                raise ClientDisconnected("client disconnected during a file send")
            size = _FILE_CHUNK if remaining is None else min(_FILE_CHUNK, remaining)
            chunk = await self._loop.run_in_executor(None, os.pread, fileno, size, offset)
            if not chunk:
                break
            offset += len(chunk)
            if remaining is not None:
                remaining -= len(chunk)
            waiter = self._send_body(chunk, True)
            if waiter is not None:
                await waiter
        if not more:
            self._send_body(b"", False)

    def _complete(self) -> None:
        if self._waiter is not None:
            self._wake()
        self._sink.response_complete(self)
        if self.on_complete is not None:
            self.on_complete(self)

    # ------------------------------------------------------------ running the app

    async def run(self, app: ASGIApp) -> None:
        """Call the app and turn every way it can fail into a clean answer."""
        failed = False
        self._running = True
        try:
            if self._abandoned:
                failed = True
                return
            await app(self.scope, self.receive, self.send)
        except BaseException as exc:
            failed = self._app_failed(exc)
            if isinstance(exc, _EXIT_TYPES):
                raise
        else:
            if self._state is _START:
                if not self.disconnected:
                    logger.error("ASGI app returned without starting a response")
                failed = self._respond_error(500)
            elif self._state is not _DONE:
                if not self.disconnected:
                    logger.error("ASGI app returned without completing the response")
                # A head the app sent still goes out (a bodyless 204 stays
                # whole), then the connection is closed.
                self.flush_head()
                failed = self._respond_error(500) if self._pending_head is not None else True
        finally:
            self._sink.app_done(self, failed)

    def _app_failed(self, exc: BaseException) -> bool:
        """Log an app exception; returns True when the response must be aborted."""
        cancelled = is_cancellation(exc)
        if self.disconnected or cancelled:
            logger.debug("ASGI app ended after the client went away: %r", exc)
        elif isinstance(exc, ASGIMessageError):
            logger.error("ASGI app sent an invalid message: %s", exc)
        else:
            logger.error("Exception in ASGI application", exc_info=exc)
        if self._state is _START or self._pending_head is not None:
            # Nothing of the response was written yet: answer 500 instead.
            return self._respond_error(500)
        return self._state is not _DONE

    def _respond_error(self, status: int) -> bool:
        """Answer ``status`` in place of the app; False when that completed the response."""
        if self.disconnected:
            return True
        body = b"Internal Server Error" if status == 500 else b"Error"
        self.status = status
        self._state = _DONE
        self.bytes_sent = len(body)
        self._pending_head = None
        headers = [
            (b"content-type", b"text/plain; charset=utf-8"),
            (b"content-length", b"%d" % len(body)),
            (b"connection", b"close"),
        ]
        self.response_headers = headers
        self._sink.send_head(self, status, headers, body, True, False)
        self._complete()
        return False


_BODY_TYPES: Final = (bytes, bytearray, memoryview)
_EXIT_TYPES: Final = (KeyboardInterrupt, SystemExit)


def _open_binary(path: str) -> BinaryIO:
    return open(path, "rb")


def _out_of_order(kind: str, state: ResponseState) -> str:
    return f"unexpected {kind!r} in response state {state.value!r}"


def _header_list(headers: Any) -> Headers:
    try:
        return [(name, value) for name, value in headers]
    except (TypeError, ValueError):
        raise ASGIMessageError(f"headers must be an iterable of pairs, got {headers!r}") from None


def _check_headers(headers: Headers) -> None:
    pair: Any
    for pair in headers:
        # One test for the usual pair of bytes; the rest only when it fails.
        if (
            type(pair) is not tuple
            or len(pair) != 2
            or type(pair[0]) is not bytes
            or type(pair[1]) is not bytes
        ):
            _check_pair(pair)


def _check_pair(pair: Any) -> None:
    if not isinstance(pair, _PAIR_TYPES) or len(pair) != 2:
        raise ASGIMessageError(f"header must be a (name, value) pair, got {pair!r}")
    name, value = pair
    if type(name) is not bytes or type(value) is not bytes:
        raise ASGIMessageError(f"header name and value must be bytes, got {pair!r}")


_PAIR_TYPES: Final = (tuple, list)
