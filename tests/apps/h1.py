"""The HTTP/1.1 tests' router app: each path is one behaviour (echo, stream, sleep, close,
status, hold, no-read) that some test needs.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any


async def read_body(receive: Any) -> bytes:
    parts = []
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ConnectionError("client went away")
        parts.append(message.get("body", b""))
        if not message.get("more_body", False):
            return b"".join(parts)


async def respond(send: Any, status: int, body: bytes, headers: Any = ()) -> None:
    await send({"type": "http.response.start", "status": status, "headers": list(headers)})
    await send({"type": "http.response.body", "body": body})


async def app(scope: Any, receive: Any, send: Any) -> None:
    """A small router; every route is used by at least one test."""
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
    path = scope["path"]
    query = scope["query_string"].decode()
    if path == "/":
        await respond(send, 200, b"Hello, World!", [(b"content-type", b"text/plain")])
    elif path == "/path":
        target = scope["raw_path"] + (b"?" + scope["query_string"] if query else b"")
        await respond(send, 200, target)
    elif path == "/info":
        body = await read_body(receive)
        info = {
            "method": scope["method"],
            "path": scope["path"],
            "http_version": scope["http_version"],
            "body": body.decode("latin-1"),
            "headers": [[k.decode("latin-1"), v.decode("latin-1")] for k, v in scope["headers"]],
            "client_port": scope["client"][1],
        }
        await respond(send, 200, json.dumps(info).encode())
    elif path == "/echo":
        # Reads the whole body before answering (so limits are checked first).
        await respond(send, 200, await read_body(receive))
    elif path == "/stream":
        await send({"type": "http.response.start", "status": 200, "headers": []})
        for part in (b"one", b"two", b"three"):
            await send({"type": "http.response.body", "body": part, "more_body": True})
        await send({"type": "http.response.body", "body": b"", "more_body": False})
    elif path == "/sleep":
        delay = query.split("&")[0]
        await asyncio.sleep(float(delay))
        await respond(send, 200, b"slept " + delay.encode())
    elif path == "/close":
        await respond(send, 200, b"bye", [(b"connection", b"close")])
    elif path.startswith("/status/"):
        status = int(path.rsplit("/", 1)[1])
        await respond(send, status, b"must not be sent" if query == "body" else b"")
    elif path == "/no-read":
        # Answers without ever calling receive (Expect: 100-continue tests).
        await respond(send, int(query or "200"), b"not read")
    elif path == "/hold":
        # Starts a streamed response, then holds the request until the client leaves.
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"started", "more_body": True})
        while (await receive())["type"] != "http.disconnect":
            pass
    else:
        await respond(send, 404, b"not found")
