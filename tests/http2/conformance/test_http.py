"""RFC 9113 section 8: HTTP message semantics (h2spec 8.1-8.2, RFC 7540 8.1.2.x)."""

from __future__ import annotations

import pytest
from hyperframe.frame import DataFrame, HeadersFrame

from .app import HELLO
from .driver import (
    END_HEADERS,
    PUSH_PROMISE,
    ErrorCodes,
    RawH2,
    encode,
    h2_request,
    raw_frame,
    request_headers,
)

E = ErrorCodes

METHOD = (b":method", b"GET")
SCHEME = (b":scheme", b"http")
PATH = (b":path", b"/")
AUTHORITY = (b":authority", b"localhost")


def _malformed(port: int, headers: list[tuple[bytes, bytes]], end_stream: bool = True) -> None:
    """The request is malformed: stream error PROTOCOL_ERROR, never answered."""
    with RawH2(port) as conn:
        conn.handshake()
        conn.send(conn.headers(1, headers, end_stream=end_stream))
        conn.expect_stream_error(1, E.PROTOCOL_ERROR, no_response=True)


# ---------------------------------------------------------------- 8.1 message framing


def test_8_1_second_headers_without_end_stream(port: int) -> None:
    """h2spec 8.1/1: trailers must carry END_STREAM."""
    with RawH2(port) as conn:
        conn.handshake()
        conn.send(
            conn.headers(1, request_headers(b"/echo", b"POST"), end_stream=False),
            DataFrame(1, b"test"),
            conn.headers(1, [(b"x-trailer", b"1")], end_stream=False),
        )
        conn.expect_stream_error(1, E.PROTOCOL_ERROR)


@pytest.mark.parametrize(
    ("content_length", "chunks"),
    [
        (b"1", [b"test"]),  # h2spec 8.1.2.6/1
        (b"10", [b"test"]),
        (b"8", [b"test", b"test", b"test"]),  # h2spec 8.1.2.6/2
        (b"12", [b"test", b"test"]),
    ],
    ids=["more-than-declared", "less-than-declared", "sum-more", "sum-less"],
)
def test_8_1_1_content_length_mismatch(
    port: int, content_length: bytes, chunks: list[bytes]
) -> None:
    with RawH2(port) as conn:
        conn.handshake()
        headers = request_headers(b"/echo", b"POST", [(b"content-length", content_length)])
        conn.send(conn.headers(1, headers, end_stream=False))
        conn.send(*(DataFrame(1, chunk) for chunk in chunks[:-1]))
        conn.send(DataFrame(1, chunks[-1], flags=["END_STREAM"]))
        conn.expect_stream_error(1, E.PROTOCOL_ERROR)


def test_8_1_1_content_length_without_any_data(port: int) -> None:
    """content-length 5 and END_STREAM on the HEADERS frame: 0 octets of content."""
    _malformed(port, request_headers(b"/echo", b"POST", [(b"content-length", b"5")]))


@pytest.mark.parametrize("value", [b"abc", b"-1", b"1, 2"])
def test_8_1_1_invalid_content_length(port: int, value: bytes) -> None:
    _malformed(port, request_headers(b"/echo", b"POST", [(b"content-length", value)]), False)


def test_8_1_1_content_length_matching(port: int) -> None:
    with RawH2(port) as conn:
        conn.handshake()
        headers = request_headers(b"/echo", b"POST", [(b"content-length", b"8")])
        conn.send(conn.headers(1, headers, end_stream=False))
        conn.send(DataFrame(1, b"test"), DataFrame(1, b"test", flags=["END_STREAM"]))
        assert conn.expect_response(1).body == b"testtest"


def test_8_1_1_content_length_zero_without_data(port: int) -> None:
    with RawH2(port) as conn:
        conn.handshake()
        conn.send(conn.headers(1, request_headers(extra=[(b"content-length", b"0")])))
        assert conn.expect_response(1).body == HELLO


# ---------------------------------------------------------------- 8.2 fields


@pytest.mark.parametrize(
    "field",
    [
        (b"X-Test", b"upper"),  # h2spec 8.1.2/1
        (b"x-Test", b"upper"),
        (b"x test", b"space"),
        (b"x:test", b"colon"),
        (b"", b"empty name"),
        (b"x-test\x00", b"nul"),
        (b"x-test", b"nul\x00value"),
        (b"x-test", b"cr\rvalue"),
        (b"x-test", b"lf\nvalue"),
        (b"x-test", b" leading space"),
        (b"x-test", b"trailing tab\t"),
    ],
    ids=[
        "uppercase",
        "mixed-case",
        "space-in-name",
        "colon-in-name",
        "empty-name",
        "nul-in-name",
        "nul-in-value",
        "cr-in-value",
        "lf-in-value",
        "leading-space",
        "trailing-tab",
    ],
)
def test_8_2_1_invalid_field(port: int, field: tuple[bytes, bytes]) -> None:
    """RFC 9113 8.2.1: such a field makes the request malformed."""
    _malformed(port, request_headers(extra=[field]))


@pytest.mark.parametrize(
    "field",
    [
        (b"connection", b"keep-alive"),  # h2spec 8.1.2.2/1
        (b"keep-alive", b"timeout=5"),
        (b"proxy-connection", b"keep-alive"),
        (b"transfer-encoding", b"chunked"),
        (b"upgrade", b"h2c"),
        (b"te", b"gzip"),  # h2spec 8.1.2.2/2
        (b"te", b"trailers, deflate"),
    ],
    ids=[
        "connection",
        "keep-alive",
        "proxy-connection",
        "transfer-encoding",
        "upgrade",
        "te-gzip",
        "te-list",
    ],
)
def test_8_2_2_connection_specific_field(port: int, field: tuple[bytes, bytes]) -> None:
    _malformed(port, request_headers(extra=[field]))


def test_8_2_2_te_trailers_is_allowed(port: int) -> None:
    response = h2_request(port, headers=[(b"te", b"trailers")])
    assert (response.status, response.body) == (200, HELLO)


def test_8_2_2_response_has_no_connection_specific_fields(port: int) -> None:
    """The server never sends them (nor upper-case names), whatever the app gives."""
    response = h2_request(port, b"/conn-headers")
    assert response.status == 200
    names = [name for name, _ in response.headers]
    for name in (b"connection", b"keep-alive", b"transfer-encoding", b"upgrade"):
        assert name not in names, response.headers
    assert all(name == name.lower() for name in names), response.headers
    assert (b"x-upper-case", b"yes") in response.headers


def test_8_2_3_cookie_crumbs_are_joined(port: int) -> None:
    """Split cookie fields reach the application as one, joined with "; "."""
    response = h2_request(port, headers=[(b"cookie", b"a=1"), (b"cookie", b"b=2")])
    assert [v for n, v in response.headers if n == b"echo-cookie"] == [b"a=1; b=2"]


# ---------------------------------------------------------------- 8.3 pseudo-header fields


@pytest.mark.parametrize(
    "headers",
    [
        [METHOD, SCHEME, PATH, AUTHORITY, (b":foo", b"bar")],  # h2spec 8.1.2.1/1
        [METHOD, SCHEME, PATH, AUTHORITY, (b":status", b"200")],  # h2spec 8.1.2.1/2
        [METHOD, SCHEME, AUTHORITY, (b"x-test", b"1"), PATH],  # h2spec 8.1.2.1/4
        [METHOD, SCHEME, (b":path", b""), AUTHORITY],  # h2spec 8.1.2.3/1
        [SCHEME, PATH, AUTHORITY],  # h2spec 8.1.2.3/2
        [METHOD, PATH, AUTHORITY],  # h2spec 8.1.2.3/3
        [METHOD, SCHEME, AUTHORITY],  # h2spec 8.1.2.3/4
        [METHOD, METHOD, SCHEME, PATH, AUTHORITY],  # h2spec 8.1.2.3/5
        [METHOD, (b":method", b"POST"), SCHEME, PATH, AUTHORITY],
        [METHOD, SCHEME, SCHEME, PATH, AUTHORITY],  # h2spec 8.1.2.3/6
        [METHOD, SCHEME, PATH, PATH, AUTHORITY],  # h2spec 8.1.2.3/7
        [METHOD, SCHEME, PATH, AUTHORITY, AUTHORITY],
        [(b":method", b"CONNECT"), SCHEME, PATH, AUTHORITY],  # 8.5: no :scheme/:path
        [METHOD, SCHEME, PATH, AUTHORITY, (b"host", b"elsewhere.example")],  # 8.3.1
        [METHOD, SCHEME, PATH, (b"host", b"a.example"), (b"host", b"a.example")],
        [METHOD, SCHEME, PATH],  # 8.3.1: neither :authority nor Host
        [METHOD, SCHEME, PATH, AUTHORITY, (b":protocol", b"websocket")],  # RFC 8441 4
    ],
    ids=[
        "unknown-pseudo",
        "response-pseudo",
        "pseudo-after-regular",
        "empty-path",
        "no-method",
        "no-scheme",
        "no-path",
        "duplicate-method",
        "two-methods",
        "duplicate-scheme",
        "duplicate-path",
        "duplicate-authority",
        "connect-with-path",
        "host-mismatch",
        "two-hosts",
        "no-authority-or-host",
        "protocol-without-connect",
    ],
)
def test_8_3_malformed_pseudo_headers(port: int, headers: list[tuple[bytes, bytes]]) -> None:
    _malformed(port, headers)


def test_8_3_1_host_differing_from_authority_is_malformed(port: int) -> None:
    """8.3.1: a Host naming another entity than :authority (SHOULD be malformed)."""
    _malformed(port, [*request_headers(), (b"host", b"elsewhere")])


def test_8_3_1_host_matching_authority_is_accepted(port: int) -> None:
    """The same authority in both is fine."""
    with RawH2(port) as conn:
        conn.handshake()
        conn.send(conn.headers(1, [*request_headers(), (b"host", b"localhost")]))
        assert conn.expect_response(1).status == 200


def test_8_3_pseudo_header_in_trailers(port: int) -> None:
    """h2spec 8.1.2.1/3."""
    with RawH2(port) as conn:
        conn.handshake()
        conn.send(
            conn.headers(1, request_headers(b"/echo", b"POST"), end_stream=False),
            DataFrame(1, b"test"),
            conn.headers(1, [(b"x-trailer", b"1"), (b":path", b"/")]),
        )
        conn.expect_stream_error(1, E.PROTOCOL_ERROR, no_response=True)


def test_8_3_trailers_only_regular_fields(port: int) -> None:
    """h2spec generic 4/4: a request with trailers."""
    response = h2_request(
        port, b"/echo", method=b"POST", body=b"body", trailers=[(b"x-trailer", b"t")]
    )
    assert (response.status, response.body) == (200, b"body")


# ---------------------------------------------------------------- 8.4 server push


def test_8_4_push_promise_from_client(port: int) -> None:
    """A client cannot push: PUSH_PROMISE from it -> PROTOCOL_ERROR."""
    with RawH2(port) as conn:
        conn.handshake()
        conn.send(conn.headers(1, request_headers(b"/echo", b"POST"), end_stream=False))
        block = encode(request_headers(b"/pushed"))
        conn.send(raw_frame(PUSH_PROMISE, END_HEADERS, 1, (2).to_bytes(4, "big") + block))
        conn.expect_connection_error(E.PROTOCOL_ERROR)


def test_8_4_server_does_not_push(port: int) -> None:
    """SETTINGS_ENABLE_PUSH 1 from the client does not make the server push anything."""
    with RawH2(port) as conn:
        conn.handshake({0x2: 1})
        conn.request(1)
        assert conn.expect_response(1).body == HELLO
        assert not [f for f in conn.received if f.type == PUSH_PROMISE]


# ---------------------------------------------------------------- message exchanges


def test_exchange_get(port: int) -> None:
    """h2spec generic 4/1."""
    response = h2_request(port)
    assert (response.status, response.body) == (200, HELLO)
    assert response.get(b"x-method") == b"GET"


def test_exchange_head(port: int) -> None:
    """h2spec generic 4/2: the response to HEAD has no content."""
    with RawH2(port) as conn:
        conn.handshake()
        conn.send(conn.headers(1, request_headers(method=b"HEAD")))
        ex = conn.expect_response(1)
        assert ex.status == 200
        assert ex.body == b""
        assert ex.get(b"content-length") == b"13"


def test_exchange_post(port: int) -> None:
    """h2spec generic 4/3."""
    response = h2_request(port, b"/echo", method=b"POST", body=b"x" * 100_000)
    assert (response.status, response.body) == (200, b"x" * 100_000)


def test_exchange_no_content(port: int) -> None:
    with RawH2(port) as conn:
        conn.handshake()
        conn.request(1, b"/no-content")
        ex = conn.expect_response(1)
        assert (ex.status, ex.body) == (204, b"")


def test_exchange_interleaved_streams(port: int) -> None:
    """Request bodies of several streams interleaved frame by frame."""
    with RawH2(port) as conn:
        conn.handshake()
        ids = (1, 3, 5)
        for sid in ids:
            conn.send(conn.headers(sid, request_headers(b"/echo", b"POST"), end_stream=False))
        for part in (b"a", b"b", b"c"):
            conn.send(*(DataFrame(sid, b"%d%s" % (sid, part)) for sid in ids))
        conn.send(*(DataFrame(sid, b"", flags=["END_STREAM"]) for sid in ids))
        for sid in ids:
            assert conn.expect_response(sid).body == b"%da%db%dc" % (sid, sid, sid)


def test_exchange_headers_frame_class(port: int) -> None:
    """A response's field block arrives in HEADERS (then CONTINUATION): never anything else."""
    with RawH2(port) as conn:
        conn.handshake()
        conn.request(1)
        conn.expect_response(1)
        first = next(f for f in conn.received if f.stream_id == 1)
        assert isinstance(first, HeadersFrame)
