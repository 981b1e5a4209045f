"""Proxy headers: ``TrustedProxies`` (``--forwarded-allow-ips``) and ``forwarded_info``.

Input, as text so that seeds are readable and mutations stay meaningful: one
options byte (bit 0: a WebSocket request), the trusted list up to the first
newline, then one header per line, ``name:value`` (names lower-cased, as the
HTTP parsers deliver them).  Header values are any bytes but CR and LF, which
no HTTP parser lets through.

Invariants:

* ``TrustedProxies`` accepts the list or raises ``ValueError`` naming the
  bad item; ``trusts`` never raises;
* ``forwarded_info`` never raises, and is None exactly when no proxy header
  is present;
* the client is a (host, port) pair with a port within 0-65535, the scheme
  one the request's kind allows, the host a valid Host value;
* with X-Forwarded-For alone, the client is the rightmost address the list
  does not trust (all trusted: the leftmost), as a plain reading of the
  list finds it.
"""

from __future__ import annotations

import re

from asgiri.protocol.proxy_headers import ForwardedInfo, TrustedProxies, forwarded_info

from ..invariants import check

MAX_LEN = 2048
_NAMES = (b"x-forwarded-for", b"x-forwarded-proto", b"x-forwarded-host", b"forwarded")
#: What a Host value may hold (RFC 9110 7.2, RFC 3986 reg-name / IP-literal, port).
_HOST = re.compile(rb"(?:[A-Za-z0-9._~!$&'()*+,;=%-]+|\[[0-9A-Fa-f:.]+\])(?::[0-9]{1,5})?")
FALLBACK = "127.0.0.1, 10.0.0.0/8, ::1"


def encode(
    headers: list[tuple[bytes, bytes]], proxies: TrustedProxies, websocket: bool, **_: object
) -> bytes | None:
    """A call of ``forwarded_info`` as an input of this target (for recording seeds)."""
    lines = [proxies.spec.encode("utf-8", "replace")]
    lines += [n + b":" + v for n, v in headers if n in _NAMES or n == b"host"]
    if any(b"\n" in line for line in lines):
        return None
    return bytes([int(websocket)]) + b"\n".join(lines)


def decode(data: bytes) -> tuple[bool, str, list[tuple[bytes, bytes]]]:
    websocket = bool(data[0] & 1)
    spec, *lines = data[1:].split(b"\n")
    headers = []
    for line in lines:
        name, _, value = line.partition(b":")
        headers.append((name.lower(), value.replace(b"\r", b"")))
    return websocket, spec.decode("utf-8", "replace"), headers


def _reference_client(hops: list[str], proxies: TrustedProxies) -> str:
    """The client a plain reading of X-Forwarded-For names (its host part)."""
    chosen = hops[0]
    if not proxies.trust_all:
        for hop in reversed(hops):
            if not proxies.trusts(_host(hop)):
                chosen = hop
                break
    return _host(chosen)


def _host(node: str) -> str:
    if node.startswith("[") and "]" in node:
        return node[1 : node.index("]")]
    if node.count(":") == 1:
        return node.partition(":")[0]
    return node


def _check(info: ForwardedInfo, websocket: bool) -> None:
    if info.client is not None:
        host, port = info.client
        check(isinstance(host, str) and type(port) is int, f"client {info.client!r}")
        check(0 <= port <= 65535, f"client port {port}")
    if info.scheme is not None:
        allowed = ("ws", "wss") if websocket else ("http", "https")
        check(info.scheme in allowed, f"scheme {info.scheme!r}")
    if info.host is not None:
        check(_HOST.fullmatch(info.host), f"host {info.host!r}")


def one_input(data: bytes) -> None:
    if not data:
        return
    websocket, spec, headers = decode(data)
    try:
        proxies = TrustedProxies(spec)
    except ValueError as exc:
        check(str(exc).startswith("not an IP"), f"TrustedProxies error: {exc}")
        proxies = TrustedProxies(FALLBACK)
    for name, _ in headers:
        proxies.trusts(name.decode("latin-1"))
    info = forwarded_info(headers, proxies, websocket)
    present = any(name in _NAMES for name, _ in headers)
    check((info is None) == (not present), f"info {info!r} with proxy headers {present}")
    if info is None:
        return
    _check(info, websocket)
    xff = [v for n, v in headers if n == b"x-forwarded-for"]
    if xff and not any(n == b"forwarded" for n, _ in headers):
        text = b",".join(xff).decode("latin-1")
        hops = [part.strip() for part in text.split(",") if part.strip()]
        if hops:
            expected = _reference_client(hops, proxies)
            check(
                info.client is not None and info.client[0] == expected,
                f"client {info.client!r}, expected {expected!r} from {hops}",
            )
