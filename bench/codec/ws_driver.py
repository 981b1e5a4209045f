"""asgiri's whole WebSocket path in process: H1Protocol, the Upgrade, WSBridge, the bench app.

Each connection starts as a real :class:`asgiri.server.h1.H1Protocol` on a
real event loop and is upgraded by the handshake a client sends (no
compression, as ``ws_bench.py`` asks); from then on every loop turn feeds one
masked client frame (``ws_echo``'s 64-byte binary message by default) to
every connection and waits until each has written its echo.  The transport
only counts what is written.  What is measured is the Python side per
message (no socket system calls): CPU time per message, or, with
``--reads`` given twice under callgrind, instructions per message with
start-up subtracted.

    .venv/bin/python -m bench.codec.ws_driver                          # µs per message
    valgrind --tool=callgrind --callgrind-out-file=/dev/null \\
        .venv/bin/python -m bench.codec.ws_driver --reads 100 --repeat 1   # then --reads 600
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import time
from typing import Any

from bench.app import app
from bench.codec.transport import CountingTransport

from asgiri.config import Config
from asgiri.server.context import ServerContext
from asgiri.server.h1 import H1Protocol

HANDSHAKE = (
    b"GET /ws HTTP/1.1\r\nHost: localhost:8000\r\nUpgrade: websocket\r\n"
    b"Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
    b"Sec-WebSocket-Version: 13\r\nUser-Agent: bench\r\n\r\n"
)


def client_frame(payload: bytes, text: bool) -> bytes:
    """One whole masked frame, as a client sends it."""
    key = os.urandom(4)
    masked = bytes(b ^ key[i & 3] for i, b in enumerate(payload))
    n = len(payload)
    head = bytes((0x81 if text else 0x82,))
    if n < 126:
        head += bytes((0x80 | n,))
    elif n < 65536:
        head += bytes((0xFE,)) + n.to_bytes(2, "big")
    else:
        head += bytes((0xFF,)) + n.to_bytes(8, "big")
    return head + key + masked


class Transport(CountingTransport):
    """Counts the writes of the connection it carries; never pauses."""

    def __init__(self, counter: Counter) -> None:
        super().__init__()
        self.counter = counter
        self.protocol: Any = None
        self.first = b""

    def write(self, data: Any) -> None:
        if not self.first:
            self.first = bytes(data)
        self.written += len(data)
        self.counter.wrote()

    def set_protocol(self, protocol: Any) -> None:
        self.protocol = protocol

    def get_protocol(self) -> Any:
        return self.protocol


class Counter:
    """Wakes the driver once every connection has written what this turn expects."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.left = 0
        self.done: asyncio.Future[None] | None = None

    def expect(self, writes: int) -> asyncio.Future[None]:
        self.left = writes
        self.done = self.loop.create_future()
        return self.done

    def wrote(self) -> None:
        self.left -= 1
        if self.left == 0 and self.done is not None:
            self.done.set_result(None)


async def serve(frame: bytes, size: int, reads: int, connections: int) -> float:
    loop = asyncio.get_running_loop()
    config = Config.from_options(app, access_log=False)
    ctx = ServerContext(config, app, loop, forwarded_allow_ips=None)
    counter = Counter(loop)
    transports = []
    done = counter.expect(connections)  # the 101 answers
    for _ in range(connections):
        transport = Transport(counter)
        proto = H1Protocol(ctx)
        transport.protocol = proto
        proto.connection_made(transport)
        proto.data_received(HANDSHAKE)
        transports.append(transport)
    await asyncio.wait_for(done, 5)
    if not all(t.first.startswith(b"HTTP/1.1 101 ") for t in transports):
        raise RuntimeError("a handshake was not accepted")
    handshake = transports[0].written
    start = time.process_time()
    for _ in range(reads):
        # One frame on every connection per loop turn, as a loaded server sees them.
        done = counter.expect(connections)
        for transport in transports:
            transport.protocol.data_received(frame)
        await done
    elapsed = time.process_time() - start
    echo = size + (2 if size < 126 else 4 if size < 65536 else 10)  # the echoed frame
    for transport in transports:
        if transport.closing or transport.written != handshake + reads * echo:
            raise RuntimeError("a connection did not echo every message")
        transport.protocol.connection_lost(None)
    while ctx.tasks:
        await asyncio.sleep(0)
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=64, help="payload bytes per message")
    parser.add_argument("--text", action="store_true", help="text messages (ASCII)")
    parser.add_argument("--reads", type=int, default=500, help="messages per connection")
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--loop", choices=("uvloop", "asyncio"), default="uvloop")
    args = parser.parse_args()
    if args.loop == "uvloop":
        import uvloop

        uvloop.install()
    frame = client_frame(b"a" * args.size, args.text)
    times = [
        asyncio.run(serve(frame, args.size, args.reads, args.connections))
        for _ in range(args.repeat)
    ]
    n = args.reads * args.connections
    print(
        f"{n} messages per run: best {min(times) / n * 1e6:.2f} µs/message,"
        f" median {statistics.median(times) / n * 1e6:.2f}"
    )


if __name__ == "__main__":
    main()
