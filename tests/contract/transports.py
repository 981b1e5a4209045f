"""Every way a client reaches asgiri, behind one small interface.

A guarantee is written once, as a test over :data:`HTTP_TRANSPORTS` or
:data:`WS_TRANSPORTS`; what differs per transport (how to connect, how a
response is cut off, what the access log calls the protocol) lives here.

The request clients are protocol libraries driven by hand, so that nothing
a server does is hidden by a client's own recovery: h11 for HTTP/1.1 (1xx
responses, trailers, a body cut short), h2 through the raw-socket client of
``tests/http2/test_h2_semantics.py`` for HTTP/2, aioquic through
``tests/support/h3_client.py`` for HTTP/3.  Tests that are about what a mainstream
client sees use :meth:`HTTPTransport.httpx_client` instead.

Each connection can also be used badly on purpose: a request abandoned
half-way (:meth:`HTTPConn.abandon`: the socket reset, RST_STREAM,
RESET_STREAM), a response never read (just do not call
:meth:`HTTPConn.response`), or read slowly (its ``burst`` and ``pause``).
"""

from __future__ import annotations

import abc
import contextlib
import socket
import ssl
import struct
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import h2.errors
import h2.events
import h2.exceptions
import h2.settings
import h11
import httpx
from aioquic.h3.events import HeadersReceived
from wsproto import ConnectionType, WSConnection
from wsproto.events import (
    AcceptConnection,
    BytesMessage,
    CloseConnection,
    Event,
    Message,
    Ping,
    RejectConnection,
    RejectData,
    Request,
    TextMessage,
)

from asgiri.protocol.h2_codecs import CODECS, codec_available
from tests.support.h2_client import H2Client
from tests.support.h3_client import H3Client, H3WebSocket
from tests.support.servers import CLIServer, ThreadServer
from tests.support.ws_h2_client import H2WebSocket, H2WSConnection, TolerantH2Connection

__all__ = [
    "ALL_TRANSPORTS",
    "H1",
    "H1_TLS",
    "H2C",
    "H2_CODECS",
    "H2_TLS",
    "H3",
    "HTTP_TRANSPORTS",
    "TIMEOUT",
    "WS_H1",
    "WS_H2",
    "WS_H2C",
    "WS_H3",
    "WS_TRANSPORTS",
    "H1Conn",
    "H2Conn",
    "H3Conn",
    "HTTPConn",
    "HTTPTransport",
    "Reply",
    "ServerLike",
    "Transport",
    "WSConn",
    "WSTransport",
    "client_tls",
]

TIMEOUT = 10.0
#: The HTTP/2 codecs this platform has: guarantees that differ by codec run on each.
H2_CODECS = [codec for codec in CODECS if codec_available(codec)]
Headers = list[tuple[bytes, bytes]]
#: A server in this process or a CLI process (``--workers``).
ServerLike = ThreadServer | CLIServer

H2_INTERNAL_ERROR = int(h2.errors.ErrorCodes.INTERNAL_ERROR)
H3_INTERNAL_ERROR = 0x102


def client_tls(alpn: list[str]) -> ssl.SSLContext:
    """A client context offering ``alpn``; the self-signed test certificate is not verified."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    context.set_alpn_protocols(alpn)
    return context


def has_header(headers: Sequence[tuple[bytes, bytes]], name: bytes) -> bool:
    return any(n.lower() == name for n, _ in headers)


# ----------------------------------------------------------------------------- HTTP


@dataclass
class Reply:
    """What one request got back, whatever carried it."""

    status: int = 0
    headers: Headers = field(default_factory=list)
    body: bytes = b""
    #: Body bytes received (also counted when ``keep_body=False``).
    received: int = 0
    #: The trailer section, if the response had one.
    trailers: Headers | None = None
    #: Interim responses in arrival order: (status, headers).
    informational: list[tuple[int, Headers]] = field(default_factory=list)
    #: The response ended where its framing says (last chunk, END_STREAM, FIN).
    complete: bool = False
    #: HTTP/2 and HTTP/3: the code the server reset the stream with.
    reset: int | None = None
    #: The connection ended before the response did.
    closed: bool = False
    #: HTTP/2 GOAWAY, HTTP/3 CONNECTION_CLOSE: the error code the server ended it with.
    connection_error: int | None = None

    def header(self, name: bytes) -> bytes | None:
        return next((v for n, v in self.headers if n == name), None)

    @property
    def cut(self) -> bool:
        """The response was cut off: reset or closed before its end."""
        return not self.complete and (self.closed or self.reset is not None)


class HTTPConn(abc.ABC):
    """One client connection; ``start`` returns a handle for the request's stream."""

    @abc.abstractmethod
    def start(
        self,
        method: str,
        path: str,
        headers: Sequence[tuple[bytes, bytes]] = (),
        body: bytes = b"",
        *,
        end: bool = True,
        authority: str | None = None,
    ) -> int:
        """Send a request head (and ``body``); ``end=False`` leaves the body open."""

    @abc.abstractmethod
    def send(self, handle: int, data: bytes, end: bool = False) -> bool:
        """More request body; False once the server no longer takes it."""

    @abc.abstractmethod
    def response(
        self,
        handle: int,
        timeout: float = TIMEOUT,
        *,
        keep_body: bool = True,
        burst: int | None = None,
        pause: float = 0.0,
        head_only: bool = False,
    ) -> Reply:
        """Read until the response ends, is reset, or the connection closes.

        ``burst``/``pause``: read at most ``burst`` bytes, then wait ``pause``
        seconds, and so on (a slow reader); ``keep_body=False`` only counts;
        ``head_only``: return as soon as the final response head is in.
        """

    @abc.abstractmethod
    def abandon(self, handle: int) -> None:
        """Give the request up abruptly (socket reset, RST_STREAM, RESET_STREAM)."""

    @abc.abstractmethod
    def close(self) -> None: ...

    def __enter__(self) -> HTTPConn:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class H1Conn(HTTPConn):
    """HTTP/1.1 with h11 over a (TLS) socket; one request at a time."""

    def __init__(self, port: int, tls: bool, rcvbuf: int | None = None) -> None:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        if rcvbuf is not None:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        sock.settimeout(TIMEOUT)
        sock.connect(("127.0.0.1", port))
        if tls:
            sock = client_tls(["http/1.1"]).wrap_socket(sock, server_hostname="localhost")
        self.sock = sock
        self.h11 = h11.Connection(h11.CLIENT)
        self._reply = Reply()
        self._handle = 0
        self._eof = False

    def _write(self, data: bytes | None) -> bool:
        if not data:
            return True
        try:
            self.sock.sendall(data)
        except OSError:  # the server answered and closed while we were sending
            return False
        return True

    def start(
        self,
        method: str,
        path: str,
        headers: Sequence[tuple[bytes, bytes]] = (),
        body: bytes = b"",
        *,
        end: bool = True,
        authority: str | None = None,
    ) -> int:
        conn = self.h11
        if conn.our_state is h11.DONE and conn.their_state is h11.DONE:
            conn.start_next_cycle()
        fields = [(b"host", (authority or "localhost").encode()), *headers]
        if not has_header(fields, b"content-length") and not has_header(
            fields, b"transfer-encoding"
        ):
            if end:
                fields.append((b"content-length", b"%d" % len(body)))
            else:
                fields.append((b"transfer-encoding", b"chunked"))
        self._reply = Reply()
        self._handle += 1
        request = h11.Request(method=method, target=path, headers=fields)
        if self._write(conn.send(request)) and body:
            self._write(conn.send(h11.Data(data=body)))
        if end:
            self._write(conn.send(h11.EndOfMessage()))
        return self._handle

    def send(self, handle: int, data: bytes, end: bool = False) -> bool:
        try:
            ok = self._write(self.h11.send(h11.Data(data=data))) if data else True
            if ok and end:
                ok = self._write(self.h11.send(h11.EndOfMessage()))
        except h11.LocalProtocolError:
            return False
        return ok

    def _recv(self, size: int, timeout: float) -> bytes:
        self.sock.settimeout(timeout)
        try:
            return self.sock.recv(size)
        except (ConnectionResetError, ConnectionAbortedError, BrokenPipeError):
            return b""
        except ssl.SSLError:  # a TLS connection cut without close_notify
            return b""

    def response(
        self,
        handle: int,
        timeout: float = TIMEOUT,
        *,
        keep_body: bool = True,
        burst: int | None = None,
        pause: float = 0.0,
        head_only: bool = False,
    ) -> Reply:
        reply = self._reply
        deadline = time.monotonic() + timeout
        budget = burst
        while True:
            try:
                event = self.h11.next_event()
            except h11.RemoteProtocolError:
                reply.closed = True  # EOF in the middle of the response
                return reply
            if event is h11.NEED_DATA:
                if budget is not None and budget <= 0:
                    time.sleep(pause)
                    budget = burst
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise TimeoutError("no complete response in time")
                data = self._recv(min(65536, budget or 65536), remaining)
                if budget is not None:
                    budget -= len(data)
                if not data:
                    self._eof = True
                self.h11.receive_data(data)
            elif isinstance(event, h11.InformationalResponse):
                reply.informational.append((event.status_code, list(event.headers)))
            elif isinstance(event, h11.Response):
                reply.status = event.status_code
                reply.headers = list(event.headers)
                if head_only:
                    return reply
            elif isinstance(event, h11.Data):
                reply.received += len(event.data)
                if keep_body:
                    reply.body += bytes(event.data)
            elif isinstance(event, h11.EndOfMessage):
                reply.trailers = list(event.headers) or None
                reply.complete = True
                return reply
            elif isinstance(event, h11.ConnectionClosed):
                reply.closed = True
                return reply

    def abandon(self, handle: int) -> None:
        # SO_LINGER 0: the close is a reset, as when a client process dies.
        with contextlib.suppress(OSError):
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.sock.close()

    def close(self) -> None:
        self.sock.close()


class _H2Client(H2Client):
    """:class:`tests.http2.test_h2_semantics.H2Client` reading at most ``read_size`` at a time."""

    read_size = 1 << 20

    def pump(self, ack: bool = True) -> list[Any]:
        try:
            data = self.sock.recv(self.read_size)
        except (ConnectionResetError, ConnectionAbortedError, BrokenPipeError):
            data = b""
        except ssl.SSLError:
            data = b""
        if not data:
            raise EOFError("the server closed the connection")
        events = self.conn.receive_data(data)
        for event in events:
            if ack and isinstance(event, h2.events.DataReceived) and event.flow_controlled_length:
                with contextlib.suppress(h2.exceptions.StreamClosedError):
                    self.conn.acknowledge_received_data(
                        event.flow_controlled_length, event.stream_id
                    )
        self.events.extend(events)
        with contextlib.suppress(OSError):
            self.flush()
        return events


class H2Conn(HTTPConn):
    """HTTP/2 with the h2 library over a socket (TLS with ALPN h2, or prior knowledge)."""

    def __init__(self, port: int, tls: bool, *, validate: bool = True) -> None:
        client = _H2Client(port, ssl_context=client_tls(["h2"]) if tls else None, initiate=False)
        # Streams a graceful GOAWAY lets finish can finish (RFC 9113 6.8).
        client.conn = TolerantH2Connection(config=client.conn.config)
        client.conn.initiate_connection()
        client.flush()
        client.sock.settimeout(TIMEOUT)
        self.client = client
        if not validate:
            # Send what the test wrote, even what h2 itself would refuse to send.
            self.client.conn.config.validate_outbound_headers = False
            self.client.conn.config.normalize_outbound_headers = False
        self._seen: dict[int, int] = {}
        self._eof = False

    def open_window(self, size: int = 2**31 - 1) -> None:
        """Let the server send ``size`` bytes on the connection and on each stream
        unasked (clients such as httpx open 16 MiB windows), so flow control
        does not hold the server back: only the socket does."""
        conn = self.client.conn
        conn.update_settings({h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: size})
        conn.increment_flow_control_window(size - conn.inbound_flow_control_window)
        self.client.flush()

    def start(
        self,
        method: str,
        path: str,
        headers: Sequence[tuple[bytes, bytes]] = (),
        body: bytes = b"",
        *,
        end: bool = True,
        authority: str | None = None,
    ) -> int:
        client = self.client
        stream_id: int = client.conn.get_next_available_stream_id()
        fields = [
            (b":method", method.encode()),
            (b":scheme", client.scheme),
            (b":authority", authority.encode() if authority else client.authority),
            (b":path", path.encode()),
            *headers,
        ]
        client.conn.send_headers(stream_id, fields, end_stream=end and not body)
        with contextlib.suppress(OSError):
            client.flush()
        self._seen[stream_id] = 0
        if body:
            self.send(stream_id, body, end)
        return stream_id

    def send(self, handle: int, data: bytes, end: bool = False) -> bool:
        try:
            self.client.send_body(handle, data, end)
        except (h2.exceptions.H2Error, OSError, EOFError):
            return False
        return True

    def response(
        self,
        handle: int,
        timeout: float = TIMEOUT,
        *,
        keep_body: bool = True,
        burst: int | None = None,
        pause: float = 0.0,
        head_only: bool = False,
    ) -> Reply:
        client = self.client
        client.read_size = burst or (1 << 20)
        reply = Reply()
        deadline = time.monotonic() + timeout
        index = 0
        paused_at = 0
        while True:
            events = client.events
            while index < len(events):
                event = events[index]
                index += 1
                if getattr(event, "stream_id", None) != handle:
                    continue
                if self._take(reply, event, keep_body) or (head_only and reply.status):
                    return reply
            if keep_body is False:
                # (Only what ends a connection needs keeping.)
                client.events[:] = [
                    e for e in client.events if isinstance(e, h2.events.ConnectionTerminated)
                ]
                index = len(client.events)
            if self._eof:
                reply.closed = True
                reply.connection_error = next(
                    (
                        int(e.error_code or 0)
                        for e in client.events
                        if isinstance(e, h2.events.ConnectionTerminated)
                    ),
                    None,
                )
                return reply
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError("no complete response in time")
            if burst is not None and reply.received - paused_at >= burst:
                time.sleep(pause)
                paused_at = reply.received
            client.sock.settimeout(remaining)
            try:
                client.pump()
            except EOFError:
                self._eof = True

    @staticmethod
    def _take(reply: Reply, event: Any, keep_body: bool) -> bool:
        """Add one event of the stream to ``reply``; True when the stream is over."""
        if isinstance(event, h2.events.InformationalResponseReceived):
            status = int(dict(event.headers)[b":status"])
            fields = [(n, v) for n, v in event.headers if not n.startswith(b":")]
            reply.informational.append((status, fields))
        elif isinstance(event, h2.events.ResponseReceived):
            reply.status = int(dict(event.headers)[b":status"])
            reply.headers = [(n, v) for n, v in event.headers if not n.startswith(b":")]
        elif isinstance(event, h2.events.DataReceived):
            reply.received += len(event.data)
            if keep_body:
                reply.body += event.data
        elif isinstance(event, h2.events.TrailersReceived):
            reply.trailers = list(event.headers)
        elif isinstance(event, h2.events.StreamEnded):
            reply.complete = True
            return True
        elif isinstance(event, h2.events.StreamReset):
            reply.reset = int(event.error_code)
            return True
        return False

    def abandon(self, handle: int) -> None:
        self.client.conn.reset_stream(handle, h2.errors.ErrorCodes.CANCEL)
        with contextlib.suppress(OSError):
            self.client.flush()

    def close(self) -> None:
        self.client.close()


class H3Conn(HTTPConn):
    """HTTP/3 with aioquic (tests/support/h3_client.py); 1xx statuses are kept as they come."""

    def __init__(self, port: int, max_stream_data: int | None = None) -> None:
        self.client = H3Client(port, max_stream_data=max_stream_data)
        self.client.on_event = self._on_event
        self._statuses: dict[int, list[int]] = {}
        self.client.connect()

    def _on_event(self, event: Any) -> None:
        if isinstance(event, HeadersReceived):
            status = dict(event.headers).get(b":status")
            if status is not None and int(status) < 200:
                self._statuses.setdefault(event.stream_id, []).append(int(status))

    def start(
        self,
        method: str,
        path: str,
        headers: Sequence[tuple[bytes, bytes]] = (),
        body: bytes = b"",
        *,
        end: bool = True,
        authority: str | None = None,
    ) -> int:
        return self.client.send_request(
            method, path, list(headers), body, end=end, authority=authority or "localhost"
        )

    def send(self, handle: int, data: bytes, end: bool = False) -> bool:
        response = self.client.responses[handle]
        if response.reset_code is not None or self.client.terminated is not None:
            return False
        try:
            self.client.send_data(handle, data, end)
            # Take in what the server said meanwhile (a 413, a STOP_SENDING), waiting 1 ms.
            with contextlib.suppress(TimeoutError):
                self.client.run_until(lambda: False, 0.001)
        except Exception:  # aioquic refuses to send on a stream the peer stopped
            return False
        return True

    def response(
        self,
        handle: int,
        timeout: float = TIMEOUT,
        *,
        keep_body: bool = True,
        burst: int | None = None,
        pause: float = 0.0,
        head_only: bool = False,
    ) -> Reply:
        client = self.client
        response = client.responses[handle]
        deadline = time.monotonic() + timeout
        closed = False

        def over() -> bool:
            if head_only and response.status:
                return True
            return response.ended or response.reset_code is not None

        while not over():
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError("no complete response in time")
            target = len(response.body) + burst if burst is not None else None

            def enough(target: int | None = target) -> bool:
                return over() or (target is not None and len(response.body) >= target)

            try:
                client.run_until(
                    enough,
                    remaining,
                    what=f"the response on stream {handle}",
                )
            except ConnectionError:
                closed = True
                break
            if burst is not None and not over():
                time.sleep(pause)
        statuses = self._statuses.get(handle, [])
        return Reply(
            status=response.status,
            headers=list(response.headers),
            body=bytes(response.body) if keep_body else b"",
            received=len(response.body),
            trailers=list(response.trailers) if response.trailers is not None else None,
            informational=list(zip(statuses, response.informational, strict=False)),
            complete=response.ended,
            reset=response.reset_code,
            closed=closed,
            connection_error=(
                client.terminated.error_code if client.terminated is not None else None
            ),
        )

    def abandon(self, handle: int) -> None:
        self.client.reset(handle)

    def close(self) -> None:
        self.client.close()


@dataclass(frozen=True)
class HTTPTransport:
    """One way to carry HTTP requests: a protocol, over TLS or not."""

    name: str
    #: The server must have TLS (and then serves HTTP/3 too).
    tls: bool
    #: What the access log and ``scope["http_version"]`` call it.
    version: str
    #: The stream error code of a response the app failed in (None: HTTP/1.1 closes).
    internal_error: int | None
    #: A stream reset may discard what was sent before it but not delivered yet
    #: (QUIC's RESET_STREAM, RFC 9000 3.3): a cut response may arrive as a bare reset.
    reset_discards: bool = False

    def __str__(self) -> str:
        return self.name

    @property
    def scope_version(self) -> str:
        return self.version.removeprefix("HTTP/")

    def port(self, srv: ServerLike) -> int:
        if isinstance(srv, CLIServer):
            assert srv.port is not None, "the server is not ready"
            return srv.port  # HTTP/3 on the UDP port of the same number
        if self.version == "HTTP/3":
            port = srv.server.http3_port
            assert port is not None, "the server does not serve HTTP/3"
            return port
        return srv.port

    def connect(
        self, srv: ServerLike, *, rcvbuf: int | None = None, validate: bool = True
    ) -> HTTPConn:
        """A new connection.

        ``rcvbuf`` shrinks what the client takes before it reads (the TCP
        receive buffer; HTTP/3's stream window); ``validate=False`` lets the
        HTTP/2 client send heads its library would refuse.
        """
        if self.version == "HTTP/1.1":
            return H1Conn(self.port(srv), self.tls, rcvbuf)
        if self.version == "HTTP/2":
            return H2Conn(self.port(srv), self.tls, validate=validate)
        return H3Conn(self.port(srv), max_stream_data=rcvbuf)

    def request(
        self,
        srv: ServerLike,
        method: str = "GET",
        path: str = "/ok",
        headers: Sequence[tuple[bytes, bytes]] = (),
        body: bytes | Iterable[bytes] = b"",
        timeout: float = TIMEOUT,
    ) -> Reply:
        """One request on a new connection; a ``bytes`` body declares its length."""
        with self.connect(srv) as conn:
            if isinstance(body, bytes):
                fields = list(headers)
                if body and not has_header(fields, b"content-length"):
                    fields.append((b"content-length", b"%d" % len(body)))
                handle = conn.start(method, path, fields, body)
            else:
                handle = conn.start(method, path, headers, end=False)
                for chunk in body:
                    if not conn.send(handle, chunk):
                        break
                else:
                    conn.send(handle, b"", end=True)
            return conn.response(handle, timeout)

    def hold(self, conn: HTTPConn) -> int:
        """Open ``POST /hold``: the app waits in ``receive()`` for a body that never ends."""
        return conn.start("POST", "/hold", [(b"content-length", b"100")], b"x", end=False)

    def assert_serving(self, srv: ServerLike) -> None:
        """A fresh request is answered: whatever the test did, the server serves on."""
        reply = self.request(srv, "GET", "/ok")
        assert (reply.status, reply.body) == (200, b"ok"), reply

    def httpx_client(self, srv: ServerLike, timeout: float = TIMEOUT) -> httpx.Client:
        """httpx speaking this transport's protocol (not for HTTP/3)."""
        if self.version == "HTTP/3":
            raise ValueError("httpx has no HTTP/3")
        http2 = self.version == "HTTP/2"
        return httpx.Client(
            base_url=f"{'https' if self.tls else 'http'}://127.0.0.1:{self.port(srv)}",
            http1=not http2,
            http2=http2,
            verify=False,
            timeout=timeout,
        )


H1 = HTTPTransport("h1", tls=False, version="HTTP/1.1", internal_error=None)
H1_TLS = HTTPTransport("h1-tls", tls=True, version="HTTP/1.1", internal_error=None)
H2_TLS = HTTPTransport("h2-tls", tls=True, version="HTTP/2", internal_error=H2_INTERNAL_ERROR)
H2C = HTTPTransport("h2c", tls=False, version="HTTP/2", internal_error=H2_INTERNAL_ERROR)
H3 = HTTPTransport(
    "h3", tls=True, version="HTTP/3", internal_error=H3_INTERNAL_ERROR, reset_discards=True
)

HTTP_TRANSPORTS = [H1, H1_TLS, H2_TLS, H2C, H3]


# ----------------------------------------------------------------------------- WebSocket


class WSConn(abc.ABC):
    """One WebSocket (or a refused handshake); frames by wsproto on every transport."""

    #: The handshake's answer: 101 (HTTP/1.1) or 200 when accepted, else the refusal.
    status: int

    @abc.abstractmethod
    def _send(self, event: Event) -> None: ...

    @abc.abstractmethod
    def receive(self, timeout: float = TIMEOUT) -> Event | None:
        """The next frame event; None once the carrier ended with nothing more."""

    @abc.abstractmethod
    def wait_cut(self, timeout: float = TIMEOUT) -> str:
        """Read (and drop) until the carrier ends; how it ended."""

    @abc.abstractmethod
    def close_transport(self) -> None: ...

    def send_text(self, text: str) -> None:
        self._send(TextMessage(data=text))

    def send_bytes(self, data: bytes) -> None:
        self._send(BytesMessage(data=data))

    def close(self, code: int = 1000) -> None:
        self._send(CloseConnection(code=code))

    def receive_message(self, timeout: float = TIMEOUT) -> str | bytes:
        parts: list[Any] = []
        while True:
            event = self.receive(timeout)
            if isinstance(event, Ping):
                continue
            assert isinstance(event, Message), f"expected a message, got {event!r}"
            parts.append(event.data)
            if event.message_finished:
                return "".join(parts) if isinstance(event, TextMessage) else b"".join(parts)

    def receive_close(self, timeout: float = TIMEOUT) -> CloseConnection | None:
        """Skip messages up to the server's close frame; None if the carrier ended first.

        The close is answered, as a client does.
        """
        while True:
            event = self.receive(timeout)
            if event is None:
                return None
            if isinstance(event, CloseConnection):
                with contextlib.suppress(Exception):
                    self._send(event.response())
                with contextlib.suppress(Exception):
                    self._end()
                return event

    @abc.abstractmethod
    def _end(self) -> None:
        """After the closing handshake: end our side of the carrier, as a TCP client closes."""

    def __enter__(self) -> WSConn:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close_transport()


class WSH1Conn(WSConn):
    """RFC 6455 over a socket, handshake and frames by wsproto."""

    def __init__(self, port: int, path: str, tls: bool, rcvbuf: int | None) -> None:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        if rcvbuf is not None:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        sock.settimeout(TIMEOUT)
        sock.connect(("127.0.0.1", port))
        if tls:
            sock = client_tls(["http/1.1"]).wrap_socket(sock, server_hostname="localhost")
        self.sock = sock
        self.ws = WSConnection(ConnectionType.CLIENT)
        self.events: list[Event] = []
        self.eof = False
        self.status = 0
        self.sock.sendall(self.ws.send(Request(host="localhost", target=path)))
        while not self.status:
            event = self._next(TIMEOUT)
            if isinstance(event, AcceptConnection):
                self.status = 101
            elif isinstance(event, RejectConnection):
                self.status = event.status_code
            elif event is None:
                raise EOFError("connection closed during the WebSocket handshake")

    def _fill(self, timeout: float) -> bool:
        self.sock.settimeout(timeout)
        try:
            data = self.sock.recv(65536)
        except (ConnectionResetError, ConnectionAbortedError, ssl.SSLError):
            data = b""
        if not data:
            self.eof = True
            return False
        self.ws.receive_data(data)
        for event in self.ws.events():
            if isinstance(event, Ping):
                self._send(event.response())
            if not isinstance(event, RejectData):
                self.events.append(event)
        return True

    def _next(self, timeout: float) -> Event | None:
        deadline = time.monotonic() + timeout
        while not self.events:
            if self.eof:
                return None
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError("nothing from the WebSocket in time")
            self._fill(remaining)
        return self.events.pop(0)

    def _send(self, event: Event) -> None:
        self.sock.sendall(self.ws.send(event))

    def _end(self) -> None:
        """Nothing: over HTTP/1.1 the server closes TCP first (RFC 6455 7.1.1)."""

    def receive(self, timeout: float = TIMEOUT) -> Event | None:
        return self._next(timeout)

    def wait_cut(self, timeout: float = TIMEOUT) -> str:
        deadline = time.monotonic() + timeout
        while not self.eof:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return "open"
            self.events.clear()
            with contextlib.suppress(TimeoutError):
                self._fill(remaining)
        return "closed"

    def close_transport(self) -> None:
        self.sock.close()


class WSH2Conn(WSConn):
    """RFC 8441 with tests/support/ws_h2_client.py; ``reading=False`` never opens a window."""

    def __init__(self, port: int, path: str, tls: bool, reading: bool) -> None:
        self.conn = H2WSConnection(
            port, ssl_context=client_tls(["h2"]) if tls else None, auto_ack=reading
        )
        self.ws: H2WebSocket = self.conn.websocket(path)
        self.status = self.ws.wait_response()

    def _send(self, event: Event) -> None:
        self.ws.send(event)

    def _end(self) -> None:
        if not self.ws.finished:
            self.ws.end()

    def receive(self, timeout: float = TIMEOUT) -> Event | None:
        self.conn.timeout = timeout
        try:
            event = self.ws.receive()
        except EOFError:
            return None
        finally:
            self.conn.timeout = TIMEOUT
        if isinstance(event, Ping):
            return self.receive(timeout)
        return event

    def wait_cut(self, timeout: float = TIMEOUT) -> str:
        try:
            self.conn.until(lambda: self.ws.finished or self.conn.goaway is not None, timeout)
        except EOFError:
            return "closed"
        except TimeoutError:
            return "open"
        if self.ws.reset is not None:
            return f"reset {self.ws.reset:#x}"
        return "goaway" if self.conn.goaway is not None else "end"

    def close_transport(self) -> None:
        self.conn.close()


class WSH3Conn(WSConn):
    """RFC 9220 with tests/support/h3_client.py and test_h3's wsproto framing."""

    def __init__(self, port: int, path: str, max_stream_data: int | None) -> None:
        self.client = H3Client(port, max_stream_data=max_stream_data)
        self.client.connect()
        self.ws = H3WebSocket(self.client, path)
        self.status = self.client.wait_head(self.ws.stream_id).status

    def _send(self, event: Event) -> None:
        self.ws.send(event)

    def _end(self) -> None:
        self.client.send_data(self.ws.stream_id, b"", end=True)

    def receive(self, timeout: float = TIMEOUT) -> Event | None:
        self.client.timeout = timeout
        try:
            event: Event | None = self.ws.receive()
        except ConnectionError:
            return None
        finally:
            self.client.timeout = TIMEOUT
        if isinstance(event, Ping):
            self._send(event.response())
            return self.receive(timeout)
        return event

    def wait_cut(self, timeout: float = TIMEOUT) -> str:
        response = self.client.responses[self.ws.stream_id]
        try:
            self.client.run_until(
                lambda: response.ended or response.reset_code is not None, timeout
            )
        except ConnectionError:
            return "closed"
        except TimeoutError:
            return "open"
        return f"reset {response.reset_code:#x}" if response.reset_code is not None else "end"

    def close_transport(self) -> None:
        self.client.close()


@dataclass(frozen=True)
class WSTransport:
    """One way to carry a WebSocket; ``http`` is the HTTP transport it sits next to."""

    name: str
    tls: bool
    version: str
    http: HTTPTransport
    #: The status of an accepted handshake, and the method the access log names.
    accepted: int
    method: str

    def __str__(self) -> str:
        return self.name

    def connect(self, srv: ServerLike, path: str = "/ws", *, reading: bool = True) -> WSConn:
        """Open a WebSocket; ``reading=False`` makes a client whose buffers fill at once."""
        port = self.http.port(srv)
        small = None if reading else 16 * 1024
        if self.version == "HTTP/1.1":
            return WSH1Conn(port, path, self.tls, small)
        if self.version == "HTTP/2":
            return WSH2Conn(port, path, self.tls, reading)
        return WSH3Conn(port, path, small)


WS_H1 = WSTransport("ws-h1", False, "HTTP/1.1", H1, accepted=101, method="GET")
WS_H2 = WSTransport("ws-h2", True, "HTTP/2", H2_TLS, accepted=200, method="CONNECT")
WS_H3 = WSTransport("ws-h3", True, "HTTP/3", H3, accepted=200, method="CONNECT")

WS_TRANSPORTS = [WS_H1, WS_H2, WS_H3]
#: RFC 8441 over cleartext prior knowledge (next to h2c; used where h2c is).
WS_H2C = WSTransport("ws-h2c", False, "HTTP/2", H2C, accepted=200, method="CONNECT")

Transport = HTTPTransport | WSTransport
ALL_TRANSPORTS: list[Transport] = [*HTTP_TRANSPORTS, *WS_TRANSPORTS]
