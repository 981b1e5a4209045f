"""WebSocket apps the tests serve (importable as ``apps.ws:NAME`` by the CLI).

Each app records what it saw into :data:`EVENTS` (a thread-safe queue the
in-process tests read back) when it runs in a thread server.
"""

from __future__ import annotations

import asyncio
import json
import queue
from typing import Any

from fastapi import FastAPI, WebSocketException
from fastapi import WebSocket as FastAPIWebSocket
from fastapi import WebSocketDisconnect as FastAPIWebSocketDisconnect
from starlette.applications import Starlette
from starlette.routing import WebSocketRoute
from starlette.websockets import WebSocket, WebSocketDisconnect

#: What the apps saw: ``(name, value)`` tuples, read by the in-process tests.
EVENTS: queue.Queue[tuple[str, Any]] = queue.Queue()

_CHUNK = b"\x5a" * (64 * 1024)


def record(name: str, value: Any) -> None:
    EVENTS.put((name, value))


def drain_events() -> None:
    while True:
        try:
            EVENTS.get_nowait()
        except queue.Empty:
            return


def _query(scope: Any) -> dict[str, str]:
    out: dict[str, str] = {}
    for part in scope["query_string"].decode().split("&"):
        key, _, value = part.partition("=")
        if key:
            out[key] = value
    return out


async def echo(scope: Any, receive: Any, send: Any) -> None:
    """Accept, then echo every text and binary message until the client closes."""
    if scope["type"] != "websocket":
        if scope["type"] == "http":
            await send({"type": "http.response.start", "status": 404, "headers": []})
            await send({"type": "http.response.body", "body": b"websocket only"})
        return
    message = await receive()
    assert message["type"] == "websocket.connect"
    await send({"type": "websocket.accept"})
    while True:
        message = await receive()
        if message["type"] == "websocket.disconnect":
            record("disconnect", message)
            return
        if message.get("text") is not None:
            await send({"type": "websocket.send", "text": message["text"]})
        else:
            await send({"type": "websocket.send", "bytes": message["bytes"]})


async def scope_app(scope: Any, receive: Any, send: Any) -> None:
    """Record the scope, accept with the first offered subprotocol, send the scope as JSON."""
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                scope["state"]["greeting"] = "hi"
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
    if scope["type"] != "websocket":
        record("http-scope", scope)
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"plain http"})
        return
    record("scope", scope)
    message = await receive()
    record("connect", message)
    subprotocol = scope["subprotocols"][0] if scope["subprotocols"] else None
    await send(
        {
            "type": "websocket.accept",
            "subprotocol": subprotocol,
            "headers": [(b"x-extra", b"yes"), (b"set-cookie", b"a=1")],
        }
    )
    message = await receive()
    record("message", message)
    await send({"type": "websocket.send", "text": "thanks"})
    message = await receive()
    record("after", message)


async def behave(scope: Any, receive: Any, send: Any) -> None:
    """What the app does is chosen by the path; see the branches."""
    if scope["type"] != "websocket":
        return
    path = scope["path"]
    query = _query(scope)
    message = await receive()
    assert message["type"] == "websocket.connect"
    if path == "/deny":  # close before accept -> 403
        await send({"type": "websocket.close", "code": 1000})
        return
    if path == "/denial":  # the websocket.http.response extension
        status = int(query.get("status", "401"))
        await send(
            {
                "type": "websocket.http.response.start",
                "status": status,
                "headers": [(b"content-type", b"text/plain"), (b"x-denied", b"1")],
            }
        )
        parts = int(query.get("parts", "1"))
        for index in range(parts):
            await send(
                {
                    "type": "websocket.http.response.body",
                    "body": b"denied part %d;" % index,
                    "more_body": index < parts - 1,
                }
            )
        return
    if path == "/raise-before":
        raise RuntimeError("boom before accept")
    if path == "/return-before":
        return
    if path == "/bad-subprotocol":  # not a token: an invalid message, so 500
        await send({"type": "websocket.accept", "subprotocol": "caf\u00e9 au lait"})
        return
    if path == "/send-before-accept":
        await send({"type": "websocket.send", "text": "too early"})
        return
    await send({"type": "websocket.accept"})
    if path == "/raise-after":
        await receive()
        raise RuntimeError("boom after accept")
    if path == "/return-after":
        await receive()
        return
    if path == "/accept-twice":
        await receive()
        await send({"type": "websocket.accept"})
        return
    if path == "/close":  # app closes with code and reason after one message
        await receive()
        await send({"type": "websocket.close", "code": 4321, "reason": "bye now"})
        record("closed", True)
        message = await receive()
        record("after-close", message)
        return
    if path == "/wait-close":  # wait for the client's close
        while True:
            message = await receive()
            if message["type"] == "websocket.disconnect":
                record("disconnect", message)
                return
            record("message", message)
    if path == "/no-read":  # accept and never read (incoming backpressure)
        record("accepted", True)
        await asyncio.sleep(3600)
        return
    if path == "/flood":  # send endlessly (outgoing backpressure)
        total = 0
        limit = int(query.get("mib", "0")) * 1024 * 1024
        try:
            while not limit or total < limit:
                await send({"type": "websocket.send", "bytes": _CHUNK})
                total += len(_CHUNK)
        except OSError as exc:  # the client went away mid-flood
            record("flood-ended", type(exc).__name__)
            raise
        await receive()
        return
    if path == "/shutdown":  # wait until the server goes away
        record("accepted", True)
        message = await receive()
        record("disconnect", message)
        return
    raise RuntimeError(f"unknown path {path!r}")


async def json_echo(scope: Any, receive: Any, send: Any) -> None:
    """Echo JSON text messages with a field added (CLI-served helper)."""
    if scope["type"] != "websocket":
        return
    await receive()
    await send({"type": "websocket.accept"})
    while True:
        message = await receive()
        if message["type"] == "websocket.disconnect":
            return
        data = json.loads(message["text"])
        data["echo"] = True
        await send({"type": "websocket.send", "text": json.dumps(data)})


# ----------------------------------------------------------------------------- frameworks


def starlette_app() -> Starlette:
    async def echo_endpoint(websocket: WebSocket) -> None:
        await websocket.accept(
            subprotocol="v1" if "v1" in websocket.scope["subprotocols"] else None
        )
        try:
            while True:
                text = await websocket.receive_text()
                await websocket.send_text(f"starlette: {text}")
        except WebSocketDisconnect as exc:
            record("starlette-disconnect", (exc.code, exc.reason))

    async def json_endpoint(websocket: WebSocket) -> None:
        await websocket.accept()
        data = await websocket.receive_json()
        await websocket.send_json({"got": data, "path": websocket.url.path})
        blob = await websocket.receive_bytes()
        await websocket.send_bytes(blob[::-1])
        await websocket.close(code=4001, reason="starlette done")

    async def reject_endpoint(websocket: WebSocket) -> None:
        await websocket.close(code=1008)

    return Starlette(
        routes=[
            WebSocketRoute("/echo", echo_endpoint),
            WebSocketRoute("/json", json_endpoint),
            WebSocketRoute("/reject", reject_endpoint),
        ]
    )


def fastapi_app() -> FastAPI:
    app = FastAPI()

    @app.websocket("/rooms/{room}")
    async def room(websocket: FastAPIWebSocket, room: str, token: str | None = None) -> None:
        if token != "secret":
            raise WebSocketException(code=1008, reason="bad token")
        await websocket.accept()
        try:
            while True:
                data = await websocket.receive_json()
                await websocket.send_json({"room": room, "data": data})
        except FastAPIWebSocketDisconnect as exc:
            record("fastapi-disconnect", (exc.code, exc.reason))

    @app.websocket("/close")
    async def close(websocket: FastAPIWebSocket) -> None:
        await websocket.accept()
        text = await websocket.receive_text()
        await websocket.send_text(text * 2)
        await websocket.close(code=4002, reason="fastapi done")

    @app.websocket("/needs-query")
    async def needs_query(websocket: FastAPIWebSocket, required: int) -> None:
        # A missing or invalid ?required= fails validation before accept: FastAPI
        # then closes with a *list* of errors as the reason.
        await websocket.accept()
        await websocket.send_text(str(required + 1))
        await websocket.close()

    return app
