"""The PROXY protocol, versions 1 and 2, as a sans-I/O parser.

A load balancer that passes TCP through (HAProxy ``send-proxy``/``send-proxy-v2``,
AWS NLB, GCP and Azure TCP proxies) writes one header at the very start of the
connection, before any TLS or HTTP byte, naming the client it accepted the
connection from.  See https://www.haproxy.org/download/2.9/doc/proxy-protocol.txt.

:func:`parse` looks at the bytes received so far and answers one of three ways:

* ``None``: every byte seen so far belongs to a header that is not complete
  yet.  The caller may consume them all: nothing after the header has been
  looked at.  (A v1 header has no line end yet; a v2 header is shorter than
  its 16-byte preamble plus the length the preamble announces.)
* a :class:`ProxyHeader` whose ``length`` is the number of bytes the header
  takes; whatever follows is the client's own data (a TLS ClientHello, an
  HTTP request) and must reach the next protocol untouched.
* :class:`ProxyProtocolError` when the bytes cannot be a PROXY header, which
  includes a client that connected without one.

Because "need more" guarantees the bytes are all header, the I/O side can
read exactly the header and no further, which is what lets TLS start on the
same socket afterwards.
"""

from __future__ import annotations

import ipaddress
import struct
from dataclasses import dataclass

__all__ = [
    "MAX_V1_LENGTH",
    "V2_SIGNATURE",
    "ProxyHeader",
    "ProxyProtocolError",
    "parse",
]

#: The twelve bytes every v2 header starts with; chosen to be invalid as
#: the start of HTTP, TLS, SSH and the v1 text form.
V2_SIGNATURE = b"\r\n\r\n\x00\r\nQUIT\n"
#: "PROXY TCP6 <39> <39> 65535 65535\r\n" is 107 bytes; the spec's limit.
MAX_V1_LENGTH = 107
_V1_PREFIX = b"PROXY "
_V2_FAMILIES = {
    # address family and transport byte -> (address block length, ip version)
    0x11: (12, 4),  # TCP over IPv4
    0x12: (12, 4),  # UDP over IPv4
    0x21: (36, 6),  # TCP over IPv6
    0x22: (36, 6),  # UDP over IPv6
}
_V2_UNIX = (0x31, 0x32)


class ProxyProtocolError(Exception):
    """The connection did not start with a valid PROXY header."""


@dataclass(frozen=True)
class ProxyHeader:
    """What the header says, and how many bytes it took.

    ``client`` and ``server`` are None when the header does not carry
    addresses the server can use: a v2 LOCAL command (a health check by the
    proxy itself), a v1 ``UNKNOWN`` line, or a family other than IPv4/IPv6;
    the connection's own addresses apply then.
    """

    version: int
    length: int
    client: tuple[str, int] | None
    server: tuple[str, int] | None


def parse(data: bytes) -> ProxyHeader | None:
    """The header at the start of ``data``, None if incomplete, or ProxyProtocolError."""
    if data.startswith(V2_SIGNATURE):
        return _parse_v2(data)
    if data.startswith(_V1_PREFIX):
        return _parse_v1(data)
    n = len(data)
    if (n < len(V2_SIGNATURE) and V2_SIGNATURE.startswith(data)) or (
        n < len(_V1_PREFIX) and _V1_PREFIX.startswith(data)
    ):
        return None
    raise ProxyProtocolError(f"no PROXY protocol header (connection starts {data[:16]!r})")


def _parse_v1(data: bytes) -> ProxyHeader | None:
    end = data.find(b"\r\n", 0, MAX_V1_LENGTH)
    if end < 0:
        if len(data) >= MAX_V1_LENGTH or b"\n" in data:
            raise ProxyProtocolError("PROXY v1 header has no CRLF within 107 bytes")
        return None
    line = data[:end]
    if b"\n" in line:
        # A bare LF ends nothing: refused whole as it is refused in pieces
        # (before its CRLF arrives), whatever the line says.
        raise ProxyProtocolError("PROXY v1 header with a bare LF")
    length = end + 2
    parts = line.split(b" ")
    if len(parts) >= 2 and parts[1] == b"UNKNOWN":
        # The proxy could not tell; the rest of the line is to be ignored.
        return ProxyHeader(1, length, None, None)
    if len(parts) != 6 or parts[1] not in (b"TCP4", b"TCP6"):
        raise ProxyProtocolError(f"malformed PROXY v1 header {line[:MAX_V1_LENGTH]!r}")
    version = 4 if parts[1] == b"TCP4" else 6
    src = _v1_address(parts[2], version)
    dst = _v1_address(parts[3], version)
    return ProxyHeader(1, length, (src, _v1_port(parts[4])), (dst, _v1_port(parts[5])))


def _v1_address(raw: bytes, version: int) -> str:
    try:
        address = ipaddress.ip_address(raw.decode("ascii"))
    except (UnicodeDecodeError, ValueError):
        raise ProxyProtocolError(f"bad address {raw[:45]!r} in PROXY v1 header") from None
    if address.version != version:
        raise ProxyProtocolError(f"address {address} does not match the PROXY v1 family")
    return str(address)


def _v1_port(raw: bytes) -> int:
    # Decimal without sign or leading zeros, as the specification requires.
    if not raw.isdigit() or len(raw) > 5 or (len(raw) > 1 and raw[:1] == b"0"):
        raise ProxyProtocolError(f"bad port {raw[:8]!r} in PROXY v1 header")
    port = int(raw)
    if port > 65535:
        raise ProxyProtocolError(f"port {port} out of range in PROXY v1 header")
    return port


def _parse_v2(data: bytes) -> ProxyHeader | None:
    if len(data) < 16:
        return None
    version_command = data[12]
    family = data[13]
    (payload_length,) = struct.unpack_from("!H", data, 14)
    length = 16 + payload_length
    if version_command >> 4 != 2:
        raise ProxyProtocolError(f"PROXY v2 header with version {version_command >> 4}")
    command = version_command & 0x0F
    if command > 1:
        raise ProxyProtocolError(f"PROXY v2 header with unknown command {command}")
    if len(data) < length:
        return None
    if command == 0:
        # LOCAL: the proxy's own connection (health checks); addresses, if
        # any, are to be ignored and the connection's own ones used.
        return ProxyHeader(2, length, None, None)
    known = _V2_FAMILIES.get(family)
    if known is None:
        if family == 0x00 or family in _V2_UNIX:
            return ProxyHeader(2, length, None, None)
        raise ProxyProtocolError(f"PROXY v2 header with unknown address family 0x{family:02x}")
    block, ip_version = known
    if payload_length < block:
        raise ProxyProtocolError(
            f"PROXY v2 address block of {payload_length} bytes, {block} needed"
        )
    size = 4 if ip_version == 4 else 16
    src = ipaddress.ip_address(data[16 : 16 + size])
    dst = ipaddress.ip_address(data[16 + size : 16 + 2 * size])
    src_port, dst_port = struct.unpack_from("!HH", data, 16 + 2 * size)
    # Anything after the addresses is TLVs (ALPN, SNI, cloud ids); not used.
    return ProxyHeader(2, length, (str(src), src_port), (str(dst), dst_port))
