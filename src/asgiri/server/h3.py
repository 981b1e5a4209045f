"""HTTP/3 over a UDP socket: the I/O edge of :mod:`asgiri.protocol.h3`.

:class:`QuicListener` is the ``asyncio.DatagramProtocol`` of one UDP socket,
bound to the same host and port number as the TCP listener.  It routes each
datagram by connection id (:class:`~asgiri.protocol.quic.QuicRouter`) to an
:class:`H3Protocol`, one per QUIC connection, which is the
:class:`~asgiri.asgi.http_stream.HTTPSink` of every request stream on it, as
:class:`~asgiri.server.h2.H2Protocol` is for HTTP/2.

I/O discipline, per connection: the datagrams a connection has to send
after handling one incoming datagram or timer (and after app steps in the
same loop iteration) leave together, then its one timer is re-armed from
``get_timer()``; nothing polls.  Response backpressure: ``drain`` makes an
app wait while more than :data:`~.streams.HIGH_WATER` bytes of its stream are queued
but not yet sent (QUIC flow control or congestion holding them back), and
every send batch wakes the streams that fell below it.  Request-body
backpressure: body bytes are credited to the client only as the app reads
them (see :class:`~asgiri.protocol.aioquic_internals.ServerQuicConnection`).
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import time
from typing import TYPE_CHECKING, Any, cast

from aioquic.quic.configuration import QuicConfiguration
from aioquic.quic.logger import QuicFileLogger
from aioquic.tls import SessionTicket

from ..asgi.scope import http_scope
from ..config import Config
from ..errors import StartupError
from ..protocol.aioquic_internals import ServerQuicConnection
from ..protocol.events import ConnectionEnded, Request
from ..protocol.h3 import (
    ConnectionIdIssued,
    ConnectionIdRetired,
    H3Connection,
    H3ErrorCode,
)
from ..protocol.quic import QuicRouter, RouteKind
from ..protocol.webtransport import (
    SESSION_GONE,
    WebTransportDatagram,
    WebTransportStreamData,
    WebTransportStreamReset,
)
from .context import ServerContext
from .streams import StreamSink
from .udp import DatagramSender, Transport
from .webtransport import WTBridge

if TYPE_CHECKING:
    from .tls import TLSInfo

logger = logging.getLogger("asgiri.error")

#: Per-stream request-body window: what a client may send ahead of the app.
STREAM_WINDOW = 1024 * 1024
#: Handshakes in progress beyond which new clients must first answer a Retry
#: (prove their address), even without ``--quic-retry``: a flood of Initial
#: packets from spoofed addresses then costs no handshake work.
RETRY_UNDER_LOAD = 100
#: Initial connection-level window (aioquic grows it as data flows).
CONNECTION_WINDOW = 4 * 1024 * 1024
#: How long a draining connection waits for its last data to be acknowledged
#: before it closes anyway (a client that acknowledges nothing is gone).
ACK_GRACE = 3.0
#: The largest DATAGRAM frame taken (a WebTransport datagram fits in a packet anyway).
DATAGRAM_FRAME_SIZE = 65536
_TLS13 = 0x0304
#: The clock QUIC runs on.  Not the event loop's: uvloop's ticks in whole
#: milliseconds, and QUIC measures round trips and paces packets in
#: microseconds (a loopback or LAN round trip is well under a millisecond).
#: Timers are armed as delays from it, so the two clocks never mix.
_now = time.monotonic


def quic_configuration(config: Config) -> QuicConfiguration:
    """aioquic's server configuration from ours; certificate errors name the option."""
    quic = config.quic
    configuration = QuicConfiguration(
        is_client=False,
        alpn_protocols=["h3"],
        idle_timeout=quic.quic_idle_timeout,
        max_datagram_size=quic.quic_max_datagram_size,
        max_stream_data=STREAM_WINDOW,
        max_data=CONNECTION_WINDOW,
        # HTTP datagrams (RFC 9297), which WebTransport sessions use.
        max_datagram_frame_size=DATAGRAM_FRAME_SIZE if config.webtransport.webtransport else None,
    )
    tls = config.tls
    try:
        if tls.cert_data is not None:
            _load_pem(configuration, tls.cert_data, tls.key_data, tls.keyfile_password)
        elif tls.certfile:
            configuration.load_cert_chain(
                tls.certfile, tls.keyfile or None, tls.keyfile_password or None
            )
        else:
            raise StartupError(
                "HTTP/3 needs the certificate as --ssl-certfile/--ssl-keyfile "
                "(or cert_data/key_data); a ready ssl_context cannot be used by QUIC"
            )
    except (ValueError, TypeError, OSError) as exc:
        raise StartupError(f"TLS configuration error (HTTP/3): {exc}") from exc
    if quic.quic_log_dir:
        try:
            os.makedirs(quic.quic_log_dir, exist_ok=True)
            configuration.quic_logger = QuicFileLogger(quic.quic_log_dir)
        except OSError as exc:
            raise StartupError(f"cannot use --quic-log-dir {quic.quic_log_dir!r}: {exc}") from exc
    return configuration


def _load_pem(
    configuration: QuicConfiguration,
    cert: bytes | str,
    key: bytes | str | None,
    password: str | None,
) -> None:
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization

    cert_bytes = cert.encode() if isinstance(cert, str) else cert
    key_bytes = cert_bytes if key is None else (key.encode() if isinstance(key, str) else key)
    certificates = x509.load_pem_x509_certificates(cert_bytes)
    configuration.certificate = certificates[0]
    configuration.certificate_chain = certificates[1:]
    configuration.private_key = serialization.load_pem_private_key(
        key_bytes, password.encode() if password else None
    )


class _TicketStore:
    """Session tickets for resumption (and so 0-RTT), kept in memory, used once."""

    def __init__(self, limit: int = 10000) -> None:
        self._tickets: dict[bytes, SessionTicket] = {}
        self._limit = limit

    def add(self, ticket: SessionTicket) -> None:
        if len(self._tickets) >= self._limit:
            self._tickets.pop(next(iter(self._tickets)))
        self._tickets[ticket.ticket] = ticket

    def pop(self, label: bytes) -> SessionTicket | None:
        # Used once: a replayed ClientHello finds no ticket (RFC 8446 8.1).
        return self._tickets.pop(label, None)


class QuicListener(asyncio.DatagramProtocol):
    """One UDP socket serving HTTP/3: routes datagrams to connections."""

    def __init__(
        self,
        ctx: ServerContext,
        configuration: QuicConfiguration,
        sock: socket.socket | None = None,
    ) -> None:
        self.ctx = ctx
        self.loop = ctx.loop
        self.configuration = configuration
        quic = ctx.config.quic
        self.router: QuicRouter[H3Protocol] = QuicRouter(configuration, retry=quic.quic_retry)
        self._tickets = _TicketStore()
        self.transport: asyncio.DatagramTransport | None = None
        #: The socket itself, for sends of several datagrams at once (GSO).
        self._sock = sock
        #: What every connection's datagrams leave through (set with the transport).
        self.sender: DatagramSender | None = None
        #: Connections whose handshake has not completed yet.
        self.handshakes = 0
        self.server_address: tuple[str, int | None] | None = None
        self.closed = False

    def factory(self) -> QuicListener:
        """For ``loop.create_datagram_endpoint``, which wants a protocol factory."""
        return self

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)
        self.sender = DatagramSender(
            self._sock, cast(Transport, transport), gso=self.ctx.config.quic.quic_gso
        )
        sockname = transport.get_extra_info("sockname")
        if sockname:
            self.server_address = (str(sockname[0]), int(sockname[1]))

    def datagram_received(self, data: bytes, addr: Any) -> None:
        target = self.router.known(data)
        if target is not None:
            target.datagram_received(data, addr)
            return
        route = self.router.route(
            data, addr, self.loop.time(), retry=self.handshakes >= RETRY_UNDER_LOAD
        )
        kind = route.kind
        if kind is RouteKind.DELIVER:
            target = route.target
            if target is not None:
                target.datagram_received(data, addr)
        elif kind is RouteKind.NEW:
            if self.ctx.shutting_down or self.closed:
                return  # no new connections while draining
            tickets = self._tickets
            quic = ServerQuicConnection(
                configuration=self.configuration,
                max_streams=self.ctx.config.quic.quic_max_streams,
                original_destination_connection_id=route.original_destination_cid,
                retry_source_connection_id=route.retry_source_cid,
                early_data=self.ctx.config.quic.quic_0rtt,
                session_ticket_fetcher=tickets.pop,
                session_ticket_handler=tickets.add,
            )
            protocol = H3Protocol(self, quic, addr)
            protocol.add_cid(route.destination_cid)
            protocol.add_cid(quic.host_cid)
            protocol.datagram_received(data, addr)
        elif kind is RouteKind.REPLY and self.transport is not None:
            self.transport.sendto(route.reply, addr)

    def error_received(self, exc: Exception) -> None:
        # ICMP errors for one peer (port unreachable...) are that peer's
        # problem; QUIC's own timers notice a dead path.
        logger.debug("UDP error on the HTTP/3 socket: %s", exc)

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True

    def close(self) -> None:
        """Stop taking new connections (the socket stays for the open ones)."""
        self.closed = True

    def close_transport(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.close()


class H3Protocol(StreamSink):
    """One QUIC connection carrying HTTP/3; the HTTPSink of its request streams."""

    #: Label of this connection in the open-connections metric.
    metrics_protocol = "h3"
    label = "HTTP/3"
    http_version = "3"
    alt_svc = False
    sends_continue = False
    conn: H3Connection

    def __init__(self, listener: QuicListener, quic: ServerQuicConnection, addr: Any) -> None:
        self.listener = listener
        ctx = listener.ctx
        self._init_streams(ctx)
        self.scheme = "https"
        limits = ctx.config.limits
        self.conn = H3Connection(
            quic,
            max_header_size=limits.limit_request_header_size,
            max_fields=limits.limit_request_fields,
            max_body=limits.limit_request_body,
            enable_connect=ctx.ws_enabled,
            enable_webtransport=ctx.config.webtransport.webtransport,
        )
        self.client: tuple[str, int] | None = (str(addr[0]), int(addr[1]))
        #: Whether this peer may set client/scheme/host by forwarding headers.
        self.forwarded = ctx.forwarded_for(self.client)
        self.server = listener.server_address
        self.extensions: dict[str, Any] = {}
        #: The connection ids the router maps to this connection.
        self.cids: set[bytes] = set()
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at: float | None = None
        self._close_when_idle = False
        self._handshaking = True
        listener.handshakes += 1
        ctx.connections.add(self)
        if ctx.shutting_down:
            self._closing = True

    # ------------------------------------------------------------ input

    def datagram_received(self, data: bytes, addr: Any) -> None:
        if self._closed:
            return
        self._in_receive = True
        try:
            self._dispatch(self.conn.receive_datagram(data, addr, _now()))
        finally:
            self._in_receive = False
        # Not sent at once: the event loop hands over the datagrams that
        # arrived together one call each, and what they make the connection
        # send (acknowledgements, more data) leaves in one flush after them.
        self.schedule_flush()

    def _on_timer(self) -> None:
        self._timer = None
        self._timer_at = None
        if self._closed:
            return
        self._in_receive = True
        try:
            self._dispatch(self.conn.handle_timer(_now()))
        finally:
            self._in_receive = False
        self._flush()

    def _on_other(self, event: Any) -> None:
        kind = type(event)
        if kind is WebTransportStreamData:
            bridge = self._session(event.session_id)
            if bridge is not None:
                bridge.stream_data(event.stream_id, event.data, event.ended)
            else:
                # A stream of a session that is not (or no longer) here.
                self.conn.reset(event.stream_id, SESSION_GONE)
                self.conn.forget_webtransport_stream(event.stream_id)
        elif kind is WebTransportDatagram:
            bridge = self._session(event.session_id)
            if bridge is not None:
                bridge.datagram(event.data)
        elif kind is WebTransportStreamReset:
            bridge = self._session(event.session_id)
            if bridge is not None:
                bridge.stream_reset(event.stream_id, event.error_code)
            else:
                self.conn.forget_webtransport_stream(event.stream_id)
        elif kind is ConnectionIdIssued:
            self.add_cid(event.cid)
        elif kind is ConnectionIdRetired:
            self.cids.discard(event.cid)
            self.listener.router.remove(event.cid)

    def add_cid(self, cid: bytes) -> None:
        """Route packets with this destination connection id here."""
        self.cids.add(cid)
        self.listener.router.add(cid, self)

    # ------------------------------------------------------------ streams

    # ------------------------------------------------------------ WebTransport

    def _open_tunnel(self, request: Request) -> None:
        """An extended CONNECT with ``:protocol webtransport``: a WebTransport session."""
        stream_id = request.stream_id
        sessions = sum(1 for tunnel in self.tunnels.values() if isinstance(tunnel, WTBridge))
        if sessions >= self.ctx.config.webtransport.webtransport_max_sessions:
            self._answer(stream_id, 429, "Too Many WebTransport Sessions", request)
            return
        self._update_client()
        scope = http_scope(
            request,
            "https",
            self.client,
            self.server,
            self.ctx.root_path,
            self.ctx.state,
            {},
            scope_type="webtransport",
            forwarded=self.forwarded,
        )
        del scope["method"]
        extensions: dict[str, Any] = {"webtransport.http.response": {}}
        tls = self._extensions().get("tls")
        if tls is not None:
            extensions["tls"] = tls
        scope["extensions"] = extensions
        self._add_tunnel(WTBridge(self, request, scope))

    def _session(self, session_id: int) -> WTBridge | None:
        tunnel = self.tunnels.get(session_id)
        return tunnel if isinstance(tunnel, WTBridge) else None

    def _on_reset(self, stream_id: int) -> None:
        session_id = self.conn.webtransport_streams.get(stream_id)
        if session_id is not None:
            # One of ours reset by the stall watch (--timeout-write).
            bridge = self._session(session_id)
            if bridge is not None:
                bridge.stream_reset(stream_id, 0)
        super()._on_reset(stream_id)

    def _update_client(self) -> None:
        """The client's current address: it may have moved (NAT rebinding, migration)."""
        peer = self.conn.quic.get_peer_address()
        if peer is not None and (peer[0], peer[1]) != self.client:
            self.client = (str(peer[0]), int(peer[1]))
            self.forwarded = self.ctx.forwarded_for(self.client)

    def _extensions(self) -> dict[str, Any]:
        if not self.extensions:
            info: TLSInfo | None = self.ctx.tls_info
            tls = self.conn.quic.tls
            cipher = getattr(getattr(tls, "key_schedule", None), "cipher_suite", None)
            self.extensions = {
                "http.response.trailers": {},
                "http.response.early_hint": {},
                "http.response.pathsend": {},
                "tls": {
                    "server_cert": info.server_cert if info is not None else None,
                    "client_cert_chain": [],
                    "client_cert_name": None,
                    "client_cert_error": None,
                    "tls_version": _TLS13,
                    "cipher_suite": int(cipher) if cipher is not None else None,
                },
            }
        return self.extensions

    def _on_ended(self, event: ConnectionEnded) -> None:
        if event.error_code:
            logger.debug(
                "HTTP/3 connection from %s ended: code %#x %s",
                self.client,
                event.error_code,
                event.reason,
            )
        self._finish()

    def _finish(self) -> None:
        """The QUIC connection is gone: every stream is a disconnect."""
        if self._closed:
            return
        self._closed = True
        self._handshake_done()
        self.ctx.connections.discard(self)
        router = self.listener.router
        for cid in self.cids:
            router.remove(cid)
        self.cids.clear()
        if self.conn.handshake_complete:
            # Packets still in flight to it get a stateless reset, not silence.
            router.remember_reset_tokens(self.conn.quic.reset_tokens())
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._disconnect_all()
        self.conn.release()

    # ------------------------------------------------------------ output

    def _flush(self) -> None:
        """Send what the connection has ready, re-arm its timer, wake drained streams."""
        self._flush_scheduled = False
        if self._closed:
            return
        if self._handshaking and self.conn.handshake_complete:
            self._handshake_done()
        transport = self.listener.transport
        sender = self.listener.sender
        if transport is not None and sender is not None and not transport.is_closing():
            sender.send(self.conn.datagrams_to_send(_now()))
            # (aioquic forgets acknowledged streams while building packets.)
            if self._close_when_idle and self.conn.idle:
                self._close_when_idle = False
                self.conn.close(H3ErrorCode.H3_NO_ERROR)
                sender.send(self.conn.datagrams_to_send(_now()))
        if self.conn.closed:
            self._finish()
            return
        at = self.conn.get_timer()
        if at != self._timer_at:
            if self._timer is not None:
                self._timer.cancel()
            self._timer = (
                self.loop.call_later(at - _now(), self._on_timer) if at is not None else None
            )
            self._timer_at = at
        if self._waiters:
            self._wake_drained()

    def _handshake_done(self) -> None:
        if self._handshaking:
            self._handshaking = False
            self.listener.handshakes -= 1

    # ------------------------------------------------------------ lifecycle

    def _maybe_idle(self) -> None:
        if self._closing and not self._has_work() and not self._closed:
            # Every stream accepted before the GOAWAY is answered; the close
            # follows once the client has acknowledged all of it (_flush),
            # or after ACK_GRACE: a client that acknowledges nothing is gone
            # and would hold the drain until the QUIC idle timeout.
            if not self._close_when_idle:
                self._close_when_idle = True
                self.loop.call_later(ACK_GRACE, self._ack_grace_over)
            self.schedule_flush()

    def _ack_grace_over(self) -> None:
        if self._close_when_idle and not self._closed:
            self._close_when_idle = False
            self.conn.close(H3ErrorCode.H3_NO_ERROR)
            self._flush()

    def shutdown(self) -> None:
        """Graceful: GOAWAY, let the accepted streams finish, then CONNECTION_CLOSE."""
        if self._closed:
            return
        self._closing = True
        self.conn.goaway()
        self._shutdown_tunnels()
        self._maybe_idle()
        self._flush()

    def abort(self) -> None:
        """Close now: CONNECTION_CLOSE goes out once, then the state is dropped."""
        if self._closed:
            return
        self.conn.close(H3ErrorCode.H3_NO_ERROR, "server shutting down")
        self._flush()
        self._finish()
