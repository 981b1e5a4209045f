"""ASGI apps for the WebTransport tests: session mode, per-stream mode, denial, slow readers.

Every app records what it saw in :data:`EVENTS` (thread-safe), which the
tests read with :func:`event`.
"""

from __future__ import annotations

import asyncio
import queue
import threading
from typing import Any

EVENTS: queue.Queue[tuple[str, Any]] = queue.Queue()
#: Set to let ``/still`` apps (which read nothing) end.
RELEASE = threading.Event()
TIMEOUT = 10.0


def record(name: str, value: Any) -> None:
    EVENTS.put((name, value))


def event(name: str, timeout: float = TIMEOUT) -> Any:
    """The next recorded value under ``name`` (others recorded meanwhile are dropped)."""
    while True:
        key, value = EVENTS.get(timeout=timeout)
        if key == name:
            return value


def clear() -> None:
    RELEASE.set()  # an app held by the previous test lets go
    while not EVENTS.empty():
        EVENTS.get_nowait()
    RELEASE.clear()


async def _http(scope: Any, receive: Any, send: Any) -> None:
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"http"})


async def session(scope: Any, receive: Any, send: Any) -> None:
    """Session mode; what it does depends on the path.

    ``/echo``: bidirectional streams are echoed on themselves, unidirectional
    ones on a new unidirectional stream of ours, datagrams as datagrams;
    ``close <code> <reason>`` on a stream makes it close the session.
    ``/deny``: 403 with a body.  ``/open``: opens a stream of its own and a
    unidirectional one, sends on both.  ``/still``: accepts and never reads.
    """
    if scope["type"] == "http":
        await _http(scope, receive, send)
        return
    if scope["type"] != "webtransport":
        return
    path = scope["path"]
    message = await receive()
    assert message["type"] == "webtransport.connect"
    record("scope", {k: scope[k] for k in ("type", "path", "http_version", "scheme")})
    if path == "/deny":
        await send(
            {
                "type": "webtransport.http.response.start",
                "status": 403,
                "headers": [(b"content-type", b"text/plain")],
            }
        )
        await send({"type": "webtransport.http.response.body", "body": b"not you"})
        return
    if path == "/reject":
        await send({"type": "webtransport.close"})
        return
    await send({"type": "webtransport.accept", "headers": [(b"x-session", b"yes")]})
    if path == "/still":
        record("still", "accepted")
        await asyncio.to_thread(RELEASE.wait, 30)
        return
    if path == "/flood":
        await send({"type": "webtransport.stream.open", "ref": "flood"})
        opened = await receive()
        chunk = b"f" * 65536
        try:
            while True:
                await send(
                    {"type": "webtransport.stream.send", "stream": opened["stream"], "data": chunk}
                )
        except Exception as exc:  # the stream is reset: the send fails
            record("flood-ended", type(exc).__name__)
            raise
    if path == "/open":
        await send({"type": "webtransport.stream.open", "ref": "bidi"})
        await send({"type": "webtransport.stream.open", "unidirectional": True, "ref": "uni"})
    uni_replies: dict[int, int] = {}
    buffers: dict[int, bytes] = {}
    while True:
        message = await receive()
        kind = message["type"]
        if kind == "webtransport.disconnect":
            record("disconnect", (path, message["code"], message["reason"]))
            return
        if kind == "webtransport.datagram.receive":
            await send({"type": "webtransport.datagram.send", "data": b"echo:" + message["data"]})
        elif kind == "webtransport.stream.opened":
            record("opened", (message["ref"], message["stream"]))
            await send(
                {
                    "type": "webtransport.stream.send",
                    "stream": message["stream"],
                    "data": b"from the server " + message["ref"].encode(),
                    "end_stream": message["ref"] == "uni",
                }
            )
        elif kind == "webtransport.stream.reset":
            record("stream-reset", (message["stream"], message["error_code"]))
        elif kind == "webtransport.stream.receive":
            stream = message["stream"]
            data = message["data"]
            buffers[stream] = buffers.get(stream, b"") + data
            if buffers[stream].startswith(b"close "):
                if message["stream_ended"]:
                    _, code, reason = buffers[stream].decode().split(" ", 2)
                    await send({"type": "webtransport.close", "code": int(code), "reason": reason})
                continue
            if not message["unidirectional"]:
                await send(
                    {
                        "type": "webtransport.stream.send",
                        "stream": stream,
                        "data": data,
                        "end_stream": message["stream_ended"],
                    }
                )
                continue
            reply = uni_replies.get(stream)
            if reply is None:
                await send(
                    {"type": "webtransport.stream.open", "unidirectional": True, "ref": stream}
                )
                opened = await receive()
                assert opened["type"] == "webtransport.stream.opened", opened
                reply = uni_replies[stream] = opened["stream"]
            await send(
                {
                    "type": "webtransport.stream.send",
                    "stream": reply,
                    "data": data,
                    "end_stream": message["stream_ended"],
                }
            )


async def per_stream(scope: Any, receive: Any, send: Any) -> None:
    """The original asgiri's per-stream mode: an app that knows nothing of session scopes."""
    if scope["type"] == "http":
        await _http(scope, receive, send)
        return
    if scope["type"] != "webtransport.stream":
        return  # unknown scope types are ignored, as most apps do
    record(
        "stream-scope",
        {k: scope[k] for k in ("type", "path", "session_id", "stream_id", "http_version")}
        | {"headers": dict(scope["headers"])},
    )
    received = b""
    while True:
        message = await receive()
        if message["type"] == "webtransport.stream.disconnect":
            record("stream-disconnect", scope["stream_id"])
            return
        received += message["data"]
        if message["stream_ended"]:
            if scope["stream_id"] & 2:
                record("uni-received", received)
            else:
                await send(
                    {
                        "type": "webtransport.stream.send",
                        "data": b"per-stream:" + received,
                        "end_stream": True,
                    }
                )
