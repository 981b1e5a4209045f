"""Where asgiri reaches into the h2 library's private members: all of it, in one module.

h2 (``H2Connection``) is used through its public API everywhere else.  A
server needs a few things it offers no setting or hook for, so its
connection is subclassed here, overriding private methods (``_receive_frame``,
``_receive_goaway_frame``, ``_receive_window_update_frame``,
``_handle_data_on_closed_stream``, ``_terminate_connection``), reading
private state (``_stream_closed_by``, ``_stream_is_closed_by_end``) and
lowering ``MAX_CLOSED_STREAMS``:

* received header blocks are checked by :func:`~.fields.check_header_block`
  in one pass, while h2 still handles the frame that completed them, so a
  malformed request ends the connection exactly as h2's own (slower,
  per-byte) validation would;
* the GOAWAY code RFC 9113 asks for where h2 sends another
  (COMPRESSION_ERROR for HPACK errors);
* frames after the peer's GOAWAY are dropped instead of answered with an
  error; DATA after the peer's END_STREAM is a connection error; a
  WINDOW_UPDATE on a stream the peer reset is answered with RST_STREAM;
* a shorter memory of closed streams, so a long-lived connection does not grow;
* stream resets counted as each frame is handled, so the reset budget ends the
  connection at the frame that exceeds it.

An h2 release may rename any of these: ``pyproject.toml`` bounds the h2
version to the releases this was checked against, and the HTTP/2
conformance suite (tests/h2_conformance) exercises each override.
"""

from __future__ import annotations

import sys
from typing import Any

import h2.config
import h2.connection
import h2.errors
import h2.events
import h2.exceptions
import h2.settings
import h2.stream
import hpack
import hyperframe.frame

from .fields import MalformedRequest, check_header_block

__all__ = ["ServerH2", "goaway_code"]


def goaway_code(exc: BaseException | None, default: int) -> int:
    """The GOAWAY code for an error h2 raised.

    h2 turns HPACK decoding errors into a plain ProtocolError (code
    PROTOCOL_ERROR); RFC 9113 4.3 requires COMPRESSION_ERROR.  (A header
    list over the limit comes as DenialOfServiceError and keeps its code.)
    """
    if type(exc) is h2.exceptions.ProtocolError and isinstance(exc.__cause__, hpack.HPACKError):
        return h2.errors.ErrorCodes.COMPRESSION_ERROR
    return default


class ServerH2(h2.connection.H2Connection):
    """h2's connection, with the GOAWAY codes of :func:`goaway_code`, deaf
    after the peer's GOAWAY, strict about DATA after END_STREAM, and a
    shorter memory of closed streams."""

    #: h2 remembers how each closed stream ended, for up to 65,536 streams:
    #: about 100 bytes a stream, so a long-lived connection grew by 1 MiB per
    #: 10,000 requests, up to 6 MiB.  A stream older than the last 256 is
    #: taken as closed implicitly (a frame on it is still an error, answered
    #: with a stream reset).
    MAX_CLOSED_STREAMS = 256

    _goaway_received = False

    def pending_output(self) -> int:
        """Bytes of frames h2 holds for ``data_to_send``."""
        return len(self._data_to_send)

    def release(self) -> None:
        """Drop h2's frame dispatch table: its bound methods make the connection a cycle."""
        self._frame_dispatch_table = {}

    #: Streams reset by the peer or by h2 for the peer's stream errors, and how
    #: many are tolerated (the owner sets it: H2Limits.max_resets, plus one per
    #: stream that completed normally).
    resets = 0
    reset_allowance = sys.maxsize

    def _receive_frame(self, frame: hyperframe.frame.Frame) -> list[h2.events.Event]:
        if self._goaway_received:
            # h2 would answer any frame after the peer's GOAWAY (a PING, the
            # rest of a body) with a PROTOCOL_ERROR of its own: RFC 9113 6.8
            # allows them, and nothing can be answered now, so drop them.
            return []
        events = super()._receive_frame(frame)
        ev: Any
        for ev in events:
            kind = type(ev)
            if kind is h2.events.StreamReset:
                # Counted frame by frame, not after the whole read: a read of
                # 64 KiB holds a thousand request-and-reset pairs, and the
                # connection must end at the budget, not a read later
                # (rapid reset, MadeYouReset).  h2 answers the error with
                # GOAWAY ENHANCE_YOUR_CALM naming the last stream it took.
                self.resets += 1
                if self.resets > self.reset_allowance:
                    raise h2.exceptions.DenialOfServiceError("too many stream resets")
                continue
            # Header blocks are checked here, while h2 is still handling the
            # frame that completed them, so an error ends the connection just
            # as h2's own validation would (see protocol/h2.py H2Connection.__init__).
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
        code = goaway_code(sys.exc_info()[1], error_code)
        super()._terminate_connection(h2.errors.ErrorCodes(code))
