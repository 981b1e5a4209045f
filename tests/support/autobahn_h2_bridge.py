"""Autobahn over HTTP/2: RFC 6455 connections in, RFC 8441 streams out.

The Autobahn fuzzing client (kosoku) speaks WebSocket over HTTP/1.1 only.
This bridge accepts its connections, does the HTTP/1.1 opening handshake
itself, and for each opens an HTTP/2 connection to the server under test
with an extended CONNECT stream (``:protocol websocket``).  The handshake
headers that matter (subprotocols, extensions) are forwarded both ways, so
permessage-deflate is negotiated between Autobahn and the server.

After the handshake the bridge never re-frames: the bytes of the WebSocket
frames go through unchanged as DATA, both ways, so Autobahn tests the
server's framing over HTTP/2.  (Frames from the client stay masked: RFC
8441 keeps RFC 6455's masking.)  Ends map as in RFC 8441 section 5:

* the server's END_STREAM or RST_STREAM closes the TCP connection (after
  the bytes before it are written);
* Autobahn closing TCP ends the stream (END_STREAM); a TCP reset resets it.

Usage (prints ``bridge listening on HOST:PORT`` once ready)::

    python tests/support/autobahn_h2_bridge.py UPSTREAM_HOST:PORT [--listen HOST:PORT]
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import hashlib
import sys
from typing import Any

import h2.config
import h2.connection
import h2.errors
import h2.events
import h2.exceptions
import h2.settings

GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
#: Our receive windows: large, so the server is not held up by round trips.
WINDOW = 4 * 1024 * 1024
READ_SIZE = 256 * 1024
HANDSHAKE_TIMEOUT = 10.0
#: How long to wait for the server's end once Autobahn is gone.
LINGER = 5.0
#: Request headers that belong to the HTTP/1.1 handshake, not the stream.
_HOP_BY_HOP = frozenset(
    {
        b"host",
        b"connection",
        b"upgrade",
        b"sec-websocket-key",
        b"sec-websocket-version",
        b"keep-alive",
        b"transfer-encoding",
        b"te",
        b"proxy-connection",
    }
)


def accept_token(key: bytes) -> bytes:
    return base64.b64encode(hashlib.sha1(key.strip() + GUID).digest())


def parse_head(head: bytes) -> tuple[bytes, bytes, list[tuple[bytes, bytes]]]:
    """Method, target and headers (lower-cased names) of an HTTP/1.1 request head."""
    lines = head.split(b"\r\n")
    method, target, _version = lines[0].split(b" ", 2)
    headers = []
    for line in lines[1:]:
        if not line:
            continue
        name, _, value = line.partition(b":")
        headers.append((name.strip().lower(), value.strip()))
    return method, target, headers


class Bridge:
    """One Autobahn connection and its HTTP/2 stream."""

    def __init__(
        self,
        upstream: tuple[str, int],
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
    ) -> None:
        self.upstream = upstream
        self.reader = reader
        self.writer = writer
        config = h2.config.H2Configuration(
            client_side=True, header_encoding=None, validate_outbound_headers=False
        )
        self.conn = h2.connection.H2Connection(config=config)
        self.conn.local_settings = h2.settings.Settings(
            client=True,
            initial_values={
                h2.settings.SettingCodes.ENABLE_PUSH: 0,
                h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: WINDOW,
            },
        )
        self.up_reader: asyncio.StreamReader | None = None
        self.up_writer: asyncio.StreamWriter | None = None
        self.stream_id = 1
        self.settings = asyncio.Event()
        self.window = asyncio.Event()
        self.response: asyncio.Future[tuple[int, list[tuple[bytes, bytes]]]] = (
            asyncio.get_running_loop().create_future()
        )
        self.body = b""
        #: The server ended (or reset) the stream: nothing more comes from it.
        self.server_done = asyncio.Event()
        self.local_ended = False

    # ------------------------------------------------------------ upstream

    def flush(self) -> None:
        data = self.conn.data_to_send()
        if data and self.up_writer is not None and not self.up_writer.is_closing():
            self.up_writer.write(data)

    async def pump_upstream(self) -> None:
        """Read the server's frames; DATA goes to Autobahn as it is."""
        assert self.up_reader is not None
        try:
            while True:
                data = await self.up_reader.read(READ_SIZE)
                if not data:
                    break
                try:
                    events = self.conn.receive_data(data)
                except h2.exceptions.ProtocolError:
                    break
                for event in events:
                    await self.on_event(event)
                self.flush()
                if self.server_done.is_set():
                    break
        except (ConnectionError, OSError):
            pass
        finally:
            self.server_done.set()
            self.window.set()
            if not self.response.done():
                self.response.set_result((502, []))

    async def on_event(self, event: Any) -> None:
        if isinstance(event, h2.events.RemoteSettingsChanged):
            self.settings.set()
            self.window.set()
        elif isinstance(event, h2.events.WindowUpdated):
            self.window.set()
        elif isinstance(event, h2.events.ResponseReceived):
            headers = list(event.headers)
            status = int(dict(headers)[b":status"])
            if not self.response.done():
                self.response.set_result((status, headers))
        elif isinstance(event, h2.events.DataReceived):
            if event.stream_id != self.stream_id:
                return
            if not self.response.done() or self.response.result()[0] != 200:
                self.body += event.data
            elif not self.writer.is_closing():
                self.writer.write(event.data)
                with contextlib.suppress(ConnectionError):
                    await self.writer.drain()
            # Credit only what Autobahn's socket took: backpressure end to end.
            if event.flow_controlled_length:
                with contextlib.suppress(h2.exceptions.ProtocolError):
                    self.conn.acknowledge_received_data(
                        event.flow_controlled_length, event.stream_id
                    )
        elif isinstance(event, h2.events.StreamEnded | h2.events.StreamReset):
            if event.stream_id == self.stream_id:
                self.server_done.set()
        elif isinstance(event, h2.events.ConnectionTerminated):
            self.server_done.set()

    # ------------------------------------------------------------ downstream

    async def pump_downstream(self) -> None:
        """Autobahn's frame bytes to the stream, within the flow-control windows."""
        try:
            while not self.server_done.is_set():
                data = await self.reader.read(READ_SIZE)
                if not data:
                    self.end_stream()
                    return
                view = memoryview(data)
                while view and not self.server_done.is_set():
                    try:
                        window = min(
                            self.conn.local_flow_control_window(self.stream_id),
                            self.conn.max_outbound_frame_size,
                        )
                    except h2.exceptions.StreamClosedError:
                        return
                    if window <= 0:
                        self.window.clear()
                        await self.window.wait()
                        continue
                    piece, view = view[:window], view[window:]
                    self.conn.send_data(self.stream_id, piece.tobytes())
                    self.flush()
                if self.up_writer is not None:
                    await self.up_writer.drain()
        except (ConnectionError, OSError):
            # Autobahn dropped the connection abortively: reset the stream.
            with contextlib.suppress(h2.exceptions.ProtocolError):
                self.conn.reset_stream(self.stream_id, h2.errors.ErrorCodes.CANCEL)
                self.local_ended = True
            self.flush()

    def end_stream(self) -> None:
        if self.local_ended:
            return
        self.local_ended = True
        with contextlib.suppress(h2.exceptions.ProtocolError):
            self.conn.end_stream(self.stream_id)
        self.flush()

    # ------------------------------------------------------------ the whole run

    def reply(self, status: int, reason: bytes, headers: list[tuple[bytes, bytes]]) -> None:
        lines = [b"HTTP/1.1 %d %s\r\n" % (status, reason)]
        lines.extend(b"%s: %s\r\n" % (name, value) for name, value in headers)
        lines.append(b"\r\n")
        self.writer.write(b"".join(lines))

    async def run(self) -> None:
        try:
            head = await asyncio.wait_for(self.reader.readuntil(b"\r\n\r\n"), HANDSHAKE_TIMEOUT)
            method, target, headers = parse_head(head[:-4])
            values = dict(headers)
            key = values.get(b"sec-websocket-key")
            if method != b"GET" or key is None:
                self.reply(400, b"Bad Request", [(b"content-length", b"0")])
                return
            self.up_reader, self.up_writer = await asyncio.open_connection(*self.upstream)
            self.conn.initiate_connection()
            self.conn.increment_flow_control_window(WINDOW - 65535)
            self.flush()
            upstream = asyncio.create_task(self.pump_upstream())
            try:
                if await self.handshake(target, headers, key, values):
                    await self.relay()
            finally:
                upstream.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await upstream
        except (asyncio.IncompleteReadError, asyncio.TimeoutError, ConnectionError, OSError):
            pass
        finally:
            await self.close()

    async def handshake(
        self,
        target: bytes,
        headers: list[tuple[bytes, bytes]],
        key: bytes,
        values: dict[bytes, bytes],
    ) -> bool:
        """Open the stream and answer Autobahn's handshake; True once accepted."""
        await asyncio.wait_for(self.settings.wait(), HANDSHAKE_TIMEOUT)
        code = h2.settings.SettingCodes.ENABLE_CONNECT_PROTOCOL
        if self.conn.remote_settings.get(code) != 1:
            self.reply(502, b"Bad Gateway", [(b"content-length", b"0")])
            return False
        request = [
            (b":method", b"CONNECT"),
            (b":protocol", b"websocket"),
            (b":scheme", b"http"),
            (b":path", target),
            (b":authority", values.get(b"host", b"localhost")),
            (b"sec-websocket-version", b"13"),
        ]
        request.extend((n, v) for n, v in headers if n not in _HOP_BY_HOP)
        self.conn.send_headers(self.stream_id, request)
        self.flush()
        status, response = await asyncio.wait_for(self.response, HANDSHAKE_TIMEOUT)
        extra = [(n, v) for n, v in response if not n.startswith(b":")]
        if status == 200:
            self.reply(
                101,
                b"Switching Protocols",
                [
                    (b"Upgrade", b"websocket"),
                    (b"Connection", b"Upgrade"),
                    (b"Sec-WebSocket-Accept", accept_token(key)),
                    *extra,
                ],
            )
            return True
        # A refusal: pass the server's answer on, body included.
        await asyncio.wait_for(self.server_done.wait(), HANDSHAKE_TIMEOUT)
        extra = [(n, v) for n, v in extra if n != b"content-length"]
        extra += [(b"content-length", b"%d" % len(self.body)), (b"connection", b"close")]
        self.reply(status, b"Refused", extra)
        self.writer.write(self.body)
        return False

    async def relay(self) -> None:
        downstream = asyncio.create_task(self.pump_downstream())
        done = asyncio.create_task(self.server_done.wait())
        try:
            await asyncio.wait({downstream, done}, return_when=asyncio.FIRST_COMPLETED)
            if not done.done():
                # Autobahn closed first; the stream is ended: let the server finish.
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(asyncio.shield(done), LINGER)
        finally:
            done.cancel()
            # The server's side is over: what it sent is written; now close
            # TCP as the server would (after the closing handshake).
            downstream.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await downstream

    async def close(self) -> None:
        with contextlib.suppress(ConnectionError, OSError):
            if not self.writer.is_closing():
                await self.writer.drain()
        self.writer.close()
        with contextlib.suppress(ConnectionError, OSError):
            await self.writer.wait_closed()
        if self.up_writer is not None:
            self.end_stream()
            with contextlib.suppress(ConnectionError, OSError):
                await self.up_writer.drain()
            self.up_writer.close()
            with contextlib.suppress(ConnectionError, OSError):
                await self.up_writer.wait_closed()


def address(text: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    return host or "127.0.0.1", int(port)


async def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("upstream", type=address, help="HOST:PORT of the HTTP/2 server")
    parser.add_argument("--listen", type=address, default=("127.0.0.1", 0))
    args = parser.parse_args(argv)

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await Bridge(args.upstream, reader, writer).run()

    server = await asyncio.start_server(handle, *args.listen, limit=1 << 16)
    host, port = server.sockets[0].getsockname()[:2]
    print(f"bridge listening on {host}:{port}", flush=True)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(main(sys.argv[1:]))
