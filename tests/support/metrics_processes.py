"""Processes for the multiprocess metrics test: what a supervisor and its workers do.

``python -m metrics_processes supervisor`` serves the summed metrics of
``PROMETHEUS_MULTIPROC_DIR``; ``python -m metrics_processes worker`` serves
``apps:hello`` counting into that directory without a metrics listener.
"""

from __future__ import annotations

import asyncio
import logging
import sys

from asgiri.server import Server
from asgiri.server.metrics import render_all_processes, start_metrics_listener


async def supervisor() -> None:
    listener = await start_metrics_listener(
        asyncio.get_running_loop(), "127.0.0.1:0", render_all_processes
    )
    print(f"Metrics for all processes on port {listener.port}", flush=True)
    await asyncio.Event().wait()  # until terminated


def main() -> None:
    if sys.argv[1] == "supervisor":
        asyncio.run(supervisor())
        return
    from apps import hello

    logging.basicConfig(level=logging.INFO)
    Server(hello, port=0, metrics_bind="127.0.0.1:0", metrics_listen=False).run()


if __name__ == "__main__":
    main()
