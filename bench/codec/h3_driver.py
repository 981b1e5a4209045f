"""asgiri's HTTP/3 connection moving one body in process, against aioquic's client.

A response body down, or with ``--up`` a request body up.  The server side
is asgiri's own :class:`asgiri.protocol.h3.H3Connection` on a
:class:`~asgiri.protocol.aioquic_internals.ServerQuicConnection` (its pacer,
its stream walk, its body credit), configured as the server configures it;
the client is aioquic's ``QuicConnection`` and ``H3Connection``.  Datagrams
pass in memory every 0.2 simulated milliseconds, without loss, and the
server keeps at most 2 MiB queued as a server with a bounded send buffer
does (and the client, uploading, as much).  An upload's body is credited
back as it arrives, as an app reading it at once would.  No sockets, no
event loop, no app: what is measured is the QUIC and
HTTP/3 work per MiB, the server's share timed by ``time.process_time``
around its calls, or, under callgrind, instructions for the whole process
(run two sizes and subtract to drop start-up).  The client checks that the
whole body arrived (exit status 1 otherwise); uploading, the server does.

    .venv/bin/python -m bench.codec.h3_driver --mib 16
    valgrind --tool=callgrind --callgrind-out-file=/dev/null \\
        .venv/bin/python -m bench.codec.h3_driver --mib 2 --repeat 1      # then --mib 8
"""

from __future__ import annotations

import argparse
import ssl
import statistics
import time

from aioquic.h3.connection import H3_ALPN
from aioquic.h3.connection import H3Connection as ClientH3
from aioquic.h3.events import DataReceived
from aioquic.quic.configuration import QuicConfiguration
from aioquic.quic.connection import QuicConnection

from asgiri.config import Config
from asgiri.protocol.aioquic_internals import ServerQuicConnection
from asgiri.protocol.events import Body, EndBody
from asgiri.protocol.h3 import H3Connection
from asgiri.server.h3 import quic_configuration
from asgiri.ssl_utils import generate_self_signed_cert

MIB = 1 << 20
ADDR = ("127.0.0.1", 4433)
TICK = 0.0002
QUEUED = 2 * MIB
CHUNK = b"x" * 65536
START = 1.0  # the simulated clock's first reading


def _pair(
    server_configuration: QuicConfiguration, method: bytes
) -> tuple[QuicConnection, ClientH3, H3Connection, int]:
    """A client and a server, the client's request (GET: ended; POST: body to follow) sent."""
    client_quic = QuicConnection(
        configuration=QuicConfiguration(
            is_client=True, alpn_protocols=H3_ALPN, verify_mode=ssl.CERT_NONE
        )
    )
    client_quic.connect(ADDR, now=START)
    client = ClientH3(client_quic)
    server = H3Connection(
        ServerQuicConnection(
            configuration=server_configuration,
            max_streams=100,
            original_destination_connection_id=client_quic.original_destination_connection_id,
        )
    )
    stream_id = client_quic.get_next_available_stream_id()
    client.send_headers(
        stream_id,
        [(b":method", method), (b":scheme", b"https"), (b":authority", b"a"), (b":path", b"/")],
        end_stream=method == b"GET",
    )
    return client_quic, client, server, stream_id


def download(server_configuration: QuicConfiguration, nbytes: int) -> tuple[float, float, int, int]:
    """One GET answered with ``nbytes``: (server CPU, both ends' CPU, flushes, datagrams)."""
    client_quic, client, server, stream_id = _pair(server_configuration, b"GET")
    now = START
    clock = time.process_time
    start = clock()
    cpu = 0.0
    started = False
    written = received = flushes = datagrams = 0
    for _ in range(10_000_000):
        now += TICK
        begin = clock()
        for data, _ in client_quic.datagrams_to_send(now=now):
            server.receive_datagram(data, ADDR, now)
        if not started and server.handshake_complete:
            started = server.send_headers(stream_id, 200, [], False)
        while started and written < nbytes and server.buffered(stream_id) < QUEUED:
            size = min(len(CHUNK), nbytes - written)
            written += size
            server.send_data(stream_id, CHUNK[:size], written == nbytes)
        out = server.datagrams_to_send(now)
        cpu += clock() - begin
        if written and out:
            flushes += 1
            datagrams += len(out)
        for data, _ in out:
            client_quic.receive_datagram(data, ADDR, now=now)
        while (event := client_quic.next_event()) is not None:
            for h3_event in client.handle_event(event):
                if isinstance(h3_event, DataReceived):
                    received += len(h3_event.data)
        if received == nbytes:
            return cpu, clock() - start, flushes, datagrams
    raise SystemExit(f"the transfer stalled at {received} of {nbytes} bytes")


def upload(server_configuration: QuicConfiguration, nbytes: int) -> tuple[float, float, int, int]:
    """One POST of ``nbytes``: (server CPU, both ends' CPU, server flushes, datagrams received)."""
    client_quic, client, server, stream_id = _pair(server_configuration, b"POST")
    clock = time.process_time
    now, start, cpu, ended = START, clock(), 0.0, False
    written = received = flushes = datagrams = 0
    for _ in range(10_000_000):
        now += TICK
        stream = client_quic._streams[stream_id]
        while written < nbytes and written - stream.sender.highest_offset < QUEUED:
            size = min(len(CHUNK), nbytes - written)
            written += size
            client.send_data(stream_id, CHUNK[:size], written == nbytes)
        incoming = client_quic.datagrams_to_send(now=now)
        begin = clock()
        for data, _ in incoming:
            for event in server.receive_datagram(data, ADDR, now):
                if type(event) is Body:
                    received += len(event.data)
                    server.acknowledge(stream_id, len(event.data))
                elif type(event) is EndBody:
                    ended = True
        out = server.datagrams_to_send(now)
        cpu += clock() - begin
        datagrams += len(incoming)
        flushes += bool(out)
        for data, _ in out:
            client_quic.receive_datagram(data, ADDR, now=now)
        while client_quic.next_event() is not None:
            pass
        if ended:
            if received != nbytes:
                raise SystemExit(f"the body ended at {received} of {nbytes} bytes")
            return cpu, clock() - start, flushes, datagrams
    raise SystemExit(f"the transfer stalled at {received} of {nbytes} bytes")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mib", type=float, default=16, help="MiB per transfer")
    parser.add_argument("--repeat", type=int, default=3, help="transfers; the median counts")
    parser.add_argument("--up", action="store_true", help="a request body up, not a response down")
    a = parser.parse_args()
    cert, key = generate_self_signed_cert("localhost", key_type="ec")
    configuration = quic_configuration(
        Config.from_options("bench.app:app", cert_data=cert, key_data=key)
    )
    nbytes = int(a.mib * MIB)
    transfer = upload if a.up else download
    runs = [transfer(configuration, nbytes) for _ in range(a.repeat)]
    cpu = statistics.median(run[0] for run in runs)
    both = statistics.median(run[1] for run in runs)
    _, _, flushes, datagrams = runs[-1]
    each = datagrams / max(1, flushes)
    counts = (
        f"{datagrams} datagrams received, {flushes} server flushes ({each:.1f} per flush)"
        if a.up
        else f"{datagrams} datagrams in {flushes} flushes ({each:.1f} each)"
    )
    print(
        f"{a.mib:g} MiB {'up' if a.up else 'down'}: server {cpu * 1000 / a.mib:.2f} ms/MiB,"
        f" both ends {both * 1000 / a.mib:.2f} (medians of {a.repeat}); {counts}"
    )


if __name__ == "__main__":
    main()
