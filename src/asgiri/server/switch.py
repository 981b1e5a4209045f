"""Which protocol a TCP connection speaks, and handing it over when it is not HTTP/1.1.

Every accepted TCP connection starts as an :class:`~asgiri.server.h1.H1Protocol`.
This module decides, with it, whether the connection stays HTTP/1.1 and
hands the transport over when not:

* at ``connection_made``: TLS with ALPN ``h2`` is HTTP/2 at once; cleartext
  with HTTP/2 enabled first has its opening bytes sniffed
  (:class:`PrefaceSniff`, on :func:`asgiri.protocol.detect.sniff`, or
  :func:`~asgiri.protocol.detect.sniff_http2_only` under ``--http 2``);
* for a request with ``Upgrade`` (:class:`~asgiri.protocol.h1.UpgradeRequested`,
  offered by the HTTP/1.1 connection only when a switch is possible):
  ``h2c`` becomes HTTP/2 with the request as stream 1 (after its body,
  :class:`H2cBody`), ``websocket`` a WebSocket session whose handshake the
  app answers.  Anything else, or what this server does not serve, is
  declined and served as HTTP/1.1.

A hand-over builds the new protocol object with the connection facts
already known (scheme, addresses, the ``tls`` extension, trusted proxies)
and gives it the bytes already read; see ``H1Protocol.hand_over``.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any, Final, Protocol

from ..asgi.scope import websocket_scope
from ..protocol.detect import H2cUpgrade, Sniffed, h2c_upgrade, sniff, sniff_http2_only
from ..protocol.events import Headers, Request
from ..protocol.h1 import H1Connection, RequestInfo, UpgradeRequested
from ..protocol.proxy_headers import TrustedProxies
from ..protocol.ws_handshake import HandshakeError, check_h1_handshake, negotiate_extensions
from .context import ServerContext
from .h2 import H2Protocol
from .ws import WSBridge, WSH1Protocol

__all__ = [
    "H1Protocol",
    "H2cBody",
    "PrefaceSniff",
    "Switching",
    "choose",
    "switch_to_h2",
    "upgrade",
]


class Switching(Protocol):
    """Where received bytes go while a protocol switch is being decided or prepared."""

    def received(self, data: bytes) -> bytes:
        """Take ``data``; returns the bytes HTTP/1.1 is to parse (b"" for none)."""


class H1Protocol(Protocol):
    """What a switch needs of the HTTP/1.1 connection it starts from.

    :class:`asgiri.server.h1.H1Protocol` is the one implementation; naming
    the surface here keeps this module below it (h1 calls in, never the
    other way round).
    """

    ctx: ServerContext
    conn: H1Connection
    transport: Any
    tls: bool
    scheme: str
    client: tuple[str, int] | None
    server: tuple[str, int | None] | None
    extensions: dict[str, Any]
    forwarded: TrustedProxies | None
    switching: Switching | None
    #: The server's header block for this connection's responses.
    default_headers: Callable[[], bytes]

    def hand_over(self, proto: asyncio.BaseProtocol) -> None:
        """The transport now belongs to ``proto``."""

    def wait_for(self, switching: Switching) -> None:
        """Received bytes go to ``switching`` until it is done."""

    def answer(
        self,
        status: int,
        reason: str,
        request: Request | None = None,
        extra: Headers | None = None,
        *,
        scope: dict[str, Any] | None = None,
    ) -> None:
        """A response from the server itself; the connection closes."""


logger = logging.getLogger("asgiri.error")

_SWITCHING_TO_H2C: Final = (
    b"HTTP/1.1 101 Switching Protocols\r\nconnection: Upgrade\r\nupgrade: h2c\r\n\r\n"
)


def choose(h1: H1Protocol, alpn: str | None) -> bool:
    """Decide what a new connection speaks; False when it is no longer HTTP/1.1's."""
    ctx = h1.ctx
    if h1.tls:
        if alpn == "h2" and ctx.h2_enabled:
            switch_to_h2(h1, b"")
            return False
        if not ctx.h1_enabled:
            # HTTP/2 only, and the client did not choose h2 through ALPN.
            h1.transport.close()
            return False
    elif ctx.h2_enabled:
        h1.switching = PrefaceSniff(h1)
    return True


class PrefaceSniff:
    """Cleartext with HTTP/2 enabled: the first bytes say whether it is HTTP/2."""

    __slots__ = ("_h1", "_seen")

    def __init__(self, h1: H1Protocol) -> None:
        self._h1 = h1
        #: A beginning of the preface, kept across reads.
        self._seen = b""

    def received(self, data: bytes) -> bytes:
        """The bytes for HTTP/1.1 to parse: none until the protocol is known."""
        h1 = self._h1
        data = self._seen + data
        h1_enabled = h1.ctx.h1_enabled
        sniffed = sniff(data) if h1_enabled else sniff_http2_only(data)
        if sniffed is Sniffed.MORE:
            self._seen = data
            return b""
        h1.switching = None
        if sniffed is Sniffed.HTTP2:
            switch_to_h2(h1, data)
            return b""
        if not h1_enabled:
            h1.answer(505, "This server speaks HTTP/2 only")
            return b""
        return data


class H2cBody:
    """An accepted ``Upgrade: h2c`` whose request body is still arriving.

    The 101 waits for the whole body (at most one stream window, see
    :func:`~asgiri.protocol.detect.h2c_upgrade`): clients such as curl stop
    sending the body once the 101 is in.
    """

    __slots__ = ("_data", "_h1", "_upgrade")

    def __init__(self, h1: H1Protocol, upgrade: H2cUpgrade, data: bytes) -> None:
        self._h1 = h1
        self._upgrade = upgrade
        self._data = data

    def received(self, data: bytes) -> bytes:
        self._data += data
        if len(self._data) >= self._upgrade.body_length:
            self._h1.switching = None
            _start_h2c(self._h1, self._upgrade, self._data)
        return b""


def upgrade(h1: H1Protocol, event: UpgradeRequested) -> bool:
    """Act on a request asking to switch protocols; False: serve it as HTTP/1.1."""
    ctx = h1.ctx
    if event.protocol == b"h2c":
        if h1.tls or not ctx.h2_enabled:
            return False  # h2c is cleartext HTTP/2 (RFC 7540 3.2); over TLS ALPN chooses
        h2c = h2c_upgrade(event.request, ctx.h2_limits.initial_window_size)
        if h2c is None:
            return False
        _, data = h1.conn.accept_upgrade()
        _start_h2c(h1, h2c, data)
        return True
    if event.protocol == b"websocket" and ctx.ws_enabled:
        info, data = h1.conn.accept_upgrade()
        _start_websocket(h1, event.request, info, data)
        return True
    return False


def _start_h2c(h1: H1Protocol, h2c: H2cUpgrade, data: bytes) -> None:
    if len(data) < h2c.body_length:
        h1.wait_for(H2cBody(h1, h2c, data))
        return
    h1.transport.write(_SWITCHING_TO_H2C)
    switch_to_h2(h1, data, h2c)


def switch_to_h2(h1: H1Protocol, data: bytes, h2c: H2cUpgrade | None = None) -> None:
    """Hand the transport to an HTTP/2 connection, with the bytes already read."""
    extensions = {k: v for k, v in h1.extensions.items() if k != "http.response.zerocopy"}
    proto = H2Protocol(
        h1.ctx,
        h1.transport,
        scheme=h1.scheme,
        client=h1.client,
        server=h1.server,
        extensions=extensions,
        forwarded=h1.forwarded,
    )
    h1.hand_over(proto)
    try:
        proto.start(data, h2c)
    except Exception:
        logger.exception("HTTP/2 connection failed to start")
        h1.transport.abort()


def _start_websocket(h1: H1Protocol, request: Request, info: RequestInfo, data: bytes) -> None:
    """RFC 6455 opening handshake: the app answers it through the ASGI scope."""
    try:
        key = check_h1_handshake(request.method, request.headers)
    except HandshakeError as exc:
        h1.answer(exc.status, str(exc), request, exc.headers)
        return
    ctx = h1.ctx
    if ctx.shutting_down:
        # The drain closed the WebSockets open when it began (1001/1012);
        # one opened after would be held until the graceful-shutdown timeout
        # cut it.  503 (with Connection: close): try again, on another process.
        h1.answer(503, "Service Unavailable", request)
        return
    if not ctx.request_started():
        # A WebSocket counts as a request for --limit-concurrency.
        h1.answer(503, "Service Unavailable", request)
        return
    extensions, extension_header = negotiate_extensions(
        request.headers,
        ctx.config.websocket.ws_per_message_deflate,
        ctx.config.websocket.ws_deflate_level,
    )
    scope = websocket_scope(
        request,
        "wss" if h1.tls else "ws",
        h1.client,
        h1.server,
        ctx.root_path,
        ctx.state,
        h1.extensions,
        forwarded=h1.forwarded,
    )
    proto = WSH1Protocol(ctx, h1.transport, info, h1.default_headers)
    bridge = WSBridge(
        ctx,
        proto,
        scope,
        request.stream_id,
        key=key,
        extensions=extensions,
        extension_header=extension_header,
        request=request,
    )
    h1.hand_over(proto)
    proto.start(bridge, data)
