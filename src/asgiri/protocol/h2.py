"""HTTP/2 server connection, sans I/O, on top of the h2 library (pure Python).

The fallback codec: :mod:`asgiri.protocol.h2_nghttp2` is the same interface
(:class:`~asgiri.protocol.h2_common.H2Codec`) on libnghttp2, some 15 times
cheaper per request; this one serves where the ngh2 package has no wheel
(PyPy, platforms without a build) or when ``--h2-codec h2`` asks for it.

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

Defences the h2 library does not provide are in front of it
(:class:`~asgiri.protocol.h2_common.FrameScreen`, shared with the other
codec, in its strict form): a cap on header-block size and CONTINUATION count
(CVE-2024-27316), counters for frames that cost the server work without
producing requests (rapid reset CVE-2023-44487, PING/SETTINGS/PRIORITY/empty-DATA
floods), and the RFC 9113 frame rules h2 leaves unchecked.  The checks of
received header blocks are :mod:`.fields`'; the overrides of h2's private
methods that hook them in are in :mod:`.h2_internals`, the only module that
touches h2's private members.
"""

from __future__ import annotations

import binascii
import contextlib
from collections import deque
from typing import Any, Final

import h2.config
import h2.connection
import h2.errors
import h2.events
import h2.exceptions
import h2.settings
import h2.stream
import hyperframe.exceptions
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
from .h2_common import (
    PREFACE,
    CodecError,
    ErrorCode,
    Frame,
    FrameScreen,
    H2Limits,
    RequestLimits,
    connect_refusal,
)
from .h2_internals import ServerH2, goaway_code
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
    """The server side of one HTTP/2 connection (an :class:`~.h2_common.H2Codec`)."""

    cancel_code: int = ErrorCode.CANCEL
    internal_error_code: int = ErrorCode.INTERNAL_ERROR

    def __init__(self, limits: H2Limits | None = None) -> None:
        self.limits = limits = limits or H2Limits()
        config = h2.config.H2Configuration(
            client_side=False,
            header_encoding=None,
            # Received header blocks are checked (RFC 9113 8.2, 8.3) and their
            # cookies joined by check_header_block, in one pass and without
            # h2's per-byte loops; see h2_internals.ServerH2._receive_frame.
            validate_inbound_headers=False,
            normalize_inbound_headers=False,
            # What the app sends is validated by the ASGI stream; h2's own
            # outbound checks would only repeat them.
            validate_outbound_headers=False,
            normalize_outbound_headers=False,
        )
        self._conn = ServerH2(config=config)
        self._configure()
        self._out: dict[int, _OutStream] = {}
        #: Response bytes still owed per stream under a declared content-length.
        #: Checks of what the app sends (the server layer calls them first).
        self.responses = ResponseChecker()
        self._trailers: dict[int, Headers] = {}
        #: Flow-controlled bytes received per stream and not yet acknowledged.
        self._unacked: dict[int, int] = {}
        #: Flood budgets, the CONTINUATION cap and the RFC 9113 rules h2 lacks.
        self._screen = _Screen(limits)
        #: --limit-request-body and the request-head limits (413, 431).
        self._limits = RequestLimits(limits)
        self.closed = False
        self.last_stream_id = 0
        self._goaway_sent: int | None = None
        #: New streams are refused (a draining connection that is still busy).
        self._refusing = False
        self._extra_out: list[bytes] = []

    # ------------------------------------------------------------ set-up

    def _configure(self) -> None:
        """The SETTINGS and limits of ``--h2-*``, on h2's connection."""
        limits = self.limits
        frame_size = limits.frame_size
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
        self._conn.reset_allowance = limits.max_resets
        # h2 hands a setting to its HPACK decoder only when an ACK changes
        # it, and settings given as initial values never change: without
        # this, the decoder would keep its 64 KiB default whatever is
        # configured (and advertised), and HPACK bombs would be bounded by
        # that, not by h2_max_header_list_size.
        self._conn.decoder.max_header_list_size = limits.max_header_list_size

    def initiate(self) -> None:
        """Queue the server preface (SETTINGS) and open the connection window."""
        self._conn.initiate_connection()
        extra = self.limits.initial_window_size - 65535
        if extra > 0:
            self._conn.increment_flow_control_window(extra)

    def initiate_upgrade(self, settings_header: bytes) -> None:
        """h2c Upgrade: stream 1 is the HTTP/1.1 request, already half-closed."""
        try:
            self._conn.initiate_upgrade_connection(settings_header)
        except (hyperframe.exceptions.InvalidFrameError, binascii.Error) as exc:
            # The 101 has gone out: answer the bad HTTP2-Settings on HTTP/2,
            # on a connection made afresh (h2's may have changed state).
            self._conn = ServerH2(config=self._conn.config)
            self._configure()
            self.initiate()
            self._fail(h2.errors.ErrorCodes.PROTOCOL_ERROR, f"invalid HTTP2-Settings: {exc}")
            return
        extra = self.limits.initial_window_size - 65535
        if extra > 0:
            self._conn.increment_flow_control_window(extra)
        self.last_stream_id = 1
        self._screen.max_opened = 1

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
        except CodecError as exc:
            return self._fail(exc.code, str(exc))
        except h2.exceptions.ProtocolError as exc:
            code = getattr(exc, "error_code", None) or h2.errors.ErrorCodes.PROTOCOL_ERROR
            return self._fail(goaway_code(exc, code), str(exc))
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
                if stream_id not in refused and stream_id not in self._limits.rejected:
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
        if window_opened and self._out and not self.closed:
            self._flush_all(events)
        return events

    def _credit(self, nbytes: int, stream_id: int) -> None:
        """Give back at once the window of bytes nobody reads."""
        with contextlib.suppress(h2.exceptions.ProtocolError):
            self._conn.acknowledge_received_data(nbytes, stream_id)

    def _on_data(self, ev: Any, events: list[Any]) -> None:
        stream_id = ev.stream_id
        data = ev.data
        flow = ev.flow_controlled_length
        if data:
            if self._limits.body(stream_id, len(data), events):
                # Nobody reads it: keep the connection window open.
                self._conn.acknowledge_received_data(flow, stream_id)
                return
            self._unacked[stream_id] = self._unacked.get(stream_id, 0) + len(data)
            events.append(Body(stream_id, data))
        if flow > len(data):
            # Padding is never given to the app: credit it back at once.
            self._conn.acknowledge_received_data(flow - len(data), stream_id)

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
            code = connect_refusal(protocol, self.limits)
            if code is not None:
                self._reset(stream_id, code)
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
        if self._screen.flood:
            self._screen.flood -= 1
        return self._limits.head(request, head.size, len(headers), head.content_length) or request

    def _on_reset(self, stream_id: int) -> None:
        self._out.pop(stream_id, None)
        self._release(stream_id)
        self._trailers.pop(stream_id, None)
        self._limits.forget(stream_id)

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

    def pending_output(self) -> int:
        return self._conn.pending_output() + sum(map(len, self._extra_out))

    def release(self) -> None:
        self._conn.release()

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
        self._conn.reset_allowance += 1

    def forget(self, stream_id: int) -> None:
        """The stream's app is done: release credit for body it never read."""
        self._release(stream_id)
        self.responses.forget(stream_id)
        self._trailers.pop(stream_id, None)
        self._limits.forget(stream_id)

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

    def stop_reading(self, stream_id: int, code: int = ErrorCode.NO_ERROR) -> None:
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

    def refuse_new_streams(self) -> None:
        self._refusing = True

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

    @property
    def goaway_sent(self) -> bool:
        return self._goaway_sent is not None

    def data_to_send(self) -> bytes:
        out: bytes = self._conn.data_to_send()
        if self._extra_out:
            out += b"".join(self._extra_out)
            self._extra_out.clear()
        return out


#: Frame types :meth:`_Screen._rules` looks at once the first frame has passed.
_CONFORM: Final = frozenset({Frame.HEADERS, Frame.RST_STREAM, Frame.SETTINGS})
_ALL_FRAMES: Final = frozenset(range(256))


class _Screen(FrameScreen):
    """The RFC 9113 rules h2 leaves unchecked (or answers with another code)."""

    __slots__ = ("_expect_settings", "max_opened")

    mask_reserved_bit = True

    def __init__(self, limits: H2Limits) -> None:
        super().__init__(limits)
        #: The preface ends with a SETTINGS frame (RFC 9113 3.4).
        self._expect_settings = True
        self.ruled = _ALL_FRAMES
        #: Highest client stream id a HEADERS frame has used.
        self.max_opened = 0

    def _check_frame(self, buf: bytes, pos: int, data: bytes, payload: int) -> int:
        length = int.from_bytes(buf[pos : pos + 3], "big")
        if length > self.limits.frame_size:
            # RFC 9113 4.2.  h2 says so only once the whole frame is in its
            # buffer: a header announcing 16 MiB would make it hold 16 MiB.
            raise CodecError(
                ErrorCode.FRAME_SIZE_ERROR, f"frame of {length} bytes over SETTINGS_MAX_FRAME_SIZE"
            )
        return super()._check_frame(buf, pos, data, payload)

    def _rules(
        self, buf: bytes, pos: int, ftype: int, flags: int, length: int, data: bytes, payload: int
    ) -> None:
        if self._expect_settings:
            self._expect_settings = False
            self.ruled = _CONFORM
            if ftype != Frame.SETTINGS or flags & Frame.ACK:
                raise CodecError(
                    ErrorCode.PROTOCOL_ERROR, "client preface not followed by SETTINGS"
                )
        if ftype == Frame.SETTINGS:
            if flags & Frame.ACK and length:
                # 6.5 (h2 would say PROTOCOL_ERROR).
                raise CodecError(ErrorCode.FRAME_SIZE_ERROR, "SETTINGS ACK with payload")
            return
        stream_id = int.from_bytes(buf[pos + 5 : pos + 9], "big") & 0x7FFFFFFF
        if ftype == Frame.HEADERS:
            if stream_id & 1 and stream_id > self.max_opened:
                self.max_opened = stream_id
        elif stream_id and (not stream_id & 1 or stream_id > self.max_opened):
            # 5.1: RST_STREAM on an idle stream (h2 ignores it once a stream was opened).
            raise CodecError(ErrorCode.PROTOCOL_ERROR, "RST_STREAM on an idle stream")
