"""Apps for the operations tests (importable as ``apps.ops:NAME`` by the CLI)."""

from __future__ import annotations

import json
import os
from typing import Any

#: What :func:`leak` holds on to: it grows by one block per request, on purpose.
_LEAKED: list[bytes] = []


async def environ(scope: Any, receive: Any, send: Any) -> None:
    """The process environment variables named in the query string, as JSON."""
    if scope["type"] != "http":
        return
    names = scope["query_string"].decode().split(",") if scope["query_string"] else []
    body = json.dumps({name: os.environ.get(name) for name in names}).encode()
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": body})


async def pid(scope: Any, receive: Any, send: Any) -> None:
    """The serving process's id, so that tests can tell workers apart."""
    if scope["type"] != "http":
        return
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": str(os.getpid()).encode()})


async def leak(scope: Any, receive: Any, send: Any) -> None:
    """Keeps ``?mib=N`` MiB per request forever (a leak, for --workers-max-rss)."""
    if scope["type"] != "http":
        return
    query = scope["query_string"].decode()
    mib = int(query.partition("mib=")[2] or 0) if "mib=" in query else 0
    if mib:
        block = bytearray(mib * 1024 * 1024)
        block[::4096] = b"x" * len(block[::4096])  # touch every page: it counts in RSS
        _LEAKED.append(bytes(block))
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": str(os.getpid()).encode()})
