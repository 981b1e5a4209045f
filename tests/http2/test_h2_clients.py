"""Real HTTP/2 clients against a real server: httpx, curl, nghttp, Node, frameworks.

Every way a client can arrive at HTTP/2 is covered: TLS ALPN, cleartext
prior knowledge and the h2c Upgrade from HTTP/1.1.  Each test checks that
the exchange really was HTTP/2 (the client says so, and the app saw
``http_version == "2"``), not just that a response came back.

curl, nghttp (Debian ``nghttp2-client``) and node are system packages that
``make test`` installs (see SYSTEM_DEPS in the Makefile).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import queue
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.apps import h2 as h2apps
from tests.support.servers import ThreadServer, serve
from tests.support.tls import client_context

TIMEOUT = 10.0
NODE_SCRIPT = Path(__file__).parents[1] / "node" / "h2_node_client.mjs"
STREAMED = b"".join(h2apps.STREAM_CHUNKS)

pytestmark = pytest.mark.timeout(60)


# ----------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def h2c_server() -> Iterator[ThreadServer]:
    with serve(h2apps.main) as srv:
        yield srv


@pytest.fixture(scope="module")
def tls_server(pems: tuple[bytes, bytes]) -> Iterator[ThreadServer]:
    with serve(h2apps.main, cert_data=pems[0], key_data=pems[1]) as srv:
        yield srv


@pytest.fixture(scope="module")
def upload_file(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, bytes]:
    data = os.urandom(150_000)
    path = tmp_path_factory.mktemp("h2upload") / "upload.bin"
    path.write_bytes(data)
    return path, data


def run(*cmd: str) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, f"{cmd} failed:\n{result.stdout}\n{result.stderr}"
    return result


# ----------------------------------------------------------------------------- httpx


def _check_httpx(client: httpx.Client, scheme: str) -> None:
    info = client.get("/json", params={"a": "1"})
    assert info.status_code == 200
    assert info.http_version == "HTTP/2"
    data = info.json()
    assert data["http_version"] == "2"
    assert data["scheme"] == scheme
    assert (data["method"], data["path"], data["query"]) == ("GET", "/json", "a=1")
    body = os.urandom(300_000)
    echo = client.post("/echo", content=body)
    assert echo.http_version == "HTTP/2"
    assert echo.headers["x-body-length"] == str(len(body))
    assert echo.content == body
    with client.stream("GET", "/stream") as response:
        assert response.http_version == "HTTP/2"
        streamed = b"".join(response.iter_raw())
    assert streamed == STREAMED
    # All of it went over the one connection.
    assert client.get("/json").json()["client_port"] == data["client_port"]


def test_httpx_over_tls_alpn(tls_server: ThreadServer, pems: tuple[bytes, bytes]) -> None:
    with httpx.Client(
        base_url=tls_server.url, http2=True, verify=client_context(pems), timeout=TIMEOUT
    ) as client:
        _check_httpx(client, "https")


def test_httpx_prior_knowledge(h2c_server: ThreadServer) -> None:
    with httpx.Client(base_url=h2c_server.url, http1=False, http2=True, timeout=TIMEOUT) as client:
        _check_httpx(client, "http")


def test_httpx_concurrent_streams_share_one_connection(h2c_server: ThreadServer) -> None:
    async def fetch_all() -> list[httpx.Response]:
        async with httpx.AsyncClient(
            base_url=h2c_server.url, http1=False, http2=True, timeout=TIMEOUT
        ) as client:
            return await asyncio.gather(*(client.get(f"/json?i={i}") for i in range(40)))

    responses = asyncio.run(fetch_all())
    assert {r.http_version for r in responses} == {"HTTP/2"}
    data = [r.json() for r in responses]
    assert [d["query"] for d in data] == [f"i={i}" for i in range(40)]
    assert len({d["client_port"] for d in data}) == 1


# ----------------------------------------------------------------------------- curl


def curl(*args: str) -> tuple[str, str, str]:
    """Run curl; returns (body, HTTP version curl used, verbose log)."""
    result = run("curl", "-sS", "-v", "--max-time", "10", "-w", "\n%{http_version}", *args)
    body, _, version = result.stdout.rpartition("\n")
    return body, version, result.stderr


def test_curl_prior_knowledge(h2c_server: ThreadServer) -> None:
    body, version, _ = curl("--http2-prior-knowledge", f"{h2c_server.url}/json?pk")
    assert version == "2"
    data = json.loads(body)
    assert (data["http_version"], data["scheme"], data["query"]) == ("2", "http", "pk")


def test_curl_tls_alpn(tls_server: ThreadServer) -> None:
    body, version, log = curl("--http2", "-k", f"{tls_server.url}/json?tls")
    assert version == "2"
    assert re.search(r"ALPN.*accepted.*h2", log), log
    data = json.loads(body)
    assert (data["http_version"], data["scheme"], data["query"]) == ("2", "https", "tls")


def test_curl_h2c_upgrade_get(h2c_server: ThreadServer) -> None:
    body, version, log = curl("--http2", f"{h2c_server.url}/json?up")
    assert version == "2"
    assert "< HTTP/1.1 101" in log
    data = json.loads(body)
    # The request that carried the Upgrade is answered as HTTP/2 stream 1.
    assert (data["http_version"], data["scheme"], data["query"]) == ("2", "http", "up")


def test_curl_h2c_upgrade_post_with_body(
    h2c_server: ThreadServer, upload_file: tuple[Path, bytes]
) -> None:
    path, data = upload_file
    text = data.hex()  # curl's stdout is read as text
    hex_path = path.with_suffix(".hex")
    hex_path.write_text(text)
    body, version, log = curl("--http2", "--data-binary", f"@{hex_path}", f"{h2c_server.url}/echo")
    assert version == "2"
    assert "< HTTP/1.1 101" in log
    assert body == text


# ----------------------------------------------------------------------------- nghttp

_STATUS_RE = re.compile(r"recv \(stream_id=(\d+)\) :status: (\d+)")


def nghttp(*args: str) -> str:
    return run("nghttp", "-t", "10", *args).stdout


def test_nghttp_prior_knowledge(h2c_server: ThreadServer) -> None:
    log = nghttp("-nv", f"{h2c_server.url}/json")
    assert "recv SETTINGS frame" in log
    assert "SETTINGS_MAX_CONCURRENT_STREAMS(0x03):100" in log
    assert [status for _, status in _STATUS_RE.findall(log)] == ["200"]
    assert re.search(r"recv DATA frame <length=\d+, flags=0x01, stream_id=\d+>", log), log
    assert "send GOAWAY frame" in log  # nghttp ended the connection, not the server
    data = json.loads(nghttp(f"{h2c_server.url}/json?body"))
    assert (data["http_version"], data["query"]) == ("2", "body")


def test_nghttp_concurrent_requests_on_one_connection(h2c_server: ThreadServer) -> None:
    log = nghttp("-nv", "-m", "6", f"{h2c_server.url}/hello")
    statuses = _STATUS_RE.findall(log)
    assert [status for _, status in statuses] == ["200"] * 6
    assert len({stream for stream, _ in statuses}) == 6
    # One connection: the server's SETTINGS (not counting its ACK) came once.
    assert len(re.findall(r"recv SETTINGS frame <length=\d+, flags=0x00", log)) == 1


def test_nghttp_h2c_upgrade(h2c_server: ThreadServer) -> None:
    log = nghttp("-nvu", f"{h2c_server.url}/json")
    assert "HTTP Upgrade request" in log
    assert "HTTP/1.1 101 Switching Protocols" in log
    assert "HTTP Upgrade success" in log
    assert _STATUS_RE.findall(log) == [("1", "200")]


def test_nghttp_h2c_upgrade_then_post(
    h2c_server: ThreadServer, upload_file: tuple[Path, bytes]
) -> None:
    # With a body nghttp upgrades with an OPTIONS request, then POSTs on stream 3.
    path, data = upload_file
    result = subprocess.run(
        ["nghttp", "-t", "10", "-u", "-d", str(path), f"{h2c_server.url}/echo"],
        capture_output=True,
        timeout=30,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout == data


def test_nghttp_post_prior_knowledge(
    h2c_server: ThreadServer, upload_file: tuple[Path, bytes]
) -> None:
    path, data = upload_file
    result = subprocess.run(
        ["nghttp", "-t", "10", "-d", str(path), f"{h2c_server.url}/echo"],
        capture_output=True,
        timeout=30,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout == data


def test_nghttp_tls(tls_server: ThreadServer) -> None:
    log = nghttp("-nv", f"{tls_server.url}/json")
    assert "The negotiated protocol: h2" in log
    assert [status for _, status in _STATUS_RE.findall(log)] == ["200"]


# ----------------------------------------------------------------------------- node


@pytest.mark.parametrize("tls", [False, True], ids=["cleartext", "tls"])
def test_node_http2_module(tls: bool, h2c_server: ThreadServer, tls_server: ThreadServer) -> None:
    srv = tls_server if tls else h2c_server
    out = json.loads(run("node", str(NODE_SCRIPT), srv.url).stdout)
    assert out["alpnProtocol"] == ("h2" if tls else "h2c")
    assert out["encrypted"] is tls
    results = {r["path"]: r for r in out["results"]}
    assert {r["status"] for r in results.values()} == {200}
    first = json.loads(results["/json?first"]["text"])
    second = json.loads(results["/json?second"]["text"])
    assert (first["http_version"], first["scheme"]) == ("2", "https" if tls else "http")
    assert (first["query"], second["query"]) == ("first", "second")
    assert first["client_port"] == second["client_port"]  # one session, one connection
    assert results["/stream"]["text"] == STREAMED.decode()
    echo = results["/echo"]
    assert echo["method"] == "POST"
    assert (echo["length"], echo["sha256"]) == (out["uploadLength"], out["uploadSha256"])
    assert echo["headers"]["x-body-length"] == str(out["uploadLength"])
    assert results["/hello"]["text"] == h2apps.HELLO.decode()


# ----------------------------------------------------------------------------- frameworks

FILE_DATA = os.urandom(700_000)


@pytest.fixture(
    scope="module",
    params=[
        ("starlette", "h2c"),
        ("starlette", "tls"),
        ("fastapi", "h2c"),
        ("fastapi", "tls"),
    ],
    ids=lambda p: "-".join(p),
)
def framework(
    request: pytest.FixtureRequest,
    tmp_path_factory: pytest.TempPathFactory,
    pems: tuple[bytes, bytes],
) -> Iterator[tuple[str, httpx.Client, h2apps.Background]]:
    name, transport = request.param
    path = tmp_path_factory.mktemp("h2fw") / "download.bin"
    path.write_bytes(FILE_DATA)
    background = h2apps.Background()
    factory = h2apps.make_starlette if name == "starlette" else h2apps.make_fastapi
    app = factory(path, background)
    options: dict[str, Any] = {}
    client_options: dict[str, Any] = {"http1": False, "http2": True}
    if transport == "tls":
        options = {"cert_data": pems[0], "key_data": pems[1]}
        client_options = {"http2": True, "verify": client_context(pems)}
    with (
        serve(app, **options) as srv,
        httpx.Client(base_url=srv.url, timeout=TIMEOUT, **client_options) as client,
    ):
        yield name, client, background


def test_framework_json_route(framework: tuple[str, httpx.Client, h2apps.Background]) -> None:
    name, client, _ = framework
    response = client.get("/json")
    assert response.http_version == "HTTP/2"
    assert response.headers["content-type"] == "application/json"
    assert response.json() == {"framework": name, "http_version": "2"}
    posted = client.post("/echo", json={"n": 1, "tags": ["a", "b"]})
    assert posted.json() == {"received": {"n": 1, "tags": ["a", "b"]}}


def test_framework_streaming_response(
    framework: tuple[str, httpx.Client, h2apps.Background],
) -> None:
    _, client, _ = framework
    with client.stream("GET", "/stream") as response:
        assert response.http_version == "HTTP/2"
        assert response.headers["content-type"].startswith("text/plain")
        assert "content-length" not in response.headers
        body = b"".join(response.iter_raw())
    assert body == STREAMED


def test_framework_file_response(framework: tuple[str, httpx.Client, h2apps.Background]) -> None:
    _, client, _ = framework
    response = client.get("/file")
    assert response.http_version == "HTTP/2"
    assert response.headers["content-length"] == str(len(FILE_DATA))
    assert hashlib.sha256(response.content).digest() == hashlib.sha256(FILE_DATA).digest()
    head = client.head("/file")
    assert head.status_code == 200
    assert head.headers["content-length"] == str(len(FILE_DATA))
    assert head.content == b""
    ranged = client.get("/file", headers={"range": "bytes=100-1099"})
    assert ranged.status_code == 206
    assert ranged.content == FILE_DATA[100:1100]


def test_framework_background_task_runs_after_response(
    framework: tuple[str, httpx.Client, h2apps.Background],
) -> None:
    name, client, background = framework
    background.delivered.clear()
    response = client.get("/background")
    assert response.http_version == "HTTP/2"
    assert (response.status_code, response.text) == (200, "accepted")
    with pytest.raises(queue.Empty):
        background.ran.get_nowait()  # the task is still waiting for us
    background.delivered.set()
    assert background.ran.get(timeout=TIMEOUT) == f"{name} ran, response delivered first: True"
