"""Soak: one asgiri with ``--workers 2`` under a mixed load for minutes, watched for leaks.

The server is the real CLI (TLS, so HTTP/3 too) serving ``bench/scale_app.py``;
the load comes from three processes, each an asyncio loop of clients:

* HTTP/1.1: keep-alive clients and one-request-per-connection clients (GET /);
* HTTP/2: one connection multiplexing several streams (GET /), uploads
  (POST /upload) and downloads (GET /stream) of a few MiB on HTTP/1.1 and
  HTTP/2, clients that vanish mid-request (half an upload, or the first
  64 KiB of a download, then the socket is dropped), slow readers;
* HTTP/3 (GET / on one QUIC connection each), WebSocket echo, and long-lived
  idle WebSockets.

Idempotent requests whose connection fails are retried once on a new one, as
clients do (counted as retries); a request that still fails is an error.  A
WebSocket closed with 1012 or 1001 (a worker replaced) reconnects; any other
end is an error.  Every ``--sighup-every`` seconds the supervisor gets
SIGHUP (a rolling restart).  Every ``--sample`` seconds each worker's RSS
and open file descriptors are read (psutil), with the requests served,
errors and p99 latency (GET / on every protocol and WebSocket echoes) of
that interval.

A worker's memory and descriptors are *flat* when, from ``--warmup``
seconds after it started, the median of its last third of samples is less
than 5 % above the median of its first third (medians, so that a sample
taken while a few extra connections happen to be open does not count as
growth).  The run passes when every worker observed long enough is flat and
no request failed.

    python bench/soak.py --seconds 1800                 # what `make soak` runs
    python bench/soak.py --seconds 120 --sample 5 --sighup-every 60 --warmup 30
    python bench/soak.py --seconds 1800 --doc docs/operations.md   # rewrite the report there

The Markdown report goes to stdout (and ``--out``); with ``--doc`` it
replaces the part of that file between ``<!-- soak:begin -->`` and
``<!-- soak:end -->``.  Exit status 0 when the run passed, 1 otherwise.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import multiprocessing
import os
import queue
import re
import signal
import ssl
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import psutil
import websockets
from aioquic.asyncio.client import connect as quic_connect
from aioquic.asyncio.protocol import QuicConnectionProtocol
from aioquic.h3.connection import H3_ALPN, H3Connection
from aioquic.h3.events import DataReceived, HeadersReceived
from aioquic.quic.configuration import QuicConfiguration
from aioquic.quic.events import ConnectionTerminated, QuicEvent, StreamReset
from websockets.asyncio.client import connect as ws_connect

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "bench"
MIB = 1024 * 1024
#: Growth of a worker's RSS after its warm-up that fails the run: 5 % of it, or
#: RSS_SLACK if that is more (a young worker's allocator still settles by a few MiB).
FLAT = 0.05
RSS_SLACK = 8 * MIB
#: Open descriptors a worker may gain after its warm-up: a few connections more
#: at one sample than at another are load, a leak grows by thousands in 30 min.
FD_SLACK = 16
#: Every traffic class of the mix; each must be served during a run.
CLASSES = (
    "h1 keep-alive",
    "h1 short",
    "h2 multiplexed",
    "h1 upload",
    "h1 download",
    "h2 upload",
    "h2 download",
    "vanishing client",
    "slow reader",
    "h3",
    "WebSocket echo",
    "idle WebSocket",
)
#: WebSocket close codes of a worker going away (a rolling restart, a shutdown).
RESTART_CLOSES = {1001, 1012}
#: One request (or WebSocket echo) may take this long before it is a failure.
REQUEST_TIMEOUT = 30.0
#: What scale_app (bench/app.py) answers to GET /.
HELLO = b"Hello, World!"
DOC_BEGIN = "<!-- soak:begin -->"
DOC_END = "<!-- soak:end -->"


# ---------------------------------------------------------------------------- the load


@dataclass
class Tally:
    """What one load process did in one second."""

    second: int
    served: int = 0
    retries: int = 0
    reconnects: int = 0
    vanished: int = 0
    errors: list[str] = field(default_factory=list)
    latencies: list[float] = field(default_factory=list)
    #: Traffic class -> requests, echoes or connections of that class done.
    classes: dict[str, int] = field(default_factory=dict)


def client_tls(alpn: list[str] | None = None) -> ssl.SSLContext:
    """A client context that accepts the soak's self-signed certificate.

    One per client: httpx sets ALPN on the context it is given, which would
    make a raw HTTP/1.1 client sharing it offer h2.
    """
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    if alpn:
        context.set_alpn_protocols(alpn)
    return context


class Load:
    """The clients of one load process and what they report."""

    def __init__(self, port: int, start: float, out: Any, stop: Any) -> None:
        self.port = port
        self.start = start
        self.out = out
        self.stop = stop
        self.tally = Tally(self.second())
        self.base = f"https://127.0.0.1:{port}"

    def second(self) -> int:
        return int(time.time() - self.start)

    def _current(self) -> Tally:
        now = self.second()
        if now != self.tally.second:
            self.out.put(self.tally)
            self.tally = Tally(now)
        return self.tally

    def ok(self, name: str, latency: float | None = None) -> None:
        """A request (or WebSocket echo) of traffic class ``name`` was served."""
        tally = self._current()
        tally.served += 1
        tally.classes[name] = tally.classes.get(name, 0) + 1
        if latency is not None:
            tally.latencies.append(latency)

    def did(self, name: str) -> None:
        """Traffic class ``name`` did its thing, which is not a request served."""
        tally = self._current()
        tally.classes[name] = tally.classes.get(name, 0) + 1

    def error(self, what: str) -> None:
        self._current().errors.append(what)

    def note(self, name: str) -> None:
        tally = self._current()
        setattr(tally, name, getattr(tally, name) + 1)

    def flush(self) -> None:
        self.out.put(self.tally)

    @property
    def running(self) -> bool:
        return not self.stop.is_set()

    async def loop(self, name: str, step: Callable[[], Awaitable[None]], pause: float) -> None:
        """``step`` again and again, ``pause`` seconds apart, until the run ends."""
        while self.running:
            try:
                await asyncio.wait_for(step(), REQUEST_TIMEOUT)
            except Exception as exc:
                self.error(f"{name}: {type(exc).__name__}: {exc}"[:200])
            await asyncio.sleep(pause)

    # ------------------------------------------------------------ HTTP/1.1 and HTTP/2

    def client(self, http2: bool = False) -> httpx.AsyncClient:
        return httpx.AsyncClient(
            base_url=self.base,
            http1=not http2,
            http2=http2,
            verify=client_tls(),
            timeout=REQUEST_TIMEOUT,
        )

    async def get(
        self, client: httpx.AsyncClient, name: str, headers: dict[str, str] | None = None
    ) -> None:
        """GET / (idempotent: retried once on a new connection)."""
        started = time.monotonic()
        try:
            response = await client.get("/", headers=headers)
        except httpx.TransportError:
            self.note("retries")
            response = await client.get("/", headers=headers)
        if response.status_code != 200 or response.content != HELLO:
            raise AssertionError(f"GET / answered {response.status_code}")
        self.ok(name, time.monotonic() - started)

    async def keep_alive(self, http2: bool, pause: float) -> None:
        async with self.client(http2) as client:
            name = f"h{2 if http2 else 1} keep-alive"
            await self.loop(name, lambda: self.get(client, name), pause)

    async def short(self, pause: float) -> None:
        async with self.client() as client:
            close = {"connection": "close"}
            await self.loop("h1 short", lambda: self.get(client, "h1 short", close), pause)

    async def multiplexed(self, streams: int, pause: float) -> None:
        """One HTTP/2 connection, ``streams`` requests in flight on it at a time."""
        async with self.client(http2=True) as client:

            async def burst() -> None:
                await asyncio.gather(*(self.get(client, "h2 multiplexed") for _ in range(streams)))

            await self.loop("h2 multiplexed", burst, pause)

    async def transfers(self, http2: bool, size: int, pause: float) -> None:
        """An upload and a download of ``size`` bytes, each on a new connection."""
        version = f"h{2 if http2 else 1}"

        async def both() -> None:
            async with self.client(http2) as client:
                response = await client.post("/upload", content=os.urandom(size))
                if response.status_code != 200 or response.text != str(size):
                    raise AssertionError(f"upload answered {response.status_code} {response.text}")
                self.ok(f"{version} upload")
            async with self.client(http2) as client:
                response = await client.get("/stream", params={"bytes": size})
                if response.status_code != 200 or len(response.content) != size:
                    raise AssertionError(
                        f"download: {response.status_code}, {len(response.content)}"
                    )
                self.ok(f"{version} download")

        await self.loop(f"{version} transfers", both, pause)

    async def raw(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        return await asyncio.open_connection(
            "127.0.0.1", self.port, ssl=client_tls(["http/1.1"]), server_hostname="localhost"
        )

    async def vanish(self, pause: float) -> None:
        """Half an upload, or the start of a download, then the socket dropped."""
        turn = 0

        async def once() -> None:
            nonlocal turn
            turn += 1
            reader, writer = await self.raw()
            if turn % 2:
                writer.write(
                    b"POST /upload HTTP/1.1\r\nHost: soak\r\nContent-Length: 4194304\r\n\r\n"
                    + b"v" * 65536
                )
                await writer.drain()
            else:
                writer.write(b"GET /stream?bytes=4194304 HTTP/1.1\r\nHost: soak\r\n\r\n")
                try:
                    await reader.readexactly(65536)
                except asyncio.IncompleteReadError as exc:
                    raise AssertionError(f"download cut: {exc.partial[:100]!r}") from None
            writer.transport.abort()
            self.note("vanished")
            self.did("vanishing client")

        await self.loop("vanishing client", once, pause)

    async def slow_reader(self, size: int, pause: float) -> None:
        """A download read 16 KiB at a time, 20 ms apart (about 800 KB/s)."""

        async def once() -> None:
            reader, writer = await self.raw()
            try:
                writer.write(b"GET /stream?bytes=%d HTTP/1.1\r\nHost: soak\r\n\r\n" % size)
                head = await reader.readuntil(b"\r\n\r\n")
                if not head.startswith(b"HTTP/1.1 200 "):
                    raise AssertionError(f"slow reader got {head[:40]!r}")
                left = size
                while left:
                    chunk = await reader.read(min(left, 16384))
                    if not chunk:
                        raise AssertionError(f"download cut with {left} bytes to go")
                    left -= len(chunk)
                    await asyncio.sleep(0.02)
                self.ok("slow reader")
            finally:
                writer.close()

        await self.loop("slow reader", once, pause)

    # ------------------------------------------------------------ HTTP/3

    async def h3(self, pause: float) -> None:
        configuration = QuicConfiguration(
            is_client=True, alpn_protocols=H3_ALPN, verify_mode=ssl.CERT_NONE
        )
        while self.running:
            try:
                async with quic_connect(
                    "127.0.0.1",
                    self.port,
                    configuration=configuration,
                    create_protocol=H3Client,
                ) as client:
                    assert isinstance(client, H3Client)
                    while self.running and not client.ended:
                        started = time.monotonic()
                        status, body = await client.get("/")
                        if status == 0:  # refused or cut by a worker going away
                            self.note("retries")
                            break
                        if (status, body) != (200, HELLO):
                            raise AssertionError(f"HTTP/3 GET / answered {status}")
                        self.ok("h3", time.monotonic() - started)
                        await asyncio.sleep(pause)
            except Exception as exc:
                self.error(f"h3: {type(exc).__name__}: {exc}"[:200])
                await asyncio.sleep(pause)

    # ------------------------------------------------------------ WebSocket

    async def websocket(self, idle: bool, pause: float) -> None:
        uri = f"wss://127.0.0.1:{self.port}/ws"
        while self.running:
            try:
                tls = client_tls(["http/1.1"])
                async with ws_connect(uri, ssl=tls, open_timeout=REQUEST_TIMEOUT) as ws:
                    if idle:
                        self.did("idle WebSocket")
                    while self.running:
                        if idle:
                            with contextlib.suppress(asyncio.TimeoutError):
                                await asyncio.wait_for(ws.recv(), 1.0)
                                raise AssertionError("an idle WebSocket received a message")
                            continue
                        started = time.monotonic()
                        await ws.send("soak")
                        reply = await asyncio.wait_for(ws.recv(), REQUEST_TIMEOUT)
                        if reply != "soak":
                            raise AssertionError(f"WebSocket echo: {reply!r}")
                        self.ok("WebSocket echo", time.monotonic() - started)
                        await asyncio.sleep(pause)
            except websockets.InvalidStatus as exc:
                # A handshake that reached a worker already draining: 503, try again.
                if exc.response.status_code != 503:
                    self.error(f"WebSocket: {exc}"[:200])
                else:
                    self.note("retries")
                await asyncio.sleep(pause)
            except websockets.ConnectionClosed as exc:
                code = exc.rcvd.code if exc.rcvd is not None else None
                if code not in RESTART_CLOSES:
                    self.error(f"WebSocket closed: {code} {exc}"[:200])
                else:
                    self.note("reconnects")
            except Exception as exc:
                self.error(f"WebSocket: {type(exc).__name__}: {exc}"[:200])
                await asyncio.sleep(pause)


class H3Client(QuicConnectionProtocol):
    """A minimal HTTP/3 client: GET, and whether the connection has ended."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.h3 = H3Connection(self._quic)
        self.waiters: dict[int, asyncio.Future[tuple[int, bytes]]] = {}
        self.status: dict[int, int] = {}
        self.bodies: dict[int, bytearray] = {}
        self.ended = False

    def quic_event_received(self, event: QuicEvent) -> None:
        if isinstance(event, ConnectionTerminated):
            self.ended = True
            for stream_id in list(self.waiters):
                self._done(stream_id, 0)
            return
        if isinstance(event, StreamReset):
            self._done(event.stream_id, 0)
            return
        for h3_event in self.h3.handle_event(event):
            stream_id = getattr(h3_event, "stream_id", -1)
            if isinstance(h3_event, HeadersReceived):
                self.status[stream_id] = int(dict(h3_event.headers).get(b":status", b"0"))
            elif isinstance(h3_event, DataReceived):
                self.bodies.setdefault(stream_id, bytearray()).extend(h3_event.data)
            if getattr(h3_event, "stream_ended", False):
                self._done(stream_id, self.status.get(stream_id, 0))

    def _done(self, stream_id: int, status: int) -> None:
        waiter = self.waiters.pop(stream_id, None)
        if waiter is not None and not waiter.done():
            waiter.set_result((status, bytes(self.bodies.pop(stream_id, b""))))

    async def get(self, path: str) -> tuple[int, bytes]:
        """(status, body); status 0 when the stream was reset or the connection ended."""
        stream_id = self._quic.get_next_available_stream_id()
        waiter: asyncio.Future[tuple[int, bytes]] = asyncio.get_running_loop().create_future()
        self.waiters[stream_id] = waiter
        self.h3.send_headers(
            stream_id,
            [
                (b":method", b"GET"),
                (b":scheme", b"https"),
                (b":authority", b"localhost"),
                (b":path", path.encode()),
            ],
            end_stream=True,
        )
        self.transmit()
        return await waiter


async def _load_main(role: int, port: int, start: float, out: Any, stop: Any) -> None:
    load = Load(port, start, out, stop)
    if role == 0:
        tasks = [
            load.keep_alive(False, 0.02),
            load.keep_alive(False, 0.02),
            load.short(0.05),
            load.short(0.05),
        ]
    elif role == 1:
        tasks = [
            load.multiplexed(8, 0.05),
            load.transfers(False, 4 * MIB, 0.5),
            load.transfers(True, 4 * MIB, 0.5),
            load.vanish(0.3),
            load.slow_reader(MIB, 0.5),
        ]
    else:
        tasks = [
            load.h3(0.03),
            load.h3(0.03),
            load.websocket(False, 0.03),
            load.websocket(False, 0.03),
            *(load.websocket(True, 0) for _ in range(20)),
        ]
    runners = [asyncio.ensure_future(task) for task in tasks]
    while not stop.is_set():
        await asyncio.sleep(0.2)
        load._current()  # hand over the past second even when nothing happened in it
    # Let every client finish what it is doing (each waits at most REQUEST_TIMEOUT).
    await asyncio.wait(runners, timeout=REQUEST_TIMEOUT + 5)
    for runner in runners:
        runner.cancel()
    load.flush()


def load_process(role: int, port: int, start: float, out: Any, stop: Any) -> None:
    asyncio.run(_load_main(role, port, start, out, stop))


# ---------------------------------------------------------------------------- the server


class Server:
    """``python -m asgiri`` with --workers 2, its log read by a thread."""

    def __init__(self, cert: tuple[str, str], workers: int) -> None:
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "asgiri",
                "scale_app:app",
                "--app-dir",
                str(BENCH),
                "--port",
                "0",
                "--workers",
                str(workers),
                "--no-access-log",
                "--ssl-certfile",
                cert[0],
                "--ssl-keyfile",
                cert[1],
                "--timeout-graceful-shutdown",
                "10",
            ],
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        self.lines: list[str] = []
        self.port = 0
        self._ready = threading.Event()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line)
            match = re.search(r"Supervisor listening on https://[^ ]+:(\d+)", line)
            if match:
                self.port = int(match.group(1))
        self._ready.set()

    def wait_ready(self, workers: int, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while len(self.matches(r"Worker process \[(\d+)\] is ready")) < workers:
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("the server did not start:\n" + "".join(self.lines[-30:]))
            time.sleep(0.1)

    def matches(self, pattern: str) -> list[str]:
        return [m.group(1) for line in list(self.lines) if (m := re.search(pattern, line))]

    def slots(self) -> dict[int, int]:
        """Worker pid -> slot, from the supervisor's log."""
        found = re.findall(r"Started worker process \[(\d+)\] \(slot (\d+)\)", "".join(self.lines))
        return {int(pid): int(slot) for pid, slot in found}

    def workers(self) -> list[psutil.Process]:
        alive = []
        for child in psutil.Process(self.proc.pid).children():
            with contextlib.suppress(psutil.Error):
                if child.status() != psutil.STATUS_ZOMBIE:
                    alive.append(child)
        return alive

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                return self.proc.wait(60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        return self.proc.wait(10)


# ---------------------------------------------------------------------------- sampling


@dataclass
class Sample:
    """One row of the report."""

    at: float
    #: pid -> (slot, RSS bytes, open descriptors)
    workers: dict[int, tuple[int, int, int]]
    supervisor: tuple[int, int]
    served: int = 0
    errors: int = 0
    retries: int = 0
    reconnects: int = 0
    vanished: int = 0
    p99: float | None = None
    event: str = ""


@dataclass
class Flatness:
    """One worker's growth from its warm-up to the end of its life (or the run)."""

    pid: int
    slot: int
    samples: int
    #: Floors (see :func:`floors`) of the first and the last third of its
    #: samples after warm-up: (RSS bytes, open descriptors) each.
    first: tuple[int, int] | None = None
    last: tuple[int, int] | None = None
    rss_slack: int = RSS_SLACK

    @property
    def judged(self) -> bool:
        return self.first is not None

    @property
    def rss_growth(self) -> int:
        return self.last[0] - self.first[0] if self.first and self.last else 0

    @property
    def fds_growth(self) -> int:
        return self.last[1] - self.first[1] if self.first and self.last else 0

    @property
    def flat(self) -> bool:
        if self.first is None:
            return True
        return (
            self.rss_growth <= max(FLAT * self.first[0], self.rss_slack)
            and self.fds_growth <= FD_SLACK
        )


@dataclass
class Result:
    seconds: float
    samples: list[Sample]
    flatness: list[Flatness]
    errors: list[str]
    exit_code: int
    settings: dict[str, Any]
    #: Traffic class -> requests, echoes or connections done in the whole run.
    classes: dict[str, int] = field(default_factory=dict)

    @property
    def idle_classes(self) -> list[str]:
        return [name for name in CLASSES if not self.classes.get(name)]

    @property
    def served(self) -> int:
        return sum(s.served for s in self.samples)

    @property
    def passed(self) -> bool:
        judged = [f for f in self.flatness if f.judged]
        return (
            not self.errors
            and self.exit_code == 0
            and not self.idle_classes
            and bool(judged)
            and all(f.flat for f in judged)
        )


def floors(values: list[int]) -> tuple[int, int]:
    """The floor (lowest value) of the first third of ``values`` and of the last third.

    A transfer in flight or a few more connections at the moment of a sample
    raise that sample; a leak raises the floor.
    """
    third = max(len(values) // 3, 1)
    return min(values[:third]), min(values[-third:])


def flatness(
    samples: list[Sample], started: dict[int, float], warmup: float, rss_slack: int = RSS_SLACK
) -> list[Flatness]:
    result = []
    pids = sorted({pid for s in samples for pid in s.workers}, key=lambda p: started.get(p, 0))
    for pid in pids:
        rows = [
            s.workers[pid] for s in samples if pid in s.workers and s.at >= started[pid] + warmup
        ]
        slot = next(s.workers[pid][0] for s in samples if pid in s.workers)
        if len(rows) < 3:
            result.append(Flatness(pid, slot, len(rows)))
            continue
        rss, fds = floors([r[1] for r in rows]), floors([r[2] for r in rows])
        result.append(Flatness(pid, slot, len(rows), (rss[0], fds[0]), (rss[1], fds[1]), rss_slack))
    return result


def run(
    seconds: float,
    sample: float = 10.0,
    sighup_every: float = 300.0,
    warmup: float = 60.0,
    workers: int = 2,
    log: Callable[[str], None] = print,
    rss_slack: int = RSS_SLACK,
) -> Result:
    """Run the soak; the report's data."""
    from asgiri.ssl_utils import generate_self_signed_cert

    folder = Path(tempfile.mkdtemp(prefix="asgiri-soak-"))
    cert_pem, key_pem = generate_self_signed_cert("localhost", key_type="ec")
    (folder / "cert.pem").write_bytes(cert_pem)
    (folder / "key.pem").write_bytes(key_pem)
    server = Server((str(folder / "cert.pem"), str(folder / "key.pem")), workers)
    server.wait_ready(workers)
    supervisor = psutil.Process(server.proc.pid)
    context = multiprocessing.get_context("spawn")
    out: Any = context.Queue()
    stop = context.Event()
    start = time.time()
    loaders = [
        context.Process(target=load_process, args=(role, server.port, start, out, stop))
        for role in range(3)
    ]
    for process in loaders:
        process.start()
    tallies: dict[int, list[Tally]] = {}
    samples: list[Sample] = []
    started: dict[int, float] = {}
    errors: list[str] = []

    def drain() -> None:
        while True:
            try:
                tally: Tally = out.get_nowait()
            except queue.Empty:
                return
            tallies.setdefault(int(tally.second // sample), []).append(tally)
            errors.extend(f"{tally.second:>5} s  {e}" for e in tally.errors)

    next_hup = sighup_every
    event = ""
    try:
        for index in range(1, int(seconds // sample) + 1):
            due = start + index * sample
            while time.time() < due:
                drain()
                time.sleep(min(0.2, max(due - time.time(), 0)))
            at = time.time() - start
            slots = server.slots()
            row: dict[int, tuple[int, int, int]] = {}
            for worker in server.workers():
                with contextlib.suppress(psutil.Error):
                    row[worker.pid] = (
                        slots.get(worker.pid, -1),
                        worker.memory_info().rss,
                        worker.num_fds(),
                    )
                    started.setdefault(worker.pid, worker.create_time() - start)
            samples.append(
                Sample(at, row, (supervisor.memory_info().rss, supervisor.num_fds()), event=event)
            )
            event = ""
            log(_progress(samples[-1]))
            if sighup_every and at >= next_hup and at + sample <= seconds:
                server.proc.send_signal(signal.SIGHUP)
                event = "SIGHUP"
                next_hup += sighup_every
    finally:
        stop.set()
        for process in loaders:
            process.join(REQUEST_TIMEOUT + 30)
            if process.is_alive():
                process.kill()
        drain()
        exit_code = server.stop()
    for i, row_sample in enumerate(samples):
        window = tallies.get(i, [])
        row_sample.served = sum(t.served for t in window)
        row_sample.errors = sum(len(t.errors) for t in window)
        row_sample.retries = sum(t.retries for t in window)
        row_sample.reconnects = sum(t.reconnects for t in window)
        row_sample.vanished = sum(t.vanished for t in window)
        latencies = sorted(x for t in window for x in t.latencies)
        if latencies:
            row_sample.p99 = latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))]
    # What came after the last sample (the clients finishing) counts too.
    late = [t for i, window in tallies.items() if i >= len(samples) for t in window]
    if samples:
        samples[-1].served += sum(t.served for t in late)
        samples[-1].errors += sum(len(t.errors) for t in late)
    classes: dict[str, int] = {}
    for window in tallies.values():
        for tally in window:
            for name, count in tally.classes.items():
                classes[name] = classes.get(name, 0) + count
    if exit_code != 0:
        errors.append(f"the server exited with {exit_code}")
    settings = {
        "sample": sample,
        "sighup_every": sighup_every,
        "warmup": warmup,
        "workers": workers,
        "rss_slack": rss_slack,
    }
    judged = flatness(samples, started, warmup, rss_slack)
    return Result(seconds, samples, judged, errors, exit_code, settings, classes)


def _progress(sample: Sample) -> str:
    workers = ", ".join(
        f"[{slot}] {pid} {rss / MIB:.1f} MiB {fds} fds"
        for pid, (slot, rss, fds) in sorted(sample.workers.items(), key=lambda w: w[1][0])
    )
    return f"{sample.at:6.0f} s  {workers}  {sample.event}"


# ---------------------------------------------------------------------------- the report


def report(result: Result, command: str) -> str:
    """The Markdown report: settings, the table, flatness per worker, the verdict."""
    settings = result.settings
    lines = [
        f"Command: `{command}`; {settings['workers']} workers, a sample every "
        f"{settings['sample']:g} s, SIGHUP every {settings['sighup_every']:g} s, "
        f"warm-up {settings['warmup']:g} s.",
        "",
        "| time | worker slot 0: pid, RSS, fds | worker slot 1: pid, RSS, fds "
        "| supervisor RSS, fds | served | errors | retries | WS reconnects | vanished | p99 | |",
        "|---:|---|---|---|---:|---:|---:|---:|---:|---:|---|",
    ]
    for s in result.samples:
        cells = []
        for slot in range(settings["workers"]):
            here = [
                f"{pid}: {rss / MIB:.1f} MiB, {fds}"
                for pid, (worker_slot, rss, fds) in s.workers.items()
                if worker_slot == slot
            ]
            cells.append("<br>".join(here) or "-")
        p99 = f"{s.p99 * 1000:.1f} ms" if s.p99 is not None else "-"
        lines.append(
            f"| {s.at:.0f} s | {' | '.join(cells[:2])} | {s.supervisor[0] / MIB:.1f} MiB, "
            f"{s.supervisor[1]} | {s.served} | {s.errors} | {s.retries} | {s.reconnects} "
            f"| {s.vanished} | {p99} | {s.event} |"
        )
    lines += [
        "",
        f"| worker | slot | samples after warm-up | RSS growth | fds growth "
        f"| flat (RSS < {FLAT:.0%} or {settings['rss_slack'] // MIB} MiB, fds < {FD_SLACK}) |",
        "|---|---:|---:|---:|---:|---|",
    ]
    for f in result.flatness:
        if f.first is None:
            lines.append(f"| {f.pid} | {f.slot} | {f.samples} | - | - | too short to judge |")
            continue
        lines.append(
            f"| {f.pid} | {f.slot} | {f.samples} | {f.rss_growth / MIB:+.1f} MiB "
            f"({f.rss_growth / f.first[0]:+.1%}) | {f.fds_growth:+d} "
            f"| {'yes' if f.flat else '**no**'} |"
        )
    lines += ["", "| traffic class | served |", "|---|---:|"]
    lines += [f"| {name} | {result.classes.get(name, 0):,} |" for name in CLASSES]
    verdict = "passed" if result.passed else "**FAILED**"
    lines += [
        "",
        f"{result.served:,} requests and WebSocket echoes served, {len(result.errors)} errors; "
        f"server exit code {result.exit_code}: {verdict}.",
    ]
    if result.errors:
        lines += ["", "Errors (the first 20):", "", "```", *result.errors[:20], "```"]
    return "\n".join(lines) + "\n"


def summary(result: Result) -> dict[str, Any]:
    """The figures a test asserts on."""
    return {
        "passed": result.passed,
        "served": result.served,
        "errors": result.errors,
        "exit_code": result.exit_code,
        "sighups": sum(1 for s in result.samples if s.event == "SIGHUP"),
        "samples": len(result.samples),
        "workers": [
            {
                "pid": f.pid,
                "slot": f.slot,
                "samples": f.samples,
                "judged": f.judged,
                "flat": f.flat,
                "rss_growth": f.rss_growth,
                "fds_growth": f.fds_growth,
            }
            for f in result.flatness
        ],
        "p99": [s.p99 for s in result.samples],
        "retries": sum(s.retries for s in result.samples),
        "reconnects": sum(s.reconnects for s in result.samples),
        "vanished": sum(s.vanished for s in result.samples),
        "classes": {name: result.classes.get(name, 0) for name in CLASSES},
    }


def write_doc(path: Path, text: str) -> None:
    """Replace the soak section of ``path`` (between the markers) with ``text``."""
    doc = path.read_text()
    begin, end = doc.index(DOC_BEGIN) + len(DOC_BEGIN), doc.index(DOC_END)
    path.write_text(doc[:begin] + "\n" + text + doc[end:])


def _interrupted(signum: int, frame: object) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--seconds", type=float, default=1800)
    parser.add_argument("--sample", type=float, default=10)
    parser.add_argument("--sighup-every", type=float, default=300)
    parser.add_argument("--warmup", type=float, default=60)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument(
        "--rss-slack",
        type=int,
        default=RSS_SLACK // MIB,
        help="MiB a worker's RSS may grow after warm-up when that is more than 5 %% of it",
    )
    parser.add_argument("--out", type=Path, help="also write the report to this file")
    parser.add_argument("--doc", type=Path, help="replace the soak section of this file")
    parser.add_argument("--json", type=Path, help="write the verdict and its figures as JSON")
    args = parser.parse_args(argv)
    # A SIGTERM (a CI timeout, pkill) runs run()'s clean-up as Ctrl-C does:
    # without it the load processes and the server's workers outlived the
    # soak and kept loading the machine.
    signal.signal(signal.SIGTERM, _interrupted)
    try:
        result = run(
            args.seconds,
            args.sample,
            args.sighup_every,
            args.warmup,
            args.workers,
            rss_slack=args.rss_slack * MIB,
        )
    except KeyboardInterrupt as exc:
        print(f"soak: interrupted ({exc or 'Ctrl-C'}); server and load stopped", file=sys.stderr)
        return 130
    command = "python bench/soak.py " + " ".join(argv if argv is not None else sys.argv[1:])
    text = report(result, command.strip())
    print(text)
    if args.out:
        args.out.write_text(text)
    if args.doc:
        write_doc(args.doc, text)
    if args.json:
        args.json.write_text(json.dumps(summary(result), indent=1))
    return 0 if result.passed else 1


if __name__ == "__main__":
    sys.exit(main())
