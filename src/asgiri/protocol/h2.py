"""HTTP/2 server connection, sans I/O, on top of the h2 library: events in and out, flow control.

:meth:`H2Connection.receive_data` turns frames into the version-neutral
events of :mod:`asgiri.protocol.events`, and the ``send_*`` methods queue
frames; :meth:`data_to_send` hands the bytes to write.

Flow control, both ways:

* Inbound: DATA is acknowledged (WINDOW_UPDATE) only when the application
  consumed it (:meth:`acknowledge`), so a slow reader holds at most one
  window of body per stream.
* Outbound: body bytes beyond what the peer's windows allow wait in a
  per-stream buffer and leave as WINDOW_UPDATEs arrive; ``buffered(stream)``
  tells the server when to make the app wait (backpressure).

What the h2 library does not do is next to this module: the frame screen
that walks every frame header first (flood and size limits, the RFC 9113
frame rules h2 leaves unchecked: :mod:`.h2_screen`), the checks of received
header blocks (:mod:`.fields`), and the overrides of h2's private methods
that hook them in (:mod:`.h2_internals`, the only module that touches h2's
private members).
"""

from __future__ import annotations

import contextlib
from collections import deque
from dataclasses import dataclass
from typing import Any, Final

import h2.errors
import h2.events
import h2.exceptions
import hyperframe.frame

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
from .fields import RequestHead
from .h2_internals import goaway_code, server_connection
from .h2_screen import PREFACE, FrameScreen, ScreenError
from .response import ResponseChecker, wire_fields

__all__ = [
    "PREFACE",
    "ConnectionEnded",
    "H2Connection",
    "H2Limits",
    "StreamWritable",
]

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
        # The hard cap wins over the advertised size: advertising more than
        # is accepted would turn the peer's conforming frames into errors.
        self._conn = server_connection(
            max_concurrent_streams=limits.max_concurrent_streams,
            initial_window_size=limits.initial_window_size,
            max_frame_size=min(limits.max_frame_size, limits.max_inbound_frame_size),
            max_header_list_size=limits.max_header_list_size,
            enable_connect_protocol=limits.enable_connect_protocol,
        )
        self._screen = FrameScreen(
            max_continuations=limits.max_continuations,
            max_block=limits.max_header_list_size * 2,
            flood_budget=limits.flood_budget,
            max_resets=limits.max_resets,
        )
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
        #: Client resets h2 reported (the screen counts the frames before that).
        self._resets = 0
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
        self._screen.opened(1)

    # ------------------------------------------------------------ reading

    def receive_data(self, data: bytes) -> list[StreamEvent]:
        """Feed received bytes; returns the events they complete.

        A connection error is answered here (GOAWAY queued) and reported as
        :class:`ConnectionEnded`; the server then flushes and closes.
        """
        if self.closed:
            return []
        try:
            data = self._screen.screen(data)
            h2_events = self._conn.receive_data(data)
        except ScreenError as exc:
            return self._fail(exc.code, str(exc))
        except h2.exceptions.ProtocolError as exc:
            code = getattr(exc, "error_code", None) or h2.errors.ErrorCodes.PROTOCOL_ERROR
            return self._fail(goaway_code(exc, code), str(exc))
        events: list[StreamEvent] = []
        #: Windows opened in this read: buffered data is flushed once, after
        #: all its frames, not once per WINDOW_UPDATE (a flood of them would
        #: otherwise walk every buffered stream per 13-byte frame).
        window_opened = False
        #: Streams refused in this read: the end of their (empty) body is nobody's.
        refused: set[int] = set()
        ev: Any
        for ev in h2_events:
            kind = type(ev)
            if kind is h2.events.DataReceived:
                self._on_data(ev, events)
            elif kind is h2.events.RequestReceived:
                request = self._request(ev)
                if request is not None:
                    events.append(request)
                elif ev.stream_ended is not None:
                    refused.add(ev.stream_id)
            elif kind is h2.events.StreamEnded:
                stream_id = ev.stream_id
                trailers = self._trailers.pop(stream_id, None)
                if stream_id not in refused and stream_id not in self._rejected:
                    events.append(EndBody(stream_id, trailers))
            elif kind is h2.events.TrailersReceived:
                self._trailers[ev.stream_id] = list(ev.headers)
            elif kind is h2.events.StreamReset:
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
        if self._resets > self.limits.max_resets + self._screen.completed:
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
        # Checked and taken apart by check_header_block (see ServerH2._receive_frame).
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
        self._screen.request_seen()
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
        if not self._conn.ended:
            # (h2 has already queued its GOAWAY for the errors it raises.)
            with contextlib.suppress(h2.exceptions.ProtocolError):
                self._conn.close_connection(error_code=code, last_stream_id=self.last_stream_id)
        return [ConnectionEnded(int(code), message, self.last_stream_id)]

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
        self._screen.completed += 1

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
