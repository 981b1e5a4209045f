"""The one app every contract test serves, and the record of what it saw.

Each path is one behaviour (an answer, a failure, a hold, a flood); the app
notes what happened to it in :data:`RECORD`, which the test reads from its
own thread.  The same app runs in a subprocess (``tests.contract.app:app``)
for the worker tests, where only its answers matter.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import threading
import time
from typing import Any


def _log_line(line: str) -> None:
    """One line to stdout in one write call (see the /slow request)."""
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


Message = dict[str, Any]
Scope = dict[str, Any]

#: The link header of ``/early-hints`` (its 103 and its final response).
EARLY_LINK = b"</style.css>; rel=preload; as=style"
#: The trailer of ``/trailers``.
TRAILER = (b"x-checksum", b"c0ffee")
#: ``/stream`` and ``/ws-flood`` send this much at a time.
CHUNK = 64 * 1024


class Record:
    """Notes the app takes in the server's thread, read by the test in its own."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._notes: list[tuple[str, Any]] = []

    def note(self, key: str, value: Any = None) -> None:
        with self._lock:
            self._notes.append((key, value))

    def clear(self) -> None:
        with self._lock:
            self._notes.clear()

    def values(self, key: str) -> list[Any]:
        with self._lock:
            return [value for k, value in self._notes if k == key]

    def wait(self, key: str, timeout: float = 10.0, count: int = 1) -> list[Any]:
        """The values noted under ``key`` once there are ``count`` (polled with a deadline)."""
        deadline = time.monotonic() + timeout
        while len(found := self.values(key)) < count:
            if time.monotonic() > deadline:
                with self._lock:
                    notes = list(self._notes)
                raise AssertionError(f"{key!r} not noted {count}x within {timeout}s: {notes}")
            time.sleep(0.01)
        return found

    def wait_value(self, key: str, value: Any, timeout: float = 10.0) -> list[Any]:
        """The values noted under ``key`` once ``value`` is one of them."""
        deadline = time.monotonic() + timeout
        while value not in (found := self.values(key)):
            if time.monotonic() > deadline:
                raise AssertionError(f"{key!r} never noted {value!r} within {timeout}s: {found}")
            time.sleep(0.01)
        return found


RECORD = Record()


async def _start(
    send: Any,
    status: int = 200,
    headers: list[tuple[bytes, bytes]] | None = None,
    trailers: bool = False,
) -> None:
    message: Message = {
        "type": "http.response.start",
        "status": status,
        "headers": [(b"content-type", b"text/plain")] if headers is None else headers,
    }
    if trailers:
        message["trailers"] = True
    await send(message)


async def _body(send: Any, data: bytes, more: bool = False) -> None:
    await send({"type": "http.response.body", "body": data, "more_body": more})


async def _read_body(receive: Any, key: str) -> bytes | None:
    """The whole request body, noting every message type; None on a disconnect."""
    body = b""
    while True:
        message = await receive()
        RECORD.note(key, message["type"])
        if message["type"] == "http.disconnect":
            return None
        body += bytes(message.get("body", b""))
        if not message.get("more_body", False):
            return body


async def _http(scope: Scope, receive: Any, send: Any) -> None:
    path = scope["path"]
    query = scope["query_string"].decode()
    RECORD.note("called", path)
    if path == "/ok":
        await _start(send)
        await _body(send, b"ok")
    elif path == "/pid":
        # Which worker process answered (--workers).
        await _start(send)
        await _body(send, b"%d" % os.getpid())
    elif path == "/echo":
        body = await _read_body(receive, "echo")
        if body is not None:
            await _start(send)
            await _body(send, b"%d bytes" % len(body))
    elif path == "/head-first":
        # The head, then a body that waits for the client, which ends its own
        # body only once it has seen the head: a head held back for the body
        # would leave both sides waiting.
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await _read_body(receive, "head-first")
        await _body(send, b"after the head")
    elif path == "/hold":
        # Held in receive() until the client goes away (its body never ends).
        RECORD.note("hold", "started")
        await _read_body(receive, "hold-receive")
    elif path == "/scope":
        answer = {
            "extensions": sorted(scope.get("extensions") or {}),
            "http_version": scope["http_version"],
        }
        await _start(send, headers=[(b"content-type", b"application/json")])
        await _body(send, json.dumps(answer).encode())
    elif path == "/raise-before":
        raise RuntimeError("failed before the response")
    elif path == "/raise-after":
        await _start(send)
        await _body(send, b"part of it", more=True)
        RECORD.note("raise-after", "head sent")
        raise RuntimeError("failed in the middle of the response")
    elif path == "/return-empty":
        return
    elif path == "/short":
        await _start(send, headers=[(b"content-length", b"10")])
        await _body(send, b"12345", more=True)
    elif path == "/long":
        await _start(send, headers=[(b"content-length", b"5")])
        await _body(send, b"abc", more=True)
        try:
            await _body(send, b"defgh")
        except Exception as exc:
            RECORD.note("long", type(exc).__name__)
            raise
        RECORD.note("long", "accepted")
    elif path == "/trailers":
        await _start(send, trailers=True)
        await _body(send, b"with trailers")
        await send({"type": "http.response.trailers", "headers": [TRAILER]})
    elif path == "/early-hints":
        await send({"type": "http.response.early_hint", "links": [EARLY_LINK]})
        await _start(send, headers=[(b"content-type", b"text/plain"), (b"link", EARLY_LINK)])
        await _body(send, b"after the hints")
    elif path == "/pathsend":
        size = os.path.getsize(query)
        await _start(send, headers=[(b"content-length", b"%d" % size)])
        await send({"type": "http.response.pathsend", "path": query})
    elif path == "/stream":
        # ?BYTES of response in CHUNK pieces, for clients that read slowly or not at all.
        await _stream(send, int(query))
    elif path == "/slow":
        RECORD.note("slow", "started")
        # One write: the workers share the test's pipe, and print() writes the
        # text and its newline apart when unbuffered, so two lines could merge.
        _log_line(f"slow request started in {os.getpid()}")
        await asyncio.sleep(float(query or "1"))
        await _start(send)
        await _body(send, b"finished after a while")
        RECORD.note("slow", "answered")
    else:
        await _start(send, 404)
        await _body(send, b"no such path")


async def _stream(send: Any, total: int) -> None:
    chunk = b"x" * CHUNK
    sent = 0
    try:
        await _start(send, headers=[(b"content-length", b"%d" % total)])
        while sent < total:
            piece = chunk[: total - sent]
            sent += len(piece)
            await _body(send, piece, more=sent < total)
    except BaseException as exc:
        RECORD.note("stream", type(exc).__name__)
        raise
    RECORD.note("stream", "completed")


async def _websocket(scope: Scope, receive: Any, send: Any) -> None:
    path = scope["path"]
    message = await receive()
    assert message["type"] == "websocket.connect"
    RECORD.note("ws", "connect")
    await send({"type": "websocket.accept"})
    if path == "/ws-flood":
        # Sends until sending fails: a client that stops reading must not hold it forever.
        data = b"f" * CHUNK
        try:
            while True:
                await send({"type": "websocket.send", "bytes": data})
        except Exception as exc:
            RECORD.note("flood", type(exc).__name__)
        return
    while True:
        message = await receive()
        if message["type"] == "websocket.disconnect":
            RECORD.note("ws-disconnect", message.get("code"))
            return
        if message.get("text") is not None:
            await send({"type": "websocket.send", "text": message["text"]})
        else:
            await send({"type": "websocket.send", "bytes": message["bytes"]})


async def _lifespan(receive: Any, send: Any) -> None:
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return


async def app(scope: Scope, receive: Any, send: Any) -> None:
    kind = scope["type"]
    if kind == "http":
        await _http(scope, receive, send)
    elif kind == "websocket":
        await _websocket(scope, receive, send)
    elif kind == "lifespan":
        await _lifespan(receive, send)
