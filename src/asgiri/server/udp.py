"""Datagrams out of a UDP socket, several per system call where the kernel can (UDP GSO).

A QUIC connection sending a bulk response hands over dozens of datagrams
at a time, all of the same size but the last.  Linux (4.18 and later) takes
such a run in one ``sendmsg`` with a ``UDP_SEGMENT`` control message
(generic segmentation offload) and cuts it into datagrams itself, in the
network card when it can: one system call and one trip through the stack
for up to :data:`MAX_SEGMENTS` datagrams instead of one each.

:func:`gso_batches` is the pure part (which datagrams may travel together);
:class:`DatagramSender` writes them, and falls back to the event loop's
datagram transport, one datagram per call, where GSO is missing or fails:

* a socket on which ``UDP_SEGMENT`` cannot even be read (another system,
  an older kernel) never tries it;
* a send the kernel refuses as a whole (``EIO`` from a device that cannot
  checksum the segments, ``EINVAL``, ``ENOPROTOOPT``, ``EOPNOTSUPP``) turns
  GSO off for that socket and goes out again one datagram at a time;
* a full send queue (``EAGAIN``) hands the rest to the transport, which
  keeps datagrams in order and writes them once the socket can take them;
  while the transport holds some, everything goes through it.
"""

from __future__ import annotations

import errno
import logging
import socket
import struct
import sys
from collections.abc import Iterator, Sequence
from typing import Any, Protocol

__all__ = ["MAX_SEGMENTS", "DatagramSender", "Transport", "gso_batches", "gso_supported"]

logger = logging.getLogger("asgiri.error")

#: ``UDP_SEGMENT`` from linux/udp.h (Python's socket module names it only from 3.12 on).
UDP_SEGMENT = getattr(socket, "UDP_SEGMENT", 103)
#: Datagrams per ``sendmsg``: the kernel's limit was 64 when GSO arrived (UDP_MAX_SEGMENTS).
MAX_SEGMENTS = 64
#: Bytes per ``sendmsg``: the stack takes the whole run as one UDP datagram first, so it
#: stays under the largest UDP payload IPv4 allows (65,507 bytes; IPv6 allows 65,527).
MAX_BATCH_BYTES = 65507
#: Errors that mean "this socket (or its device) cannot do GSO", not "this peer is unreachable".
_NO_GSO = frozenset({errno.EIO, errno.EINVAL, errno.ENOPROTOOPT, errno.EOPNOTSUPP})

Address = Any
Datagram = tuple[bytes, Address]


class Transport(Protocol):
    """The event loop's datagram transport, as used here (asyncio's and uvloop's both have
    ``get_write_buffer_size``, which typeshed's ``DatagramTransport`` does not list)."""

    def sendto(self, data: bytes, addr: Address = ..., /) -> None: ...

    def get_write_buffer_size(self) -> int: ...


def gso_batches(datagrams: Sequence[Datagram]) -> Iterator[tuple[int, int, Address]]:
    """``(start, end, address)`` runs of ``datagrams`` that one GSO send may carry.

    A run goes to one address, and its datagrams all have the size of its
    first but the last, which may be shorter (the kernel cuts the run at that
    size); it holds at most :data:`MAX_SEGMENTS` datagrams and
    :data:`MAX_BATCH_BYTES` bytes.  Runs cover ``datagrams`` in order.
    """
    count = len(datagrams)
    start = 0
    while start < count:
        data, addr = datagrams[start]
        size = len(data)
        limit = min(MAX_SEGMENTS, MAX_BATCH_BYTES // size) if size else 1
        end = start + 1
        while end < count and end - start < limit:
            data, next_addr = datagrams[end]
            length = len(data)
            if next_addr != addr or length > size:
                break
            end += 1
            if length < size:
                break  # a shorter datagram ends the run
        yield start, end, addr
        start = end


def gso_supported(sock: socket.socket) -> bool:
    """Whether the kernel takes ``UDP_SEGMENT`` on this socket (read once, at start)."""
    if not sys.platform.startswith("linux") or sock.type != socket.SOCK_DGRAM:
        return False
    try:
        sock.getsockopt(socket.IPPROTO_UDP, UDP_SEGMENT)
    except OSError:
        return False
    return True


class DatagramSender:
    """Sends the datagrams of every QUIC connection on one UDP socket."""

    def __init__(
        self,
        sock: socket.socket | None,
        transport: Transport,
        *,
        gso: bool = True,
    ) -> None:
        self._sock = sock
        self._transport = transport
        #: Whether runs of datagrams go out in one ``sendmsg`` (GSO).
        self.gso = gso and sock is not None and gso_supported(sock)

    def send(self, datagrams: Sequence[Datagram]) -> None:
        """Send ``datagrams`` in order (best effort, as UDP is)."""
        transport = self._transport
        if not self.gso or len(datagrams) < 2 or transport.get_write_buffer_size():
            for data, addr in datagrams:
                transport.sendto(data, addr)
            return
        sock = self._sock
        assert sock is not None  # self.gso implies a socket
        for start, end, addr in gso_batches(datagrams):
            if end - start == 1:
                transport.sendto(datagrams[start][0], addr)
                continue
            segments = [data for data, _ in datagrams[start:end]]
            control = [(socket.IPPROTO_UDP, UDP_SEGMENT, struct.pack("=H", len(segments[0])))]
            try:
                sock.sendmsg(segments, control, 0, addr)
            except BlockingIOError:
                # The send queue is full: the transport keeps the rest in order.
                self._fall_back(datagrams, start)
                return
            except OSError as exc:
                if exc.errno in _NO_GSO:
                    logger.debug(
                        "UDP GSO unavailable on the HTTP/3 socket (%s): sending singly", exc
                    )
                    self.gso = False
                    self._fall_back(datagrams, start)
                    return
                # Something about this peer (unreachable, ...), as the transport
                # would report it: QUIC's own recovery resends or gives up.
                logger.debug("UDP error on the HTTP/3 socket: %s", exc)

    def _fall_back(self, datagrams: Sequence[Datagram], start: int) -> None:
        transport = self._transport
        for data, addr in datagrams[start:]:
            transport.sendto(data, addr)
