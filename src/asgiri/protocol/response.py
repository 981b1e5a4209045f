"""Checks of the responses an app sends on a multiplexed stream (HTTP/2, HTTP/3).

HTTP/1.1 frames the body itself and checks it while serialising
(:mod:`asgiri.protocol.h1`); on HTTP/2 and HTTP/3 the body is DATA frames
whose total a peer compares with the ``content-length`` it was given, and a
mismatch is a malformed response that may cost the whole connection
(RFC 9113 8.1.1, RFC 9114 4.1.2).  The same rules therefore apply to both,
here, before anything is queued: a violation raises
:class:`~asgiri.protocol.errors.LocalProtocolError` while the app's failure
can still become a 500 (or, once the head is out, a stream reset).
"""

from __future__ import annotations

from typing import Final

from .errors import LocalProtocolError
from .events import Headers
from .fields import (
    CHECKED_VALUES,
    CONNECTION_HEADERS,
    SENT_NAMES,
    check_field_name,
    check_field_value,
    check_multiplexed_value,
    multiplexed_name,
)

__all__ = ["ResponseChecker", "wire_fields"]

_STATUS: Final = {code: b"%d" % code for code in range(100, 600)}


def wire_fields(status: int, headers: Headers) -> Headers:
    """A response head as HTTP/2 and HTTP/3 send it: ``:status``, lower-case names.

    Connection-specific fields are left out.
    """
    response: Headers = [(b":status", _STATUS.get(status) or b"%d" % status)]
    names = SENT_NAMES
    for name, value in headers:
        lname = names.get(name)
        if lname is None:
            lname = name.lower()
            if lname in CONNECTION_HEADERS:
                continue
        elif not lname:
            continue
        response.append((lname, value))
    return response


class ResponseChecker:
    """The declared content-length of each response in flight on one connection."""

    __slots__ = ("_declared",)

    def __init__(self) -> None:
        #: Body bytes each stream's response still owes to its content-length.
        self._declared: dict[int, int] = {}

    def head(self, stream_id: int, headers: Headers, first: int, end: bool, no_body: bool) -> None:
        """Validate a response head; ``first`` is the length of the body sent with it."""
        declared = None
        names = SENT_NAMES
        values = CHECKED_VALUES
        for name, value in headers:
            lname = names.get(name)
            if lname is None:
                lname = multiplexed_name(name)
            if value not in values:
                check_multiplexed_value(value)
            if lname == b"content-length":
                if not value.isdigit():
                    raise LocalProtocolError(f"invalid Content-Length {value!r}")
                declared = int(value)
        if declared is None or no_body:
            return
        if first > declared or (end and first < declared):
            raise LocalProtocolError(
                f"response body of {first} bytes does not match its Content-Length {declared}"
            )
        if not end:
            self._declared[stream_id] = declared - first

    def data(self, stream_id: int, size: int, end: bool) -> None:
        """Account a later body chunk against the declared content-length."""
        remaining = self._declared.get(stream_id)
        if remaining is None:
            return
        remaining -= size
        if remaining < 0:
            raise LocalProtocolError("response body longer than its Content-Length")
        if end:
            del self._declared[stream_id]
            if remaining:
                raise LocalProtocolError(
                    f"response body shorter than its Content-Length ({remaining} bytes missing)"
                )
        else:
            self._declared[stream_id] = remaining

    @staticmethod
    def fields(headers: Headers) -> None:
        """Validate trailers or an informational head: names and values only."""
        for name, value in headers:
            check_field_name(name)
            check_field_value(value)

    def forget(self, stream_id: int) -> None:
        self._declared.pop(stream_id, None)
