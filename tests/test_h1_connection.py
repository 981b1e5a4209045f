"""The sans-I/O HTTP/1.1 connection (``protocol/h1.py``), fed bytes directly.

These pin down what the parser layer decides on its own, without a server:
which requests it refuses and with what status, and what it reports of the
requests it accepts.  ``tests/test_h1_bad_input.py`` checks the same rules
from the wire against a real server.
"""

from __future__ import annotations

import random
from typing import Any

import pytest

from asgiri.protocol.errors import RemoteProtocolError
from asgiri.protocol.events import Body, EndBody, Request
from asgiri.protocol.h1 import H1Connection


def test_http10_with_transfer_encoding_is_refused() -> None:
    conn = H1Connection()
    data = (
        b"POST /echo HTTP/1.0\r\nConnection: keep-alive\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"3\r\nabc\r\n0\r\n\r\n"
        b"GET /smuggled HTTP/1.1\r\nHost: test\r\n\r\n"
    )
    with pytest.raises(RemoteProtocolError, match=r"HTTP/1\.0") as info:
        conn.receive_data(data)
    assert info.value.status == 400


def test_http11_chunked_and_http10_content_length_are_accepted() -> None:
    # Controls for the case above: the same body framed the way each version allows.
    conn = H1Connection()
    events = conn.receive_data(
        b"POST /a HTTP/1.1\r\nHost: test\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n"
    )
    assert [type(e) for e in events] == [Request, Body, EndBody]
    conn = H1Connection()
    events = conn.receive_data(
        b"POST /a HTTP/1.0\r\nConnection: keep-alive\r\nContent-Length: 3\r\n\r\nabc"
    )
    assert [type(e) for e in events] == [Request, Body, EndBody]


@pytest.mark.parametrize(
    ("target", "authority"),
    [
        (b"http://evil.example/path?x=1", b"evil.example"),
        (b"http://evil.example:8080/path", b"evil.example:8080"),
        (b"https://user:pw@evil.example/path", b"evil.example"),
        (b"http://[::1]:81/path", b"[::1]:81"),
        (b"http://evil.example?x=1", b"evil.example"),
    ],
)
def test_absolute_form_target_authority_replaces_host(target: bytes, authority: bytes) -> None:
    # RFC 9112 3.2.2: the target's authority wins over the Host header.
    conn = H1Connection()
    request, _ = conn.receive_data(
        b"GET %b HTTP/1.1\r\nHost: good.example\r\nX: y\r\n\r\n" % target
    )
    assert isinstance(request, Request)
    assert request.authority == authority
    assert request.headers == [(b"host", authority), (b"x", b"y")]
    assert request.raw_path == (b"/path" if b"/path" in target else b"/")


def test_absolute_form_on_http10_without_host_adds_one() -> None:
    conn = H1Connection()
    request, _ = conn.receive_data(b"GET http://evil.example/p HTTP/1.0\r\nX: y\r\n\r\n")
    assert isinstance(request, Request)
    assert request.authority == b"evil.example"
    assert request.headers == [(b"host", b"evil.example"), (b"x", b"y")]


def test_origin_form_keeps_the_host_header() -> None:
    conn = H1Connection()
    request, _ = conn.receive_data(b"GET /p HTTP/1.1\r\nHost: good.example\r\n\r\n")
    assert isinstance(request, Request)
    assert request.authority == b"good.example"
    assert request.headers == [(b"host", b"good.example")]


def test_absolute_form_still_needs_host_on_http11() -> None:
    # RFC 9112 3.2: an HTTP/1.1 request without Host is 400 whatever its target.
    with pytest.raises(RemoteProtocolError, match="Host") as info:
        H1Connection().receive_data(b"GET http://evil.example/p HTTP/1.1\r\n\r\n")
    assert info.value.status == 400


# ---------------------------------------------------------------- bounded parsing

GET = b"GET /g HTTP/1.1\r\nHost: test\r\n\r\n"
POST_CL = b"POST /cl HTTP/1.1\r\nHost: test\r\nContent-Length: 5\r\n\r\nhello"
POST_CHUNKED = (
    b"POST /ch HTTP/1.1\r\nHost: test\r\nTransfer-Encoding: chunked\r\n\r\n"
    # Chunk data that looks like framing: ten bytes of blank lines.
    b"5;ext=1\r\nhello\r\n0a\r\n" + b"\r\n" * 5 + b"\r\n0\r\nX-T: 1\r\n\r\n"
)


def summary(events: list[Any]) -> list[tuple[str, bytes]]:
    """Events as comparable tuples, body pieces joined per request."""
    out: list[tuple[str, bytes]] = []
    for event in events:
        if isinstance(event, Request):
            out.append(("request", event.raw_path))
        elif isinstance(event, Body):
            if out and out[-1][0] == "body":
                out[-1] = ("body", out[-1][1] + event.data)
            else:
                out.append(("body", event.data))
        else:
            out.append(("end", repr(event.trailers).encode()))
    return out


def parse_all(conn: H1Connection, reads: list[bytes]) -> tuple[list[Any], int]:
    """Feed ``reads``, then drain what is held; returns the events and the most
    requests any single call produced."""
    events: list[Any] = []
    most = 0
    for data in [*reads, b""]:
        batch = conn.receive_data(data)
        while True:
            most = max(most, sum(isinstance(e, Request) for e in batch))
            events.extend(batch)
            if not conn.holding:
                break
            batch = conn.receive_data(b"")
    return events, most


def test_one_read_of_many_requests_is_parsed_a_few_at_a_time() -> None:
    data = GET * 1000
    conn = H1Connection(max_requests=4)
    first = conn.receive_data(data)
    assert [type(e) for e in first] == [Request, EndBody] * 4
    assert conn.holding
    events, most = parse_all(conn, [])
    assert most == 4
    assert sum(isinstance(e, Request) for e in first + events) == 1000
    assert not conn.holding


def test_a_chunked_body_does_not_hide_the_requests_after_it() -> None:
    # The framing is walked without scanning chunk data: 64 KiB chunks, then
    # a tiny one, then a flood of small requests, all in one read.
    big = b"10000\r\n" + b"\r\n\r\n" * 16384 + b"\r\n"
    data = (
        b"POST /ch HTTP/1.1\r\nHost: test\r\nTransfer-Encoding: chunked\r\n\r\n"
        + big * 3
        + b"1\r\nx\r\n0\r\n\r\n"
        + GET * 2000
    )
    conn = H1Connection(max_requests=3)
    first = conn.receive_data(data)
    assert sum(isinstance(e, Request) for e in first) == 3
    assert sum(len(e.data) for e in first if isinstance(e, Body)) == 3 * 65536 + 1
    events, most = parse_all(conn, [])
    assert most == 3
    assert sum(isinstance(e, Request) for e in first + events) == 2001


@pytest.mark.parametrize("seed", range(100))
def test_bounded_parsing_sees_what_unbounded_parsing_sees(seed: int) -> None:
    # Random pipelines of every framing, cut into random reads: the same events
    # come out, never more than the bound per call.
    rng = random.Random(seed)
    messages = [rng.choice([GET, POST_CL, POST_CHUNKED]) for _ in range(60)]
    stream = b"".join(messages)
    cuts = sorted(rng.sample(range(1, len(stream)), rng.choice([3, 25, 400, 3000])))
    reads = [stream[a:b] for a, b in zip([0, *cuts], [*cuts, len(stream)], strict=True)]
    expected = H1Connection().receive_data(stream)
    bounded, most = parse_all(H1Connection(max_requests=2), reads)
    assert summary(bounded) == summary(expected)
    assert most <= 2
    assert sum(isinstance(e, Request) for e in bounded) == 60


def test_bytes_after_an_upgrade_include_what_was_held() -> None:
    upgrade = b"GET /ws HTTP/1.1\r\nHost: test\r\nConnection: Upgrade\r\nUpgrade: other\r\n\r\n"
    conn = H1Connection(max_requests=1)
    events = conn.receive_data(upgrade + b"after the switch")
    assert [type(e) for e in events] == [Request, EndBody]
    assert conn.upgraded
    assert conn.trailing_data == b"after the switch"
    conn = H1Connection(max_requests=1)
    assert len(conn.receive_data(GET + upgrade + b"rest")) == 2
    assert conn.holding and not conn.upgraded
    assert [type(e) for e in conn.receive_data(b"")] == [Request, EndBody]
    assert conn.upgraded and conn.trailing_data == b"rest"


def test_bytes_held_behind_a_bad_request_still_get_its_error() -> None:
    conn = H1Connection(max_requests=1)
    conn.receive_data(GET + b"GARBAGE\r\n\r\n" + GET)
    with pytest.raises(RemoteProtocolError) as info:
        conn.receive_data(b"")
    assert info.value.status == 400
