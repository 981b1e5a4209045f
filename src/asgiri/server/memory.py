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

glibc's mmap threshold is left to glibc (or to ``MALLOC_MMAP_THRESHOLD_``).
Holding it at 256 KiB, as this once did, made every block from there up a
fresh mapping of zeroed pages: echoing 1 MiB WebSocket messages cost 2.2-2.5
ms of CPU each instead of 0.9-1.2.  What had made workers grow with the
dynamic threshold was closed connections left to the cyclic garbage
collector, with their TLS buffers (fixed at the source, see
``tests/contract/test_garbage.py``); with them freed at once the trim alone
keeps the soak's workers flat (docs/operations.md).
"""

from __future__ import annotations

import asyncio
import ctypes
from collections.abc import Callable

__all__ = ["HeapTrimmer", "malloc_trim"]


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


class HeapTrimmer:
    """Calls ``malloc_trim(0)`` every ``interval`` seconds while started."""

    def __init__(self, loop: asyncio.AbstractEventLoop, interval: float) -> None:
        self._loop = loop
        self._interval = interval
        self._timer: asyncio.TimerHandle | None = None

    def start(self) -> None:
        if self._interval > 0 and malloc_trim is not None and self._timer is None:
            self._timer = self._loop.call_later(self._interval, self._trim)

    def stop(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _trim(self) -> None:
        assert malloc_trim is not None  # start() checked
        malloc_trim(0)
        self._timer = self._loop.call_later(self._interval, self._trim)
