"""The app the HTTP/2 attack tests serve (``apps.h2attack:app`` for the CLI).

It keeps what the tests need to observe in module globals: a CLI server
exposes them through ``/cancelled``; a server in a thread of the test process
is read directly (``STALLED``).

* ``/``: a small 200.
* ``/empty``: 204, no body (needs no flow-control window).
* ``/mib``: 1 MiB, handed over in one ``send``.
* ``/hang``: sends the head and a first chunk, then awaits an event nobody
  sets, as an app stuck in a long computation or a query would; only
  cancelling its task gets it out, which it counts in ``CANCELLED``.
* ``/cancelled?min=N``: the count of cancelled ``/hang`` apps, once it
  reaches N (or after 5 s).
* ``/hanging``: how many ``/hang`` apps are running now.
* ``/wait``: sends the head and a chunk, then waits for the disconnect.
* ``/sink``: reads the request body to its end, then answers its size.
* ``/big``: 4 MiB in 64 KiB chunks; how the sending ended goes to ``STALLED``.
"""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any

CHUNK = b"\xa5" * (64 * 1024)
BIG_CHUNKS = 64

CANCELLED = 0
HANGING = 0
_cancelled_changed: asyncio.Event | None = None

#: ``(exception class name or "finished", seconds spent in the app)`` per /big.
STALLED: list[tuple[str, float]] = []
STALLED_EVENT = threading.Event()


async def _lifespan(receive: Any, send: Any) -> None:
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return


async def _answer(send: Any, status: int, body: bytes = b"") -> None:
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [(b"content-type", b"text/plain")],
        }
    )
    await send({"type": "http.response.body", "body": body})


async def _hang(send: Any) -> None:
    global CANCELLED, HANGING, _cancelled_changed
    HANGING += 1
    try:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"started", "more_body": True})
        await asyncio.Event().wait()
    except asyncio.CancelledError:
        CANCELLED += 1
        if _cancelled_changed is not None:
            _cancelled_changed.set()
        raise
    finally:
        HANGING -= 1


async def _cancelled(scope: Any, send: Any) -> None:
    global _cancelled_changed
    query = scope["query_string"].decode()
    wanted = int(query.split("=", 1)[1]) if query.startswith("min=") else 0
    deadline = time.monotonic() + 5.0
    while wanted > CANCELLED and time.monotonic() < deadline:
        _cancelled_changed = event = asyncio.Event()
        try:
            await asyncio.wait_for(event.wait(), deadline - time.monotonic())
        except asyncio.TimeoutError:
            break
    await _answer(send, 200, str(CANCELLED).encode())


async def _big(send: Any) -> None:
    started = time.monotonic()
    outcome = "finished"
    try:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        for _ in range(BIG_CHUNKS):
            await send({"type": "http.response.body", "body": CHUNK, "more_body": True})
        await send({"type": "http.response.body", "body": b""})
    except BaseException as exc:
        outcome = type(exc).__name__
        raise
    finally:
        STALLED.append((outcome, time.monotonic() - started))
        STALLED_EVENT.set()


async def app(scope: Any, receive: Any, send: Any) -> None:
    if scope["type"] == "lifespan":
        await _lifespan(receive, send)
        return
    if scope["type"] != "http":
        return
    path = scope["path"]
    if path == "/hang":
        await _hang(send)
    elif path == "/cancelled":
        await _cancelled(scope, send)
    elif path == "/hanging":
        await _answer(send, 200, str(HANGING).encode())
    elif path == "/big":
        await _big(send)
    elif path == "/empty":
        await send({"type": "http.response.start", "status": 204, "headers": []})
        await send({"type": "http.response.body", "body": b""})
    elif path == "/mib":
        # One send: the app never waits for the client to take it.
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": CHUNK * 16})
    elif path == "/wait":
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"waiting", "more_body": True})
        while (await receive())["type"] != "http.disconnect":
            pass
    elif path == "/sink":
        size = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":
                return
            size += len(message.get("body", b""))
            if not message.get("more_body", False):
                break
        await _answer(send, 200, str(size).encode())
    else:
        await _answer(send, 200, b"ok")
