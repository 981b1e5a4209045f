"""QuicRouter (protocol/quic.py) fed datagrams: what it answers before a connection exists."""

from __future__ import annotations

import os

import pytest
from aioquic.buffer import Buffer
from aioquic.quic.configuration import QuicConfiguration
from aioquic.quic.packet import pull_quic_header

from asgiri.protocol.quic import QuicRouter, RouteKind


@pytest.fixture
def router() -> QuicRouter[object]:
    return QuicRouter(QuicConfiguration(is_client=False), retry=False)


def long_header(version: int, size: int, dcid: bytes, scid: bytes) -> bytes:
    head = b"\xc0" + version.to_bytes(4, "big") + bytes([len(dcid)]) + dcid
    head += bytes([len(scid)]) + scid
    return head + os.urandom(size - len(head))


def test_every_unknown_version_gets_version_negotiation(router: QuicRouter[object]) -> None:
    """Only the version-independent header is read (RFC 8999): whatever follows
    the connection ids, in the unknown version's format, does not matter.  QUIC
    v1's parser refused most such packets (their "length" did not fit), and
    the client was left without an answer."""
    for i in range(200):
        dcid, scid = os.urandom(8), os.urandom(i % 21)
        route = router.route(long_header(0x1A2A3A4A + i, 1200, dcid, scid), ("::1", 1), 0.0)
        assert route.kind is RouteKind.REPLY, i
        reply = route.reply
        assert len(reply) < 1200
        header = pull_quic_header(Buffer(data=reply), host_cid_length=8)
        assert header.version == 0  # a Version Negotiation packet
        assert (header.destination_cid, header.source_cid) == (scid, dcid)
        assert 1 in header.supported_versions
    # Connection ids longer than v1's 20 bytes are still those of RFC 8999.
    route = router.route(long_header(0x5A5A5A5A, 1300, b"d" * 200, b"s" * 255), ("::1", 1), 0.0)
    assert route.kind is RouteKind.REPLY


@pytest.mark.parametrize(
    "data",
    [
        long_header(0x1A2A3A4A, 1199, os.urandom(8), os.urandom(8)),  # under 1200 bytes
        long_header(0, 1200, os.urandom(8), os.urandom(8)),  # a Version Negotiation packet
        long_header(0, 40, os.urandom(8), os.urandom(8)),
        b"\xc0\x1a\x2a\x3a\x4a",
    ],
    ids=["short", "version-negotiation", "short-version-negotiation", "bare"],
)
def test_what_is_never_answered(router: QuicRouter[object], data: bytes) -> None:
    assert router.route(data, ("::1", 1), 0.0).kind is RouteKind.DROP
