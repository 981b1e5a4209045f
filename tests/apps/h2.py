"""ASGI apps for the HTTP/2 tests (importable as ``apps.h2:NAME`` by the CLI).

Plain apps are module-level coroutines; apps that report back to a test are
built by ``make_*`` factories around thread-safe queues and events, since
the server runs in another thread (or process).  Nothing here imports other
test modules, so the CLI can load it from the ``tests`` directory.
"""

from __future__ import annotations

import asyncio
import json
import queue
import threading
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from fastapi import BackgroundTasks as FastAPIBackgroundTasks
from fastapi import FastAPI, Request
from starlette.applications import Starlette
from starlette.background import BackgroundTask
from starlette.requests import Request as StarletteRequest
from starlette.responses import FileResponse, JSONResponse, PlainTextResponse, StreamingResponse
from starlette.routing import Route

TIMEOUT = 10.0
HELLO = b"Hello, World!"
STREAM_CHUNKS = [b"chunk0;", b"chunk1;", b"chunk2;", b"chunk3;", b"chunk4"]
Scope = dict[str, Any]


def clean(value: Any) -> Any:
    """Make a scope JSON-serialisable (bytes as latin-1 text)."""
    if isinstance(value, bytes):
        return value.decode("latin-1")
    if isinstance(value, dict):
        return {k: clean(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [clean(v) for v in value]
    return value


async def read_body(receive: Any) -> tuple[bytes, int]:
    """The whole request body and the number of ``http.request`` messages it took."""
    body = b""
    messages = 0
    while True:
        message = await receive()
        if message["type"] != "http.request":
            raise ConnectionError("client went away")
        body += message.get("body", b"")
        messages += 1
        if not message.get("more_body", False):
            return body, messages


async def respond(
    send: Any,
    body: bytes,
    status: int = 200,
    content_type: bytes = b"text/plain",
    headers: list[tuple[bytes, bytes]] | None = None,
) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", content_type),
                (b"content-length", b"%d" % len(body)),
                *(headers or []),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


# ----------------------------------------------------------------------------- plain apps


async def main(scope: Scope, receive: Any, send: Any) -> None:
    """The app real clients talk to.

    * ``/json``: what the server saw (version, method, path, scheme, query) as JSON
    * ``/echo``: the request body back, with ``x-body-length``
    * ``/stream``: ``STREAM_CHUNKS``, one ``http.response.body`` each
    * anything else: ``Hello, World!``
    """
    if scope["type"] != "http":
        return
    path = scope["path"]
    if path == "/json":
        body, _ = await read_body(receive)
        info = {
            "http_version": scope["http_version"],
            "method": scope["method"],
            "path": path,
            "query": scope["query_string"].decode("latin-1"),
            "scheme": scope["scheme"],
            "body_length": len(body),
            "client_port": scope["client"][1] if scope.get("client") else None,
        }
        await respond(send, json.dumps(info).encode(), content_type=b"application/json")
    elif path == "/echo":
        body, _ = await read_body(receive)
        await respond(
            send,
            body,
            content_type=b"application/octet-stream",
            headers=[(b"x-body-length", b"%d" % len(body))],
        )
    elif path == "/stream":
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"content-type", b"text/plain")],
            }
        )
        for chunk in STREAM_CHUNKS:
            await send({"type": "http.response.body", "body": chunk, "more_body": True})
            await asyncio.sleep(0.001)
        await send({"type": "http.response.body", "body": b""})
    else:
        await respond(send, HELLO)


async def inspect(scope: Scope, receive: Any, send: Any) -> None:
    """The scope as JSON, with the request body and how many messages it came in."""
    if scope["type"] != "http":
        return
    body, messages = await read_body(receive)
    data = {"scope": clean(dict(scope)), "body": body.decode("latin-1"), "messages": messages}
    await respond(send, json.dumps(data).encode(), content_type=b"application/json")


async def shapes(scope: Scope, receive: Any, send: Any) -> None:
    """Responses of the shapes HEAD and bodiless statuses care about.

    * ``/whole``: ``hello`` with its content-length, in one message
    * ``/streamed``: ``hello`` in three messages, no content-length
    * ``/status/NNN``: status NNN; the app tries to send a body anyway
    """
    if scope["type"] != "http":
        return
    path = scope["path"]
    if path == "/whole":
        await respond(send, b"hello")
    elif path == "/streamed":
        await send({"type": "http.response.start", "status": 200, "headers": []})
        for piece in (b"he", b"ll", b"o"):
            await send({"type": "http.response.body", "body": piece, "more_body": True})
        await send({"type": "http.response.body", "body": b""})
    elif path.startswith("/status/"):
        status = int(path.rsplit("/", 1)[1])
        await send(
            {"type": "http.response.start", "status": status, "headers": [(b"x-status", b"yes")]}
        )
        await send({"type": "http.response.body", "body": b"must not be sent"})
    else:
        await respond(send, b"unknown", status=404)


async def trailers(scope: Scope, receive: Any, send: Any) -> None:
    """``hello world`` followed by two trailer fields, sent in two messages."""
    if scope["type"] != "http":
        return
    assert "http.response.trailers" in scope["extensions"]
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [(b"trailer", b"x-checksum, x-other")],
            "trailers": True,
        }
    )
    await send({"type": "http.response.body", "body": b"hello", "more_body": True})
    await send({"type": "http.response.body", "body": b" world", "more_body": False})
    await send(
        {
            "type": "http.response.trailers",
            "headers": [(b"X-Checksum", b"abc123")],
            "more_trailers": True,
        }
    )
    await send({"type": "http.response.trailers", "headers": [(b"x-other", b"1")]})


# ----------------------------------------------------------------------------- reporting apps


def make_body_recorder(seen: queue.Queue[tuple[bytes, bool]]) -> Any:
    """Reports every ``http.request`` message as it arrives; answers the total size."""

    async def app(scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        total = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":
                return
            seen.put((message["body"], message["more_body"]))
            total += len(message["body"])
            if not message["more_body"]:
                break
        await respond(send, b"%d" % total)

    return app


def make_watcher(events: queue.Queue[str]) -> Any:
    """``/watch*``: report ``started``, then every message received, until the
    disconnect (or ``cancelled`` if the app is cancelled instead).  Other paths
    answer their own path at once."""

    async def app(scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        path = scope["path"]
        if not path.startswith("/watch"):
            await respond(send, path.encode())
            return
        events.put(f"started {path}")
        try:
            while True:
                message = await receive()
                events.put(message["type"])
                if message["type"] == "http.disconnect":
                    return
        except asyncio.CancelledError:
            events.put("cancelled")
            raise

    return app


def make_early_hint_app(proceed: threading.Event) -> Any:
    """A 103 with two links; the final response waits for ``proceed``."""

    async def app(scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        assert "http.response.early_hint" in scope["extensions"]
        await send(
            {
                "type": "http.response.early_hint",
                "links": [
                    b"</style.css>; rel=preload; as=style",
                    b"</app.js>; rel=preload; as=script",
                ],
            }
        )
        await asyncio.to_thread(proceed.wait, TIMEOUT)
        await respond(send, b"final")

    return app


def make_pathsend_app(path: Path) -> Any:
    async def app(scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        assert "http.response.pathsend" in scope["extensions"]
        size = path.stat().st_size
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [
                    (b"content-type", b"application/octet-stream"),
                    (b"content-length", b"%d" % size),
                ],
            }
        )
        await send({"type": "http.response.pathsend", "path": str(path)})

    return app


def make_endless_app(outcome: queue.Queue[str]) -> Any:
    """Sends 256 KiB chunks until ``send`` fails; reports how the app ended.

    ``/small`` answers a short body instead."""

    async def app(scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        if scope["path"] == "/small":
            await respond(send, b"small")
            return
        chunk = b"\x5a" * (256 * 1024)
        await send({"type": "http.response.start", "status": 200, "headers": []})
        try:
            while True:
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
        except BaseException as exc:
            outcome.put(type(exc).__name__)
            raise

    return app


def make_gate_app(started: queue.Queue[str], release: threading.Event) -> Any:
    """``/gate``: sends ``begin;``, reports ``started``, finishes with ``end``
    only once ``release`` is set.  Other paths answer ``Hello, World!``."""

    async def app(scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        if scope["path"] != "/gate":
            await respond(send, HELLO)
            return
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"begin;", "more_body": True})
        started.put("started")
        released = await asyncio.to_thread(release.wait, TIMEOUT)
        await send({"type": "http.response.body", "body": b"end" if released else b"timeout"})

    return app


# ----------------------------------------------------------------------------- frameworks


async def _stream_chunks() -> AsyncIterator[bytes]:
    for chunk in STREAM_CHUNKS:
        await asyncio.sleep(0.002)
        yield chunk


class Background:
    """Where the framework apps' background tasks report, and what they wait for."""

    def __init__(self) -> None:
        self.delivered = threading.Event()
        self.ran: queue.Queue[str] = queue.Queue()

    async def job(self, name: str) -> None:
        # Finishes only once the client holds the whole response: proof that
        # the response went out before the background task ended.
        delivered = await asyncio.to_thread(self.delivered.wait, TIMEOUT)
        self.ran.put(f"{name} ran, response delivered first: {delivered}")


def make_starlette(file_path: Path, background: Background) -> Starlette:
    async def json_route(request: StarletteRequest) -> JSONResponse:
        return JSONResponse(
            {"framework": "starlette", "http_version": request.scope["http_version"]}
        )

    async def echo(request: StarletteRequest) -> JSONResponse:
        data = await request.json()
        return JSONResponse({"received": data})

    async def stream(request: StarletteRequest) -> StreamingResponse:
        return StreamingResponse(_stream_chunks(), media_type="text/plain")

    async def file(request: StarletteRequest) -> FileResponse:
        return FileResponse(file_path, media_type="application/octet-stream")

    async def later(request: StarletteRequest) -> PlainTextResponse:
        task = BackgroundTask(background.job, "starlette")
        return PlainTextResponse("accepted", background=task)

    return Starlette(
        routes=[
            Route("/json", json_route),
            Route("/echo", echo, methods=["POST"]),
            Route("/stream", stream),
            Route("/file", file, methods=["GET", "HEAD"]),
            Route("/background", later),
        ]
    )


def make_fastapi(file_path: Path, background: Background) -> FastAPI:
    app = FastAPI()

    @app.get("/json")
    async def json_route(request: Request) -> dict[str, str]:
        return {"framework": "fastapi", "http_version": request.scope["http_version"]}

    @app.post("/echo")
    async def echo(payload: dict[str, Any]) -> dict[str, Any]:
        return {"received": payload}

    @app.get("/stream")
    async def stream() -> StreamingResponse:
        return StreamingResponse(_stream_chunks(), media_type="text/plain")

    @app.api_route("/file", methods=["GET", "HEAD"])
    async def file() -> FileResponse:
        return FileResponse(file_path, media_type="application/octet-stream")

    @app.get("/background")
    async def later(tasks: FastAPIBackgroundTasks) -> PlainTextResponse:
        tasks.add_task(background.job, "fastapi")
        return PlainTextResponse("accepted")

    return app
