"""WSGI apps (PEP 3333) served as ASGI: every protocol gets them for free.

:class:`WSGIAdapter` is an ASGI 3 app.  Each request runs the WSGI callable in
a thread of a bounded pool (``--wsgi-max-workers``); requests beyond it wait
for a free thread, holding only their (flow-controlled) connection.

The thread never touches the event loop's objects itself.  Whenever it needs
the ASGI side, to read request body or to send response bytes, it schedules
the ``receive``/``send`` coroutine on the loop (``call_soon_threadsafe``) and
blocks on a ``concurrent.futures.Future`` until it is done.  That gives both
directions the server's own flow control:

* ``wsgi.input`` pulls body chunks on demand, so an app that does not read a
  large upload leaves it unread on the socket (HTTP/1.1 stops reading, HTTP/2
  withholds window credit) instead of buffering it;
* the response iterable is pulled in the thread one chunk at a time and each
  chunk is only followed by the next once ``send`` returned, which waits
  while the client is not reading: a slow client slows the generator, it does
  not fill memory.

The response head waits for the first non-empty body chunk (PEP 3333), so an
app may still call ``start_response`` again with ``exc_info`` until then.
This module does not import asyncio: the loop is used through the methods
:class:`~asgiri.asgi.types.Loop` names plus ``call_soon_threadsafe`` and
``run_in_executor``.
"""

from __future__ import annotations

import concurrent.futures
import io
import logging
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from .types import Message, Receive, Scope, Send

__all__ = ["WSGIAdapter"]

logger = logging.getLogger("asgiri.error")

WSGIApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]

_SERVER_PROTOCOLS = {"1.0": "HTTP/1.0", "1.1": "HTTP/1.1", "2": "HTTP/2", "3": "HTTP/3"}


class WSGIAdapter:
    """An ASGI 3 app that runs a WSGI app in a thread pool."""

    def __init__(self, app: WSGIApp, loop: Any, max_workers: int) -> None:
        self.app = app
        self._loop = loop
        self._executor = concurrent.futures.ThreadPoolExecutor(
            max_workers=max_workers, thread_name_prefix="asgiri-wsgi"
        )
        #: Waits of app threads on the loop; failed on close so that no thread
        #: is left blocked on a loop that will never answer.
        self.pending: set[concurrent.futures.Future[Any]] = set()
        self.closed = False

    def close(self) -> None:
        """Stop: requests not started are dropped, threads waiting on the loop are failed.

        Called when the server shuts down (lifespan shutdown), after requests
        in flight had their graceful-shutdown time.  Without it a thread that
        waits for a ``send`` the stopped loop never runs would block the
        interpreter's exit.
        """
        self.closed = True
        self._executor.shutdown(wait=False, cancel_futures=True)
        for waiting in list(self.pending):
            _settle(waiting, exception=OSError("the server is shutting down"))

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind == "http":
            call = _Call(self, receive, send)
            await self._loop.run_in_executor(self._executor, call.run, self.app, scope)
        elif kind == "lifespan":
            # WSGI has no lifespan: answer it, so the server does not warn.
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                elif message["type"] == "lifespan.shutdown":
                    self.close()
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        elif kind == "websocket":
            # A WSGI app cannot speak WebSocket: refuse the handshake (403).
            await receive()
            await send({"type": "websocket.close", "code": 1000})


class _Call:
    """One request: the thread side of the bridge to ``receive``/``send``."""

    def __init__(self, adapter: WSGIAdapter, receive: Receive, send: Send) -> None:
        self._adapter = adapter
        self._loop = adapter._loop
        self._receive = receive
        self._send = send
        self.headers_sent = False
        self._head: tuple[int, list[tuple[bytes, bytes]]] | None = None

    # ------------------------------------------------------------ crossing to the loop

    def _await(self, make: Callable[[], Any]) -> Any:
        """Run the coroutine ``make()`` on the loop; block this thread until it is done."""
        adapter = self._adapter
        if adapter.closed:
            raise OSError("the server is shutting down")
        done: concurrent.futures.Future[Any] = concurrent.futures.Future()

        def finished(task: Any) -> None:
            if task.cancelled():
                _settle(done, exception=OSError("cancelled"))
            elif task.exception() is not None:
                _settle(done, exception=task.exception())
            else:
                _settle(done, result=task.result())

        def start() -> None:
            self._loop.create_task(make()).add_done_callback(finished)

        adapter.pending.add(done)
        try:
            self._loop.call_soon_threadsafe(start)
            return done.result()
        finally:
            adapter.pending.discard(done)

    def receive(self) -> Message:
        message: Message = self._await(self._receive)
        return message

    def send(self, *messages: Message) -> None:
        """Send ``messages`` in order, crossing to the loop once for all of them."""
        send = self._send

        async def send_all() -> None:
            for message in messages:
                await send(message)

        self._await(send_all)

    # ------------------------------------------------------------ the WSGI side

    def start_response(
        self,
        status: str,
        headers: list[tuple[str, str]],
        exc_info: Any = None,
    ) -> Callable[[bytes], None]:
        if exc_info is not None:
            try:
                if self.headers_sent:
                    # Too late to change the answer: PEP 3333 says re-raise.
                    raise exc_info[1].with_traceback(exc_info[2])
            finally:
                exc_info = None
        elif self._head is not None:
            raise RuntimeError("start_response called twice without exc_info")
        try:
            code = int(status.split(" ", 1)[0])
            encoded = [
                (name.lower().encode("latin-1"), value.encode("latin-1")) for name, value in headers
            ]
        except (AttributeError, ValueError, TypeError, UnicodeEncodeError) as exc:
            raise ValueError(f"invalid WSGI status or headers: {exc}") from None
        self._head = (code, encoded)
        return self._write

    def _write(self, data: bytes) -> None:
        """The legacy ``write()`` callable: sends at once."""
        self._body(data, more=True)

    def _body(self, data: bytes, more: bool) -> None:
        body = {"type": "http.response.body", "body": data, "more_body": more}
        if self.headers_sent:
            self.send(body)
            return
        if self._head is None:
            raise RuntimeError("WSGI app sent a body before calling start_response")
        self.headers_sent = True
        status, headers = self._head
        self.send({"type": "http.response.start", "status": status, "headers": headers}, body)

    def run(self, app: WSGIApp, scope: Scope) -> None:
        environ = build_environ(scope, _Input(self))
        result = app(environ, self.start_response)
        try:
            if isinstance(result, list | tuple) and len(result) <= 1:
                # The common whole-body answer: head and body in one message.
                self._body(bytes(result[0]) if result else b"", more=False)
                return
            iterator: Iterator[bytes] = iter(result)
            for chunk in iterator:
                if chunk:
                    self._body(bytes(chunk), more=True)
            self._body(b"", more=False)
        finally:
            close = getattr(result, "close", None)
            if close is not None:
                close()


def _settle(
    future: concurrent.futures.Future[Any],
    *,
    result: Any = None,
    exception: BaseException | None = None,
) -> None:
    """Complete ``future`` unless something else (close, the loop) already did."""
    try:
        if exception is not None:
            future.set_exception(exception)
        else:
            future.set_result(result)
    except concurrent.futures.InvalidStateError:
        pass


class _Input(io.RawIOBase):
    """``wsgi.input``: request body pulled from ASGI ``receive`` as the app reads."""

    def __init__(self, call: _Call) -> None:
        super().__init__()
        self._call = call
        self._buffer = bytearray()
        self._more = True

    def readable(self) -> bool:
        return True

    def _fill(self) -> bool:
        """Append the next chunk to the buffer; False at the end of the body."""
        while self._more:
            message = self._call.receive()
            if message["type"] != "http.request":  # http.disconnect
                self._more = False
                raise OSError("client disconnected while the request body was read")
            self._more = bool(message.get("more_body", False))
            body = message.get("body", b"")
            if body:
                self._buffer += body
                return True
        return False

    def read(self, size: int | None = -1) -> bytes:
        if size is None or size < 0:
            while self._fill():
                pass
            data = bytes(self._buffer)
            self._buffer.clear()
            return data
        while len(self._buffer) < size and self._fill():
            pass
        data = bytes(self._buffer[:size])
        del self._buffer[:size]
        return data

    def readinto(self, target: Any) -> int:
        data = self.read(len(target))
        target[: len(data)] = data
        return len(data)

    def readline(self, size: int | None = -1) -> bytes:
        while True:
            end = self._buffer.find(b"\n")
            if end >= 0 or not self._fill():
                break
            if size is not None and 0 <= size <= len(self._buffer):
                break
        stop = len(self._buffer) if end < 0 else end + 1
        if size is not None and size >= 0:
            stop = min(stop, size)
        data = bytes(self._buffer[:stop])
        del self._buffer[:stop]
        return data

    def __iter__(self) -> Iterator[bytes]:
        while True:
            line = self.readline()
            if not line:
                return
            yield line


class _Errors:
    """``wsgi.errors``: what the app writes goes to the ``asgiri.error`` log."""

    def write(self, text: str) -> int:
        text = text.rstrip("\n")
        if text:
            logger.error("%s", text)
        return len(text)

    def writelines(self, lines: Iterable[str]) -> None:
        for line in lines:
            self.write(line)

    def flush(self) -> None:
        pass


def build_environ(scope: Scope, body: Any) -> dict[str, Any]:
    """The PEP 3333 environ of an ASGI http scope."""
    root_path = scope.get("root_path", "")
    path = scope["path"]
    if root_path and path.startswith(root_path):
        path = path[len(root_path) :]
    server = scope.get("server") or ("localhost", None)
    client = scope.get("client")
    environ: dict[str, Any] = {
        "REQUEST_METHOD": scope["method"],
        # WSGI strings are bytes decoded as latin-1; ASGI paths are UTF-8 text.
        "SCRIPT_NAME": root_path.encode("utf-8").decode("latin-1"),
        "PATH_INFO": path.encode("utf-8").decode("latin-1"),
        "QUERY_STRING": scope["query_string"].decode("latin-1"),
        "SERVER_NAME": str(server[0]),
        "SERVER_PORT": str(server[1]) if server[1] is not None else "80",
        "SERVER_PROTOCOL": _SERVER_PROTOCOLS.get(scope["http_version"], "HTTP/1.1"),
        "wsgi.version": (1, 0),
        "wsgi.url_scheme": scope.get("scheme", "http"),
        "wsgi.input": body,
        "wsgi.errors": _Errors(),
        "wsgi.multithread": True,
        "wsgi.multiprocess": False,
        "wsgi.run_once": False,
    }
    if client:
        environ["REMOTE_ADDR"] = client[0]
        environ["REMOTE_PORT"] = str(client[1])
    for raw_name, raw_value in scope["headers"]:
        name = raw_name.decode("latin-1")
        value = raw_value.decode("latin-1")
        if name == "content-type":
            key = "CONTENT_TYPE"
        elif name == "content-length":
            key = "CONTENT_LENGTH"
        else:
            key = "HTTP_" + name.upper().replace("-", "_")
        if key in environ:
            # Repeated fields fold into one (cookies with "; " as RFC 9113 says).
            value = environ[key] + ("; " if key == "HTTP_COOKIE" else ",") + value
        environ[key] = value
    return environ
