"""What a cleartext connection's first bytes, or an ``Upgrade: h2c`` request, ask for.

Two decisions of protocol detection that need no I/O, so that they can be
tested byte by byte (``server/switch.py`` acts on them):

* :func:`sniff`: whether the first bytes of a cleartext connection are the
  HTTP/2 client preface (prior knowledge, RFC 9113 3.3), HTTP/1.1, or too
  few to tell.  A preface split over several reads is recognised, and so is
  one that starts ``PRI * HTTP/2.0`` and then goes wrong: no HTTP/1.1
  request line starts that way, so it is HTTP/2's to refuse (with a
  PROTOCOL_ERROR GOAWAY, RFC 9113 3.4), not a 505.
* :func:`sniff_http2_only`: the same for a cleartext port that speaks only
  HTTP/2 (``--http 2``), where anything but the preface is an invalid
  preface, except an HTTP/1.1 request line: that client is told ``505``.
* :func:`h2c_upgrade`: whether an ``Upgrade: h2c`` request (RFC 7540 3.2) is
  worth switching for, and what it becomes as HTTP/2 stream 1.
"""

from __future__ import annotations

import enum
import re
from dataclasses import replace
from typing import Final, NamedTuple

from .events import Request
from .h2_common import PREFACE

__all__ = ["H2cUpgrade", "Sniffed", "h2c_upgrade", "sniff", "sniff_http2_only"]

#: The start of the HTTP/2 preface that no HTTP/1.1 request line can have.
_PRI: Final = PREFACE[:14]
#: Fields of the HTTP/1.1 request that mean nothing on HTTP/2 stream 1.
_H2C_HOP_BY_HOP: Final = frozenset({b"connection", b"upgrade", b"http2-settings", b"keep-alive"})
#: A request line in HTTP/1.x syntax (RFC 9112 3): method, target, version, end of line.
_REQUEST_LINE: Final = re.compile(rb"[!#$%&'*+.^_`|~0-9A-Za-z-]+ [^ \r\n]+ HTTP/[0-9]\.[0-9]\r?\n")
#: Every beginning of one, up to its end of line.
_REQUEST_LINE_START: Final = re.compile(
    rb"[!#$%&'*+.^_`|~0-9A-Za-z-]*"
    rb"(?: [^ \r\n]*(?: (?:H(?:T(?:T(?:P(?:/(?:[0-9](?:\.(?:[0-9]\r?)?)?)?)?)?)?)?)?)?)?"
)
#: A request line longer than this is taken for garbage (HTTP/1.1 refuses such lines too).
_MAX_REQUEST_LINE: Final = 8192


class Sniffed(enum.Enum):
    """What the first bytes of a cleartext connection are."""

    #: Every byte so far could begin the HTTP/2 preface: wait for more.
    MORE = "more"
    #: The HTTP/2 preface, or a start that only a broken one can have.
    HTTP2 = "http2"
    #: Anything else: an HTTP/1.1 request (or garbage, HTTP/1.1's to refuse).
    HTTP1 = "http1"


def sniff(data: bytes) -> Sniffed:
    """Classify all the bytes a cleartext connection has received so far."""
    n = min(len(data), len(PREFACE))
    if data[:n] == PREFACE[:n]:
        return Sniffed.HTTP2 if n == len(PREFACE) else Sniffed.MORE
    if data.startswith(_PRI):
        return Sniffed.HTTP2
    return Sniffed.HTTP1


def sniff_http2_only(data: bytes) -> Sniffed:
    """Classify the first bytes of a cleartext connection on an HTTP/2-only port.

    Without HTTP/1.1, anything but the preface is an invalid connection
    preface, a connection error of type PROTOCOL_ERROR (RFC 9113 3.4):
    ``HTTP2``, for HTTP/2 to refuse.  Only a request line in HTTP/1.x syntax
    (any version) is ``HTTP1``: that client understands a ``505`` and would
    not understand a GOAWAY.  ``MORE`` while the first line could still
    become one.
    """
    sniffed = sniff(data)
    if sniffed is not Sniffed.HTTP1:
        return sniffed
    end = data.find(b"\n")
    if end >= 0:
        return Sniffed.HTTP1 if _REQUEST_LINE.fullmatch(data, 0, end + 1) else Sniffed.HTTP2
    if len(data) <= _MAX_REQUEST_LINE and _REQUEST_LINE_START.fullmatch(data):
        return Sniffed.MORE
    return Sniffed.HTTP2


class H2cUpgrade(NamedTuple):
    """An ``Upgrade: h2c`` request as HTTP/2 takes it over."""

    #: The request as stream 1: ``http_version`` "2", hop-by-hop fields dropped.
    request: Request
    #: The HTTP2-Settings field value (base64url SETTINGS payload).
    settings: bytes
    #: The request body's length; it still arrives as HTTP/1.1 bytes.
    body_length: int


def h2c_upgrade(request: Request, max_body: int) -> H2cUpgrade | None:
    """The upgrade to make of ``request``, or None when it is better served as HTTP/1.1.

    RFC 7540 3.2 asks for exactly one HTTP2-Settings field.  The server may
    ignore any upgrade, and does so when the body is not worth the switch:
    chunked, larger than ``max_body`` (one HTTP/2 stream window, since the
    101 waits for the whole body: clients stop sending it once the 101 is
    in), or held back until a ``100 Continue``, which HTTP/1.1 answers in
    the right order and a 101 waiting for the body never would.
    """
    settings = [value for name, value in request.headers if name == b"http2-settings"]
    if len(settings) != 1:
        return None
    length = 0
    for name, value in request.headers:
        if name == b"transfer-encoding":
            return None
        if name == b"content-length":
            length = int(value)
            if length > max_body or (length and request.expect_continue):
                return None
    stream = replace(
        request,
        stream_id=1,
        http_version="2",
        headers=[(n, v) for n, v in request.headers if n not in _H2C_HOP_BY_HOP],
    )
    return H2cUpgrade(stream, settings[0], length)
