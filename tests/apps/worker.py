"""Apps for the worker-process tests: each answers with the pid that served it."""

from __future__ import annotations

import asyncio
import os
import sys
import time
from typing import Any


def _log_line(line: str) -> None:
    """One line to stdout in one write call (see the /slow request)."""
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


#: While this file exists, lifespan startup fails (a crash loop on demand).
FAIL_MARKER = os.environ.get("ASGIRI_TEST_FAIL_MARKER", "")


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] == "lifespan":
        await receive()
        if FAIL_MARKER and os.path.exists(FAIL_MARKER):
            await send({"type": "lifespan.startup.failed", "message": "marker file present"})
            return
        await send({"type": "lifespan.startup.complete"})
        await receive()
        await send({"type": "lifespan.shutdown.complete"})
        return
    if scope["type"] != "http":
        return
    path = scope["path"]
    if path == "/block":
        time.sleep(3600)  # blocks the event loop: heartbeats stop
    elif path == "/crash":
        os._exit(7)
    elif path == "/slow":
        # One write: the workers share the test's pipe, and print() writes the
        # text and its newline apart when unbuffered, so two lines could merge.
        _log_line(f"slow request started in {os.getpid()}")
        await asyncio.sleep(1.0)
    body = b""
    more = True
    while more:
        message = await receive()
        body += message.get("body", b"")
        more = message.get("more_body", False)
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [(b"content-type", b"text/plain"), (b"x-pid", str(os.getpid()).encode())],
        }
    )
    await send({"type": "http.response.body", "body": str(os.getpid()).encode() + body})
