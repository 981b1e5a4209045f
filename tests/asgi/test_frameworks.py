"""Starlette and FastAPI apps, served unchanged, behave as they do anywhere else.

Both apps expose the same routes so every test runs against each framework.
Cross-thread signals (threading.Event, queues) let the tests see what the
app did after the response (background tasks, disconnect detection).
"""

from __future__ import annotations

import asyncio
import json
import os
import queue
import socket
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.apps.frameworks import (
    FILE_DATA,
    STREAM_CHUNKS,
    Signals,
    make_fastapi,
    make_starlette,
)
from tests.support.servers import ThreadServer, serve

TIMEOUT = 10.0


# ----------------------------------------------------------------------------- Starlette


# ----------------------------------------------------------------------------- FastAPI


# ----------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module", params=["starlette", "fastapi"])
def framework(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[str, ThreadServer, Signals]]:
    path = tmp_path_factory.mktemp("files") / "download.bin"
    path.write_bytes(FILE_DATA)
    signals = Signals(path)
    factory = make_starlette if request.param == "starlette" else make_fastapi
    with serve(factory(signals), lifespan="on") as srv:
        yield request.param, srv, signals


@pytest.fixture
def client(framework: tuple[str, ThreadServer, Signals]) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=framework[1].url, timeout=TIMEOUT) as c:
        yield c


# ----------------------------------------------------------------------------- tests


def test_json_route(framework: tuple[str, ThreadServer, Signals], client: httpx.Client) -> None:
    response = client.get("/json")
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    assert response.json() == {"hello": "world", "framework": framework[0]}


def test_path_params(client: httpx.Client) -> None:
    assert client.get("/items/42").json() == {"item_id": 42}
    assert client.get("/items/not-a-number").status_code in (404, 422)


def test_query_params(client: httpx.Client) -> None:
    data = client.get("/search", params={"q": "café au lait", "limit": "3"}).json()
    assert data["q"] == "café au lait"
    assert data["limit"] == 3
    assert client.get("/search").json()["limit"] == 10


def test_json_body(client: httpx.Client) -> None:
    payload = {"name": "widget", "count": 7, "tags": ["a", "b"]}
    response = client.post("/echo-json", json=payload)
    assert response.status_code == 200
    assert response.json() == {"received": payload, "keys": ["count", "name", "tags"]}


def test_json_body_validation_error(
    framework: tuple[str, ThreadServer, Signals], client: httpx.Client
) -> None:
    payload = {"name": "widget", "count": "many"}
    response = client.post("/echo-json", json=payload)
    if framework[0] == "fastapi":
        # FastAPI validates the body against its model.
        assert response.status_code == 422
        assert response.json()["detail"][0]["loc"] == ["body", "count"]
    else:
        # Starlette hands the JSON through as it came.
        assert response.status_code == 200
        assert response.json()["received"] == payload


def test_form_body(client: httpx.Client) -> None:
    response = client.post("/form", data={"name": "José", "tag": ["x", "y"]})
    assert response.status_code == 200
    assert response.json()["name"] == "José"
    assert response.json()["tags"] == ["x", "y"]


def test_multipart_upload(
    framework: tuple[str, ThreadServer, Signals], client: httpx.Client
) -> None:
    blob = os.urandom(300_000)
    response = client.post(
        "/form",
        data={"name": "upload", "tag": "one"},
        files={"file": ("blob.bin", blob, "application/octet-stream")},
    )
    assert response.status_code == 200
    expected: dict[str, object] = {"name": "upload", "tags": ["one"]}
    if framework[0] == "starlette":
        # The Starlette route reports the file part; FastAPI's form model has
        # no file field, so the whole 300 kB part is parsed and left out.
        expected["file"] = {"filename": "blob.bin", "size": len(blob)}
    assert response.json() == expected


def test_streaming_response(framework: tuple[str, ThreadServer, Signals]) -> None:
    with socket.create_connection(("127.0.0.1", framework[1].port), timeout=TIMEOUT) as sock:
        sock.sendall(b"GET /stream HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
        raw = b""
        while chunk := sock.recv(65536):
            raw += chunk
    head, _, body = raw.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 ")
    assert b"transfer-encoding: chunked" in head.lower()
    expected = b"".join(b"%x\r\n%b\r\n" % (len(c), c) for c in STREAM_CHUNKS) + b"0\r\n\r\n"
    assert body == expected


def test_streaming_response_httpx(client: httpx.Client) -> None:
    with client.stream("GET", "/stream") as response:
        assert response.status_code == 200
        pieces = list(response.iter_raw())
    assert b"".join(pieces) == b"".join(STREAM_CHUNKS)


def test_file_response(client: httpx.Client) -> None:
    for _ in range(2):
        response = client.get("/file")
        assert response.status_code == 200
        assert response.headers["content-length"] == str(len(FILE_DATA))
        assert response.content == FILE_DATA
        assert "etag" in response.headers
    head = client.head("/file")
    assert head.status_code == 200
    assert head.headers["content-length"] == str(len(FILE_DATA))
    assert head.content == b""
    # The connection is still in sync after a HEAD: the next body is intact.
    assert client.get("/json").json()["hello"] == "world"


def test_file_response_range(client: httpx.Client) -> None:
    response = client.get("/file", headers={"range": "bytes=100-1099"})
    assert response.status_code == 206
    assert response.content == FILE_DATA[100:1100]


def test_background_task_runs_after_response(
    framework: tuple[str, ThreadServer, Signals], client: httpx.Client
) -> None:
    name, _, signals = framework
    signals.client_got_response.clear()
    response = client.get("/background")
    assert (response.status_code, response.text) == (200, "accepted")
    with pytest.raises(queue.Empty):
        signals.background.get_nowait()  # the task is still waiting for us
    signals.client_got_response.set()
    assert signals.background.get(timeout=TIMEOUT) == (
        f"{name} ran, response delivered first: True"
    )


def test_lifespan_state(framework: tuple[str, ThreadServer, Signals], client: httpx.Client) -> None:
    assert client.get("/state").json() == {
        "greeting": "hello from lifespan",
        "framework": framework[0],
    }


def test_is_disconnected(framework: tuple[str, ThreadServer, Signals]) -> None:
    _, srv, signals = framework
    with socket.create_connection(("127.0.0.1", srv.port), timeout=TIMEOUT) as sock:
        sock.sendall(b"GET /disconnect HTTP/1.1\r\nHost: t\r\n\r\n")
        with pytest.raises(queue.Empty):
            signals.disconnects.get(timeout=0.2)  # connected: not reported
    assert signals.disconnects.get(timeout=TIMEOUT) == "disconnected"
    with httpx.Client(base_url=srv.url, timeout=TIMEOUT) as client:
        assert client.get("/json").status_code == 200


def test_endless_stream_stops_when_client_leaves(
    framework: tuple[str, ThreadServer, Signals],
) -> None:
    _, srv, signals = framework
    with socket.create_connection(("127.0.0.1", srv.port), timeout=TIMEOUT) as sock:
        sock.sendall(b"GET /endless HTTP/1.1\r\nHost: t\r\n\r\n")
        received = b""
        while received.count(b"data: tick") < 3:
            chunk = sock.recv(65536)
            assert chunk
            received += chunk
    assert b"content-type: text/event-stream" in received.lower()
    assert signals.stream_closed.get(timeout=TIMEOUT) == "generator closed"


def test_exception_handler(client: httpx.Client) -> None:
    response = client.get("/custom-error")
    assert response.status_code == 418
    assert response.json() == {"error": "teapot"}
    assert client.get("/json").status_code == 200


def test_http_exception(framework: tuple[str, ThreadServer, Signals], client: httpx.Client) -> None:
    if framework[0] == "fastapi":
        response = client.get("/missing")
        assert response.status_code == 404
        assert response.json() == {"detail": "no such thing"}
    response = client.get("/no/such/route")
    assert response.status_code == 404


def test_unhandled_exception_is_500_and_server_keeps_serving(client: httpx.Client) -> None:
    for _ in range(2):
        response = client.get("/crash")
        assert response.status_code == 500
        assert response.text == "Internal Server Error"
    assert client.get("/json").status_code == 200
    assert client.get("/items/7").json() == {"item_id": 7}


def test_concurrent_requests(framework: tuple[str, ThreadServer, Signals]) -> None:
    async def fetch_all() -> list[Any]:
        async with httpx.AsyncClient(base_url=framework[1].url, timeout=TIMEOUT) as ac:
            responses = await asyncio.gather(*(ac.get(f"/items/{i}") for i in range(50)))
        return [r.json()["item_id"] for r in responses]

    assert asyncio.run(fetch_all()) == list(range(50))


def test_json_payload_round_trip_large(client: httpx.Client) -> None:
    payload = {"name": "x" * 200_000, "count": 1, "tags": [str(i) for i in range(1000)]}
    response = client.post(
        "/echo-json",
        content=json.dumps(payload).encode(),
        headers={"content-type": "application/json"},
    )
    assert response.status_code == 200
    assert response.json()["received"] == payload
