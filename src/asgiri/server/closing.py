"""Closing a TCP or TLS transport without waiting on the peer, the same way for every protocol.

``transport.close()`` on TLS sends close_notify and then waits (asyncio and
uvloop: up to 30 s) for the peer's close_notify before the socket goes.
Clients keep idle keep-alive connections in a pool and answer nothing until
they use them, so every graceful close of an idle TLS connection (keep-alive
timeout, graceful shutdown, the end of a WebSocket) held its socket, and a
drain, for that long.  Nothing of the peer's is needed once our last bytes
have arrived, so here a closing TLS transport is aborted as soon as
everything written has been delivered: the transport's buffer is empty and
the kernel's send queue (on Linux, where it can be read) is acknowledged.
A peer that reads nothing for :data:`LINGER` seconds is not waited for;
one that reads slowly still gets every byte.  Cleartext transports close on
their own once flushed.
"""

from __future__ import annotations

import asyncio
import contextlib
import struct
from typing import Any

try:
    import fcntl
    import termios
except ImportError:  # not a Unix: only the transport's own buffer is seen
    fcntl = termios = None  # type: ignore[assignment]

__all__ = ["LINGER", "close_transport"]

#: How long a closing TLS transport may deliver nothing before it is aborted.
LINGER = 1.0
#: How often a closing transport is looked at.
_POLL = 0.05
_TIOCOUTQ: int | None = getattr(termios, "TIOCOUTQ", None) if termios is not None else None


def close_transport(transport: Any, loop: asyncio.AbstractEventLoop) -> None:
    """Close gracefully: what was written is delivered first; a TLS peer is not waited for."""
    if transport.is_closing():
        return
    transport.close()
    if transport.get_extra_info("ssl_object") is not None:
        loop.call_later(_POLL, _watch, transport, loop, _pending(transport), 0.0, False)


def _pending(transport: Any) -> int:
    """Bytes written but not yet delivered: the transport's buffer and the kernel's queue."""
    pending: int = transport.get_write_buffer_size()
    sock = transport.get_extra_info("socket")
    if _TIOCOUTQ is not None and sock is not None:
        with contextlib.suppress(OSError, ValueError):
            fd = sock.fileno()
            if fd >= 0:
                pending += struct.unpack("i", fcntl.ioctl(fd, _TIOCOUTQ, b"\0\0\0\0"))[0]
    return pending


def _watch(
    transport: Any, loop: asyncio.AbstractEventLoop, mark: int, still: float, empty: bool
) -> None:
    pending = _pending(transport)
    if pending == 0:
        if empty:
            # Empty twice in a row: the loop would have refilled the kernel's
            # queue from the transport's buffer in between, so all is out.
            # (Aborting a transport that has already gone is a no-op.)
            transport.abort()
            return
        loop.call_later(_POLL, _watch, transport, loop, 0, 0.0, True)
        return
    if pending < mark:
        still = 0.0
    else:
        still += _POLL
        if still >= LINGER:
            transport.abort()  # the peer reads nothing: do not wait for it
            return
    loop.call_later(_POLL, _watch, transport, loop, min(pending, mark), still, False)
