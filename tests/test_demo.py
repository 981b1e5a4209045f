"""The demo that ``make demo`` serves: its pages and its WebSocket echo work."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import websockets
from examples.demo import app

from asgiri.ssl_utils import generate_self_signed_cert

from .h3_client import H3Client
from .h3_interop import Chromium
from .servers import ROOT, serve


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


@contextlib.contextmanager
def demo_script(tmp_path: Path) -> Iterator[tuple[int, int, list[str]]]:
    """``make demo``'s scripts/demo.sh on free ports: (https port, http port, its output)."""
    ports = []
    for kind in (socket.SOCK_STREAM, socket.SOCK_STREAM):
        with socket.socket(socket.AF_INET, kind) as probe:
            probe.bind(("127.0.0.1", 0))
            ports.append(probe.getsockname()[1])
    https_port, http_port = ports
    env = dict(os.environ)
    env.update(
        HTTPS_PORT=str(https_port),
        HTTP_PORT=str(http_port),
        CERT_DIR=str(tmp_path / "certs"),
        PYTHON=sys.executable,
        ASGIRI=str(Path(sys.executable).with_name("asgiri")),
        PYTHONUNBUFFERED="1",
    )
    proc = subprocess.Popen(
        ["bash", str(ROOT / "scripts" / "demo.sh")],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    lines: list[str] = []
    try:
        assert proc.stdout is not None
        listening = 0
        for line in proc.stdout:
            lines.append(line)
            if "Listening on" in line:
                listening += 1
                if listening == 2:
                    break
        assert listening == 2, "".join(lines)
        yield https_port, http_port, lines
    finally:
        proc.send_signal(signal.SIGINT)
        code = proc.wait(30)
    assert code == 0, "".join(lines)


def test_demo_script_serves_tls_and_cleartext_from_one_process(tmp_path: Path) -> None:
    """``make demo`` runs scripts/demo.sh: one asgiri process, an https and an http listener."""
    with demo_script(tmp_path) as (https_port, http_port, lines):
        assert f"Listening on https://127.0.0.1:{https_port} (h1, h2) + udp (h3)" in "".join(lines)
        assert f"Listening on http://127.0.0.1:{http_port} (h1, h2c)" in "".join(lines)
        secure = httpx.get(f"https://127.0.0.1:{https_port}/hello", verify=False)
        plain = httpx.get(f"http://127.0.0.1:{http_port}/hello")
        assert secure.status_code == plain.status_code == 200
        assert secure.headers["alt-svc"] == f'h3=":{https_port}"; ma=86400'
        assert "alt-svc" not in plain.headers
        with H3Client(https_port) as client:
            assert client.get("/hello").status == 200


def test_chromium_webtransport_against_the_demo(tmp_path: Path) -> None:
    """A real browser's WebTransport API: the demo page's panel, a stream echo, a datagram.

    The page (served in cleartext on 127.0.0.1, a secure context) trusts the
    development certificate by its SHA-256 (serverCertificateHashes): no
    browser flag, as for a user of ``make demo``.
    """
    with demo_script(tmp_path) as (_, http_port, _lines), Chromium(timeout=30) as browser:
        browser.navigate(f"http://127.0.0.1:{http_port}/")
        assert browser.evaluate("window.wtReady.then((t) => t !== null)") is True
        assert browser.evaluate("document.getElementById('wt-status').textContent") == "open"
        reply = browser.evaluate("window.wtReady.then((t) => wtStream(t, 'hello from Chromium'))")
        assert reply == "hello from Chromium"
        datagram = browser.evaluate(
            """window.wtReady.then(async (t) => {
                const writer = t.datagrams.writable.getWriter();
                await writer.write(new TextEncoder().encode("ping"));
                writer.releaseLock();
                for (let i = 0; i < 100; i++) {
                    const items = [...document.querySelectorAll("#wt-log li")];
                    const texts = items.map((li) => li.textContent);
                    const got = texts.find((s) => s.startsWith("datagram"));
                    if (got) return got;
                    await new Promise((resolve) => setTimeout(resolve, 50));
                }
                return null;
            })"""
        )
        assert datagram == "datagram: ping"
        closed = browser.evaluate(
            """window.wtReady.then(async (t) => {
                t.close({closeCode: 7, reason: "bye"});
                const info = await t.closed;
                return [info.closeCode, info.reason];
            })"""
        )
        assert closed == [7, "bye"]
