"""The demo that ``make demo`` serves: its pages and its WebSocket echo work."""

from __future__ import annotations

import asyncio

import httpx
import websockets
from examples.demo import app

from asgiri.ssl_utils import generate_self_signed_cert

from .h3_client import H3Client
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


def test_demo_over_http3() -> None:
    """``make demo`` serves TLS, so HTTP/3 too: the same pages over QUIC, advertised by Alt-Svc."""
    cert, key = generate_self_signed_cert("localhost", key_type="ec")
    with serve(app, cert_data=cert, key_data=key) as srv:
        port = srv.server.http3_port
        assert port == srv.port
        advertised = httpx.get(srv.url + "/hello", verify=False).headers["alt-svc"]
        with H3Client(port) as client:
            hello = client.get("/hello")
            echoed = client.request("POST", "/echo", body=b"over quic")
    assert advertised == f'h3=":{port}"; ma=86400'
    assert hello.status == 200
    assert echoed.body == b"over quic"
