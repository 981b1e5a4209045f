"""Request header blocks of HTTP/2 and HTTP/3: ``check_header_block``.

Input, as text: one options byte (bit 0: trailers), then one field per line,
``name: value`` split at the first ": " after the first byte (so ``:path: /``
is the field ``:path``).  Values hold any bytes but LF; CR and NUL reach the
checks.

Invariants:

* the only error is ``MalformedRequest``;
* the verdict and what is returned agree with a plain reading of RFC 9113
  8.2-8.3 written here (field name and value characters, connection-specific
  fields, TE, pseudo-header fields: known, once, first, the ones a request or
  an extended CONNECT needs, a method that is a token and a scheme that is a
  scheme, :authority against Host, Content-Length);
* the verdict does not depend on what was checked before (the function
  caches names and values it has seen valid): the same block gives the same
  answer with the caches emptied.
"""

from __future__ import annotations

import re
from typing import Any

from asgiri.protocol import fields as fields_module
from asgiri.protocol.fields import MalformedRequest, RequestHead, check_header_block

from ..invariants import check

MAX_LEN = 4096
#: RFC 9110 5.6.2 token (a method), RFC 3986 3.1 scheme.
_METHOD = re.compile(rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_SCHEME = re.compile(rb"[A-Za-z][A-Za-z0-9+.-]*")
_FORBIDDEN = {b"connection", b"proxy-connection", b"keep-alive", b"transfer-encoding", b"upgrade"}
_PSEUDO = {b":method", b":scheme", b":authority", b":path", b":protocol"}


def encode(headers: list[Any], trailers: bool) -> bytes | None:
    """A call of ``check_header_block`` as an input of this target (for recording seeds)."""
    lines = [bytes(n) + b": " + bytes(v) for n, v in headers]
    if any(b"\n" in line for line in lines):
        return None
    return bytes([int(trailers)]) + b"\n".join(lines)


def decode(data: bytes) -> tuple[bool, list[tuple[bytes, bytes]]]:
    headers = []
    for line in data[1:].split(b"\n"):
        if not line:
            continue
        cut = line.find(b": ", 1)
        headers.append((line, b"") if cut < 0 else (line[:cut], line[cut + 2 :]))
    return bool(data[0] & 1), headers


def reference(headers: list[tuple[bytes, bytes]], trailers: bool) -> str | None:
    """Why RFC 9113 8.2-8.3 refuses the block, or None when it accepts it."""
    seen: set[bytes] = set()
    values: dict[bytes, bytes] = {}
    regular = False
    hosts = []
    lengths = set()
    for name, value in headers:
        if value and (value[:1] in b" \t" or value[-1:] in b" \t"):
            return "surrounding whitespace"
        if any(c in value for c in b"\0\r\n"):
            return "bad value character"
        if name.startswith(b":"):
            if trailers or regular or name not in _PSEUDO or name in seen:
                return "bad pseudo-header field"
            if name == b":method" and not _METHOD.fullmatch(value):
                return "method not a token"
            if name == b":scheme" and not _SCHEME.fullmatch(value):
                return "not a scheme"
            seen.add(name)
            values[name] = value
            continue
        regular = True
        # RFC 9110 5.1 allows any token; RFC 9113 8.2.1 forbids upper case, and
        # the checks (like h2's) refuse only what HTTP/2 names: controls, SP,
        # DEL, non-ASCII, upper case and the colon; other separators pass.
        if not name or any(c <= 0x20 or c >= 0x7F or 0x41 <= c <= 0x5A or c == 0x3A for c in name):
            return "bad name"
        if name in _FORBIDDEN:
            return "connection-specific"
        if name == b"te" and value.lower() != b"trailers":
            return "TE"
        if name == b"host":
            hosts.append(value)
        if name == b"content-length":
            if not value.isdigit():
                return "content-length"
            lengths.add(int(value))
    if len(lengths) > 1:
        return "content-length values"
    if trailers:
        return None
    if len(hosts) > 1:
        return "hosts"
    method = values.get(b":method")
    if method is None:
        return "no method"
    if b":path" in values and not values[b":path"]:
        return "empty path"
    if method == b"CONNECT" and b":protocol" not in seen:
        if b":scheme" in seen or b":path" in seen:
            return "CONNECT with scheme or path"
    else:
        if b":scheme" not in seen or b":path" not in seen:
            return "no scheme or path"
        if method != b"CONNECT" and b":protocol" in seen:
            return "protocol outside CONNECT"
    authority = values.get(b":authority")
    if authority is None and not hosts:
        return "no authority"
    if authority is not None and hosts and authority != hosts[0]:
        return "authority and host differ"
    return None


def _verdict(headers: list[tuple[bytes, bytes]], trailers: bool) -> RequestHead | MalformedRequest:
    try:
        return check_header_block(list(headers), trailers)
    except MalformedRequest as exc:
        return exc


def one_input(data: bytes) -> None:
    if not data:
        return
    trailers, headers = decode(data)
    first = _verdict(headers, trailers)
    # The caches of names and values seen valid must not change the verdict.
    fields_module._VALID_NAMES.clear()
    fields_module._VALID_VALUES.clear()
    fresh = _verdict(headers, trailers)
    check(type(first) is type(fresh), f"the verdict depends on the caches: {first!r} {fresh!r}")
    expected = reference(headers, trailers)
    if isinstance(fresh, MalformedRequest):
        check(expected is not None, f"refused ({fresh}), a plain reading accepts it")
        return
    check(expected is None, f"accepted, a plain reading refuses it: {expected}")
    head = fresh
    regular = [(n, v) for n, v in headers if not n.startswith(b":")]
    cookies = [v for n, v in regular if n == b"cookie"]
    others = [(n, v) for n, v in regular if n != b"cookie"]
    got = [(bytes(n), bytes(v)) for n, v in head.fields]
    want = others + ([(b"cookie", b"; ".join(cookies))] if cookies else [])
    check(got == want, f"fields {got!r}, expected {want!r}")
    check(head.size == sum(len(n) + len(v) for n, v in headers), "size")
    if not trailers:
        pseudo = dict((n, v) for n, v in headers if n.startswith(b":"))
        check(head.method == pseudo.get(b":method"), "method")
        check(head.path == pseudo.get(b":path"), "path")
        check(head.authority == pseudo.get(b":authority"), "authority")
        lengths = [int(v) for n, v in headers if n == b"content-length"]
        check(head.content_length == (lengths[0] if lengths else None), "content_length")
