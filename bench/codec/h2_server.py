"""A bare HTTP/2 hello server over one codec: the ceiling of a codec on a real socket.

No ASGI, no per-stream state beyond the codec's: every request is answered with
the bench app's 13-byte hello as soon as its read is parsed, and the answers of
one read leave in one write.  It shows what h2load sees from a codec alone, and
whether the codec keeps serving a long-lived connection.

    taskset -c 1 .venv/bin/python -m bench.codec.h2_server --codec zttp --port 8100 &
    taskset -c 0 h2load -c16 -m16 -D 5 http://127.0.0.1:8100/
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Callable
from typing import Any

from bench.codec.h2_codec import h2_asgiri, rh2_server, zttp_server

FACTORIES: dict[str, Callable[[], Callable[[bytes], bytes]]] = {
    "h2": h2_asgiri,
    "zttp": zttp_server,
    "rh2": rh2_server,
}


class Handler(asyncio.Protocol):
    def __init__(self, factory: Callable[[], Callable[[bytes], bytes]]) -> None:
        self.serve = factory()
        self.transport: Any = None

    def connection_made(self, transport: Any) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        try:
            out = self.serve(data)
        except Exception as exc:
            print(f"connection ended: {exc!r}", file=sys.stderr)
            self.transport.close()
            return
        if out:
            self.transport.write(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--codec", choices=sorted(FACTORIES), default="h2")
    parser.add_argument("--port", type=int, default=8100)
    args = parser.parse_args()
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    loop = asyncio.new_event_loop()
    factory = FACTORIES[args.codec]
    server = loop.run_until_complete(
        loop.create_server(lambda: Handler(factory), "127.0.0.1", args.port)
    )
    print(f"serving {args.codec} on {args.port}", flush=True)
    try:
        loop.run_forever()
    finally:
        server.close()


if __name__ == "__main__":
    main()
