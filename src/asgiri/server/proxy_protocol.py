"""Listeners that read a PROXY protocol header before anything else.

The header comes first on the wire, before the TLS handshake, so it cannot be
read by a protocol that asyncio starts after TLS (``create_server(ssl=...)``).
Neither can it be stripped after asyncio has read from the socket, because
``loop.start_tls`` cannot be given bytes that were already read.  So these
listeners accept connections themselves and read *exactly* the header off
each new socket, using ``MSG_PEEK`` to look ahead and consuming only bytes
the parser in :mod:`asgiri.protocol.proxy_protocol` says are header.  The
untouched socket then goes to ``loop.connect_accepted_socket`` with the
listener's SSLContext, and from there on the connection is the same
:class:`~asgiri.server.h1.H1Protocol` (and HTTP/2 through it) as on any
listener, with the addresses from the header as its client and server.

A connection that does not start with a valid header, or does not finish it
within ``--timeout-request-header``, is closed with one log line.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import socket
import ssl
from typing import Any

from ..protocol.proxy_protocol import ProxyProtocolError, parse
from .context import ServerContext
from .h1 import H1Protocol

logger = logging.getLogger("asgiri.error")

#: Bytes looked at per read; a longer v2 header is consumed over several reads.
_PEEK_SIZE = 4096
#: Connections accepted per wake-up before the loop runs other callbacks.
_ACCEPT_BATCH = 64
_EXHAUSTED = (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM)


class ProxyProtocolListener:
    """Accepts on one listening socket; every connection first sends a PROXY header."""

    def __init__(
        self, ctx: ServerContext, sock: socket.socket, ssl_context: ssl.SSLContext | None
    ) -> None:
        self.ctx = ctx
        self.loop = ctx.loop
        self.sock = sock
        self.ssl_context = ssl_context
        self._closed = False
        #: Hand-overs in progress (asyncio keeps only weak references to tasks).
        self._handovers: set[asyncio.Task[Any]] = set()
        self.loop.add_reader(sock.fileno(), self._accept)

    def close(self) -> None:
        """Stop accepting; connections already handed over are the server's to drain."""
        if not self._closed:
            self._closed = True
            self.loop.remove_reader(self.sock.fileno())

    def _accept(self) -> None:
        for _ in range(_ACCEPT_BATCH):
            try:
                conn, _ = self.sock.accept()
            except (BlockingIOError, InterruptedError, ConnectionAbortedError):
                return
            except OSError as exc:
                if exc.errno in _EXHAUSTED:
                    # Out of descriptors: stop accepting for a moment instead
                    # of spinning on a listening socket that stays readable.
                    logger.error("cannot accept connections: %s; retrying in 1s", exc.strerror)
                    self.loop.remove_reader(self.sock.fileno())
                    self.loop.call_later(1.0, self._resume)
                    return
                logger.warning("accepting a connection failed: %s", exc)
                return
            conn.setblocking(False)
            _PendingHeader(self, conn)

    def _resume(self) -> None:
        if not self._closed:
            self.loop.add_reader(self.sock.fileno(), self._accept)

    def hand_over(
        self,
        conn: socket.socket,
        addresses: tuple[tuple[str, int], tuple[str, int]] | None,
    ) -> None:
        """Run HTTP on ``conn`` (TLS first, when the listener has it)."""
        ctx = self.ctx
        task = self.loop.create_task(
            self.loop.connect_accepted_socket(
                lambda: H1Protocol(ctx, addresses), conn, ssl=self.ssl_context
            )
        )
        if self.ssl_context is not None:
            # Until its handshake ends the connection is nobody's: the drain
            # must still wait for it (and cancel it when time runs out).
            ctx.track_handshake_task(task)
        self._handovers.add(task)
        task.add_done_callback(self._handed_over)

    def _handed_over(self, task: asyncio.Task[Any]) -> None:
        self._handovers.discard(task)
        if task.cancelled():
            return
        exc = task.exception()
        if exc is not None:
            # A failed TLS handshake or a client gone meanwhile, as on any listener.
            logger.debug("connection closed before it was served: %s", exc)


class _PendingHeader:
    """One accepted socket whose PROXY header has not been read in full yet."""

    def __init__(self, listener: ProxyProtocolListener, sock: socket.socket) -> None:
        self.listener = listener
        self.ctx = listener.ctx
        self.loop = listener.loop
        self.sock = sock
        self.fd = sock.fileno()
        self.received = b""
        self.done = False
        try:
            self.peer: Any = sock.getpeername()
        except OSError:
            self.peer = None
        self.timer = self.loop.call_later(self.ctx.header_timeout, self._timed_out)
        self.ctx.connections.add(self)
        self.loop.add_reader(self.fd, self._readable)

    def _readable(self) -> None:
        try:
            peeked = self.sock.recv(_PEEK_SIZE, socket.MSG_PEEK)
        except (BlockingIOError, InterruptedError):
            return
        except OSError as exc:
            logger.debug("connection from %s failed before its PROXY header: %s", self.peer, exc)
            self._close()
            return
        if not peeked:
            # Load balancers' TCP health checks connect and close like this.
            logger.debug("connection from %s closed before its PROXY header", self.peer)
            self._close()
            return
        data = self.received + peeked
        try:
            header = parse(data)
        except ProxyProtocolError as exc:
            logger.warning("closing connection from %s: %s", _describe(self.peer), exc)
            self._close()
            return
        # Consume only header bytes: what follows is the client's, for TLS or HTTP.
        wanted = len(peeked) if header is None else header.length - len(self.received)
        try:
            self.received += self.sock.recv(wanted)
        except OSError as exc:
            logger.debug("connection from %s failed in its PROXY header: %s", self.peer, exc)
            self._close()
            return
        if header is None or len(self.received) < header.length:
            return
        self._finish()
        addresses = None
        if header.client is not None and header.server is not None:
            addresses = (header.client, header.server)
        self.listener.hand_over(self.sock, addresses)

    def _timed_out(self) -> None:
        if not self.done:
            logger.warning(
                "closing connection from %s: no complete PROXY protocol header within %gs",
                _describe(self.peer),
                self.ctx.header_timeout,
            )
            self._close()

    def _finish(self) -> None:
        self.done = True
        self.timer.cancel()
        self.loop.remove_reader(self.fd)
        self.ctx.connections.discard(self)
        self.ctx.check_drained()

    def _close(self) -> None:
        if not self.done:
            self._finish()
            self.sock.close()

    # ------------------------------------------------------------ Connection

    def shutdown(self) -> None:
        """Nothing was accepted from this client yet: closing loses no request."""
        self._close()

    def abort(self) -> None:
        self._close()


def _describe(peer: Any) -> str:
    if isinstance(peer, tuple) and len(peer) >= 2:
        host = f"[{peer[0]}]" if ":" in str(peer[0]) else str(peer[0])
        return f"{host}:{peer[1]}"
    return "a Unix socket peer" if peer in ("", None) else str(peer)
