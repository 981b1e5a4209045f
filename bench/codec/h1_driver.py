"""asgiri's whole HTTP/1.1 path in process: H1Protocol, HTTPStream and the bench app.

Client bytes are fed to real :class:`asgiri.server.h1.H1Protocol` objects on
a real event loop, with a transport that only counts what is written; after
each read the loop runs until every app task of that read is done.  Three
loads: ``hello`` (one ``GET /`` per read, as wrk sends them), ``echo`` (one
``POST /echo`` with a 4 KiB body per read) and ``pipelined`` (16 ``GET /``
per read).  What is measured is the Python side per request (no socket
system calls): CPU time per request, or, with ``--reads`` given twice under
callgrind, instructions per request with start-up subtracted.

    .venv/bin/python -m bench.codec.h1_driver hello                   # µs per request
    valgrind --tool=callgrind --callgrind-out-file=/dev/null \\
        .venv/bin/python -m bench.codec.h1_driver hello --reads 20 --repeat 1   # then --reads 120
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time

from bench.app import app
from bench.codec.transport import CountingTransport

from asgiri.config import Config
from asgiri.server.context import ServerContext
from asgiri.server.h1 import H1Protocol

GET = b"GET / HTTP/1.1\r\nHost: localhost:8000\r\nUser-Agent: bench\r\nAccept: */*\r\n\r\n"
ECHO_BODY = b"x" * 4096
ECHO = (
    b"POST /echo HTTP/1.1\r\nHost: localhost:8000\r\nUser-Agent: bench\r\n"
    b"Content-Type: application/octet-stream\r\nContent-Length: %d\r\n\r\n%b"
    % (len(ECHO_BODY), ECHO_BODY)
)
#: Each load: the bytes of one read, and the requests in it.
LOADS = {"hello": (GET, 1), "echo": (ECHO, 1), "pipelined": (GET * 16, 16)}


async def serve(data: bytes, per_read: int, reads: int, connections: int) -> float:
    loop = asyncio.get_running_loop()
    config = Config.from_options(app, access_log=False)
    ctx = ServerContext(config, app, loop, forwarded_allow_ips=None)
    protocols = []
    for _ in range(connections):
        transport = CountingTransport()
        proto = H1Protocol(ctx)
        proto.connection_made(transport)
        protocols.append((proto, transport))
    start = time.process_time()
    for _ in range(reads):
        # One read on every connection per loop turn, as a loaded server sees them.
        for proto, _ in protocols:
            proto.data_received(data)
        while ctx.tasks:
            await asyncio.sleep(0)
    elapsed = time.process_time() - start
    for proto, transport in protocols:
        if transport.closing or transport.written < reads * per_read * 13:
            raise RuntimeError("the connection did not serve every request")
        proto.connection_lost(None)
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("load", choices=sorted(LOADS))
    parser.add_argument("--reads", type=int, default=200, help="reads per connection")
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--loop", choices=("uvloop", "asyncio"), default="uvloop")
    args = parser.parse_args()
    if args.loop == "uvloop":
        import uvloop

        uvloop.install()
    data, per_read = LOADS[args.load]
    times = [
        asyncio.run(serve(data, per_read, args.reads, args.connections)) for _ in range(args.repeat)
    ]
    n = args.reads * per_read * args.connections
    print(
        f"{n} requests per run: best {min(times) / n * 1e6:.2f} µs/request,"
        f" median {statistics.median(times) / n * 1e6:.2f}"
    )


if __name__ == "__main__":
    main()
