"""HTTP/3 with real clients: ngtcp2's example client and headless Chromium.

asgiri serves HTTP/3 on UDP at the same port number as its TLS listener, so
each server here is started once, on port 0, with a self-signed certificate,
and the clients are pointed at ``127.0.0.1:PORT``.  What is checked is what
the clients themselves report: ngtcp2's negotiated ALPN, ``:status`` and the
downloaded bytes; Chromium's ``nextHopProtocol`` for the document, next to the
``http_version`` the app saw.

One Chromium serves all browser tests (starting one takes a second or two).
It forces QUIC on the first server's origin, and discovers HTTP/3 through
Alt-Svc on the second's.  The forced origin also matters for the second:
Chromium only accepts a certificate that does not chain to a public root over
QUIC for hosts named in ``--origin-to-force-quic-on`` (it fails the handshake
with CERTIFICATE_VERIFY_FAILED and marks the Alt-Svc entry broken otherwise),
and both origins are on 127.0.0.1.  The SPKI pin makes the certificate itself
acceptable, over TCP and QUIC alike.

The clients come from Debian packages that ``make test`` installs
(``ngtcp2-client`` and ``chromium``; see SYSTEM_DEPS in the Makefile).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from typing import Any

import pytest

from asgiri.ssl_utils import spki_sha256_base64
from tests.support.h3_interop import Chromium, ngtcp2_get
from tests.support.servers import ThreadServer, serve

pytestmark = pytest.mark.timeout(90)

# Every byte value, and large enough to take many QUIC packets and flow-control updates.
PAYLOAD = bytes(range(256)) * 1200
UPLOAD = hashlib.sha256(b"upload").digest() * 4096


def page(http_version: str, path: str) -> bytes:
    return (
        "<!doctype html><title>asgiri over HTTP/3</title>"
        f'<p id="version">{http_version}</p><p id="path">{path}</p>'
    ).encode()


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """``/payload``: fixed bytes; ``/echo``: the request body; anything else: a page."""
    if scope["type"] != "http":
        return
    if scope["path"] == "/payload":
        body, content_type = PAYLOAD, b"application/octet-stream"
    elif scope["path"] == "/echo":
        chunks = []
        while True:
            message = await receive()
            if message["type"] != "http.request":
                return
            chunks.append(message.get("body", b""))
            if not message.get("more_body", False):
                break
        body, content_type = b"".join(chunks), b"application/octet-stream"
    else:
        body, content_type = page(scope["http_version"], scope["path"]), b"text/html"
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [
                (b"content-type", content_type),
                (b"content-length", str(len(body)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


# ----------------------------------------------------------------------------- fixtures


def h3_server(pems: tuple[bytes, bytes]) -> Iterator[ThreadServer]:
    with serve(app, cert_data=pems[0], key_data=pems[1], lifespan="off") as srv:
        yield srv


@pytest.fixture(scope="module")
def server(pems: tuple[bytes, bytes]) -> Iterator[ThreadServer]:
    """The server ngtcp2 talks to and Chromium reaches with QUIC forced on."""
    yield from h3_server(pems)


@pytest.fixture(scope="module")
def discovery_server(pems: tuple[bytes, bytes]) -> Iterator[ThreadServer]:
    """A second origin, which Chromium has to find HTTP/3 on by itself."""
    yield from h3_server(pems)


@pytest.fixture(scope="module")
def browser(
    pems: tuple[bytes, bytes], server: ThreadServer, discovery_server: ThreadServer
) -> Iterator[Chromium]:
    with Chromium(
        [spki_sha256_base64(pems[0])], force_quic_on=[f"127.0.0.1:{server.port}"]
    ) as chromium:
        yield chromium


def page_version(browser: Chromium) -> str:
    version: str = browser.evaluate("document.getElementById('version').textContent")
    return version


# ----------------------------------------------------------------------------- ngtcp2


def test_ngtcp2_fetches_a_page_over_h3(server: ThreadServer) -> None:
    response = ngtcp2_get(f"{server.url}/hello")
    assert response.alpn == "h3"
    assert response.status == 200
    assert response.header("content-type") == "text/html"
    assert response.body == page("3", "/hello")


def test_ngtcp2_downloads_every_byte(server: ThreadServer) -> None:
    response = ngtcp2_get(f"{server.url}/payload")
    assert response.status == 200
    assert response.header("content-length") == str(len(PAYLOAD))
    assert len(response.body) == len(PAYLOAD)
    assert response.body == PAYLOAD


def test_ngtcp2_uploads_a_body(server: ThreadServer) -> None:
    response = ngtcp2_get(f"{server.url}/echo", method="POST", data=UPLOAD)
    assert response.status == 200
    assert response.body == UPLOAD


# ----------------------------------------------------------------------------- Chromium


def test_chromium_loads_a_page_over_forced_quic(browser: Chromium, server: ThreadServer) -> None:
    assert browser.navigate(f"{server.url}/forced") == "h3"
    assert page_version(browser) == "3"


def test_chromium_discovers_h3_through_alt_svc(
    browser: Chromium, discovery_server: ThreadServer
) -> None:
    url = f"{discovery_server.url}/discovered"
    # Nothing is known about this origin yet: TCP, where ALPN picks HTTP/2.
    assert browser.navigate(url) == "h2"
    assert page_version(browser) == "2"
    # The response advertised HTTP/3 on the same port ...
    alt_svc = browser.document_headers.get("alt-svc", "")
    assert f'h3=":{discovery_server.port}"' in alt_svc, browser.document_headers
    # ... and Chromium moves to it within a few loads.
    seen = browser.navigate_until(url, "h3", attempts=20)
    assert seen[-1] == "h3", f"never moved to HTTP/3: {seen}"
    assert set(seen) <= {"h2", "h3"}
    assert page_version(browser) == "3"
