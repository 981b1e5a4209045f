"""Bulk transfers over HTTP/3 arrive intact, with UDP GSO batching and without it.

A download of many MiB leaves the server in runs of dozens of datagrams per system call
(UDP GSO) paced by QUIC; an upload arrives faster than the app reads it and is credited as
it reads.  Each is checked end to end by SHA-256 with two real clients: aioquic's
(tests/support/h3_client.py) and ngtcp2's ``gtlsclient`` (tests/support/h3_interop.py),
against a server with GSO (the default) and one started with ``quic_gso=False``.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from typing import Any
from urllib.parse import parse_qs

import pytest

from tests.support.h3_client import H3Client
from tests.support.h3_interop import ngtcp2_get
from tests.support.servers import ThreadServer, serve

pytestmark = pytest.mark.timeout(120)

MIB = 1 << 20
CHUNK = 64 * 1024


def chunk(index: int) -> bytes:
    """The ``index``-th 64 KiB of a download: different for every chunk, so a chunk sent
    twice, dropped or out of place changes the digest."""
    return hashlib.sha256(b"%d" % index).digest() * (CHUNK // 32)


def expected_digest(size: int) -> str:
    digest = hashlib.sha256()
    for index in range(size // CHUNK):
        digest.update(chunk(index))
    return digest.hexdigest()


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """``GET /bulk?bytes=N``: N bytes (a multiple of 64 KiB) in 64 KiB sends;
    ``POST /digest``: the SHA-256 and length of the request body."""
    if scope["type"] != "http":
        return
    if scope["path"] == "/bulk":
        size = int(parse_qs(scope["query_string"].decode())["bytes"][0])
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"content-length", str(size).encode())],
            }
        )
        for index in range(size // CHUNK):
            await send({"type": "http.response.body", "body": chunk(index), "more_body": True})
        await send({"type": "http.response.body", "body": b""})
        return
    digest = hashlib.sha256()
    received = 0
    while True:
        message = await receive()
        if message["type"] != "http.request":
            return
        body = message.get("body", b"")
        digest.update(body)
        received += len(body)
        if not message.get("more_body", False):
            break
    answer = f"{digest.hexdigest()} {received}".encode()
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [(b"content-length", str(len(answer)).encode())],
        }
    )
    await send({"type": "http.response.body", "body": answer})


@pytest.fixture(scope="module", params=[True, False], ids=["gso", "no-gso"])
def server(request: pytest.FixtureRequest, pems: tuple[bytes, bytes]) -> Iterator[ThreadServer]:
    with serve(
        app, cert_data=pems[0], key_data=pems[1], lifespan="off", quic_gso=request.param
    ) as srv:
        yield srv


def upload_body(size: int) -> bytes:
    return b"".join(hashlib.sha256(b"up%d" % i).digest() for i in range(size // 32))


def test_aioquic_downloads_16_mib_intact(server: ThreadServer) -> None:
    size = 16 * MIB
    with H3Client(server.port, timeout=60) as client:
        response = client.request("GET", f"/bulk?bytes={size}", timeout=60)
    assert response.status == 200
    assert len(response.body) == size
    assert hashlib.sha256(response.body).hexdigest() == expected_digest(size)


def test_aioquic_uploads_8_mib_intact(server: ThreadServer) -> None:
    body = upload_body(8 * MIB)
    with H3Client(server.port, timeout=60) as client:
        response = client.request("POST", "/digest", body=body, timeout=60)
    assert response.status == 200
    assert bytes(response.body) == f"{hashlib.sha256(body).hexdigest()} {len(body)}".encode()


def test_ngtcp2_downloads_16_mib_intact(server: ThreadServer) -> None:
    size = 16 * MIB
    response = ngtcp2_get(f"{server.url}/bulk?bytes={size}", timeout=60)
    assert response.status == 200
    assert len(response.body) == size
    assert hashlib.sha256(response.body).hexdigest() == expected_digest(size)


def test_ngtcp2_uploads_8_mib_intact(server: ThreadServer) -> None:
    body = upload_body(8 * MIB)
    response = ngtcp2_get(f"{server.url}/digest", method="POST", data=body, timeout=60)
    assert response.status == 200
    assert response.body == f"{hashlib.sha256(body).hexdigest()} {len(body)}".encode()
