"""HTTP/2 attack classes, on both codecs (``--h2-codec nghttp2`` and ``h2``).

The attacks are hand-built frames (:class:`~tests.test_h2_attacks.RawConn`);
the bystander is a well-behaved h2 client on its own connection.  The app is
``tests.apps.h2attack:app``, whose ``/hang`` requests run until cancelled and
``/hanging`` tells how many still run: a stream the server gave up on (reset
by the client, or by the server itself) must not leave its app running.
The answers are in docs/security.md.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager

import pytest
from hyperframe.frame import (
    ContinuationFrame,
    DataFrame,
    Frame,
    GoAwayFrame,
    HeadersFrame,
    PingFrame,
    PriorityFrame,
    RstStreamFrame,
    SettingsFrame,
    WindowUpdateFrame,
)

from tests.support.h2_raw import (
    CANCEL,
    COMPRESSION_ERROR,
    END_HEADERS,
    END_STREAM,
    ENHANCE_YOUR_CALM,
    LIMITS,
    PROTOCOL_ERROR,
    RawConn,
    get,
    hpack_bomb,
    request,
    request_block,
)
from tests.support.meter import ProcessMeter
from tests.support.servers import CLIServer

from .harness import CPU_BOUND, MIB, RSS_BOUND, port_of, under_attack

pytestmark = pytest.mark.timeout(60)

APP = "tests.apps.h2attack:app"
FLOW_CONTROL_ERROR = 0x3
STREAM_CLOSED = 0x5
FRAME_SIZE_ERROR = 0x6


@pytest.fixture(scope="module", params=["nghttp2", "h2"])
def server(request: pytest.FixtureRequest) -> Iterator[CLIServer]:
    # --timeout-write 1: a stream whose window stays shut is given up quickly.
    srv = CLIServer(
        APP,
        "--port",
        "0",
        "--no-access-log",
        "--timeout-graceful-shutdown",
        "1",
        "--timeout-write",
        "1",
        "--h2-codec",
        request.param,
    ).wait_ready()
    try:
        for _ in range(3):
            probe(port_of(srv))  # warm-up: first allocations are not growth
        yield srv
    finally:
        srv.stop()


def probe(port: int) -> None:
    assert get(port) == (200, b"ok")


def attack(
    server: CLIServer, cpu: float = CPU_BOUND, rss: int = RSS_BOUND
) -> AbstractContextManager[ProcessMeter]:
    port = port_of(server)
    return under_attack(server, lambda: probe(port), cpu=cpu, rss=rss)


def assert_no_app_left(port: int) -> None:
    """No ``/hang`` app runs on (each was cancelled with its stream or connection)."""
    deadline = time.monotonic() + 2
    while get(port, "/hanging")[1] != b"0":
        assert time.monotonic() < deadline, f"{get(port, '/hanging')[1]!r} apps still run"
        time.sleep(0.02)


# ---------------------------------------------------------------- Rapid Reset (CVE-2023-44487)

RAPID_RESETS = 20_000


def test_rapid_reset(server: CLIServer) -> None:
    block = request_block("/hang")

    def pairs() -> Iterator[bytes]:
        for first in range(1, 2 * RAPID_RESETS, 1000):
            yield b"".join(
                HeadersFrame(sid, block, flags=[END_HEADERS, END_STREAM]).serialize()
                + RstStreamFrame(sid, error_code=CANCEL).serialize()
                for sid in range(first, first + 1000, 2)
            )

    with attack(server, cpu=1.0), RawConn(port_of(server)) as conn:
        sender = conn.flood(pairs())
        goaway = conn.wait_goaway()
        sender.join(10)
    assert goaway.error_code == ENHANCE_YOUR_CALM
    # Stream ids are odd: fewer than 2 * max_resets streams were set up.
    assert goaway.last_stream_id < 4 * LIMITS.max_resets, goaway
    assert_no_app_left(port_of(server))


# -------------------------------------------------------------- CONTINUATION flood (CVE-2024-27316)


def endless_literal() -> bytes:
    """The start of an HPACK literal whose value is declared 16 MiB long (never sent whole)."""
    size = 16 * MIB - 127
    length = bytearray([0x7F])  # 7-bit prefix full, then the rest in 7-bit groups
    while size >= 128:
        length.append(size % 128 | 0x80)
        size //= 128
    length.append(size)
    return request_block() + b"\x00\x06x-long" + bytes(length)


def test_continuation_flood(server: CLIServer) -> None:
    """A header block that never ends: empty CONTINUATION frames, then full ones
    carrying a field value that never ends; neither is buffered past the cap."""
    port = port_of(server)
    with attack(server, rss=8 * MIB):
        with RawConn(port) as conn:
            conn.send(HeadersFrame(1, request_block(), flags=[END_STREAM]))
            sender = conn.flood(ContinuationFrame(1, b"").serialize() for _ in range(10_000))
            goaway = conn.wait_goaway()
            sender.join(10)
            assert goaway.error_code == ENHANCE_YOUR_CALM, goaway
            assert not conn.status, "a request was served from an unfinished header block"
        with RawConn(port) as conn:
            frame_size = conn.server_settings[SettingsFrame.MAX_FRAME_SIZE]
            conn.send(HeadersFrame(1, endless_literal(), flags=[END_STREAM]))
            full = ContinuationFrame(1, b"a" * frame_size).serialize()
            sender = conn.flood(full for _ in range(1000))
            goaway = conn.wait_goaway()
            sender.join(10)
            assert goaway.error_code in (ENHANCE_YOUR_CALM, COMPRESSION_ERROR), goaway
            assert not conn.status, "a request was served from an unfinished header block"


# ---------------------------------------------------------------- MadeYouReset (CVE-2025-8671)


def _headers(
    sid: int, path: str = "/hang", end: bool = True, extra: Sequence[tuple[bytes, bytes]] = ()
) -> bytes:
    flags = [END_HEADERS, END_STREAM] if end else [END_HEADERS]
    block = request_block(path, "GET" if end else "POST", extra)
    return HeadersFrame(sid, block, flags=flags).serialize()


#: Frames that make the server reset an open request stream (RFC 9113 names a
#: stream error for each), with the code a connection error must carry if the
#: codec ends the connection at once instead.
#: Each is (request bytes, trigger bytes, connection error code).
TRIGGERS: dict[str, tuple[Callable[[int], bytes], Callable[[int], bytes], int]] = {
    "WINDOW_UPDATE of 0": (
        lambda sid: _headers(sid),
        lambda sid: WindowUpdateFrame(sid, window_increment=0).serialize(),
        PROTOCOL_ERROR,
    ),
    "WINDOW_UPDATE overflowing the window": (
        lambda sid: _headers(sid),
        lambda sid: WindowUpdateFrame(sid, window_increment=2**31 - 1).serialize() * 2,
        FLOW_CONTROL_ERROR,
    ),
    "DATA after END_STREAM": (
        lambda sid: _headers(sid),
        lambda sid: DataFrame(sid, b"x").serialize(),
        STREAM_CLOSED,
    ),
    "HEADERS after END_STREAM": (
        lambda sid: _headers(sid),
        lambda sid: _headers(sid, "/"),
        STREAM_CLOSED,
    ),
    "PRIORITY on itself": (
        lambda sid: _headers(sid),
        lambda sid: PriorityFrame(sid, depends_on=sid).serialize(),
        PROTOCOL_ERROR,
    ),
    "PRIORITY of 4 octets": (
        lambda sid: _headers(sid),
        lambda sid: b"\x00\x00\x04\x02\x00" + sid.to_bytes(4, "big") + b"\x00" * 4,
        FRAME_SIZE_ERROR,
    ),
    "body longer than content-length": (
        lambda sid: _headers(sid, end=False, extra=[(b"content-length", b"1")]),
        lambda sid: DataFrame(sid, b"xx", flags=[END_STREAM]).serialize(),
        PROTOCOL_ERROR,
    ),
}


def _reset_or_goaway(conn: RawConn, sid: int) -> Frame:
    return conn.wait_for(
        lambda f: (
            (isinstance(f, RstStreamFrame) and f.stream_id == sid) or isinstance(f, GoAwayFrame)
        ),
        f"the reset of stream {sid}",
    )


@pytest.mark.parametrize("trigger", TRIGGERS, ids=lambda name: name.replace(" ", "-"))
def test_made_you_reset(server: CLIServer, trigger: str) -> None:
    """Frames that make the server reset streams: each reset cancels its app and
    counts against the client's reset budget (or the frame ends the connection
    at once), so neither the apps nor the streams pile up."""
    opening, trigger_bytes, connection_error = TRIGGERS[trigger]
    port = port_of(server)
    with attack(server, cpu=1.0):
        # Apps that are running when the server resets their streams are cancelled.
        with RawConn(port) as conn:
            ids = range(1, 41, 2)
            conn.send(*(opening(sid) for sid in ids))
            if trigger != "body longer than content-length":
                for sid in ids:  # each app has begun its response
                    conn.wait_for(
                        lambda f, sid=sid: isinstance(f, DataFrame) and f.stream_id == sid,
                        f"the first chunk of stream {sid}",
                    )
            conn.send(*(trigger_bytes(sid) for sid in ids))
            answer = _reset_or_goaway(conn, ids[0])
            if isinstance(answer, GoAwayFrame):
                assert answer.error_code == connection_error, answer
        assert_no_app_left(port)
        # At a high rate: a GOAWAY, after the reset budget at most.
        with RawConn(port) as conn:

            def pairs() -> Iterator[bytes]:
                for first in range(1, 20_000, 100):
                    yield b"".join(
                        opening(s) + trigger_bytes(s) for s in range(first, first + 100, 2)
                    )

            sender = conn.flood(pairs())
            goaway = conn.wait_goaway()
            sender.join(10)
        if goaway.error_code == ENHANCE_YOUR_CALM:
            assert goaway.last_stream_id < 4 * LIMITS.max_resets + 200, goaway
        else:
            assert goaway.error_code == connection_error, goaway
        assert_no_app_left(port)


# ---------------------------------------------------------------- HPACK bomb


def test_hpack_bomb(server: CLIServer) -> None:
    """4 KB entered in the dynamic table once, then referenced 16,000 times: a
    20 KB block for a 64 MB header list.  Refused while decoding."""
    bomb = hpack_bomb(4000, 16000)
    with attack(server, rss=8 * MIB), RawConn(port_of(server)) as conn:
        conn.send(
            HeadersFrame(1, bomb[:16000], flags=[END_STREAM]),
            ContinuationFrame(1, bomb[16000:], flags=[END_HEADERS]),
        )
        goaway = conn.wait_goaway()
        assert goaway.error_code in (COMPRESSION_ERROR, ENHANCE_YOUR_CALM), goaway
        assert not conn.status, "the request was served"


# -------------------------------------------------------- CR/LF/NUL, upper case (h2 CVE-2025-57804)

BAD_FIELDS = {
    "CR LF in a value": (b"x-a", b"a\r\nx-injected: 1"),
    "CR in a value": (b"x-a", b"a\rb"),
    "LF in a value": (b"x-a", b"a\nb"),
    "NUL in a value": (b"x-a", b"a\x00b"),
    "CR LF in a name": (b"x-a\r\nx-b", b"1"),
    "upper-case name": (b"X-Injected", b"1"),
    "upper-case Host": (b"Host", b"test"),
    "request line in a value": (b"x-a", b"1\r\n\r\nGET /smuggled HTTP/1.1\r\nhost: test"),
    "CR LF in :path": (b":path", b"/\r\nx-injected: 1"),
}


def _refused(conn: RawConn, sid: int) -> None:
    """The nghttp2 codec resets a malformed request's stream, the h2 codec ends
    the connection; both with PROTOCOL_ERROR, and the request is never served."""
    answer = conn.wait_for(
        lambda f: (
            (isinstance(f, (RstStreamFrame, HeadersFrame)) and f.stream_id == sid)
            or isinstance(f, GoAwayFrame)
        ),
        f"the answer to stream {sid}",
    )
    assert not isinstance(answer, HeadersFrame), f"served: {conn.status}"
    assert isinstance(answer, (RstStreamFrame, GoAwayFrame))
    assert answer.error_code == PROTOCOL_ERROR, answer


def test_cr_lf_nul_and_upper_case_in_fields(server: CLIServer) -> None:
    port = port_of(server)
    with attack(server):
        for name, field in BAD_FIELDS.items():
            with RawConn(port) as conn:
                if field[0] == b":path":
                    block = request_block(field[1].decode("latin-1"))
                else:
                    block = request_block(extra=[field])
                conn.send(HeadersFrame(1, block, flags=[END_HEADERS, END_STREAM]))
                try:
                    _refused(conn, 1)
                except AssertionError as exc:
                    raise AssertionError(f"{name}: {exc}") from None


# --------------------------------------------------------------- Host vs :authority, content-length


def test_host_authority_conflict_and_differing_content_lengths(server: CLIServer) -> None:
    port = port_of(server)
    malformed = {
        "Host differing from :authority": request_block(extra=[(b"host", b"other")]),
        "two :authority": request_block(extra=[(b":authority", b"other")]),
        "two content-length values": request_block(
            "/sink", "POST", [(b"content-length", b"1"), (b"content-length", b"2")]
        ),
        "a content-length list": request_block("/sink", "POST", [(b"content-length", b"1, 2")]),
        "content-length +1": request_block("/sink", "POST", [(b"content-length", b"+1")]),
    }
    with attack(server):
        for name, block in malformed.items():
            with RawConn(port) as conn:
                conn.send(
                    HeadersFrame(1, block, flags=[END_HEADERS]),
                    DataFrame(1, b"x", flags=[END_STREAM]),
                )
                try:
                    _refused(conn, 1)
                except AssertionError as exc:
                    raise AssertionError(f"{name}: {exc}") from None
        # The controls: the same authority twice, and one content-length, are served.
        with RawConn(port) as conn:
            conn.send(
                HeadersFrame(
                    1, request_block(extra=[(b"host", b"test")]), flags=[END_HEADERS, END_STREAM]
                ),
                HeadersFrame(
                    3,
                    request_block("/sink", "POST", [(b"content-length", b"1")]),
                    flags=[END_HEADERS],
                ),
                DataFrame(3, b"x", flags=[END_STREAM]),
            )
            for sid in (1, 3):
                conn.wait_for(
                    lambda f, sid=sid: isinstance(f, HeadersFrame) and f.stream_id == sid,
                    f"the answer to stream {sid}",
                )
            assert conn.status == {1: 200, 3: 200}


# ---------------------------------------------------------------- control-frame floods


def _flood(kind: str) -> tuple[bytes, bytes]:
    """(opening bytes, 500 flood frames)."""
    if kind == "PING":
        return b"", PingFrame(0, opaque_data=b"floodpng").serialize() * 500
    if kind == "SETTINGS":
        return b"", SettingsFrame(0, settings={SettingsFrame.ENABLE_PUSH: 0}).serialize() * 500
    if kind == "PRIORITY":
        return b"", b"".join(
            PriorityFrame(sid, depends_on=sid + 2, stream_weight=200).serialize()
            for sid in range(1001, 2001, 2)
        )
    # Empty DATA frames on a request whose app reads its body.
    opening = HeadersFrame(1, request_block("/sink", "POST"), flags=[END_HEADERS]).serialize()
    return opening, DataFrame(1, b"").serialize() * 500


@pytest.mark.parametrize("kind", ["PING", "SETTINGS", "PRIORITY", "empty DATA"])
def test_control_frame_flood(server: CLIServer, kind: str) -> None:
    """Frames that produce no request, beyond the budget: GOAWAY ENHANCE_YOUR_CALM."""
    opening, batch = _flood(kind)
    with attack(server), RawConn(port_of(server)) as conn:
        sender = conn.flood([opening, *(batch for _ in range(5 * LIMITS.flood_budget // 500))])
        goaway = conn.wait_goaway()
        sender.join(10)
        acks = conn.count(lambda f: isinstance(f, (PingFrame, SettingsFrame)) and "ACK" in f.flags)
    assert goaway.error_code == ENHANCE_YOUR_CALM, goaway
    assert acks <= LIMITS.flood_budget + 1, f"{acks} frames were answered"


def test_window_update_flood(server: CLIServer) -> None:
    """Tiny WINDOW_UPDATEs are legitimate frames, not cut off: 50,000 of them cost
    the server little (each read flushes waiting streams once, not per frame)."""
    with attack(server, cpu=1.5), RawConn(port_of(server)) as conn:
        conn.send(request(1, "/big"))  # a response that waits for window
        flood = WindowUpdateFrame(0, window_increment=1).serialize() * 5000
        sender = conn.flood(flood for _ in range(10))
        sender.join(20)
        conn.send(PingFrame(0, opaque_data=b"afterwus"))
        conn.wait_for(lambda f: isinstance(f, PingFrame) and "ACK" in f.flags, "the PING ACK", 20)
        assert not conn.count(lambda f: isinstance(f, GoAwayFrame))


# ---------------------------------------------------------------- zero-window stall


def test_zero_window_stall_with_a_large_response(server: CLIServer) -> None:
    """A 4 MiB response to a client that never opens its window: the server
    holds what one window needs, not the response, and resets the stream with
    CANCEL after ``--timeout-write`` (1 s here); the connection serves on."""
    with (
        attack(server, rss=8 * MIB),
        RawConn(port_of(server), {SettingsFrame.INITIAL_WINDOW_SIZE: 0}) as conn,
    ):
        started = time.monotonic()
        conn.send(request(1, "/big"))
        rst = conn.wait_for(
            lambda f: isinstance(f, RstStreamFrame) and f.stream_id == 1, "RST_STREAM"
        )
        elapsed = time.monotonic() - started
        assert isinstance(rst, RstStreamFrame)
        assert rst.error_code == CANCEL
        assert 0.9 < elapsed < 5, elapsed
        assert conn.status.get(1) == 200
        assert not conn.count(lambda f: isinstance(f, DataFrame) and bool(f.data))
        conn.send(request(3, "/empty"))
        conn.wait_for(lambda f: isinstance(f, HeadersFrame) and f.stream_id == 3, "a response")
        assert conn.status[3] == 204
