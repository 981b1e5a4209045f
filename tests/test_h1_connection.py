"""The sans-I/O HTTP/1.1 connection (``protocol/h1.py``), fed bytes directly.

These pin down what the connection decides on its own, without a server,
on both sides: which requests it refuses and with what status, what it
reports of the requests it accepts, how responses are framed, which request
is answered next, whether the connection is reused, and when an Upgrade is
offered.  ``tests/test_h1_protocol.py`` and ``tests/test_h1_bad_input.py``
check the same rules from the wire against a real server.
"""

from __future__ import annotations

import http
import random
from typing import Any

import pytest

from asgiri.protocol.errors import LocalProtocolError, RemoteProtocolError
from asgiri.protocol.events import Body, EndBody, Request
from asgiri.protocol.h1 import (
    COPY_LIMIT,
    AfterError,
    H1Connection,
    ReadState,
    UpgradeRequested,
    WriteState,
)


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
    assert [type(e) for e in events] == [UpgradeRequested]
    assert conn.read_state is ReadState.UPGRADE
    assert conn.accept_upgrade()[1] == b"after the switch"
    conn = H1Connection(max_requests=1)
    assert len(conn.receive_data(GET + upgrade + b"rest")) == 2
    assert conn.holding and conn.read_state is ReadState.IDLE
    # Answered first, the GET leaves the Upgrade request next in line: offered.
    assert conn.next_request() == 1
    conn.send_response(200, [], b"", b"", True)
    assert [type(e) for e in conn.receive_data(b"")] == [UpgradeRequested]
    assert conn.accept_upgrade()[1] == b"rest"


def test_bytes_held_behind_a_bad_request_still_get_its_error() -> None:
    conn = H1Connection(max_requests=1)
    conn.receive_data(GET + b"GARBAGE\r\n\r\n" + GET)
    with pytest.raises(RemoteProtocolError) as info:
        conn.receive_data(b"")
    assert info.value.status == 400


# ---------------------------------------------------------------- both sides: cycles

HELLO = b"GET /hello HTTP/1.1\r\nHost: test\r\n\r\n"


def answer(
    conn: H1Connection,
    status: int = 200,
    headers: list[tuple[bytes, bytes]] | None = None,
    body: bytes = b"ok",
    *,
    end: bool = True,
) -> bytes:
    """Make the next waiting request the one answered and send a response head (+ body)."""
    assert conn.next_request() is not None
    return b"".join(conn.send_response(status, headers or [], b"", body, end))


def head_of(data: bytes) -> list[bytes]:
    """The lines of a response head, lower-cased, status line first."""
    return data.partition(b"\r\n\r\n")[0].lower().split(b"\r\n")


def test_a_request_answered_leaves_the_connection_ready_for_the_next() -> None:
    conn = H1Connection()
    events = conn.receive_data(HELLO)
    assert [type(e) for e in events] == [Request, EndBody]
    assert conn.read_state is ReadState.IDLE and conn.write_state is WriteState.IDLE
    assert conn.next_request() == 1
    assert conn.write_state is WriteState.RESPONSE
    data = b"".join(conn.send_response(200, [(b"x-a", b"1")], b"server: t\r\n", b"hello", True))
    assert data == (b"HTTP/1.1 200 OK\r\nserver: t\r\nx-a: 1\r\ncontent-length: 5\r\n\r\nhello")
    assert conn.write_state is WriteState.IDLE
    assert conn.next_request() is None  # nothing waits
    request, _ = conn.receive_data(HELLO)
    assert isinstance(request, Request) and request.stream_id == 2
    assert conn.next_request() == 2


def test_http10_closes_by_default_and_ignores_what_follows() -> None:
    conn = H1Connection()
    events = conn.receive_data(b"GET / HTTP/1.0\r\n\r\n" + HELLO)
    assert [type(e) for e in events] == [Request, EndBody]
    assert conn.read_state is ReadState.CLOSED
    data = answer(conn)
    # HTTP/1.0 closes unless asked otherwise: nothing needs saying.
    assert b"connection" not in data.lower()
    assert conn.write_state is WriteState.CLOSE
    assert conn.receive_data(HELLO) == []


def test_http10_keep_alive_is_said_and_kept() -> None:
    conn = H1Connection()
    conn.receive_data(b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
    assert b"connection: keep-alive" in head_of(answer(conn))
    assert conn.write_state is WriteState.IDLE


def test_http10_body_of_unknown_length_is_close_delimited() -> None:
    conn = H1Connection()
    conn.receive_data(b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
    lines = head_of(answer(conn, body=b"", end=False))
    assert b"connection: close" in lines
    assert not [line for line in lines if line.startswith((b"content-length", b"transfer-"))]
    assert conn.send_data(b"abc", False) == [b"abc"]
    assert conn.send_data(b"", True) == []
    assert conn.write_state is WriteState.CLOSE


def test_client_connection_close_is_answered_with_close_and_nothing_after_is_read() -> None:
    conn = H1Connection()
    events = conn.receive_data(b"GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n" + HELLO)
    assert [type(e) for e in events] == [Request, EndBody]
    assert b"connection: close" in head_of(answer(conn))
    assert conn.write_state is WriteState.CLOSE
    assert conn.next_request() is None


def test_app_sent_connection_close_ends_the_connection_once_said() -> None:
    conn = H1Connection()
    conn.receive_data(HELLO + HELLO)
    lines = head_of(answer(conn, headers=[(b"Connection", b"close")]))
    assert lines.count(b"connection: close") == 1
    assert conn.write_state is WriteState.CLOSE
    assert conn.next_request() is None  # the second request is never answered


def test_draining_says_close_on_the_next_head() -> None:
    conn = H1Connection()
    conn.receive_data(HELLO)
    conn.close_when_done()
    assert b"connection: close" in head_of(answer(conn))
    assert conn.write_state is WriteState.CLOSE


def test_draining_after_a_keep_alive_head_answers_the_waiting_request_then_closes() -> None:
    conn = H1Connection()
    conn.receive_data(HELLO + HELLO)
    assert b"connection: close" not in head_of(answer(conn, end=False))
    conn.close_when_done()
    conn.send_data(b"", True)
    # The head promised keep-alive and the client sent its next request
    # already: it is answered, saying close.
    assert conn.write_state is WriteState.IDLE
    assert b"connection: close" in head_of(answer(conn))
    assert conn.write_state is WriteState.CLOSE


def test_draining_with_nothing_waiting_closes_after_the_response() -> None:
    conn = H1Connection()
    conn.receive_data(HELLO)
    answer(conn, end=False)
    conn.close_when_done()
    conn.send_data(b"", True)
    assert conn.write_state is WriteState.CLOSE


def test_pipelined_requests_are_answered_one_at_a_time_in_order() -> None:
    conn = H1Connection()
    events = conn.receive_data(HELLO + POST_CL + GET)
    assert [e.raw_path for e in events if isinstance(e, Request)] == [b"/hello", b"/cl", b"/g"]
    assert conn.waiting == 3
    order = []
    while (stream_id := conn.next_request()) is not None:
        order.append(stream_id)
        assert conn.next_request() is None  # one response at a time
        conn.send_response(200, [], b"", b"", False)
        assert conn.next_request() is None
        conn.send_data(b"done", True)
    assert order == [1, 2, 3]
    assert conn.waiting == 0 and conn.write_state is WriteState.IDLE


def test_a_response_before_the_whole_request_body_closes_the_connection() -> None:
    conn = H1Connection()
    conn.receive_data(b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 10\r\n\r\nabc")
    assert conn.read_state is ReadState.BODY
    answer(conn, status=413)
    # The rest of the body is never read, so nothing after it can be.
    assert conn.write_state is WriteState.CLOSE


def test_a_body_complete_before_the_response_ends_keeps_the_connection() -> None:
    conn = H1Connection()
    conn.receive_data(b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 10\r\n\r\nabc")
    answer(conn, end=False)
    assert [type(e) for e in conn.receive_data(b"defghij")] == [Body, EndBody]
    conn.send_data(b"", True)
    assert conn.write_state is WriteState.IDLE


def test_head_response_keeps_its_length_and_sends_no_body() -> None:
    conn = H1Connection()
    conn.receive_data(b"HEAD / HTTP/1.1\r\nHost: t\r\n\r\n")
    data = answer(conn, headers=[(b"content-length", b"5")], body=b"hello")
    assert data.endswith(b"content-length: 5\r\n\r\n")
    conn.receive_data(b"HEAD / HTTP/1.1\r\nHost: t\r\n\r\n")
    data = answer(conn, body=b"", end=False)
    # No length known and none sent: no chunked framing on a body never sent.
    assert b"transfer-encoding" not in data and b"content-length" not in data
    assert conn.send_data(b"body", False) == []
    conn.send_data(b"", True)
    assert conn.write_state is WriteState.IDLE


@pytest.mark.parametrize("status", [204, 304])
def test_204_and_304_have_no_body_and_no_length(status: int) -> None:
    conn = H1Connection()
    conn.receive_data(HELLO)
    data = answer(conn, status=status, body=b"dropped")
    assert data == b"HTTP/1.1 %d %b\r\n\r\n" % (status, http.HTTPStatus(status).phrase.encode())
    assert conn.write_state is WriteState.IDLE


def test_a_streamed_body_is_chunked_and_carries_trailers() -> None:
    conn = H1Connection()
    conn.receive_data(HELLO)
    assert conn.next_request() == 1
    head = b"".join(conn.send_response(200, [], b"", b"ab", False, True))
    assert head.endswith(b"transfer-encoding: chunked\r\n\r\n2\r\nab\r\n")
    assert b"".join(conn.send_data(b"cde", False)) == b"3\r\ncde\r\n"
    assert b"".join(conn.send_data(b"x" * COPY_LIMIT, False)) == (
        b"%x\r\n" % COPY_LIMIT + b"x" * COPY_LIMIT + b"\r\n"
    )
    assert b"".join(conn.send_trailers([(b"x-sum", b"1")])) == b"0\r\nx-sum: 1\r\n\r\n"
    assert conn.write_state is WriteState.IDLE


def test_trailers_are_dropped_where_the_body_cannot_carry_them() -> None:
    conn = H1Connection()
    conn.receive_data(b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
    assert conn.next_request() == 1
    head = b"".join(conn.send_response(200, [], b"", b"ab", False, True))
    assert b"chunked" not in head
    assert conn.send_trailers([(b"x-sum", b"1")]) == []
    assert conn.write_state is WriteState.CLOSE


def test_chunked_request_body_and_trailers_reach_the_events() -> None:
    conn = H1Connection()
    events = conn.receive_data(POST_CHUNKED)
    assert summary(events) == [
        ("request", b"/ch"),
        ("body", b"hello" + b"\r\n" * 5),
        ("end", repr([(b"x-t", b"1")]).encode()),
    ]


def test_100_continue_only_before_the_head_and_only_to_http11() -> None:
    conn = H1Connection()
    request, *_ = conn.receive_data(
        b"POST / HTTP/1.1\r\nHost: t\r\nExpect: 100-continue\r\nContent-Length: 3\r\n\r\n"
    )
    assert isinstance(request, Request) and request.expect_continue
    assert conn.send_informational(100, []) == b""  # no request is being answered yet
    assert conn.next_request() == 1
    assert conn.send_informational(100, []) == b"HTTP/1.1 100 Continue\r\n\r\n"
    early = conn.send_informational(103, [(b"link", b"</a.css>; rel=preload")])
    assert early == b"HTTP/1.1 103 Early Hints\r\nlink: </a.css>; rel=preload\r\n\r\n"
    conn.send_response(200, [], b"", b"", False)
    assert conn.send_informational(100, []) == b""  # the final head went out
    conn = H1Connection()
    conn.receive_data(b"POST / HTTP/1.0\r\nExpect: 100-continue\r\nContent-Length: 3\r\n\r\n")
    assert conn.next_request() == 1
    # RFC 9110 15.2: no 1xx to an HTTP/1.0 client.
    assert conn.send_informational(100, []) == b""


def test_what_the_app_sends_wrong_changes_nothing() -> None:
    conn = H1Connection()
    conn.receive_data(HELLO)
    assert conn.next_request() == 1
    for headers in ([(b"bad name", b"x")], [(b"x", b"a\r\nb")], [(b"content-length", b"x")]):
        with pytest.raises(LocalProtocolError):
            conn.send_response(200, headers, b"", b"", True)
        assert conn.write_state is WriteState.RESPONSE
    conn.send_response(200, [(b"content-length", b"3")], b"", b"ab", False)
    with pytest.raises(LocalProtocolError, match="shorter"):
        conn.send_data(b"", True)
    assert conn.write_state is WriteState.BODY  # not complete: the server must cut it
    with pytest.raises(LocalProtocolError, match="longer"):
        conn.send_data(b"cd", False)


def test_responses_out_of_turn_are_refused() -> None:
    conn = H1Connection()
    with pytest.raises(LocalProtocolError):
        conn.send_response(200, [], b"", b"", True)
    with pytest.raises(LocalProtocolError):
        conn.send_data(b"x", True)
    conn.receive_data(HELLO)
    answer(conn)
    with pytest.raises(LocalProtocolError):
        conn.send_trailers([])


# ---------------------------------------------------------------- both sides: Upgrade

WS_UPGRADE = (
    b"GET /ws HTTP/1.1\r\nHost: t\r\nConnection: Upgrade\r\nUpgrade: WebSocket\r\n"
    b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
)


def test_an_upgrade_is_offered_and_accepted() -> None:
    conn = H1Connection()
    events = conn.receive_data(WS_UPGRADE + b"\x81\x00")
    assert len(events) == 1
    offer = events[0]
    assert isinstance(offer, UpgradeRequested)
    assert offer.protocol == b"websocket" and offer.request.raw_path == b"/ws"
    info, data = conn.accept_upgrade()
    assert info.stream_id == 1 and info.http11
    assert data == b"\x81\x00"
    assert conn.read_state is ReadState.SWITCHED and conn.write_state is WriteState.SWITCHED
    with pytest.raises(LocalProtocolError):
        conn.receive_data(b"more")


@pytest.mark.parametrize(
    "framing",
    [
        b"Content-Length: 5\r\n\r\nhello",
        b"Transfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
    ],
)
def test_a_declined_upgrade_is_http11_body_included(framing: bytes) -> None:
    conn = H1Connection()
    data = b"POST /up HTTP/1.1\r\nHost: t\r\nConnection: Upgrade\r\nUpgrade: foo\r\n" + framing
    events = conn.receive_data(data + GET)
    assert [type(e) for e in events] == [UpgradeRequested]
    assert conn.next_request() is None  # undecided: not answerable yet
    assert summary(conn.decline_upgrade()) == [
        ("request", b"/up"),
        ("body", b"hello"),
        ("end", b"None"),
        ("request", b"/g"),
        ("end", b"None"),
    ]
    assert conn.next_request() == 1
    conn.send_response(200, [], b"", b"", True)
    assert conn.write_state is WriteState.IDLE
    assert conn.next_request() == 2


def test_a_declined_upgrade_waits_for_its_body() -> None:
    conn = H1Connection()
    head = b"POST /up HTTP/1.1\r\nHost: t\r\nConnection: Upgrade\r\nUpgrade: foo\r\n"
    conn.receive_data(head + b"Content-Length: 5\r\n\r\nhe")
    assert summary(conn.decline_upgrade()) == [("request", b"/up"), ("body", b"he")]
    assert conn.read_state is ReadState.BODY
    assert summary(conn.receive_data(b"llo")) == [("body", b"llo"), ("end", b"None")]


def test_an_upgrade_behind_other_requests_is_not_offered() -> None:
    # A 101 cannot overtake the response owed to the request before it.
    conn = H1Connection()
    events = conn.receive_data(HELLO + WS_UPGRADE + HELLO)
    assert [type(e) for e in events] == [Request, EndBody] * 3
    conn = H1Connection()
    conn.receive_data(HELLO)
    assert conn.next_request() == 1
    events = conn.receive_data(WS_UPGRADE)
    assert [type(e) for e in events] == [Request, EndBody]


def test_connect_is_served_as_http11() -> None:
    conn = H1Connection()
    events = conn.receive_data(b"CONNECT /t HTTP/1.1\r\nHost: t\r\n\r\n" + HELLO)
    assert [type(e) for e in events] == [Request, EndBody] * 2


# ---------------------------------------------------------------- errors

ERRORS = {
    "garbage": (b"GARBAGE\r\n\r\n", 400),
    "missing host": (b"GET / HTTP/1.1\r\n\r\n", 400),
    "duplicate host": (b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", 400),
    "target too long": (b"GET /" + b"a" * 9000 + b" HTTP/1.1\r\nHost: t\r\n\r\n", 414),
    "header section too large": (b"GET / HTTP/1.1\r\nHost: t\r\nX: " + b"a" * 17000, 431),
    "too many fields": (b"GET / HTTP/1.1\r\nHost: t\r\n" + b"X: 1\r\n" * 101 + b"\r\n", 431),
    "body over the limit": (b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 2000\r\n\r\n", 413),
    "gzip coding": (b"POST / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: gzip, chunked\r\n\r\n", 501),
    "HTTP/2 preface": (b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", 505),
    "HTTP/2.0 request line": (b"GET / HTTP/2.0\r\nHost: t\r\n\r\n", 505),
    "smuggling CL+TE": (
        b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n",
        400,
    ),
}


@pytest.mark.parametrize("name", sorted(ERRORS))
def test_bad_input_raises_the_status_to_answer(name: str) -> None:
    data, status = ERRORS[name]
    conn = H1Connection(max_body=1024)
    with pytest.raises(RemoteProtocolError) as info:
        conn.receive_data(data)
    assert info.value.status == status
    assert conn.read_state is ReadState.ERROR
    assert conn.after_error is AfterError.ANSWER
    assert conn.receive_data(HELLO) == []  # nothing more is parsed


def test_bad_input_answered_in_place_of_a_response_not_started() -> None:
    conn = H1Connection()
    conn.receive_data(b"POST / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n")
    assert conn.next_request() == 1
    with pytest.raises(RemoteProtocolError):
        conn.receive_data(b"zz\r\n")
    assert conn.after_error is AfterError.ANSWER
    assert conn.write_state is WriteState.CLOSE


def test_bad_input_after_the_response_started_cuts_it() -> None:
    conn = H1Connection()
    conn.receive_data(b"POST / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n")
    answer(conn, end=False)
    with pytest.raises(RemoteProtocolError):
        conn.receive_data(b"zz\r\n")
    assert conn.after_error is AfterError.CLOSE


def test_bad_input_behind_the_request_answered_lets_its_response_finish() -> None:
    conn = H1Connection()
    conn.receive_data(HELLO + HELLO)
    assert conn.next_request() == 1
    with pytest.raises(RemoteProtocolError):
        conn.receive_data(b"GARBAGE\r\n\r\n")
    assert conn.after_error is AfterError.FINISH
    assert conn.waiting == 0  # the request after it is dropped too
    # The response under way still goes out, and says the connection ends.
    assert b"connection: close" in head_of(b"".join(conn.send_response(200, [], b"", b"", True)))
    assert conn.write_state is WriteState.CLOSE


def test_requests_parsed_in_a_read_that_breaks_are_forgotten() -> None:
    # Their events are lost with the error: nothing may be answered for them.
    conn = H1Connection()
    with pytest.raises(RemoteProtocolError):
        conn.receive_data(HELLO + HELLO + b"GARBAGE\r\n\r\n")
    assert conn.after_error is AfterError.ANSWER
    assert conn.next_request() is None
