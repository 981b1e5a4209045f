"""How the server's QUIC connections send (protocol/aioquic_internals.py).

A bulk response must leave in bursts whatever the sending rate: each flush
the server makes costs a system call, a pass through the event loop and
usually a pacing timer, so one or two datagrams per flush doubles the CPU a
download costs (BurstPacer; docs/performance.md, "HTTP/3 bulk transfers").
And aioquic's walk over the streams for each packet is narrowed to those
with output, which must leave every stream's bookkeeping as aioquic's own
walk would.
"""

from __future__ import annotations

import ssl
from statistics import mean

import pytest
from aioquic.quic.configuration import QuicConfiguration
from aioquic.quic.connection import QuicConnection
from aioquic.quic.crypto import CryptoPair
from aioquic.quic.packet import QuicFrameType, QuicPacketType, QuicProtocolVersion
from aioquic.quic.packet_builder import QuicPacketBuilder, QuicPacketBuilderStop
from aioquic.quic.recovery import QuicPacketPacer

from asgiri.config import Config
from asgiri.protocol.aioquic_internals import (
    BURST_DATAGRAMS,
    BurstPacer,
    ServerPacketBuilder,
    ServerQuicConnection,
)
from asgiri.server.h3 import quic_configuration
from asgiri.ssl_utils import generate_self_signed_cert

SIZE = 1350
ADDR = ("127.0.0.1", 4433)


def burst(pacer: QuicPacketPacer, now: float) -> int:
    """Datagrams the pacer lets out at ``now`` before it asks to wait."""
    sent = 0
    while pacer.next_send_time(now) is None and sent < 1000:
        pacer.update_after_send(now)
        sent += 1
    return sent


@pytest.mark.parametrize(("window_datagrams", "aioquic_burst"), [(3_000, 6), (100_000, 1)])
def test_fast_rates_keep_the_burst(window_datagrams: int, aioquic_burst: int) -> None:
    """Past 1,000 datagrams per millisecond the time per packet is floored at
    1 µs; aioquic's bucket is not, and shrinks as the window grows."""
    ours, theirs = BurstPacer(max_datagram_size=SIZE), QuicPacketPacer(max_datagram_size=SIZE)
    for pacer in (ours, theirs):
        pacer.update_rate(congestion_window=window_datagrams * SIZE, smoothed_rtt=0.001)
        pacer.update_bucket(now=1.0)  # a full bucket after a quiet second
    assert burst(ours, 1.0) == BURST_DATAGRAMS
    assert burst(theirs, 1.0) == aioquic_burst  # what the override is for


@pytest.mark.parametrize(
    ("window_datagrams", "rtt"), [(10, 0.1), (40, 0.05), (64, 0.01), (900, 0.001)]
)
def test_slower_rates_pace_as_aioquic_does(window_datagrams: int, rtt: float) -> None:
    ours, theirs = BurstPacer(max_datagram_size=SIZE), QuicPacketPacer(max_datagram_size=SIZE)
    for pacer in (ours, theirs):
        pacer.update_rate(congestion_window=window_datagrams * SIZE, smoothed_rtt=rtt)
    assert ours.packet_time == theirs.packet_time
    assert ours.bucket_max == pytest.approx(theirs.bucket_max)
    for pacer in (ours, theirs):
        pacer.update_bucket(now=1.0)
    sent = burst(ours, 1.0)
    assert sent == burst(theirs, 1.0)
    # A quarter window, at least 2 and at most 16 (one more where the float sum lands above).
    assert 0 <= sent - min(BURST_DATAGRAMS, max(2, window_datagrams // 4)) <= 1


@pytest.fixture(scope="module")
def server_configuration() -> QuicConfiguration:
    cert, key = generate_self_signed_cert("localhost", key_type="ec")
    return quic_configuration(Config.from_options("tests.apps:hello", cert_data=cert, key_data=key))


def bulk_flushes(
    server_configuration: QuicConfiguration, pacer: type[QuicPacketPacer]
) -> tuple[list[int], ServerQuicConnection]:
    """Datagrams per ``datagrams_to_send`` call of a server sending 4 MiB on one
    stream to an aioquic client, datagrams passed in memory every 0.2 ms, and
    the server's connection once the client acknowledged everything.  The
    client has three more streams open, idle throughout."""
    client = QuicConnection(
        configuration=QuicConfiguration(
            is_client=True, alpn_protocols=["h3"], verify_mode=ssl.CERT_NONE
        )
    )
    now = 1.0
    client.connect(ADDR, now=now)
    server = ServerQuicConnection(
        configuration=server_configuration,
        max_streams=100,
        original_destination_connection_id=client.original_destination_connection_id,
    )
    assert isinstance(server._loss._pacer, BurstPacer)  # what every server connection gets
    server._loss._pacer = pacer(max_datagram_size=server_configuration.max_datagram_size)
    stream_id = client.get_next_available_stream_id()
    client.send_stream_data(stream_id, b"GET", end_stream=True)
    for _ in range(3):  # streams that stay open and idle, as HTTP/3's control streams do
        client.send_stream_data(client.get_next_available_stream_id(is_unidirectional=True), b"c")
    body = 4 << 20
    server_sent = False
    received = 0
    flushes: list[int] = []
    for _ in range(20_000):
        now += 0.0002
        for data, _ in client.datagrams_to_send(now=now):
            server.receive_datagram(data, ADDR, now=now)
        while (event := server.next_event()) is not None:
            if getattr(event, "stream_id", None) == stream_id and not server_sent:
                server.send_stream_data(stream_id, b"x" * body, end_stream=True)
                server_sent = True
        datagrams = server.datagrams_to_send(now=now)
        if server_sent and datagrams:
            flushes.append(len(datagrams))
        for data, _ in datagrams:
            client.receive_datagram(data, ADDR, now=now)
        while (event := client.next_event()) is not None:
            received += len(getattr(event, "data", b""))
        if received == body:
            for _ in range(20):  # the client's last acknowledgements
                now += 0.0002
                for data, _ in client.datagrams_to_send(now=now):
                    server.receive_datagram(data, ADDR, now=now)
                for data, _ in server.datagrams_to_send(now=now):
                    client.receive_datagram(data, ADDR, now=now)
            return flushes, server
    raise AssertionError(f"transfer stalled at {received} of {body} bytes")


def test_a_bulk_stream_leaves_in_bursts(server_configuration: QuicConfiguration) -> None:
    """Once the window has grown (the last 50 flushes of the transfer), each flush
    carries a full burst; with aioquic's own pacer, at the same point, fewer
    than half as many, and falling as the window grows."""
    ours, _ = bulk_flushes(server_configuration, BurstPacer)
    theirs, _ = bulk_flushes(server_configuration, QuicPacketPacer)
    assert mean(ours[-50:]) >= BURST_DATAGRAMS - 1
    assert mean(theirs[-50:]) <= BURST_DATAGRAMS / 2
    assert len(ours) * 3 < len(theirs) * 2


def test_the_narrowed_walk_keeps_the_streams_bookkeeping(
    server_configuration: QuicConfiguration,
) -> None:
    """The finished stream is dropped from the connection and its send queue, as
    aioquic's own walk drops it, and the queue still holds every other stream."""
    _, server = bulk_flushes(server_configuration, BurstPacer)
    assert sorted(server._streams) == [2, 6, 10]  # stream 0 ended and was dropped
    assert sorted(stream.stream_id for stream in server._streams_queue) == [2, 6, 10]


# ---------------------------------------------------------------- the packet builder

HOST_CID, PEER_CID = bytes(range(8)), bytes(range(8, 16))
STREAM = QuicFrameType.STREAM_BASE | 2 | 4


def _handler(*args: object) -> None:
    """A delivery handler; the packets must record it with its arguments."""


def _crypto(key_phase: int = 0, is_client: bool = False) -> CryptoPair:
    crypto = CryptoPair()
    crypto.setup_initial(HOST_CID, is_client=is_client, version=QuicProtocolVersion.VERSION_1)
    crypto.recv.key_phase = crypto.send.key_phase = key_phase
    return crypto


def _stream_frame(builder: QuicPacketBuilder, data: bytes, offset: int) -> None:
    buf = builder.start_frame(STREAM, capacity=8, handler=_handler, handler_args=(offset, data))
    buf.push_uint_var(0)
    buf.push_uint_var(offset)
    buf.push_uint16(len(data) | 0x4000)
    buf.push_bytes(data)


def _bulk(builder: QuicPacketBuilder, crypto: CryptoPair) -> None:
    """1-RTT packets of one STREAM frame each, the size a bulk transfer sends, then smaller."""
    for offset, size in enumerate([1300, 1300, 700, 1, 1300]):
        builder.start_packet(QuicPacketType.ONE_RTT, crypto)
        _stream_frame(builder, bytes([offset]) * size, offset * 1300)


def _ack_only(builder: QuicPacketBuilder, crypto: CryptoPair) -> None:
    builder.start_packet(QuicPacketType.ONE_RTT, crypto)
    buf = builder.start_frame(QuicFrameType.ACK, capacity=8)
    buf.push_bytes(b"\x05\x00\x00\x05")
    builder.start_packet(QuicPacketType.ONE_RTT, crypto)  # then an empty packet: cancelled
    builder.start_packet(QuicPacketType.ONE_RTT, crypto)
    _stream_frame(builder, b"after", 0)


def _tiny(builder: QuicPacketBuilder, crypto: CryptoPair) -> None:
    """A payload too short for the header-protection sample: aioquic pads it."""
    builder.start_packet(QuicPacketType.ONE_RTT, crypto)
    builder.start_frame(QuicFrameType.PING)


def _coalesced(builder: QuicPacketBuilder, crypto: CryptoPair) -> None:
    """A 1-RTT packet behind a HANDSHAKE packet, in the same datagram."""
    builder.start_packet(QuicPacketType.HANDSHAKE, crypto)
    buf = builder.start_frame(QuicFrameType.CRYPTO, capacity=8, handler=_handler)
    buf.push_uint_var(0)
    buf.push_uint_var(100)
    buf.push_bytes(b"h" * 100)
    builder.start_packet(QuicPacketType.ONE_RTT, crypto)
    _stream_frame(builder, b"behind", 0)
    builder.start_packet(QuicPacketType.ONE_RTT, crypto)
    _stream_frame(builder, b"alone", 6)


def _path_challenge(builder: QuicPacketBuilder, crypto: CryptoPair) -> None:
    """PATH_CHALLENGE pads its datagram to the full size."""
    builder.start_packet(QuicPacketType.ONE_RTT, crypto)
    builder.start_frame(QuicFrameType.PATH_CHALLENGE, capacity=9).push_bytes(bytes(8))
    builder.start_packet(QuicPacketType.ONE_RTT, crypto)
    _stream_frame(builder, b"next", 0)


def _key_update(builder: QuicPacketBuilder, crypto: CryptoPair) -> None:
    builder.start_packet(QuicPacketType.ONE_RTT, crypto)
    _stream_frame(builder, b"old keys", 0)
    crypto.update_key()  # the next packet is the first in the new phase
    builder.start_packet(QuicPacketType.ONE_RTT, crypto)
    _stream_frame(builder, b"new keys", 8)
    builder.start_packet(QuicPacketType.ONE_RTT, crypto)
    _stream_frame(builder, b"and again", 16)


def _until_stopped(builder: QuicPacketBuilder, crypto: CryptoPair) -> None:
    """Full packets until the congestion or anti-amplification limit stops the builder."""
    with pytest.raises(QuicPacketBuilderStop):
        for offset in range(100):
            builder.start_packet(QuicPacketType.ONE_RTT, crypto)
            _stream_frame(builder, b"z" * 1300, offset * 1300)


SCRIPTS = {
    "bulk": (_bulk, {}),
    "bulk, key phase 1, spin bit": (_bulk, {"key_phase": 1, "spin_bit": True}),
    "ack only": (_ack_only, {}),
    "tiny": (_tiny, {}),
    "coalesced": (_coalesced, {}),
    "path challenge": (_path_challenge, {}),
    "key update": (_key_update, {}),
    "congestion window": (_until_stopped, {"max_flight_bytes": 4000}),
    "anti-amplification": (_until_stopped, {"max_total_bytes": 3000}),
    "window below one packet": (_until_stopped, {"max_flight_bytes": 600}),
}


def _build(cls: type[QuicPacketBuilder], name: str) -> tuple[list[bytes], list[tuple[object, ...]]]:
    script, options = SCRIPTS[name]
    builder = cls(
        host_cid=HOST_CID,
        peer_cid=PEER_CID,
        version=QuicProtocolVersion.VERSION_1,
        is_client=False,
        max_datagram_size=SIZE,
        packet_number=70_000,  # past 2**16: the truncated number wraps
        spin_bit=options.get("spin_bit", False),
    )
    builder.max_flight_bytes = options.get("max_flight_bytes")
    builder.max_total_bytes = options.get("max_total_bytes")
    script(builder, _crypto(options.get("key_phase", 0)))
    datagrams, packets = builder.flush()
    return datagrams, [
        (
            p.epoch,
            p.packet_type,
            p.packet_number,
            p.in_flight,
            p.is_ack_eliciting,
            p.is_crypto_packet,
            p.sent_bytes,
            [(handler, tuple(args)) for handler, args in p.delivery_handlers],
        )
        for p in packets
    ] + [(builder.packet_number, builder._flight_bytes, builder._total_bytes)]


@pytest.mark.parametrize("name", SCRIPTS)
def test_the_server_builder_builds_aioquics_packets(name: str) -> None:
    """The same calls give the same datagrams, byte for byte, and the same records."""
    datagrams, records = _build(ServerPacketBuilder, name)
    assert datagrams  # the script built something
    assert (datagrams, records) == _build(QuicPacketBuilder, name)


def test_the_server_builders_packets_decrypt() -> None:
    """What the short path builds, a receiver opens: header protection removed,
    the packet number recovered past the wrap, the payload authenticated."""
    datagrams, _ = _build(ServerPacketBuilder, "bulk, key phase 1, spin bit")
    receiver = _crypto(key_phase=1, is_client=True)
    for number, datagram in enumerate(datagrams, start=70_000):
        assert datagram[0] & 0x20  # the spin bit
        header, payload, packet_number = receiver.decrypt_packet(
            datagram, 1 + len(PEER_CID), number
        )
        assert packet_number == number
        assert header[0] & 0x04  # key phase 1
        assert payload[0] == STREAM


def test_every_server_connection_builds_with_the_short_path(
    server_configuration: QuicConfiguration, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The bulk transfer above went through ServerPacketBuilder, and arrived whole."""
    built = 0
    original = ServerPacketBuilder._end_packet

    def end_packet(self: ServerPacketBuilder) -> None:
        nonlocal built
        built += 1
        original(self)

    monkeypatch.setattr(ServerPacketBuilder, "_end_packet", end_packet)
    bulk_flushes(server_configuration, BurstPacer)
    assert built > 3000  # 4 MiB in 1350-byte datagrams
