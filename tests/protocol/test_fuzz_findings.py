"""Findings of the fuzz targets (docs/fuzzing.md), each as the unit test of its fix.

Every input the fuzzer found that broke an invariant is reduced to the bytes
that matter and fed to the protocol class here, with the documented answer
it must get.  (The inputs themselves are replayed from fuzz/regressions/ by
tests/protocol/test_fuzz.py.)
"""

from __future__ import annotations

import zlib

import hpack
import pytest
from h2.errors import ErrorCodes

from asgiri.protocol.errors import RemoteProtocolError
from asgiri.protocol.events import ConnectionEnded
from asgiri.protocol.fields import MalformedRequest, check_header_block
from asgiri.protocol.h1 import H1Connection, ReadState
from asgiri.protocol.h2 import PREFACE, H2Connection, H2Limits
from asgiri.protocol.h2_codecs import codec_factory
from asgiri.protocol.proxy_headers import TrustedProxies, forwarded_info
from asgiri.protocol.proxy_protocol import ProxyProtocolError, parse
from asgiri.protocol.ws import CloseReceived, MessageReceived, WSSession
from asgiri.protocol.ws_handshake import negotiate_extensions

# ---------------------------------------------------------------- HTTP/1.1

CHUNKED_HEAD = b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"


def test_h1_parses_nothing_after_a_limit_error() -> None:
    """A chunk-size line over the limit is answered 431, and the connection is done.

    The framing limit is checked after llhttp took the bytes, and llhttp went
    on parsing what came next: the body and the end of a request already
    refused reached the server as events.
    """
    conn = H1Connection(max_header_size=200)
    conn.receive_data(CHUNKED_HEAD)
    with pytest.raises(RemoteProtocolError) as first:
        conn.receive_data(b"5;" + b"a" * 300)
    assert first.value.status == 431
    assert conn.read_state is ReadState.ERROR
    more = b"\r\nhello\r\n0\r\n\r\nGET / HTTP/1.1\r\nHost: x\r\n\r\n"
    assert conn.receive_data(more) == []


@pytest.mark.parametrize("cut", [0, 3, 6, 14, 16])
def test_h1_http2_preface_gets_505_however_it_is_cut(cut: int) -> None:
    """Without HTTP/2, the preface is answered 505, whatever reads it came in.

    The preface was recognised only when one read began with all of
    ``PRI * HTTP/2.0``: cut before that, it got 400.
    """
    preface = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
    conn = H1Connection()
    with pytest.raises(RemoteProtocolError) as info:
        conn.receive_data(preface[:cut])
        conn.receive_data(preface[cut:])
    assert info.value.status == 505


def test_h1_parses_nothing_after_a_syntax_error() -> None:
    conn = H1Connection()
    with pytest.raises(RemoteProtocolError) as first:
        conn.receive_data(b"GET / HTTP/1.1\r\nHost: x\r\nX\x01Y: 1\r\n\r\n")
    assert first.value.status == 400
    assert conn.receive_data(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n") == []


# ---------------------------------------------------------------- WebSocket


def _masked(opcode: int, payload: bytes, fin: bool = True) -> bytes:
    key = b"\x01\x02\x03\x04"
    masked = bytes(b ^ key[i % 4] for i, b in enumerate(payload))
    return bytes([(0x80 if fin else 0) | opcode, 0x80 | len(payload)]) + key + masked


@pytest.mark.parametrize(
    ("bad", "code"),
    [
        (_masked(0x1, b"x" * 20), 1009),  # over max_size
        (_masked(0x1, b"x" * 8, fin=False) + _masked(0x0, b"y" * 8), 1009),
        (_masked(0xB, b"x"), 1002),  # a reserved opcode
        (_masked(0x1, b"\xff"), 1007),
    ],
    ids=["too-big", "too-big-fragmented", "reserved-opcode", "invalid-utf8"],
)
def test_ws_session_reads_nothing_after_failing(bad: bytes, code: int) -> None:
    """A failed session is closed (RFC 6455 7.1.7): what follows the bad frame is not read.

    It said ``closed`` only after a close handshake, and went on reading: the
    message after one refused with 1009 reached the app.
    """
    session = WSSession(max_size=10)
    events = session.receive_data(bad)
    assert [(type(e), getattr(e, "code", None), getattr(e, "error", None)) for e in events] == [
        (CloseReceived, code, True)
    ]
    assert session.closed
    assert session.receive_data(_masked(0x1, b"after")) == []
    assert session.receive_data(None) == []
    close = session.data_to_send()
    assert close[0] == 0x88 and int.from_bytes(close[2:4], "big") == code


@pytest.mark.parametrize("deflate", [False, True], ids=["plain", "deflate"])
def test_ws_max_size_counts_the_bytes_of_text(deflate: bool) -> None:
    """``--ws-max-size`` is bytes (docs/WEBSOCKET.md), for text too.

    Uncompressed text was counted in characters: ten 3-byte characters passed
    a 10-byte limit (a message four times the limit, with 4-byte ones).
    """
    offer = [(b"sec-websocket-extensions", b"permessage-deflate")]
    text = "\u20ac" * 10  # 30 bytes of UTF-8
    payload = text.encode()
    rsv = 0
    if deflate:
        packed = zlib.compressobj(wbits=-15)
        payload = packed.compress(payload) + packed.flush(zlib.Z_SYNC_FLUSH)
        payload, rsv = payload[:-4], 0x40
    frame = _masked(0x1, payload)
    frame = bytes([frame[0] | rsv]) + frame[1:]
    events = WSSession(negotiate_extensions(offer, deflate)[0], 29).receive_data(frame)
    assert [(type(e), getattr(e, "code", None)) for e in events] == [(CloseReceived, 1009)]
    events = WSSession(negotiate_extensions(offer, deflate)[0], 30).receive_data(frame)
    assert [(type(e), getattr(e, "data", None)) for e in events] == [(MessageReceived, text)]


# ---------------------------------------------------------------- HTTP/2

EMPTY_SETTINGS = b"\x00\x00\x00\x04\x00\x00\x00\x00\x00"


def _goaway_codes(data: bytes) -> list[int]:
    codes, pos = [], 0
    while len(data) - pos >= 9:
        length = int.from_bytes(data[pos : pos + 3], "big")
        if data[pos + 3] == 0x7:
            codes.append(int.from_bytes(data[pos + 13 : pos + 17], "big"))
        pos += 9 + length
    return codes


@pytest.mark.parametrize("kind", [0x0, 0x1, 0x6, 0xFA], ids=["DATA", "HEADERS", "PING", "unknown"])
def test_h2_frame_over_max_frame_size_is_refused_at_its_header(kind: int) -> None:
    """RFC 9113 4.2: FRAME_SIZE_ERROR as soon as the 9-byte header says the frame is too big.

    h2 checks the length only once the whole frame is in its buffer: a header
    announcing 16 MiB made the connection hold 16 MiB before refusing it.
    """
    conn = H2Connection()
    conn.initiate()
    conn.data_to_send()
    header = (1 << 24) - 1
    frame = header.to_bytes(3, "big") + bytes([kind, 0]) + (1).to_bytes(4, "big")
    events = conn.receive_data(PREFACE + EMPTY_SETTINGS + frame + b"\0" * 1000)
    assert [(type(e), getattr(e, "error_code", None)) for e in events] == [
        (ConnectionEnded, ErrorCodes.FRAME_SIZE_ERROR)
    ]
    assert _goaway_codes(conn.data_to_send()) == [ErrorCodes.FRAME_SIZE_ERROR]
    assert conn.receive_data(b"\0" * 1000) == []


def test_h2_frame_of_max_frame_size_is_accepted() -> None:
    conn = H2Connection()
    conn.initiate()
    frame = (16384).to_bytes(3, "big") + bytes([0xFA, 0]) + (0).to_bytes(4, "big")
    assert conn.receive_data(PREFACE + EMPTY_SETTINGS + frame + b"\0" * 16384) == []
    assert not conn.closed


# ---------------------------------------------------------------- proxy headers


@pytest.mark.parametrize(
    ("hops", "trusted"),
    [
        (b"203.0.113.9, 10.0.0.1:42639", "127.0.0.1, 10.0.0.0/8"),
        (b"203.0.113.9, [2001:db8::5]:443", "2001:db8::/32"),
        (b"203.0.113.9:5000, 10.0.0.7, 10.0.0.1:80", "10.0.0.0/8"),
    ],
)
def test_x_forwarded_for_hop_with_a_port_is_still_a_trusted_proxy(
    hops: bytes, trusted: str
) -> None:
    """A proxy that writes ``address:port`` is trusted by its address, as in Forwarded.

    The whole ``10.0.0.1:42639`` was looked up in the trusted list, found
    nowhere, and the trusted proxy itself was taken for the client.
    """
    info = forwarded_info([(b"x-forwarded-for", hops)], TrustedProxies(trusted), False)
    assert info is not None and info.client is not None
    assert info.client[0] == "203.0.113.9"


@pytest.mark.parametrize(
    ("name", "value", "client"),
    [
        (b"x-forwarded-for", b"198.51.100.7:\xb2", ("198.51.100.7", 0)),
        (b"x-forwarded-for", b"[2001:db8::1]:8\xb98", ("2001:db8::1", 0)),
        (b"forwarded", b'for="198.51.100.7:\xb3"', ("198.51.100.7", 0)),
        (b"x-forwarded-for", b"198.51.100.7:99999", ("198.51.100.7", 0)),
        (b"x-forwarded-for", b"198.51.100.7:65535", ("198.51.100.7", 65535)),
    ],
    ids=["superscript-two", "superscript-one-v6", "forwarded-superscript", "over-65535", "max"],
)
def test_forwarded_port_that_is_not_a_port_is_unknown(
    name: bytes, value: bytes, client: tuple[str, int]
) -> None:
    """A port is ASCII digits up to 65535; anything else is 0 ("unknown"), never an error.

    Headers are decoded as Latin-1, where "²" and "¹" pass ``str.isdigit``:
    ``int()`` then raised ValueError while the request's scope was built.
    """
    info = forwarded_info([(name, value)], TrustedProxies("*"), False)
    assert info is not None and info.client == client


# ---------------------------------------------------------------- HTTP/2 and HTTP/3 heads


def _head(method: bytes = b"GET", scheme: bytes = b"https") -> list[tuple[bytes, bytes]]:
    return [(b":method", method), (b":scheme", scheme), (b":path", b"/"), (b":authority", b"a")]


@pytest.mark.parametrize(
    "head",
    [
        _head(method=b""),
        _head(method=b"G\xffT"),
        _head(method=b"GE T"),
        _head(scheme=b"h\xfftp"),
        _head(scheme=b"1http"),
        _head(scheme=b""),
    ],
    ids=["empty-method", "non-ascii-method", "method-space", "non-ascii-scheme", "digit", "empty"],
)
def test_method_must_be_a_token_and_scheme_a_scheme(head: list[tuple[bytes, bytes]]) -> None:
    """RFC 9110 9.1 and RFC 3986 3.1, checked once for HTTP/2 and HTTP/3.

    HTTP/2 decoded the method and scheme as ASCII after the checks: a
    non-ASCII byte made ``H2Connection.receive_data`` raise UnicodeDecodeError
    out of the protocol layer (the connection dropped with a traceback), and
    an empty method reached the app as ``""``.
    """
    with pytest.raises(MalformedRequest):
        check_header_block(head, False)
    conn = H2Connection()
    conn.initiate()
    block = hpack.Encoder().encode(head)
    frame = len(block).to_bytes(3, "big") + b"\x01\x05" + (1).to_bytes(4, "big") + block
    events = conn.receive_data(PREFACE + EMPTY_SETTINGS + frame)
    assert [(type(e), getattr(e, "error_code", None)) for e in events] == [
        (ConnectionEnded, ErrorCodes.PROTOCOL_ERROR)
    ]


def test_other_methods_and_schemes_are_tokens_and_schemes() -> None:
    head = check_header_block(_head(method=b"PROPFIND", scheme=b"web+app.v-1"), False)
    assert (head.method, head.scheme) == (b"PROPFIND", b"web+app.v-1")


def test_h2_frames_of_a_stream_refused_in_the_same_read_are_nobodys() -> None:
    """A refused stream reports nothing, whether its frames come with its HEADERS or later.

    h2 parses a whole read before the requests in it are looked at: the DATA
    and RST_STREAM that followed a refused request in the same read came out
    as Body and StreamClosed events of a stream never reported, while in a
    later read h2 drops them.
    """
    connect = [
        (b":method", b"CONNECT"),
        (b":protocol", b"websocket"),
        (b":scheme", b"https"),
        (b":path", b"/ws"),
        (b":authority", b"a"),
    ]
    encoder = hpack.Encoder()
    refused = encoder.encode(connect)  # extended CONNECT is not enabled: refused
    get = encoder.encode(_head())
    frames = [
        len(refused).to_bytes(3, "big") + b"\x01\x04" + (1).to_bytes(4, "big") + refused,
        b"\x00\x00\x05\x00\x00" + (1).to_bytes(4, "big") + b"hello",
        b"\x00\x00\x04\x03\x00" + (1).to_bytes(4, "big") + b"\x00\x00\x00\x08",
        len(get).to_bytes(3, "big") + b"\x01\x05" + (3).to_bytes(4, "big") + get,
    ]
    for cut in (False, True):
        conn = H2Connection()
        conn.initiate()
        if cut:
            events = conn.receive_data(PREFACE + EMPTY_SETTINGS + frames[0])
            events += conn.receive_data(b"".join(frames[1:]))
        else:
            events = conn.receive_data(PREFACE + EMPTY_SETTINGS + b"".join(frames))
        assert [(type(e).__name__, e.stream_id) for e in events] == [
            ("Request", 3),
            ("EndBody", 3),
        ], cut


@pytest.mark.parametrize("peer_reset", [False, True])
@pytest.mark.parametrize("field", [(b"connection", b"close"), (b"te", b"gzip"), (b"Upper", b"x")])
def test_h2_nghttp2_malformed_request_is_reset_without_a_stream_event(
    field: tuple[bytes, bytes], peer_reset: bool
) -> None:
    """A request nghttp2 resets as malformed was never reported, so neither is its reset.

    nghttp2 answers a malformed request head with RST_STREAM PROTOCOL_ERROR
    (RFC 9113 8.1.1) before it is a request; the codec reported that reset,
    or the client's own RST_STREAM of it in the same read, as a StreamClosed
    event of a stream the server had never seen.  The next request on the
    connection is still served.
    """
    encoder = hpack.Encoder()
    bad = encoder.encode([*_head(), field])
    good = encoder.encode(_head())
    conn = codec_factory("nghttp2")(H2Limits())
    conn.initiate()
    events = conn.receive_data(
        PREFACE
        + EMPTY_SETTINGS
        + len(bad).to_bytes(3, "big")
        + b"\x01\x05"
        + (1).to_bytes(4, "big")
        + bad
        + (b"\x00\x00\x04\x03\x00" + (1).to_bytes(4, "big") + b"\x00\x00\x00\x08") * peer_reset
        + len(good).to_bytes(3, "big")
        + b"\x01\x05"
        + (3).to_bytes(4, "big")
        + good
    )
    assert [(type(e).__name__, e.stream_id) for e in events] == [("Request", 3), ("EndBody", 3)]
    assert _rst_codes(conn.data_to_send()) == {1: ErrorCodes.PROTOCOL_ERROR}


def _rst_codes(data: bytes) -> dict[int, int]:
    codes, pos = {}, 0
    while len(data) - pos >= 9:
        length = int.from_bytes(data[pos : pos + 3], "big")
        if data[pos + 3] == 0x3:
            stream = int.from_bytes(data[pos + 5 : pos + 9], "big")
            codes[stream] = int.from_bytes(data[pos + 9 : pos + 13], "big")
        pos += 9 + length
    return codes


# ---------------------------------------------------------------- PROXY protocol


@pytest.mark.parametrize(
    "line",
    [b"PROXY UNKNOWN \nwhatever\r\n", b"PROXY TCP4 1.2.3.4\n 5.6.7.8 1 2\r\n"],
    ids=["unknown", "tcp4"],
)
def test_proxy_v1_line_with_a_bare_lf_is_refused_however_it_arrives(line: bytes) -> None:
    """A bare LF in a v1 line is an error, whole or in pieces.

    A prefix up to the LF was refused (no CRLF can come), but the whole
    ``UNKNOWN`` line was accepted, its rest being ignored: the answer depended
    on how the bytes were cut into reads.
    """
    for size in range(line.index(b"\n") + 1, len(line) + 1):
        with pytest.raises(ProxyProtocolError):
            parse(line[:size])
