"""Proxy headers: who the client was, when a trusted reverse proxy says so.

A reverse proxy (nginx, HAProxy, a cloud load balancer) terminates the
client's connection and opens its own, so the server sees the proxy's
address and scheme.  The proxy passes the originals on in ``X-Forwarded-For``,
``X-Forwarded-Proto``, ``X-Forwarded-Host`` or the standard ``Forwarded``
header (RFC 7239).  Anyone can send those headers, so they are believed
only when the connection comes from a proxy the operator trusts
(``--forwarded-allow-ips``); the decision is made once per connection, and
requests on an untrusted connection never look at these headers.

Every proxy on the way appends the address it received the request from, so
the list reads client, proxy1, proxy2...  Only the trusted part of the list
can be believed: the client is the rightmost address that is *not* a trusted
proxy (anything left of it may have been made up by that client).  When
every address is trusted the leftmost one is the client.

``Forwarded`` is used for each of client, scheme and host when it carries
that parameter; ``X-Forwarded-*`` fill in what it does not.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass

__all__ = ["ForwardedInfo", "TrustedProxies", "forwarded_info"]

_Network = ipaddress.IPv4Network | ipaddress.IPv6Network
_Address = ipaddress.IPv4Address | ipaddress.IPv6Address

#: One ``name=value`` pair of a Forwarded element and the delimiter after it.
_PAIR = re.compile(
    r"\s*([!#$%&'*+.^_`|~0-9A-Za-z-]+)\s*=\s*"
    r'("(?:[^"\\]|\\.)*"|[!#$%&\'*+.^_`|~0-9A-Za-z:\[\]-]*)\s*([;,]|$)'
)
#: A host with an optional port, as allowed in a Host header (RFC 9110 7.2).
_HOST = re.compile(rb"(?:[A-Za-z0-9._~!$&'()*+,;=%-]+|\[[0-9A-Fa-f:.]+\])(?::[0-9]{1,5})?")
_NAMES = frozenset({b"x-forwarded-for", b"x-forwarded-proto", b"x-forwarded-host", b"forwarded"})
_WS_SCHEMES = {"http": "ws", "https": "wss", "ws": "ws", "wss": "wss"}
_HTTP_SCHEMES = {"http": "http", "https": "https", "ws": "http", "wss": "https"}


class TrustedProxies:
    """The ``--forwarded-allow-ips`` list: IP addresses, CIDR networks, ``*`` or ``unix``.

    ``*`` trusts every peer; ``unix`` trusts peers on Unix domain sockets
    (whose permissions already decide who can connect).  Anything else that
    is neither an address nor a network is an error, so a typo cannot
    silently trust nobody.
    """

    def __init__(self, spec: str) -> None:
        self.spec = spec
        self.trust_all = False
        self.trust_unix = False
        self._addresses: set[str] = set()
        self._networks: list[_Network] = []
        for item in (part.strip() for part in spec.split(",")):
            if not item:
                continue
            if item == "*":
                self.trust_all = True
            elif item == "unix" or item.startswith("unix:"):
                self.trust_unix = True
            elif "/" in item:
                try:
                    self._networks.append(ipaddress.ip_network(item, strict=False))
                except ValueError:
                    raise ValueError(f"not an IP network: {item!r}") from None
            else:
                try:
                    self._addresses.add(str(ipaddress.ip_address(item.strip("[]"))))
                except ValueError:
                    raise ValueError(f"not an IP address or network: {item!r}") from None

    def trusts(self, host: str | None) -> bool:
        """Whether a peer may speak for its clients; ``None`` is a Unix socket peer."""
        if self.trust_all:
            return True
        if host is None or host == "":
            return self.trust_unix
        if host in self._addresses:
            return True
        try:
            address: _Address = ipaddress.ip_address(host.strip("[]"))
        except ValueError:
            return False  # "unknown", "_hidden" and other obfuscated identifiers
        mapped = getattr(address, "ipv4_mapped", None)
        if mapped is not None:
            address = mapped
            if str(address) in self._addresses:
                return True
        elif str(address) in self._addresses:
            return True
        return any(address in net for net in self._networks)

    def client_of(self, hops: list[str]) -> int:
        """Index in ``hops`` (client first, nearest proxy last) of the real client.

        A hop may carry a port (``10.0.0.5:443``, ``[::1]:80``), as some proxies
        write it; the address alone decides whether it is trusted, as in
        ``Forwarded``.
        """
        if self.trust_all:
            return 0
        for index in range(len(hops) - 1, -1, -1):
            if not self.trusts(_node(hops[index])[0]):
                return index
        return 0


@dataclass
class ForwardedInfo:
    """What trusted proxy headers change in a scope; None leaves a key as it was."""

    client: tuple[str, int] | None = None
    scheme: str | None = None
    host: bytes | None = None


def forwarded_info(
    headers: list[tuple[bytes, bytes]], proxies: TrustedProxies, websocket: bool
) -> ForwardedInfo | None:
    """Client, scheme and host named by the proxy headers of a trusted peer's request."""
    found = [(name, value) for name, value in headers if name in _NAMES]
    if not found:
        return None  # the common case: one set lookup per header
    xff = [value for name, value in found if name == b"x-forwarded-for"]
    proto = [value for name, value in found if name == b"x-forwarded-proto"]
    xhost = [value for name, value in found if name == b"x-forwarded-host"]
    forwarded = [value for name, value in found if name == b"forwarded"]
    info = ForwardedInfo()
    if forwarded:
        _from_forwarded(b",".join(forwarded), proxies, info)
    hops = _split(b",".join(xff)) if xff else []
    index = proxies.client_of(hops) if hops else -1
    if info.client is None and hops:
        info.client = _node(hops[index])
    if info.scheme is None and proto:
        info.scheme = _aligned(_split(b",".join(proto)), index, len(hops))
    if info.host is None and xhost:
        host = _aligned(_split(b",".join(xhost)), index, len(hops))
        if host is not None and _HOST.fullmatch(host.encode("latin-1")):
            info.host = host.encode("latin-1")
    if info.scheme is not None:
        table = _WS_SCHEMES if websocket else _HTTP_SCHEMES
        info.scheme = table.get(info.scheme.lower())
    return info


def _split(value: bytes) -> list[str]:
    return [part.strip() for part in value.decode("latin-1").split(",") if part.strip()]


def _aligned(values: list[str], index: int, hops: int) -> str | None:
    """The value the proxy facing the client set; the nearest proxy's when unclear.

    When each proxy appended to ``X-Forwarded-Proto`` as it did to
    ``X-Forwarded-For``, the lists line up and the client's entry is the one
    its proxy wrote.  Otherwise the rightmost value, written by the trusted
    proxy in front of this server, is the one to believe.
    """
    if not values:
        return None
    if index >= 0 and len(values) == hops:
        return values[index]
    return values[-1]


def _node(node: str) -> tuple[str, int]:
    """``1.2.3.4``, ``1.2.3.4:80``, ``[::1]:80``, ``::1`` or ``unknown`` -> (host, port)."""
    if node.startswith("["):
        end = node.find("]")
        if end > 0:
            host, rest = node[1:end], node[end + 1 :]
            return host, _port(rest[1:] if rest.startswith(":") else "")
    if node.count(":") == 1:
        host, _, port = node.partition(":")
        return host, _port(port)
    return node, 0


def _port(text: str) -> int:
    """A port number, or 0 (unknown) for anything else.

    ASCII digits only: the header is decoded as Latin-1, where "²" and "¹"
    are digits to ``str.isdigit`` but not to ``int``.
    """
    if text.isascii() and text.isdigit() and len(text) <= 5:
        port = int(text)
        if port <= 65535:
            return port
    return 0


def _from_forwarded(value: bytes, proxies: TrustedProxies, info: ForwardedInfo) -> None:
    """RFC 7239: pick the element the client-facing trusted proxy wrote."""
    elements: list[dict[str, str]] = []
    current: dict[str, str] = {}
    text = value.decode("latin-1")
    pos = 0
    while pos < len(text):
        match = _PAIR.match(text, pos)
        if match is None:
            return  # malformed: believe none of it, X-Forwarded-* may still apply
        name, raw, delimiter = match.groups()
        if raw.startswith('"'):
            raw = re.sub(r"\\(.)", r"\1", raw[1:-1])
        current[name.lower()] = raw
        if delimiter != ";":
            elements.append(current)
            current = {}
        pos = match.end()
        if not delimiter:
            break
    if current:
        elements.append(current)
    if not elements:
        return
    chosen = elements[0]
    if not proxies.trust_all:
        for element in reversed(elements):
            node = element.get("for")
            if node is None or not proxies.trusts(_node(node)[0]):
                chosen = element
                break
    node = chosen.get("for")
    if node:
        info.client = _node(node)
    if chosen.get("proto"):
        info.scheme = chosen["proto"]
    host = chosen.get("host")
    if host and _HOST.fullmatch(host.encode("latin-1", "replace")):
        info.host = host.encode("latin-1")
