"""Apps for the memory tests (served by the CLI as ``apps.mem:NAME``).

Both move a lot of data through the server while holding almost none
themselves, so any growth of the server process is the server's buffering.
"""

from __future__ import annotations

import asyncio
from typing import Any

CHUNK = 64 * 1024
#: Bytes per second the upload app "processes": far below what a client on
#: loopback can send, so without backpressure the server would buffer.
UPLOAD_RATE = 128 * 1024 * 1024
_BLOCK = bytearray(b"\xa5" * CHUNK)


def _query_int(scope: Any, name: str, default: int) -> int:
    for part in scope["query_string"].decode().split("&"):
        key, _, value = part.partition("=")
        if key == name and value:
            return int(value)
    return default


async def download(scope: Any, receive: Any, send: Any) -> None:
    """``GET /?mib=N``: N MiB in 64 KiB chunks, each sent with more_body=True."""
    if scope["type"] != "http":
        return
    total = _query_int(scope, "mib", 1) * 1024 * 1024
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [
                (b"content-type", b"application/octet-stream"),
                (b"content-length", str(total).encode()),
            ],
        }
    )
    for _ in range(total // CHUNK):
        # A fresh object per chunk, as real apps produce: a server that
        # queued them all would hold every byte (not one shared buffer).
        chunk = bytes(_BLOCK)
        await send({"type": "http.response.body", "body": chunk, "more_body": True})
    await send({"type": "http.response.body", "body": b"", "more_body": False})


async def upload(scope: Any, receive: Any, send: Any) -> None:
    """Count the request body at ``UPLOAD_RATE`` (slower than the client); answer the count."""
    if scope["type"] != "http":
        return
    count = 0
    messages = 0
    while True:
        message = await receive()
        if message["type"] != "http.request":
            return
        count += len(message["body"])
        messages += 1
        await asyncio.sleep(len(message["body"]) / UPLOAD_RATE)
        if not message.get("more_body", False):
            break
    body = f"{count} {messages}".encode()
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [(b"content-type", b"text/plain")],
        }
    )
    await send({"type": "http.response.body", "body": body})


async def blob(scope: Any, receive: Any, send: Any) -> None:
    """``GET /N?kib=K``: K KiB (default 64) in one body message; ``x-n: N`` names the answer."""
    if scope["type"] != "http":
        return
    body = b"\xa5" * (_query_int(scope, "kib", 64) * 1024)
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [(b"x-n", scope["path"][1:].encode())],
        }
    )
    await send({"type": "http.response.body", "body": body})


#: Every 64th block of :func:`fragmented`'s allocations, kept for the process's life.
_PINNED: list[bytes] = []
_BIG: list[bytes] = []
#: Size of the block :func:`fragmented` keeps after each large one.
PIN = 64 * 1024


def _rss_kib() -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError("no VmRSS in /proc/self/status")


async def fragmented(scope: Any, receive: Any, send: Any) -> None:
    """``GET /fragment?mib=N`` fragments the heap the way bursts of bodies do:
    N MiB of 1 KiB blocks (past pymalloc's 512 bytes, so from malloc), every
    64th kept, the rest freed before answering; the free space lies between
    kept blocks, where malloc cannot give it back by itself.  ``GET /rss``:
    the process's resident set in KiB."""
    if scope["type"] != "http":
        return
    if scope["path"] == "/fragment":
        count = _query_int(scope, "mib", 96) * 1024
        blocks = [bytes([i & 0xFF]) * 1024 for i in range(count)]
        _PINNED.extend(blocks[63::64])
        del blocks
    elif scope["path"] == "/large-blocks":
        # A freed 8 MiB block raises glibc's dynamic mmap threshold to 8 MiB;
        # then 300 KiB blocks (a large read, a joined body), each followed by
        # a block that stays (64 KiB: too large for the free space the heap
        # already has, so it comes from the top, right after the large one):
        # from the heap, their space would stay resident after they are freed.
        del _BIG[:]
        _BIG.append(bytes(8 << 20))
        del _BIG[:]
        large = []
        for i in range(_query_int(scope, "count", 200)):
            large.append(bytes([i & 0xFF]) * (300 * 1024))
            _PINNED.append(bytes([i & 0xFF]) * PIN)
        del large
    body = b"%d" % _rss_kib()
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": body})
