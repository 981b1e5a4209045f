"""Header field rules, written once: what a peer may send, and what an app may send.

Received (HTTP/2 and HTTP/3; llhttp checks HTTP/1.1 itself): both protocols
carry a request head as a list of fields with pseudo-header fields first, and
RFC 9113 8.2-8.3 and RFC 9114 4.1-4.3 give them the same rules: field name
and value characters, no connection-specific fields, the pseudo-header fields
a request needs (a ``:method`` that is a token, a ``:scheme`` that is a
scheme), ``:authority`` and Host agreeing, one valid Content-Length.
:func:`check_header_block` applies them in one pass, so a request refused on
one protocol is refused on the other; a violation raises
:class:`MalformedRequest`, which each protocol answers its own way (HTTP/2 a
connection error PROTOCOL_ERROR, HTTP/3 a stream error H3_MESSAGE_ERROR).

Sent (every protocol): a field name the app sends must be a token and a
value must not hold CR, LF or NUL (:func:`check_field_name`,
:func:`check_field_value`); HTTP/2 and HTTP/3 also refuse surrounding
whitespace and send names in lower case without the connection-specific
ones (:func:`multiplexed_name`, :func:`check_multiplexed_value`).  A
violation raises :class:`~asgiri.protocol.errors.LocalProtocolError`.

Apps and clients send the same few names and values over and over, so each
check remembers, in a bounded cache, what it has already passed: after the
first time a field costs a set lookup.
"""

from __future__ import annotations

import re
from typing import Any, Final

import hpack

from .errors import LocalProtocolError, RemoteProtocolError

__all__ = [
    "CHECKED_VALUES",
    "CONNECTION_HEADERS",
    "SENT_NAMES",
    "MalformedRequest",
    "RequestHead",
    "check_field_name",
    "check_field_value",
    "check_header_block",
    "check_multiplexed_value",
    "multiplexed_name",
]

#: Connection-specific fields: meaningless in HTTP/2 and HTTP/3 and forbidden on
#: their wire (RFC 9113 8.2.2, RFC 9114 4.2), in a request as in a response.
CONNECTION_HEADERS: Final = frozenset(
    {b"connection", b"keep-alive", b"proxy-connection", b"transfer-encoding", b"upgrade"}
)
#: Bound of every cache of this module.
_CACHE_SIZE: Final = 4096


class MalformedRequest(RemoteProtocolError):
    """A received header block breaks the field rules of HTTP/2 and HTTP/3."""


#: A field name: no controls, SP, DEL, non-ASCII, upper case or colon (RFC 9113 8.2.1).
_FIELD_NAME: Final = re.compile(rb"[^\x00-\x20A-Z\x7f-\xff:]+")
#: A non-empty field value: no NUL, CR or LF, no SP or HTAB at either end (RFC 9113
#: 8.2.1).  (A full match of what is allowed runs faster than searching for what is not.)
_FIELD_VALUE: Final = re.compile(rb"[^\x00\r\n \t](?:[^\x00\r\n]*[^\x00\r\n \t])?")
_REQUEST_PSEUDO: Final = frozenset({b":method", b":scheme", b":authority", b":path", b":protocol"})
#: A method is a token (RFC 9110 9.1, ``_TOKEN`` below); a scheme, RFC 3986 3.1's syntax.
_SCHEME: Final = re.compile(rb"[A-Za-z][A-Za-z0-9+\-.]*")
_METHODS: Final = frozenset(
    {b"GET", b"HEAD", b"POST", b"PUT", b"DELETE", b"PATCH", b"OPTIONS", b"CONNECT", b"TRACE"}
)
_SCHEMES: Final = frozenset({b"https", b"http"})
#: Received field names already seen to be valid.
_VALID_NAMES: set[bytes] = set()
#: Short received field values already seen to be valid (methods, schemes,
#: authorities, user agents, accept-*: most of every request).  A set lookup
#: costs a fifth of the regular expression; the set starts over when full, so
#: it follows what clients send now.
_VALID_VALUES: set[bytes] = set()
#: Longer values are checked each time (they rarely repeat).
_MAX_CACHED_VALUE: Final = 256


class RequestHead:
    """What the one pass of :func:`check_header_block` found in a header block.

    ``fields`` are the regular fields (cookies joined, last); the pseudo-header
    values are None when absent.
    """

    __slots__ = (
        "authority",
        "content_length",
        "expect_continue",
        "fields",
        "has_host",
        "method",
        "path",
        "protocol",
        "scheme",
        "size",
    )

    def __init__(self, fields: list[Any]) -> None:
        self.fields = fields
        self.method: bytes | None = None
        self.path: bytes | None = None
        self.scheme: bytes | None = None
        self.authority: bytes | None = None
        self.protocol: bytes | None = None
        self.has_host = False
        #: The declared Content-Length (validated), or None.
        self.content_length: int | None = None
        #: Bytes of field names and values, pseudo-header fields included
        #: (what ``--limit-request-header-size`` bounds).
        self.size = 0
        self.expect_continue = False


def check_header_block(headers: list[Any], trailers: bool) -> RequestHead:
    """Validate a received request header block (or trailers), in one pass.

    The rules are those h2's inbound validation applies (RFC 9113 8.2 and
    8.3, RFC 8441 4): field name and value characters, no connection-specific
    fields, TE only "trailers", pseudo-header fields known, unique, first,
    and the ones a request (CONNECT, extended CONNECT) needs, :authority and
    Host consistent, a non-empty :path.  Cookie fields are joined into one,
    last (RFC 9113 8.2.3).  Raises h2's ProtocolError, which h2 answers with a
    connection error, as it does for its own checks.

    The same pass notes what building the request needs (pseudo-header values,
    Host, a non-zero Content-Length, Expect), so that nothing walks the block
    a second time.
    """
    pseudo: set[bytes] = set()
    regular = False
    host = None
    fields: list[Any] = []
    head = RequestHead(fields)
    cookies: list[bytes] | None = None
    valid = _VALID_NAMES
    valid_values = _VALID_VALUES
    size = 0
    for name, value in headers:
        size += len(name) + len(value)
        if name[:1] == b":":
            if trailers:
                raise MalformedRequest(f"pseudo-header field {name!r} in trailers")
            if regular:
                raise MalformedRequest(f"pseudo-header field {name!r} out of sequence")
            if name not in _REQUEST_PSEUDO:
                raise MalformedRequest(f"invalid pseudo-header field {name!r}")
            if name in pseudo:
                raise MalformedRequest(f"duplicate pseudo-header field {name!r}")
            pseudo.add(name)
            if name == b":method":
                # RFC 9110 9.1: a method is a token (and becomes the scope's text).
                if value not in _METHODS and not _TOKEN.fullmatch(value):
                    raise MalformedRequest(f"invalid :method {value!r}")
                head.method = value
            elif name == b":path":
                if not value:
                    raise MalformedRequest("empty :path")
                head.path = value
            elif name == b":scheme":
                # RFC 3986 3.1 (RFC 9113 8.3.1): letters, digits, "+", "-", ".".
                if value not in _SCHEMES and not _SCHEME.fullmatch(value):
                    raise MalformedRequest(f"invalid :scheme {value!r}")
                head.scheme = value
            elif name == b":authority":
                head.authority = value
            else:
                head.protocol = value
        else:
            regular = True
            if name not in valid:
                if not _FIELD_NAME.fullmatch(name):
                    raise MalformedRequest(f"invalid header name {name!r}")
                if name in CONNECTION_HEADERS:
                    raise MalformedRequest(f"connection-specific header {name!r}")
                if name != b"te" and len(valid) < _CACHE_SIZE:
                    valid.add(name)
            if name == b"cookie":
                if cookies is None:
                    cookies = []
                cookies.append(value)
            else:
                fields.append((name, value))
                if name == b"te":
                    if value.lower() != b"trailers":
                        raise MalformedRequest(f"invalid TE header {value!r}")
                elif name == b"host":
                    if host is not None and not trailers:
                        raise MalformedRequest("multiple Host headers")
                    host = value
                elif name == b"content-length":
                    # RFC 9110 8.6: 1*DIGIT; several fields must agree.  int()
                    # alone would take "+5", " 5" or "5_0".
                    if not value.isdigit():
                        raise MalformedRequest(f"invalid content-length {value!r}")
                    length = int(value)
                    if head.content_length is not None and head.content_length != length:
                        raise MalformedRequest("conflicting content-length values")
                    head.content_length = length
                elif name == b"expect":
                    head.expect_continue = value.lower() == b"100-continue"
        if value and value not in valid_values:
            if not _FIELD_VALUE.fullmatch(value):
                raise MalformedRequest(f"invalid header value {value!r}")
            if len(value) <= _MAX_CACHED_VALUE:
                if len(valid_values) >= _CACHE_SIZE:
                    valid_values.clear()
                valid_values.add(value)
    if not trailers:
        method = head.method
        authority = head.authority
        if method is None:
            raise MalformedRequest("request without :method")
        if method == b"CONNECT" and b":protocol" not in pseudo:
            if b":scheme" in pseudo or b":path" in pseudo:
                raise MalformedRequest("CONNECT with :scheme or :path")
        else:
            if b":scheme" not in pseudo or b":path" not in pseudo:
                raise MalformedRequest("request without :scheme or :path")
            if method != b"CONNECT" and b":protocol" in pseudo:
                raise MalformedRequest(":protocol outside CONNECT")
        if authority is None and host is None:
            raise MalformedRequest("request without :authority or Host")
        if authority is not None and host is not None and authority != host:
            raise MalformedRequest("mismatched :authority and Host")
        head.has_host = host is not None
    if cookies is not None:
        fields.append(hpack.NeverIndexedHeaderTuple(b"cookie", b"; ".join(cookies)))
    head.size = size
    return head


# ---------------------------------------------------------------- what the app sends

#: A field name the app may send: a token (RFC 9110 5.1).
_TOKEN: Final = re.compile(rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
#: Sent field names already seen to be tokens.
_TOKENS: set[bytes] = set()
#: Sent field names already checked, with the form HTTP/2 and HTTP/3 send them
#: in: lower case, or b"" for a connection-specific field (left out).
SENT_NAMES: dict[bytes, bytes] = {}
#: Short sent field values already checked for HTTP/2 and HTTP/3.
CHECKED_VALUES: set[bytes] = set()
_WHITESPACE: Final = (b" ", b"\t")


def check_field_name(name: bytes) -> None:
    """A field name the app sent must be a token (RFC 9110 5.1)."""
    if name not in _TOKENS:
        if not _TOKEN.fullmatch(name):
            raise LocalProtocolError(f"invalid header name {name!r}")
        if len(_TOKENS) < _CACHE_SIZE:
            _TOKENS.add(name)


def check_field_value(value: bytes) -> None:
    """No CR, LF or NUL in a field value the app sent: they would split or end the head."""
    if value.find(b"\n") >= 0 or value.find(b"\r") >= 0 or value.find(b"\x00") >= 0:
        raise LocalProtocolError(f"invalid header value {value!r}")


def multiplexed_name(name: bytes) -> bytes:
    """Check a field name the app sent on HTTP/2 or HTTP/3; the lower-case form it is sent in.

    Remembered in :data:`SENT_NAMES` (b"" for a connection-specific field).
    """
    check_field_name(name)
    lname = name.lower()
    if len(SENT_NAMES) < _CACHE_SIZE:
        SENT_NAMES[name] = b"" if lname in CONNECTION_HEADERS else lname
    return lname


def check_multiplexed_value(value: bytes) -> None:
    """Check a field value the app sent on HTTP/2 or HTTP/3 (remembered in :data:`CHECKED_VALUES`).

    Leading or trailing whitespace makes a field malformed in HTTP/2 and
    HTTP/3 (RFC 9113 8.2.1), unlike in HTTP/1.1.
    """
    check_field_value(value)
    if value[:1] in _WHITESPACE or value[-1:] in _WHITESPACE:
        raise LocalProtocolError(f"header value with surrounding whitespace {value!r}")
    if len(value) <= _MAX_CACHED_VALUE:
        if len(CHECKED_VALUES) >= _CACHE_SIZE:
            CHECKED_VALUES.clear()
        CHECKED_VALUES.add(value)
