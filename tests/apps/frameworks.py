"""Starlette and FastAPI apps as users write them (forms, files, streams, background tasks,
exception handlers), shared by the framework tests of every protocol.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import queue
import threading
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Annotated, Any

import anyio
from fastapi import BackgroundTasks as FastAPIBackgroundTasks
from fastapi import FastAPI, Form, HTTPException
from fastapi import Request as FastAPIRequest
from pydantic import BaseModel
from starlette.applications import Starlette
from starlette.background import BackgroundTask
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, PlainTextResponse, StreamingResponse
from starlette.routing import Route

TIMEOUT = 10.0


STREAM_CHUNKS = [b"alpha;", b"beta;", b"gamma;", b"delta;", b"epsilon"]


class Signals:
    """What the apps report back to the tests, across threads."""

    def __init__(self, file_path: Path) -> None:
        self.file_path = file_path
        self.client_got_response = threading.Event()
        self.background: queue.Queue[str] = queue.Queue()
        self.disconnects: queue.Queue[str] = queue.Queue()
        self.stream_closed: queue.Queue[str] = queue.Queue()


def make_starlette(signals: Signals) -> Starlette:
    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[dict[str, Any]]:
        yield {"greeting": "hello from lifespan", "framework": "starlette"}

    async def json_route(request: Request) -> JSONResponse:
        return JSONResponse({"hello": "world", "framework": "starlette"})

    async def item(request: Request) -> JSONResponse:
        return JSONResponse({"item_id": request.path_params["item_id"]})

    async def search(request: Request) -> JSONResponse:
        params = request.query_params
        return JSONResponse(
            {
                "q": params.get("q"),
                "limit": int(params.get("limit", "10")),
                "tags": params.getlist("tag"),
            }
        )

    async def echo_json(request: Request) -> JSONResponse:
        data = await request.json()
        return JSONResponse({"received": data, "keys": sorted(data)})

    async def form(request: Request) -> JSONResponse:
        async with request.form() as data:
            upload = data.get("file")
            result: dict[str, Any] = {"name": data.get("name"), "tags": data.getlist("tag")}
            if upload is not None and not isinstance(upload, str):
                content = await upload.read()
                result["file"] = {"filename": upload.filename, "size": len(content)}
            return JSONResponse(result)

    async def stream(request: Request) -> StreamingResponse:
        return StreamingResponse(stream_chunks(), media_type="text/plain")

    async def endless(request: Request) -> StreamingResponse:
        return StreamingResponse(endless_stream(signals), media_type="text/event-stream")

    async def file(request: Request) -> FileResponse:
        return FileResponse(signals.file_path, media_type="application/octet-stream")

    async def background(request: Request) -> PlainTextResponse:
        task = BackgroundTask(background_job, signals, "starlette")
        return PlainTextResponse("accepted", background=task)

    async def state(request: Request) -> JSONResponse:
        return JSONResponse(
            {"greeting": request.state.greeting, "framework": request.state.framework}
        )

    async def disconnect(request: Request) -> PlainTextResponse:
        await watch_disconnect(request, signals)
        return PlainTextResponse("done")

    async def custom_error(request: Request) -> PlainTextResponse:
        raise CustomError("teapot")

    async def crash(request: Request) -> PlainTextResponse:
        raise RuntimeError("unhandled in starlette")

    async def on_custom_error(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, CustomError)
        return JSONResponse({"error": exc.detail}, status_code=418)

    return Starlette(
        routes=[
            Route("/json", json_route),
            Route("/items/{item_id:int}", item),
            Route("/search", search),
            Route("/echo-json", echo_json, methods=["POST"]),
            Route("/form", form, methods=["POST"]),
            Route("/stream", stream),
            Route("/endless", endless),
            Route("/file", file, methods=["GET", "HEAD"]),
            Route("/background", background),
            Route("/state", state),
            Route("/disconnect", disconnect),
            Route("/custom-error", custom_error),
            Route("/crash", crash),
        ],
        exception_handlers={CustomError: on_custom_error},
        lifespan=lifespan,
    )


def make_fastapi(signals: Signals) -> FastAPI:
    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[dict[str, Any]]:
        yield {"greeting": "hello from lifespan", "framework": "fastapi"}

    app = FastAPI(lifespan=lifespan)

    @app.exception_handler(CustomError)
    async def on_custom_error(request: FastAPIRequest, exc: CustomError) -> JSONResponse:
        return JSONResponse({"error": exc.detail}, status_code=418)

    @app.get("/json")
    async def json_route() -> dict[str, str]:
        return {"hello": "world", "framework": "fastapi"}

    @app.get("/items/{item_id}")
    async def item(item_id: int) -> dict[str, int]:
        return {"item_id": item_id}

    @app.get("/search")
    async def search(q: str | None = None, limit: int = 10) -> dict[str, Any]:
        return {"q": q, "limit": limit}

    @app.post("/echo-json")
    async def echo_json(payload: Payload) -> dict[str, Any]:
        return {"received": payload.model_dump(), "keys": sorted(payload.model_dump())}

    @app.post("/form")
    async def form(
        name: Annotated[str, Form()], tag: Annotated[list[str], Form()]
    ) -> dict[str, Any]:
        return {"name": name, "tags": tag}

    @app.get("/stream")
    async def stream() -> StreamingResponse:
        return StreamingResponse(stream_chunks(), media_type="text/plain")

    @app.get("/endless")
    async def endless() -> StreamingResponse:
        return StreamingResponse(endless_stream(signals), media_type="text/event-stream")

    @app.api_route("/file", methods=["GET", "HEAD"])
    async def file() -> FileResponse:
        return FileResponse(signals.file_path, media_type="application/octet-stream")

    @app.get("/background")
    async def background(tasks: FastAPIBackgroundTasks) -> PlainTextResponse:
        tasks.add_task(background_job, signals, "fastapi")
        return PlainTextResponse("accepted")

    @app.get("/state")
    async def state(request: FastAPIRequest) -> dict[str, str]:
        return {"greeting": request.state.greeting, "framework": request.state.framework}

    @app.get("/disconnect")
    async def disconnect(request: FastAPIRequest) -> PlainTextResponse:
        await watch_disconnect(request, signals)
        return PlainTextResponse("done")

    @app.get("/missing")
    async def missing() -> None:
        raise HTTPException(status_code=404, detail="no such thing")

    @app.get("/custom-error")
    async def custom_error() -> None:
        raise CustomError("teapot")

    @app.get("/crash")
    async def crash() -> None:
        raise RuntimeError("unhandled in fastapi")

    return app


FILE_DATA = os.urandom(512 * 1024 + 77)


class CustomError(Exception):
    def __init__(self, detail: str) -> None:
        self.detail = detail


async def background_job(signals: Signals, name: str) -> None:
    # Only finishes once the client has the full response, which proves the
    # server delivered the response before the background task ran to its end.
    delivered = await wait_thread_event(signals.client_got_response)
    signals.background.put(f"{name} ran, response delivered first: {delivered}")


async def stream_chunks() -> AsyncIterator[bytes]:
    for chunk in STREAM_CHUNKS:
        await asyncio.sleep(0.005)
        yield chunk


def endless_stream(signals: Signals) -> AsyncIterator[bytes]:
    async def generate() -> AsyncIterator[bytes]:
        try:
            while True:
                yield b"data: tick\n\n"
                await asyncio.sleep(0.01)
        finally:
            signals.stream_closed.put("generator closed")

    return generate()


async def watch_disconnect(request: Request, signals: Signals) -> None:
    for _ in range(int(TIMEOUT / 0.01)):
        if await request.is_disconnected():
            signals.disconnects.put("disconnected")
            return
        await asyncio.sleep(0.01)
    signals.disconnects.put("never noticed")


class Payload(BaseModel):
    name: str
    count: int
    tags: list[str] = []


async def wait_thread_event(event: threading.Event) -> bool:
    return await anyio.to_thread.run_sync(event.wait, TIMEOUT)
