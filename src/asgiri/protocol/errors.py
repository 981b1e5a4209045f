"""Protocol errors that carry the answer to give.

A :class:`RemoteProtocolError` is the peer's fault: the connection answers it
(an HTTP status for HTTP/1.1, an error code for HTTP/2 and HTTP/3) and closes.
A :class:`LocalProtocolError` is ours or the application's: something asked
the connection to send what the protocol does not allow.  Keeping the two
apart is what lets the server blame the right party in its logs.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .events import Request


class ProtocolError(Exception):
    """Base of all wire-protocol errors."""


class RemoteProtocolError(ProtocolError):
    """The peer broke the protocol; ``status`` is the HTTP status to answer with."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status
        #: What was parsed of the request refused, when its request line was
        #: (for the access log): method, target and the fields so far.
        self.request: Request | None = None


class LocalProtocolError(ProtocolError):
    """We (or the application) tried to send something the protocol forbids."""
