"""What each HTTP/2 codec does with the cases a server needs, in process.

Each probe drives a fresh server connection with raw frames (hyperframe, and a
stateless HPACK encoder so malformed fields can be written), reads back the
frames the codec produced and prints one cell per codec.  The codecs sit behind
one small adapter each; ``asgiri (h2)`` is ``asgiri.protocol.h2.H2Connection`` (the h2
library as asgiri uses it), the reference every candidate is held against, and
``asgiri (nghttp2)`` the same interface on ngh2 (``asgiri.protocol.h2_nghttp2``).

    .venv/bin/python -m bench.codec.h2_features
"""

from __future__ import annotations

from collections.abc import Callable
from importlib import metadata
from typing import Any

import hpack
from hpack.hpack import encode_integer
from hyperframe.frame import (
    DataFrame,
    Frame,
    GoAwayFrame,
    HeadersFrame,
    PingFrame,
    PriorityFrame,
    RstStreamFrame,
    SettingsFrame,
    WindowUpdateFrame,
)

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
GET = [(b":method", b"GET"), (b":scheme", b"http"), (b":path", b"/"), (b":authority", b"a")]
POST = [(b":method", b"POST"), (b":scheme", b"http"), (b":path", b"/"), (b":authority", b"a")]
PROTOCOL_ERROR, CANCEL, ENHANCE_YOUR_CALM = 0x1, 0x8, 0xB


# ----------------------------------------------------------------------------- adapters
#
# Events are normalised to tuples: ("request", sid, fields, end, protocol),
# ("data", sid, bytes), ("end", sid, trailers), ("reset", sid, code),
# ("goaway", code), ("error", text).


class Asgiri:
    name = "asgiri (h2)"
    codec = "h2"

    def __init__(self) -> None:
        from asgiri.protocol.h2_codecs import codec_factory
        from asgiri.protocol.h2_common import H2Limits

        # The candidates' 64 KiB window, so that the inbound flow-control probe
        # (60,000 bytes) crosses h2's threshold for sending WINDOW_UPDATE.
        limits = H2Limits(enable_connect_protocol=True, initial_window_size=65535)
        self.conn = codec_factory(self.codec)(limits)
        self.conn.initiate()

    def feed(self, data: bytes) -> list[tuple[Any, ...]]:
        from asgiri.protocol import events as ev
        from asgiri.protocol.h2_common import ConnectionEnded

        out: list[tuple[Any, ...]] = []
        for e in self.conn.receive_data(data):
            if isinstance(e, ev.Request):
                fields = [(b":method", e.method.encode()), (b":path", e.raw_path), *e.headers]
                out.append(("request", e.stream_id, fields, False, e.protocol))
            elif isinstance(e, ev.Body):
                out.append(("data", e.stream_id, e.data))
            elif isinstance(e, ev.EndBody):
                out.append(("end", e.stream_id, e.trailers or []))
            elif isinstance(e, ev.StreamClosed):
                out.append(("reset", e.stream_id, e.error_code))
            elif isinstance(e, ConnectionEnded):
                out.append(("goaway", e.error_code))
        return out

    def respond(self, sid: int, status: int, headers: list[Any], body: bytes, end: bool) -> None:
        self.conn.send_headers(sid, status, headers, False)
        self.conn.send_data(sid, body, end)

    def informational(self, sid: int, status: int) -> None:
        self.conn.send_informational(sid, status, [(b"link", b"</a>")])

    def data(self, sid: int, data: bytes, end: bool) -> None:
        self.conn.send_data(sid, data, end)

    def trailers(self, sid: int, trailers: list[Any]) -> None:
        self.conn.send_trailers(sid, trailers)

    def reset(self, sid: int, code: int) -> None:
        self.conn.reset(sid, code)

    def goaway(self) -> None:
        self.conn.goaway()

    def consumed(self, sid: int, n: int) -> bool:
        self.conn.acknowledge(sid, n)
        return True

    def buffered(self, sid: int) -> int | None:
        return self.conn.buffered(sid)

    def out(self) -> bytes:
        return self.conn.data_to_send()


class AsgiriNghttp2(Asgiri):
    name = "asgiri (nghttp2)"
    codec = "nghttp2"


class Zttp:
    name = "zttp"

    def __init__(self) -> None:
        import zttp

        self.z = zttp
        self.conn = zttp.Connection(zttp.SERVER, protocol=zttp.HTTP2)
        self.conn.initiate_connection()

    def feed(self, data: bytes) -> list[tuple[Any, ...]]:
        z = self.z
        out: list[tuple[Any, ...]] = []
        try:
            self.conn.receive_data(data)
            while True:
                e = self.conn.next_event()
                if e is z.NEED_DATA or e is z.CONNECTION_CLOSED:
                    break
                if isinstance(e, z.Request):
                    fields = [(b":method", e.method), (b":path", e.target), *e.headers]
                    out.append(("request", e.stream_id, fields, e.end_stream, e.protocol))
                    if e.end_stream:
                        out.append(("end", e.stream_id, []))
                elif isinstance(e, z.Data):
                    out.append(("data", e.stream_id, e.data))
                elif isinstance(e, z.EndOfMessage):
                    out.append(("end", e.stream_id, list(e.trailers)))
                elif isinstance(e, z.RstStream):
                    out.append(("reset", e.stream_id, e.error_code))
                elif isinstance(e, z.GoAway):
                    out.append(("goaway", e.error_code))
        except z.ProtocolError as exc:
            out.append(("error", str(exc)))
        return out

    def respond(self, sid: int, status: int, headers: list[Any], body: bytes, end: bool) -> None:
        stream = self.conn.stream(sid)
        stream.send_response(status, headers)
        if body:
            stream.send_data(body)
        if end:
            stream.end_message()

    def informational(self, sid: int, status: int) -> None:
        self.conn.stream(sid).send_informational(status, [(b"link", b"</a>")])

    def data(self, sid: int, data: bytes, end: bool) -> None:
        stream = self.conn.stream(sid)
        if data:
            stream.send_data(data)
        if end:
            stream.end_message()

    def trailers(self, sid: int, trailers: list[Any]) -> None:
        self.conn.stream(sid).end_message(trailers)

    def reset(self, sid: int, code: int) -> None:
        self.conn.stream(sid).reset(code)

    def goaway(self) -> None:
        self.conn.close(0)

    def consumed(self, sid: int, n: int) -> bool:
        return False  # no API: HTTP/2 DATA is credited by zttp itself

    def buffered(self, sid: int) -> int | None:
        return self.conn.stream(sid).pending_bytes

    def out(self) -> bytes:
        return self.conn.data_to_send()


class Rh2:
    name = "rh2"

    def __init__(self) -> None:
        import rh2

        self.r = rh2
        self.conn = rh2.H2Connection()

    def feed(self, data: bytes) -> list[tuple[Any, ...]]:
        r = self.r
        out: list[tuple[Any, ...]] = []
        try:
            events = self.conn.receive_data(data)
        except Exception as exc:
            return [("error", repr(exc))]
        for e in events:
            if isinstance(e, r.RequestReceived):
                fields = list(e.headers)
                proto = dict(fields).get(b":protocol")
                out.append(("request", e.stream_id, fields, e.stream_ended, proto))
            elif isinstance(e, r.DataReceived):
                out.append(("data", e.stream_id, e.data))
            elif isinstance(e, r.StreamEnded):
                out.append(("end", e.stream_id, []))
            elif isinstance(e, r.StreamReset):
                out.append(("reset", e.stream_id, e.error_code))
            elif isinstance(e, r.ConnectionTerminated):
                out.append(("goaway", None))
        return out

    def respond(self, sid: int, status: int, headers: list[Any], body: bytes, end: bool) -> None:
        self.conn.send_headers(sid, status, headers, end_stream=end and not body)
        if body:
            self.conn.send_data(sid, body, end_stream=end)

    def informational(self, sid: int, status: int) -> None:
        self.conn.send_headers(sid, status, [(b"link", b"</a>")])

    def data(self, sid: int, data: bytes, end: bool) -> None:
        self.conn.send_data(sid, data, end_stream=end)

    def trailers(self, sid: int, trailers: list[Any]) -> None:
        raise NotImplementedError("no API for trailers")

    def reset(self, sid: int, code: int) -> None:
        self.conn.reset_stream(sid, code)

    def goaway(self) -> None:
        self.conn.close_connection()

    def consumed(self, sid: int, n: int) -> bool:
        self.conn.acknowledge_data(sid, n)
        return True

    def buffered(self, sid: int) -> int | None:
        return None  # no API

    def out(self) -> bytes:
        return self.conn.data_to_send()  # type: ignore[no-any-return]


# ----------------------------------------------------------------------------- client side


def literal(name: bytes, value: bytes) -> bytes:
    """A literal field without indexing, new name, no Huffman: any bytes at all."""
    return b"\x00" + encode_integer(len(name), 7) + name + encode_integer(len(value), 7) + value


def block(fields: list[tuple[bytes, bytes]]) -> bytes:
    return b"".join(literal(n, v) for n, v in fields)


def headers(sid: int, fields: list[tuple[bytes, bytes]], end: bool = True, **kw: Any) -> bytes:
    f = HeadersFrame(sid, block(fields), **kw)
    f.flags.add("END_HEADERS")
    if end:
        f.flags.add("END_STREAM")
    return f.serialize()


def data(sid: int, payload: bytes, end: bool = False) -> bytes:
    f = DataFrame(sid, payload)
    if end:
        f.flags.add("END_STREAM")
    return f.serialize()


def settings(**values: int) -> bytes:
    codes = {"INITIAL_WINDOW_SIZE": 4, "MAX_FRAME_SIZE": 5, "ENABLE_PUSH": 2}
    return SettingsFrame(0, {codes[k]: v for k, v in values.items()}).serialize()


def frames(data: bytes) -> list[Frame]:
    out = []
    pos = 0
    while len(data) - pos >= 9:
        frame, length = Frame.parse_frame_header(memoryview(data[pos : pos + 9]))
        frame.parse_body(memoryview(data[pos + 9 : pos + 9 + length]))
        out.append(frame)
        pos += 9 + length
    return out


class Peer:
    """One connection: the codec, and what it sent back so far."""

    def __init__(self, adapter: type, **client_settings: int) -> None:
        self.s = adapter()
        self.decoder = hpack.Decoder()
        self.frames: list[Frame] = []
        self.events: list[tuple[Any, ...]] = []
        self.send(PREFACE + settings(**client_settings))

    def send(self, data: bytes) -> list[tuple[Any, ...]]:
        events = self.s.feed(data)
        self.events += events
        self.pull()
        return events

    def pull(self) -> list[Frame]:
        new = frames(self.s.out())
        for f in new:
            if isinstance(f, HeadersFrame):
                f.fields = self.decoder.decode(f.data, raw=True)
        self.frames += new
        return new

    def requests(self) -> list[tuple[Any, ...]]:
        return [e for e in self.events if e[0] == "request"]

    def rejected(self, sid: int) -> str | None:
        """How the server refused stream ``sid``: "RST <code>", "GOAWAY <code>", or None."""
        for f in self.frames:
            if isinstance(f, RstStreamFrame) and f.stream_id == sid:
                return f"RST {f.error_code}"
            if isinstance(f, GoAwayFrame) and f.error_code:
                return f"GOAWAY {f.error_code}"
        if any(e[0] == "error" for e in self.events):
            return "raised (no frame)"
        return None


# ----------------------------------------------------------------------------- probes


def p_streams(a: type) -> str:
    """Sequential keep-alive use: 16 requests per read, 10,000 requests."""
    peer = Peer(a)
    served = 0
    sid = 1
    for _ in range(625):
        events = peer.send(b"".join(headers(sid + 2 * i, GET) for i in range(16)))
        sid += 32
        for e in events:
            if e[0] == "request":
                peer.s.respond(e[1], 200, [(b"content-length", b"2")], b"ok", True)
        peer.pull()
        served = sum(1 for f in peer.frames if isinstance(f, DataFrame) and "END_STREAM" in f.flags)
        if peer.rejected(sid - 2):
            return f"cut at {served}: {peer.rejected(sid - 2)}"
    return f"{served} ok"


Fields = list[tuple[bytes, bytes]]


def malformed(fields: Fields, body: bytes | None = None) -> Callable[[type], str]:
    def probe(a: type) -> str:
        peer = Peer(a)
        if body is None:
            peer.send(headers(1, fields))
        else:
            peer.send(headers(1, fields, end=False) + data(1, body, end=True))
        how = peer.rejected(1)
        if how and not peer.requests():
            return f"rejected ({how})"
        if how:
            return f"delivered, then {how}"
        return "ACCEPTED"

    return probe


def p_settings(a: type) -> str:
    peer = Peer(a)
    names = {3: "streams", 4: "window", 5: "frame", 6: "hdrlist", 8: "connect"}
    for f in peer.frames:
        if isinstance(f, SettingsFrame) and "ACK" not in f.flags:
            return ", ".join(f"{names.get(k, k)}={v}" for k, v in f.settings.items()) or "(none)"
    return "?"


def p_inbound_flow(a: type) -> str:
    """A 60,000-byte upload: is credit returned only once the app consumed it?"""
    peer = Peer(a)
    peer.send(headers(1, POST, end=False))
    for _ in range(6):
        peer.send(data(1, b"x" * 10000))
    early = [f for f in peer.frames if isinstance(f, WindowUpdateFrame)]
    stream = sum(f.window_increment for f in early if f.stream_id)
    conn = sum(f.window_increment for f in early if not f.stream_id)
    if stream:
        return f"credited on receipt (stream {stream} B, connection {conn} B)"
    if not peer.s.consumed(1, 60000):
        return "never credited"
    later = [f for f in peer.pull() if isinstance(f, WindowUpdateFrame)]
    shown = f" (connection {conn} B on receipt)" if conn else ""
    return ("on consume" if later else "never credited") + shown


def p_outbound_flow(a: type) -> str:
    """Client stream window 10: 100-byte body is paced, and the rest sent on WINDOW_UPDATE."""
    peer = Peer(a, INITIAL_WINDOW_SIZE=10)
    peer.send(headers(1, GET))
    peer.s.respond(1, 200, [], b"y" * 100, True)
    peer.pull()
    first = sum(len(f.data) for f in peer.frames if isinstance(f, DataFrame))
    buffered = peer.s.buffered(1)
    peer.send(WindowUpdateFrame(1, 90).serialize())
    total = sum(len(f.data) for f in peer.frames if isinstance(f, DataFrame))
    done = any(isinstance(f, DataFrame) and "END_STREAM" in f.flags for f in peer.frames)
    ok = first == 10 and total == 100 and done
    shown = "no query" if buffered is None else f"buffered={buffered}"
    return f"{'paced' if ok else 'WRONG'} ({first}+{total - first} B, {shown})"


def p_client_reset(a: type) -> str:
    peer = Peer(a)
    peer.send(headers(1, POST, end=False))
    events = peer.send(RstStreamFrame(1, error_code=CANCEL).serialize())
    resets = [e for e in events if e[0] == "reset"]
    return f"event, code {resets[0][2]}" if resets else "NO EVENT"


def p_server_reset(a: type) -> str:
    peer = Peer(a)
    peer.send(headers(1, POST, end=False))
    peer.s.reset(1, CANCEL)
    peer.pull()
    return peer.rejected(1) or "NOTHING SENT"


def p_client_goaway(a: type) -> str:
    peer = Peer(a)
    events = peer.send(GoAwayFrame(0, last_stream_id=0).serialize())
    return "event" if any(e[0] == "goaway" for e in events) else "no event"


def p_graceful_goaway(a: type) -> str:
    """GOAWAY with stream 1 in flight: it is still answered, a new stream 3 is not served."""
    peer = Peer(a)
    peer.send(headers(1, GET))
    peer.s.goaway()
    peer.pull()
    goaways = [f for f in peer.frames if isinstance(f, GoAwayFrame)]
    try:
        peer.s.respond(1, 200, [], b"ok", True)
    except Exception as exc:
        return f"in-flight answer refused ({type(exc).__name__})"
    peer.pull()
    answered = any(isinstance(f, DataFrame) and f.stream_id == 1 for f in peer.frames)
    before = len(peer.requests())
    peer.send(headers(3, GET))
    later = len(peer.requests()) > before
    last = goaways[0].last_stream_id if goaways else None
    return (
        f"GOAWAY last={last}, in-flight {'answered' if answered else 'LOST'},"
        f" new stream {'SERVED' if later else 'refused'}"
    )


def p_connect(a: type) -> str:
    """RFC 8441 extended CONNECT, as a WebSocket client opens it."""
    peer = Peer(a)
    fields = [
        (b":method", b"CONNECT"),
        (b":protocol", b"websocket"),
        (b":scheme", b"http"),
        (b":path", b"/ws"),
        (b":authority", b"a"),
        (b"sec-websocket-version", b"13"),
    ]
    peer.send(headers(1, fields, end=False))
    reqs = peer.requests()
    if not reqs:
        return f"refused ({peer.rejected(1)})"
    if reqs[0][4] != b"websocket":
        return "accepted, :protocol not exposed"
    peer.s.respond(1, 200, [], b"", False)
    peer.s.data(1, b"\x81\x00", False)
    events = peer.send(data(1, b"\x82\x00"))
    got = [e for e in events if e[0] == "data"]
    sent = [f for f in peer.frames if isinstance(f, DataFrame) and f.data]
    return "works" if got and sent else "stream not usable"


def p_trailers_in(a: type) -> str:
    peer = Peer(a)
    peer.send(headers(1, POST, end=False) + data(1, b"abc") + headers(1, [(b"x-t", b"1")]))
    ends = [e for e in peer.events if e[0] == "end"]
    if ends and ends[0][2]:
        return "exposed"
    return "DROPPED" if ends else f"NOT ENDED {peer.rejected(1)}"


def p_trailers_out(a: type) -> str:
    peer = Peer(a)
    peer.send(headers(1, GET))
    try:
        peer.s.respond(1, 200, [], b"abc", False)
        peer.s.trailers(1, [(b"x-t", b"1")])
    except NotImplementedError as exc:
        return f"NO ({exc})"
    peer.pull()
    last = peer.frames[-1]
    return "sent" if isinstance(last, HeadersFrame) and "END_STREAM" in last.flags else "WRONG"


def p_priority(a: type) -> str:
    peer = Peer(a)
    peer.send(PriorityFrame(3, depends_on=1, stream_weight=16).serialize())
    peer.send(headers(5, GET))
    ok = bool(peer.requests())
    peer2 = Peer(a)
    peer2.send(PriorityFrame(3, depends_on=3).serialize())
    selfdep = peer2.rejected(3)
    peer3 = Peer(a)
    frame = HeadersFrame(1, block(GET), depends_on=1, stream_weight=16)
    for flag in ("END_HEADERS", "END_STREAM", "PRIORITY"):
        frame.flags.add(flag)
    peer3.send(frame.serialize())
    in_headers = peer3.rejected(1)
    return (
        f"PRIORITY {'ignored' if ok else 'BROKE'}; self-dependency: PRIORITY"
        f" {selfdep or 'ACCEPTED'}, HEADERS {in_headers or 'ACCEPTED'}"
    )


def p_informational(a: type) -> str:
    peer = Peer(a)
    peer.send(headers(1, GET))
    try:
        peer.s.informational(1, 103)
        peer.s.respond(1, 200, [], b"ok", True)
    except Exception as exc:
        return f"NO ({type(exc).__name__}: {exc})"
    peer.pull()
    statuses = [dict(f.fields).get(b":status") for f in peer.frames if isinstance(f, HeadersFrame)]
    return "sent" if statuses[:2] == [b"103", b"200"] else f"WRONG {statuses}"


def p_ping(a: type) -> str:
    peer = Peer(a)
    peer.send(PingFrame(0, opaque_data=b"12345678").serialize())
    acks = [f for f in peer.frames if isinstance(f, PingFrame) and "ACK" in f.flags]
    return "answered" if acks and acks[0].opaque_data == b"12345678" else "NO"


def p_conn_error(a: type) -> str:
    """DATA on stream 0: GOAWAY PROTOCOL_ERROR, and the caller is told."""
    peer = Peer(a)
    events = peer.send(b"\x00\x00\x01\x00\x00\x00\x00\x00\x00x")
    goaway = [f for f in peer.frames if isinstance(f, GoAwayFrame)]
    told = [e for e in events if e[0] in ("goaway", "error")]
    code = goaway[0].error_code if goaway else None
    return f"GOAWAY {code}, caller {'told' if told else 'NOT told'}"


def p_rapid_reset(a: type) -> str:
    """CVE-2023-44487: 2,000 streams opened and reset by the client in one read."""
    peer = Peer(a)
    burst = b"".join(
        headers(sid, POST, end=False) + RstStreamFrame(sid, error_code=CANCEL).serialize()
        for sid in range(1, 4001, 2)
    )
    peer.send(burst)
    goaway = [f for f in peer.frames if isinstance(f, GoAwayFrame)]
    if goaway:
        return f"GOAWAY {goaway[0].error_code} after {len(peer.requests())} requests"
    return f"no limit ({len(peer.requests())} requests delivered)"


PROBES: list[tuple[str, Callable[[type], str]]] = [
    ("SETTINGS sent", p_settings),
    ("10k requests, 16 per read", p_streams),
    ("uppercase field name", malformed([*GET, (b"X-Up", b"1")])),
    ("connection: keep-alive", malformed([*GET, (b"connection", b"keep-alive")])),
    ("te: gzip", malformed([*GET, (b"te", b"gzip")])),
    ("CR in a value", malformed([*GET, (b"x-a", b"a\rb")])),
    ("pseudo after regular", malformed([*GET[:3], (b"x-a", b"1"), GET[3]])),
    ("missing :path", malformed([f for f in GET if f[0] != b":path"])),
    ("duplicate :method", malformed([*GET[:1], *GET])),
    ("unknown pseudo :foo", malformed([*GET, (b":foo", b"1")])),
    ("empty :path", malformed([(b":path", b"") if f[0] == b":path" else f for f in GET])),
    ("content-length 5, 3 sent", malformed([*POST, (b"content-length", b"5")], b"abc")),
    ("inbound flow control", p_inbound_flow),
    ("outbound flow control", p_outbound_flow),
    ("RST_STREAM from client", p_client_reset),
    ("RST_STREAM from server", p_server_reset),
    ("GOAWAY from client", p_client_goaway),
    ("graceful GOAWAY", p_graceful_goaway),
    ("extended CONNECT (8441)", p_connect),
    ("request trailers", p_trailers_in),
    ("response trailers", p_trailers_out),
    ("priority", p_priority),
    ("1xx informational", p_informational),
    ("PING", p_ping),
    ("connection error", p_conn_error),
    ("rapid reset burst", p_rapid_reset),
]


def main() -> None:
    adapters: list[type] = [Asgiri]
    for cls, dist in ((AsgiriNghttp2, "ngh2"), (Zttp, "zttp"), (Rh2, "rh2")):
        try:
            print(f"# {dist} {metadata.version(dist)}")
            adapters.append(cls)
        except metadata.PackageNotFoundError:
            print(f"# {dist} not installed")
    print("| case | " + " | ".join(a.name for a in adapters) + " |")
    print("|---|" + "---|" * len(adapters))
    for title, probe in PROBES:
        cells = []
        for a in adapters:
            try:
                cells.append(probe(a))
            except Exception as exc:
                cells.append(f"raised {type(exc).__name__}: {str(exc)[:60]}")
        print(f"| {title} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
