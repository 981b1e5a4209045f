"""Giving freed heap memory back to the operating system: ``--memory-trim-interval``.

glibc's malloc returns memory to the kernel only from the top of its heap.
A server's memory is a mix of long-lived blocks (connections, parsers, the
app's objects) and bursts of short-lived buffers (request and response
bodies, TLS records); after a burst the freed space lies between live
blocks, stays resident, and the worker's RSS ratchets up to its busiest
moment and never comes down, although Python holds nothing more (measured
with the soak, docs/operations.md: a worker's heap 25 -> 42 MiB in four
minutes with the bytes in use flat at ~25 MiB).  ``malloc_trim(0)`` hands
the free pages inside the heap back (``MADV_DONTNEED``); it takes 0.2-1.5 ms
on such a heap, so it runs on the event loop every few seconds.  Elsewhere
(musl, macOS, Windows) there is no such call and this does nothing.

The trim alone does not keep a worker flat: a page with one live block on
it stays resident, and glibc's *dynamic* mmap threshold makes it worse.
Blocks from 128 KiB up start out as their own mmap (unmapped on free), but
each such free raises the threshold to the block's size (up to 32 MiB), so
after the first 4 MiB body every read buffer and joined body below 4 MiB is
carved from the heap between long-lived blocks.  With the threshold held at
256 KiB the soak's workers stayed at 56-60 MiB for minutes (heap 10-13 MiB)
where they had climbed from 60 to 80 MiB (heap 20 -> 38 MiB) with the trim
alone.  An operator who sets ``MALLOC_MMAP_THRESHOLD_`` keeps that choice.
"""

from __future__ import annotations

import asyncio
import ctypes
import os
from collections.abc import Callable

__all__ = ["MMAP_THRESHOLD", "HeapTrimmer", "hold_mmap_threshold", "malloc_trim"]

#: Blocks this large or larger get their own mmap (see the module docstring).
MMAP_THRESHOLD = 256 * 1024
#: ``mallopt``'s parameter number for it (glibc's malloc.h).
_M_MMAP_THRESHOLD = -3


def _libc_function(name: str, *argtypes: type) -> Callable[..., int] | None:
    try:
        function = getattr(ctypes.CDLL(None), name)
    except (OSError, AttributeError):
        return None
    function.argtypes = list(argtypes)
    function.restype = ctypes.c_int
    return function  # type: ignore[no-any-return]


#: glibc's ``malloc_trim``, or None where the C library has none.
malloc_trim: Callable[[int], int] | None = _libc_function("malloc_trim", ctypes.c_size_t)
_mallopt = _libc_function("mallopt", ctypes.c_int, ctypes.c_int) if malloc_trim else None


def hold_mmap_threshold() -> None:
    """Fix glibc's mmap threshold at :data:`MMAP_THRESHOLD` (unless the operator chose one)."""
    if _mallopt is not None and "MALLOC_MMAP_THRESHOLD_" not in os.environ:
        _mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD)


class HeapTrimmer:
    """Calls ``malloc_trim(0)`` every ``interval`` seconds while started."""

    def __init__(self, loop: asyncio.AbstractEventLoop, interval: float) -> None:
        self._loop = loop
        self._interval = interval
        self._timer: asyncio.TimerHandle | None = None

    def start(self) -> None:
        if self._interval > 0 and malloc_trim is not None and self._timer is None:
            hold_mmap_threshold()
            self._timer = self._loop.call_later(self._interval, self._trim)

    def stop(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _trim(self) -> None:
        assert malloc_trim is not None  # start() checked
        malloc_trim(0)
        self._timer = self._loop.call_later(self._interval, self._trim)
