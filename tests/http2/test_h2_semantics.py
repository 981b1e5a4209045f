"""HTTP/2 semantics against a real server: scope, bodies, resets, flow control, lifecycle.

Clients are real, never mocks:

* httpx with ``http2=True`` where an ordinary client is enough;
* :class:`H2Client`, the h2 library driving a raw socket, where a test must
  control frames: resets, window updates held back, concurrent streams;
* :class:`FrameClient`, hyperframe + hpack, where even h2's own state machine
  would be in the way: frames sent after a GOAWAY, the server's very first
  SETTINGS frame, the exact frames of a connection's end.

Servers are :func:`tests.support.servers.serve` threads on port 0, or CLI
subprocesses when a test measures the server's memory alone.
"""

from __future__ import annotations

import json
import queue
import socket
import ssl
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import h2.config
import h2.connection
import h2.errors
import h2.events
import h2.settings
import hpack
import httpx
import pytest
from hyperframe.frame import (
    DataFrame,
    Frame,
    GoAwayFrame,
    HeadersFrame,
    RstStreamFrame,
    SettingsFrame,
    WindowUpdateFrame,
)

from asgiri.protocol.h2_codecs import resolve_codec
from tests.apps import h2 as h2apps
from tests.support.h2_client import H2Client, Headers, collect, raw_exchange, read_to_eof
from tests.support.h2_raw import parse_frames
from tests.support.processes import RSSSampler
from tests.support.servers import ThreadServer, cli_server, serve
from tests.support.tls import client_context

TIMEOUT = 10.0
MIB = 1024 * 1024
PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"

pytestmark = pytest.mark.timeout(60)


# ----------------------------------------------------------------------------- clients


class FrameClient:
    """HTTP/2 at the frame level: hyperframe frames, hpack header blocks.

    The server's SETTINGS are acknowledged as they arrive; header blocks are
    decoded in order so the HPACK state stays in step.
    """

    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT)
        self.encoder = hpack.Encoder()
        self.decoder = hpack.Decoder()
        self.buf = b""

    def close(self) -> None:
        self.sock.close()

    def send(self, *frames: Frame) -> None:
        self.sock.sendall(b"".join(f.serialize() for f in frames))

    def start(self) -> None:
        self.sock.sendall(PREFACE + SettingsFrame(0).serialize())

    def headers(self, stream_id: int, path: bytes, end: bool = True) -> HeadersFrame:
        block = self.encoder.encode(
            [
                (b":method", b"GET"),
                (b":scheme", b"http"),
                (b":authority", b"127.0.0.1"),
                (b":path", path),
            ]
        )
        flags = ["END_HEADERS", "END_STREAM"] if end else ["END_HEADERS"]
        return HeadersFrame(stream_id, data=block, flags=flags)

    def _fill(self) -> bool:
        try:
            data = self.sock.recv(65536)
        except ConnectionResetError:
            return False
        self.buf += data
        return bool(data)

    def next(self) -> tuple[Frame, Headers | None] | None:
        """The next frame (with its decoded header block), or None at EOF."""
        while len(self.buf) < 9:
            if not self._fill():
                return None
        frame, length = Frame.parse_frame_header(memoryview(self.buf[:9]))
        while len(self.buf) < 9 + length:
            if not self._fill():
                return None
        frame.parse_body(memoryview(self.buf[9 : 9 + length]))
        self.buf = self.buf[9 + length :]
        headers = None
        if isinstance(frame, HeadersFrame):
            assert "END_HEADERS" in frame.flags, "CONTINUATION is not expected here"
            headers = list(self.decoder.decode(frame.data, raw=True))
        elif isinstance(frame, SettingsFrame) and "ACK" not in frame.flags:
            self.send(SettingsFrame(0, flags=["ACK"]))
        return frame, headers

    def until(self, predicate: Callable[[Frame], bool]) -> list[tuple[Frame, Headers | None]]:
        """Frames up to and including the first matching ``predicate``."""
        seen = []
        while True:
            item = self.next()
            assert item is not None, f"EOF before the expected frame; got {seen}"
            seen.append(item)
            if predicate(item[0]):
                return seen

    def to_eof(self) -> list[tuple[Frame, Headers | None]]:
        seen = []
        while (item := self.next()) is not None:
            seen.append(item)
        return seen


def ends_stream(stream_id: int) -> Callable[[Frame], bool]:
    return lambda f: f.stream_id == stream_id and "END_STREAM" in f.flags


# ----------------------------------------------------------------------------- fixtures


def tls_options(pems: tuple[bytes, bytes]) -> dict[str, Any]:
    return {"cert_data": pems[0], "key_data": pems[1]}


def h2_prior_knowledge(srv: ThreadServer) -> httpx.Client:
    return httpx.Client(base_url=srv.url, http1=False, http2=True, timeout=TIMEOUT)


# ----------------------------------------------------------------------------- scope


def test_scope_over_prior_knowledge() -> None:
    with serve(h2apps.inspect) as srv, h2_prior_knowledge(srv) as client:
        port = srv.port
        response = client.get(
            "/a%20b/c%2Fd", params={"x": "1", "y": " z"}, headers={"X-Custom": "Value"}
        )
        posted = client.post("/submit?q", content=b"payload")
    assert response.status_code == 200
    assert response.http_version == "HTTP/2"
    scope = response.json()["scope"]
    assert scope["type"] == "http"
    assert scope["http_version"] == "2"
    assert scope["method"] == "GET"
    assert scope["scheme"] == "http"
    assert scope["path"] == "/a b/c/d"
    assert scope["raw_path"] == "/a%20b/c%2Fd"
    assert scope["query_string"] == "x=1&y=+z"
    assert scope["server"] == ["127.0.0.1", port]
    assert scope["client"][0] == "127.0.0.1"
    headers = scope["headers"]
    # :authority becomes the one host header; no pseudo-header reaches the app.
    assert [v for n, v in headers if n == "host"] == [f"127.0.0.1:{port}"]
    assert not [n for n, _ in headers if n.startswith(":")]
    assert all(n == n.lower() for n, _ in headers)
    assert ["x-custom", "Value"] in headers
    assert "http.response.zerocopy" not in scope["extensions"]
    for name in ("http.response.trailers", "http.response.early_hint", "http.response.pathsend"):
        assert name in scope["extensions"]
    data = posted.json()
    assert data["scope"]["method"] == "POST"
    assert (data["scope"]["path"], data["scope"]["query_string"]) == ("/submit", "q")
    assert data["body"] == "payload"


def test_scope_over_tls_has_https_and_the_tls_extension(pems: tuple[bytes, bytes]) -> None:
    with (
        serve(h2apps.inspect, **tls_options(pems)) as srv,
        httpx.Client(http2=True, verify=client_context(pems), timeout=TIMEOUT) as client,
    ):
        response = client.get(f"{srv.url}/secure?k=v")
    assert response.http_version == "HTTP/2"
    scope = response.json()["scope"]
    assert (scope["http_version"], scope["scheme"]) == ("2", "https")
    assert (scope["path"], scope["query_string"]) == ("/secure", "k=v")
    tls = scope["extensions"]["tls"]
    assert tls["tls_version"] in (0x0303, 0x0304)
    assert type(tls["cipher_suite"]) is int
    assert tls["server_cert"].strip() == pems[0].decode().strip()
    assert tls["client_cert_chain"] == []
    assert "http.response.zerocopy" not in scope["extensions"]


# ----------------------------------------------------------------------------- request bodies


def test_request_body_arrives_in_several_messages() -> None:
    seen: queue.Queue[tuple[bytes, bool]] = queue.Queue()
    pieces = [b"a" * 1000, b"b" * 16000, b"c" * 5]
    with serve(h2apps.make_body_recorder(seen)) as srv, H2Client(srv.port) as client:
        stream_id = client.start("/upload", "POST", end=False)
        for piece in pieces:
            # Each DATA frame reaches the app on its own before the next is sent.
            client.conn.send_data(stream_id, piece)
            client.flush()
            assert seen.get(timeout=TIMEOUT) == (piece, True)
        client.conn.send_data(stream_id, b"last", end_stream=True)
        client.flush()
        assert seen.get(timeout=TIMEOUT) == (b"last", False)
        response = client.response(stream_id)
    assert response.status == 200
    assert response.body == b"%d" % (sum(map(len, pieces)) + 4)


def test_request_body_end_stream_alone_ends_the_body() -> None:
    seen: queue.Queue[tuple[bytes, bool]] = queue.Queue()
    with serve(h2apps.make_body_recorder(seen)) as srv, H2Client(srv.port) as client:
        stream_id = client.start("/upload", "POST", end=False)
        client.conn.send_data(stream_id, b"only")
        client.flush()
        assert seen.get(timeout=TIMEOUT) == (b"only", True)
        client.conn.end_stream(stream_id)
        client.flush()
        assert seen.get(timeout=TIMEOUT) == (b"", False)
        assert client.response(stream_id).body == b"4"


# ----------------------------------------------------------------------------- disconnects


def _watch(client: H2Client, events: queue.Queue[str], with_body: bool) -> int:
    """Open /watch and wait until its app is blocked in receive()."""
    stream_id = client.start("/watch", "POST" if with_body else "GET", end=not with_body)
    assert events.get(timeout=TIMEOUT) == "started /watch"
    if not with_body:
        assert events.get(timeout=TIMEOUT) == "http.request"
    return stream_id


@pytest.mark.parametrize("with_body", [False, True], ids=["after-body", "during-body"])
def test_stream_reset_delivers_http_disconnect(with_body: bool) -> None:
    events: queue.Queue[str] = queue.Queue()
    with serve(h2apps.make_watcher(events)) as srv, H2Client(srv.port) as client:
        stream_id = _watch(client, events, with_body)
        client.conn.reset_stream(stream_id, h2.errors.ErrorCodes.CANCEL)
        client.flush()
        assert events.get(timeout=TIMEOUT) == "http.disconnect"
        # Only that stream is gone: the connection serves the next one.
        response = client.get("/next")
    assert (response.status, response.body) == (200, b"/next")
    assert events.empty()


@pytest.mark.parametrize("with_body", [False, True], ids=["after-body", "during-body"])
def test_connection_loss_delivers_http_disconnect(with_body: bool) -> None:
    events: queue.Queue[str] = queue.Queue()
    with serve(h2apps.make_watcher(events)) as srv:
        client = H2Client(srv.port)
        _watch(client, events, with_body)
        client.close()
        assert events.get(timeout=TIMEOUT) == "http.disconnect"


def test_one_stuck_stream_does_not_hold_up_a_hundred_others() -> None:
    events: queue.Queue[str] = queue.Queue()
    with (
        serve(h2apps.make_watcher(events), h2_max_concurrent_streams=128) as srv,
        H2Client(srv.port) as client,
    ):
        client.until(lambda e: isinstance(e, h2.events.RemoteSettingsChanged))
        stuck = _watch(client, events, with_body=False)
        others = [client.start(f"/n{i}") for i in range(100)]
        responses = [client.response(stream_id) for stream_id in others]
        assert [(r.status, r.body) for r in responses] == [
            (200, f"/n{i}".encode()) for i in range(100)
        ]
        assert not [e for e in client.events if getattr(e, "stream_id", None) == stuck]
        assert events.empty()  # the stuck app is still waiting
        client.close()
        assert events.get(timeout=TIMEOUT) == "http.disconnect"


# ----------------------------------------------------------------------------- extensions


def test_trailers_arrive_as_a_trailing_headers_frame() -> None:
    with serve(h2apps.trailers) as srv, H2Client(srv.port) as client:
        response = client.get("/t", extra=[(b"te", b"trailers")])
        assert any(isinstance(e, h2.events.TrailersReceived) for e in client.events)
        again = client.get("/t", extra=[(b"te", b"trailers")])
    assert response.status == 200
    assert response.body == b"hello world"
    assert response.header(b"trailer") == b"x-checksum, x-other"
    assert response.trailers == [(b"x-checksum", b"abc123"), (b"x-other", b"1")]
    assert again.trailers == response.trailers


@pytest.fixture(scope="module")
def data_file(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, bytes]:
    import os

    data = os.urandom(3 * MIB + 12345)
    path = tmp_path_factory.mktemp("h2files") / "blob.bin"
    path.write_bytes(data)
    return path, data


@pytest.mark.parametrize("tls", [False, True], ids=["cleartext", "tls"])
def test_pathsend(tls: bool, data_file: tuple[Path, bytes], pems: tuple[bytes, bytes]) -> None:
    path, data = data_file
    options = tls_options(pems) if tls else {}
    client_options: dict[str, Any] = (
        {"http2": True, "verify": client_context(pems)} if tls else {"http1": False, "http2": True}
    )
    with (
        serve(h2apps.make_pathsend_app(path), **options) as srv,
        httpx.Client(base_url=srv.url, timeout=TIMEOUT, **client_options) as client,
    ):
        responses = [client.get("/file") for _ in range(2)]
    for response in responses:
        assert response.http_version == "HTTP/2"
        assert response.status_code == 200
        assert response.headers["content-length"] == str(len(data))
        assert response.content == data


def test_early_hints_reach_an_h2_client() -> None:
    proceed = threading.Event()
    with serve(h2apps.make_early_hint_app(proceed)) as srv, H2Client(srv.port) as client:
        stream_id = client.start("/page")
        hint = client.until(lambda e: isinstance(e, h2.events.InformationalResponseReceived))
        assert hint.stream_id == stream_id
        assert not [e for e in client.events if isinstance(e, h2.events.ResponseReceived)]
        proceed.set()
        response = client.response(stream_id)
    assert dict(hint.headers)[b":status"] == b"103"
    assert [v for n, v in hint.headers if n == b"link"] == [
        b"</style.css>; rel=preload; as=style",
        b"</app.js>; rel=preload; as=script",
    ]
    assert response.informational == [hint.headers]
    assert (response.status, response.body) == (200, b"final")


# ----------------------------------------------------------------------------- bodiless responses


@pytest.mark.parametrize("path", ["/whole", "/streamed"])
def test_head_gets_headers_and_no_data(path: str) -> None:
    with serve(h2apps.shapes) as srv, H2Client(srv.port) as client:
        head = client.get(path, "HEAD")
        get = client.get(path)
    assert head.status == 200
    assert head.reset is None
    assert head.body == b""
    assert head.data_frames == 0
    if path == "/whole":
        assert head.header(b"content-length") == b"5"
    # The connection is in sync: the GET that follows has its whole body.
    assert (get.status, get.body) == (200, b"hello")


@pytest.mark.parametrize("status", [204, 304])
def test_bodiless_status_ends_the_stream_with_its_headers(status: int) -> None:
    with serve(h2apps.shapes) as srv, H2Client(srv.port) as client:
        response = client.get(f"/status/{status}")
        after = client.get("/whole")
    assert response.status == status
    assert response.header(b"x-status") == b"yes"
    assert response.ended_with_headers
    assert response.body == b""
    assert response.reset is None
    assert after.body == b"hello"


# ----------------------------------------------------------------------------- flow control

TOTAL_MIB = 200
RSS_LIMIT = 50 * MIB
TRANSFER_TIMEOUT = 20.0


def h2_download(port: int, mib: int, slow_seconds: float) -> int:
    """GET ``mib`` MiB from ``apps.mem:download`` acknowledging slowly at first."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)
    sock.settimeout(TIMEOUT)
    sock.connect(("127.0.0.1", port))
    codes = h2.settings.SettingCodes
    client = H2Client(
        port,
        sock=sock,
        settings={codes.INITIAL_WINDOW_SIZE: MIB, codes.MAX_FRAME_SIZE: 256 * 1024},
    )
    with client:
        client.conn.increment_flow_control_window(MIB)
        stream_id = client.start(f"/?mib={mib}")
        total = 0
        slow_until = time.monotonic() + slow_seconds
        while True:
            slow = time.monotonic() < slow_until
            data = sock.recv(1024 if slow else MIB)
            assert data, "connection closed mid-response"
            for event in client.conn.receive_data(data):
                if isinstance(event, h2.events.ResponseReceived):
                    headers = dict(event.headers)
                    assert headers[b":status"] == b"200"
                    assert headers[b"content-length"] == b"%d" % (mib * MIB)
                elif isinstance(event, h2.events.DataReceived):
                    assert event.data.strip(b"\xa5") == b"", "corrupted body"
                    total += len(event.data)
                    client.conn.acknowledge_received_data(
                        event.flow_controlled_length, event.stream_id
                    )
                elif isinstance(event, h2.events.StreamEnded):
                    assert event.stream_id == stream_id
                    return total
                elif isinstance(event, h2.events.StreamReset | h2.events.ConnectionTerminated):
                    raise AssertionError(f"unexpected {event}")
            client.flush()
            if slow:
                time.sleep(0.002)  # a slow reader: the server must not buffer for it


def test_slow_h2_reader_keeps_server_memory_flat() -> None:
    with cli_server("apps.mem:download", "--port", "0", "--no-access-log") as srv:
        assert srv.port is not None
        assert h2_download(srv.port, 2, 0) == 2 * MIB  # warm up the code paths
        started = time.monotonic()
        with RSSSampler(srv.proc.pid) as rss:
            received = h2_download(srv.port, TOTAL_MIB, slow_seconds=1.5)
        elapsed = time.monotonic() - started
        assert h2_download(srv.port, 1, 0) == MIB  # the server still answers
    assert received == TOTAL_MIB * MIB
    assert rss.samples > 10
    assert rss.growth < RSS_LIMIT, f"server RSS grew {rss.growth / MIB:.1f} MiB"
    assert elapsed < TRANSFER_TIMEOUT


def h2_upload(port: int, mib: int) -> tuple[bytes, int]:
    """POST ``mib`` MiB as fast as the server's windows allow.

    Returns the response body and the largest amount of body the client was
    ever allowed to have in flight (what the server may have had to buffer).
    """
    block = b"\x5a" * MIB
    with H2Client(port) as client:
        client.until(lambda e: isinstance(e, h2.events.RemoteSettingsChanged))
        stream_id = client.start(
            "/up", "POST", extra=[(b"content-length", b"%d" % (mib * MIB))], end=False
        )
        largest_window = 0
        for i in range(mib):
            largest_window = max(largest_window, client.conn.local_flow_control_window(stream_id))
            client.send_body(stream_id, block, end=i == mib - 1)
        response = client.response(stream_id)
    assert response.status == 200, response
    return response.body, largest_window


def test_h2_upload_to_a_slow_app_keeps_server_memory_flat() -> None:
    with cli_server("apps.mem:upload", "--port", "0", "--no-access-log") as srv:
        assert srv.port is not None
        count, _ = h2_upload(srv.port, 2)[0].split()
        assert int(count) == 2 * MIB
        started = time.monotonic()
        with RSSSampler(srv.proc.pid) as rss:
            body, window = h2_upload(srv.port, TOTAL_MIB)
        elapsed = time.monotonic() - started
    count, messages = body.split()
    assert int(count) == TOTAL_MIB * MIB
    assert int(messages) > 100, "the body should reach the app in many small messages"
    # The server never let more than one window (1 MiB by default) be in flight.
    assert window <= MIB
    assert rss.samples > 10
    assert rss.growth < RSS_LIMIT, f"server RSS grew {rss.growth / MIB:.1f} MiB"
    assert elapsed < TRANSFER_TIMEOUT


def test_window_never_opened_resets_the_stream_after_timeout_write() -> None:
    outcome: queue.Queue[str] = queue.Queue()
    with serve(h2apps.make_endless_app(outcome), timeout_write=1) as srv:
        with H2Client(srv.port) as client:
            stream_id = client.start("/endless")
            started = time.monotonic()
            reset = client.until(
                lambda e: isinstance(e, h2.events.StreamReset) and e.stream_id == stream_id,
                ack=False,
            )
            elapsed = time.monotonic() - started
            response = collect(client.events, stream_id)
            assert reset.error_code == h2.errors.ErrorCodes.CANCEL
            assert 0.5 <= elapsed <= 5.0, elapsed
            # The server respected the window it was given, and no more.
            assert 0 < len(response.body) <= 65535
            assert outcome.get(timeout=TIMEOUT) in ("ClientDisconnected", "CancelledError")
            # The connection survives: hand back the connection window and ask again.
            client.conn.acknowledge_received_data(len(response.body), stream_id)
            small = client.get("/small")
            assert (small.status, small.body) == (200, b"small")
        with h2_prior_knowledge(srv) as other:
            assert other.get("/small").text == "small"


# ----------------------------------------------------------------------------- lifecycle


def test_graceful_shutdown_answers_every_stream_before_its_goaway() -> None:
    """No GOAWAY while a stream is in flight: the h2 library (httpx) fails such streams.

    A stream opened right after the shutdown began is still served; one opened
    once the accept grace is over is refused with REFUSED_STREAM (retryable);
    the GOAWAY follows the last answer, bounded by the last stream served.
    """
    started: queue.Queue[str] = queue.Queue()
    release = threading.Event()
    srv = ThreadServer(h2apps.make_gate_app(started, release)).start()
    try:
        client = FrameClient(srv.port)
        client.start()
        client.send(client.headers(1, b"/gate"))
        frames = client.until(lambda f: isinstance(f, DataFrame) and f.stream_id == 1)
        assert frames[-1][0].data == b"begin;"
        assert started.get(timeout=TIMEOUT) == "started"
        shutdown_at = time.monotonic()
        srv.server.request_shutdown()
        # Opened within the accept grace: answered.
        client.send(client.headers(3, b"/early"))
        frames = client.until(ends_stream(3))
        assert b"".join(f.data for f, _ in frames if isinstance(f, DataFrame) and f.stream_id == 3)
        # Opened after it: refused, retryable, and still no GOAWAY.
        time.sleep(max(0.0, shutdown_at + 1.3 - time.monotonic()))
        client.send(client.headers(5, b"/late"))
        frames += client.until(lambda f: isinstance(f, RstStreamFrame))
        refused = frames[-1][0]
        assert (refused.stream_id, refused.error_code) == (5, h2.errors.ErrorCodes.REFUSED_STREAM)
        assert not [f for f, _ in frames if isinstance(f, GoAwayFrame)]
        release.set()
        rest = client.to_eof()
        client.close()
        body = b"".join(f.data for f, _ in rest if isinstance(f, DataFrame) and f.stream_id == 1)
        assert body == b"end"
        end = next(i for i, (f, _) in enumerate(rest) if ends_stream(1)(f))
        goaways = [(i, f) for i, (f, _) in enumerate(rest) if isinstance(f, GoAwayFrame)]
        assert len(goaways) == 1
        index, goaway = goaways[0]
        assert index > end
        assert (goaway.last_stream_id, goaway.error_code) == (3, 0)
        assert not [f for f, _ in rest if isinstance(f, HeadersFrame) and f.stream_id == 5]
        srv.thread.join(TIMEOUT)
        assert not srv.thread.is_alive()
    finally:
        release.set()
        srv.stop()


@pytest.mark.parametrize("requests", [0, 1])
def test_idle_connection_is_closed_with_goaway(requests: int) -> None:
    with serve(h2apps.main, timeout_keep_alive=0.5) as srv:
        client = FrameClient(srv.port)
        client.start()
        if requests:
            client.send(client.headers(1, b"/hello"))
            client.until(ends_stream(1))
        idle_from = time.monotonic()
        rest = client.to_eof()
        idle = time.monotonic() - idle_from
        client.close()
    goaways = [f for f, _ in rest if isinstance(f, GoAwayFrame)]
    assert len(goaways) == 1, rest
    assert (goaways[0].last_stream_id, goaways[0].error_code) == (requests, 0)
    assert isinstance(rest[-1][0], GoAwayFrame)
    assert 0.3 <= idle <= 5.0, idle


# ----------------------------------------------------------------------------- --http modes


def test_http2_only_answers_http11_with_505() -> None:
    with serve(h2apps.main, http_version="2") as srv:
        raw = raw_exchange(srv.port, b"GET /hello HTTP/1.1\r\nHost: t\r\n\r\n")
        with h2_prior_knowledge(srv) as client:
            response = client.get("/hello")
    # The whole exchange is one 505, then the server closed the connection.
    assert raw.startswith(b"HTTP/1.1 505 ")
    assert b"Hello, World!" not in raw
    assert response.http_version == "HTTP/2"
    assert response.text == "Hello, World!"


@pytest.mark.parametrize("codec", ["nghttp2", "h2"])
def test_http2_only_refuses_a_bad_preface_with_goaway(codec: str) -> None:
    """h2spec 3.5/2 on a cleartext HTTP/2-only port: bytes that are neither the
    preface nor an HTTP/1.x request line are an invalid preface (RFC 9113 3.4),
    answered GOAWAY(PROTOCOL_ERROR) and closed, not with an HTTP/1.1 response."""
    with serve(h2apps.main, http_version="2", h2_codec=codec) as srv:
        raw = raw_exchange(srv.port, b"INVALID CONNECTION PREFACE\r\n\r\n")
    frames = parse_frames(raw, whole=True)
    assert isinstance(frames[-1], GoAwayFrame), frames
    assert frames[-1].error_code == 1  # PROTOCOL_ERROR
    assert all(frame.stream_id == 0 for frame in frames), frames


def _tls_attempt(port: int, context: ssl.SSLContext) -> tuple[str | None, bytes]:
    """Handshake, send an HTTP/1.1 request; returns (ALPN, bytes read) or raises SSLError."""
    with (
        socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT) as raw,
        context.wrap_socket(raw, server_hostname="localhost") as sock,
    ):
        alpn = sock.selected_alpn_protocol()
        try:
            sock.sendall(b"GET /hello HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
            return alpn, read_to_eof(sock)
        except (ssl.SSLError, BrokenPipeError, ConnectionResetError):
            return alpn, b""


@pytest.mark.parametrize("offer", [["http/1.1"], None], ids=["http1.1", "no-alpn"])
def test_http2_only_tls_offers_only_h2(offer: list[str] | None, pems: tuple[bytes, bytes]) -> None:
    with serve(h2apps.main, http_version="2", **tls_options(pems)) as srv:
        try:
            alpn, data = _tls_attempt(srv.port, client_context(pems, offer))
        except ssl.SSLError:
            alpn, data = None, b""  # refusing the handshake is fine too
        with httpx.Client(http2=True, verify=client_context(pems), timeout=TIMEOUT) as client:
            response = client.get(f"{srv.url}/hello")
    assert alpn is None
    assert data == b"", "an HTTP/2-only server must not answer HTTP/1.1"
    assert response.http_version == "HTTP/2"


def test_http11_only_does_not_take_the_preface_as_http2() -> None:
    with serve(h2apps.main, http_version="1.1") as srv:
        raw = raw_exchange(srv.port, PREFACE + SettingsFrame(0).serialize())
        upgrade = raw_exchange(
            srv.port,
            b"GET /hello HTTP/1.1\r\nHost: t\r\nConnection: Upgrade, HTTP2-Settings, close\r\n"
            b"Upgrade: h2c\r\nHTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA\r\n\r\n",
        )
    assert raw.startswith(b"HTTP/1.1 ")
    assert int(raw.split(b" ", 2)[1]) in (400, 505)
    head, _, body = raw.partition(b"\r\n\r\n")
    assert b"connection: close" in head.lower()
    length = int(head.lower().split(b"content-length:")[1].split(b"\r\n")[0])
    # One HTTP/1.1 answer and nothing after it: no server preface (SETTINGS).
    assert len(body) == length
    assert upgrade.startswith(b"HTTP/1.1 200 ")
    assert upgrade.endswith(b"Hello, World!")


def test_http11_only_tls_never_selects_h2(pems: tuple[bytes, bytes]) -> None:
    with serve(h2apps.main, http_version="1.1", **tls_options(pems)) as srv:
        both, data = _tls_attempt(srv.port, client_context(pems, ["h2", "http/1.1"]))
        try:
            only_h2, _ = _tls_attempt(srv.port, client_context(pems, ["h2"]))
        except ssl.SSLError:
            only_h2 = None
        with httpx.Client(http2=True, verify=client_context(pems), timeout=TIMEOUT) as client:
            response = client.get(f"{srv.url}/hello")
    assert both == "http/1.1"
    assert data.startswith(b"HTTP/1.1 200 ")
    assert only_h2 != "h2"
    assert response.http_version == "HTTP/1.1"
    assert response.text == "Hello, World!"


# ----------------------------------------------------------------------------- the codec


@pytest.mark.parametrize("codec", ["nghttp2", "h2"])
def test_h2_codec_option_picks_the_codec(codec: str) -> None:
    """``--h2-codec`` picks the implementation.  The one answer that differs is
    a malformed request: a stream error on nghttp2 (RFC 9113 8.1.1), the
    connection's end on h2."""
    with serve(h2apps.main, h2_codec=codec) as srv:
        client = FrameClient(srv.port)
        client.start()
        fields = [
            (b":method", b"GET"),
            (b":scheme", b"http"),
            (b":authority", b"127.0.0.1"),
            (b":path", b"/hello"),
            (b"X-Upper-Case", b"1"),
        ]
        bad = client.encoder.encode(fields)
        client.send(HeadersFrame(1, data=bad, flags=["END_HEADERS", "END_STREAM"]))
        frames = client.until(lambda f: isinstance(f, (RstStreamFrame, GoAwayFrame)))
        answer = frames[-1][0]
        if codec == "nghttp2":
            assert isinstance(answer, RstStreamFrame)
            assert (answer.stream_id, answer.error_code) == (1, h2.errors.ErrorCodes.PROTOCOL_ERROR)
            client.send(client.headers(3, b"/hello"))
            served = client.until(ends_stream(3))
            statuses = [h for _, h in served if h is not None]
            assert statuses and (b":status", b"200") in statuses[0]
        else:
            assert isinstance(answer, GoAwayFrame)
            assert answer.error_code == h2.errors.ErrorCodes.PROTOCOL_ERROR
        client.close()


def test_auto_codec_is_h2_where_ngh2_does_not_import(monkeypatch: pytest.MonkeyPatch) -> None:
    assert resolve_codec("auto") == "nghttp2"
    monkeypatch.setitem(sys.modules, "ngh2", None)  # what ImportError looks like
    assert resolve_codec("auto") == "h2"
    assert resolve_codec("nghttp2") == "nghttp2"


# ----------------------------------------------------------------------------- connection set-up

_CODES = h2.settings.SettingCodes


@pytest.mark.parametrize(
    ("options", "expected"),
    [
        ({}, {"streams": 100, "window": MIB, "frame": 16384, "headers": 65536}),
        (
            {
                "h2_max_concurrent_streams": 37,
                "h2_initial_window_size": 300_000,
                "h2_max_frame_size": 32768,
                "h2_max_header_list_size": 20_000,
            },
            {"streams": 37, "window": 300_000, "frame": 32768, "headers": 20_000},
        ),
    ],
    ids=["defaults", "configured"],
)
def test_settings_are_advertised(options: dict[str, int], expected: dict[str, int]) -> None:
    with serve(h2apps.main, **options) as srv:
        client = FrameClient(srv.port)
        client.start()
        first = client.next()
        second = client.next()
        client.close()
    assert first is not None and second is not None
    settings = first[0]
    assert isinstance(settings, SettingsFrame)
    assert "ACK" not in settings.flags
    assert settings.settings[_CODES.MAX_CONCURRENT_STREAMS] == expected["streams"]
    assert settings.settings[_CODES.INITIAL_WINDOW_SIZE] == expected["window"]
    assert settings.settings[_CODES.MAX_FRAME_SIZE] == expected["frame"]
    assert settings.settings[_CODES.MAX_HEADER_LIST_SIZE] == expected["headers"]
    # The connection window is opened to match the stream window.
    update = second[0]
    assert isinstance(update, WindowUpdateFrame)
    assert (update.stream_id, update.window_increment) == (0, expected["window"] - 65535)


@pytest.mark.parametrize("what", ["preface", "everything"])
def test_preface_split_byte_by_byte(what: str) -> None:
    with serve(h2apps.inspect) as srv, H2Client(srv.port, initiate=False) as client:
        client.conn.initiate_connection()
        opening = client.conn.data_to_send()
        assert opening.startswith(PREFACE)
        if what == "everything":
            stream_id = client.conn.get_next_available_stream_id()
            client.conn.send_headers(stream_id, client.request_headers("/split"), end_stream=True)
            opening += client.conn.data_to_send()
        for i in range(len(opening)):
            client.sock.sendall(opening[i : i + 1])
        if what == "preface":
            stream_id = client.start("/split")
        response = client.response(stream_id)
    assert response.status == 200
    scope = json.loads(response.body)["scope"]
    assert (scope["http_version"], scope["path"]) == ("2", "/split")


# ----------------------------------------------------------------------------- h2c Upgrade


def _read_101(sock: socket.socket) -> bytes:
    """Read the 101 response; returns what followed it (the server's first frames)."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        assert chunk, f"closed before the 101: {data!r}"
        data += chunk
    switching, _, rest = data.partition(b"\r\n\r\n")
    assert switching.startswith(b"HTTP/1.1 101 "), switching
    assert b"upgrade: h2c" in switching.lower()
    return rest


def _upgrade(port: int, body: bytes, mode: str) -> tuple[H2Client, bytes]:
    """Send an ``Upgrade: h2c`` POST with ``body``; returns the client and bytes after 101."""
    client = H2Client(port, initiate=False)
    settings = client.conn.initiate_upgrade_connection()
    head = (
        b"POST /echo HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        b"Connection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\n"
        b"HTTP2-Settings: " + settings + b"\r\n"
        b"Content-Length: %d\r\n\r\n" % len(body)
    )
    half = len(body) // 2
    if mode == "with-head":
        client.sock.sendall(head + body)
        return client, _read_101(client.sock)
    # "dribbled": the 101 waits until the whole body is in, because clients
    # such as curl stop sending a body once they see the 101.
    client.sock.sendall(head + body[:half])
    client.sock.settimeout(0.2)
    with pytest.raises(TimeoutError):
        client.sock.recv(1)
    client.sock.settimeout(TIMEOUT)
    client.sock.sendall(body[half:])
    return client, _read_101(client.sock)


@pytest.mark.parametrize("codec", ["nghttp2", "h2"])
def test_h2c_upgrade_with_malformed_settings_ends_with_goaway(codec: str) -> None:
    """HTTP2-Settings that is no SETTINGS payload (3 octets): after the 101 the
    connection ends with GOAWAY PROTOCOL_ERROR, and the server goes on serving."""
    with serve(h2apps.main, h2_codec=codec) as srv:
        with socket.create_connection(("127.0.0.1", srv.port), timeout=TIMEOUT) as sock:
            sock.sendall(
                b"GET /hello HTTP/1.1\r\nHost: t\r\nConnection: Upgrade, HTTP2-Settings\r\n"
                b"Upgrade: h2c\r\nHTTP2-Settings: AAMA\r\n\r\n"
            )
            rest = _read_101(sock)
            while (chunk := sock.recv(65536)) != b"":
                rest += chunk
        frames = parse_frames(rest)
        goaways = [f for f in frames if isinstance(f, GoAwayFrame)]
        assert goaways, frames
        assert goaways[0].error_code == h2.errors.ErrorCodes.PROTOCOL_ERROR
        with httpx.Client(http1=False, http2=True, timeout=TIMEOUT) as client:
            assert client.get(f"{srv.url}/hello").status_code == 200


def test_h2c_upgrade_with_a_body_beyond_one_window_is_served_as_http11() -> None:
    """RFC 7540 3.2 lets the server ignore an upgrade: it does so rather than hold
    more than one stream window of HTTP/1.1 body before its 101."""
    body = b"upgrade-body;" * 1000
    with serve(h2apps.main, h2_initial_window_size=8192) as srv:
        head = (
            b"POST /echo HTTP/1.1\r\nHost: localhost\r\nConnection: Upgrade, HTTP2-Settings\r\n"
            b"Upgrade: h2c\r\nHTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA\r\n"
            b"Content-Length: %d\r\n\r\n" % len(body)
        )
        with socket.create_connection(("127.0.0.1", srv.port), timeout=5) as sock:
            sock.sendall(head + body)
            raw = b""
            while not raw.endswith(body):
                chunk = sock.recv(65536)
                if not chunk:
                    break
                raw += chunk
    assert raw.startswith(b"HTTP/1.1 200 ")
    assert b" 101 " not in raw.split(b"\r\n\r\n", 1)[0]
    assert raw.endswith(body)


@pytest.mark.parametrize("mode", ["with-head", "dribbled"])
def test_h2c_upgrade_serves_the_request_as_stream_1(mode: str) -> None:
    body = b"upgrade-body;" * 1000
    with serve(h2apps.main) as srv:
        client, rest = _upgrade(srv.port, body, mode)
        with client:
            client.sock.sendall(client.conn.data_to_send())  # preface + SETTINGS
            if rest:
                client.events.extend(client.conn.receive_data(rest))
                client.flush()
            first = client.response(1)
            scope = json.loads(client.get("/json").body)
            stream_id = client.start("/echo", "POST", end=False)
            client.send_body(stream_id, b"second body")
            second = client.response(stream_id)
    assert first.status == 200
    assert first.body == body
    assert first.header(b"x-body-length") == b"%d" % len(body)
    assert scope["http_version"] == "2"
    assert (second.status, second.body) == (200, b"second body")


# ----------------------------------------------------------------------------- limits


def test_limit_request_body_answers_413() -> None:
    with serve(h2apps.main, limit_request_body=10) as srv, H2Client(srv.port) as client:
        # At the limit: served.
        stream_id = client.start("/echo", "POST", end=False)
        client.send_body(stream_id, b"0123456789")
        ok = client.response(stream_id)
        assert (ok.status, ok.body) == (200, b"0123456789")
        # A declared length over the limit: refused before the body is read.
        stream_id = client.start("/echo", "POST", extra=[(b"content-length", b"11")], end=False)
        declared = client.response(stream_id)
        assert declared.status == 413
        assert declared.body.startswith(b"413 ")
        # A body growing past the limit (no content-length) while the app reads it.
        stream_id = client.start("/echo", "POST", end=False)
        client.send_body(stream_id, b"01234", end=False)
        client.send_body(stream_id, b"56789!", end=False)
        grown = client.response(stream_id)
        assert grown.status == 413
        assert grown.header(b"server") == b"asgiri"
        # The connection goes on serving.
        after = client.get("/hello")
        assert (after.status, after.body) == (200, b"Hello, World!")
    # httpx declares the length of what it posts.
    with (
        serve(h2apps.main, limit_request_body=10) as srv,
        httpx.Client(http1=False, http2=True, timeout=TIMEOUT) as client,
    ):
        assert client.post(f"{srv.url}/echo", content=b"x" * 100).status_code == 413
        small = client.post(f"{srv.url}/echo", content=b"x" * 10)
        assert (small.status_code, small.content) == (200, b"x" * 10)


def test_limit_concurrency_answers_503() -> None:
    events: queue.Queue[str] = queue.Queue()
    with (
        serve(h2apps.make_watcher(events), limit_concurrency=1) as srv,
        H2Client(srv.port) as client,
    ):
        stuck = _watch(client, events, with_body=False)
        busy = client.get("/busy")
        assert busy.status == 503
        assert busy.body == b"503 Service Unavailable\n"
        assert busy.header(b"date") is not None
        # Once the held request is gone, requests are served again.
        client.conn.reset_stream(stuck, h2.errors.ErrorCodes.CANCEL)
        client.flush()
        assert events.get(timeout=TIMEOUT) == "http.disconnect"
        deadline = time.monotonic() + TIMEOUT
        while (response := client.get("/again")).status == 503:
            assert time.monotonic() < deadline, "the freed slot was never reused"
        assert (response.status, response.body) == (200, b"/again")


def test_access_log_line_says_http2() -> None:
    with cli_server("apps:hello", "--port", "0") as srv:
        with httpx.Client(http1=False, http2=True, timeout=TIMEOUT) as client:
            assert client.get(srv.url + "/some/path?a=1&b=two").status_code == 200
        srv.wait_for(r'127\.0\.0\.1:\d+ - "GET /some/path\?a=1&b=two HTTP/2" 200 13 \d+\.\dms')


# ----------------------------------------------------------------------------- app errors

#: Misbehaving paths of tests/asgi/test_app_errors.py answered with a 500: nothing
#: of the response was sent yet (an invalid field or a body that cannot match
#: its content-length is refused before it reaches the wire).
ANSWERED_500 = [
    "raise_before_start",
    "raise_right_after_start",
    "return_without_response",
    "unknown_type",
    "str_headers",
    "status_out_of_range",
    "double_start",
    "crlf_header",
    "crlf_header_flushed",
    "bad_header_name",
    "length_long",
    "length_short",
]
#: Paths whose response was under way: the stream is reset (INTERNAL_ERROR).
RESET = [
    "raise_after_start",
    "return_after_partial_body",
    "length_long_streamed",
    "length_short_streamed",
    "bad_trailer",
]


def test_app_errors_over_h2() -> None:
    """Each failure stays on its own stream: the connection serves the next request.

    A field HTTP/2 forbids, or a body that does not match its content-length,
    would make the client fail the whole connection if it reached the wire.
    """
    from tests.apps.errors import app

    with serve(app) as srv, H2Client(srv.port) as client:
        for path in ANSWERED_500 + RESET:
            response = client.get(f"/{path}", extra=[(b"te", b"trailers")])
            if path in ANSWERED_500:
                assert (response.status, response.reset) == (500, None), path
                assert response.body == b"Internal Server Error", path
            else:
                assert response.status == 200, path
                assert response.reset == h2.errors.ErrorCodes.INTERNAL_ERROR, path
                assert b"x-injected" not in b"".join(v for _, v in response.headers)
                assert response.trailers is None, path
            ok = client.get("/ok")
            assert (ok.status, ok.body) == (200, b"ok"), path


def test_inbound_frame_cap_is_what_is_advertised() -> None:
    """``--h2-max-inbound-frame-size`` below ``--h2-max-frame-size``: the server
    advertises the cap, accepts frames of that size and refuses larger ones."""
    from hyperframe.frame import DataFrame as Data

    from tests.http2.conformance.driver import ErrorCodes, RawH2, request_headers

    cap = 1 << 20
    with serve(h2apps.main, h2_max_frame_size=2 * cap, h2_max_inbound_frame_size=cap) as srv:
        with RawH2(srv.port) as conn:
            conn.handshake()
            assert conn.server_settings[_CODES.MAX_FRAME_SIZE] == cap
            conn.send(
                conn.headers(1, request_headers(b"/echo", b"POST"), end_stream=False),
                Data(1, b"y" * cap, flags=["END_STREAM"]),
            )
            # (The echo itself waits for a window this client never opens.)
            conn.wait_for(lambda f: isinstance(f, HeadersFrame) and f.stream_id == 1, "HEADERS")
            assert conn.exchanges[1].get(b"x-body-length") == b"%d" % cap
        with RawH2(srv.port) as conn:
            conn.handshake()
            conn.send(
                conn.headers(1, request_headers(b"/echo", b"POST"), end_stream=False),
                Data(1, b"y" * (cap + 1), flags=["END_STREAM"]),
            )
            conn.expect_connection_error(ErrorCodes.FRAME_SIZE_ERROR)


def _hold_window(client: H2Client, seconds: float) -> None:
    """Read for ``seconds`` without acknowledging DATA (the window stays shut)."""
    client.sock.settimeout(seconds)
    try:
        with pytest.raises(TimeoutError):
            while True:
                client.pump(ack=False)
    finally:
        client.sock.settimeout(TIMEOUT)


def test_finished_response_waiting_for_the_window_outlives_the_idle_timeout() -> None:
    """The app handed over its whole body and returned; the rest waits for the
    client's window.  The connection is not idle: it must not be closed."""
    body = bytes(range(256)) * 1200
    with serve(h2apps.main, timeout_keep_alive=0.3) as srv, H2Client(srv.port) as client:
        stream_id = client.start("/echo", "POST", end=False)
        client.send_body(stream_id, body)
        client.until(
            lambda e: isinstance(e, h2.events.DataReceived) and e.stream_id == stream_id,
            ack=False,
        )
        _hold_window(client, 1.5)
        for event in client.events:
            if isinstance(event, h2.events.DataReceived):
                client.conn.acknowledge_received_data(event.flow_controlled_length, stream_id)
        client.flush()
        response = client.response(stream_id)
        assert response.reset is None
        assert response.body == body
        # Idle now, the connection is closed as usual.
        client.sock.settimeout(TIMEOUT)
        assert client.until(lambda e: isinstance(e, h2.events.ConnectionTerminated))


def test_finished_response_to_a_client_that_opens_no_window_is_dropped() -> None:
    body = bytes(range(256)) * 1200
    with (
        serve(h2apps.main, timeout_keep_alive=0.3, timeout_write=1) as srv,
        H2Client(srv.port) as client,
    ):
        stream_id = client.start("/echo", "POST", end=False)
        client.send_body(stream_id, body)
        started = time.monotonic()
        with pytest.raises((EOFError, ConnectionResetError)):
            while True:
                client.pump(ack=False)
        assert 0.8 < time.monotonic() - started < 5
        with h2_prior_knowledge(srv) as other:
            assert other.get("/hello").text == "Hello, World!"


def test_date_and_server_headers_can_be_disabled() -> None:
    with serve(h2apps.main) as srv, H2Client(srv.port) as client:
        default = client.get("/hello")
    with (
        serve(h2apps.main, server_header=False, date_header=False) as srv,
        H2Client(srv.port) as client,
    ):
        bare = client.get("/hello")
    assert default.header(b"server") == b"asgiri"
    assert default.header(b"date") is not None
    assert bare.status == 200
    assert bare.header(b"server") is None
    assert bare.header(b"date") is None


def test_expect_continue() -> None:
    """RFC 9113 8.1 allows 100 Continue: sent when the app first reads, not before."""
    expect = [(b"expect", b"100-continue")]
    with serve(h2apps.main) as srv, H2Client(srv.port) as client:
        stream_id = client.start("/echo", "POST", extra=expect, end=False)
        info = client.until(
            lambda e: (
                isinstance(e, h2.events.InformationalResponseReceived) and e.stream_id == stream_id
            )
        )
        assert dict(info.headers)[b":status"] == b"100"
        client.send_body(stream_id, b"payload")
        response = client.response(stream_id)
        assert (response.status, response.body) == (200, b"payload")
        assert response.informational == [info.headers]
        # An app that answers without reading the body: no 100.
        stream_id = client.start("/hello", "POST", extra=expect, end=False)
        unread = client.response(stream_id)
        assert (unread.status, unread.body) == (200, b"Hello, World!")
        assert unread.informational == []


def test_h2c_upgrade_expecting_100_continue_is_served_as_http11() -> None:
    """The 101 would wait for the body, the client for a 100 before sending it:
    the upgrade is declined and HTTP/1.1 answers 100, then the request."""
    body = b"expecting"
    with (
        serve(h2apps.main) as srv,
        socket.create_connection(("127.0.0.1", srv.port), timeout=TIMEOUT) as sock,
    ):
        sock.sendall(
            b"POST /echo HTTP/1.1\r\nHost: localhost\r\nConnection: Upgrade, HTTP2-Settings\r\n"
            b"Upgrade: h2c\r\nHTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA\r\n"
            b"Expect: 100-continue\r\nContent-Length: %d\r\n\r\n" % len(body)
        )
        interim = b""
        while b"\r\n\r\n" not in interim:
            chunk = sock.recv(65536)
            assert chunk, interim
            interim += chunk
        assert interim == b"HTTP/1.1 100 Continue\r\n\r\n"
        sock.sendall(body)
        raw = b""
        while not raw.endswith(body):
            chunk = sock.recv(65536)
            assert chunk, raw
            raw += chunk
    assert raw.startswith(b"HTTP/1.1 200 ")
