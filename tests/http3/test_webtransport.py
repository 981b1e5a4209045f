"""WebTransport over HTTP/3 with aioquic as the client: session mode, per-stream mode, limits."""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Iterator

import pytest

from asgiri.server.h3 import STREAM_WINDOW
from asgiri.server.webtransport import WTBridge
from tests.apps import wt as wtapps
from tests.support.garbage import cyclic_garbage
from tests.support.h3_client import H3Client, h3port
from tests.support.logs import AccessLines
from tests.support.servers import ThreadServer, serve
from tests.support.wt_client import WTClient

TIMEOUT = 10.0


@pytest.fixture(scope="module")
def server(pems: tuple[bytes, bytes]) -> Iterator[ThreadServer]:
    with serve(wtapps.session, cert_data=pems[0], key_data=pems[1]) as srv:
        yield srv


@pytest.fixture(autouse=True)
def _clear() -> Iterator[None]:
    wtapps.clear()
    yield
    wtapps.RELEASE.set()


def test_session_is_accepted_with_the_draft_header(server: ThreadServer) -> None:
    with H3Client(h3port(server), webtransport=True) as client:
        settings = client.h3.received_settings or {}
        assert settings.get(0x2B603742) == 1  # SETTINGS_ENABLE_WEBTRANSPORT
        assert settings.get(0x33) == 1  # SETTINGS_H3_DATAGRAM
        assert settings.get(0x8) == 1  # SETTINGS_ENABLE_CONNECT_PROTOCOL
        session = WTClient(client, "/echo")
        head = session.wait_head()
        assert head.status == 200
        assert head.header(b"sec-webtransport-http3-draft") == b"draft02"
        assert head.header(b"x-session") == b"yes"
        assert wtapps.event("scope") == {
            "type": "webtransport",
            "path": "/echo",
            "http_version": "3",
            "scheme": "https",
        }


def test_bidirectional_echo_on_several_streams(server: ThreadServer) -> None:
    with H3Client(h3port(server), webtransport=True) as client:
        session = WTClient(client, "/echo")
        assert session.wait_head().status == 200
        streams = [session.open_stream() for _ in range(5)]
        for index, stream_id in enumerate(streams):
            session.send(stream_id, b"hello %d " % index)
        for stream_id in streams:
            session.send(stream_id, b"x" * 100_000, end=True)
        for index, stream_id in enumerate(streams):
            data = session.wait_stream(stream_id)
            assert data == b"hello %d " % index + b"x" * 100_000


def test_unidirectional_streams_both_ways(server: ThreadServer) -> None:
    with H3Client(h3port(server), webtransport=True) as client:
        session = WTClient(client, "/echo")
        assert session.wait_head().status == 200
        uni = session.open_stream(unidirectional=True)
        session.send(uni, b"one way", end=True)
        client.run_until(lambda: bool(session.new_streams()), what="the server's stream")
        (reply,) = session.new_streams()
        assert reply & 2  # server-initiated unidirectional
        assert session.wait_stream(reply) == b"one way"


def test_server_opens_streams(server: ThreadServer) -> None:
    with H3Client(h3port(server), webtransport=True) as client:
        session = WTClient(client, "/open")
        assert session.wait_head().status == 200
        client.run_until(lambda: len(session.new_streams()) == 2, what="two server streams")
        by_kind = {bool(s & 2): s for s in session.new_streams()}
        assert session.wait_stream(by_kind[True]) == b"from the server uni"
        assert session.wait_stream(by_kind[False], ended=False) == b"from the server bidi"


def test_datagrams_round_trip(server: ThreadServer) -> None:
    with H3Client(h3port(server), webtransport=True) as client:
        session = WTClient(client, "/echo")
        assert session.wait_head().status == 200
        for index in range(3):
            session.send_datagram(b"ping %d" % index)
        got = session.wait_datagrams(3)
        assert sorted(got) == [b"echo:ping 0", b"echo:ping 1", b"echo:ping 2"]


def test_denial_with_a_status_and_body(server: ThreadServer) -> None:
    with H3Client(h3port(server), webtransport=True) as client:
        session = WTClient(client, "/deny")
        response = client.wait_response(session.session_id)
        assert response.status == 403
        assert bytes(response.body) == b"not you"
        session = WTClient(client, "/reject")
        assert client.wait_response(session.session_id).status == 403
        # The connection goes on serving.
        assert client.get("/").status == 200


def test_app_closes_with_a_code_and_reason(server: ThreadServer) -> None:
    with H3Client(h3port(server), webtransport=True) as client:
        session = WTClient(client, "/echo")
        assert session.wait_head().status == 200
        stream_id = session.open_stream()
        session.send(stream_id, b"close 4711 enough for today", end=True)
        closed = session.wait_closed()
        assert closed is not None and (closed.code, closed.reason) == (4711, "enough for today")
        assert wtapps.event("disconnect") == ("/echo", 4711, "enough for today")


def test_client_closes_with_a_code_and_reason(server: ThreadServer) -> None:
    with H3Client(h3port(server), webtransport=True) as client:
        session = WTClient(client, "/echo")
        assert session.wait_head().status == 200
        session.close(42, "bye")
        while (ended := wtapps.event("disconnect")) != ("/echo", 42, "bye"):
            # A session of an earlier test whose connection the server saw end
            # only now; this session's own end must still come, with its code.
            assert ended[1:] == (0, "connection lost"), ended
        session.wait_closed()


def test_per_stream_mode_for_an_app_that_ignores_sessions(pems: tuple[bytes, bytes]) -> None:
    with (
        serve(wtapps.per_stream, cert_data=pems[0], key_data=pems[1]) as srv,
        H3Client(h3port(srv), webtransport=True) as client,
    ):
        session = WTClient(client, "/game", [(b"x-player", b"7")])
        head = session.wait_head()
        assert head.status == 200
        assert head.header(b"sec-webtransport-http3-draft") == b"draft02"
        bidi = session.open_stream()
        session.send(bidi, b"move", end=True)
        assert session.wait_stream(bidi) == b"per-stream:move"
        scope = wtapps.event("stream-scope")
        assert scope["type"] == "webtransport.stream"
        assert (scope["path"], scope["session_id"], scope["stream_id"]) == (
            "/game",
            session.session_id,
            bidi,
        )
        assert scope["http_version"] == "3"
        assert scope["headers"][b"x-player"] == b"7"
        assert wtapps.event("stream-disconnect") == bidi
        uni = session.open_stream(unidirectional=True)
        session.send(uni, b"telemetry", end=True)
        assert wtapps.event("uni-received") == b"telemetry"


# ----------------------------------------------------------------------------- the lifecycle


def _server_session(srv: ThreadServer) -> WTBridge:
    """The one WebTransport session the server has open."""
    ctx = srv.server._ctx
    assert ctx is not None
    deadline = time.monotonic() + TIMEOUT
    while time.monotonic() < deadline:
        for conn in list(ctx.connections):
            for tunnel in list(getattr(conn, "tunnels", {}).values()):
                if isinstance(tunnel, WTBridge):
                    return tunnel
        time.sleep(0.01)
    raise AssertionError("no WebTransport session on the server")


def test_a_session_counts_for_limit_concurrency(pems: tuple[bytes, bytes]) -> None:
    with (
        serve(wtapps.session, cert_data=pems[0], key_data=pems[1], limit_concurrency=1) as srv,
        H3Client(h3port(srv), webtransport=True) as client,
    ):
        held = WTClient(client, "/echo")
        assert held.wait_head().status == 200
        refused = client.get("/")
        assert refused.status == 503
        assert refused.header(b"date") and refused.header(b"server")
        second = WTClient(client, "/echo")
        assert client.wait_response(second.session_id).status == 503
        held.close()
        held.wait_closed()
        deadline = time.monotonic() + TIMEOUT
        while client.get("/").status == 503:
            assert time.monotonic() < deadline, "the session's slot was never freed"


def test_sessions_per_connection_are_bounded(pems: tuple[bytes, bytes]) -> None:
    with (
        serve(
            wtapps.session, cert_data=pems[0], key_data=pems[1], webtransport_max_sessions=1
        ) as srv,
        H3Client(h3port(srv), webtransport=True) as client,
    ):
        first = WTClient(client, "/echo")
        assert first.wait_head().status == 200
        second = WTClient(client, "/echo")
        assert client.wait_response(second.session_id).status == 429


def test_streams_per_session_are_bounded(pems: tuple[bytes, bytes]) -> None:
    with (
        serve(
            wtapps.session, cert_data=pems[0], key_data=pems[1], webtransport_max_streams=2
        ) as srv,
        H3Client(h3port(srv), webtransport=True) as client,
    ):
        session = WTClient(client, "/still")
        assert session.wait_head().status == 200
        streams = [session.open_stream() for _ in range(3)]
        for stream_id in streams:
            session.send(stream_id, b"x")
        client.run_until(lambda: streams[2] in session.reset_codes(), what="the third's reset")
        codes = session.reset_codes()
        assert codes[streams[2]] == 0x3994BD84  # WT_BUFFERED_STREAM_REJECTED
        assert streams[0] not in codes and streams[1] not in codes
        wtapps.RELEASE.set()  # the app (which reads nothing) may end: the server can stop


def test_an_app_that_does_not_read_holds_bounded_data(server: ThreadServer) -> None:
    """Stream bytes are credited as the app reads; extra datagrams are dropped."""
    with H3Client(h3port(server), webtransport=True) as client:
        session = WTClient(client, "/still")
        assert session.wait_head().status == 200
        assert wtapps.event("still") == "accepted"
        stream_id = session.open_stream()
        for _ in range(40):
            session.send(stream_id, b"y" * 100_000)
        for index in range(300):
            session.send_datagram(b"d%d" % index)
        client.run_for(1.0)
        bridge = _server_session(server)
        queued = [m for m in bridge.session._queue if m["type"] == "webtransport.stream.receive"]
        held = sum(len(m["data"]) for m in queued)
        # At most one stream window (1 MiB) ahead of an app that reads nothing.
        assert 0 < held <= STREAM_WINDOW + 65536
        datagrams = [
            m for m in bridge.session._queue if m["type"] == "webtransport.datagram.receive"
        ]
        assert len(datagrams) == 64
        assert bridge.session.dropped > 0


def test_a_peer_that_does_not_read_is_cut_after_timeout_write(
    pems: tuple[bytes, bytes],
) -> None:
    with serve(wtapps.session, cert_data=pems[0], key_data=pems[1], timeout_write=1) as srv:
        client = H3Client(h3port(srv), webtransport=True, max_stream_data=65536)
        with client:
            session = WTClient(client, "/flood")
            assert session.wait_head().status == 200
            client.run_for(0.2)
            # The client stops reading (its loop does not run) for longer than --timeout-write.
            assert wtapps.event("flood-ended", timeout=10) == "ClientDisconnected"
        assert client.get  # the server goes on: a new connection is served
        with H3Client(h3port(srv)) as other:
            assert other.get("/").status == 200


def test_graceful_shutdown_closes_the_session(pems: tuple[bytes, bytes]) -> None:
    srv = ThreadServer(wtapps.session, cert_data=pems[0], key_data=pems[1]).start()
    try:
        with H3Client(h3port(srv), webtransport=True) as client:
            session = WTClient(client, "/echo")
            assert session.wait_head().status == 200
            stream_id = session.open_stream()
            session.send(stream_id, b"open")
            assert session.wait_stream(stream_id, size=4, ended=False) == b"open"
            started = time.monotonic()
            stopper = threading.Thread(target=srv.stop)
            stopper.start()
            closed = session.wait_closed()
            assert closed is not None and closed.reason == "server shutting down"
            assert wtapps.event("disconnect") == ("/echo", 0, "server shutting down")
            # (The client keeps acknowledging, as a real one does, until the server is gone.)
            with contextlib.suppress(ConnectionError):
                client.run_until(lambda: not stopper.is_alive(), what="the server's stop")
            stopper.join(TIMEOUT)
            assert not stopper.is_alive()
            assert time.monotonic() - started < 5
    finally:
        if srv.thread.is_alive():
            srv.stop()


def test_one_access_line_per_session(pems: tuple[bytes, bytes]) -> None:
    lines = AccessLines()
    logger = logging.getLogger("asgiri.access")
    logger.addHandler(lines)
    try:
        with (
            serve(
                wtapps.session,
                cert_data=pems[0],
                key_data=pems[1],
                access_log=True,
                log_level="info",
            ) as srv,
            H3Client(h3port(srv), webtransport=True) as client,
        ):
            session = WTClient(client, "/echo?room=1")
            assert session.wait_head().status == 200
            session.close()
            session.wait_closed()
            line = lines.wait_for("/echo?room=1")
            assert '"CONNECT /echo?room=1 HTTP/3" 200' in line, line
            client.get("/after")
            lines.wait_for("/after")
            assert len(lines.matching("/echo?room=1")) == 1
    finally:
        logger.removeHandler(lines)


def test_a_session_counts_for_limit_max_requests(pems: tuple[bytes, bytes]) -> None:
    srv = ThreadServer(
        wtapps.session, cert_data=pems[0], key_data=pems[1], limit_max_requests=2
    ).start()
    try:
        with H3Client(h3port(srv), webtransport=True) as client:
            assert client.get("/").status == 200
            session = WTClient(client, "/echo")
            assert session.wait_head().status == 200
            # The session was the second request: the server stops, closing it.
            closed = session.wait_closed()
            assert closed is not None and closed.reason == "server shutting down"
            with contextlib.suppress(ConnectionError):
                client.run_until(lambda: not srv.thread.is_alive(), what="the server's stop")
        srv.thread.join(TIMEOUT)
        assert not srv.thread.is_alive(), "the session was not counted as a request"
    finally:
        if srv.thread.is_alive():
            srv.stop()


def test_a_session_ends_with_its_connection(server: ThreadServer) -> None:
    client = H3Client(h3port(server), webtransport=True)
    with client:
        session = WTClient(client, "/echo")
        assert session.wait_head().status == 200
        stream_id = session.open_stream()
        session.send(stream_id, b"here")
        assert session.wait_stream(stream_id, size=4, ended=False) == b"here"
    # The client's connection is gone (CONNECTION_CLOSE): so is the session.
    path, code, _ = wtapps.event("disconnect")
    assert path == "/echo" and code == 0
    ctx = server.server._ctx
    assert ctx is not None
    deadline = time.monotonic() + TIMEOUT
    while any(
        isinstance(t, WTBridge)
        for c in list(ctx.connections)
        for t in getattr(c, "tunnels", {}).values()
    ):
        assert time.monotonic() < deadline, "a session outlived its connection"
        time.sleep(0.01)


def test_ended_sessions_leave_no_cycles(pems: tuple[bytes, bytes]) -> None:
    """An ended session and its connection are freed at once (tests/contract/test_garbage.py)."""
    with serve(wtapps.session, cert_data=pems[0], key_data=pems[1]) as srv:

        def work() -> None:
            with H3Client(h3port(srv), webtransport=True) as client:
                session = WTClient(client, "/echo")
                assert session.wait_head().status == 200
                stream_id = session.open_stream()
                session.send(stream_id, b"x" * 10_000, end=True)
                assert session.wait_stream(stream_id) == b"x" * 10_000
                session.close(42, "bye")
                session.wait_closed()
            # A session whose connection simply goes away.
            with H3Client(h3port(srv), webtransport=True) as client:
                session = WTClient(client, "/echo")
                assert session.wait_head().status == 200

        # The test's client parses capsules with asgiri's parser; the server's
        # own objects (its bridge, session, connection) must not be there.
        client = ("asgiri.protocol.webtransport.CapsuleParser",)
        assert cyclic_garbage(srv, work, client=client) == []
