"""Connection-id routing without a server (``protocol/quic.py``), fed datagrams directly.

``tests/http3/test_h3.py`` checks the same decisions from the wire (garbage dropped,
a client that changes address, Retry, stateless resets); these pin down the
short-header shortcut: a packet of a known connection is delivered from its
first byte and connection id alone, and everything else still goes through
the full header parse.  :meth:`QuicRouter.known` is that shortcut on its
own, which the listener asks first.
"""

from __future__ import annotations

import os

from aioquic.quic.configuration import QuicConfiguration
from aioquic.quic.packet import QuicProtocolVersion, encode_quic_version_negotiation

from asgiri.protocol.quic import QuicRouter, RouteKind

NOW = 1000.0
ADDR = ("127.0.0.1", 4433)


def router() -> tuple[QuicRouter[str], bytes]:
    """A router with one connection, ``"conn"``, under a fresh connection id."""
    configuration = QuicConfiguration(is_client=False)
    r: QuicRouter[str] = QuicRouter(configuration, retry=False)
    cid = os.urandom(configuration.connection_id_length)
    r.add(cid, "conn")
    return r, cid


def short(cid: bytes, first: int = 0x41, size: int = 1200) -> bytes:
    """A short-header packet (the payload is random: routing never decrypts it)."""
    return bytes([first]) + cid + os.urandom(size - 1 - len(cid))


def test_a_known_connections_short_header_packet_is_delivered() -> None:
    r, cid = router()
    for first in (0x40, 0x41, 0x5F, 0x7F):  # any spin, key phase, packet number length
        route = r.route(short(cid, first), ADDR, NOW)
        assert route.kind is RouteKind.DELIVER
        assert route.target == "conn"
        assert r.known(short(cid, first)) == "conn"
    # The smallest packet that still holds the connection id.
    assert r.route(bytes([0x40]) + cid, ADDR, NOW).target == "conn"


def test_the_fixed_bit_clear_is_not_quic() -> None:
    r, cid = router()
    assert r.known(short(cid, 0x01)) is None
    assert r.route(short(cid, 0x01), ADDR, NOW).kind is RouteKind.DROP


def test_a_truncated_or_unknown_connection_id_is_dropped() -> None:
    r, cid = router()
    assert r.route(bytes([0x40]) + cid[:-1], ADDR, NOW).kind is RouteKind.DROP
    assert r.route(short(os.urandom(len(cid))), ADDR, NOW).kind is RouteKind.DROP
    assert r.known(b"") is None
    assert r.route(b"", ADDR, NOW).kind is RouteKind.DROP
    r.remove(cid)
    assert r.route(short(cid), ADDR, NOW).kind is RouteKind.DROP


def test_a_forgotten_connection_still_gets_its_stateless_reset() -> None:
    r, cid = router()
    r.remove(cid)
    token = os.urandom(16)
    r.remember_reset_tokens([(cid, token)])
    route = r.route(short(cid, size=100), ADDR, NOW)
    assert route.kind is RouteKind.REPLY
    assert route.reply.endswith(token)
    assert len(route.reply) < 100


def test_long_header_packets_take_the_full_parse() -> None:
    r, cid = router()
    # A long header (an unknown version, an unknown destination id) whose
    # bytes after the first happen to be a known connection id is not that
    # connection's packet: it gets Version Negotiation, not delivery.
    datagram = bytes([0xC0]) + b"\x0a\x0a\x0a\x0a" + bytes([len(cid)]) + os.urandom(len(cid))
    datagram += b"\x00\x00"  # no source id, no token
    rest = 1200 - len(datagram) - 2
    datagram += (0x4000 | rest).to_bytes(2, "big") + os.urandom(rest)
    r.add(datagram[1 : 1 + len(cid)], "not this one")
    assert r.known(datagram) is None
    route = r.route(datagram, ADDR, NOW)
    assert route.kind is RouteKind.REPLY
    assert route.reply[0] & 0x80  # a long header: Version Negotiation
    # A long-header packet of a known connection is still delivered.
    vn = encode_quic_version_negotiation(
        source_cid=os.urandom(8),
        destination_cid=cid,
        supported_versions=[QuicProtocolVersion.VERSION_1],
    )
    assert r.route(vn, ADDR, NOW).target == "conn"
