"""A small blocking HTTP/3 client for tests, on aioquic's sans-I/O QUIC and HTTP/3.

It owns a UDP socket and drives the QUIC connection in the calling thread:
every call runs the connection (send, receive, timers) until what it waits
for has happened or its timeout passes.  Being sans-I/O underneath, tests
can also do what a browser would not: reset streams, open many at once,
leave one unfinished, or hand-craft frames.
"""

from __future__ import annotations

import contextlib
import select
import socket
import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from aioquic.h3.connection import H3Connection
from aioquic.h3.events import DataReceived, H3Event, HeadersReceived
from aioquic.quic.configuration import QuicConfiguration
from aioquic.quic.connection import QuicConnection
from aioquic.quic.events import (
    ConnectionTerminated,
    HandshakeCompleted,
    QuicEvent,
    StreamDataReceived,
    StreamReset,
)
from cryptography.hazmat.primitives.serialization import Encoding

Headers = list[tuple[bytes, bytes]]


@dataclass
class Response:
    """What arrived on one request stream."""

    stream_id: int
    status: int = 0
    headers: Headers = field(default_factory=list)
    informational: list[Headers] = field(default_factory=list)
    body: bytearray = field(default_factory=bytearray)
    trailers: Headers | None = None
    ended: bool = False
    reset_code: int | None = None

    def header(self, name: bytes) -> bytes | None:
        for key, value in self.headers:
            if key == name:
                return value
        return None

    def header_values(self, name: bytes) -> list[bytes]:
        return [value for key, value in self.headers if key == name]


class H3Client:
    """One HTTP/3 connection to ``host:port``; use as a context manager."""

    def __init__(
        self,
        port: int,
        host: str = "127.0.0.1",
        *,
        server_name: str = "localhost",
        timeout: float = 10.0,
        max_stream_data: int | None = None,
        configure: Callable[[QuicConfiguration], None] | None = None,
        session_ticket_handler: Callable[[Any], None] | None = None,
        webtransport: bool = False,
    ) -> None:
        configuration = QuicConfiguration(
            is_client=True,
            alpn_protocols=["h3"],
            server_name=server_name,
            verify_mode=ssl.CERT_NONE,
        )
        if max_stream_data is not None:
            configuration.max_stream_data = max_stream_data
        if webtransport:
            # HTTP datagrams need the transport parameter (RFC 9297).
            configuration.max_datagram_frame_size = 65536
        if configure is not None:
            configure(configuration)
        self.address = (host, port)
        self.timeout = timeout
        self.quic = QuicConnection(
            configuration=configuration, session_ticket_handler=session_ticket_handler
        )
        self.h3 = H3Connection(self.quic, enable_webtransport=webtransport)
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.setblocking(False)
        self.responses: dict[int, Response] = {}
        #: UDP payload bytes received, and how many of them before the handshake completed.
        self.bytes_received = 0
        self.handshake_bytes = 0
        self.largest_datagram = 0
        self.connected = False
        self.terminated: ConnectionTerminated | None = None
        self.quic_events: list[QuicEvent] = []
        self.on_event: Callable[[H3Event], None] | None = None
        #: Streams whose bytes bypass the HTTP/3 layer (the WebTransport
        #: streams this client opened: aioquic frames only the other way).
        self.raw_streams: dict[int, Callable[[bytes, bool], None]] = {}

    # ------------------------------------------------------------ lifecycle

    def __enter__(self) -> H3Client:
        self.connect()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def connect(self) -> None:
        self.quic.connect(self.address, now=time.monotonic())
        self.run_until(lambda: self.connected, what="the QUIC handshake")

    def close(self, error_code: int = 0x100) -> None:
        if self.terminated is None:
            self.quic.close(error_code=error_code)
            self._transmit()
        self.sock.close()

    @property
    def peer_certificate(self) -> bytes | None:
        """The server's leaf certificate (DER) from the handshake, or None before it.

        aioquic keeps it on its TLS context without a public accessor; this is
        the one place the tests read that private attribute.
        """
        certificate = getattr(self.quic.tls, "_peer_certificate", None)
        if certificate is None:
            return None
        der: bytes = certificate.public_bytes(Encoding.DER)
        return der

    # ------------------------------------------------------------ requests

    def send_request(
        self,
        method: str,
        path: str,
        headers: Headers | None = None,
        body: bytes = b"",
        *,
        end: bool = True,
        authority: str = "localhost",
        protocol: str | None = None,
    ) -> int:
        stream_id = self.quic.get_next_available_stream_id()
        head: Headers = [(b":method", method.encode())]
        if protocol is not None:
            head.append((b":protocol", protocol.encode()))
        head += [
            (b":scheme", b"https"),
            (b":authority", authority.encode()),
            (b":path", path.encode()),
        ]
        head += headers or []
        self.responses[stream_id] = Response(stream_id)
        self.h3.send_headers(stream_id, head, end_stream=end and not body)
        if body:
            self.h3.send_data(stream_id, body, end_stream=end)
        self._transmit()
        return stream_id

    def send_data(self, stream_id: int, data: bytes, end: bool = False) -> None:
        self.h3.send_data(stream_id, data, end_stream=end)
        self._transmit()

    def send_trailers(self, stream_id: int, trailers: Headers) -> None:
        self.h3.send_headers(stream_id, trailers, end_stream=True)
        self._transmit()

    def reset(self, stream_id: int, code: int = 0x10C) -> None:
        """Cancel a request (H3_REQUEST_CANCELLED by default)."""
        self.quic.reset_stream(stream_id, code)
        self.quic.stop_stream(stream_id, code)
        self._transmit()

    def wait_response(self, stream_id: int, timeout: float | None = None) -> Response:
        response = self.responses[stream_id]
        self.run_until(
            lambda: response.ended or response.reset_code is not None,
            timeout,
            what=f"the end of stream {stream_id}",
        )
        return response

    def wait_head(self, stream_id: int, timeout: float | None = None) -> Response:
        response = self.responses[stream_id]
        self.run_until(
            lambda: response.status != 0 or response.reset_code is not None,
            timeout,
            what=f"the response head on stream {stream_id}",
        )
        return response

    def request(
        self,
        method: str,
        path: str,
        headers: Headers | None = None,
        body: bytes = b"",
        timeout: float | None = None,
        **kwargs: Any,
    ) -> Response:
        return self.wait_response(self.send_request(method, path, headers, body, **kwargs), timeout)

    def get(self, path: str, headers: Headers | None = None) -> Response:
        return self.request("GET", path, headers)

    # ------------------------------------------------------------ the loop

    def run_until(
        self, condition: Callable[[], bool], timeout: float | None = None, what: str = "it"
    ) -> None:
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        self._transmit()
        while not condition():
            if self.terminated is not None:
                raise ConnectionError(
                    f"connection terminated while waiting for {what}: {self.terminated}"
                )
            now = time.monotonic()
            if now >= deadline:
                raise TimeoutError(f"timed out waiting for {what}")
            wait = deadline - now
            timer = self.quic.get_timer()
            if timer is not None:
                wait = max(0.0, min(wait, timer - now))
            readable, _, _ = select.select([self.sock], [], [], wait)
            if readable:
                self._receive()
            else:
                timer = self.quic.get_timer()
                if timer is not None and time.monotonic() >= timer:
                    self.quic.handle_timer(now=time.monotonic())
                    self._process()
            self._transmit()

    def flush(self, stream_id: int | None = None) -> None:
        """Run until what was queued is on the wire: aioquic paces and may hold it back.

        ``stream_id`` names a stream whose bytes (and FIN) must all have left;
        datagrams queued with ``send_datagram`` always must.
        """
        quic: Any = self.quic  # aioquic exposes no public view of what is still queued

        def sent() -> bool:
            if quic._datagrams_pending:
                return False
            stream = quic._streams.get(stream_id) if stream_id is not None else None
            return stream is None or bool(stream.sender.buffer_is_empty)

        self.run_until(sent, what="queued data to leave")

    def run_for(self, seconds: float) -> None:
        """Keep the connection going for a while (to observe what the server sends)."""
        end = time.monotonic() + seconds
        with contextlib.suppress(ConnectionError):
            self.run_until(lambda: time.monotonic() >= end, seconds + 1)

    def _receive(self) -> None:
        while True:
            try:
                data, addr = self.sock.recvfrom(65536)
            except BlockingIOError:
                break
            self.bytes_received += len(data)
            self.largest_datagram = max(self.largest_datagram, len(data))
            self.quic.receive_datagram(data, addr, now=time.monotonic())
        self._process()

    def _process(self) -> None:
        while True:
            event = self.quic.next_event()
            if event is None:
                return
            self.quic_events.append(event)
            if isinstance(event, HandshakeCompleted):
                self.connected = True
                self.handshake_bytes = self.bytes_received
            elif isinstance(event, ConnectionTerminated):
                self.terminated = event
            elif isinstance(event, StreamReset):
                response = self.responses.get(event.stream_id)
                if response is not None:
                    response.reset_code = event.error_code
            elif isinstance(event, StreamDataReceived) and event.stream_id in self.raw_streams:
                self.raw_streams[event.stream_id](event.data, event.end_stream)
                continue
            for h3_event in self.h3.handle_event(event):
                self._on_h3(h3_event)

    def _on_h3(self, event: H3Event) -> None:
        if self.on_event is not None:
            self.on_event(event)
        if isinstance(event, HeadersReceived):
            response = self.responses.get(event.stream_id)
            if response is None:
                return
            status = dict(event.headers).get(b":status")
            if response.status == 0 and status is not None:
                code = int(status)
                fields = [(k, v) for k, v in event.headers if not k.startswith(b":")]
                if code < 200:
                    response.informational.append(fields)
                else:
                    response.status = code
                    response.headers = fields
            else:
                response.trailers = list(event.headers)
            if event.stream_ended:
                response.ended = True
        elif isinstance(event, DataReceived):
            response = self.responses.get(event.stream_id)
            if response is None:
                return
            response.body += event.data
            if event.stream_ended:
                response.ended = True

    def _transmit(self) -> None:
        for data, addr in self.quic.datagrams_to_send(now=time.monotonic()):
            with contextlib.suppress(OSError):
                self.sock.sendto(data, addr)


def h3_get(port: int, path: str = "/", **kwargs: Any) -> Response:
    """One GET on a fresh connection."""
    with H3Client(port, **kwargs) as client:
        return client.get(path)
