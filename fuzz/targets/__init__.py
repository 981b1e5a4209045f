"""The fuzz targets, one module per parser.

Each module defines ``one_input(data: bytes) -> None``, which raises
:class:`fuzz.invariants.Violation` (or whatever the code under test raised)
on a finding, and ``MAX_LEN``, the largest input worth generating.  The
modules import the protocol classes by their public names only, so a move of
the code they test is a one-line change there.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from types import ModuleType

__all__ = ["TARGETS", "Target", "load"]


@dataclass(frozen=True)
class Target:
    description: str
    #: Packages whose coverage guides the fuzzer (instrumented as they are
    #: imported; the harness itself is not, so its own branches are no news).
    instrument: tuple[str, ...]


_PROTOCOL = "asgiri.protocol"

TARGETS: dict[str, Target] = {
    "h1": Target(
        "HTTP/1.1 H1Connection: request heads, chunked bodies, trailers, pipelining, upgrades",
        (_PROTOCOL,),
    ),
    "h2": Target(
        "HTTP/2 H2Connection of both codecs (h2, nghttp2) and their frame screen:"
        " frames, HPACK, SETTINGS, flow control",
        (_PROTOCOL, "h2", "hpack", "hyperframe"),
    ),
    "ws": Target(
        "WebSocket WSSession: frames, fragmentation, permessage-deflate",
        (_PROTOCOL, "wsproto"),
    ),
    "proxy_protocol": Target("PROXY protocol v1/v2 header parser", (_PROTOCOL, "ipaddress")),
    "proxy_headers": Target(
        "X-Forwarded-*/Forwarded headers and the --forwarded-allow-ips list",
        (_PROTOCOL, "ipaddress"),
    ),
    "quic": Target(
        "QUIC datagram router: Initial, Retry, Version Negotiation, short headers",
        (_PROTOCOL, "aioquic.quic.packet", "aioquic.quic.retry"),
    ),
    "fields": Target(
        "HTTP/2 and HTTP/3 request header block checks (check_header_block)",
        (_PROTOCOL,),
    ),
}


def load(name: str) -> ModuleType:
    """The module of target ``name`` (imported now: under instrumentation, if on)."""
    if name not in TARGETS:
        raise KeyError(f"unknown fuzz target {name!r}; targets: {', '.join(TARGETS)}")
    return importlib.import_module(f"{__name__}.{name}")
