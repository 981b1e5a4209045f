"""A WebTransport client session for tests, on :class:`~tests.h3_client.H3Client` (aioquic).

It opens a session with an extended CONNECT (``:protocol webtransport``),
then records what the server sends: data per stream (with the FIN and any
reset), datagrams, and the session's capsules (CLOSE_WEBTRANSPORT_SESSION),
the way a browser's WebTransport object would see them.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from aioquic.h3.events import (
    DatagramReceived,
    DataReceived,
    H3Event,
    WebTransportStreamDataReceived,
)
from aioquic.quic.events import StreamReset

from asgiri.protocol.webtransport import CapsuleParser, SessionClosed, close_capsule

from .h3_client import H3Client, Headers, Response


@dataclass
class WTStreamState:
    data: bytearray = field(default_factory=bytearray)
    ended: bool = False
    reset_code: int | None = None


class WTClient:
    """One WebTransport session from the client's side."""

    def __init__(self, client: H3Client, path: str = "/wt", headers: Headers | None = None) -> None:
        self.client = client
        self.streams: dict[int, WTStreamState] = {}
        self.datagrams: list[bytes] = []
        self.closed: SessionClosed | None = None
        self._capsules = CapsuleParser()
        client.on_event = self._on_event
        self.session_id = client.send_request(
            "CONNECT",
            path,
            [(b"origin", b"https://localhost"), *(headers or [])],
            end=False,
            protocol="webtransport",
        )

    @property
    def response(self) -> Response:
        return self.client.responses[self.session_id]

    def wait_head(self) -> Response:
        return self.client.wait_head(self.session_id)

    # ------------------------------------------------------------ sending

    def open_stream(self, unidirectional: bool = False) -> int:
        stream_id: int = self.client.h3.create_webtransport_stream(
            self.session_id, is_unidirectional=unidirectional
        )
        state = self.streams.setdefault(stream_id, WTStreamState())
        if not unidirectional:

            def receive(data: bytes, ended: bool) -> None:
                state.data += data
                state.ended = state.ended or ended

            self.client.raw_streams[stream_id] = receive
        return stream_id

    def send(self, stream_id: int, data: bytes, end: bool = False) -> None:
        self.client.quic.send_stream_data(stream_id, data, end_stream=end)
        self.client.run_for(0)  # not flush(): flow control may hold these bytes on purpose

    def send_datagram(self, data: bytes) -> None:
        self.client.h3.send_datagram(self.session_id, data)
        self.client.flush()

    def close(self, code: int = 0, reason: str = "") -> None:
        self.client.h3.send_data(self.session_id, close_capsule(code, reason), end_stream=True)
        self.client.flush(self.session_id)

    # ------------------------------------------------------------ receiving

    def stream(self, stream_id: int) -> WTStreamState:
        return self.streams.setdefault(stream_id, WTStreamState())

    def wait_stream(self, stream_id: int, size: int | None = None, ended: bool = True) -> bytes:
        state = self.stream(stream_id)

        def done() -> bool:
            if state.reset_code is not None:
                return True
            if size is not None and len(state.data) < size:
                return False
            return state.ended or not ended

        self.client.run_until(done, what=f"WebTransport stream {stream_id}")
        return bytes(state.data)

    def wait_datagrams(self, count: int) -> list[bytes]:
        self.client.run_until(lambda: len(self.datagrams) >= count, what=f"{count} datagram(s)")
        return self.datagrams

    def wait_closed(self) -> SessionClosed | None:
        """Until the server ends the session (capsule and FIN, or a reset)."""
        response = self.response
        self.client.run_until(
            lambda: response.ended or response.reset_code is not None, what="the session's end"
        )
        return self.closed

    def new_streams(self) -> list[int]:
        """Streams the server opened (ids with the server-initiated bit)."""
        return [stream_id for stream_id in self.streams if stream_id & 1]

    def _on_event(self, event: H3Event) -> None:
        if isinstance(event, WebTransportStreamDataReceived):
            state = self.stream(event.stream_id)
            state.data += event.data
            state.ended = state.ended or event.stream_ended
        elif isinstance(event, DatagramReceived):
            self.datagrams.append(event.data)
        elif isinstance(event, DataReceived) and event.stream_id == self.session_id:
            for capsule in self._capsules.feed(event.data):
                if isinstance(capsule, SessionClosed):
                    self.closed = capsule
            if event.stream_ended:
                self.response.ended = True

    def reset_codes(self) -> dict[int, int]:
        """Streams the server reset, with the code."""
        codes = {}
        for event in self.client.quic_events:
            if isinstance(event, StreamReset) and event.stream_id != self.session_id:
                codes[event.stream_id] = event.error_code
                self.stream(event.stream_id).reset_code = event.error_code
        return codes
