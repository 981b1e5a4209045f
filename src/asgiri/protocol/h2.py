"""HTTP/2 server connection, sans I/O, on top of the h2 library.

:meth:`H2Connection.receive_data` turns frames into the version-neutral
events of :mod:`asgiri.protocol.events` (plus the HTTP/2-only ones defined
here), and the ``send_*`` methods queue frames; :meth:`data_to_send` hands
the bytes to write.

Flow control, both ways:

* Inbound: DATA is acknowledged (WINDOW_UPDATE) only when the application
  consumed it (:meth:`acknowledge`), so a slow reader holds at most one
  window of body per stream.
* Outbound: body bytes beyond what the peer's windows allow wait in a
  per-stream buffer and leave as WINDOW_UPDATEs arrive; ``buffered(stream)``
  tells the server when to make the app wait (backpressure).

Defences the h2 library does not provide are here, so that they are the same
whatever the transport: a cap on header-block size and CONTINUATION count
(CVE-2024-27316), and counters for frames that cost the server work without
producing requests (rapid reset CVE-2023-44487, PING/SETTINGS/empty-DATA
floods).  Exceeding one ends the connection with ENHANCE_YOUR_CALM.
"""

from __future__ import annotations

import contextlib
import sys
from collections import deque
from dataclasses import dataclass
from typing import Any, Final

import h2.config
import h2.connection
import h2.errors
import h2.events
import h2.exceptions
import h2.settings
import h2.stream
import hpack
import hyperframe.frame

from .errors import RemoteProtocolError
from .events import (
    Body,
    ConnectionEnded,
    EndBody,
    Headers,
    Request,
    RequestRejected,
    StreamClosed,
    StreamEvent,
    StreamWritable,
)
from .fields import MalformedRequest, RequestHead, check_header_block
from .response import ResponseChecker, wire_fields

__all__ = [
    "PREFACE",
    "ConnectionEnded",
    "H2Connection",
    "H2Limits",
    "StreamWritable",
]

#: The client connection preface (RFC 9113 section 3.4).
PREFACE: Final = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"

_HEADERS: Final = 0x1
_CONTINUATION: Final = 0x9
_PING: Final = 0x6
_SETTINGS: Final = 0x4
_RST_STREAM: Final = 0x3
_WINDOW_UPDATE: Final = 0x8
_DATA: Final = 0x0
_END_HEADERS: Final = 0x4
_END_STREAM: Final = 0x1
_ACK: Final = 0x1

#: Frame types :meth:`H2Connection._conform` looks at.
_CONFORM: Final = frozenset({_HEADERS, _RST_STREAM, _SETTINGS})

#: Text of the usual methods and schemes, so most requests decode none.
_METHODS: Final = {
    m.encode(): m
    for m in ("GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "CONNECT", "TRACE")
}
_SCHEMES: Final = {b"http": "http", b"https": "https"}


@dataclass
class H2Limits:
    """Settings advertised to the peer and flood thresholds."""

    max_concurrent_streams: int = 100
    initial_window_size: int = 1024 * 1024
    max_frame_size: int = 16384
    max_header_list_size: int = 65536
    max_inbound_frame_size: int = 1 << 20
    enable_connect_protocol: bool = False
    #: CONTINUATION frames allowed for one header block.
    max_continuations: int = 32
    #: Frames that produce no request (PING, SETTINGS, empty DATA, RST_STREAM
    #: from the client) tolerated before the peer must show useful work.
    flood_budget: int = 1000
    #: Client resets tolerated beyond the streams that completed normally.
    max_resets: int = 200
    #: ``--limit-request-body``: a larger request body is answered 413.
    max_body: int | None = None
    #: ``--limit-request-header-size`` / ``--limit-request-fields``: a larger
    #: request head is answered 431, as on HTTP/1.1 and HTTP/3 (a header block
    #: over ``max_header_list_size`` is a connection error before that).
    max_header_size: int = 65536
    max_fields: int = 100


class _OutStream:
    __slots__ = ("data", "end", "offset", "size", "stop", "trailers")

    def __init__(self) -> None:
        self.data: deque[bytes] = deque()
        #: Bytes of ``data[0]`` already sent.
        self.offset = 0
        self.size = 0
        self.end = False
        self.trailers: Headers | None = None
        #: RST_STREAM code to send once the rest has left (``stop_reading``).
        self.stop: int | None = None


class H2Connection:
    """The server side of one HTTP/2 connection (a :class:`~.multiplexed.StreamConnection`)."""

    cancel_code: int = h2.errors.ErrorCodes.CANCEL
    internal_error_code: int = h2.errors.ErrorCodes.INTERNAL_ERROR

    def __init__(self, limits: H2Limits | None = None) -> None:
        self.limits = limits = limits or H2Limits()
        config = h2.config.H2Configuration(
            client_side=False,
            header_encoding=None,
            # Received header blocks are checked (RFC 9113 8.2, 8.3) and their
            # cookies joined by check_header_block, in one pass and without
            # h2's per-byte loops; see _H2._receive_frame.
            validate_inbound_headers=False,
            normalize_inbound_headers=False,
            # What the app sends is validated by the ASGI stream; h2's own
            # outbound checks would only repeat them.
            validate_outbound_headers=False,
            normalize_outbound_headers=False,
        )
        self._conn = _H2(config=config)
        # The hard cap wins over the advertised size: advertising more than
        # is accepted would turn the peer's conforming frames into errors.
        frame_size = min(limits.max_frame_size, limits.max_inbound_frame_size)
        self._conn.local_settings = h2.settings.Settings(
            client=False,
            initial_values={
                h2.settings.SettingCodes.MAX_CONCURRENT_STREAMS: limits.max_concurrent_streams,
                h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: limits.initial_window_size,
                h2.settings.SettingCodes.MAX_FRAME_SIZE: frame_size,
                h2.settings.SettingCodes.MAX_HEADER_LIST_SIZE: limits.max_header_list_size,
                h2.settings.SettingCodes.ENABLE_CONNECT_PROTOCOL: int(
                    limits.enable_connect_protocol
                ),
            },
        )
        # RFC 9113 4.2: a frame beyond the advertised SETTINGS_MAX_FRAME_SIZE
        # is a FRAME_SIZE_ERROR, so never accept more than that.
        self._conn.max_inbound_frame_size = frame_size
        # h2 hands a setting to its HPACK decoder only when an ACK changes
        # it, and settings given as initial values never change: without
        # this, the decoder would keep its 64 KiB default whatever is
        # configured (and advertised), and HPACK bombs would be bounded by
        # that, not by h2_max_header_list_size.
        self._conn.decoder.max_header_list_size = limits.max_header_list_size
        self._out: dict[int, _OutStream] = {}
        #: Response bytes still owed per stream under a declared content-length.
        #: Checks of what the app sends (the server layer calls them first).
        self.responses = ResponseChecker()
        self._trailers: dict[int, Headers] = {}
        self._max_body = limits.max_body
        #: Body bytes received per stream, counted only under ``max_body``.
        self._body_sizes: dict[int, int] = {}
        #: Streams answered 413: the rest of their body is credited back unread.
        self._rejected: set[int] = set()
        #: Flow-controlled bytes received per stream and not yet acknowledged.
        self._unacked: dict[int, int] = {}
        self._scan = b""
        #: The next read begins with a WINDOW_UPDATE increment (see ``_screen``).
        self._mask_next = False
        #: The client preface is not a frame: the scanner starts after it.
        self._skip = len(PREFACE)
        #: The preface ends with a SETTINGS frame (RFC 9113 3.4).
        self._expect_settings = True
        #: Highest client stream id a HEADERS frame has used (screened).
        self._max_opened = 0
        self._block_frames = 0
        self._block_bytes = 0
        self._in_block = False
        self._flood = 0
        self._resets = 0
        #: RST_STREAM frames seen by the screen (before h2 processes them).
        self._reset_frames = 0
        self._completed = 0
        self.closed = False
        self.last_stream_id = 0
        self._goaway_sent: int | None = None
        #: New streams are refused (a draining connection that is still busy).
        self._refusing = False
        self._extra_out: list[bytes] = []

    # ------------------------------------------------------------ set-up

    def initiate(self) -> None:
        """Queue the server preface (SETTINGS) and open the connection window."""
        self._conn.initiate_connection()
        extra = self.limits.initial_window_size - 65535
        if extra > 0:
            self._conn.increment_flow_control_window(extra)

    def initiate_upgrade(self, settings_header: bytes) -> None:
        """h2c Upgrade: stream 1 is the HTTP/1.1 request, already half-closed."""
        self._conn.initiate_upgrade_connection(settings_header)
        extra = self.limits.initial_window_size - 65535
        if extra > 0:
            self._conn.increment_flow_control_window(extra)
        self.last_stream_id = 1
        self._max_opened = 1

    # ------------------------------------------------------------ reading

    def receive_data(self, data: bytes) -> list[StreamEvent]:
        """Feed received bytes; returns the events they complete.

        A connection error is answered here (GOAWAY queued) and reported as
        :class:`ConnectionEnded`; the server then flushes and closes.
        """
        if self.closed:
            return []
        try:
            data = self._screen(data)
            h2_events = self._conn.receive_data(data)
        except _Calm as exc:
            return self._fail(h2.errors.ErrorCodes.ENHANCE_YOUR_CALM, str(exc))
        except _Reject as exc:
            return self._fail(exc.code, str(exc))
        except h2.exceptions.ProtocolError as exc:
            code = getattr(exc, "error_code", None) or h2.errors.ErrorCodes.PROTOCOL_ERROR
            return self._fail(_error_code(exc, code), str(exc))
        events: list[StreamEvent] = []
        #: Windows opened in this read: buffered data is flushed once, after
        #: all its frames, not once per WINDOW_UPDATE (a flood of them would
        #: otherwise walk every buffered stream per 13-byte frame).
        window_opened = False
        #: Streams refused (reset) in this read.  h2 parsed the whole read before
        #: they were refused: what it reports of them after the request is
        #: nobody's, as their frames in a later read are dropped by h2 itself.
        refused: set[int] = set()
        ev: Any
        for ev in h2_events:
            kind = type(ev)
            if kind is h2.events.DataReceived:
                if refused and ev.stream_id in refused:
                    self._credit(ev.flow_controlled_length, ev.stream_id)
                else:
                    self._on_data(ev, events)
            elif kind is h2.events.RequestReceived:
                request = self._request(ev)
                if request is not None:
                    events.append(request)
                else:
                    refused.add(ev.stream_id)
            elif kind is h2.events.StreamEnded:
                stream_id = ev.stream_id
                trailers = self._trailers.pop(stream_id, None)
                if stream_id not in refused and stream_id not in self._rejected:
                    events.append(EndBody(stream_id, trailers))
            elif kind is h2.events.TrailersReceived:
                if ev.stream_id not in refused:
                    self._trailers[ev.stream_id] = list(ev.headers)
            elif kind is h2.events.StreamReset:
                if ev.stream_id not in refused:
                    self._on_reset(ev.stream_id)
                    events.append(StreamClosed(ev.stream_id, int(ev.error_code or 0)))
            elif kind is h2.events.WindowUpdated or kind is h2.events.RemoteSettingsChanged:
                window_opened = True
            elif kind is h2.events.ConnectionTerminated:
                self.closed = True
                events.append(
                    ConnectionEnded(
                        int(ev.error_code or 0), last_stream_id=int(ev.last_stream_id or 0)
                    )
                )
        if self._resets > self.limits.max_resets + self._completed:
            return self._fail(h2.errors.ErrorCodes.ENHANCE_YOUR_CALM, "too many stream resets")
        if window_opened and self._out and not self.closed:
            self._flush_all(events)
        return events

    def _on_data(self, ev: Any, events: list[Any]) -> None:
        stream_id = ev.stream_id
        data = ev.data
        flow = ev.flow_controlled_length
        if data:
            if (self._rejected and stream_id in self._rejected) or (
                self._max_body is not None and self._over_limit(stream_id, len(data), events)
            ):
                # Nobody reads it: keep the connection window open.
                self._conn.acknowledge_received_data(flow, stream_id)
                return
            self._unacked[stream_id] = self._unacked.get(stream_id, 0) + len(data)
            events.append(Body(stream_id, data))
        if flow > len(data):
            # Padding is never given to the app: credit it back at once.
            self._conn.acknowledge_received_data(flow - len(data), stream_id)

    def _credit(self, nbytes: int, stream_id: int) -> None:
        """Give back at once the window of bytes nobody reads."""
        with contextlib.suppress(h2.exceptions.ProtocolError):
            self._conn.acknowledge_received_data(nbytes, stream_id)

    def _over_limit(self, stream_id: int, size: int, events: list[Any]) -> bool:
        """``--limit-request-body`` for a body that grows past it (no or a false length)."""
        sizes = self._body_sizes
        total = sizes.get(stream_id, 0) + size
        limit = self._max_body
        if limit is None or total <= limit:
            sizes[stream_id] = total
            return False
        sizes.pop(stream_id, None)
        self._rejected.add(stream_id)
        events.append(RequestRejected(stream_id, 413, "request body too large"))
        return True

    def _request(self, ev: Any) -> Request | RequestRejected | None:
        stream_id = ev.stream_id
        if self._refusing or (self._goaway_sent is not None and stream_id > self._goaway_sent):
            self._reset(stream_id, h2.errors.ErrorCodes.REFUSED_STREAM)
            return None
        self.last_stream_id = max(self.last_stream_id, stream_id)
        # Checked and taken apart by check_header_block (see _H2._receive_frame).
        head: RequestHead = ev.head
        method = head.method
        path = head.path
        scheme = head.scheme
        authority = head.authority
        protocol = head.protocol
        headers: Headers = head.fields
        if method is None or (method != b"CONNECT" and (path is None or scheme is None)):
            self._reset(stream_id, h2.errors.ErrorCodes.PROTOCOL_ERROR)
            return None
        if head.content_length and ev.stream_ended is not None:
            # RFC 9113 8.1.1: content-length must match the DATA octets, and
            # h2 checks that only when DATA frames come: here none will.
            self._reset(stream_id, h2.errors.ErrorCodes.PROTOCOL_ERROR)
            return None
        if method == b"CONNECT":
            if protocol is None:
                # Plain CONNECT (tunnels) is not served: 405 would need a body
                # the tunnel semantics forbid, so refuse the stream.
                self._reset(stream_id, h2.errors.ErrorCodes.CONNECT_ERROR)
                return None
            if not self.limits.enable_connect_protocol:
                # Not advertised: a malformed request (RFC 8441 section 4).
                self._reset(stream_id, h2.errors.ErrorCodes.PROTOCOL_ERROR)
                return None
            if protocol != b"websocket":
                # Extended CONNECT is advertised for WebSocket only.
                self._reset(stream_id, h2.errors.ErrorCodes.REFUSED_STREAM)
                return None
        if authority is not None and not head.has_host:
            headers.insert(0, (b"host", authority))
        raw = path or b"/"
        raw_path, _, query = raw.partition(b"?")
        text_method = _METHODS.get(method)
        if text_method is None:
            text_method = method.decode("ascii")
        request = Request(
            stream_id,
            text_method,
            raw_path,
            query,
            headers,
            "2",
            head.expect_continue,
            authority,
            _SCHEMES.get(scheme) or scheme.decode("ascii") if scheme else None,
            protocol,
        )
        # Useful work: it pays back the control-frame budget.
        if self._flood:
            self._flood -= 1
        limits = self.limits
        if head.size > limits.max_header_size or len(headers) > limits.max_fields:
            self._rejected.add(stream_id)
            return RequestRejected(stream_id, 431, "request header fields too large", request)
        limit = self._max_body
        if limit is not None and (head.content_length or 0) > limit:
            # Refused before the body is read, as HTTP/1.1 does.
            self._rejected.add(stream_id)
            return RequestRejected(stream_id, 413, "request body too large", request)
        return request

    def _on_reset(self, stream_id: int) -> None:
        self._out.pop(stream_id, None)
        self._release(stream_id)
        self._trailers.pop(stream_id, None)
        self._forget_limit(stream_id)
        self._resets += 1

    def _forget_limit(self, stream_id: int) -> None:
        if self._max_body is not None:
            self._body_sizes.pop(stream_id, None)
        self._rejected.discard(stream_id)

    def _release(self, stream_id: int) -> None:
        """Give back the connection-window credit of body nobody will read.

        Without this, bytes buffered for a stream that was reset or answered
        without reading its body would shrink the connection window for good.
        """
        pending = self._unacked.pop(stream_id, 0)
        if pending:
            with contextlib.suppress(h2.exceptions.ProtocolError):
                self._conn.acknowledge_received_data(pending, stream_id)

    def _fail(self, code: int, message: str) -> list[StreamEvent]:
        self.closed = True
        if self._conn.state_machine.state is not h2.connection.ConnectionState.CLOSED:
            # (h2 has already queued its GOAWAY for the errors it raises.)
            with contextlib.suppress(h2.exceptions.ProtocolError):
                self._conn.close_connection(error_code=code, last_stream_id=self.last_stream_id)
        return [ConnectionEnded(int(code), message, self.last_stream_id)]

    def _screen(self, data: bytes) -> bytes:
        """Walk frame headers for the floods h2 itself does not bound.

        Only the 9-byte headers are read, one per frame, so the cost is a
        few operations per frame, not per byte.  ``_skip`` is how much of a
        frame payload (or of the client preface) is still to come;
        ``_scan`` holds a frame header split across reads.

        Returns ``data`` with the reserved bit of WINDOW_UPDATE increments
        cleared: RFC 9113 6.9 says to ignore it, and hyperframe would read
        it as part of the increment and reject the frame.
        """
        pos = 0
        size = len(data)
        masks: list[int] | None = None
        if self._mask_next and size:
            self._mask_next = False
            if data[0] & 0x80:
                masks = [0]
        if self._skip:
            if self._skip >= size:
                self._skip -= size
                return data if masks is None else _masked(data, masks)
            pos = self._skip
            self._skip = 0
        if self._scan:
            header = self._scan + data[pos : pos + 9 - len(self._scan)]
            if len(header) < 9:
                self._scan = header
                return data if masks is None else _masked(data, masks)
            pos += 9 - len(self._scan)
            self._scan = b""
            length = self._check_frame(header, 0)
            if header[3] == _WINDOW_UPDATE and length == 4:
                masks = self._reserved_bit(data, pos, masks)
            pos += length
        while size - pos >= 9:
            length = self._check_frame(data, pos)
            if data[pos + 3] == _WINDOW_UPDATE and length == 4:
                masks = self._reserved_bit(data, pos + 9, masks)
            pos += 9 + length
        if pos > size:
            self._skip = pos - size
        elif pos < size:
            self._scan = data[pos:]
        return data if masks is None else _masked(data, masks)

    def _reserved_bit(self, data: bytes, at: int, masks: list[int] | None) -> list[int] | None:
        """Note a WINDOW_UPDATE increment starting at ``data[at]`` whose reserved bit is set."""
        if at >= len(data):
            self._mask_next = True  # the payload begins with the next read
        elif data[at] & 0x80:
            masks = [at] if masks is None else [*masks, at]
        return masks

    def _check_frame(self, buf: bytes, pos: int) -> int:
        """Account for one frame header at ``buf[pos]``; returns its payload length."""
        length = int.from_bytes(buf[pos : pos + 3], "big")
        ftype = buf[pos + 3]
        flags = buf[pos + 4]
        if ftype in _CONFORM or self._expect_settings:
            self._conform(buf, pos, ftype, flags, length)
        if length > self._conn.max_inbound_frame_size:
            # RFC 9113 4.2.  h2 says so only once the whole frame is in its
            # buffer: a header announcing 16 MiB would make it hold 16 MiB.
            raise _Reject(
                h2.errors.ErrorCodes.FRAME_SIZE_ERROR,
                f"frame of {length} bytes over SETTINGS_MAX_FRAME_SIZE",
            )
        limits = self.limits
        if ftype in (_HEADERS, _CONTINUATION):
            if ftype == _HEADERS:
                self._block_frames = 0
                self._block_bytes = 0
            self._block_frames += 1
            self._block_bytes += length
            if (
                self._block_frames > limits.max_continuations
                or self._block_bytes > limits.max_header_list_size * 2
            ):
                raise _Calm("header block too large (CONTINUATION flood)")
            if flags & _END_HEADERS:
                self._block_frames = 0
                self._block_bytes = 0
        elif ((ftype in (_PING, _SETTINGS)) and not flags & _ACK) or (
            ftype == _DATA and length == 0 and not flags & _END_STREAM
        ):
            self._flood += 1
            if self._flood > limits.flood_budget:
                raise _Calm("too many control frames")
        elif ftype == _RST_STREAM:
            # Rapid reset: stop before h2 and the server set up the streams
            # of this read (one read can hold thousands), not after.
            self._reset_frames += 1
            if self._reset_frames > limits.max_resets + self._completed:
                raise _Calm("too many stream resets")
        return length

    def _conform(self, buf: bytes, pos: int, ftype: int, flags: int, length: int) -> None:
        """RFC 9113 rules h2 leaves unchecked (or answers with another code)."""
        if self._expect_settings:
            self._expect_settings = False
            if ftype != _SETTINGS or flags & _ACK:
                raise _Reject(
                    h2.errors.ErrorCodes.PROTOCOL_ERROR, "client preface not followed by SETTINGS"
                )
        if ftype == _SETTINGS:
            if flags & _ACK and length:
                # 6.5 (h2 would say PROTOCOL_ERROR).
                raise _Reject(h2.errors.ErrorCodes.FRAME_SIZE_ERROR, "SETTINGS ACK with payload")
            return
        stream_id = int.from_bytes(buf[pos + 5 : pos + 9], "big") & 0x7FFFFFFF
        if ftype == _HEADERS:
            if stream_id & 1 and stream_id > self._max_opened:
                self._max_opened = stream_id
        elif stream_id and (not stream_id & 1 or stream_id > self._max_opened):
            # 5.1: RST_STREAM on an idle stream (h2 ignores it once a stream was opened).
            raise _Reject(h2.errors.ErrorCodes.PROTOCOL_ERROR, "RST_STREAM on an idle stream")

    # ------------------------------------------------------------ writing

    # The send methods return False when the stream or the connection is
    # already gone (reset by the peer, or a GOAWAY received: h2 refuses to
    # send anything after that), so that the caller treats the stream as
    # disconnected instead of raising into the app.

    def send_headers(self, stream_id: int, status: int, headers: Headers, end: bool) -> bool:
        response = wire_fields(status, headers)
        if self.closed:
            return False
        try:
            self._conn.send_headers(stream_id, response, end_stream=end)
        except h2.exceptions.ProtocolError:
            return self._gone(stream_id)
        if end:
            self._stream_done(stream_id)
        return True

    def send_informational(self, stream_id: int, status: int, headers: Headers) -> bool:
        if self.closed:
            return False
        try:
            self._conn.send_headers(stream_id, [(b":status", b"%d" % status), *headers])
        except h2.exceptions.ProtocolError:
            return self._gone(stream_id)
        return True

    def send_data(self, stream_id: int, data: bytes, end: bool) -> bool:
        """Queue body bytes; what the windows allow is framed at once."""
        if self.closed:
            return False
        try:
            out = self._out.get(stream_id)
            if out is None:
                conn = self._conn
                window = conn.local_flow_control_window(stream_id)
                if len(data) <= window and len(data) <= conn.max_outbound_frame_size:
                    # The common case: it fits, so no buffer is made.
                    conn.send_data(stream_id, data, end_stream=end)
                    if end:
                        self._stream_done(stream_id)
                    return True
                out = self._out[stream_id] = _OutStream()
            if data:
                out.data.append(data)
                out.size += len(data)
            out.end = out.end or end
            self._flush(stream_id, out)
        except h2.exceptions.ProtocolError:
            return self._gone(stream_id)
        return True

    def send_trailers(self, stream_id: int, trailers: Headers) -> bool:
        if self.closed:
            return False
        trailers = [(name.lower(), value) for name, value in trailers]
        out = self._out.get(stream_id)
        if out is not None and out.size:
            out.trailers = trailers
            out.end = True
            return True
        try:
            self._conn.send_headers(stream_id, trailers, end_stream=True)
        except h2.exceptions.ProtocolError:
            return self._gone(stream_id)
        self._stream_done(stream_id)
        return True

    def _gone(self, stream_id: int) -> bool:
        self._out.pop(stream_id, None)
        return False

    @property
    def sending(self) -> bool:
        """Response data still waits for the peer's flow-control window."""
        return bool(self._out)

    def buffered(self, stream_id: int) -> int:
        out = self._out.get(stream_id)
        return out.size if out is not None else 0

    def _flush(self, stream_id: int, out: _OutStream) -> bool:
        conn = self._conn
        try:
            window = conn.local_flow_control_window(stream_id)
        except h2.exceptions.StreamClosedError:
            self._out.pop(stream_id, None)
            return True
        max_frame = conn.max_outbound_frame_size
        data = out.data
        while out.size and window > 0:
            # ``offset`` walks the first buffer, so a large body is sliced
            # one frame at a time instead of copying its remainder per frame.
            chunk = data[0]
            offset = out.offset
            size = min(len(chunk) - offset, window, max_frame)
            if offset + size == len(chunk):
                data.popleft()
                out.offset = 0
            else:
                out.offset = offset + size
            if offset or size < len(chunk):
                chunk = chunk[offset : offset + size]
            out.size -= size
            window -= size
            last = out.end and not out.size and out.trailers is None
            conn.send_data(stream_id, chunk, end_stream=last)
        if out.size:
            return False
        del self._out[stream_id]
        if out.end:
            if out.trailers is not None:
                conn.send_headers(stream_id, out.trailers, end_stream=True)
            self._stream_done(stream_id)
        if out.stop is not None:
            self._reset(stream_id, out.stop)
        return True

    def _flush_all(self, events: list[Any]) -> None:
        for stream_id, out in list(self._out.items()):
            try:
                flushed = self._flush(stream_id, out)
            except h2.exceptions.ProtocolError:
                # Reset by h2 in this same read (e.g. a WINDOW_UPDATE that
                # overflowed its window): wake its writer, who finds it gone.
                flushed = not self._gone(stream_id)
            if flushed:
                events.append(StreamWritable(stream_id))

    def _stream_done(self, stream_id: int) -> None:
        self._completed += 1

    def forget(self, stream_id: int) -> None:
        """The stream's app is done: release credit for body it never read."""
        self._release(stream_id)
        self.responses.forget(stream_id)
        self._trailers.pop(stream_id, None)
        self._forget_limit(stream_id)

    def acknowledge(self, stream_id: int, nbytes: int) -> None:
        """The app consumed ``nbytes`` of the stream's body: grant that credit back."""
        pending = self._unacked.get(stream_id, 0)
        nbytes = min(nbytes, pending)
        if nbytes <= 0:
            return
        self._unacked[stream_id] = pending - nbytes
        with contextlib.suppress(h2.exceptions.StreamClosedError, h2.exceptions.ProtocolError):
            self._conn.acknowledge_received_data(nbytes, stream_id)

    def reset(self, stream_id: int, code: int = h2.errors.ErrorCodes.INTERNAL_ERROR) -> None:
        self._reset(stream_id, code)

    def stop_reading(self, stream_id: int, code: int = h2.errors.ErrorCodes.NO_ERROR) -> None:
        """The peer's direction of the stream is not wanted any more.

        HTTP/2 has no STOP_SENDING: RST_STREAM after a complete response says
        just that (RFC 9113 8.1, NO_ERROR).  A reset drops what is still
        queued for the stream, so while its response waits for window it is
        sent only once the response has left.
        """
        out = self._out.get(stream_id)
        if out is not None:
            out.stop = code
            return
        self._reset(stream_id, code)

    def _reset(self, stream_id: int, code: int) -> None:
        self._out.pop(stream_id, None)
        self._release(stream_id)
        with contextlib.suppress(h2.exceptions.StreamClosedError, h2.exceptions.ProtocolError):
            self._conn.reset_stream(stream_id, error_code=code)

    def goaway(self, code: int = 0) -> None:
        """Graceful GOAWAY: streams up to ``last_stream_id`` still complete.

        h2's own ``close_connection`` forbids sending anything afterwards, so
        the frame is built here and h2 keeps serving the accepted streams;
        streams the peer opens later are refused in :meth:`_request`.
        """
        if self.closed or self._goaway_sent is not None:
            return
        frame = hyperframe.frame.GoAwayFrame(stream_id=0)
        frame.last_stream_id = self.last_stream_id
        frame.error_code = code
        self._goaway_sent = self.last_stream_id
        self._extra_out.append(frame.serialize())

    def refuse_new_streams(self) -> None:
        """Refuse streams opened from now on with REFUSED_STREAM, before any GOAWAY.

        RFC 9113 8.7: the client may retry them (elsewhere); the streams
        already accepted go on.
        """
        self._refusing = True

    @property
    def goaway_sent(self) -> bool:
        return self._goaway_sent is not None

    def data_to_send(self) -> bytes:
        out: bytes = self._conn.data_to_send()
        if self._extra_out:
            out += b"".join(self._extra_out)
            self._extra_out.clear()
        return out


class _Calm(RemoteProtocolError):
    """A flood limit was hit; answered with ENHANCE_YOUR_CALM."""


class _Reject(RemoteProtocolError):
    """A frame breaks an RFC 9113 rule h2 does not check; answered with ``code``."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code


def _masked(data: bytes, positions: list[int]) -> bytes:
    """``data`` with the top bit of the bytes at ``positions`` cleared."""
    buf = bytearray(data)
    for at in positions:
        buf[at] &= 0x7F
    return bytes(buf)


def _error_code(exc: BaseException | None, default: int) -> int:
    """The GOAWAY code for an error h2 raised.

    h2 turns HPACK decoding errors into a plain ProtocolError (code
    PROTOCOL_ERROR); RFC 9113 4.3 requires COMPRESSION_ERROR.  (A header
    list over the limit comes as DenialOfServiceError and keeps its code.)
    """
    if type(exc) is h2.exceptions.ProtocolError and isinstance(exc.__cause__, hpack.HPACKError):
        return h2.errors.ErrorCodes.COMPRESSION_ERROR
    return default


class _H2(h2.connection.H2Connection):
    """h2's connection, with the GOAWAY codes of :func:`_error_code`, deaf
    after the peer's GOAWAY, and strict about DATA after END_STREAM."""

    _goaway_received = False

    def _receive_frame(self, frame: hyperframe.frame.Frame) -> list[h2.events.Event]:
        if self._goaway_received:
            # h2 would answer any frame after the peer's GOAWAY (a PING, the
            # rest of a body) with a PROTOCOL_ERROR of its own: RFC 9113 6.8
            # allows them, and nothing can be answered now, so drop them.
            return []
        events = super()._receive_frame(frame)
        if type(frame) is not hyperframe.frame.DataFrame:
            # Header blocks are checked here, while h2 is still handling the
            # frame that completed them, so an error ends the connection just
            # as h2's own validation would (see H2Connection.__init__).
            ev: Any
            for ev in events:
                kind = type(ev)
                try:
                    if kind is h2.events.RequestReceived:
                        ev.head = check_header_block(ev.headers, False)
                    elif kind is h2.events.TrailersReceived:
                        ev.headers = check_header_block(ev.headers, True).fields
                except MalformedRequest as exc:
                    raise h2.exceptions.ProtocolError(str(exc)) from None
        return events

    def _receive_goaway_frame(
        self, frame: hyperframe.frame.GoAwayFrame
    ) -> tuple[list[hyperframe.frame.Frame], list[h2.events.Event]]:
        self._goaway_received = True
        return super()._receive_goaway_frame(frame)

    def _receive_window_update_frame(
        self, frame: hyperframe.frame.WindowUpdateFrame
    ) -> tuple[list[hyperframe.frame.Frame], list[h2.events.Event]]:
        frames, events = super()._receive_window_update_frame(frame)
        stream_id = frame.stream_id
        if (
            stream_id
            and self._stream_closed_by(stream_id) is h2.stream.StreamClosedBy.RECV_RST_STREAM
        ):
            # RFC 9113 5.1: after its own RST_STREAM the peer may send only
            # PRIORITY on the stream; h2 ignores a WINDOW_UPDATE there.
            reset = hyperframe.frame.RstStreamFrame(stream_id)
            reset.error_code = h2.errors.ErrorCodes.STREAM_CLOSED
            frames = [*frames, reset]
        return frames, events

    def _handle_data_on_closed_stream(
        self,
        events: list[h2.events.Event],
        exc: h2.exceptions.StreamClosedError,
        frame: hyperframe.frame.DataFrame,
    ) -> tuple[list[hyperframe.frame.Frame], list[h2.events.Event]]:
        if self._stream_is_closed_by_end(exc.stream_id):
            # RFC 9113 5.1: frames after the peer's END_STREAM are a
            # connection error of type STREAM_CLOSED (h2 only resets the
            # stream for DATA, unlike for the other frame types).
            raise exc
        return super()._handle_data_on_closed_stream(events, exc, frame)

    def _terminate_connection(self, error_code: h2.errors.ErrorCodes) -> None:
        # h2 calls this while handling the error it is about to raise.
        code = _error_code(sys.exc_info()[1], error_code)
        super()._terminate_connection(h2.errors.ErrorCodes(code))
