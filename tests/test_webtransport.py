"""WebTransport over HTTP/3 with aioquic as the client: session mode, per-stream mode, limits."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from . import wtapps
from .h3_client import H3Client
from .servers import ThreadServer, serve
from .test_h3 import h3port, pems  # noqa: F401  (the shared certificate fixture)
from .wt_client import WTClient


@pytest.fixture(scope="module")
def server(pems: tuple[bytes, bytes]) -> Iterator[ThreadServer]:  # noqa: F811
    with serve(wtapps.session, cert_data=pems[0], key_data=pems[1]) as srv:
        yield srv


@pytest.fixture(autouse=True)
def _clear() -> None:
    wtapps.clear()


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
        assert wtapps.event("disconnect") == (4711, "enough for today")


def test_client_closes_with_a_code_and_reason(server: ThreadServer) -> None:
    with H3Client(h3port(server), webtransport=True) as client:
        session = WTClient(client, "/echo")
        assert session.wait_head().status == 200
        session.close(42, "bye")
        assert wtapps.event("disconnect") == (42, "bye")
        session.wait_closed()


def test_per_stream_mode_for_an_app_that_ignores_sessions(pems: tuple[bytes, bytes]) -> None:  # noqa: F811
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
