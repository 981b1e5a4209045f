"""Small ASGI apps the tests serve (importable as ``apps:NAME`` by the CLI)."""

from __future__ import annotations

import asyncio
import json
from typing import Any

HELLO = b"Hello, World!"


async def hello(scope: Any, receive: Any, send: Any) -> None:
    if scope["type"] == "lifespan":
        await lifespan_ok(scope, receive, send)
        return
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [(b"content-type", b"text/plain")],
        }
    )
    await send({"type": "http.response.body", "body": HELLO})


async def lifespan_ok(scope: Any, receive: Any, send: Any) -> None:
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            scope["state"]["started"] = True
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return


async def echo(scope: Any, receive: Any, send: Any) -> None:
    """Echo the request body back, streaming it chunk by chunk."""
    if scope["type"] != "http":
        return
    await send({"type": "http.response.start", "status": 200, "headers": []})
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return
        body = message.get("body", b"")
        more = message.get("more_body", False)
        await send({"type": "http.response.body", "body": body, "more_body": more})
        if not more:
            return


async def scope_json(scope: Any, receive: Any, send: Any) -> None:
    """Answer with the scope as JSON (bytes decoded as latin-1)."""
    if scope["type"] == "lifespan":
        await lifespan_ok(scope, receive, send)
        return

    def clean(value: Any) -> Any:
        if isinstance(value, bytes):
            return value.decode("latin-1")
        if isinstance(value, dict):
            return {k: clean(v) for k, v in value.items()}
        if isinstance(value, list | tuple):
            return [clean(v) for v in value]
        return value

    body = json.dumps(clean(dict(scope))).encode()
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [(b"content-type", b"application/json")],
        }
    )
    await send({"type": "http.response.body", "body": body})


async def slow(scope: Any, receive: Any, send: Any) -> None:
    """Sleep ``?s`` seconds (default 1) then answer; for shutdown tests."""
    if scope["type"] != "http":
        return
    query = scope["query_string"].decode()
    delay = float(query.split("=", 1)[1]) if query.startswith("s=") else 1.0
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"begin;", "more_body": True})
    await asyncio.sleep(delay)
    await send({"type": "http.response.body", "body": b"end"})
