"""asgiri's whole HTTP/2 path in process: H2Protocol, HTTPStream and the bench app.

The same client bytes as ``h2_codec.py`` (one connection, 16 GETs per read)
are fed to a real :class:`asgiri.server.h2.H2Protocol` on a real event loop,
with a transport that only collects what is written; after each read the loop
runs until every app task of that read is done.  What is measured is the
Python side per request (no socket system calls): CPU time per request, or,
with ``--reads`` given twice under callgrind, instructions per request with
start-up subtracted.

    .venv/bin/python -m bench.codec.h2_driver                      # µs per request
    valgrind --tool=callgrind --callgrind-out-file=/dev/null \\
        .venv/bin/python -m bench.codec.h2_driver --reads 50 --repeat 1   # then --reads 250

``--codec`` is ``--h2-codec`` (nghttp2 or h2; default auto).
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time

from bench.app import app
from bench.codec.h2_codec import BODY, STREAMS, client_reads
from bench.codec.transport import CountingTransport

from asgiri.config import Config
from asgiri.server.context import ServerContext
from asgiri.server.h2 import H2Protocol


async def serve(reads: list[bytes], connections: int, codec: str) -> float:
    loop = asyncio.get_running_loop()
    config = Config.from_options(app, access_log=False, h2_codec=codec)
    ctx = ServerContext(config, app, loop, forwarded_allow_ips=None)
    start = time.process_time()
    for _ in range(connections):
        transport = CountingTransport()
        proto = H2Protocol(
            ctx, transport, scheme="http", client=("127.0.0.1", 1), server=None, extensions={}
        )
        proto.start(b"")
        for data in reads:
            proto.data_received(data)
            while ctx.tasks:
                await asyncio.sleep(0)
            await asyncio.sleep(0)  # the flush scheduled by the last app
        if transport.closing or transport.written < len(reads) * STREAMS * len(BODY):
            raise RuntimeError("the connection did not serve every request")
        proto.connection_lost(None)
    return time.process_time() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reads", type=int, default=250, help="reads per connection (16 each)")
    parser.add_argument("--connections", type=int, default=4)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--loop", choices=("uvloop", "asyncio"), default="uvloop")
    parser.add_argument("--codec", choices=("auto", "nghttp2", "h2"), default="auto")
    args = parser.parse_args()
    if args.loop == "uvloop":
        import uvloop

        uvloop.install()
    reads = client_reads(args.reads)
    times = [asyncio.run(serve(reads, args.connections, args.codec)) for _ in range(args.repeat)]
    n = args.reads * STREAMS * args.connections
    print(
        f"{n} requests per run: best {min(times) / n * 1e6:.2f} µs/request,"
        f" median {statistics.median(times) / n * 1e6:.2f}"
    )


if __name__ == "__main__":
    main()
