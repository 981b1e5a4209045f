"""The lifecycle rules of the sans-I/O connections, fed bytes without a network.

Request-head checks (shared by HTTP/2 and HTTP/3), request-body limits,
refusing new streams while draining and ``stop_reading`` never discarding a
queued response: each is a rule of ``protocol/`` that every transport relies
on, tested here on the connection objects themselves.  HTTP/2 is driven by
the h2 library as the client; HTTP/3 by aioquic's client, with the datagrams
handed between the two connections in memory.
"""

from __future__ import annotations

import ssl
from collections.abc import Iterator
from typing import Any

import h2.config
import h2.connection
import h2.errors
import h2.events
import pytest
from aioquic.h3.connection import ErrorCode
from aioquic.h3.connection import H3Connection as ClientH3
from aioquic.h3.events import DataReceived, HeadersReceived
from aioquic.quic.configuration import QuicConfiguration
from aioquic.quic.connection import QuicConnection
from aioquic.quic.events import StreamReset

from asgiri.config import Config
from asgiri.protocol.aioquic_internals import ServerQuicConnection
from asgiri.protocol.events import Body, EndBody, Request, RequestRejected, StreamClosed
from asgiri.protocol.fields import MalformedRequest, check_header_block
from asgiri.protocol.h2_codecs import codec_factory
from asgiri.protocol.h2_common import H2Codec, H2Limits
from asgiri.protocol.h3 import H3Connection
from asgiri.server.h3 import quic_configuration
from asgiri.ssl_utils import generate_self_signed_cert

GET = [(b":method", b"GET"), (b":scheme", b"https"), (b":path", b"/")]


# ----------------------------------------------------------------------------- fields


@pytest.mark.parametrize(
    "extra",
    [
        [(b":authority", b"a.example"), (b"host", b"b.example")],
        [(b":authority", b"a.example"), (b"content-length", b"+5")],
        [(b":authority", b"a.example"), (b"content-length", b" 5")],
        [(b":authority", b"a.example"), (b"content-length", b"5 5")],
        [(b":authority", b"a.example"), (b"content-length", b"0x5")],
        [(b":authority", b"a.example"), (b"content-length", b"")],
        [(b":authority", b"a.example"), (b"content-length", b"5"), (b"content-length", b"6")],
        [(b":authority", b"a.example"), (b"Upper", b"x")],
        [(b":authority", b"a.example"), (b"x", b"a\r\nb")],
        [(b":authority", b"a.example"), (b"connection", b"close")],
    ],
)
def test_malformed_request_heads_are_refused(extra: list[tuple[bytes, bytes]]) -> None:
    with pytest.raises(MalformedRequest):
        check_header_block([*GET[:2], *extra[:1], GET[2], *extra[1:]], False)


def test_a_valid_head_notes_its_content_length() -> None:
    head = check_header_block(
        [
            *GET,
            (b":authority", b"a.example"),
            (b"host", b"a.example"),
            (b"content-length", b"12"),
            (b"content-length", b"12"),
        ],
        False,
    )
    assert head.content_length == 12
    assert head.has_host and head.authority == b"a.example"


# ----------------------------------------------------------------------------- HTTP/2


@pytest.fixture(params=["nghttp2", "h2"])
def codec(request: pytest.FixtureRequest) -> str:
    """Each HTTP/2 test runs on both codecs."""
    name: str = request.param
    return name


class H2Pair:
    """An asgiri HTTP/2 codec and an h2 client, bytes passed by hand."""

    def __init__(self, limits: H2Limits, codec: str) -> None:
        self.server: H2Codec = codec_factory(codec)(limits)
        self.server.initiate()
        self.client = h2.connection.H2Connection(
            h2.config.H2Configuration(client_side=True, header_encoding=None)
        )
        self.client.initiate_connection()
        self.client_events: list[Any] = []
        self.pump()

    def pump(self) -> list[Any]:
        """Move bytes both ways until quiet; returns the server's events."""
        events: list[Any] = []
        while True:
            out = self.client.data_to_send()
            if out:
                events += self.server.receive_data(out)
            back = self.server.data_to_send()
            if back:
                self.client_events += self.client.receive_data(back)
            if not out and not back:
                return events

    def request(self, headers: list[tuple[bytes, bytes]], end: bool) -> int:
        stream_id: int = self.client.get_next_available_stream_id()
        self.client.send_headers(stream_id, headers, end_stream=end)
        return stream_id


def _post(length: bytes | None) -> list[tuple[bytes, bytes]]:
    headers = [
        (b":method", b"POST"),
        (b":scheme", b"http"),
        (b":authority", b"a.example"),
        (b":path", b"/up"),
    ]
    if length is not None:
        headers.append((b"content-length", length))
    return headers


def test_h2_declared_body_over_the_limit_is_rejected_before_it_is_read(codec: str) -> None:
    pair = H2Pair(H2Limits(max_body=1000), codec)
    stream_id = pair.request(_post(b"200000"), end=False)
    events = pair.pump()
    assert [type(e) for e in events] == [RequestRejected]
    rejected = events[0]
    assert (rejected.stream_id, rejected.status) == (stream_id, 413)
    assert rejected.request is not None and rejected.request.raw_path == b"/up"
    # Body sent anyway is never handed on, and its credit comes back.
    pair.client.send_data(stream_id, b"x" * 5000)
    assert not [e for e in pair.pump() if isinstance(e, Body)]
    assert pair.client.outbound_flow_control_window > 60000


def test_h2_body_of_unknown_length_is_rejected_once_it_grows_past_the_limit(codec: str) -> None:
    pair = H2Pair(H2Limits(max_body=1000), codec)
    stream_id = pair.request(_post(None), end=False)
    assert [type(e) for e in pair.pump()] == [Request]
    pair.client.send_data(stream_id, b"x" * 800)
    assert [type(e) for e in pair.pump()] == [Body]
    pair.client.send_data(stream_id, b"x" * 800)
    events = pair.pump()
    assert [(type(e), e.stream_id) for e in events] == [(RequestRejected, stream_id)]
    assert events[0].status == 413
    # Nothing more of that stream is handed on.
    pair.client.send_data(stream_id, b"x" * 800, end_stream=True)
    assert pair.pump() == []


def test_h2_refusing_new_streams_sends_no_goaway(codec: str) -> None:
    pair = H2Pair(H2Limits(), codec)
    first = pair.request(_post(b"0"), end=True)
    assert [type(e) for e in pair.pump()] == [Request, EndBody]
    pair.server.refuse_new_streams()
    second = pair.request(_post(b"0"), end=True)
    assert pair.pump() == []
    resets = [e for e in pair.client_events if isinstance(e, h2.events.StreamReset)]
    assert [(r.stream_id, r.error_code) for r in resets] == [
        (second, h2.errors.ErrorCodes.REFUSED_STREAM)
    ]
    assert not [e for e in pair.client_events if isinstance(e, h2.events.ConnectionTerminated)]
    # The stream accepted before still gets its answer.
    assert pair.server.send_headers(first, 200, [], True)
    pair.pump()
    assert any(
        isinstance(e, h2.events.StreamEnded) and e.stream_id == first for e in pair.client_events
    )


def test_h2_stop_reading_waits_for_the_queued_response(codec: str) -> None:
    """RST_STREAM drops queued DATA: it goes only once the response has left."""
    pair = H2Pair(H2Limits(), codec)
    stream_id = pair.request(_post(None), end=False)
    pair.pump()
    body = b"y" * 100_000  # more than the client's 65,535-byte window
    assert pair.server.send_headers(stream_id, 200, [], False)
    assert pair.server.send_data(stream_id, body, True)
    pair.server.stop_reading(stream_id, h2.errors.ErrorCodes.NO_ERROR)
    pair.pump()
    assert not [e for e in pair.client_events if isinstance(e, h2.events.StreamReset)]
    received = sum(len(e.data) for e in pair.client_events if isinstance(e, h2.events.DataReceived))
    pair.client.increment_flow_control_window(100_000)
    pair.client.increment_flow_control_window(100_000, stream_id)
    pair.pump()
    received = sum(len(e.data) for e in pair.client_events if isinstance(e, h2.events.DataReceived))
    assert received == len(body)
    kinds = [type(e) for e in pair.client_events if getattr(e, "stream_id", None) == stream_id]
    assert kinds.index(h2.events.StreamEnded) < kinds.index(h2.events.StreamReset)


# ----------------------------------------------------------------------------- HTTP/3


@pytest.fixture(scope="module")
def quic_server_configuration() -> QuicConfiguration:
    cert, key = generate_self_signed_cert("localhost", key_type="ec")
    return quic_configuration(Config.from_options("tests.apps:hello", cert_data=cert, key_data=key))


class H3Pair:
    """An asgiri H3Connection and an aioquic HTTP/3 client, datagrams passed in memory."""

    ADDR = ("127.0.0.1", 4433)

    def __init__(self, configuration: QuicConfiguration, max_body: int | None = None) -> None:
        client_configuration = QuicConfiguration(
            is_client=True, alpn_protocols=["h3"], verify_mode=ssl.CERT_NONE
        )
        self.client_quic = QuicConnection(configuration=client_configuration)
        self.now = 1.0
        self.client_quic.connect(self.ADDR, now=self.now)
        self.client = ClientH3(self.client_quic)
        first = self.client_quic.datagrams_to_send(now=self.now)
        self.server = H3Connection(
            ServerQuicConnection(
                configuration=configuration,
                max_streams=100,
                original_destination_connection_id=self.client_quic.original_destination_connection_id,
            ),
            max_body=max_body,
        )
        self.client_events: list[Any] = []
        self.server_events: list[Any] = []
        for data, _ in first:
            self.server_events += self.server.receive_datagram(data, self.ADDR, self.now)
        self.pump()
        assert self.server.handshake_complete

    def pump(self) -> list[Any]:
        """Move datagrams both ways until quiet; returns the server's new events."""
        events: list[Any] = []
        for _ in range(50):
            moved = False
            self.now += 0.001
            for data, _ in self.client_quic.datagrams_to_send(now=self.now):
                moved = True
                events += self.server.receive_datagram(data, self.ADDR, self.now)
            for data, _ in self.server.datagrams_to_send(self.now):
                moved = True
                self.client_quic.receive_datagram(data, self.ADDR, now=self.now)
            while (event := self.client_quic.next_event()) is not None:
                self.client_events.append(event)
                self.client_events += self.client.handle_event(event)
            if not moved:
                break
        self.server_events += events
        return events

    def request(
        self, headers: list[tuple[bytes, bytes]], body: bytes | None = None, end: bool = True
    ) -> int:
        """Send a request; with ``end=False`` the stream stays open after it."""
        stream_id: int = self.client_quic.get_next_available_stream_id()
        self.client.send_headers(stream_id, headers, end_stream=body is None and end)
        if body is not None:
            self.client.send_data(stream_id, body, end_stream=end)
        return stream_id

    def reset_code(self, stream_id: int) -> int | None:
        for event in self.client_events:
            if isinstance(event, StreamReset) and event.stream_id == stream_id:
                return int(event.error_code)
        return None


def _h3_head(*extra: tuple[bytes, bytes], method: bytes = b"POST") -> list[tuple[bytes, bytes]]:
    return [
        (b":method", method),
        (b":scheme", b"https"),
        (b":authority", b"a.example"),
        (b":path", b"/up"),
        *extra,
    ]


@pytest.fixture
def h3pair(quic_server_configuration: QuicConfiguration) -> Iterator[H3Pair]:
    yield H3Pair(quic_server_configuration, max_body=1000)


def test_h3_a_body_of_many_packets_arrives_whole_and_its_stream_is_forgotten(
    quic_server_configuration: QuicConfiguration,
) -> None:
    """The data of a request stream the HTTP/3 layer knows takes _ServerH3's own
    path (one packet at a time, as an upload does), and a stream answered before
    its body ended is dropped from that layer when the body ends, as aioquic's
    own path drops it."""
    pair = H3Pair(quic_server_configuration)
    body = bytes(range(256)) * 400  # ~80 packets
    stream_id = pair.request(_h3_head(), body[:1000], end=False)
    pair.pump()
    assert pair.server.send_headers(stream_id, 204, [], True)  # answered early
    pair.pump()
    h3 = pair.server._h3
    assert h3 is not None and stream_id in h3._stream  # the client's side is still open
    pair.client.send_data(stream_id, body[1000:], end_stream=False)
    pair.client.send_headers(stream_id, [(b"x-sum", b"1")], end_stream=True)
    pair.pump()
    events = pair.server_events
    assert b"".join(e.data for e in events if isinstance(e, Body)) == body
    assert len([e for e in events if isinstance(e, Body)]) > 50
    ends = [e for e in events if isinstance(e, EndBody)]
    assert [(e.stream_id, e.trailers) for e in ends] == [(stream_id, [(b"x-sum", b"1")])]
    assert stream_id not in h3._stream


@pytest.mark.parametrize(
    ("extra", "body"),
    [
        ((b"host", b"b.example"), b"12345"),
        ((b"content-length", b"+5"), b"12345"),
        # int() reads "1_0" as 10; a body of another length would have aioquic
        # close the whole connection over the mismatch first.
        ((b"content-length", b"1_0"), b"0123456789"),
    ],
)
def test_h3_malformed_head_resets_the_stream(
    h3pair: H3Pair, extra: tuple[bytes, bytes], body: bytes
) -> None:
    stream_id = h3pair.request(_h3_head(extra), body)
    events = h3pair.pump()
    assert not [e for e in events if isinstance(e, Request)]
    assert h3pair.reset_code(stream_id) == ErrorCode.H3_MESSAGE_ERROR
    # Only that stream: the connection serves the next request.
    good = h3pair.request(_h3_head(method=b"GET"))
    assert [type(e) for e in h3pair.pump()] == [Request, EndBody]
    assert h3pair.reset_code(good) is None


def test_h3_body_longer_than_its_content_length_is_malformed(h3pair: H3Pair) -> None:
    """Refused as soon as it passes the length, before the app is handed the excess."""
    stream_id = h3pair.request(_h3_head((b"content-length", b"3")), b"12345", end=False)
    events = h3pair.pump()
    assert [type(e) for e in events] == [Request, StreamClosed]
    assert events[-1].error_code == ErrorCode.H3_MESSAGE_ERROR
    assert h3pair.reset_code(stream_id) == ErrorCode.H3_MESSAGE_ERROR


def test_h3_declared_body_over_the_limit_is_rejected(h3pair: H3Pair) -> None:
    stream_id = h3pair.request(_h3_head((b"content-length", b"200000")), end=False)
    events = h3pair.pump()
    assert [(type(e), e.stream_id, e.status) for e in events] == [(RequestRejected, stream_id, 413)]


def test_h3_body_of_unknown_length_is_rejected_once_it_grows_past_the_limit(
    h3pair: H3Pair,
) -> None:
    stream_id = h3pair.request(_h3_head(), b"x" * 5000)
    events = h3pair.pump()
    assert [type(e) for e in events][:1] == [Request]
    rejected = [e for e in events if isinstance(e, RequestRejected)]
    assert [(e.stream_id, e.status) for e in rejected] == [(stream_id, 413)]
    handed_on = sum(len(e.data) for e in events if isinstance(e, Body))
    assert handed_on <= 1000
    assert not [e for e in events if isinstance(e, EndBody)]


def test_h3_answers_and_stop_reading_reach_the_client(h3pair: H3Pair) -> None:
    """STOP_SENDING leaves the response alone (unlike a reset)."""
    stream_id = h3pair.request(_h3_head((b"content-length", b"200000")), end=False)
    h3pair.pump()
    conn = h3pair.server
    assert conn.send_headers(stream_id, 413, [(b"content-length", b"4")], False)
    assert conn.send_data(stream_id, b"nope", True)
    conn.stop_reading(stream_id, ErrorCode.H3_NO_ERROR)
    h3pair.pump()
    heads = [e for e in h3pair.client_events if isinstance(e, HeadersReceived)]
    assert heads and dict(heads[0].headers)[b":status"] == b"413"
    data = b"".join(
        e.data
        for e in h3pair.client_events
        if isinstance(e, DataReceived) and e.stream_id == stream_id
    )
    assert data == b"nope"
