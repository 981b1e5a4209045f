"""Known HTTP/2 attacks against a real server, over real sockets.

Well-behaved traffic goes through the h2 library (:class:`Client`); the
attacks are hand-built with hyperframe and hpack (:class:`RawConn`), since h2
refuses to send most of them.  Each test is written so that it fails when the
defence it covers is taken away (a limit raised out of reach, a check
skipped); the attacks are sized accordingly.

Where the server's CPU time or memory is the point, it runs as a CLI
subprocess and is measured with psutil; otherwise in a thread.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import h2.config
import h2.connection
import h2.events
import h2.frame_buffer
import psutil
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

from asgiri.protocol.h2 import PREFACE
from tests.apps import h2attack as h2attackapps
from tests.support.h2_raw import (
    CANCEL,
    COMPRESSION_ERROR,
    END_HEADERS,
    END_STREAM,
    ENHANCE_YOUR_CALM,
    LIMITS,
    PROTOCOL_ERROR,
    Client,
    RawConn,
    get,
    hpack_bomb,
    request,
    request_block,
)
from tests.support.processes import RSSSampler, dropped_by_server
from tests.support.servers import CLIServer, cli_server, serve

pytestmark = pytest.mark.timeout(60)

TIMEOUT = 10.0
MIB = 1024 * 1024

FRAME_SIZE_ERROR = 0x6
REFUSED_STREAM = 0x7


# ---------------------------------------------------------------- clients


class Bystander:
    """A well-behaved connection making requests in a loop while an attack runs."""

    def __init__(self, port: int) -> None:
        self.client = Client(port)
        self.done = 0
        self.error: BaseException | None = None
        self._changed = threading.Condition()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        try:
            while not self._stop.is_set():
                assert self.client.get("/") == (200, b"ok")
                with self._changed:
                    self.done += 1
                    self._changed.notify_all()
        except BaseException as exc:
            self.error = exc

    def __enter__(self) -> Bystander:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(TIMEOUT)
        self.client.close()

    def served_more(self, count: int = 3) -> None:
        """Wait until ``count`` more requests are answered."""
        with self._changed:
            target = self.done + count
            ok = self._changed.wait_for(
                lambda: self.done >= target or self.error is not None, TIMEOUT
            )
        assert self.error is None, f"bystander failed: {self.error!r}"
        assert ok, "bystander requests stalled"


def cpu_seconds(process: psutil.Process) -> float:
    times = process.cpu_times()
    return float(times.user + times.system)


def served(**options: Any) -> Any:
    """``serve`` the attack app; hung apps do not hold up the server's stop."""
    return serve(h2attackapps.app, timeout_graceful_shutdown=1, **options)


@pytest.fixture(scope="module")
def cli() -> Iterator[CLIServer]:
    """A server process of its own, so its CPU time and memory can be measured.

    It accepts frames of up to 1 MiB (a deployment choice) so that only the
    server's own bound on header blocks stands between a CONTINUATION flood
    and its memory: h2 alone would buffer 64 such frames.
    """
    args = ("apps.h2attack:app", "--port", "0", "--no-access-log")
    options = ("--timeout-graceful-shutdown", "1", "--h2-max-frame-size", str(MIB))
    with cli_server(*args, *options) as srv:
        assert srv.port is not None
        # Warm up the HTTP/2 code paths, so they do not count as growth.
        for _ in range(3):
            assert get(srv.port) == (200, b"ok")
        yield srv


# ---------------------------------------------------------------- Rapid Reset


#: Streams opened and reset in the flood: far beyond ``max_resets``.
RAPID_RESETS = 20000
#: Server CPU seconds the whole flood may cost; going through all of it
#: costs several times this.
RAPID_RESET_CPU = 1.0


def test_rapid_reset(cli: CLIServer) -> None:
    """CVE-2023-44487: streams opened and reset at once, in a loop."""
    port = cli.port
    assert port is not None
    with Bystander(port) as bystander:
        bystander.served_more()

        # The apps of reset streams are cancelled, not left running.
        hung = 20
        ids = range(1, 2 * hung, 2)
        with RawConn(port) as conn:
            conn.send(*(request(sid, "/hang") for sid in ids))
            started: set[int] = set()
            while len(started) < hung:
                frame = conn.wait_for(lambda f: isinstance(f, DataFrame), "the apps' first chunks")
                started.add(frame.stream_id)
            before = int(get(port, "/cancelled")[1])
            conn.send(*(RstStreamFrame(sid, error_code=CANCEL) for sid in ids))
            _, body = get(port, f"/cancelled?min={before + hung}")
            assert int(body) == before + hung, "reset streams' apps were not cancelled"

        # The flood: ENHANCE_YOUR_CALM after about max_resets streams, for
        # little CPU.
        process = psutil.Process(cli.proc.pid)
        cpu_before = cpu_seconds(process)
        block = request_block("/hang")

        def pairs() -> Iterator[bytes]:
            for first in range(1, 2 * RAPID_RESETS, 1000):
                yield b"".join(
                    HeadersFrame(sid, block, flags=[END_HEADERS, END_STREAM]).serialize()
                    + RstStreamFrame(sid, error_code=CANCEL).serialize()
                    for sid in range(first, first + 1000, 2)
                )

        with RawConn(port) as attacker:
            sender = attacker.flood(pairs())
            goaway = attacker.wait_goaway()
            sender.join(TIMEOUT)
        cpu = cpu_seconds(process) - cpu_before
        assert goaway.error_code == ENHANCE_YOUR_CALM
        # Stream ids are odd: fewer than 2 * max_resets streams were set up.
        assert goaway.last_stream_id < 4 * LIMITS.max_resets, goaway
        assert cpu < RAPID_RESET_CPU, f"the flood cost the server {cpu:.2f} s of CPU"

        bystander.served_more()
    assert get(port) == (200, b"ok")


@pytest.mark.parametrize("end", ["socket closed", "connection error"])
def test_apps_of_an_ended_connection_are_cancelled(end: str) -> None:
    """A connection that ends (the client drops it, or makes the server end it
    with a bad frame) stops the apps of its open streams as resets do: without
    that, each connection opened and dropped leaves up to 100 apps working for
    nobody, a rapid reset without the resets."""
    hung = 20
    with served() as srv:
        before = int(get(srv.port, "/cancelled")[1])
        with RawConn(srv.port) as conn:
            ids = range(1, 2 * hung, 2)
            conn.send(*(request(sid, "/hang") for sid in ids))
            started: set[int] = set()
            while len(started) < hung:
                frame = conn.wait_for(lambda f: isinstance(f, DataFrame), "the apps' first chunks")
                started.add(frame.stream_id)
            if end == "connection error":
                conn.send(WindowUpdateFrame(0, window_increment=0))  # PROTOCOL_ERROR
                assert conn.wait_goaway().error_code == PROTOCOL_ERROR
        _, body = get(srv.port, f"/cancelled?min={before + hung}")
        assert int(body) == before + hung, "the apps of the ended connection still run"


# ---------------------------------------------------------------- clients the defences must spare


def _ended(frame: Frame) -> bool:
    return isinstance(frame, (DataFrame, HeadersFrame)) and END_STREAM in frame.flags


def _no_goaway(conn: RawConn) -> None:
    goaways = [f for f in conn.frames if isinstance(f, GoAwayFrame)]
    assert not goaways, f"the connection was ended: {goaways}"


#: Requests on the long-lived connection, and how many are in flight at once.
LONG_LIVED = 10_000
IN_FLIGHT = 100


def test_ten_thousand_requests_on_one_connection() -> None:
    """A long-lived connection (a browser, a proxy, a load generator) is never cut
    off for the number of streams it has opened: 10,000 requests, 100 at a time."""
    with served() as srv, RawConn(srv.port) as conn:
        answered = 0
        for first in range(1, 2 * LONG_LIVED, 2 * IN_FLIGHT):
            ids = range(first, first + 2 * IN_FLIGHT, 2)
            conn.send(*(request(sid) for sid in ids))
            pending = set(ids)

            def batch_done(frame: Frame, pending: set[int] = pending) -> bool:
                if _ended(frame):
                    pending.discard(frame.stream_id)
                return not pending

            conn.wait_for(batch_done, f"the answers to streams {first}-{ids[-1]}")
            answered += sum(1 for sid in ids if conn.status.get(sid) == 200)
        assert answered == LONG_LIVED
        _no_goaway(conn)
        conn.send(PingFrame(0, opaque_data=b"stillup!"))
        conn.wait_for(lambda f: isinstance(f, PingFrame) and "ACK" in f.flags, "the PING ACK")


#: Requests a well-behaved client cancels over the life of one connection: twice
#: the burst of libnghttp2's own reset limit (1,000, then 33 a second).
CANCELLED_REQUESTS = 2_000


def test_client_cancelling_its_requests_is_not_cut_off() -> None:
    """Resets count against the streams that completed, not against time: a
    client that cancels thousands of its requests over a connection's life (a
    browser leaving pages, gRPC deadlines), each among requests it lets finish,
    keeps its connection."""
    with served() as srv, RawConn(srv.port) as conn:
        for i in range(CANCELLED_REQUESTS):
            done, cancelled = 1 + 4 * i, 3 + 4 * i
            conn.send(
                request(done),
                request(cancelled, "/hang"),
                RstStreamFrame(cancelled, error_code=CANCEL),
            )
            conn.wait_for(lambda f, sid=done: _ended(f) and f.stream_id == sid, f"stream {done}")
            assert conn.status[done] == 200
        _no_goaway(conn)
        last = 1 + 4 * CANCELLED_REQUESTS
        conn.send(request(last))
        conn.wait_for(lambda f: _ended(f) and f.stream_id == last, "the last answer")
        assert conn.status[last] == 200
        _no_goaway(conn)


# ---------------------------------------------------------------- CONTINUATION flood


def test_continuation_flood_frame_count() -> None:
    """CVE-2024-27316: a header block that never ends is cut after a few frames."""
    # h2 alone would wait for up to CONTINUATION_BACKLOG frames: stay below it,
    # so only the server's own limit can answer.
    frames = LIMITS.max_continuations + 8
    assert frames < h2.frame_buffer.CONTINUATION_BACKLOG
    with served() as srv:
        with RawConn(srv.port) as conn:
            conn.send(
                HeadersFrame(1, request_block(), flags=[END_STREAM]),
                *(ContinuationFrame(1, b"") for _ in range(frames)),
            )
            goaway = conn.wait_goaway()
            assert goaway.error_code in (ENHANCE_YOUR_CALM, PROTOCOL_ERROR, COMPRESSION_ERROR)
            assert not conn.status, "a request was served from an unfinished header block"
        assert get(srv.port) == (200, b"ok")


def test_continuation_flood_memory(cli: CLIServer) -> None:
    """CVE-2024-27316 with large frames: the server does not buffer the block."""
    port = cli.port
    assert port is not None
    with RSSSampler(cli.proc.pid) as rss, RawConn(port) as conn:
        # Frames as large as the server says it accepts (1 MiB).
        frame_size = conn.server_settings[SettingsFrame.MAX_FRAME_SIZE]
        assert frame_size == MIB
        continuation = ContinuationFrame(1, b"\0" * frame_size).serialize()
        conn.send(HeadersFrame(1, request_block(), flags=[END_STREAM]))
        sender = conn.flood(continuation for _ in range(100))
        goaway = conn.wait_goaway()
        sender.join(TIMEOUT)
    assert goaway.error_code in (
        ENHANCE_YOUR_CALM,
        PROTOCOL_ERROR,
        COMPRESSION_ERROR,
        FRAME_SIZE_ERROR,
    )
    assert rss.growth < 8 * MIB, f"server RSS grew {rss.growth / MIB:.1f} MiB"
    assert get(port) == (200, b"ok")


# ---------------------------------------------------------------- control-frame floods


def _flood_frames(kind: str) -> tuple[bytes, bytes, Callable[[Frame], bool]]:
    """(opening bytes, one flood frame, which server frames answer it)."""
    if kind == "ping":
        return (
            b"",
            PingFrame(0, opaque_data=b"floodpng").serialize(),
            lambda f: isinstance(f, PingFrame) and "ACK" in f.flags,
        )
    if kind == "settings":
        return (
            b"",
            SettingsFrame(0, settings={SettingsFrame.ENABLE_PUSH: 0}).serialize(),
            lambda f: isinstance(f, SettingsFrame) and "ACK" in f.flags,
        )
    if kind == "priority":
        # Deprecated (RFC 9113 5.3.2), answered by nothing, yet each one is parsed.
        return b"", PriorityFrame(3, depends_on=5, stream_weight=200).serialize(), lambda f: False
    # Empty DATA frames on a request whose app is reading the body.
    opening = HeadersFrame(1, request_block("/sink", "POST"), flags=[END_HEADERS]).serialize()
    return opening, DataFrame(1, b"").serialize(), lambda f: False


@pytest.mark.parametrize("kind", ["ping", "settings", "priority", "empty-data"])
def test_control_frame_flood(kind: str) -> None:
    opening, frame, is_answer = _flood_frames(kind)
    batch = frame * 500
    total = 5 * LIMITS.flood_budget
    with served() as srv, Bystander(srv.port) as bystander:
        bystander.served_more()
        with RawConn(srv.port) as conn:
            answered_before = conn.count(is_answer)
            sender = conn.flood([opening, *(batch for _ in range(total // 500))])
            goaway = conn.wait_goaway()
            sender.join(TIMEOUT)
            answers = conn.count(is_answer) - answered_before
        assert goaway.error_code == ENHANCE_YOUR_CALM
        assert answers <= LIMITS.flood_budget, f"{answers} frames were answered"
        bystander.served_more()
        assert get(srv.port) == (200, b"ok")


# ---------------------------------------------------------------- zero-window stall


def test_zero_window_stall() -> None:
    """A client that never opens its window does not hold the app forever."""
    h2attackapps.STALLED.clear()
    h2attackapps.STALLED_EVENT.clear()
    with served(timeout_write=1) as srv:
        with RawConn(srv.port, {SettingsFrame.INITIAL_WINDOW_SIZE: 0}) as conn:
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

            # The app got out of its blocked send.
            assert h2attackapps.STALLED_EVENT.wait(TIMEOUT)
            # (CancelledError here; a send that returned would do as well.)
            outcome, spent = h2attackapps.STALLED[-1]
            assert spent < 5, f"the app was held {spent:.1f} s ({outcome})"

            # The connection still works (a response with no body needs no
            # window), and so does the server.
            conn.send(request(3, "/empty"))
            conn.wait_for(lambda f: isinstance(f, HeadersFrame) and f.stream_id == 3, "a response")
            assert conn.status[3] == 204
        assert get(srv.port) == (200, b"ok")


# ---------------------------------------------------------------- WINDOW_UPDATE flood

#: WINDOW_UPDATE frames in the flood (1.3 MB), and the server CPU seconds they
#: may cost with 100 streams waiting for window: walking every waiting stream
#: per frame costs several times this.
WINDOW_UPDATES = 100_000
WINDOW_UPDATE_CPU = 2.0


def test_window_update_flood(cli: CLIServer) -> None:
    """Tiny connection WINDOW_UPDATEs while 100 responses wait for window: each
    read flushes the waiting streams once, not once per frame."""
    port = cli.port
    assert port is not None
    process = psutil.Process(cli.proc.pid)
    with RawConn(port, {SettingsFrame.INITIAL_WINDOW_SIZE: 0}) as conn:
        ids = range(1, 201, 2)
        conn.send(*(request(sid, "/big") for sid in ids))
        for sid in ids:
            conn.wait_for(
                lambda f, sid=sid: isinstance(f, HeadersFrame) and f.stream_id == sid,
                f"the response head of stream {sid}",
            )
        cpu_before = cpu_seconds(process)
        flood = WindowUpdateFrame(0, window_increment=1).serialize() * 10_000
        sender = conn.flood(flood for _ in range(WINDOW_UPDATES // 10_000))
        sender.join(TIMEOUT * 3)
        conn.send(PingFrame(0, opaque_data=b"afterwus"))
        conn.wait_for(
            lambda f: isinstance(f, PingFrame) and "ACK" in f.flags, "the PING ACK", TIMEOUT * 3
        )
        cpu = cpu_seconds(process) - cpu_before
    assert cpu < WINDOW_UPDATE_CPU, f"the flood cost the server {cpu:.2f} s of CPU"
    assert get(port) == (200, b"ok")


# ---------------------------------------------------------------- a client that never reads


def test_client_that_never_reads() -> None:
    """Windows opened wide, requests keep coming, nothing is read: the server
    stops reading, then drops the connection after ``--timeout-write``.

    Each response is 1 MiB handed over in one ``send``, so no app ever waits
    for the client: without reading paused while the socket does not drain,
    every request would be answered into the write buffer, and a connection
    in that state would be kept forever.
    """
    with served(timeout_write=1, timeout_keep_alive=60) as srv:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        with sock:
            sock.connect(("127.0.0.1", srv.port))
            sock.settimeout(0.5)
            window = (1 << 31) - 1
            sock.sendall(
                PREFACE
                + SettingsFrame(0, settings={SettingsFrame.INITIAL_WINDOW_SIZE: window}).serialize()
                + WindowUpdateFrame(0, window_increment=window - 65535).serialize()
            )
            block = request_block("/mib")
            try:
                # One at a time, so that the server keeps up; 40 MiB is far
                # more than the socket buffers hold for a client reading nothing.
                for stream_id in range(1, 81, 2):
                    sock.sendall(
                        HeadersFrame(stream_id, block, flags=[END_HEADERS, END_STREAM]).serialize()
                    )
                    time.sleep(0.01)
            except (TimeoutError, ConnectionError):
                pass
            assert dropped_by_server(sock, 10), "a client reading nothing was never dropped"
        assert get(srv.port) == (200, b"ok")


# ---------------------------------------------------------------- HPACK bomb


def assert_refused(conn: RawConn, stream_id: int) -> None:
    """The request on ``stream_id`` is refused: 431, or RST_STREAM/GOAWAY.

    RFC 9113 makes a header block the decoder will not process a connection
    error (COMPRESSION_ERROR); ENHANCE_YOUR_CALM names the abuse.
    """
    frame = conn.wait_for(
        lambda f: (
            isinstance(f, GoAwayFrame)
            or (isinstance(f, (RstStreamFrame, HeadersFrame)) and f.stream_id == stream_id)
        ),
        "an answer",
    )
    if isinstance(frame, HeadersFrame):
        assert conn.status[stream_id] == 431, f"served with {conn.status[stream_id]}"
    else:
        assert isinstance(frame, (GoAwayFrame, RstStreamFrame))
        assert frame.error_code in (COMPRESSION_ERROR, ENHANCE_YOUR_CALM), frame


def test_hpack_bomb(cli: CLIServer) -> None:
    port = cli.port
    assert port is not None
    # 4 KB entered once, then referenced 16,000 times: a 20 KB block for a
    # header list of some 64 MB.
    bomb = hpack_bomb(4000, 16000)
    with RSSSampler(cli.proc.pid) as rss, RawConn(port) as conn:
        conn.send(
            HeadersFrame(1, bomb[:16000], flags=[END_STREAM]),
            ContinuationFrame(1, bomb[16000:], flags=[END_HEADERS]),
        )
        assert_refused(conn, 1)
    assert rss.growth < 8 * MIB, f"server RSS grew {rss.growth / MIB:.1f} MiB"
    assert get(port) == (200, b"ok")


@pytest.mark.parametrize("ack", [True, False], ids=["acked", "settings-not-acked"])
def test_max_header_list_size_respected(ack: bool) -> None:
    """A configured ``h2_max_header_list_size`` is enforced, not only advertised."""
    limit = 4096
    with served(h2_max_header_list_size=limit) as srv:
        with RawConn(srv.port, ack=ack) as conn:
            assert conn.server_settings[SettingsFrame.MAX_HEADER_LIST_SIZE] == limit
            # Within the limit: served.
            small = request_block(extra=[(b"x-small", b"a" * 1000)])
            conn.send(HeadersFrame(1, small, flags=[END_HEADERS, END_STREAM]))
            conn.wait_for(lambda f: isinstance(f, HeadersFrame) and f.stream_id == 1, "a response")
            assert conn.status[1] == 200
            # ~9 KB: over the configured limit, well under the 64 KiB default.
            conn.send(HeadersFrame(3, hpack_bomb(3000, 2), flags=[END_HEADERS, END_STREAM]))
            assert_refused(conn, 3)
        assert get(srv.port) == (200, b"ok")


# ---------------------------------------------------------------- concurrent streams


def test_too_many_concurrent_streams() -> None:
    limit = 3
    with served(h2_max_concurrent_streams=limit) as srv:
        with RawConn(srv.port) as conn:
            assert conn.server_settings[SettingsFrame.MAX_CONCURRENT_STREAMS] == limit
            ids = [1, 3, 5]
            conn.send(*(request(sid, "/wait") for sid in ids))
            for sid in ids:
                conn.wait_for(
                    lambda f, sid=sid: isinstance(f, HeadersFrame) and f.stream_id == sid,
                    f"the response of stream {sid}",
                )
            # One more than advertised, while the others are still open.
            conn.send(request(7, "/wait"))
            frame = conn.wait_for(
                lambda f: (
                    isinstance(f, GoAwayFrame)
                    or (isinstance(f, (RstStreamFrame, HeadersFrame)) and f.stream_id == 7)
                ),
                "an answer to stream 7",
            )
            assert not isinstance(frame, HeadersFrame), "the extra stream was served"
            if isinstance(frame, RstStreamFrame):
                assert frame.error_code in (REFUSED_STREAM, PROTOCOL_ERROR)
            else:
                assert isinstance(frame, GoAwayFrame)
                assert frame.error_code == PROTOCOL_ERROR
                assert frame.last_stream_id < 7
        assert get(srv.port) == (200, b"ok")
