"""One bulk QUIC stream between two connections in process: aioquic against qh3.

asgiri's HTTP/3 bulk transfers are bound by aioquic's per-packet Python
(docs/performance.md, "HTTP/3 bulk transfers").  qh3 is a fork of aioquic with
its packet core in Rust; this measures whether it would lift that ceiling,
without sockets, an event loop or asgiri in the way.  A client and a server
connection of the same library are joined in memory by a simulated link:
each round queues what each side's ``datagrams_to_send`` returns, delivers
one tick's worth (``--link-mbit``) of each queue to the other side's
``receive_datagram``, and moves a simulated clock on by ``--tick``; a full
queue (``--queue-kib``) drops, and ``--loss`` of the datagrams are lost at
random, so that congestion control and pacing behave as on a path rather than
on an infinitely fast wire.  When nothing moves, the clock jumps to the next
timer.  One stream carries ``--mib`` MiB from the server (``down``) or to it
(``up``), written in 64 KiB chunks while at most two stream windows are in
flight, as a server with a bounded send buffer writes.  Both sides use
asgiri's windows and datagram size.  The receiver counts every byte; a
transfer that is not whole, or that stalls, is an error (exit status 1).

Reported: process CPU time per MiB (``time.process_time``, both connections
together, best of ``--rounds``), and the server's share of it, estimated from
the wall time spent in each side's calls.  ``--layer h3`` sends the same
bytes as an HTTP/3 response or request body through each library's
``H3Connection``; ``--batch`` hands each flight to qh3's
``receive_many_datagrams`` (aioquic has none) instead of one call per datagram.

    .venv/bin/python -m bench.codec.quic_stacks                     # both libraries, 32 MiB
    .venv/bin/python -m bench.codec.quic_stacks --library aioquic --mib 1 --rounds 1
"""

from __future__ import annotations

import argparse
import importlib
import random
import ssl
import sys
import tempfile
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

from asgiri.server.h3 import CONNECTION_WINDOW, STREAM_WINDOW
from asgiri.ssl_utils import generate_self_signed_cert

LIBRARIES = ("aioquic", "qh3")
DIRECTIONS = ("down", "up")
LAYERS = ("quic", "h3")
MIB = 1 << 20
CHUNK = 64 * 1024
#: asgiri's default --quic-max-datagram-size.
DATAGRAM_SIZE = 1350
#: Bytes the sender may have written beyond what the receiver has counted.
IN_FLIGHT = 2 * STREAM_WINDOW
CLIENT_ADDR = ("127.0.0.1", 50000)
SERVER_ADDR = ("127.0.0.1", 4433)
REQUEST_HEADERS = [
    (b":scheme", b"https"),
    (b":authority", b"localhost"),
    (b":path", b"/"),
]


@dataclass(frozen=True)
class Setup:
    """The simulated link, and how datagrams are handed over."""

    #: Simulated seconds per round (one delivery each way).
    tick: float = 0.0002
    #: The link's rate each way; what it cannot carry in a tick waits in its queue.
    link_mbit: float = 1000.0
    #: What the link's queue holds each way; datagrams beyond it are dropped.
    queue_kib: int = 128
    #: Share of datagrams lost at random.  Without any loss a congestion
    #: window grows without end, and aioquic's pacer then lets out two or
    #: three datagrams per call (its burst is 16 datagrams' worth of time at
    #: the pacing rate, its packet time at least 1 µs).  asgiri's server
    #: replaces that pacer (``BurstPacer``); this compares the libraries as
    #: they come, with losses bounding the window as on a real path.
    loss: float = 0.001
    #: Hand each delivery to qh3's ``receive_many_datagrams`` (aioquic has none).
    batch: bool = False


class TransferError(RuntimeError):
    """A transfer that stalled, ended early or went on too long."""


@dataclass
class Stack:
    """The modules of one QUIC library that the transfer uses."""

    name: str
    version: str
    configuration: ModuleType
    connection: ModuleType
    quic_events: ModuleType
    h3_connection: ModuleType
    h3_events: ModuleType


def load(name: str) -> Stack | None:
    """The library's modules, or None when it is not installed."""
    try:
        package = importlib.import_module(name)
    except ImportError:
        return None
    return Stack(
        name=name,
        version=str(getattr(package, "__version__", "?")),
        configuration=importlib.import_module(f"{name}.quic.configuration"),
        connection=importlib.import_module(f"{name}.quic.connection"),
        quic_events=importlib.import_module(f"{name}.quic.events"),
        h3_connection=importlib.import_module(f"{name}.h3.connection"),
        h3_events=importlib.import_module(f"{name}.h3.events"),
    )


@dataclass
class Peer:
    """One side: its connection, the bytes it received and the time spent on its behalf."""

    quic: Any
    address: tuple[str, int]
    h3: Any = None
    stream_id: int | None = None
    received: int = 0
    ended: bool = False
    written: int = 0
    finished: bool = False
    wall: float = 0.0
    datagrams: int = 0
    wire: int = 0
    #: Datagrams sent and not yet delivered (the link's queue from this side).
    queue: deque[bytes] = field(default_factory=deque)
    queued: int = 0
    #: Datagrams the full queue dropped.
    dropped: int = 0
    events: list[Any] = field(default_factory=list)


@dataclass
class Result:
    """What one transfer moved and what it cost."""

    library: str
    direction: str
    layer: str
    nbytes: int
    received: int
    cpu: float
    server_share: float
    datagrams_down: int
    datagrams_up: int
    #: Mean size of the datagrams that carried the stream.
    datagram_size: float
    #: Datagrams the link lost (at random or from a full queue), both ways.
    lost: int

    @property
    def cpu_ms_per_mib(self) -> float:
        return self.cpu * 1000 / (self.nbytes / MIB)


def configuration(stack: Stack, *, is_client: bool, certdir: Path, layer: str) -> Any:
    """The same windows and datagram size as asgiri's server, on either side."""
    options: dict[str, Any] = {
        "is_client": is_client,
        "alpn_protocols": ["h3"],
        "max_datagram_size": DATAGRAM_SIZE,
        "max_stream_data": STREAM_WINDOW,
        "max_data": CONNECTION_WINDOW,
    }
    if stack.name == "qh3":
        # qh3 grows its datagrams by path MTU probing; in memory nothing would
        # stop it, and aioquic does none: keep both at asgiri's size.
        options["probe_datagram_size"] = False
        if layer == "h3":
            # qh3's HTTP/3 layer always offers HTTP datagrams and refuses a
            # peer that offers them without the QUIC transport parameter.
            options["max_datagram_frame_size"] = 65536
    config = stack.configuration.QuicConfiguration(**options)
    if is_client:
        config.verify_mode = ssl.CERT_NONE
        config.server_name = "localhost"
    else:
        config.load_cert_chain(str(certdir / "cert.pem"), str(certdir / "key.pem"))
    return config


class Link:
    """Two connections joined in memory on a simulated clock."""

    def __init__(self, stack: Stack, layer: str, certdir: Path, setup: Setup) -> None:
        self.stack = stack
        self.layer = layer
        self.batch = setup.batch and hasattr(
            stack.connection.QuicConnection, "receive_many_datagrams"
        )
        self.now = 0.0
        self.tick = setup.tick
        #: Bytes the link carries each way per tick.
        self.link_bytes = max(1, int(setup.link_mbit * 1e6 / 8 * setup.tick))
        self.queue_bytes = setup.queue_kib * 1024
        self.loss = setup.loss
        # Seeded: every library sees the same losses in the same places.
        self.random = random.Random(1)
        self.certdir = certdir
        #: QUIC events kept for the driver when the HTTP/3 layer takes the rest.
        self.kept = (stack.quic_events.HandshakeCompleted, stack.quic_events.ConnectionTerminated)
        client_quic = stack.connection.QuicConnection(
            configuration=configuration(stack, is_client=True, certdir=certdir, layer=layer)
        )
        self.client = Peer(client_quic, CLIENT_ADDR)
        self.server: Peer | None = None
        if layer == "h3":
            self.client.h3 = stack.h3_connection.H3Connection(client_quic)
        client_quic.connect(SERVER_ADDR, now=self.now)

    def _accept(self, first: bytes) -> Peer:
        # The server's connection is made by the first Initial, whose
        # destination connection id (long header: flags, version, length, id)
        # the client chose.
        original_cid = first[6 : 6 + first[5]]
        quic = self.stack.connection.QuicConnection(
            configuration=configuration(
                self.stack, is_client=False, certdir=self.certdir, layer=self.layer
            ),
            original_destination_connection_id=original_cid,
        )
        server = Peer(quic, SERVER_ADDR)
        if self.layer == "h3":
            server.h3 = self.stack.h3_connection.H3Connection(quic)
        return server

    def poll(self, src: Peer) -> None:
        """Queue what ``src`` has to send on its side of the link."""
        start = time.perf_counter()
        datagrams = src.quic.datagrams_to_send(now=self.now)
        src.wall += time.perf_counter() - start
        for data, _ in datagrams:
            src.datagrams += 1
            src.wire += len(data)
            if src.queued + len(data) > self.queue_bytes or self.random.random() < self.loss:
                src.dropped += 1
                continue
            src.queue.append(data)
            src.queued += len(data)

    def deliver(self, src: Peer, dst: Peer | None) -> int:
        """Hand ``dst`` one tick's worth of ``src``'s queue; the number of datagrams."""
        queue = src.queue
        if not queue:
            return 0
        datagrams = []
        budget = self.link_bytes
        while queue and budget > 0:
            data = queue.popleft()
            budget -= len(data)
            src.queued -= len(data)
            datagrams.append(data)
        start = time.perf_counter()
        if dst is None:
            dst = self.server = self._accept(datagrams[0])
        now = self.now
        quic = dst.quic
        if self.batch:
            quic.receive_many_datagrams(datagrams, src.address, now)
        else:
            for data in datagrams:
                quic.receive_datagram(data, src.address, now)
        self.drain(dst)
        dst.wall += time.perf_counter() - start
        return len(datagrams)

    def drain(self, peer: Peer) -> None:
        """Take the connection's events; count stream bytes, keep the rest."""
        stream_data = self.stack.quic_events.StreamDataReceived
        quic = peer.quic
        h3 = peer.h3
        data_received = self.stack.h3_events.DataReceived
        while (event := quic.next_event()) is not None:
            if h3 is None:
                if isinstance(event, stream_data):
                    if peer.stream_id is None:
                        peer.stream_id = event.stream_id
                    if event.stream_id == peer.stream_id:
                        peer.received += len(event.data)
                        peer.ended = peer.ended or event.end_stream
                        continue
                peer.events.append(event)
                continue
            for h3_event in h3.handle_event(event):
                if isinstance(h3_event, data_received):
                    peer.received += len(h3_event.data)
                    peer.ended = peer.ended or h3_event.stream_ended
                else:
                    if peer.stream_id is None and hasattr(h3_event, "headers"):
                        peer.stream_id = h3_event.stream_id
                        peer.ended = peer.ended or h3_event.stream_ended
                    peer.events.append(h3_event)
            if isinstance(event, self.kept):
                peer.events.append(event)

    def timers(self) -> float | None:
        """Fire the timers that are due; the earliest one left."""
        earliest: float | None = None
        for peer in (self.client, self.server):
            if peer is None:
                continue
            timer = peer.quic.get_timer()
            if timer is not None and timer <= self.now:
                start = time.perf_counter()
                peer.quic.handle_timer(now=self.now)
                self.drain(peer)
                peer.wall += time.perf_counter() - start
                timer = peer.quic.get_timer()
            if timer is not None and (earliest is None or timer < earliest):
                earliest = timer
        return earliest

    def step(self) -> bool:
        """One tick of the link each way; False when nothing is left to do.

        When no datagram moved or waits, the clock goes at least to the next
        timer (a pacing delay, an ACK delay, a loss timer); fired timers leave
        their datagrams for the next step's poll.
        """
        self.poll(self.client)
        if self.server is not None:
            self.poll(self.server)
        moved = self.deliver(self.client, self.server)
        if self.server is not None:
            moved += self.deliver(self.server, self.client)
            moved += len(self.server.queue)
        moved += len(self.client.queue)
        earliest = self.timers()
        if not moved and earliest is None:
            return False
        self.now += self.tick
        if not moved and earliest is not None and earliest > self.now:
            self.now = earliest
        self.timers()
        return True

    def handshake(self, max_rounds: int = 1000) -> None:
        """Run until both sides completed the handshake, then zero the counters."""
        done = self.stack.quic_events.HandshakeCompleted
        for _ in range(max_rounds):
            peers = (self.client, self.server)
            if all(p is not None and any(isinstance(e, done) for e in p.events) for p in peers):
                break
            if not self.step():
                break
        else:
            raise TransferError(f"{self.stack.name}: no handshake in {max_rounds} rounds")
        reason = self.terminated()
        if reason or self.server is None:
            raise TransferError(f"{self.stack.name}: handshake failed ({reason})")
        for peer in (self.client, self.server):
            peer.wall = 0.0
            peer.datagrams = peer.wire = peer.dropped = 0

    def terminated(self) -> str | None:
        """Why a connection closed, if one did."""
        for peer in (self.client, self.server):
            for event in peer.events if peer is not None else ():
                if isinstance(event, self.stack.quic_events.ConnectionTerminated):
                    return f"error {event.error_code}: {event.reason_phrase}"
        return None


def write(sender: Peer, received: int, nbytes: int, payload: bytes) -> None:
    """Top the sender's stream up to IN_FLIGHT bytes ahead of what has been ``received``."""
    if sender.finished or sender.stream_id is None:
        return
    start = time.perf_counter()
    while not sender.finished and sender.written - received < IN_FLIGHT:
        size = min(CHUNK, nbytes - sender.written)
        sender.written += size
        sender.finished = sender.written == nbytes
        data = payload[:size]
        if sender.h3 is not None:
            sender.h3.send_data(sender.stream_id, data, sender.finished)
        else:
            sender.quic.send_stream_data(sender.stream_id, data, sender.finished)
    sender.wall += time.perf_counter() - start


def transfer(
    stack: Stack, direction: str, layer: str, nbytes: int, certdir: Path, setup: Setup
) -> Result:
    """Move ``nbytes`` on one stream in ``direction`` and measure it."""
    payload = bytes(range(256)) * (CHUNK // 256)
    link = Link(stack, layer, certdir, setup)
    client = link.client
    # Expected datagrams at the size used, times a margin for ACKs and timers.
    max_rounds = 200 + 50 * (nbytes // (DATAGRAM_SIZE - 100) + 1)
    link.handshake()
    start = time.process_time()
    # The client opens the stream: a one-byte request for a download, the
    # body itself for an upload.
    stream_id = client.quic.get_next_available_stream_id()
    client.stream_id = stream_id
    if layer == "h3":
        method = b"GET" if direction == "down" else b"POST"
        client.h3.send_headers(
            stream_id, [(b":method", method), *REQUEST_HEADERS], end_stream=direction == "down"
        )
    elif direction == "down":
        client.quic.send_stream_data(stream_id, b"G", end_stream=True)
    for _ in range(max_rounds):
        server = link.server
        if direction == "up":
            write(client, server.received if server is not None else 0, nbytes, payload)
            receiver = server
        else:
            if server is not None and server.stream_id is not None:
                if layer == "h3" and not server.written:
                    server.h3.send_headers(server.stream_id, [(b":status", b"200")])
                write(server, client.received, nbytes, payload)
            receiver = client
        if receiver is not None and receiver.ended:
            break
        if not link.step():
            break
    cpu = time.process_time() - start
    server = link.server
    receiver = client if direction == "down" else server
    received = receiver.received if receiver is not None else 0
    reason = link.terminated()
    if receiver is None or not receiver.ended or received != nbytes:
        raise TransferError(
            f"{stack.name} {layer} {direction}: {received} of {nbytes} bytes arrived"
            f" (stream {'ended' if receiver is not None and receiver.ended else 'open'},"
            f" simulated {link.now:.3f} s{', ' + reason if reason else ''})"
        )
    assert server is not None
    bulk = server if direction == "down" else client
    wall = client.wall + server.wall
    return Result(
        library=stack.name,
        direction=direction,
        layer=layer,
        nbytes=nbytes,
        received=received,
        cpu=cpu,
        server_share=server.wall / wall if wall else 0.0,
        datagrams_down=server.datagrams,
        datagrams_up=client.datagrams,
        datagram_size=bulk.wire / bulk.datagrams if bulk.datagrams else 0.0,
        lost=client.dropped + server.dropped,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--library", action="append", choices=LIBRARIES, help="default: both")
    parser.add_argument("--direction", action="append", choices=DIRECTIONS, help="default: both")
    parser.add_argument("--layer", action="append", choices=LAYERS, help="default: quic")
    parser.add_argument("--mib", type=float, default=32, help="MiB per transfer")
    parser.add_argument("--rounds", type=int, default=3, help="transfers per case; best counts")
    parser.add_argument("--tick", type=float, default=Setup.tick, help="simulated s per round")
    parser.add_argument("--link-mbit", type=float, default=Setup.link_mbit, help="link rate")
    parser.add_argument("--queue-kib", type=int, default=Setup.queue_kib, help="link queue")
    parser.add_argument("--loss", type=float, default=Setup.loss, help="random loss share")
    parser.add_argument("--batch", action="store_true", help="qh3: receive_many_datagrams")
    args = parser.parse_args()
    nbytes = int(args.mib * MIB)
    if (
        nbytes <= 0
        or args.rounds <= 0
        or args.tick <= 0
        or args.link_mbit <= 0
        or args.queue_kib <= 0
    ):
        parser.error("--mib, --rounds, --tick, --link-mbit and --queue-kib must be positive")
    setup = Setup(
        tick=args.tick,
        link_mbit=args.link_mbit,
        queue_kib=args.queue_kib,
        loss=args.loss,
        batch=args.batch,
    )
    stacks = []
    for name in args.library or LIBRARIES:
        stack = load(name)
        if stack is None:
            if args.library:
                parser.error(f"{name} is not installed")
            print(f"{name}: not installed, skipped")
            continue
        stacks.append(stack)
    best: dict[tuple[str, str, str], Result] = {}
    failed = False
    with tempfile.TemporaryDirectory() as tmp:
        certdir = Path(tmp)
        cert, key = generate_self_signed_cert(key_type="ec")
        (certdir / "cert.pem").write_bytes(cert)
        (certdir / "key.pem").write_bytes(key)
        for layer in args.layer or ["quic"]:
            for direction in args.direction or DIRECTIONS:
                # Interleaved, so that a busy spell on the machine hits every library.
                for _ in range(args.rounds):
                    for stack in stacks:
                        key_ = (stack.name, layer, direction)
                        try:
                            result = transfer(stack, direction, layer, nbytes, certdir, setup)
                        except TransferError as exc:
                            print(f"FAILED {exc}", file=sys.stderr)
                            failed = True
                            continue
                        if key_ not in best or result.cpu < best[key_].cpu:
                            best[key_] = result
    print(f"{nbytes} bytes per transfer, best of {args.rounds} by CPU time, both ends together;")
    print(f"link: {setup}")
    print(", ".join(f"{stack.name} {stack.version}" for stack in stacks))
    print("library  layer dir   CPU ms/MiB  server ms/MiB  datagrams down/up  size  lost  arrived")
    for (name, layer, direction), r in sorted(best.items()):
        server_ms = r.cpu_ms_per_mib * r.server_share
        print(
            f"{name:8} {layer:5} {direction:4} {r.cpu_ms_per_mib:11.2f} {server_ms:14.2f}"
            f" {r.datagrams_down:>9}/{r.datagrams_up:<9} {r.datagram_size:5.0f} {r.lost:5}"
            f"  whole ({r.received} bytes)"
        )
    for layer in args.layer or ["quic"]:
        for direction in args.direction or DIRECTIONS:
            old, new = best.get(("aioquic", layer, direction)), best.get(("qh3", layer, direction))
            if old is not None and new is not None:
                server = (old.cpu * old.server_share) / (new.cpu * new.server_share)
                print(
                    f"aioquic / qh3, {layer} {direction}: {old.cpu / new.cpu:.2f}x the CPU"
                    f" (server side {server:.2f}x)"
                )
    if failed:
        sys.exit(1)


if __name__ == "__main__":
    main()
