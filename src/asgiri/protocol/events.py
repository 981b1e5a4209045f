"""Version-neutral stream events shared by HTTP/1.1, HTTP/2 and HTTP/3.

Every protocol connection turns its wire format into these, so the ASGI layer
(one HTTP stream state machine) never needs to know which version it serves.
They are plain slotted classes because the HTTP/1.1 hot path creates one per
request.
"""

from __future__ import annotations

from dataclasses import dataclass

Headers = list[tuple[bytes, bytes]]


@dataclass(slots=True)
class Request:
    """A request head.  ``headers`` names are lower-case, order and duplicates kept."""

    stream_id: int
    method: str
    raw_path: bytes
    query_string: bytes
    headers: Headers
    http_version: str
    #: The client asked for ``100 Continue`` before it sends the body.
    expect_continue: bool = False
    #: ``:authority`` (h2/h3) or the Host header value, when known.
    authority: bytes | None = None
    #: ``:scheme`` from h2/h3 requests; h1 derives the scheme from the transport.
    scheme: str | None = None
    #: ``:protocol`` of an extended CONNECT (RFC 8441 / RFC 9220), e.g. b"websocket".
    protocol: bytes | None = None


@dataclass(slots=True)
class Body:
    """A piece of request body."""

    stream_id: int
    data: bytes


@dataclass(slots=True)
class EndBody:
    """The request body is complete; ``trailers`` are request trailers, if any."""

    stream_id: int
    trailers: Headers | None = None


@dataclass(slots=True)
class StreamClosed:
    """The peer abandoned the stream (reset, or the connection went away)."""

    stream_id: int
    error_code: int = 0


@dataclass(slots=True)
class RequestRejected:
    """A request the connection refuses to hand on: answer ``status`` in its place.

    Raised by a wire limit (``--limit-request-body``, the header limits) or a
    rule the request broke after its head was accepted.  The request's
    stream may already carry an app: the server answers ``status`` if that
    app has not started its response (the app then sees ``http.disconnect``),
    else it cuts the stream.  ``request`` is the head, when it was parsed,
    for the access log.
    """

    stream_id: int
    status: int
    reason: str
    request: Request | None = None


@dataclass(slots=True)
class StreamWritable:
    """Response data buffered for ``stream_id`` has all been sent (a window opened)."""

    stream_id: int


@dataclass(slots=True)
class ConnectionEnded:
    """The connection is over: the peer closed it (GOAWAY, CONNECTION_CLOSE) or failed it.

    ``error_code`` 0 is a graceful end; ``reason`` is the peer's text (HTTP/3)
    and ``last_stream_id`` the peer's GOAWAY bound (HTTP/2), where known.
    """

    error_code: int = 0
    reason: str = ""
    last_stream_id: int = 0


Event = Request | Body | EndBody | StreamClosed
#: What a multiplexed connection (HTTP/2, HTTP/3) reports besides stream events.
StreamEvent = Event | RequestRejected | StreamWritable | ConnectionEnded
