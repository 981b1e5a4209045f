"""The ASGI extensions (trailers, early hints, pathsend, tls): advertised and working alike."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from .app import EARLY_LINK, TRAILER
from .conftest import Servers
from .transports import HTTP_TRANSPORTS, HTTPTransport

pytestmark = pytest.mark.timeout(60)

#: Every transport advertises these; TLS ones add ``tls``.
EXTENSIONS = {"http.response.trailers", "http.response.early_hint", "http.response.pathsend"}
#: Only where the server writes to a plain socket itself (sendfile).
ZEROCOPY = {"h1": {"http.response.zerocopy"}}


@pytest.fixture(scope="module")
def data_file(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, bytes]:
    path = tmp_path_factory.mktemp("pathsend") / "data.bin"
    data = os.urandom(300_000)
    path.write_bytes(data)
    return path, data


@pytest.mark.parametrize("transport", HTTP_TRANSPORTS, ids=str)
def test_trailers_arrive(transport: HTTPTransport, servers: Servers) -> None:
    srv = servers.get(transport)
    reply = transport.request(srv, "GET", "/trailers", [(b"te", b"trailers")])
    assert reply.complete, reply
    assert (reply.status, reply.body) == (200, b"with trailers")
    assert reply.trailers == [TRAILER]


@pytest.mark.parametrize("transport", HTTP_TRANSPORTS, ids=str)
def test_early_hints_arrive_as_103(transport: HTTPTransport, servers: Servers) -> None:
    srv = servers.get(transport)
    reply = transport.request(srv, "GET", "/early-hints")
    assert (reply.status, reply.body) == (200, b"after the hints")
    assert [status for status, _ in reply.informational] == [103]
    links = [value for name, value in reply.informational[0][1] if name == b"link"]
    assert links == [EARLY_LINK]


@pytest.mark.parametrize("transport", HTTP_TRANSPORTS, ids=str)
def test_pathsend_serves_the_file(
    transport: HTTPTransport, servers: Servers, data_file: tuple[Path, bytes]
) -> None:
    srv = servers.get(transport)
    path, data = data_file
    reply = transport.request(srv, "GET", f"/pathsend?{path}")
    assert reply.complete and reply.status == 200, reply
    assert reply.body == data


@pytest.mark.parametrize("transport", HTTP_TRANSPORTS, ids=str)
def test_scope_extensions_are_the_same_everywhere(
    transport: HTTPTransport, servers: Servers
) -> None:
    srv = servers.get(transport)
    reply = transport.request(srv, "GET", "/scope")
    assert reply.status == 200, reply
    scope = json.loads(reply.body)
    assert scope["http_version"] == transport.scope_version
    expected = (
        EXTENSIONS | ({"tls"} if transport.tls else set()) | ZEROCOPY.get(transport.name, set())
    )
    assert set(scope["extensions"]) == expected
