"""HTTP/2 server connection, sans I/O, on libnghttp2 (the ngh2 package).

The same interface and events as :mod:`asgiri.protocol.h2`
(:class:`~asgiri.protocol.h2_common.H2Codec`), about fifteen times cheaper per
request: framing, HPACK, the stream state machine, flow control and the
RFC 9113 message checks run in C.

What nghttp2 does itself, and so is not repeated here: every frame and stream
rule of RFC 9113 sections 4-6 with the codes asgiri's h2 integration answers
(including the preface, SETTINGS ACK and idle-stream rules and the reserved
bit of WINDOW_UPDATE increments, which the h2 codec has to screen for), and
the field checks of 8.2/8.3 (names, values, connection-specific fields, TE,
pseudo-header fields, content-length).  A malformed request is a stream error
here (RST_STREAM PROTOCOL_ERROR, as RFC 9113 8.1.1 asks), where the h2 codec
ends the connection.

What stays asgiri's, because nghttp2 has no such defence or answers it
differently (see :class:`~asgiri.protocol.h2_common.FrameScreen`, in its
non-strict form): the PING/SETTINGS/PRIORITY/empty-DATA flood budget (nghttp2
only bounds ACKs queued and unsent, and PRIORITY by its glitch bucket), resets
counted against completed streams (nghttp2's token bucket answers
INTERNAL_ERROR and would cut off a client that cancels a thousand of its
requests), and the CONTINUATION cap in frames
and bytes (nghttp2 counts frames only, and fails without a GOAWAY).  A
header list over ``max_header_list_size`` (an HPACK bomb) is stopped by ngh2
while it decodes; asgiri answers it with the GOAWAY the h2 codec sends
(ENHANCE_YOUR_CALM).  Host differing from ``:authority`` is checked here.

Flow control: inbound credit is returned when the app consumed the body
(:meth:`H2Connection.acknowledge`, with nghttp2's automatic WINDOW_UPDATEs
off); outbound body waits in ngh2's queue for the peer's windows, and
``buffered(stream)`` reports what is left of it.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import functools
from collections.abc import Callable
from typing import Any, Final

import ngh2

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
from .h2_common import (
    FRAME_HEADER,
    CodecError,
    ErrorCode,
    Frame,
    FrameScreen,
    H2Limits,
    RequestLimits,
    connect_refusal,
    goaway_frame,
    rst_stream_frame,
)
from .response import ResponseChecker, wire_fields

__all__ = ["H2Connection"]

#: Text of the usual methods and schemes, so most requests decode none.
_METHODS: Final = {
    m.encode(): m
    for m in ("GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "CONNECT", "TRACE")
}
_SCHEMES: Final = {b"http": "http", b"https": "https"}
_DEFAULT_WINDOW: Final = 65535
_COLON: Final = 0x3A

_RequestReceived: Final = ngh2.RequestReceived
_DataReceived: Final = ngh2.DataReceived
_TrailersReceived: Final = ngh2.TrailersReceived
_StreamReset: Final = ngh2.StreamReset
_StreamClosed: Final = ngh2.StreamClosed
_WindowUpdated: Final = ngh2.WindowUpdated
_SettingsReceived: Final = ngh2.SettingsReceived
_GoAwayReceived: Final = ngh2.GoAwayReceived
_ConnectionClosed: Final = ngh2.ConnectionClosed

Events = list[StreamEvent]


def _configuration(limits: H2Limits) -> ngh2.Configuration:
    return ngh2.Configuration(
        # Credit goes back when the app has read the body (acknowledge).
        auto_window_update=False,
        # A backstop only: the screen ends the connection first, with a
        # GOAWAY (nghttp2's own count fails it without one).
        max_continuations=limits.max_continuations,
        # Out of reach: resets are counted against completed streams by the
        # screen instead (nghttp2's bucket answers INTERNAL_ERROR).
        stream_reset_rate_limit=(1 << 62, 0),
        max_inbound_header_list_size=limits.max_header_list_size,
        # Every field costs 32 octets of the list size (RFC 9113 6.5.2), so
        # the size bounds the count: never refuse a list the size allows.
        max_inbound_header_count=limits.max_header_list_size // 32 + 1,
    )


def _settings(limits: H2Limits) -> dict[int, int]:
    settings: dict[int, int] = {
        ngh2.Setting.MAX_CONCURRENT_STREAMS: limits.max_concurrent_streams,
        ngh2.Setting.INITIAL_WINDOW_SIZE: limits.initial_window_size,
        ngh2.Setting.MAX_FRAME_SIZE: limits.frame_size,
        ngh2.Setting.MAX_HEADER_LIST_SIZE: limits.max_header_list_size,
    }
    if limits.enable_connect_protocol:
        settings[ngh2.Setting.ENABLE_CONNECT_PROTOCOL] = 1
    return settings


def _send_window(conn: ngh2.Connection, stream_id: int, opening: bool) -> int | None:
    """nghttp2's send window of ``stream_id`` (0 when negative), for the screen.

    None for a stream nghttp2 does not have, unless it is ``opening`` in
    the read being screened: it starts at the peer's initial window.
    """
    try:
        return conn.stream_remote_window_size(stream_id)
    except ngh2.NGH2Error:
        if not opening:
            return None
        return conn.remote_settings.get(ngh2.Setting.INITIAL_WINDOW_SIZE, _DEFAULT_WINDOW)


class H2Connection:
    """The server side of one HTTP/2 connection (an :class:`~.h2_common.H2Codec`)."""

    cancel_code: int = ErrorCode.CANCEL
    internal_error_code: int = ErrorCode.INTERNAL_ERROR

    def __init__(self, limits: H2Limits | None = None) -> None:
        self.limits = limits = limits or H2Limits()
        self._conn = ngh2.Connection(ngh2.Role.SERVER, _configuration(limits))
        #: Checks of what the app sends (the server layer calls them first).
        self.responses = ResponseChecker()
        #: Body bytes received per stream and not yet acknowledged.
        self._unacked: dict[int, int] = {}
        #: Flood budgets and the CONTINUATION cap (the rest is nghttp2's).
        # A function of the nghttp2 session, not a method of this object:
        # a bound method held by the screen would make codec and screen a
        # reference cycle, left to the cyclic garbage collector (with the
        # session's C memory) after the connection closes.
        self._screen = _Screen(limits, functools.partial(_send_window, self._conn))
        #: --limit-request-body and the request-head limits (413, 431).
        self._limits = RequestLimits(limits)
        #: ``stop_reading`` codes waiting for the stream's queued body to leave.
        self._stops: dict[int, int] = {}
        #: New streams are refused (a draining connection that is still busy).
        self._refusing = False
        #: Streams reset by the peer or by nghttp2 (malformed), for the budget.
        self._resets = 0
        #: Streams reset here whose closing nghttp2 has still to report.
        self._local_resets: set[int] = set()
        #: Streams reported (a request, or its rejection) and not yet closed.
        self._reported: set[int] = set()
        #: Streams whose response body may still wait in ngh2's queue.
        self._queued: set[int] = set()
        #: Output taken from nghttp2 before ``data_to_send`` (see ``_pump``).
        self._out: list[bytes] = []
        self.closed = False
        self.last_stream_id = 0
        self._goaway_sent: int | None = None

    # ------------------------------------------------------------ set-up

    def initiate(self) -> None:
        """Queue the server preface (SETTINGS) and open the connection window."""
        self._conn.initiate_connection(_settings(self.limits))
        self._open_window()

    def initiate_upgrade(self, settings_header: bytes) -> None:
        """h2c Upgrade: stream 1 is the HTTP/1.1 request, already half-closed."""
        try:
            payload = base64.urlsafe_b64decode(settings_header + b"=" * (-len(settings_header) % 4))
            self._conn.initiate_upgrade(payload, local_settings=_settings(self.limits))
        except (binascii.Error, ValueError) as exc:
            # The 101 has gone out: answer the bad HTTP2-Settings on HTTP/2.
            self._conn.initiate_connection(_settings(self.limits))
            self._fail(ErrorCode.PROTOCOL_ERROR, f"invalid HTTP2-Settings: {exc}")
            return
        self._open_window()
        self.last_stream_id = 1
        self._reported.add(1)
        self._screen.max_opened = 1

    def _open_window(self) -> None:
        if self.limits.initial_window_size > _DEFAULT_WINDOW:
            self._conn.set_local_window_size(self.limits.initial_window_size)
        # The server preface leaves as queued, SETTINGS then WINDOW_UPDATE,
        # ahead of the ACKs nghttp2 sends first once it has read something.
        self._pump()

    # ------------------------------------------------------------ reading

    def receive_data(self, data: bytes) -> Events:
        """Feed received bytes; returns the events they complete.

        A connection error is answered here (GOAWAY queued) and reported as
        :class:`ConnectionEnded`; the server then flushes and closes.
        """
        if self.closed:
            return []
        conn = self._conn
        try:
            conn.receive_data(self._screen.screen(data))
        except CodecError as exc:
            return self._fail(exc.code, str(exc))
        except ngh2.DenialOfServiceError as exc:
            # A header list over the limit (an HPACK bomb), or a backstop.
            return self._fail(ErrorCode.ENHANCE_YOUR_CALM, str(exc))
        except ngh2.ConnectionStateError:
            # After our GOAWAY and the last stream, nghttp2 reads no more.
            return []
        except ngh2.NGH2Error as exc:
            # Not HTTP/2 at all (a bad preface), or nghttp2 failed.
            return self._fail(ErrorCode.PROTOCOL_ERROR, str(exc))
        events: Events = []
        if self._screen.refused:
            self._refuse()
        window_opened = self._handle(conn.events(), events)
        if self._screen.overflowed and not self.closed:
            self._overflowed()
        if not self.closed:
            # Take what nghttp2 answered (ACKs, its RST_STREAMs and GOAWAY)
            # now: the streams and the connection it closes are reported in
            # this read's events, and buffered data the windows now allow moves.
            # (Refusing a request above may already have taken the output, with
            # the GOAWAY of a later frame in it: its events are read here too.)
            if conn.want_write:
                self._pump()
            later = conn.events()
            if later:
                window_opened = self._handle(later, events) or window_opened
        if self._resets > self.limits.max_resets + self._screen.completed and not self.closed:
            return self._fail(ErrorCode.ENHANCE_YOUR_CALM, "too many stream resets")
        if window_opened and self._queued and not self.closed:
            self._writable(events)
        return events

    def _overflowed(self) -> None:
        """Send RST_STREAM FLOW_CONTROL_ERROR for the streams whose send window
        a WINDOW_UPDATE took past 2^31-1 (RFC 9113 6.9.1).

        nghttp2 would end the connection instead, so the screen handed it a
        RST_STREAM of that code in place of the WINDOW_UPDATE: nghttp2 closed
        the stream there and then (its queued body dropped, the concurrency
        slot free for the rest of the read), reported the reset like a
        peer's (the app stops; it counts against the reset budget, as a reset
        the peer provokes must), and the frame is sent from here.
        """
        screen = self._screen
        for stream_id in screen.overflowed:
            screen.reset_here(stream_id)
            self._out.append(rst_stream_frame(stream_id, ErrorCode.FLOW_CONTROL_ERROR))
        screen.overflowed.clear()

    def _refuse(self) -> None:
        """Streams opened after our GOAWAY: nghttp2 drops them without a word,
        and the h2 codec refuses them, which tells the client at once that a
        retry elsewhere is safe (RFC 9113 8.7)."""
        screen = self._screen
        for stream_id in screen.refused:
            screen.reset_here(stream_id)
            self._out.append(rst_stream_frame(stream_id, ErrorCode.REFUSED_STREAM))
        screen.refused.clear()

    def _handle(self, ng_events: list[Any], events: Events) -> bool:
        """Translate nghttp2's events; returns whether a window may have opened."""
        window_opened = False
        reset_by_peer: set[int] | None = None
        for ev in ng_events:
            kind = type(ev)
            if kind is _DataReceived:
                stream_id = ev.stream_id
                data = ev.data
                if data:
                    if self._limits.body(stream_id, len(data), events):
                        # Nobody reads it: keep the connection window open.
                        with contextlib.suppress(ngh2.NGH2Error, ValueError):
                            self._conn.acknowledge_received_data(len(data), stream_id)
                        continue
                    self._unacked[stream_id] = self._unacked.get(stream_id, 0) + len(data)
                    events.append(Body(stream_id, data))
                if ev.end_stream and stream_id not in self._limits.rejected:
                    events.append(EndBody(stream_id))
            elif kind is _RequestReceived:
                request = self._request(ev.stream_id, ev.headers)
                if request is not None:
                    self._reported.add(ev.stream_id)
                    events.append(request)
                    if ev.end_stream and type(request) is Request:
                        events.append(EndBody(ev.stream_id))
            elif kind is _StreamClosed:
                stream_id = ev.stream_id
                reported = stream_id in self._reported
                if reported:
                    self._reported.discard(stream_id)
                if stream_id in self._local_resets:
                    self._local_resets.discard(stream_id)
                elif ev.error_code and (reset_by_peer is None or stream_id not in reset_by_peer):
                    # nghttp2 reset it (a malformed message, a body longer
                    # than its content-length, a stream over the limit): the
                    # app must stop, as for the peer's own reset.  A head it
                    # refused as malformed was never reported: no app to
                    # tell, but the reset still counts against the budget.
                    self._screen.reset_here(stream_id)
                    self._on_reset(stream_id)
                    if reported:
                        events.append(StreamClosed(stream_id, ev.error_code))
            elif kind is _TrailersReceived:
                if ev.stream_id not in self._limits.rejected:
                    events.append(EndBody(ev.stream_id, list(ev.headers)))
            elif kind is _StreamReset:
                stream_id = ev.stream_id
                self._on_reset(stream_id)
                if reset_by_peer is None:
                    reset_by_peer = set()
                reset_by_peer.add(stream_id)
                if stream_id in self._reported:
                    # (Not a head nghttp2 refused in the same read: never reported.)
                    events.append(StreamClosed(stream_id, ev.error_code))
            elif kind is _WindowUpdated or kind is _SettingsReceived:
                window_opened = True
            elif kind is _GoAwayReceived:
                # Nothing can be answered once the peer has gone away (as with
                # the h2 codec): the open streams see a disconnect.
                self.closed = True
                events.append(ConnectionEnded(ev.error_code, last_stream_id=ev.last_stream_id))
                break
            elif kind is _ConnectionClosed and not self.closed and ev.error_code:
                # nghttp2 answered a connection error with its GOAWAY (the
                # last output), naming the last stream it began to read; the
                # last stream processed is the one a client may not retry.
                if self._out:
                    self._out[-1] = _with_last_stream(self._out[-1], self.last_stream_id)
                self.closed = True
                events.append(ConnectionEnded(ev.error_code, last_stream_id=self.last_stream_id))
                break
        return window_opened

    def _request(self, stream_id: int, headers: Any) -> Request | RequestRejected | None:
        """The request of a header block nghttp2 has checked (RFC 9113 8.2, 8.3)."""
        if self._refusing:
            self._reset(stream_id, ErrorCode.REFUSED_STREAM)
            return None
        if stream_id > self.last_stream_id:
            self.last_stream_id = stream_id
        method = path = scheme = authority = protocol = host = length = None
        expect_continue = False
        fields: Headers = []
        cookies: list[bytes] | None = None
        size = 0
        for item in headers:
            name = item[0]
            size += len(name) + len(item[1])
            if name[0] == _COLON:
                # nghttp2 passes only known pseudo-header fields, once each.
                if name == b":method":
                    method = item[1]
                elif name == b":path":
                    path = item[1]
                elif name == b":scheme":
                    scheme = item[1]
                elif name == b":authority":
                    authority = item[1]
                else:
                    protocol = item[1]
            elif name == b"cookie":
                # Joined into one field (RFC 9113 8.2.3).
                if cookies is None:
                    cookies = []
                cookies.append(item[1])
            else:
                fields.append(item)
                if name == b"host":
                    host = item[1]
                elif name == b"expect":
                    expect_continue = item[1].lower() == b"100-continue"
                elif name == b"content-length":
                    length = item[1]  # (nghttp2 checked it is one number)
        if cookies is not None:
            fields.append((b"cookie", b"; ".join(cookies)))
        if method is None or (authority is not None and host is not None and authority != host):
            # RFC 9113 8.3.1: a Host naming another entity than :authority.
            self._reset(stream_id, ErrorCode.PROTOCOL_ERROR)
            return None
        if method == b"CONNECT":
            code = connect_refusal(protocol, self.limits)
            if code is not None:
                self._reset(stream_id, code)
                return None
        if authority is not None and host is None:
            fields.insert(0, (b"host", authority))
        raw_path, _, query = (path or b"/").partition(b"?")
        text_method = _METHODS.get(method)
        if text_method is None:
            text_method = method.decode("ascii")
        screen = self._screen
        # Useful work: it pays back the control-frame budget.
        if screen.flood:
            screen.flood -= 1
        request = Request(
            stream_id,
            text_method,
            raw_path,
            query,
            fields,
            "2",
            expect_continue,
            authority,
            _SCHEMES.get(scheme) or scheme.decode("ascii") if scheme else None,
            protocol,
        )
        content_length = int(length) if length is not None else None
        return self._limits.head(request, size, len(fields), content_length) or request

    def _on_reset(self, stream_id: int) -> None:
        self._release(stream_id)
        self._queued.discard(stream_id)
        self._limits.forget(stream_id)
        self._stops.pop(stream_id, None)
        self._resets += 1

    def _release(self, stream_id: int) -> None:
        """Give back the connection-window credit of body nobody will read.

        Without this, bytes received for a stream that was reset or answered
        without reading its body would shrink the connection window for good.
        """
        pending = self._unacked.pop(stream_id, 0)
        if pending:
            with contextlib.suppress(ngh2.NGH2Error, ValueError):
                self._conn.acknowledge_received_data(pending, stream_id)

    def _fail(self, code: int, message: str) -> Events:
        self.closed = True
        conn = self._conn
        try:
            # What was queued before the error still leaves, ahead of the GOAWAY.
            self._pump()
            conn.terminate_connection(code, last_stream_id=self.last_stream_id)
        except ngh2.NGH2Error:
            # nghttp2 gave up on the connection: the GOAWAY is built here.
            self._out.append(goaway_frame(self.last_stream_id, code))
        return [ConnectionEnded(code, message, self.last_stream_id)]

    def _writable(self, events: Events) -> None:
        """Report the streams whose queued body has all left (a window opened)."""
        self._pump()
        queued = self._conn.queued_body_size
        for stream_id in list(self._queued):
            if not queued(stream_id):
                self._queued.discard(stream_id)
                events.append(StreamWritable(stream_id))
                code = self._stops.pop(stream_id, None)
                if code is not None:
                    self._reset(stream_id, code)

    # ------------------------------------------------------------ writing

    # The send methods return False when the stream or the connection is
    # already gone (reset by the peer, or a GOAWAY received), so that the
    # caller treats the stream as disconnected instead of raising into the app.

    def send_headers(self, stream_id: int, status: int, headers: Headers, end: bool) -> bool:
        response = wire_fields(status, headers)
        if self.closed:
            return False
        try:
            self._conn.send_response(stream_id, response, end_stream=end)
        except ngh2.NGH2Error:
            return False
        if end:
            self._screen.completed += 1
        return True

    def send_informational(self, stream_id: int, status: int, headers: Headers) -> bool:
        if self.closed:
            return False
        try:
            self._conn.send_informational_response(
                stream_id, [(b":status", b"%d" % status), *headers]
            )
        except ngh2.NGH2Error:
            return False
        return True

    def send_data(self, stream_id: int, data: bytes, end: bool) -> bool:
        """Queue body bytes; nghttp2 frames them as the windows allow."""
        if self.closed:
            return False
        try:
            self._conn.send_data(stream_id, data, end_stream=end)
        except ngh2.NGH2Error:
            return False
        if data:
            self._queued.add(stream_id)
        if end:
            self._screen.completed += 1
        return True

    def send_trailers(self, stream_id: int, trailers: Headers) -> bool:
        if self.closed:
            return False
        try:
            self._conn.send_trailers(stream_id, [(name.lower(), value) for name, value in trailers])
        except ngh2.NGH2Error:
            return False
        self._screen.completed += 1
        return True

    @property
    def sending(self) -> bool:
        """Response data still waits for the peer's flow-control window."""
        conn = self._conn
        if not conn.queued_body_size():
            return False
        self._pump()
        return bool(conn.queued_body_size())

    def buffered(self, stream_id: int) -> int:
        """Body bytes of the stream waiting for the peer's windows."""
        conn = self._conn
        if not conn.queued_body_size(stream_id):
            return 0
        self._pump()
        return int(conn.queued_body_size(stream_id))

    def pending_output(self) -> int:
        """What :meth:`buffered` took from nghttp2 and ``data_to_send`` has not."""
        return sum(map(len, self._out))

    def release(self) -> None:
        """Nothing to break: the screen holds the session, not this object."""

    def _pump(self) -> None:
        """Take nghttp2's output now, so that its queue holds only what waits
        for a window; it leaves with the next ``data_to_send``, in order."""
        with contextlib.suppress(ngh2.ConnectionStateError):
            out = self._conn.data_to_send()
            if out:
                self._out.append(out)

    def forget(self, stream_id: int) -> None:
        """The stream's app is done: release credit for body it never read."""
        self._release(stream_id)
        self.responses.forget(stream_id)
        self._limits.forget(stream_id)

    def acknowledge(self, stream_id: int, nbytes: int) -> None:
        """The app consumed ``nbytes`` of the stream's body: grant that credit back."""
        pending = self._unacked.get(stream_id, 0)
        nbytes = min(nbytes, pending)
        if nbytes <= 0:
            return
        self._unacked[stream_id] = pending - nbytes
        with contextlib.suppress(ngh2.NGH2Error, ValueError):
            self._conn.acknowledge_received_data(nbytes, stream_id)

    def reset(self, stream_id: int, code: int = ErrorCode.INTERNAL_ERROR) -> None:
        self._reset(stream_id, code)

    def stop_reading(self, stream_id: int, code: int = ErrorCode.NO_ERROR) -> None:
        """The peer's direction of the stream is not wanted any more.

        HTTP/2 has no STOP_SENDING: RST_STREAM after a complete response says
        just that (RFC 9113 8.1, NO_ERROR).  A reset drops what is still
        queued for the stream, so while its response waits for window it is
        sent only once the response has left.
        """
        if self.buffered(stream_id):
            self._stops[stream_id] = code
            return
        self._reset(stream_id, code)

    def refuse_new_streams(self) -> None:
        self._refusing = True

    def _reset(self, stream_id: int, code: int) -> None:
        self._release(stream_id)
        self._queued.discard(stream_id)
        self._screen.reset_here(stream_id)
        conn = self._conn
        try:
            # Raises for a stream nghttp2 has closed (nothing to reset, and
            # no closing of it will be reported).
            conn.stream_remote_window_size(stream_id)
            # What the stream has queued goes first, as far as the windows
            # allow: nghttp2 would send the RST_STREAM ahead of it.
            self._pump()
            conn.reset_stream(stream_id, code)
        except ngh2.NGH2Error:
            return
        if code:
            self._local_resets.add(stream_id)

    def goaway(self, code: int = 0) -> None:
        """Graceful GOAWAY: streams up to ``last_stream_id`` still complete.

        nghttp2 ignores the streams the peer opens after it.
        """
        if self.closed or self._goaway_sent is not None:
            return
        self._goaway_sent = self.last_stream_id
        self._screen.refuse_above = self.last_stream_id
        with contextlib.suppress(ngh2.NGH2Error):
            self._conn.send_goaway(code, last_stream_id=self.last_stream_id)

    @property
    def goaway_sent(self) -> bool:
        return self._goaway_sent is not None

    def data_to_send(self) -> bytes:
        conn = self._conn
        try:
            data = conn.data_to_send()
        except ngh2.ConnectionStateError:
            data = b""
        if self._queued and not conn.queued_body_size():
            self._queued.clear()
            if self._stops:
                # Responses a stop_reading waited for have all left: now the
                # resets, after them in the output.
                self._out.append(data)
                stops, self._stops = self._stops, {}
                for stream_id, code in stops.items():
                    self._reset(stream_id, code)
                data = b""
                with contextlib.suppress(ngh2.ConnectionStateError):
                    data = conn.data_to_send()
        if self._out:
            self._out.append(data)
            data = b"".join(self._out)
            self._out.clear()
        return data


def _with_last_stream(out: bytes, last_stream_id: int) -> bytes:
    """``out`` (whole frames) with the last-stream id of its GOAWAY set."""
    pos = 0
    while len(out) - pos >= 17:
        if out[pos + 3] == Frame.GOAWAY:
            return out[: pos + 9] + last_stream_id.to_bytes(4, "big") + out[pos + 13 :]
        pos += 9 + int.from_bytes(out[pos : pos + 3], "big")
    return out


#: Frame types :meth:`_Screen._rules` looks at.
_RULED: Final = frozenset(
    {
        Frame.DATA,
        Frame.HEADERS,
        Frame.PRIORITY,
        Frame.RST_STREAM,
        Frame.SETTINGS,
        Frame.WINDOW_UPDATE,
    }
)
#: The largest flow-control window (RFC 9113 6.9.1).
_MAX_WINDOW: Final = (1 << 31) - 1
#: What an overflowing WINDOW_UPDATE becomes before nghttp2 reads it: the type,
#: flags and payload of a RST_STREAM FLOW_CONTROL_ERROR (the same length).
_RESET_OVERFLOW: Final = bytes([Frame.RST_STREAM, 0])
_FLOW_CONTROL_ERROR: Final = int(ErrorCode.FLOW_CONTROL_ERROR).to_bytes(4, "big")
#: The HEADERS flags that leave the fast path of :meth:`_Screen._check_frame`
#: (all but END_STREAM): END_HEADERS must be set, the others clear.
_PLAIN_HEADERS: Final = 0xFF & ~Frame.END_STREAM
#: How many skipped stream-id ranges and client-reset streams are remembered.
_REMEMBERED: Final = 64


class _Screen(FrameScreen):
    """The RFC 9113 rules nghttp2 leaves unchecked.

    nghttp2 (since 1.61) keeps nothing of a closed stream, so it ignores
    frames on one where RFC 9113 5.1 asks for STREAM_CLOSED (DATA or HEADERS
    after the peer's END_STREAM or RST_STREAM, WINDOW_UPDATE after its
    RST_STREAM) and 5.1.1 for PROTOCOL_ERROR (HEADERS on a stream id the
    peer skipped); it ignores PRIORITY frames, where 6.3 makes stream 0 and
    5.3.1 a stream depending on itself an error; and it does not hold
    CONTINUATION frames to SETTINGS_MAX_FRAME_SIZE (4.2).  This screen keeps
    the little state those rules need: the client streams still open on the
    client's side, and bounded memories of the rest.  It answers with a
    connection error (RFC 9113 5.4.2 allows that for a stream error too).

    One stream error is kept a stream error: a WINDOW_UPDATE that takes a
    stream's send window past 2^31-1 is RST_STREAM FLOW_CONTROL_ERROR in RFC
    9113 6.9.1, where nghttp2 ends the connection.  The screen adds the
    increment to the window nghttp2 holds (``send_window``) and to the
    stream's earlier increments in the same read; one that overflows is
    rewritten, in place, into a RST_STREAM FLOW_CONTROL_ERROR for nghttp2 to
    read (it closes the stream at that point of the read), and its stream is
    listed in ``overflowed`` for the codec to send the real RST_STREAM.  It
    cannot know the window after a SETTINGS frame earlier in the same read,
    nor see a frame whose header or increment is split across reads: those
    stay nghttp2's (a connection error).
    """

    continuation_size = True

    __slots__ = (
        "_credit",
        "_gaps",
        "_open",
        "_peer_reset",
        "_read_opened",
        "_read_settings",
        "_reset_here",
        "_retype",
        "_send_window",
        "max_opened",
        "overflowed",
        "refuse_above",
        "refused",
    )

    def __init__(self, limits: H2Limits, send_window: Callable[[int, bool], int | None]) -> None:
        super().__init__(limits)
        #: The codec's send window of a stream (None: no such stream); the
        #: flag says the stream opens in the read being screened.
        self._send_window = send_window
        #: Streams a WINDOW_UPDATE overflowed, for the codec to reset.
        self.overflowed: list[int] = []
        #: In the read being screened: the increments by stream, whether a
        #: SETTINGS frame came, the highest stream opened before it, and where
        #: the WINDOW_UPDATE frames to rewrite begin.
        self._credit: dict[int, int] = {}
        self._read_settings = False
        self._read_opened = 0
        self._retype: list[int] = []
        self.ruled = _RULED
        #: Highest client stream id a HEADERS frame has used.
        self.max_opened = 0
        #: Streams the client may still send on (its side is open).
        self._open: set[int] = set()
        #: Streams the client reset (oldest first, at most ``_REMEMBERED``).
        self._peer_reset: dict[int, None] = {}
        #: Streams reset here while the client could still send: its frames
        #: in flight are ignored (RFC 9113 5.1).
        self._reset_here: dict[int, None] = {}
        #: Stream ids the client skipped: (first, last), at most ``_REMEMBERED``.
        self._gaps: list[tuple[int, int]] = []
        #: After a graceful GOAWAY: the last stream it lets complete.
        self.refuse_above: int | None = None
        #: Streams opened beyond ``refuse_above``, for the codec to refuse.
        self.refused: list[int] = []

    def _check_frame(self, buf: bytes, pos: int, data: bytes, payload: int) -> int:
        high, low, ftype, flags, stream_id = FRAME_HEADER.unpack_from(buf, pos)
        if (
            ftype == Frame.HEADERS
            and flags & _PLAIN_HEADERS == Frame.END_HEADERS
            and stream_id == (self.max_opened + 2 if self.max_opened else 1)
            and self.refuse_above is None
            and not self._block_frames
        ):
            # The common case, a request whole in one frame on the next stream
            # id, by the rules below: nothing to count, one stream to note.
            length: int = high << 16 | low
            if length <= self.limits.max_header_list_size * 2:
                self.max_opened = stream_id
                if not flags & Frame.END_STREAM:
                    self._open.add(stream_id)
                return length
        return super()._check_frame(buf, pos, data, payload)

    def screen(self, data: bytes) -> bytes:
        self._read_opened = self.max_opened
        self._read_settings = False
        if self._credit:
            self._credit.clear()
        if self._retype:
            self._retype.clear()
        data = super().screen(data)
        if self._retype:
            buf = bytearray(data)
            for at in self._retype:
                buf[at + 3 : at + 5] = _RESET_OVERFLOW
                buf[at + 9 : at + 13] = _FLOW_CONTROL_ERROR
            data = bytes(buf)
        return data

    def reset_here(self, stream_id: int) -> None:
        """The server reset ``stream_id`` (or refused it): ignore what follows."""
        if stream_id in self._open:
            self._open.discard(stream_id)
            forget = self._reset_here
            forget[stream_id] = None
            if len(forget) > max(_REMEMBERED, self.limits.max_concurrent_streams):
                del forget[next(iter(forget))]

    def _rules(
        self, buf: bytes, pos: int, ftype: int, flags: int, length: int, data: bytes, payload: int
    ) -> None:
        if self._block_frames:
            return  # inside a field block: nghttp2 answers PROTOCOL_ERROR (4.3)
        stream_id = int.from_bytes(buf[pos + 5 : pos + 9], "big") & 0x7FFFFFFF
        if ftype == Frame.DATA:
            if stream_id in self._open:
                if flags & Frame.END_STREAM:
                    self._open.discard(stream_id)
            elif stream_id & 1 and stream_id <= self.max_opened:
                self._closed(stream_id, ftype)
        elif ftype == Frame.HEADERS:
            if stream_id > self.max_opened:
                if stream_id & 1:
                    expected = self.max_opened + 2 if self.max_opened else 1
                    if stream_id > expected:
                        self._skipped(expected, stream_id - 2)
                    self.max_opened = stream_id
                    if not flags & Frame.END_STREAM:
                        self._open.add(stream_id)
                    if self.refuse_above is not None and stream_id > self.refuse_above:
                        self.refused.append(stream_id)
            elif stream_id in self._open:
                if flags & Frame.END_STREAM:
                    self._open.discard(stream_id)  # trailers
            elif stream_id & 1:
                self._closed(stream_id, ftype)
            if flags & Frame.PRIORITY_FLAG:
                self._peek(stream_id, data, payload + 1 if flags & Frame.PADDED else payload)
        elif ftype == Frame.RST_STREAM:
            if stream_id & 1 and stream_id <= self.max_opened:
                self._open.discard(stream_id)
                peer_reset = self._peer_reset
                peer_reset[stream_id] = None
                if len(peer_reset) > _REMEMBERED:
                    del peer_reset[next(iter(peer_reset))]
        elif ftype == Frame.WINDOW_UPDATE:
            if stream_id in self._peer_reset:
                raise CodecError(ErrorCode.STREAM_CLOSED, "WINDOW_UPDATE after RST_STREAM")
            if (
                stream_id
                and length == 4
                and buf is data
                and payload + 4 <= len(data)
                and not self._read_settings
            ):
                self._window_update(stream_id, pos, data, payload)
        elif ftype == Frame.SETTINGS:
            if not flags & Frame.ACK:
                self._read_settings = True
        elif ftype == Frame.PRIORITY:
            if not stream_id:
                raise CodecError(ErrorCode.PROTOCOL_ERROR, "PRIORITY on stream 0")
            if length == 5:
                self._peek(stream_id, data, payload)

    def _window_update(self, stream_id: int, pos: int, data: bytes, payload: int) -> None:
        """A stream's WINDOW_UPDATE, whole in ``data`` at ``pos``: does it overflow?"""
        if stream_id in self.overflowed:
            return  # reset earlier in the read: nghttp2 ignores it on the closed stream
        increment = int.from_bytes(data[payload : payload + 4], "big") & _MAX_WINDOW
        if not increment:
            return  # nghttp2's to refuse (PROTOCOL_ERROR)
        opening = bool(stream_id & 1) and self._read_opened < stream_id <= self.max_opened
        window = self._send_window(stream_id, opening)
        if window is None:
            return  # idle or closed: nghttp2's rules
        credit = self._credit.get(stream_id, 0)
        if window + credit + increment > _MAX_WINDOW:
            # A reset the peer provokes counts as one it sends ("made you reset").
            self._count_reset()
            self._retype.append(pos)
            self.overflowed.append(stream_id)
        else:
            self._credit[stream_id] = credit + increment

    def _peeked(self, stream_id: int, octets: bytes) -> None:
        if int.from_bytes(octets, "big") & 0x7FFFFFFF == stream_id:
            raise CodecError(ErrorCode.PROTOCOL_ERROR, "a stream depending on itself")

    def _closed(self, stream_id: int, ftype: int) -> None:
        """A DATA or HEADERS frame on a stream whose client side is closed."""
        if stream_id in self._reset_here:
            return  # in flight when the server reset it: ignored
        if ftype == Frame.HEADERS and any(first <= stream_id <= last for first, last in self._gaps):
            raise CodecError(ErrorCode.PROTOCOL_ERROR, "HEADERS on a stream id already passed")
        raise CodecError(ErrorCode.STREAM_CLOSED, "frame on a closed stream")

    def _skipped(self, first: int, last: int) -> None:
        self._gaps.append((first, last))
        if len(self._gaps) > _REMEMBERED:
            del self._gaps[0]
