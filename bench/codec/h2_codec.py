"""HTTP/2 codecs in isolation: server-side request/response cycles per second.

No sockets and no event loop: one connection is fed pre-generated client bytes,
16 requests per read (a GET with h2load's header set, HPACK-indexed as h2load's
encoder would after the first request), and answers each with HEADERS and a
13-byte DATA frame carrying END_STREAM, then takes ``data_to_send()`` once per
read.  Every codec gets the identical input bytes, and every codec's output is
fed to an h2 client once before timing to check that all 16 responses of each
read arrive complete.

    .venv/bin/python -m bench.codec.h2_codec               # all codecs found
    .venv/bin/python -m bench.codec.h2_codec --codecs h2-asgiri,zttp --connections 20

Codecs:

* ``h2-default``: the h2 library with its own inbound/outbound validation and
  normalisation on (its defaults);
* ``h2-novalidate``: h2 with all of that off and nothing in its place (a
  ceiling, not something a server may ship: inbound checks are required);
* ``h2-asgiri``: h2 configured as ``asgiri.protocol.h2`` configures it (h2's
  validation off, ``check_header_block`` in its place), called directly;
* ``asgiri``: ``asgiri.protocol.h2.H2Connection`` itself, the interface the
  server layer uses (frame screen, flood counters, version-neutral events,
  response checks);
* ``asgiri-nghttp2``: ``asgiri.protocol.h2_nghttp2.H2Connection``, the same
  interface on libnghttp2 (``--h2-codec nghttp2``);
* ``ngh2``: ``ngh2.Connection`` (libnghttp2) alone, configured as asgiri
  configures it (credit returned by the caller);
* ``jh2``: the jh2 fork of h2 (h2's API, HPACK in Rust), validation off as
  ``h2-novalidate``, if installed;
* ``zttp``: ``zttp.Connection(SERVER, protocol=HTTP2)`` (Zig core), if installed;
* ``rh2``: ``rh2.H2Connection`` (Rust h2 crate), if installed.

Under callgrind, ``--count`` runs one codec for a given number of reads once,
without the check, so that two run lengths can be subtracted (see
docs/performance.md):

    valgrind --tool=callgrind --callgrind-out-file=/dev/null \\
        .venv/bin/python -m bench.codec.h2_codec --count asgiri-nghttp2 --reads 50
"""

from __future__ import annotations

import argparse
import gc
import platform
import statistics
import time
from collections.abc import Callable
from importlib import metadata
from typing import Any

import h2.config
import h2.connection
import h2.events
import h2.settings

STREAMS = 16
BODY = b"Hello, World!"
#: What h2load sends (nghttp2's h2load, `h2load http://127.0.0.1:8000/`).
REQUEST = [
    (b":method", b"GET"),
    (b":path", b"/"),
    (b":scheme", b"http"),
    (b":authority", b"127.0.0.1:8000"),
    (b"accept-encoding", b"gzip, deflate"),
    (b"user-agent", b"h2load nghttp2/1.52.0"),
]
#: What asgiri sends for the bench app's hello: its defaults and the app's two.
RESPONSE = [
    (b"date", b"Tue, 01 Dec 2026 16:00:00 GMT"),
    (b"server", b"asgiri"),
    (b"content-type", b"text/plain"),
    (b"content-length", b"13"),
]
SETTINGS_ACK = b"\x00\x00\x00\x04\x01\x00\x00\x00\x00"


# ----------------------------------------------------------------------------- input


def client_reads(reads: int) -> list[bytes]:
    """The client's bytes, one entry per read: the preface, then 16 requests each.

    The first two rounds come from an h2 client; every later round is the second
    one with its stream ids rewritten (by then every field is in the HPACK
    dynamic table, so the header blocks no longer change).  Windows are opened
    as h2load opens them (2^30 - 1), so no WINDOW_UPDATE is needed in between.
    """
    client = _client()
    preface = client.data_to_send()
    rounds = []
    for r in range(2):
        for i in range(STREAMS):
            client.send_headers(1 + 2 * (r * STREAMS + i), REQUEST, end_stream=True)
        rounds.append(client.data_to_send())
    first = preface + rounds[0]
    template = rounds[1]
    # Offsets of the stream-id fields of the template's frames.
    offsets = []
    pos = 0
    while pos < len(template):
        length = int.from_bytes(template[pos : pos + 3], "big")
        offsets.append(pos + 5)
        pos += 9 + length
    if len(offsets) != STREAMS:
        raise RuntimeError("unexpected template")
    out = [first, SETTINGS_ACK + template]
    buf = bytearray(template)
    for r in range(2, reads):
        for i, at in enumerate(offsets):
            buf[at : at + 4] = (1 + 2 * (r * STREAMS + i)).to_bytes(4, "big")
        out.append(bytes(buf))
    return out


# ----------------------------------------------------------------------------- codecs
#
# Each factory returns a function that handles one read and returns the bytes
# to send.

Server = Callable[[bytes], bytes]


def _h2_server(config: h2.config.H2Configuration, cls: type = h2.connection.H2Connection) -> Server:
    conn = cls(config=config)
    conn.initiate_connection()
    request_received = h2.events.RequestReceived
    status = [(b":status", b"200"), *RESPONSE]

    def serve(data: bytes) -> bytes:
        for ev in conn.receive_data(data):
            if type(ev) is request_received:
                conn.send_headers(ev.stream_id, status)
                conn.send_data(ev.stream_id, BODY, end_stream=True)
        return conn.data_to_send()  # type: ignore[no-any-return]

    return serve


def h2_default() -> Server:
    return _h2_server(h2.config.H2Configuration(client_side=False, header_encoding=None))


def _no_validation() -> h2.config.H2Configuration:
    """h2 with its header validation and normalisation off, both ways (as asgiri runs it)."""
    return h2.config.H2Configuration(
        client_side=False,
        header_encoding=None,
        validate_inbound_headers=False,
        normalize_inbound_headers=False,
        validate_outbound_headers=False,
        normalize_outbound_headers=False,
    )


def h2_novalidate() -> Server:
    return _h2_server(_no_validation())


def h2_asgiri() -> Server:
    from asgiri.protocol.h2 import _H2

    return _h2_server(_no_validation(), _H2)


def asgiri_protocol(codec: str = "h2") -> Server:
    from asgiri.protocol.events import Request
    from asgiri.protocol.h2_codecs import codec_factory
    from asgiri.protocol.h2_common import H2Limits

    conn = codec_factory(codec)(H2Limits())
    conn.initiate()

    def serve(data: bytes) -> bytes:
        for ev in conn.receive_data(data):
            if type(ev) is Request:
                sid = ev.stream_id
                # What H2Protocol.send_head does for a complete small response.
                conn.responses.head(sid, RESPONSE[2:], len(BODY), True, False)
                conn.send_headers(sid, 200, RESPONSE, False)
                conn.send_data(sid, BODY, True)
                conn.forget(sid)
        return conn.data_to_send()

    return serve


def asgiri_nghttp2() -> Server:
    return asgiri_protocol("nghttp2")


def ngh2_server() -> Server:
    import ngh2

    conn = ngh2.Connection(ngh2.Role.SERVER, ngh2.Configuration(auto_window_update=False))
    conn.initiate_connection({ngh2.Setting.MAX_CONCURRENT_STREAMS: 100})
    request_received = ngh2.RequestReceived
    status = [(b":status", b"200"), *RESPONSE]

    def serve(data: bytes) -> bytes:
        conn.receive_data(data)
        for ev in conn.events():
            if type(ev) is request_received:
                conn.send_response(ev.stream_id, status)
                conn.send_data(ev.stream_id, BODY, end_stream=True)
        return conn.data_to_send()

    return serve


def jh2_server() -> Server:
    import jh2.config
    import jh2.connection
    import jh2.events

    config = jh2.config.H2Configuration(
        client_side=False,
        header_encoding=None,
        validate_inbound_headers=False,
        normalize_inbound_headers=False,
        validate_outbound_headers=False,
        normalize_outbound_headers=False,
    )
    conn = jh2.connection.H2Connection(config=config)
    conn.initiate_connection()
    request_received = jh2.events.RequestReceived
    status = [(b":status", b"200"), *RESPONSE]

    def serve(data: bytes) -> bytes:
        for ev in conn.receive_data(data):
            if type(ev) is request_received:
                conn.send_headers(ev.stream_id, status)
                conn.send_data(ev.stream_id, BODY, end_stream=True)
        return conn.data_to_send()  # type: ignore[no-any-return]

    return serve


def zttp_server() -> Server:
    import zttp

    conn = zttp.Connection(zttp.SERVER, protocol=zttp.HTTP2)
    request_type = zttp.Request
    need_data = zttp.NEED_DATA

    def serve(data: bytes) -> bytes:
        conn.receive_data(data)
        requests = []
        while True:
            ev = conn.next_event()
            if ev is need_data:
                break
            if type(ev) is request_type:
                requests.append(ev.stream_id)
        for sid in requests:
            stream = conn.stream(sid)
            stream.send_response(200, RESPONSE)
            stream.send_data(BODY)
            stream.end_message()
        return conn.data_to_send()

    return serve


def rh2_server() -> Server:
    import rh2

    conn = rh2.H2Connection()
    request_type = rh2.RequestReceived

    def serve(data: bytes) -> bytes:
        for ev in conn.receive_data(data):
            if type(ev) is request_type:
                conn.send_headers(ev.stream_id, 200, RESPONSE)
                conn.send_data(ev.stream_id, BODY, end_stream=True)
        return conn.data_to_send()  # type: ignore[no-any-return]

    return serve


CODECS: dict[str, tuple[Callable[[], Server], str | None]] = {
    "h2-default": (h2_default, None),
    "h2-novalidate": (h2_novalidate, None),
    "h2-asgiri": (h2_asgiri, None),
    "asgiri": (asgiri_protocol, None),
    "asgiri-nghttp2": (asgiri_nghttp2, "ngh2"),
    "ngh2": (ngh2_server, "ngh2"),
    "jh2": (jh2_server, "jh2"),
    "zttp": (zttp_server, "zttp"),
    "rh2": (rh2_server, "rh2"),
}


def _client() -> h2.connection.H2Connection:
    """An h2 client with windows opened as h2load opens them (2^30 - 1)."""
    config = h2.config.H2Configuration(client_side=True, header_encoding=None)
    client = h2.connection.H2Connection(config)
    client.local_settings = h2.settings.Settings(
        client=True,
        initial_values={
            h2.settings.SettingCodes.ENABLE_PUSH: 0,
            h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: (1 << 30) - 1,
        },
    )
    client.initiate_connection()
    client.increment_flow_control_window((1 << 30) - 1 - 65535)
    return client


# ----------------------------------------------------------------------------- run


def check(make: Callable[[], Server], reads: list[bytes]) -> None:
    """Feed the codec's output to an h2 client: every request gets its whole answer."""
    serve = make()
    client = _client()
    client.data_to_send()
    for n, data in enumerate(reads):
        for i in range(STREAMS):
            client.send_headers(1 + 2 * (n * STREAMS + i), REQUEST, end_stream=True)
        client.data_to_send()
        bodies: dict[int, bytes] = {}
        ended = set()
        statuses = {}
        for ev in client.receive_data(serve(data)):
            if isinstance(ev, h2.events.ResponseReceived):
                statuses[ev.stream_id] = dict(ev.headers)[b":status"]
            elif isinstance(ev, h2.events.DataReceived):
                bodies[ev.stream_id] = bodies.get(ev.stream_id, b"") + ev.data
            elif isinstance(ev, h2.events.StreamEnded):
                ended.add(ev.stream_id)
            elif isinstance(ev, (h2.events.StreamReset, h2.events.ConnectionTerminated)):
                raise RuntimeError(f"read {n}: {ev}")
        expected = {1 + 2 * (n * STREAMS + i) for i in range(STREAMS)}
        if ended != expected or set(statuses.values()) != {b"200"}:
            raise RuntimeError(f"read {n}: {len(ended)} of {STREAMS} responses complete")
        if set(bodies.values()) != {BODY}:
            raise RuntimeError(f"read {n}: bodies {set(bodies.values())}")
        client.data_to_send()


def run(make: Callable[[], Server], reads: list[bytes], connections: int) -> float:
    """Seconds of CPU to serve ``reads`` on each of ``connections`` fresh connections."""
    gc.collect()
    start = time.process_time()
    for _ in range(connections):
        serve = make()
        for data in reads:
            serve(data)
    return time.process_time() - start


def version(dist: str) -> str:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return "-"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--codecs", default=",".join(CODECS), help="comma-separated")
    parser.add_argument(
        "--reads",
        type=int,
        default=250,
        help="reads per connection (16 cycles each); zttp 0.0.35 ends a connection"
        " with ENHANCE_YOUR_CALM after 4096 streams, so at most 256",
    )
    parser.add_argument("--connections", type=int, default=8, help="connections per run")
    parser.add_argument("--repeat", type=int, default=5, help="runs per codec (best, median)")
    parser.add_argument(
        "--count", metavar="CODEC", help="run CODEC once for --reads reads (for callgrind)"
    )
    args = parser.parse_args()
    reads = client_reads(args.reads)
    if args.count:
        serve = CODECS[args.count][0]()
        for data in reads:
            serve(data)
        return
    names = [n for n in args.codecs.split(",") if n]
    print(
        f"# python {platform.python_version()}, h2 {version('h2')}, ngh2 {version('ngh2')}, "
        f"jh2 {version('jh2')}, zttp {version('zttp')}, rh2 {version('rh2')}; "
        f"{args.connections} connections x {args.reads} reads x {STREAMS}"
        f" streams, best/median of {args.repeat}"
    )
    print(f"{'codec':<15} {'cycles/s':>10} {'µs/cycle':>9} {'median µs':>10}")
    for name in names:
        make, dist = CODECS[name]
        if dist is not None and version(dist) == "-":
            print(f"{name:<15} not installed")
            continue
        try:
            check(make, reads[:50])
        except Exception as exc:
            print(f"{name:<15} FAILED the check: {exc!r}")
            continue
        times: list[Any] = [run(make, reads, args.connections) for _ in range(args.repeat)]
        cycles = args.connections * args.reads * STREAMS
        best = min(times) / cycles * 1e6
        median = statistics.median(times) / cycles * 1e6
        print(f"{name:<15} {1e6 / best:>10,.0f} {best:>9.2f} {median:>10.2f}")


if __name__ == "__main__":
    main()
