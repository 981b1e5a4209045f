"""Both HTTP/2 codecs fed bytes directly, sans I/O: what the frame screen must get
right however the bytes are split, and what a long-lived connection holds.

Every case runs on ``nghttp2`` and ``h2``
(:mod:`asgiri.protocol.h2_nghttp2`, :mod:`asgiri.protocol.h2`); the rest of the
HTTP/2 suites run against a real server on the codec ``ASGIRI_H2_CODEC`` names.
"""

from __future__ import annotations

import tracemalloc
from collections.abc import Iterable
from typing import Any

import hpack
import pytest
from hyperframe.frame import (
    DataFrame,
    Frame,
    GoAwayFrame,
    HeadersFrame,
    PriorityFrame,
    RstStreamFrame,
    SettingsFrame,
    WindowUpdateFrame,
)

from asgiri.protocol.events import EndBody, Request, StreamClosed
from asgiri.protocol.h2_codecs import codec_factory
from asgiri.protocol.h2_common import PREFACE, ConnectionEnded, H2Codec, H2Limits
from tests.support.h2_raw import parse_frames

PROTOCOL_ERROR = 0x1
FLOW_CONTROL_ERROR = 0x3
STREAM_CLOSED = 0x5
ENHANCE_YOUR_CALM = 0xB
LIMITS = H2Limits()
MAX_WINDOW = 2**31 - 1

CODECS = ["nghttp2", "h2"]
GET = [(b":method", b"GET"), (b":scheme", b"http"), (b":path", b"/"), (b":authority", b"t")]


class Peer:
    """A client: writes frames to a codec in chunks of ``chunk`` bytes, reads its frames."""

    def __init__(self, codec: str, chunk: int | None = None) -> None:
        self.conn: H2Codec = codec_factory(codec)(H2Limits())
        self.conn.initiate()
        self.chunk = chunk
        self.encoder = hpack.Encoder()
        self.events: list[Any] = []
        self.frames: list[Frame] = []
        self.send(PREFACE, SettingsFrame(0), SettingsFrame(0, flags=["ACK"]))

    def send(self, *items: Frame | bytes) -> None:
        data = b"".join(i if isinstance(i, bytes) else i.serialize() for i in items)
        step = self.chunk or len(data)
        for at in range(0, len(data), step):
            self.events += self.conn.receive_data(data[at : at + step])
        self.frames += parse_frames(self.conn.data_to_send())

    def block(self, fields: Iterable[tuple[bytes, bytes]] = GET) -> bytes:
        return bytes(self.encoder.encode(list(fields)))

    def answer(self, stream_id: int) -> Frame:
        """The GOAWAY, or the RST_STREAM of ``stream_id``, that the codec sent."""
        for frame in self.frames:
            if isinstance(frame, GoAwayFrame) or (
                isinstance(frame, RstStreamFrame) and frame.stream_id == stream_id
            ):
                return frame
        raise AssertionError(f"no answer for stream {stream_id}: {self.frames}")


@pytest.mark.parametrize("codec", CODECS)
@pytest.mark.parametrize("chunk", [None, 1, 7])
def test_a_request_arrives_however_it_is_split(codec: str, chunk: int | None) -> None:
    """HEADERS with padding and a priority field (what the screen peeks into), then a body."""
    peer = Peer(codec, chunk)
    post = [(b":method", b"POST"), *GET[1:]]
    peer.send(
        HeadersFrame(
            1,
            peer.block(post),
            flags=["END_HEADERS", "PADDED", "PRIORITY"],
            pad_length=5,
            depends_on=0,
            stream_weight=16,
        ),
        DataFrame(1, b"body", flags=["END_STREAM"]),
    )
    requests = [e for e in peer.events if isinstance(e, Request)]
    assert [(r.stream_id, r.method) for r in requests] == [(1, "POST")]
    assert any(isinstance(e, EndBody) and e.stream_id == 1 for e in peer.events)
    assert not any(isinstance(e, ConnectionEnded) for e in peer.events)
    assert not peer.conn.closed


@pytest.mark.parametrize("codec", CODECS)
@pytest.mark.parametrize("chunk", [None, 1, 3])
def test_a_stream_depending_on_itself_however_it_is_split(codec: str, chunk: int | None) -> None:
    """RFC 9113 5.3.1: PROTOCOL_ERROR (a stream error h2 answers itself, a
    connection error from the nghttp2 codec's screen, which nghttp2 lacks)."""
    peer = Peer(codec, chunk)
    peer.send(PriorityFrame(1, depends_on=1, stream_weight=16))
    answer = peer.answer(1)
    assert isinstance(answer, (GoAwayFrame, RstStreamFrame))
    assert answer.error_code == PROTOCOL_ERROR


def _window_update(stream_id: int, increment: int) -> WindowUpdateFrame:
    return WindowUpdateFrame(stream_id, window_increment=increment)


@pytest.mark.parametrize("codec", CODECS)
@pytest.mark.parametrize(
    "reads",
    [
        # h2spec 6.9.1/3: two increments of 2^31-1 with the request, in one read.
        [[MAX_WINDOW, MAX_WINDOW]],
        # The window filled exactly to 2^31-1 (allowed), then one more octet.
        [[MAX_WINDOW - 65535, 1]],
        [[MAX_WINDOW - 65535], [1]],
        # Two increments that fit alone but not together.
        [[2**30, 2**30]],
    ],
    ids=["h2spec", "one-read", "two-reads", "together"],
)
def test_a_stream_window_overflow_resets_only_that_stream(
    codec: str, reads: list[list[int]]
) -> None:
    """RFC 9113 6.9.1: a WINDOW_UPDATE taking a stream's send window past 2^31-1
    is RST_STREAM FLOW_CONTROL_ERROR; the connection goes on serving."""
    peer = Peer(codec)
    headers = HeadersFrame(1, peer.block([(b":method", b"POST"), *GET[1:]]), flags=["END_HEADERS"])
    for n, increments in enumerate(reads):
        frames = [_window_update(1, increment) for increment in increments]
        peer.send(*([headers] if n == 0 else []), *frames)
        if n < len(reads) - 1:
            assert not [f for f in peer.frames if isinstance(f, RstStreamFrame)], "reset too soon"
    answer = peer.answer(1)
    assert isinstance(answer, RstStreamFrame), peer.frames
    assert answer.error_code == FLOW_CONTROL_ERROR
    closed = [e for e in peer.events if isinstance(e, StreamClosed)]
    assert [(e.stream_id, e.error_code) for e in closed] == [(1, FLOW_CONTROL_ERROR)]
    peer.send(HeadersFrame(3, peer.block(), flags=["END_HEADERS", "END_STREAM"]))
    assert [e.stream_id for e in peer.events if isinstance(e, Request)] == [1, 3]
    assert not peer.conn.closed
    assert not any(isinstance(f, GoAwayFrame) for f in peer.frames)


@pytest.mark.parametrize("codec", CODECS)
def test_stream_window_overflows_free_their_streams_and_count_as_resets(codec: str) -> None:
    """Each overflowing stream is closed where its WINDOW_UPDATE is read, so a
    read that opens more streams than SETTINGS_MAX_CONCURRENT_STREAMS, each
    overflowed at once, is no concurrency error; and each reset counts
    against the client's reset budget ("made you reset"), which ends the
    connection with ENHANCE_YOUR_CALM."""
    peer = Peer(codec)
    overflow = _window_update(1, MAX_WINDOW).serialize()

    def burst(first: int, count: int) -> bytes:
        out = b""
        for sid in range(first, first + 2 * count, 2):
            head = HeadersFrame(sid, peer.block(), flags=["END_HEADERS", "END_STREAM"])
            out += head.serialize() + (overflow[:5] + sid.to_bytes(4, "big") + overflow[9:]) * 2
        return out

    streams = LIMITS.max_concurrent_streams + 50
    peer.send(burst(1, streams))
    resets = [f for f in peer.frames if isinstance(f, RstStreamFrame)]
    assert len(resets) == streams, peer.frames[-3:]
    assert {f.error_code for f in resets} == {FLOW_CONTROL_ERROR}
    assert not any(isinstance(f, GoAwayFrame) for f in peer.frames)
    peer.send(burst(2 * streams + 1, LIMITS.max_resets))
    goaway = peer.frames[-1]
    assert isinstance(goaway, GoAwayFrame), peer.frames[-3:]
    assert goaway.error_code == ENHANCE_YOUR_CALM


@pytest.mark.parametrize("codec", CODECS)
def test_a_stream_window_filled_to_the_limit_is_no_error(codec: str) -> None:
    peer = Peer(codec)
    peer.send(
        HeadersFrame(1, peer.block([(b":method", b"POST"), *GET[1:]]), flags=["END_HEADERS"]),
        _window_update(1, 2**30),
        _window_update(1, 2**30 - 65535 - 1),  # 65535 + both = 2^31-1
    )
    peer.send(HeadersFrame(3, peer.block(), flags=["END_HEADERS", "END_STREAM"]))
    assert [e.stream_id for e in peer.events if isinstance(e, Request)] == [1, 3]
    assert not any(isinstance(f, (RstStreamFrame, GoAwayFrame)) for f in peer.frames)
    assert not any(isinstance(e, StreamClosed) for e in peer.events)


@pytest.mark.parametrize("codec", CODECS)
@pytest.mark.parametrize("chunk", [None, 1])
def test_data_after_end_stream_is_stream_closed(codec: str, chunk: int | None) -> None:
    """RFC 9113 5.1: after the client's END_STREAM, DATA is a connection error."""
    peer = Peer(codec, chunk)
    peer.send(HeadersFrame(1, peer.block(), flags=["END_HEADERS", "END_STREAM"]))
    assert [e.stream_id for e in peer.events if isinstance(e, Request)] == [1]
    peer.conn.send_headers(1, 200, [], True)
    peer.send(DataFrame(1, b"late"))
    answer = peer.answer(1)
    assert isinstance(answer, GoAwayFrame)
    assert answer.error_code == STREAM_CLOSED


#: Requests on the connection (about 400 KiB of growth at 100 bytes each),
#: and what its state may grow by meanwhile.
REQUESTS = 4_000
GROWTH = 64 * 1024


@pytest.mark.parametrize("codec", CODECS)
def test_state_stays_bounded_over_thousands_of_requests(codec: str) -> None:
    """A long-lived connection does not keep something per finished stream.

    (The h2 library remembered every closed stream, up to 65,536: 1 MiB per
    10,000 requests.  Python allocations only: libnghttp2's own are freed
    with each stream.)
    """
    peer = Peer(codec)
    block = peer.block()
    tracemalloc.start(8)
    try:
        before: tracemalloc.Snapshot | None = None
        for first in range(1, 2 * REQUESTS, 32):
            ids = range(first, first + 32, 2)
            peer.events.clear()
            peer.frames.clear()
            peer.send(
                *(HeadersFrame(sid, block, flags=["END_HEADERS", "END_STREAM"]) for sid in ids)
            )
            for sid in ids:
                peer.conn.send_headers(sid, 200, [(b"content-length", b"2")], False)
                peer.conn.send_data(sid, b"ok", True)
                peer.conn.forget(sid)
            peer.conn.data_to_send()
            if first == 1 + 32 * 10:
                before = tracemalloc.take_snapshot()
        after = tracemalloc.take_snapshot()
    finally:
        tracemalloc.stop()
    assert before is not None
    # What the codec allocated: the client side of the test is left out.
    codec_code = [
        tracemalloc.Filter(True, f"*/{package}/*", all_frames=True)
        for package in ("asgiri/protocol", "h2", "hpack", "hyperframe", "ngh2")
    ]
    growth = sum(
        stat.size_diff
        for stat in after.filter_traces(codec_code).compare_to(
            before.filter_traces(codec_code), "filename"
        )
    )
    assert not peer.conn.closed
    assert growth < GROWTH, f"the connection grew by {growth // 1024} KiB"
