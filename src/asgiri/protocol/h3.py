"""HTTP/3 without I/O, on aioquic: datagrams in, the same stream events as HTTP/2 out.

:class:`H3Connection` drives one QUIC connection (a
:class:`~asgiri.protocol.aioquic_internals.ServerQuicConnection`) and aioquic's HTTP/3
layer on top of it.  ``receive_datagram`` / ``handle_timer`` return
:mod:`asgiri.protocol.events` (``Request``, ``Body``, ``EndBody``,
``StreamClosed``, with the QUIC stream id as ``stream_id``) plus the
connection-level events below; ``send_headers`` / ``send_data`` /
``send_trailers`` queue a response and ``datagrams_to_send`` hands out what
is ready.  Time is a parameter (``now``), never read here.

Rules a server needs beyond aioquic's HTTP/3 layer:

* a request head that breaks the field rules HTTP/2 and HTTP/3 share
  (:func:`~asgiri.protocol.fields.check_header_block`: pseudo-header fields,
  field characters, ``:authority`` against Host, Content-Length) has its
  stream reset with H3_MESSAGE_ERROR (RFC 9114 4.1.2), as does a body that
  grows past its Content-Length (aioquic itself closes the connection when
  the stream ends short of it, or with a Content-Length that is not a
  number); a plain CONNECT (a tunnel, not
  served) with H3_CONNECT_ERROR, an extended CONNECT for a protocol not
  served with H3_REQUEST_REJECTED;
* after our GOAWAY, new request streams are refused with
  H3_REQUEST_REJECTED, so the client may retry them elsewhere;
* requests the server answers itself are reported as
  :class:`~asgiri.protocol.events.RequestRejected`: a head over the header
  limits (431), a body over ``max_body`` (413, declared or as it grows), and,
  with 0-RTT enabled, a request that arrived before the handshake completed
  and whose method is not safe (``425 Too Early``, RFC 8470: 0-RTT data can
  be replayed).

Frame and QPACK errors are aioquic's to detect; it closes the connection
with the matching H3 error code (H3_FRAME_UNEXPECTED, H3_MESSAGE_ERROR,
QPACK_DECOMPRESSION_FAILED...), which arrives here as ``ConnectionEnded``.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

from aioquic.buffer import encode_uint_var
from aioquic.h3.connection import ErrorCode, FrameType, Setting, encode_frame
from aioquic.h3.connection import H3Connection as _AioH3
from aioquic.h3.events import (
    DatagramReceived,
    DataReceived,
    HeadersReceived,
    WebTransportStreamDataReceived,
)
from aioquic.h3.events import H3Event as _AioH3Event
from aioquic.h3.exceptions import H3Error
from aioquic.quic import events as quic_events

from .aioquic_internals import ServerQuicConnection
from .events import (
    Body,
    ConnectionEnded,
    EndBody,
    Headers,
    Request,
    RequestRejected,
    StreamClosed,
    StreamEvent,
)
from .fields import MalformedRequest, check_header_block
from .quic import Address
from .response import ResponseChecker, wire_fields
from .webtransport import WebTransportDatagram, WebTransportStreamData, WebTransportStreamReset

__all__ = [
    "ConnectionEnded",
    "ConnectionIdIssued",
    "ConnectionIdRetired",
    "H3Connection",
    "H3ErrorCode",
    "H3Event",
]

H3ErrorCode = ErrorCode

#: Methods that may be answered from 0-RTT data (RFC 9110 9.2.1, RFC 8470).
_SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
#: QUIC events that end a stream from the client's side (a tuple: checked once per event).
_STREAM_ENDERS = (quic_events.StreamReset, quic_events.StopSendingReceived)
#: The server's first unidirectional stream, which aioquic's HTTP/3 layer
#: opens as the control stream before any other (RFC 9000 2.1: id 3).
_CONTROL_STREAM_ID = 3


_MAX_FIELD_SECTION_SIZE = 0x6  # SETTINGS_MAX_FIELD_SECTION_SIZE (RFC 9114 7.2.4.1)


class _ServerH3(_AioH3):
    """aioquic's HTTP/3 layer with the server's own SETTINGS.

    aioquic always advertises extended CONNECT; here it is advertised only
    when a protocol is served over it (WebSocket, RFC 9220; WebTransport),
    and the header limit is announced so that clients know it before they
    hit it.  With WebTransport on, aioquic adds SETTINGS_ENABLE_WEBTRANSPORT
    and SETTINGS_H3_DATAGRAM.

    The data of a request stream it already knows skips aioquic's
    generator-based context manager (``_receive_stream_data``): an upload
    passes through it once per packet.
    """

    def __init__(
        self,
        quic: ServerQuicConnection,
        enable_connect: bool,
        max_header_size: int,
        enable_webtransport: bool,
    ):
        self._asgiri_connect = enable_connect
        self._asgiri_max_header = max_header_size
        super().__init__(quic, enable_webtransport=enable_webtransport)

    def _get_local_settings(self) -> dict[int, int]:
        settings = super()._get_local_settings()
        if not self._asgiri_connect:
            settings.pop(Setting.ENABLE_CONNECT_PROTOCOL, None)
        settings[_MAX_FIELD_SECTION_SIZE] = self._asgiri_max_header
        return settings

    def _receive_stream_data(self, event: quic_events.StreamDataReceived) -> list[_AioH3Event]:
        # aioquic's own: create the stream on first sight (in a context
        # manager), hand the data on, drop the stream once both sides ended.
        stream_id = event.stream_id
        stream = self._stream.get(stream_id)
        if stream is None or stream_id & 2:  # new, or unidirectional: aioquic's way
            return super()._receive_stream_data(event)
        try:
            return self._receive_request_or_push_data(stream, event.data, event.end_stream)
        finally:
            if stream.is_ended():
                self._stream.pop(stream_id)


@dataclass(slots=True)
class ConnectionIdIssued:
    """Packets with this destination connection id belong to this connection."""

    cid: bytes


@dataclass(slots=True)
class ConnectionIdRetired:
    cid: bytes


H3Event = (
    StreamEvent
    | ConnectionIdIssued
    | ConnectionIdRetired
    | WebTransportStreamData
    | WebTransportStreamReset
    | WebTransportDatagram
)


class H3Connection:
    """One HTTP/3 connection, server side (a :class:`~.multiplexed.StreamConnection`)."""

    cancel_code: int = ErrorCode.H3_REQUEST_CANCELLED
    internal_error_code: int = ErrorCode.H3_INTERNAL_ERROR

    def __init__(
        self,
        quic: ServerQuicConnection,
        *,
        max_header_size: int = 16384,
        max_fields: int = 100,
        max_body: int | None = None,
        enable_connect: bool = True,
        enable_webtransport: bool = False,
    ) -> None:
        self.quic = quic
        #: The extended CONNECT protocols served (RFC 9220 WebSocket, WebTransport).
        self._connect_protocols = frozenset(
            ([b"websocket"] if enable_connect else [])
            + ([b"webtransport"] if enable_webtransport else [])
        )
        self._enable_webtransport = enable_webtransport
        #: WebTransport streams (the peer's and ours), with their session's id.
        self.webtransport_streams: dict[int, int] = {}
        self._max_header_size = max_header_size
        self._max_fields = max_fields
        self._max_body = max_body
        #: Body bytes each request may still send under its Content-Length
        #: (RFC 9114 4.1.2) or else ``max_body``; streams with neither are not in it.
        self._allowed: dict[int, int] = {}
        #: The bound in ``_allowed`` is the declared Content-Length.
        self._declared: set[int] = set()
        self._h3: _AioH3 | None = None
        self.handshake_complete = False
        self.closed = False
        #: Client request streams that have sent their request head.
        self._heads: set[int] = set()
        #: Streams we reset or finished sending on: nothing more may be queued.
        self._done_sending: set[int] = set()
        self._goaway: int | None = None
        self._next_stream_id = 0
        self.alpn: str | None = None
        #: Checks of what the app sends (the server layer calls them first).
        self.responses = ResponseChecker()

    # ------------------------------------------------------------ input

    def receive_datagram(self, data: bytes, addr: Address, now: float) -> list[H3Event]:
        self.quic.receive_datagram(data, addr, now)
        return self._events()

    def handle_timer(self, now: float) -> list[H3Event]:
        self.quic.handle_timer(now)
        return self._events()

    def get_timer(self) -> float | None:
        return self.quic.get_timer()

    def datagrams_to_send(self, now: float) -> list[tuple[bytes, Address]]:
        return self.quic.datagrams_to_send(now)

    def _events(self) -> list[H3Event]:
        out: list[H3Event] = []
        quic = self.quic
        while True:
            event = quic.next_event()
            if event is None:
                return out
            if isinstance(event, quic_events.StreamDataReceived):
                pass  # the common case: straight to the HTTP/3 layer
            elif isinstance(event, quic_events.ProtocolNegotiated):
                self.alpn = event.alpn_protocol
                if self.alpn == "h3" and self._h3 is None:
                    self._h3 = _ServerH3(
                        quic,
                        bool(self._connect_protocols),
                        self._max_header_size,
                        self._enable_webtransport,
                    )
                continue
            elif isinstance(event, quic_events.HandshakeCompleted):
                self.handshake_complete = True
                continue
            elif isinstance(event, quic_events.ConnectionIdIssued):
                out.append(ConnectionIdIssued(event.connection_id))
                continue
            elif isinstance(event, quic_events.ConnectionIdRetired):
                out.append(ConnectionIdRetired(event.connection_id))
                continue
            elif isinstance(event, quic_events.ConnectionTerminated):
                self.closed = True
                out.append(ConnectionEnded(event.error_code, event.reason_phrase))
                continue
            h3 = self._h3
            if h3 is None:
                continue
            for h3_event in h3.handle_event(event):
                if isinstance(h3_event, DataReceived):
                    self._on_data(h3_event, out)
                elif isinstance(h3_event, HeadersReceived):
                    self._on_headers(h3_event, out)
                elif isinstance(h3_event, WebTransportStreamDataReceived):
                    self._on_webtransport_data(h3_event, out)
                elif isinstance(h3_event, DatagramReceived):
                    out.append(WebTransportDatagram(h3_event.stream_id, h3_event.data))
            if isinstance(event, _STREAM_ENDERS):
                stream_id = event.stream_id
                if stream_id in self._heads:
                    # The client abandoned the request (or its response):
                    # nothing more will be sent on it either.
                    self.reset(stream_id, ErrorCode.H3_REQUEST_CANCELLED)
                    out.append(StreamClosed(stream_id, event.error_code))
                else:
                    session = self.webtransport_streams.get(stream_id)
                    if session is not None:
                        out.append(WebTransportStreamReset(session, stream_id, event.error_code))

    def _on_data(self, event: DataReceived, out: list[H3Event]) -> None:
        stream_id = event.stream_id
        if stream_id not in self._heads:
            return
        data = event.data
        if data:
            allowed = self._allowed.get(stream_id)
            if allowed is not None:
                allowed -= len(data)
                if allowed < 0:
                    self._too_long(stream_id, out)
                    return
                self._allowed[stream_id] = allowed
            self.quic.hold(stream_id, len(data))
            out.append(Body(stream_id, data))
        if event.stream_ended:
            self._allowed.pop(stream_id, None)
            out.append(EndBody(stream_id))

    def _too_long(self, stream_id: int, out: list[H3Event]) -> None:
        """A body past its Content-Length (malformed) or past ``max_body`` (413).

        (aioquic compares a body with its Content-Length only once the stream
        ends; without this the app would be handed the excess first.)
        """
        self._allowed.pop(stream_id, None)
        if stream_id in self._declared:
            self._declared.discard(stream_id)
            self.reset(stream_id, ErrorCode.H3_MESSAGE_ERROR)
            out.append(StreamClosed(stream_id, ErrorCode.H3_MESSAGE_ERROR))
            return
        self._heads.discard(stream_id)  # the rest of the body is dropped unread
        out.append(RequestRejected(stream_id, 413, "request body too large"))

    def _on_headers(self, event: HeadersReceived, out: list[H3Event]) -> None:
        stream_id = event.stream_id
        if stream_id & 3:
            return  # not a client request stream (aioquic checks the rest)
        if stream_id in self._heads:
            # A second HEADERS frame is the trailer section, which ends the body.
            self._allowed.pop(stream_id, None)
            try:
                trailers = check_header_block(event.headers, True).fields
            except MalformedRequest:
                self.reset(stream_id, ErrorCode.H3_MESSAGE_ERROR)
                out.append(StreamClosed(stream_id, ErrorCode.H3_MESSAGE_ERROR))
                return
            out.append(EndBody(stream_id, trailers))
            return
        request = self._request(stream_id, event)
        if request is None:
            return
        if type(request) is RequestRejected:
            out.append(request)
            return
        self._heads.add(stream_id)
        self.quic.track(stream_id)
        out.append(request)
        if event.stream_ended:
            self._allowed.pop(stream_id, None)
            out.append(EndBody(stream_id))

    def _request(self, stream_id: int, event: HeadersReceived) -> Request | RequestRejected | None:
        self._next_stream_id = max(self._next_stream_id, stream_id + 4)
        if self._goaway is not None and stream_id >= self._goaway:
            self.refuse(stream_id, ErrorCode.H3_REQUEST_REJECTED)
            return None
        try:
            head = check_header_block(event.headers, False)
        except MalformedRequest:
            self.refuse(stream_id, ErrorCode.H3_MESSAGE_ERROR)
            return None
        method = head.method
        path = head.path
        scheme = head.scheme
        authority = head.authority
        protocol = head.protocol
        headers = head.fields
        if method is None or (method != b"CONNECT" and (not path or not scheme)):
            self.refuse(stream_id, ErrorCode.H3_MESSAGE_ERROR)
            return None
        if method == b"CONNECT":
            if protocol is None:
                self.refuse(stream_id, ErrorCode.H3_CONNECT_ERROR)
                return None
            if protocol not in self._connect_protocols:
                # Extended CONNECT for a protocol not served (RFC 9220 3).
                self.refuse(stream_id, ErrorCode.H3_REQUEST_REJECTED)
                return None
        try:
            method_text = method.decode("ascii")
        except UnicodeDecodeError:
            self.refuse(stream_id, ErrorCode.H3_MESSAGE_ERROR)
            return None
        if authority is not None and not head.has_host:
            headers.insert(0, (b"host", authority))
        raw_path, _, query = (path or b"/").partition(b"?")
        request = Request(
            stream_id,
            method_text,
            raw_path,
            query,
            headers,
            "3",
            head.expect_continue,
            authority,
            scheme.decode("ascii", "replace") if scheme else None,
            protocol,
        )
        if head.size > self._max_header_size or len(headers) > self._max_fields:
            return RequestRejected(stream_id, 431, "request header fields too large", request)
        if not self.handshake_complete and method_text not in _SAFE_METHODS:
            # 0-RTT data can be replayed: only safe methods (RFC 8470).  Without
            # --quic-0rtt tickets do not invite early data; a client that sends
            # it anyway is held to the same rule.
            return RequestRejected(stream_id, 425, "too early", request)
        declared = head.content_length
        limit = self._max_body
        if limit is not None and declared is not None and declared > limit:
            return RequestRejected(stream_id, 413, "request body too large", request)
        if declared is not None:
            self._allowed[stream_id] = declared
            self._declared.add(stream_id)
        elif limit is not None:
            self._allowed[stream_id] = limit
        return request

    def refuse(self, stream_id: int, code: int) -> None:
        """Reset a request the app never sees (and forget it)."""
        self.reset(stream_id, code)
        self._forget_refused(stream_id)

    def _forget_refused(self, stream_id: int) -> None:
        # Nothing more is sent on it; keeping its id would let a client that
        # sends endless bad requests grow this connection's state.
        self._done_sending.discard(stream_id)
        self.quic.forget(stream_id)

    # ------------------------------------------------------------ output

    def send_headers(self, stream_id: int, status: int, headers: Headers, end: bool) -> bool:
        h3 = self._h3
        if h3 is None or self.closed or stream_id in self._done_sending:
            return False
        response = wire_fields(status, headers)
        try:
            h3.send_headers(stream_id, response, end_stream=end)
        except (H3Error, ValueError, AssertionError):
            return self._gone(stream_id)
        if end:
            self._done_sending.add(stream_id)
        return True

    def send_informational(self, stream_id: int, status: int, headers: Headers) -> bool:
        h3 = self._h3
        if h3 is None or self.closed or stream_id in self._done_sending:
            return False
        try:
            h3.send_headers(stream_id, [(b":status", b"%d" % status), *_lowered(headers)])
        except (H3Error, ValueError, AssertionError):
            return self._gone(stream_id)
        return True

    def send_data(self, stream_id: int, data: bytes, end: bool) -> bool:
        h3 = self._h3
        if h3 is None or self.closed or stream_id in self._done_sending:
            return False
        try:
            h3.send_data(stream_id, data, end_stream=end)
        except (H3Error, ValueError, AssertionError):
            return self._gone(stream_id)
        if end:
            self._done_sending.add(stream_id)
        return True

    def send_trailers(self, stream_id: int, trailers: Headers) -> bool:
        h3 = self._h3
        if h3 is None or self.closed or stream_id in self._done_sending:
            return False
        try:
            h3.send_headers(stream_id, _lowered(trailers), end_stream=True)
        except (H3Error, ValueError, AssertionError):
            return self._gone(stream_id)
        self._done_sending.add(stream_id)
        return True

    def _gone(self, stream_id: int) -> bool:
        self._done_sending.add(stream_id)
        return False

    def buffered(self, stream_id: int) -> int:
        """Response bytes of ``stream_id`` still waiting to be put on the wire."""
        return self.quic.send_buffered(stream_id)

    def pending_output(self) -> int:
        """Always 0: aioquic frames stream data only when datagrams are built,
        so what waits is in the streams' buffers (:meth:`buffered`)."""
        return 0

    def release(self) -> None:
        self.quic.break_cycles()

    def acknowledge(self, stream_id: int, nbytes: int) -> None:
        """The app consumed ``nbytes`` of body: let the client send that much more."""
        self.quic.consume(stream_id, nbytes)

    def reset(self, stream_id: int, code: int) -> None:
        """Abandon both directions of a request stream (RESET_STREAM + STOP_SENDING).

        Nothing more of the stream is reported (not even the peer's answering reset).
        """
        self._heads.discard(stream_id)
        if self.closed:
            return
        if stream_id not in self._done_sending:
            self._done_sending.add(stream_id)
            with contextlib.suppress(ValueError, AssertionError):
                self.quic.reset_stream(stream_id, code)
        self._stop(stream_id, code)

    def stop_reading(self, stream_id: int, code: int = ErrorCode.H3_NO_ERROR) -> None:
        """The response is complete and the rest of the upload is not wanted."""
        if not self.closed:
            self._stop(stream_id, code)

    def _stop(self, stream_id: int, code: int) -> None:
        self.quic.release(stream_id)
        with contextlib.suppress(ValueError):  # already gone, or never opened
            self.quic.stop_stream(stream_id, code)

    def forget(self, stream_id: int) -> None:
        """The server is done with ``stream_id``."""
        self._heads.discard(stream_id)
        self._allowed.pop(stream_id, None)
        self._declared.discard(stream_id)
        self._done_sending.discard(stream_id)
        self.responses.forget(stream_id)
        self.quic.forget(stream_id)

    # ------------------------------------------------------------ WebTransport

    def _on_webtransport_data(
        self, event: WebTransportStreamDataReceived, out: list[H3Event]
    ) -> None:
        stream_id = event.stream_id
        streams = self.webtransport_streams
        if stream_id not in streams:
            streams[stream_id] = event.session_id
            # Credited as the app reads it, like a request body.
            self.quic.track(stream_id)
        if event.data:
            self.quic.hold(stream_id, len(event.data))
        out.append(
            WebTransportStreamData(event.session_id, stream_id, event.data, event.stream_ended)
        )

    def open_webtransport_stream(self, session_id: int, unidirectional: bool) -> int | None:
        """A new stream of the session, from our side; None when none may be opened now."""
        h3 = self._h3
        if h3 is None or self.closed:
            return None
        try:
            stream_id: int = h3.create_webtransport_stream(session_id, unidirectional)
        except (H3Error, ValueError, AssertionError):
            return None
        self.webtransport_streams[stream_id] = session_id
        self.quic.count_writes(stream_id)
        if not unidirectional:
            self.quic.track(stream_id)
        return stream_id

    def send_stream_data(self, stream_id: int, data: bytes, end: bool) -> bool:
        """Bytes on a WebTransport stream (no HTTP/3 framing); False when it is gone."""
        if self.closed or stream_id in self._done_sending:
            return False
        try:
            self.quic.send_stream_data(stream_id, data, end)
        except (ValueError, AssertionError):
            return self._gone(stream_id)
        if end:
            self._done_sending.add(stream_id)
        return True

    def send_datagram(self, session_id: int, data: bytes) -> bool:
        """An HTTP datagram for the session; False when it cannot be sent (too large, closed)."""
        h3 = self._h3
        if h3 is None or self.closed:
            return False
        try:
            h3.send_datagram(session_id, data)
        except (H3Error, ValueError, AssertionError):
            return False
        return True

    def forget_webtransport_stream(self, stream_id: int) -> None:
        self.webtransport_streams.pop(stream_id, None)
        self.forget(stream_id)

    def goaway(self) -> None:
        """Graceful GOAWAY: streams below the id sent still complete (RFC 9114 5.2)."""
        if self._goaway is not None or self.closed or self._h3 is None:
            return
        self._goaway = self._next_stream_id
        self.quic.send_stream_data(
            _CONTROL_STREAM_ID,
            encode_frame(FrameType.GOAWAY, encode_uint_var(self._goaway)),
        )

    @property
    def idle(self) -> bool:
        """No request stream has anything in flight: closing now loses nothing."""
        return not self.quic.request_streams_open

    @property
    def goaway_sent(self) -> bool:
        return self._goaway is not None

    def close(self, code: int = ErrorCode.H3_NO_ERROR, reason: str = "") -> None:
        """CONNECTION_CLOSE (application error space)."""
        if not self.closed:
            self.quic.close(error_code=code, reason_phrase=reason)


def _lowered(headers: Headers) -> Headers:
    """Field names as HTTP/3 sends them (already checked by ``H3Connection.responses``)."""
    return [(name.lower(), value) for name, value in headers]
