"""QUIC without I/O: which connection an incoming UDP datagram belongs to.

Everything QUIC itself does (handshake, loss recovery, congestion control,
packet protection) is aioquic's :class:`~aioquic.quic.connection.QuicConnection`
(asgiri's subclass, with request-body credit tied to the app, is
:class:`~asgiri.protocol.aioquic_internals.ServerQuicConnection`).  A server
also needs what comes before a connection exists, here, on aioquic's public
API only:

* :class:`QuicRouter` decides what one incoming UDP datagram is: a packet
  for a known connection (looked up by destination connection id, so a
  client whose address changes keeps its connection), the Initial packet of
  a new connection, a version the server does not speak (answered with
  Version Negotiation), a first Initial that must prove its address first
  (answered with a Retry: always under ``--quic-retry``, otherwise only while
  the server is under load), or garbage, which is dropped
  without a word: answering garbage would make the server a reflector.
"""

from __future__ import annotations

import enum
import os
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from aioquic.buffer import Buffer, BufferReadError
from aioquic.quic.configuration import SMALLEST_MAX_DATAGRAM_SIZE, QuicConfiguration
from aioquic.quic.crypto import CryptoError, CryptoPair
from aioquic.quic.packet import (
    QuicPacketType,
    encode_quic_retry,
    encode_quic_version_negotiation,
    pull_quic_header,
)
from aioquic.quic.retry import QuicRetryTokenHandler

__all__ = ["Address", "QuicRouter", "Route", "RouteKind"]

Address = Any  # (host, port) or (host, port, flowinfo, scope_id)
#: Connection ids of ended connections whose reset token is remembered.
_RESET_TOKENS_KEPT = 10000
#: A stateless reset is at least 22 bytes (RFC 9000 10.3: 5 unpredictable
#: bytes and the 16-byte token after the first byte) and smaller than the
#: packet that triggered it.
_MIN_RESET_TRIGGER = 23
_RESET_SIZE = 42
#: A short header (RFC 9000 17.3): the long-header bit clear, the fixed bit set.
_SHORT_HEADER_MASK = 0xC0
_SHORT_HEADER = 0x40
T = TypeVar("T")


def _authentic_initial(
    data: bytes, payload_offset: int, length: int, header: Any, version: int
) -> bool:
    """Whether the first packet decrypts with the Initial keys of its connection id.

    Initial keys derive from public values, so this proves no identity; it
    proves the sender ran QUIC.  Without it, each 1200 bytes of random data
    with a plausible header would cost a connection object until the idle
    timeout ends it.
    """
    crypto = CryptoPair()
    try:
        crypto.setup_initial(cid=header.destination_cid, is_client=False, version=version)
        crypto.decrypt_packet(data[:length], payload_offset, 0)
    except (CryptoError, ValueError):
        return False
    return True


class RouteKind(enum.Enum):
    """What one incoming datagram turned out to be."""

    #: A packet for a known connection: hand it to ``Route.target``.
    DELIVER = "deliver"
    #: The Initial packet of a new connection: create one and register it.
    NEW = "new"
    #: A stateless answer (Version Negotiation, Retry) is in ``Route.reply``.
    REPLY = "reply"
    #: Not QUIC, too short, or for a connection that no longer exists.
    DROP = "drop"


@dataclass(slots=True)
class Route(Generic[T]):
    kind: RouteKind
    target: T | None = None
    reply: bytes = b""
    #: For NEW: the client's chosen destination cid (routes its next packets).
    destination_cid: bytes = b""
    #: For NEW: what the QuicConnection needs to be created.
    original_destination_cid: bytes = b""
    retry_source_cid: bytes | None = None


class QuicRouter(Generic[T]):
    """Connection-id routing for one UDP socket; ``T`` is whatever serves a connection."""

    def __init__(self, configuration: QuicConfiguration, *, retry: bool) -> None:
        self._cid_length = configuration.connection_id_length
        self._versions = list(configuration.supported_versions)
        #: Retry for every new connection (``--quic-retry``), not only under load.
        self._always = retry
        self._retry = QuicRetryTokenHandler()
        self._targets: dict[bytes, T] = {}
        #: Stateless reset tokens of connections that ended, newest last.
        self._reset_tokens: OrderedDict[bytes, bytes] = OrderedDict()

    def __len__(self) -> int:
        return len(self._targets)

    def add(self, cid: bytes, target: T) -> None:
        self._targets[cid] = target

    def remove(self, cid: bytes) -> None:
        self._targets.pop(cid, None)

    def remember_reset_tokens(self, tokens: list[tuple[bytes, bytes]]) -> None:
        """Connection ids of a connection that is gone, with their stateless reset tokens."""
        for cid, token in tokens:
            self._reset_tokens[cid] = token
            self._reset_tokens.move_to_end(cid)
        while len(self._reset_tokens) > _RESET_TOKENS_KEPT:
            self._reset_tokens.popitem(last=False)

    def _stateless_reset(self, cid: bytes, received: int) -> Route[T]:
        token = self._reset_tokens.get(cid)
        if token is None or received < _MIN_RESET_TRIGGER:
            return Route(RouteKind.DROP)
        # Shorter than what triggered it, so two endpoints can never loop;
        # unpredictable bytes before the token so it looks like any packet.
        size = min(received - 1, _RESET_SIZE)
        first = 0x40 | (os.urandom(1)[0] & 0x3F)
        return Route(RouteKind.REPLY, reply=bytes([first]) + os.urandom(size - 17) + token)

    def _negotiate(self, data: bytes) -> Route[T]:
        """A long header of a version this server does not speak: Version Negotiation.

        Only what RFC 8999 fixes for every version is read (the two
        connection ids after the version): the rest of the packet is in the
        unknown version's format, which QUIC v1's parser would often refuse
        (a length field that does not fit), leaving the client unanswered.
        One answer per datagram, shorter than it, and none to a datagram
        under 1200 bytes (RFC 9000 6.1), so the server amplifies nothing.
        """
        if len(data) < SMALLEST_MAX_DATAGRAM_SIZE:
            return Route(RouteKind.DROP)
        # At most 6 + 255 + 1 + 255 bytes: both ids are within the 1200.
        dcid_end = 6 + data[5]
        scid_end = dcid_end + 1 + data[dcid_end]
        return Route(
            RouteKind.REPLY,
            reply=encode_quic_version_negotiation(
                source_cid=data[6:dcid_end],
                destination_cid=data[dcid_end + 1 : scid_end],
                supported_versions=self._versions,
            ),
        )

    def known(self, data: bytes) -> T | None:
        """The connection of a short-header packet of a known connection, else None.

        Nearly every datagram is one; its connection id sits right after the
        first byte.  Parsing the whole header (and building a :class:`Route`)
        for it costs a few percent of a bulk transfer, and the connection
        parses the header again anyway.  None means "ask :meth:`route`".
        """
        if data and data[0] & _SHORT_HEADER_MASK == _SHORT_HEADER:
            return self._targets.get(data[1 : 1 + self._cid_length])
        return None

    def route(self, data: bytes, addr: Address, now: float, *, retry: bool = False) -> Route[T]:
        """Classify one datagram; never raises on malformed input.

        ``retry``: answer new connections with a Retry now (the server is
        under load), even when Retry is not always on.
        """
        target = self.known(data)
        if target is not None:
            return Route(RouteKind.DELIVER, target=target)
        if len(data) >= 5 and data[0] & 0x80:
            long_version = int.from_bytes(data[1:5], "big")
            if long_version and long_version not in self._versions:
                return self._negotiate(data)
        buf = Buffer(data=data)
        try:
            header = pull_quic_header(buf, host_cid_length=self._cid_length)
        except (ValueError, BufferReadError):
            return Route(RouteKind.DROP)
        target = self._targets.get(header.destination_cid)
        if target is not None:
            return Route(RouteKind.DELIVER, target=target)
        version = header.version
        if version is None:
            # A short-header packet for a connection we do not know: if it
            # is one we closed, tell the client at once (RFC 9000 10.3).
            return self._stateless_reset(header.destination_cid, len(data))
        if header.packet_type is QuicPacketType.VERSION_NEGOTIATION:
            return Route(RouteKind.DROP)  # a server never takes these
        if len(data) < SMALLEST_MAX_DATAGRAM_SIZE:
            # RFC 9000 14.1: Initial datagrams are padded to 1200 bytes, and
            # anything smaller is not worth an answer (no amplification).
            return Route(RouteKind.DROP)
        if header.packet_type is not QuicPacketType.INITIAL:
            return Route(RouteKind.DROP)
        if not _authentic_initial(data, buf.tell(), header.packet_length, header, version):
            # Well-formed header, garbage inside: no state, no answer.
            return Route(RouteKind.DROP)
        if header.token:
            try:
                original = self._retry.validate_token(
                    address=addr,
                    destination_cid=header.destination_cid,
                    token=header.token,
                    now=now,
                )
            except ValueError:
                if retry or self._always:
                    # A forged, stale or replayed token: say nothing (RFC
                    # 9000 8.1.3 allows dropping), so a spoofed source gets
                    # no answer at all.
                    return Route(RouteKind.DROP)
            else:
                return Route(
                    RouteKind.NEW,
                    destination_cid=header.destination_cid,
                    original_destination_cid=original,
                    retry_source_cid=header.destination_cid,
                )
        elif retry or self._always:
            source_cid = os.urandom(self._cid_length)
            token = self._retry.create_token(
                address=addr,
                original_destination_connection_id=header.destination_cid,
                retry_source_connection_id=source_cid,
                now=now,
            )
            return Route(
                RouteKind.REPLY,
                reply=encode_quic_retry(
                    version=version,
                    source_cid=source_cid,
                    destination_cid=header.source_cid,
                    original_destination_cid=header.destination_cid,
                    retry_token=token,
                ),
            )
        return Route(
            RouteKind.NEW,
            destination_cid=header.destination_cid,
            original_destination_cid=header.destination_cid,
        )
