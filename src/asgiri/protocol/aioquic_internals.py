"""Where asgiri reaches into aioquic's private members: the server's QUIC connection.

aioquic exposes no setting for three things a server needs, so its
``QuicConnection`` is subclassed here, writing private fields and
overriding private methods (``_local_max_streams_bidi``, ``_initialize``,
``tls._max_early_data``, ``_streams``, ``_host_cids``,
``_write_stream_limits``):

* request-body credit tied to consumption.  aioquic raises a stream's
  MAX_STREAM_DATA as bytes *arrive* (it doubles the limit once half of it is
  used), which assumes the application reads everything at once; a server
  that hands the body to an app reading at its own pace would then buffer
  whatever the client sends.  Here a request stream's limit is instead "what
  the app has consumed plus one window": bytes the connection is told are
  *held* (handed to the app, not yet read) are not credited back until
  :meth:`ServerQuicConnection.consume` says so.  Control and QPACK streams,
  and the framing of request streams, are consumed on receipt as before;
* the number of request streams a client may open at once (``--quic-max-streams``);
* session tickets without the 0-RTT invitation unless ``--quic-0rtt``;

and it reads what aioquic keeps to itself: how much of a stream is queued
but unsent, and the stateless reset tokens of a connection that ended.

It also replaces the connection's packet pacer (``_loss._pacer``) with
:class:`BurstPacer`, which keeps aioquic's burst size at high sending rates
(see there), and narrows the streams aioquic walks for every packet it
builds (``_streams``, ``_streams_queue``) to those with something to send
(:meth:`ServerQuicConnection._write_application`).  The packets of a bulk
transfer are built by :class:`ServerPacketBuilder`, a subclass of aioquic's
builder (its ``start_packet``, ``start_frame`` and ``_end_packet``, and the
header protection's ``_mask``), and ``_write_connection_limits`` returns
early when no connection limit is due.

The one other override of aioquic is in :mod:`.h3` (``_ServerH3``: the
SETTINGS the HTTP/3 layer advertises, and a known request stream's data
passed on without aioquic's per-packet context manager).
``pyproject.toml`` bounds the aioquic version to the releases this was
checked against.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from aioquic.buffer import Buffer
from aioquic.quic.configuration import QuicConfiguration
from aioquic.quic.connection import QuicConnection, QuicNetworkPath
from aioquic.quic.crypto import CryptoPair, NoCallback
from aioquic.quic.packet import (
    NON_ACK_ELICITING_FRAME_TYPES,
    NON_IN_FLIGHT_FRAME_TYPES,
    PACKET_FIXED_BIT,
    PACKET_NUMBER_MAX_SIZE,
    QuicFrameType,
    QuicPacketType,
)
from aioquic.quic.packet_builder import (
    PACKET_NUMBER_SEND_SIZE,
    QuicDeliveryHandler,
    QuicPacketBuilder,
    QuicPacketBuilderStop,
    QuicSentPacket,
)
from aioquic.quic.recovery import QuicPacketPacer, QuicPacketSpace
from aioquic.quic.stream import QuicStream
from aioquic.tls import Epoch

__all__ = ["BurstPacer", "ServerPacketBuilder", "ServerQuicConnection"]

#: aioquic's largest pacing burst, in datagrams.
BURST_DATAGRAMS = 16


def _nothing(*args: Any) -> None:
    """What a callback of an ended connection does."""


def _has_output(stream: QuicStream) -> bool:
    """Whether aioquic's send-queue walk would write a frame for ``stream`` or drop it."""
    sender = stream.sender
    return (
        not sender.buffer_is_empty
        or sender.reset_pending
        or stream.receiver.stop_pending
        or stream.is_finished
    )


class BurstPacer(QuicPacketPacer):
    """aioquic's token-bucket pacer, whose burst stays a burst at high rates.

    aioquic sends a datagram every ``packet_time`` (the datagram size over
    the rate ``congestion window / smoothed RTT``) and lets a burst of a
    quarter window, between 2 and 16 datagrams, go out at once: the bucket
    (``bucket_max``) is that burst over the rate.  ``packet_time`` is floored
    at 1 µs, the bucket is not.  Past one datagram per microsecond (a window
    of 1,000 datagrams at a 1 ms RTT, which a loss-free transfer over a fast
    link reaches within a second) the burst shrinks as the window grows,
    down to one datagram, so a bulk download left one or two datagrams per
    event-loop turn, each after a pacing timer: measured over loopback,
    49,000 sends and 24,000 timers for 128 MiB instead of 6,000 and 2,000,
    and twice the CPU per MiB.  Here the bucket is the burst counted in
    floored packet times, which is aioquic's own bucket below that rate.
    """

    def update_rate(self, congestion_window: int, smoothed_rtt: float) -> None:
        super().update_rate(congestion_window, smoothed_rtt)
        size = self._max_datagram_size
        burst = max(2 * size, min(congestion_window // 4, BURST_DATAGRAMS * size)) / size
        assert self.packet_time is not None  # set by update_rate
        self.bucket_max = burst * self.packet_time
        if self.bucket_time > self.bucket_max:
            self.bucket_time = self.bucket_max


_ONE_RTT = QuicPacketType.ONE_RTT
#: Where header protection samples the encrypted payload (RFC 9001 section 5.4.2).
_SAMPLE_AT = PACKET_NUMBER_MAX_SIZE - PACKET_NUMBER_SEND_SIZE
_SAMPLE_END = _SAMPLE_AT + 16
#: Frames whose start is left to aioquic's builder: the ones that are not
#: ack-eliciting or not in flight, or that mark the packet or datagram.
_SPECIAL_FRAMES = frozenset(
    (
        *NON_ACK_ELICITING_FRAME_TYPES,
        *NON_IN_FLIGHT_FRAME_TYPES,
        QuicFrameType.CRYPTO,
        QuicFrameType.PATH_CHALLENGE,
        QuicFrameType.PATH_RESPONSE,
    )
)


class ServerPacketBuilder(QuicPacketBuilder):
    """aioquic's packet builder, with a short path for the packets of a bulk transfer.

    A download of 1 GiB is about 800,000 packets, each a 1-RTT packet alone
    in its datagram with one STREAM frame, and aioquic's builder spends more
    Python per packet than anything else in the server: generic checks for
    every packet type, header bytes written into its buffer and read back,
    the payload copied three times around encryption and header protection.
    Here exactly that case takes a shorter path, to the same bytes and the
    same bookkeeping (tests/protocol/test_quic_sending.py compares them
    with aioquic's builder); anything else (long-header packets, a 1-RTT
    packet coalesced behind one, padding, a key update, a qlog) is left to
    aioquic.  Measured on ``bench/codec/h3_driver.py`` under callgrind: 11%
    fewer instructions per MiB for both ends of a download.

    :meth:`ServerQuicConnection._write_application` makes aioquic's builder
    one of these (aioquic creates it in ``datagrams_to_send``).
    """

    #: The first byte and the peer's connection id, for the key phase in ``_prefix_phase``.
    _prefix = b""
    _prefix_phase = -1

    def start_packet(self, packet_type: QuicPacketType, crypto: CryptoPair) -> None:
        if packet_type is not _ONE_RTT or self._datagram_needs_padding:
            super().start_packet(packet_type, crypto)
            return
        if self._packet is not None:
            self._end_packet()
        buf = self._buffer
        packet_start = buf.tell()
        if self._buffer_capacity - packet_start < 128:  # aioquic's own rule
            self._flush_current_datagram()
            packet_start = 0
        if self._datagram_init:
            if self.max_total_bytes is not None:
                remaining = self.max_total_bytes - self._total_bytes
                if remaining < self._buffer_capacity:
                    self._buffer_capacity = remaining
            self._flight_capacity = self._buffer_capacity
            if self.max_flight_bytes is not None:
                remaining = self.max_flight_bytes - self._flight_bytes
                if remaining < self._flight_capacity:
                    self._flight_capacity = remaining
            self._datagram_flight_bytes = 0
            self._datagram_init = False
        header_size = 1 + len(self._peer_cid) + PACKET_NUMBER_SEND_SIZE
        if packet_start + header_size >= self._buffer_capacity:
            raise QuicPacketBuilderStop
        self._header_size = header_size
        self._packet = packet = QuicSentPacket(
            Epoch.ONE_RTT, False, False, False, self._packet_number, packet_type
        )
        self._packet_crypto = crypto
        self._packet_start = packet_start
        self._packet_type = packet_type
        self.quic_logger_frames = packet.quic_logger_frames
        buf.seek(packet_start + header_size)

    def start_frame(
        self,
        frame_type: int,
        capacity: int = 1,
        handler: QuicDeliveryHandler | None = None,
        handler_args: Sequence[Any] = (),
    ) -> Buffer:
        if frame_type in _SPECIAL_FRAMES:
            return super().start_frame(frame_type, capacity, handler, handler_args)
        buf = self._buffer
        used = buf.tell()
        if used - self._packet_start <= self._header_size and capacity < _SAMPLE_AT:
            capacity = _SAMPLE_AT  # the first frame leaves room for the sample
        assert self._packet is not None and self._packet_crypto is not None
        used += self._packet_crypto.aead_tag_size
        if self._flight_capacity - used < capacity or self._buffer_capacity - used < capacity:
            raise QuicPacketBuilderStop
        buf.push_uint_var(frame_type)
        packet = self._packet
        packet.is_ack_eliciting = True
        packet.in_flight = True
        if handler is not None:
            packet.delivery_handlers.append((handler, handler_args))
        return buf

    def _end_packet(self) -> None:
        buf = self._buffer
        header_size = self._header_size
        end = buf.tell()
        crypto = self._packet_crypto
        packet = self._packet
        if (
            self._packet_type is not _ONE_RTT
            or self._packet_start  # coalesced behind a long-header packet
            or end < header_size + _SAMPLE_AT  # aioquic pads it
            or self._datagram_needs_padding
            or self._quic_logger is not None
            or crypto is None
            or packet is None
            or crypto._update_key_requested
        ):
            super()._end_packet()
            return
        phase = crypto.recv.key_phase
        if phase != self._prefix_phase:
            self._prefix_phase = phase
            first = PACKET_FIXED_BIT | (self._spin_bit << 5) | (phase << 2)
            self._prefix = bytes((first | (PACKET_NUMBER_SEND_SIZE - 1),)) + self._peer_cid
        prefix = self._prefix
        number = self._packet_number
        truncated = number & 0xFFFF  # PACKET_NUMBER_SEND_SIZE bytes
        aead, protection = crypto.send.aead, crypto.send.hp
        assert aead is not None and protection is not None, "Encryption key is not available"
        protected = aead.encrypt(
            buf.data_slice(header_size, end), prefix + truncated.to_bytes(2, "big"), number
        )
        mask = protection._mask(protected[_SAMPLE_AT:_SAMPLE_END])
        datagram = b"".join(
            (
                bytes((prefix[0] ^ (mask[0] & 0x1F),)),
                self._peer_cid,
                (truncated ^ ((mask[1] << 8) | mask[2])).to_bytes(2, "big"),
                protected,
            )
        )
        size = len(datagram)
        packet.sent_bytes = size
        self._packets.append(packet)
        if packet.in_flight:
            self._datagram_flight_bytes += size
        # The datagram ends here (a short header has no length to coalesce behind).
        self._datagrams.append(datagram)
        self._flight_bytes += self._datagram_flight_bytes
        self._total_bytes += size
        self._datagram_init = True
        buf.seek(0)
        self._packet_number = number + 1
        self._packet = None
        self.quic_logger_frames = None


class ServerQuicConnection(QuicConnection):
    """A server-side QuicConnection whose request-body credit follows the app."""

    def __init__(
        self,
        *,
        configuration: QuicConfiguration,
        max_streams: int,
        early_data: bool = False,
        **kwargs: Any,
    ) -> None:
        super().__init__(configuration=configuration, **kwargs)
        self._early_data = early_data
        self._window = configuration.max_stream_data
        #: Request-body bytes per stream handed to the app and not yet read.
        self._held: dict[int, int] = {}
        #: Bytes ever queued per stream, to tell how much still waits to be sent.
        self._written: dict[int, int] = {}
        #: Streams we opened whose writes are counted too (see count_writes).
        self._counted: set[int] = set()
        # aioquic lets a peer open 128 bidirectional streams at once and has
        # no setting for it; the transport parameter is encoded from this
        # limit during the handshake, so set it before any packet is handled.
        self._local_max_streams_bidi.value = max_streams
        self._local_max_streams_bidi.sent = max_streams
        self._loss._pacer = BurstPacer(max_datagram_size=self._max_datagram_size)

    def _initialize(self, peer_cid: bytes) -> None:
        super()._initialize(peer_cid)
        if not self._early_data:
            # aioquic's session tickets always invite 0-RTT; without --quic-0rtt
            # they still give resumption (a shorter handshake), only without
            # early data.  A client that sends early data anyway still gets
            # 425 for unsafe methods (see H3Connection).
            self.tls._max_early_data = None

    def hold(self, stream_id: int, nbytes: int) -> None:
        """``nbytes`` of body went to the app; credit them only once it reads them."""
        self._held[stream_id] = self._held.get(stream_id, 0) + nbytes

    def consume(self, stream_id: int, nbytes: int) -> None:
        """The app read ``nbytes`` of held body: they may be credited again."""
        held = self._held.get(stream_id)
        if held is not None:
            self._held[stream_id] = max(0, held - nbytes)

    def release(self, stream_id: int) -> None:
        """Nobody will read this stream's body any more: credit as aioquic would."""
        self._held.pop(stream_id, None)

    def track(self, stream_id: int) -> None:
        """Start crediting ``stream_id`` by consumption (a request stream)."""
        self._held.setdefault(stream_id, 0)

    def forget(self, stream_id: int) -> None:
        """The stream is over for the server: drop its bookkeeping."""
        self._held.pop(stream_id, None)
        self._written.pop(stream_id, None)
        self._counted.discard(stream_id)

    @property
    def request_streams_open(self) -> bool:
        """Whether a request (or WebTransport) stream still has data of ours unacknowledged.

        Only our side counts: a peer that leaves its side of a stream open
        (it ignored a STOP_SENDING) must not keep a draining connection alive.
        """
        counted = self._counted
        for stream_id, stream in self._streams.items():
            if (stream_id & 3 == 0 or stream_id in counted) and not stream.sender.is_finished:
                return True
        return False

    def reset_tokens(self) -> list[tuple[bytes, bytes]]:
        """This connection's ids with their stateless reset tokens (kept after it ends)."""
        return [
            (host.cid, host.stateless_reset_token)
            for host in self._host_cids
            if host.stateless_reset_token
        ]

    def break_cycles(self) -> None:
        """The connection has ended: drop aioquic's callbacks into this object.

        Its frame handlers, the delivery handlers of packets in flight, its
        loss recovery's ``_send_probe`` and its TLS context's handshake
        callbacks, and its packet-protection contexts' key-log callbacks are
        bound methods of the connection; the cycles they make would leave
        every ended connection (about 700 objects) to the cyclic garbage
        collector.
        """
        self._loss._send_probe = _nothing
        setattr(self, "_QuicConnection__frame_handlers", {})  # noqa: B010 (name-mangled)
        for space in self._spaces.values():
            space.sent_packets.clear()  # their delivery handlers are bound methods
        for pair in [*self._cryptos.values(), *self._cryptos_initial.values()]:
            for context in (pair.recv, pair.send):
                context._setup_cb = context._teardown_cb = NoCallback  # key-log partials
        tls = self.tls
        tls.alpn_cb = None
        tls.get_session_ticket_cb = None
        tls.new_session_ticket_cb = None
        tls.update_traffic_key_cb = _nothing

    def send_stream_data(self, stream_id: int, data: bytes, end_stream: bool = False) -> None:
        super().send_stream_data(stream_id, data, end_stream)
        if stream_id & 3 == 0 or stream_id in self._counted:
            self._written[stream_id] = self._written.get(stream_id, 0) + len(data)

    def count_writes(self, stream_id: int) -> None:
        """Tell :meth:`send_buffered` of a stream of ours (WebTransport), not only requests'."""
        self._counted.add(stream_id)

    def send_buffered(self, stream_id: int) -> int:
        """Bytes queued on ``stream_id`` (a request or WebTransport stream) not on the wire yet."""
        written = self._written.get(stream_id)
        if not written:
            return 0
        stream: QuicStream | None = self._streams.get(stream_id)
        if stream is None:
            return 0
        return max(0, written - stream.sender.highest_offset)

    def _write_application(
        self, builder: QuicPacketBuilder, network_path: QuicNetworkPath, now: float
    ) -> None:
        # aioquic made the builder in datagrams_to_send; its packets from here
        # on take ServerPacketBuilder's shorter path (same fields, so the
        # class can change under it).
        builder.__class__ = ServerPacketBuilder
        # aioquic walks every stream of the connection for every packet it
        # builds: each one's flow-control limit, then the send queue.  An
        # HTTP/3 connection has at least seven (six control and QPACK streams
        # that almost never have anything to say, and the requests): about a
        # tenth of a bulk response's server work went to walking idle streams.
        # The walk is narrowed, for this one call, to the streams with a
        # frame to write, a limit to announce or an ending to record; what it
        # does to those (streams ended and dropped, the new service order) is
        # carried back.
        streams = self._streams
        queue = self._streams_queue
        due = [stream for stream in queue if _has_output(stream)]
        # What the limits walk visits, and where aioquic drops the streams that ended.
        narrowed: dict[int, QuicStream] = {}
        for stream in due:
            if stream.is_finished:
                narrowed[stream.stream_id] = stream  # type: ignore[index]  # set on every stream
        for stream_id, stream in streams.items():
            if stream_id not in narrowed and self._limit_due(stream):
                narrowed[stream_id] = stream
        if len(due) == len(queue) and len(narrowed) == len(streams):
            super()._write_application(builder, network_path, now)
            return
        ids = list(narrowed)
        self._streams = narrowed
        self._streams_queue = due
        try:
            super()._write_application(builder, network_path, now)
        finally:
            served = self._streams_queue  # aioquic's new service order of the due streams
            self._streams = streams
            for stream_id in ids:
                if stream_id not in narrowed:  # ended: aioquic dropped it
                    del streams[stream_id]
            rest = set(due)
            self._streams_queue = [stream for stream in queue if stream not in rest] + served

    def _write_connection_limits(self, builder: QuicPacketBuilder, space: QuicPacketSpace) -> None:
        # Asked for every packet; nearly always there is nothing to raise.
        data = self._local_max_data
        bidi = self._local_max_streams_bidi
        uni = self._local_max_streams_uni
        if (
            data.used * 2 <= data.value
            and data.value == data.sent
            and bidi.value == bidi.sent
            and uni.value == uni.sent
        ):
            return
        super()._write_connection_limits(builder, space)

    def _limit_due(self, stream: QuicStream) -> bool:
        """Whether :meth:`_write_stream_limits` would announce a limit for ``stream`` now."""
        held = self._held.get(stream.stream_id)  # type: ignore[arg-type]
        if held is None:
            local = stream.max_stream_data_local
            # aioquic's own rule: double the limit once half of it arrived.
            return stream.max_stream_data_local_sent != local or bool(
                local and stream.receiver.highest_offset * 2 > local
            )
        credit = stream.receiver.highest_offset - held + self._window
        # Batch updates: only move the limit once a quarter window opened up.
        if credit - stream.max_stream_data_local >= self._window // 4:
            stream.max_stream_data_local = credit
        return stream.max_stream_data_local_sent != stream.max_stream_data_local

    def _write_stream_limits(
        self, builder: QuicPacketBuilder, space: QuicPacketSpace, stream: QuicStream
    ) -> None:
        if not self._limit_due(stream):
            return
        if stream.stream_id not in self._held:
            super()._write_stream_limits(builder, space, stream)
            return
        # aioquic's own rule would double the limit on arrival; hide the
        # arrivals from it so that it only sends the limit set above.
        receiver = stream.receiver
        received = receiver.highest_offset
        receiver.highest_offset = 0
        try:
            super()._write_stream_limits(builder, space, stream)
        finally:
            receiver.highest_offset = received
