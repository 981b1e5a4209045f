"""QUIC: ``QuicRouter.route``, what one UDP socket makes of each datagram.

Input: one options byte, one unused byte, then either datagrams (raw mode:
each a two-byte length and its bytes) or, in structured mode, the choices of
a generator of a client's datagrams: Initial packets encrypted with their
real Initial keys (supported versions and others, with no token, a token
from an earlier Retry, or a forged one; padded to 1200 bytes or not),
tampered copies of them, Version Negotiation packets, short-header packets
for known, ended and unknown connection ids, other long headers and garbage.
Packet protection is what raw mutation never gets right, and without it the
router's answers past the header checks are out of reach.

Options: bit 0 structured, bit 1 Retry always (``--quic-retry``), bit 2
Retry now (the server is under load), bit 3 version 1 only (else 1 and 2).

The harness plays the server around the router: NEW registers the
connection's id, and in structured mode a connection may end, leaving its
stateless reset token behind.

Invariants:

* ``route`` never raises;
* it never answers a Version Negotiation packet, garbage or a datagram
  under 1200 bytes, except with a stateless reset (shorter than what
  triggered it, ending with the token) to a short header of an ended
  connection; no answer is larger than the datagram it answers;
* Version Negotiation answers only versions not spoken, with the client's
  ids swapped; Retry answers only an Initial without a token, when Retry is
  on, and is addressed to the client's source id;
* NEW only for an Initial of 1200 bytes or more, of a spoken version; under
  Retry only with a token this router issued; DELIVER only for a
  registered id;
* in structured mode, where the truth is known: an authentic Initial of a
  spoken version, padded, without a token and without Retry, is never
  dropped, and a tampered one never creates a connection.
"""

from __future__ import annotations

import os
import struct
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from aioquic.buffer import Buffer
from aioquic.quic.configuration import QuicConfiguration
from aioquic.quic.crypto import CryptoPair
from aioquic.quic.packet import (
    QuicPacketType,
    QuicProtocolVersion,
    encode_long_header_first_byte,
    pull_quic_header,
)

from asgiri.protocol.quic import QuicRouter, RouteKind

from ..choices import Choices
from ..invariants import check, fail

MAX_LEN = 8192
V1 = QuicProtocolVersion.VERSION_1
V2 = QuicProtocolVersion.VERSION_2
SMALLEST = 1200
ADDRESS = ("192.0.2.1", 4433)
OTHER_ADDRESS = ("2001:db8::1", 443)
#: In raw mode, a registered connection and an ended one (with its reset token).
KNOWN_CID = b"\x01" * 8
ENDED_CID = b"\x02" * 8
ENDED_TOKEN = b"T" * 16


def encode_datagram(data: bytes) -> bytes:
    return struct.pack("!H", len(data)) + data


def datagrams(data: bytes) -> Iterator[bytes]:
    pos = 0
    while len(data) - pos >= 2:
        size = int.from_bytes(data[pos : pos + 2], "big")
        yield data[pos + 2 : pos + 2 + size]
        pos += 2 + size


def encode(options: int, items: list[bytes]) -> bytes:
    """Datagrams as an input of this target (for recording seeds)."""
    return bytes([options, 0]) + b"".join(encode_datagram(d) for d in items)


def initial(
    version: int, dcid: bytes, scid: bytes, token: bytes, payload: bytes, pad_to: int
) -> bytes:
    """A client Initial packet protected with the Initial keys of ``dcid``."""
    crypto = CryptoPair()
    crypto.setup_initial(cid=dcid, is_client=True, version=version)
    buf = Buffer(capacity=64 + len(dcid) + len(scid) + len(token))
    buf.push_uint8(encode_long_header_first_byte(version, QuicPacketType.INITIAL, 1))
    buf.push_uint32(version)
    buf.push_uint8(len(dcid))
    buf.push_bytes(dcid)
    buf.push_uint8(len(scid))
    buf.push_bytes(scid)
    buf.push_uint_var(len(token))
    buf.push_bytes(token)
    header_size = buf.tell() + 4  # (the two-byte length and the packet number)
    payload = payload.ljust(max(20, pad_to - header_size - 16), b"\0")
    buf.push_uint16(0x4000 | (2 + len(payload) + 16))
    buf.push_uint16(0)  # packet number 0
    return crypto.encrypt_packet(buf.data, payload, 0)


@dataclass
class Sent:
    """A datagram and what the harness knows of it."""

    data: bytes
    address: Any
    #: An Initial protected with its real keys, unaltered.
    authentic: bool = False
    #: Altered after protection.
    tampered: bool = False
    #: How many of the bytes the packet protection covers (authentic ones).
    protected: int = 0


class Generator:
    def __init__(self, data: bytes, versions: list[int]) -> None:
        self.choose = Choices(data)
        self.versions = versions
        self.retry_tokens: list[tuple[bytes, bytes]] = []  # (token, retry source cid)
        self.sent: list[Sent] = []

    def cid(self, known: list[bytes]) -> bytes:
        choose = self.choose
        if known and choose.flag():
            return choose.pick(known)
        return choose.data(choose.pick([8, 8, 0, 1, 20, 21]))

    def next(self, known: list[bytes]) -> Sent:
        choose = self.choose
        address = ADDRESS if choose.number(0, 7) else OTHER_ADDRESS
        pick = choose.number(0, 9)
        if pick <= 3:
            version = choose.pick([*self.versions, V1, 0x1A2A3A4A, 0xFF00001D])
            dcid = choose.data(choose.pick([8, 8, 8, 0, 20]))
            scid = choose.data(choose.pick([8, 0, 20]))
            token = b""
            how = choose.number(0, 3)
            if how == 1 and self.retry_tokens:
                token, dcid = choose.pick(self.retry_tokens)
            elif how == 2:
                token = choose.data(choose.number(1, 80))
            payload = choose.some(200)
            pad_to = SMALLEST if choose.number(0, 7) else choose.number(0, 1500)
            data = initial(version, dcid, scid, token, payload, pad_to)
            protected = len(data)
            if choose.number(0, 7) == 0:
                data += choose.some(64)  # coalesced junk
            sent = Sent(data, address, authentic=True, protected=protected)
        elif pick == 4 and self.sent:
            # A tampered copy of something sent before.
            base = choose.pick(self.sent)
            at = choose.number(0, len(base.data) - 1) if base.data else 0
            flipped = bytearray(base.data)
            if flipped:
                flipped[at] ^= choose.number(1, 255)
            # (Bytes coalesced after the packet are not protected.)
            sent = Sent(bytes(flipped), address, tampered=base.authentic and at < base.protected)
        elif pick == 5:
            # Version Negotiation (version 0), padded or not.
            body = struct.pack("!BIB", 0x80 | choose.number(0, 127), 0, 8) + self.cid(known)
            body += b"\x08" + os.urandom(8) + struct.pack("!I", V1)
            sent = Sent(body.ljust(choose.pick([50, 1200, 1300]), b"\0"), address)
        elif pick == 6:
            # A short header for a known, ended or unknown id.
            first = 0x40 | choose.number(0, 63)
            size = choose.pick([5, 22, 23, 40, 100, 1200])
            data = bytes([first]) + self.cid(known) + os.urandom(size)
            sent = Sent(data, address)
        elif pick == 7:
            # A long header of any type and version with garbage inside.
            first = 0xC0 | choose.number(0, 63)
            version = choose.pick([V1, V2, 0x1A2A3A4A, 0])
            data = struct.pack("!BI", first, version) + b"\x08" + self.cid(known).ljust(8, b"c")
            data += b"\x08" + b"s" * 8 + choose.some(64)
            size = choose.pick([0, 1200, 1400])
            sent = Sent(data.ljust(size, b"\0"), address)
        else:
            sent = Sent(choose.some(1300), address)
        self.sent.append(sent)
        return sent


class Run:
    def __init__(self, options: int) -> None:
        configuration = QuicConfiguration(is_client=False)
        if options & 8:
            configuration.supported_versions = [V1]
        self.versions = list(configuration.supported_versions)
        self.always = bool(options & 2)
        self.retry_now = bool(options & 4)
        self.router: QuicRouter[object] = QuicRouter(configuration, retry=self.always)
        self.cid_length = configuration.connection_id_length
        #: Retry tokens this router issued: token -> (address, odcid, retry source cid).
        self.issued: dict[bytes, tuple[Any, bytes, bytes]] = {}
        self.known: dict[bytes, object] = {}
        self.reset_tokens: dict[bytes, bytes] = {}
        self.now = 1000.0

    def register(self, cid: bytes) -> None:
        target = object()
        self.router.add(cid, target)
        self.known[cid] = target

    def end(self, cid: bytes, token: bytes) -> None:
        self.router.remove(cid)
        self.known.pop(cid, None)
        self.router.remember_reset_tokens([(cid, token)])
        self.reset_tokens[cid] = token

    def route(self, sent: Sent) -> Any:
        data = sent.data
        self.now += 0.01
        route = self.router.route(data, sent.address, self.now, retry=self.retry_now)
        header: Any = None
        try:
            header = pull_quic_header(Buffer(data=data), host_cid_length=self.cid_length)
        except Exception:
            header = None
        kind = route.kind
        if kind is RouteKind.DELIVER:
            check(header is not None, "a datagram without a header delivered")
            check(route.target is self.known.get(header.destination_cid), "delivered elsewhere")
        elif kind is RouteKind.REPLY:
            self._reply(sent, header, route.reply)
        elif kind is RouteKind.NEW:
            self._new(sent, header, route)
            self.register(route.destination_cid)
        else:
            check(kind is RouteKind.DROP, f"route {kind}")
            spoken = header is not None and header.version in self.versions
            plain = spoken and len(data) >= SMALLEST and not header.token
            if sent.authentic and plain and not (self.always or self.retry_now):
                fail("an authentic padded Initial without a token was dropped")
        return route

    def _reply(self, sent: Sent, header: Any, reply: bytes) -> None:
        data = sent.data
        if header is None:
            self._negotiate_other_format(data, reply)
            return
        check(reply and len(reply) < len(data), f"a {len(reply)}-byte answer to {len(data)}")
        if header.version is None:
            token = self.reset_tokens.get(header.destination_cid)
            check(token is not None, "a short header of an unknown connection answered")
            check(reply.endswith(token or b"?") and not reply[0] & 0x80, "a malformed reset")
            return
        check(header.version != 0, "a Version Negotiation packet answered")
        check(len(data) >= SMALLEST, f"a {len(data)}-byte long-header datagram answered")
        answer = pull_quic_header(Buffer(data=reply), host_cid_length=len(header.source_cid))
        check(answer.destination_cid == header.source_cid, "an answer to another id")
        if answer.version == 0:
            check(header.version not in self.versions, "Version Negotiation for a spoken version")
            check(answer.source_cid == header.destination_cid, "Version Negotiation ids")
            check(answer.supported_versions == self.versions, "versions offered")
            return
        check(answer.packet_type is QuicPacketType.RETRY, f"answered {answer.packet_type}")
        check(self.always or self.retry_now, "a Retry without Retry on")
        check(header.packet_type is QuicPacketType.INITIAL, "a Retry to a non-Initial")
        check(not header.token, "a Retry to an Initial with a token")
        check(not sent.tampered, "a Retry to a tampered packet")
        self.issued[answer.token] = (sent.address, header.destination_cid, answer.source_cid)

    def _negotiate_other_format(self, data: bytes, reply: bytes) -> None:
        """A long header QUIC v1 cannot parse is answered only with Version Negotiation,
        built from the fields RFC 8999 fixes for every version."""
        fields = invariant_fields(data)
        check(fields is not None, "garbage answered")
        assert fields is not None
        version, dcid, scid = fields
        check(version != 0, "a Version Negotiation packet answered")
        check(version not in self.versions, "a spoken version answered without its header")
        check(len(data) >= SMALLEST, f"a {len(data)}-byte long-header datagram answered")
        answer = invariant_fields(reply)
        check(answer is not None and answer[0] == 0, "answered with other than Version Negotiation")
        check(answer is not None and answer[1:] == (scid, dcid), "Version Negotiation ids")
        offered = reply[7 + len(scid) + len(dcid) :]
        versions = [int.from_bytes(offered[i : i + 4], "big") for i in range(0, len(offered), 4)]
        check(versions == list(self.versions), "versions offered")

    def _new(self, sent: Sent, header: Any, route: Any) -> None:
        check(header is not None and header.version in self.versions, "NEW for no version spoken")
        check(header.packet_type is QuicPacketType.INITIAL, "NEW for a non-Initial")
        check(len(sent.data) >= SMALLEST, "NEW for a datagram under 1200 bytes")
        check(not sent.tampered, "NEW for a tampered packet")
        check(route.destination_cid == header.destination_cid, "NEW with another id")
        issued = self.issued.get(header.token)
        # A token is good from the address it was issued to, sent to the
        # Retry's source id (RFC 9000 8.1.2, 17.2.5.2).
        valid = issued is not None and issued[0] == sent.address
        valid = valid and issued is not None and issued[2] == header.destination_cid
        if self.always or self.retry_now:
            check(valid, "NEW under Retry without a good token issued here")
        if valid and issued is not None:
            check(route.original_destination_cid == issued[1], "original id")
            check(route.retry_source_cid == header.destination_cid, "retry id")
        else:
            check(route.original_destination_cid == header.destination_cid, "original id")


def invariant_fields(data: bytes) -> tuple[int, bytes, bytes] | None:
    """(version, destination id, source id) of a long header, read as RFC 8999 fixes them
    for every QUIC version; None for a short header or one cut short."""
    if len(data) < 7 or not data[0] & 0x80:
        return None
    version = int.from_bytes(data[1:5], "big")
    dlen = data[5]
    if len(data) < 7 + dlen:
        return None
    dcid = data[6 : 6 + dlen]
    slen = data[6 + dlen]
    if len(data) < 7 + dlen + slen:
        return None
    return version, dcid, data[7 + dlen : 7 + dlen + slen]


def one_input(data: bytes) -> None:
    if len(data) < 2:
        return
    options = data[0]
    run = Run(options)
    if not options & 1:
        run.register(KNOWN_CID)
        run.end(ENDED_CID, ENDED_TOKEN)
        for item in datagrams(data[2:]):
            run.route(Sent(item, ADDRESS))
        return
    generator = Generator(data[2:], run.versions)
    for _ in range(16):
        if not generator.choose.left():
            break
        if run.known and generator.choose.number(0, 15) == 0:
            run.end(next(iter(run.known)), generator.choose.data(16).ljust(16, b"t"))
        sent = generator.next([*run.known, *run.reset_tokens])
        run.route(sent)
        generator.retry_tokens = [(t, i[2]) for t, i in run.issued.items()]
