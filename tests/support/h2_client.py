"""A raw HTTP/2 client on the h2 library, for tests that need to see frames, resets and GOAWAYs
that httpx hides; plus raw socket exchanges that read to the end of the connection.
"""

from __future__ import annotations

import socket
import ssl
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import h2.config
import h2.connection
import h2.errors
import h2.events
import h2.settings

TIMEOUT = 10.0


class H2Client:
    """An HTTP/2 client over a raw socket, driven by the h2 library.

    Every event received is kept in ``events``; DATA is acknowledged (window
    updates sent) as it arrives unless ``pump(ack=False)`` says otherwise.
    """

    def __init__(
        self,
        port: int,
        *,
        ssl_context: ssl.SSLContext | None = None,
        settings: dict[int, int] | None = None,
        sock: socket.socket | None = None,
        initiate: bool = True,
    ) -> None:
        if sock is None:
            sock = socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.scheme = b"http"
        if ssl_context is not None:
            sock = ssl_context.wrap_socket(sock, server_hostname="localhost")
            assert sock.selected_alpn_protocol() == "h2"
            self.scheme = b"https"
        self.sock = sock
        self.authority = b"127.0.0.1:%d" % port
        config = h2.config.H2Configuration(client_side=True, header_encoding=None)
        self.conn = h2.connection.H2Connection(config=config)
        if settings:
            self.conn.local_settings = h2.settings.Settings(client=True, initial_values=settings)
            # h2 only raises its own limit once the server acknowledged it,
            # but the server may use it at once, in the same read as its ACK.
            self.conn.max_inbound_frame_size = self.conn.local_settings.max_frame_size
        self.events: list[Any] = []
        if initiate:
            self.conn.initiate_connection()
            self.flush()

    def close(self) -> None:
        self.sock.close()

    def __enter__(self) -> H2Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def flush(self) -> None:
        data = self.conn.data_to_send()
        if data:
            self.sock.sendall(data)

    def request_headers(self, path: str, method: str = "GET") -> Headers:
        return [
            (b":method", method.encode()),
            (b":scheme", self.scheme),
            (b":authority", self.authority),
            (b":path", path.encode()),
        ]

    def start(
        self,
        path: str,
        method: str = "GET",
        extra: Sequence[tuple[bytes, bytes]] = (),
        end: bool = True,
    ) -> int:
        """Send a request's HEADERS; returns the stream id."""
        stream_id: int = self.conn.get_next_available_stream_id()
        headers = self.request_headers(path, method) + list(extra)
        self.conn.send_headers(stream_id, headers, end_stream=end)
        self.flush()
        return stream_id

    def send_body(self, stream_id: int, data: bytes, end: bool = True) -> None:
        """Send ``data`` as DATA frames, waiting for window updates as needed."""
        view = memoryview(data)
        while view:
            window = min(
                self.conn.local_flow_control_window(stream_id), self.conn.max_outbound_frame_size
            )
            if window <= 0:
                self.flush()
                self.pump()
                continue
            piece, view = view[:window], view[window:]
            self.conn.send_data(stream_id, piece.tobytes())
        if end:
            self.conn.end_stream(stream_id)
        self.flush()

    def pump(self, ack: bool = True) -> list[Any]:
        """Read once from the socket; returns the events it completed."""
        data = self.sock.recv(1 << 20)
        if not data:
            raise EOFError("the server closed the connection")
        events = self.conn.receive_data(data)
        for event in events:
            if ack and isinstance(event, h2.events.DataReceived) and event.flow_controlled_length:
                self.conn.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
        self.events.extend(events)
        self.flush()
        return events

    def until(self, predicate: Callable[[Any], bool], ack: bool = True) -> Any:
        """Pump until an event matching ``predicate`` has been received; returns it."""
        while True:
            for event in self.events:
                if predicate(event):
                    return event
            self.pump(ack)

    def response(self, stream_id: int, ack: bool = True) -> Response:
        """Wait for the stream to end (or be reset) and collect what it received."""
        self.until(
            lambda e: (
                isinstance(e, h2.events.StreamEnded | h2.events.StreamReset)
                and e.stream_id == stream_id
            ),
            ack,
        )
        return collect(self.events, stream_id)

    def get(
        self, path: str, method: str = "GET", extra: Sequence[tuple[bytes, bytes]] = ()
    ) -> Response:
        return self.response(self.start(path, method, extra))


def read_to_eof(sock: socket.socket) -> bytes:
    data = b""
    while True:
        try:
            chunk = sock.recv(65536)
        except ConnectionResetError:
            return data
        if not chunk:
            return data
        data += chunk


def raw_exchange(port: int, data: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT) as sock:
        sock.sendall(data)
        return read_to_eof(sock)


Headers = list[tuple[bytes, bytes]]


@dataclass
class Response:
    """Everything one stream received, from the events an :class:`H2Client` saw."""

    status: int = 0
    headers: Headers = field(default_factory=list)
    body: bytes = b""
    trailers: Headers | None = None
    informational: list[Headers] = field(default_factory=list)
    reset: int | None = None
    ended_with_headers: bool = False
    data_frames: int = 0

    def header(self, name: bytes) -> bytes | None:
        return next((v for n, v in self.headers if n == name), None)


def collect(events: list[Any], stream_id: int) -> Response:
    response = Response()
    for event in events:
        if getattr(event, "stream_id", None) != stream_id:
            continue
        if isinstance(event, h2.events.InformationalResponseReceived):
            response.informational.append(list(event.headers))
        elif isinstance(event, h2.events.ResponseReceived):
            response.headers = [(n, v) for n, v in event.headers if not n.startswith(b":")]
            response.status = int(dict(event.headers)[b":status"])
            response.ended_with_headers = event.stream_ended is not None
        elif isinstance(event, h2.events.DataReceived):
            response.body += event.data
            response.data_frames += 1 if event.data else 0
        elif isinstance(event, h2.events.TrailersReceived):
            response.trailers = list(event.headers)
        elif isinstance(event, h2.events.StreamReset):
            response.reset = int(event.error_code)
    return response
