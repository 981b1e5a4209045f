"""The demo that ``make demo`` serves: its pages and its WebSocket echo work."""

from __future__ import annotations

import asyncio

import httpx
import websockets
from examples.demo import app

from .servers import serve


def test_demo_pages_and_websocket_echo() -> None:
    with serve(app) as srv:
        index = httpx.get(srv.url + "/")
        hello = httpx.get(srv.url + "/hello")
        echoed = httpx.post(srv.url + "/echo", content=b"ping")

        async def talk() -> tuple[str, int]:
            async with websockets.connect(f"ws://127.0.0.1:{srv.port}/ws") as ws:
                await ws.send("hi")
                reply = await ws.recv()
            try:
                async with websockets.connect(f"ws://127.0.0.1:{srv.port}/nope"):
                    status = 101
            except websockets.InvalidStatus as exc:
                status = exc.response.status_code
            return str(reply), status

        reply, refused = asyncio.run(talk())
    assert index.status_code == 200
    assert 'new WebSocket(scheme + "//" + location.host + "/ws")' in index.text
    assert hello.status_code == 200
    assert echoed.content == b"ping"
    assert reply == "echo over HTTP/1.1: hi"
    assert refused == 403
