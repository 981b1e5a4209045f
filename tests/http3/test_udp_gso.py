"""UDP GSO for HTTP/3 (asgiri.server.udp): which datagrams travel together, and real sends.

``gso_batches`` is pure and is fed lists.  ``DatagramSender`` writes to a real UDP socket
through a real event-loop transport, and a second real socket reads what arrived: every
datagram, intact and in order, whether the kernel cut them from one GSO send, refused GSO
(a socket with ``SO_NO_CHECK``: Linux will not segment without UDP checksums and answers
EINVAL), or GSO was never tried.
"""

from __future__ import annotations

import asyncio
import hashlib
import itertools
import socket
import sys
from collections.abc import Iterator
from typing import Any, cast

import pytest

from asgiri.server.udp import (
    MAX_BATCH_BYTES,
    MAX_SEGMENTS,
    DatagramSender,
    Transport,
    gso_batches,
    gso_supported,
)

pytestmark = pytest.mark.timeout(30)

linux_only = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="UDP GSO is Linux's")
#: SO_NO_CHECK from asm-generic/socket.h: send IPv4 UDP without checksums.
SO_NO_CHECK = getattr(socket, "SO_NO_CHECK", 11)

A = ("127.0.0.1", 4433)
B = ("127.0.0.1", 4434)


def runs(datagrams: list[tuple[bytes, Any]]) -> list[tuple[int, int, Any]]:
    return list(gso_batches(datagrams))


# ----------------------------------------------------------------------------- gso_batches


def test_equal_datagrams_to_one_peer_are_one_run() -> None:
    datagrams = [(b"x" * 1350, A)] * 10
    assert runs(datagrams) == [(0, 10, A)]


def test_a_shorter_last_datagram_ends_its_run() -> None:
    datagrams = [(b"x" * 1350, A)] * 3 + [(b"y" * 200, A)] + [(b"x" * 1350, A)] * 2
    assert runs(datagrams) == [(0, 4, A), (4, 6, A)]


def test_a_larger_datagram_starts_a_new_run() -> None:
    # The kernel cuts a run at the size of its first datagram: a larger one cannot join.
    datagrams = [(b"x" * 300, A), (b"x" * 300, A), (b"x" * 1350, A), (b"x" * 1350, A)]
    assert runs(datagrams) == [(0, 2, A), (2, 4, A)]


def test_another_peer_starts_a_new_run() -> None:
    datagrams = [(b"x" * 1350, A)] * 2 + [(b"x" * 1350, B)] * 2 + [(b"x" * 1350, A)]
    assert runs(datagrams) == [(0, 2, A), (2, 4, B), (4, 5, A)]


def test_runs_stop_at_the_segment_limit() -> None:
    datagrams = [(b"x" * 100, A)] * (2 * MAX_SEGMENTS + 1)
    assert runs(datagrams) == [
        (0, MAX_SEGMENTS, A),
        (MAX_SEGMENTS, 2 * MAX_SEGMENTS, A),
        (2 * MAX_SEGMENTS, 2 * MAX_SEGMENTS + 1, A),
    ]


def test_runs_stop_at_the_byte_limit() -> None:
    size = 9000  # jumbo datagrams: the byte limit comes before the segment limit
    datagrams = [(b"x" * size, A)] * 20
    per_run = MAX_BATCH_BYTES // size
    spans = runs(datagrams)
    assert [end - start for start, end, _ in spans] == [per_run, per_run, 20 - 2 * per_run]
    assert all((end - start) * size <= MAX_BATCH_BYTES for start, end, _ in spans)


def test_runs_cover_everything_in_order() -> None:
    sizes = [1350, 1350, 1350, 80, 1350, 600, 600, 1350, 1350, 1350, 1350, 45]
    datagrams = [(bytes([i]) * size, A if i % 5 else B) for i, size in enumerate(sizes)]
    spans = runs(datagrams)
    assert spans[0][0] == 0 and spans[-1][1] == len(datagrams)
    for (_, end, _), (start, _, _) in itertools.pairwise(spans):
        assert end == start
    for start, end, addr in spans:
        first = len(datagrams[start][0])
        assert all(peer == addr for _, peer in datagrams[start:end])
        assert all(len(data) == first for data, _ in datagrams[start : end - 1])
        assert len(datagrams[end - 1][0]) <= first


def test_nothing_to_send_is_no_run() -> None:
    assert runs([]) == []


# ----------------------------------------------------------------------------- real sockets


def test_gso_is_not_tried_where_udp_segment_does_not_exist() -> None:
    unix_a, unix_b = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
    tcp = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        assert gso_supported(unix_a) is False
        assert gso_supported(tcp) is False
    finally:
        for sock in (unix_a, unix_b, tcp):
            sock.close()


@pytest.fixture
def receiver() -> Iterator[socket.socket]:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
    sock.bind(("127.0.0.1", 0))
    sock.settimeout(5)
    yield sock
    sock.close()


def datagrams_for(peer: Any) -> list[tuple[bytes, Any]]:
    """Three GSO runs' worth: full datagrams with a short last one, then more of both."""
    sizes = [1350] * 50 + [77] + [1350] * 20 + [1200] * 5 + [400]
    return [
        (hashlib.sha256(b"%d" % i).digest() * (size // 32) + bytes(size % 32), peer)
        for i, size in enumerate(sizes)
    ]


def send_through(
    receiver: socket.socket, *, gso: bool, no_checksums: bool = False
) -> tuple[bool, DatagramSender, list[bytes]]:
    """Send :func:`datagrams_for` with a DatagramSender over a real transport; read them.

    Returns whether the sender meant to use GSO before sending, the sender, and the
    datagrams received.
    """
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    sock.setblocking(False)
    if no_checksums:
        sock.setsockopt(socket.SOL_SOCKET, SO_NO_CHECK, 1)
    expected = datagrams_for(receiver.getsockname())

    async def main() -> tuple[bool, DatagramSender]:
        loop = asyncio.get_running_loop()
        transport, _ = await loop.create_datagram_endpoint(asyncio.DatagramProtocol, sock=sock)
        try:
            sender = DatagramSender(sock, cast(Transport, transport), gso=gso)
            planned = sender.gso
            sender.send(expected)
            return planned, sender
        finally:
            await asyncio.sleep(0)
            transport.close()

    planned, sender = asyncio.run(main())
    received = [receiver.recv(65536) for _ in expected]
    return planned, sender, received


@linux_only
def test_gso_sends_every_datagram_intact_and_in_order(receiver: socket.socket) -> None:
    planned, sender, received = send_through(receiver, gso=True)
    assert planned is True
    assert sender.gso is True  # the kernel took every run whole
    assert received == [data for data, _ in datagrams_for(receiver.getsockname())]


@linux_only
def test_a_socket_refusing_gso_falls_back_to_single_datagrams(receiver: socket.socket) -> None:
    # UDP_SEGMENT can be read on this socket, so GSO is tried; the first run is refused
    # (EINVAL: no segmentation without checksums), GSO is turned off and that run and
    # everything after it go out one datagram each.
    planned, sender, received = send_through(receiver, gso=True, no_checksums=True)
    assert planned is True
    assert sender.gso is False
    assert received == [data for data, _ in datagrams_for(receiver.getsockname())]


def test_without_gso_every_datagram_still_arrives(receiver: socket.socket) -> None:
    planned, sender, received = send_through(receiver, gso=False)
    assert planned is False
    assert sender.gso is False
    assert received == [data for data, _ in datagrams_for(receiver.getsockname())]
