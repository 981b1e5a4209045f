"""What an HTTP/2 and an HTTP/3 connection both offer the server: one typed interface.

Both protocols carry each request on a stream of its own and report the
same events (:data:`~asgiri.protocol.events.StreamEvent`), so the server
routes them with one dispatcher (``server/streams.py``) and answers through
the calls below, whichever connection it holds.  A rule a protocol needs
beyond this (HTTP/2's h2c Upgrade, HTTP/3's connection ids) stays in that
protocol's own class.
"""

from __future__ import annotations

from typing import Protocol

from .events import Headers
from .response import ResponseChecker

__all__ = ["StreamConnection"]


class StreamConnection(Protocol):
    """The server's side of one multiplexed connection, sans I/O."""

    #: Stream error code for a stream the server gives up (stalled peer,
    #: abandoned WebSocket): HTTP/2 CANCEL, HTTP/3 H3_REQUEST_CANCELLED.
    cancel_code: int
    #: Stream error code for a response the app failed to complete.
    internal_error_code: int
    #: Checks of what apps send, before anything is queued.
    responses: ResponseChecker

    @property
    def closed(self) -> bool:
        """The connection is over: nothing more can be sent."""

    @property
    def goaway_sent(self) -> bool:
        """The graceful GOAWAY went out: new streams are refused."""

    def send_headers(self, stream_id: int, status: int, headers: Headers, end: bool) -> bool:
        """Queue a response head; False when the stream is gone (the app sees a disconnect)."""

    def send_informational(self, stream_id: int, status: int, headers: Headers) -> bool:
        """Queue a 1xx head (100 Continue, 103 Early Hints)."""

    def send_data(self, stream_id: int, data: bytes, end: bool) -> bool:
        """Queue body bytes; what flow control holds back waits in the stream's buffer."""

    def send_trailers(self, stream_id: int, trailers: Headers) -> bool:
        """Queue trailers; they end the response."""

    def buffered(self, stream_id: int) -> int:
        """Response bytes of the stream not yet on the wire (the backpressure measure)."""

    def pending_output(self) -> int:
        """Bytes framed for the transport and not yet taken by the server.

        An app that sends chunk after chunk without ever yielding would
        otherwise pile its whole body up here, since the server writes to
        the transport once per loop iteration; past a threshold the server
        writes at once and lets the transport's flow control hold the app.
        """

    def release(self) -> None:
        """The connection is over (the server is done with it): break the codec's
        own reference cycles, so that it and what it holds are freed when the
        server drops it instead of waiting for the cyclic garbage collector."""

    def acknowledge(self, stream_id: int, nbytes: int) -> None:
        """The app consumed ``nbytes`` of request body: give the peer that much credit."""

    def reset(self, stream_id: int, code: int) -> None:
        """Abandon both directions of the stream; queued response data is dropped."""

    def stop_reading(self, stream_id: int, code: int) -> None:
        """Ask the peer to stop sending on the stream.

        Response data already queued is still delivered: this ends only the
        peer's direction (HTTP/3 STOP_SENDING; HTTP/2, which has no such
        frame, a RST_STREAM sent once the queued response has left).
        """

    def forget(self, stream_id: int) -> None:
        """The server is done with the stream: drop what is kept for it."""

    def goaway(self) -> None:
        """Graceful GOAWAY: streams already accepted still complete."""
