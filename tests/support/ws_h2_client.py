"""A WebSocket-over-HTTP/2 client for tests (RFC 8441), on a raw socket.

The h2 library drives the HTTP/2 connection; wsproto builds and parses the
WebSocket frames carried as DATA on an extended CONNECT stream.  Nothing is
hidden from a test: every h2 event is kept in ``events``, raw frame bytes can
be sent (:meth:`H2WebSocket.send_raw`), window updates can be held back
(``auto_ack``), and the stream can be ended or reset by hand.

::

    with H2WSConnection(port) as conn:
        ws = conn.websocket("/chat", subprotocols=["chat"])
        assert ws.wait_response() == 200
        ws.send_text("hi")
        assert ws.receive_message() == "hi"
        ws.close(1000)
        ...
"""

from __future__ import annotations

import socket
import ssl
import time
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import h2.config
import h2.connection
import h2.events
import h2.exceptions
import h2.settings
from wsproto.connection import Connection, ConnectionState, ConnectionType
from wsproto.events import (
    BytesMessage,
    CloseConnection,
    Event,
    Message,
    Ping,
    Pong,
    TextMessage,
)
from wsproto.extensions import Extension, PerMessageDeflate
from wsproto.utilities import split_comma_header

__all__ = ["H2WSConnection", "H2WebSocket", "Stalled", "TolerantH2Connection"]

TIMEOUT = 10.0
Headers = list[tuple[bytes, bytes]]


class Stalled(Exception):
    """The peer's flow-control window stayed shut.

    ``sent`` bytes went out; ``rest`` did not (send it later to keep the
    byte stream whole).
    """

    def __init__(self, sent: int, rest: bytes) -> None:
        super().__init__(f"window closed after {sent} bytes")
        self.sent = sent
        self.rest = rest


class TolerantH2Connection(h2.connection.H2Connection):
    """h2's connection, still able to finish open streams after a graceful GOAWAY.

    RFC 9113 6.8 lets streams up to the GOAWAY's last stream id complete,
    and a WebSocket must answer the server's close frame; h2 itself refuses
    to send anything at all once it received a GOAWAY.
    """

    def _receive_goaway_frame(self, frame: Any) -> Any:
        state = self.state_machine.state
        result = super()._receive_goaway_frame(frame)
        if not frame.error_code:
            self.state_machine.state = state
        return result


class _Late(Event):
    """Bytes the server sent after its close frame (a protocol violation)."""

    def __init__(self, data: bytes) -> None:
        self.data = data

    def __repr__(self) -> str:
        return f"_Late({self.data!r})"


class _Stream:
    """What one non-WebSocket request stream received."""

    def __init__(self) -> None:
        self.status = 0
        self.headers: Headers = []
        self.body = b""
        self.ended = False
        self.reset: int | None = None

    def header(self, name: bytes) -> bytes | None:
        return next((v for n, v in self.headers if n == name), None)


class H2WebSocket(_Stream):
    """One extended CONNECT stream and the WebSocket it carries."""

    def __init__(
        self,
        conn: H2WSConnection,
        stream_id: int,
        extensions: Sequence[Extension],
        auto_pong: bool,
    ) -> None:
        super().__init__()
        self.conn = conn
        self.stream_id = stream_id
        self._offered = list(extensions)
        self.auto_pong = auto_pong
        self.ws: Connection | None = None
        self._accepted: list[Extension] = []
        #: wsproto events not yet taken by :meth:`receive`.
        self.incoming: deque[Event] = deque()
        #: Raw DATA payloads in arrival order (WebSocket frame bytes).
        self.raw: list[bytes] = []
        #: Ordered log of what happened to the stream: "data", "end", "reset".
        self.log: list[str] = []

    # ------------------------------------------------------------ handshake

    def wait_response(self) -> int:
        """Wait for the response HEADERS (or a reset); returns the status (0 if reset)."""
        self.conn.until(lambda: self.status != 0 or self.reset is not None or self.ended)
        return self.status

    @property
    def subprotocol(self) -> str | None:
        value = self.header(b"sec-websocket-protocol")
        return value.decode() if value is not None else None

    @property
    def extensions(self) -> list[Extension]:
        return list(self._accepted)

    def _on_response(self, status: int, headers: Headers) -> None:
        self.status = status
        self.headers = headers
        if status != 200:
            return
        accepted: list[Extension] = []
        for value in (v for n, v in headers if n == b"sec-websocket-extensions"):
            for agreed in split_comma_header(value):
                name = agreed.split(";", 1)[0].strip()
                for extension in self._offered:
                    if extension.name == name:
                        extension.finalize(agreed)
                        accepted.append(extension)
        self._accepted = accepted
        self.ws = Connection(ConnectionType.CLIENT, accepted)

    def _on_data(self, data: bytes) -> None:
        if not data:
            return  # an empty DATA frame carrying END_STREAM
        self.raw.append(data)
        self.log.append("data")
        if self.ws is None:
            self.body += data
            return
        if self.ws.state is ConnectionState.CLOSED:
            self.incoming.append(_Late(data))
            return
        self.ws.receive_data(data)
        for event in self.ws.events():
            if isinstance(event, Ping) and self.auto_pong:
                self.send(event.response())
            self.incoming.append(event)

    # ------------------------------------------------------------ sending

    def send(self, event: Event) -> None:
        assert self.ws is not None, "the WebSocket was not accepted"
        self.send_raw(self.ws.send(event))

    def send_text(self, text: str, final: bool = True) -> None:
        self.send(TextMessage(data=text, message_finished=final))

    def send_bytes(self, data: bytes, final: bool = True) -> None:
        self.send(BytesMessage(data=data, message_finished=final))

    def send_raw(self, data: bytes, end: bool = False) -> None:
        """Send bytes as they are (WebSocket frames built by the test)."""
        self.conn.send_data(self.stream_id, data, end)

    def close(self, code: int = 1000, reason: str = "") -> None:
        self.send(CloseConnection(code=code, reason=reason))

    def end(self) -> None:
        """END_STREAM: the WebSocket's TCP FIN (RFC 8441 section 5)."""
        self.conn.end_stream(self.stream_id)

    def reset_stream(self, code: int = 0x8) -> None:
        self.conn.conn.reset_stream(self.stream_id, error_code=code)
        self.conn.flush()

    # ------------------------------------------------------------ receiving

    def receive(self) -> Event:
        """The next WebSocket event (a frame of a message, a close, a ping...)."""
        self.conn.until(lambda: bool(self.incoming) or self.finished)
        if not self.incoming:
            raise EOFError(f"stream {self.stream_id} is over: {self.log[-1:]}")
        return self.incoming.popleft()

    def receive_message(self) -> str | bytes:
        """The next whole message; raises AssertionError on anything else."""
        parts: list[Any] = []
        while True:
            event = self.receive()
            if isinstance(event, Ping | Pong):
                continue
            assert isinstance(event, Message), f"expected a message, got {event!r}"
            parts.append(event.data)
            if event.message_finished:
                if isinstance(event, TextMessage):
                    return "".join(parts)
                return b"".join(parts)

    def receive_close(self) -> CloseConnection:
        """Skip messages and pings up to the peer's close frame."""
        while True:
            event = self.receive()
            if isinstance(event, CloseConnection):
                return event

    @property
    def finished(self) -> bool:
        """The server ended its side (END_STREAM) or reset the stream."""
        return self.ended or self.reset is not None

    def wait_finished(self) -> str:
        """Wait for END_STREAM or RST_STREAM from the server; returns "end" or "reset"."""
        self.conn.until(lambda: self.finished)
        return "reset" if self.reset is not None else "end"


class H2WSConnection:
    """An HTTP/2 client connection able to open WebSockets (RFC 8441)."""

    def __init__(
        self,
        port: int,
        *,
        ssl_context: ssl.SSLContext | None = None,
        host: str = "127.0.0.1",
        timeout: float = TIMEOUT,
        settings: dict[int, int] | None = None,
        auto_ack: bool = True,
    ) -> None:
        sock = socket.create_connection((host, port), timeout=timeout)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.scheme = b"http"
        if ssl_context is not None:
            sock = ssl_context.wrap_socket(sock, server_hostname="localhost")
            assert sock.selected_alpn_protocol() == "h2", sock.selected_alpn_protocol()
            self.scheme = b"https"
        self.sock = sock
        self.timeout = timeout
        self.authority = f"{host}:{port}".encode()
        self.auto_ack = auto_ack
        config = h2.config.H2Configuration(
            client_side=True, header_encoding=None, validate_outbound_headers=False
        )
        self.conn = TolerantH2Connection(config=config)
        if settings:
            self.conn.local_settings = h2.settings.Settings(client=True, initial_values=settings)
        self.events: list[Any] = []
        self.streams: dict[int, _Stream] = {}
        self.goaway: h2.events.ConnectionTerminated | None = None
        self.eof = False
        self._settings_seen = False
        self.conn.initiate_connection()
        self.flush()
        self.until(lambda: self._settings_seen)

    # ------------------------------------------------------------ plumbing

    def close(self) -> None:
        self.sock.close()

    def __enter__(self) -> H2WSConnection:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def flush(self) -> None:
        data = self.conn.data_to_send()
        if data:
            self.sock.sendall(data)

    @property
    def connect_protocol(self) -> int | None:
        """The server's SETTINGS_ENABLE_CONNECT_PROTOCOL (None if not sent)."""
        code = h2.settings.SettingCodes.ENABLE_CONNECT_PROTOCOL
        return self.conn.remote_settings.get(code)

    def pump(self, timeout: float | None = None) -> list[Any]:
        """Read once (waiting at most ``timeout``); returns the h2 events it completed."""
        if self.eof:
            raise EOFError("the server closed the connection")
        self.sock.settimeout(self.timeout if timeout is None else timeout)
        try:
            data = self.sock.recv(1 << 20)
        except TimeoutError:
            if timeout is None:
                raise
            return []
        except ConnectionResetError:
            data = b""
        finally:
            self.sock.settimeout(self.timeout)
        if not data:
            self.eof = True
            raise EOFError("the server closed the connection")
        events = self.conn.receive_data(data)
        for event in events:
            self._dispatch(event)
        self.events.extend(events)
        self.flush()
        return events

    def _dispatch(self, event: Any) -> None:
        if isinstance(event, h2.events.RemoteSettingsChanged):
            self._settings_seen = True
        elif isinstance(event, h2.events.ConnectionTerminated):
            self.goaway = event
        stream = self.streams.get(getattr(event, "stream_id", None) or 0)
        if stream is None:
            return
        if isinstance(event, h2.events.ResponseReceived):
            headers = [(n, v) for n, v in event.headers if not n.startswith(b":")]
            status = int(dict(event.headers)[b":status"])
            if isinstance(stream, H2WebSocket):
                stream._on_response(status, headers)
            else:
                stream.status, stream.headers = status, headers
        elif isinstance(event, h2.events.DataReceived):
            if self.auto_ack and event.flow_controlled_length:
                self.conn.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
            if isinstance(stream, H2WebSocket):
                stream._on_data(event.data)
            else:
                stream.body += event.data
        elif isinstance(event, h2.events.StreamEnded):
            stream.ended = True
            if isinstance(stream, H2WebSocket):
                stream.log.append("end")
        elif isinstance(event, h2.events.StreamReset):
            stream.reset = int(event.error_code)
            if isinstance(stream, H2WebSocket):
                stream.log.append("reset")

    def until(self, predicate: Callable[[], bool], timeout: float | None = None) -> None:
        """Pump until ``predicate()`` holds (TimeoutError after ``timeout``)."""
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        while not predicate():
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError("condition not reached")
            self.pump(remaining)

    def quiet_for(self, seconds: float) -> list[Any]:
        """Pump for ``seconds``; returns the events seen meanwhile."""
        seen: list[Any] = []
        deadline = time.monotonic() + seconds
        while (remaining := deadline - time.monotonic()) > 0:
            try:
                seen.extend(self.pump(remaining))
            except EOFError:
                break
        return seen

    # ------------------------------------------------------------ streams

    def connect_headers(
        self,
        path: str,
        protocol: bytes = b"websocket",
        extra: Iterable[tuple[bytes, bytes]] = (),
        version: bytes = b"13",
    ) -> Headers:
        return [
            (b":method", b"CONNECT"),
            (b":protocol", protocol),
            (b":scheme", self.scheme),
            (b":path", path.encode()),
            (b":authority", self.authority),
            (b"sec-websocket-version", version),
            *extra,
        ]

    def websocket(
        self,
        path: str = "/",
        *,
        subprotocols: Sequence[str] = (),
        deflate: bool = False,
        extensions: Sequence[Extension] = (),
        headers: Iterable[tuple[bytes, bytes]] = (),
        protocol: bytes = b"websocket",
        auto_pong: bool = True,
        version: bytes = b"13",
        end_stream: bool = False,
    ) -> H2WebSocket:
        """Send an extended CONNECT; the answer comes with :meth:`H2WebSocket.wait_response`."""
        offered = list(extensions)
        if deflate:
            offered.append(PerMessageDeflate())
        extra = list(headers)
        if subprotocols:
            extra.append((b"sec-websocket-protocol", ", ".join(subprotocols).encode()))
        if offered:
            offer = ", ".join(
                ext.name if (o := ext.offer()) is True else f"{ext.name}; {o}"
                for ext in offered
                if ext.offer()
            )
            extra.append((b"sec-websocket-extensions", offer.encode()))
        stream_id: int = self.conn.get_next_available_stream_id()
        ws = H2WebSocket(self, stream_id, offered, auto_pong)
        self.streams[stream_id] = ws
        request = self.connect_headers(path, protocol, extra, version)
        self.conn.send_headers(stream_id, request, end_stream=end_stream)
        self.flush()
        return ws

    def request(self, path: str, method: str = "GET") -> int:
        stream_id: int = self.conn.get_next_available_stream_id()
        self.streams[stream_id] = _Stream()
        headers = [
            (b":method", method.encode()),
            (b":scheme", self.scheme),
            (b":authority", self.authority),
            (b":path", path.encode()),
        ]
        self.conn.send_headers(stream_id, headers, end_stream=True)
        self.flush()
        return stream_id

    def response(self, stream_id: int) -> _Stream:
        stream = self.streams[stream_id]
        self.until(lambda: stream.ended or stream.reset is not None)
        return stream

    def get(self, path: str) -> _Stream:
        return self.response(self.request(path))

    def send_data(
        self, stream_id: int, data: bytes, end: bool = False, stall: float | None = None
    ) -> int:
        """Send ``data`` within the windows, reading (and waiting) for credit.

        With ``stall``, raise :class:`Stalled` once no credit came for that
        many seconds; returns the bytes sent.
        """
        view = memoryview(data)
        sent = 0
        while view:
            window = min(
                self.conn.local_flow_control_window(stream_id), self.conn.max_outbound_frame_size
            )
            if window <= 0:
                self.flush()
                if stall is None:
                    self.pump()
                elif not self.pump(stall) and self.conn.local_flow_control_window(stream_id) <= 0:
                    raise Stalled(sent, view.tobytes())
                continue
            piece, view = view[:window], view[window:]
            self.conn.send_data(stream_id, piece.tobytes())
            sent += len(piece)
        if end:
            self.conn.end_stream(stream_id)
        self.flush()
        return sent

    def end_stream(self, stream_id: int) -> None:
        self.conn.end_stream(stream_id)
        self.flush()
