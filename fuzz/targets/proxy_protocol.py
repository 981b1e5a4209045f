"""PROXY protocol v1/v2: ``parse`` of the bytes a connection starts with.

Input: the bytes, raw (seeds are the headers the tests send; v1 is text and
v2 a fixed layout, both within reach of mutation).

Invariants:

* ``parse`` returns a header, None ("need more") or raises
  ``ProxyProtocolError``; nothing else;
* a header's length is within the bytes, at most 107 for v1, and what
  follows it does not change it; its addresses are IP addresses of the
  family the header names, its ports within 0-65535;
* "need more" means every byte so far is header: no prefix of the input
  answers "need more" while the whole input is a header that ends earlier,
  or a different header;
* an error is final: input that extends bytes already refused is refused;
  a header, once complete, parses the same whatever follows.
"""

from __future__ import annotations

import ipaddress

from asgiri.protocol.proxy_protocol import MAX_V1_LENGTH, ProxyHeader, ProxyProtocolError, parse

from ..invariants import check

MAX_LEN = 1024
_TAIL = b"\x16\x03\x01GET / HTTP/1.1\r\n\r\nPROXY TCP4 "


def _outcome(data: bytes) -> ProxyHeader | ProxyProtocolError | None:
    try:
        return parse(data)
    except ProxyProtocolError as exc:
        return exc


def _check_header(header: ProxyHeader, data: bytes) -> None:
    check(header.version in (1, 2), f"version {header.version}")
    check(0 < header.length <= len(data), f"length {header.length} of {len(data)} bytes")
    if header.version == 1:
        check(header.length <= MAX_V1_LENGTH, f"a v1 header of {header.length} bytes")
        check(data[header.length - 2 : header.length] == b"\r\n", "a v1 header without CRLF")
    check((header.client is None) == (header.server is None), "one address without the other")
    for address in (header.client, header.server):
        if address is not None:
            host, port = address
            check(0 <= port <= 65535, f"port {port}")
            ipaddress.ip_address(host)
    if header.client is not None and header.server is not None:
        versions = {ipaddress.ip_address(a[0]).version for a in (header.client, header.server)}
        check(len(versions) == 1, f"addresses of two families: {header.client} {header.server}")


def one_input(data: bytes) -> None:
    whole = _outcome(data)
    if isinstance(whole, ProxyHeader):
        _check_header(whole, data)
        again = _outcome(data[: whole.length] + _TAIL)
        check(again == whole, f"what follows changes the header: {again!r} != {whole!r}")
    # Every prefix (the first few hundred bytes are all a header can span,
    # apart from v2 TLVs) is consistent with the whole.
    for size in range(min(len(data), 300)):
        part = _outcome(data[:size])
        if part is None:
            if isinstance(whole, ProxyHeader):
                check(whole.length > size, f"'need more' at {size}, a header of {whole.length}")
        elif isinstance(part, ProxyProtocolError):
            check(
                isinstance(whole, ProxyProtocolError),
                f"refused at {size} bytes ({part}), not when whole: {whole!r}",
            )
        else:
            check(part == whole, f"a header at {size} bytes, another when whole")
