"""``--memory-trim-interval``: freed heap memory goes back to the operating system.

The app fragments the heap as bursts of request and response bodies do (see
``apps.mem:fragmented``): without the trim, what it freed stays resident;
with it, the process's RSS comes back down within a few intervals, also for
blocks of 256 KiB and more, which glibc carves from the heap once its
dynamic mmap threshold has risen (the threshold is left to glibc).
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import httpx
import pytest

from asgiri.server.memory import malloc_trim
from tests.support.servers import CLIServer, cli_server

pytestmark = [
    pytest.mark.timeout(60),
    pytest.mark.skipif(malloc_trim is None, reason="the C library has no malloc_trim (not glibc)"),
]

FRAGMENT_MIB = 96
MIB_KIB = 1024


def _rss_kib(srv: CLIServer, path: str = "/rss") -> int:
    return int(httpx.get(f"{srv.url}{path}", timeout=30).text)


@pytest.fixture
def untrimmed() -> Iterator[CLIServer]:
    with cli_server("apps.mem:fragmented", "--port", "0", "--memory-trim-interval", "0") as srv:
        yield srv


@pytest.fixture
def trimmed() -> Iterator[CLIServer]:
    with cli_server("apps.mem:fragmented", "--port", "0", "--memory-trim-interval", "0.2") as srv:
        yield srv


def test_without_the_trim_freed_memory_stays_resident(untrimmed: CLIServer) -> None:
    """The control: what the other test relies on is malloc's behaviour here."""
    before = _rss_kib(untrimmed)
    after = _rss_kib(untrimmed, f"/fragment?mib={FRAGMENT_MIB}")
    assert after - before > FRAGMENT_MIB * MIB_KIB * 2 // 3, (before, after)
    # Asked again, after the request that freed it has long finished: still there.
    assert _rss_kib(untrimmed) - before > FRAGMENT_MIB * MIB_KIB * 2 // 3


def test_the_trim_gives_freed_memory_back(trimmed: CLIServer) -> None:
    before = _rss_kib(trimmed)
    _rss_kib(trimmed, f"/fragment?mib={FRAGMENT_MIB}")
    deadline = time.monotonic() + 20
    while (grown := _rss_kib(trimmed) - before) > 16 * MIB_KIB:
        assert time.monotonic() < deadline, f"RSS still {grown} KiB above its start"
        time.sleep(0.1)


LARGE_BLOCKS = 200  # of 300 KiB: 58.6 MiB, each followed by a 64 KiB block kept (12.5 MiB)
KEPT_KIB = LARGE_BLOCKS * 64


def test_without_the_trim_large_blocks_stay_resident(untrimmed: CLIServer) -> None:
    """The control: glibc's dynamic threshold puts these blocks in the heap."""
    before = _rss_kib(untrimmed)
    after = _rss_kib(untrimmed, f"/large-blocks?count={LARGE_BLOCKS}")
    assert after - before - KEPT_KIB > LARGE_BLOCKS * 300 * 2 // 3, (before, after)


def test_the_trim_gives_large_blocks_back(trimmed: CLIServer) -> None:
    before = _rss_kib(trimmed)
    _rss_kib(trimmed, f"/large-blocks?count={LARGE_BLOCKS}")
    deadline = time.monotonic() + 20
    # What the app keeps and a little allocator slack remain.
    while (grown := _rss_kib(trimmed) - before - KEPT_KIB) > 8 * MIB_KIB:
        assert time.monotonic() < deadline, f"RSS still {grown} KiB above what the app keeps"
        time.sleep(0.1)
