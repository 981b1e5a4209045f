"""Dropping a peer that stops reading (``--timeout-write``), the same way on every TCP protocol.

While the transport has paused writing, a client that reads nothing
would hold the connection, its buffers and any app waiting to send
forever.  The watch runs while writing is paused; when the timeout passes
and the write buffer did not shrink, the owner's ``on_stall`` drops the
connection.  A slow reader, whose buffer did shrink, gets another timeout.

The watch holds its owner (the ``on_stall`` callback and the transport) only
while it times: a watch that kept them for the connection's life would make
owner and watch a reference cycle, and every closed connection (with its TLS
buffers) would wait for the cyclic garbage collector instead of being freed
when its last reference goes.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

__all__ = ["WriteStallWatch"]


class WriteStallWatch:
    """One connection's ``--timeout-write`` timer: started on pause_writing, stopped on resume."""

    __slots__ = ("_loop", "_mark", "_on_stall", "_timeout", "_timer", "_transport")

    def __init__(self, loop: asyncio.AbstractEventLoop, timeout: float) -> None:
        self._loop = loop
        self._timeout = timeout
        self._on_stall: Callable[[], None] | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._transport: Any = None
        #: Bytes waiting in the transport when the timer was armed.
        self._mark = 0

    def start(self, transport: Any, on_stall: Callable[[], None]) -> None:
        """Writing paused: start timing, unless the watch already runs."""
        if self._timer is None:
            self._transport = transport
            self._on_stall = on_stall
            self._arm()

    def stop(self) -> None:
        """Writing resumed, or the connection is gone."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._transport = None
        self._on_stall = None

    def _arm(self) -> None:
        self._mark = self._transport.get_write_buffer_size()
        self._timer = self._loop.call_later(self._timeout, self._expired)

    def _expired(self) -> None:
        self._timer = None
        if self._transport.get_write_buffer_size() < self._mark:
            # Slow, but reading: only a client that reads nothing is dropped.
            self._arm()
            return
        on_stall = self._on_stall
        self._transport = None
        self._on_stall = None
        if on_stall is not None:
            on_stall()
