"""Protocol detection without a server (``protocol/detect.py``), fed bytes directly.

``tests/http2/test_h2_semantics.py`` and ``tests/http2/test_h2_clients.py`` check the same
decisions from the wire (prior knowledge, h2c Upgrade with real clients);
these pin down the decision itself, byte by byte.
"""

from __future__ import annotations

import pytest

from asgiri.protocol.detect import Sniffed, h2c_upgrade, sniff, sniff_http2_only
from asgiri.protocol.events import Request
from asgiri.protocol.h2 import PREFACE

GET = b"GET / HTTP/1.1\r\nHost: test\r\n\r\n"


def sniff_reads(reads: list[bytes]) -> tuple[Sniffed, int]:
    """Sniff as a connection does: all bytes so far after each read.

    Returns the decision and how many reads it took.
    """
    seen = b""
    for count, data in enumerate(reads, 1):
        seen += data
        decision = sniff(seen)
        if decision is not Sniffed.MORE:
            return decision, count
    return Sniffed.MORE, len(reads)


def test_every_beginning_of_the_preface_waits_for_more() -> None:
    for n in range(len(PREFACE)):
        assert sniff(PREFACE[:n]) is Sniffed.MORE, n
    assert sniff(PREFACE) is Sniffed.HTTP2
    assert sniff(PREFACE + b"\x00\x00\x00\x04\x00\x00\x00\x00\x00") is Sniffed.HTTP2


@pytest.mark.parametrize("cut", range(1, len(PREFACE)))
def test_a_preface_split_anywhere_is_recognised_once_complete(cut: int) -> None:
    frames = b"\x00\x00\x00\x04\x00\x00\x00\x00\x00"
    assert sniff_reads([PREFACE[:cut], PREFACE[cut:] + frames]) == (Sniffed.HTTP2, 2)


def test_a_preface_one_byte_at_a_time() -> None:
    assert sniff_reads([bytes([b]) for b in PREFACE]) == (Sniffed.HTTP2, len(PREFACE))


@pytest.mark.parametrize(
    "data",
    [
        b"PRI * HTTP/2.0\r\n\r\nXX\r\n\r\n",  # the preface's body is wrong
        b"PRI * HTTP/2.0\r\n\r\n\r\n",  # cut short, then something else
        b"PRI * HTTP/2.0GARBAGE",
    ],
)
def test_a_broken_preface_is_http2s_to_refuse(data: bytes) -> None:
    # No HTTP/1.1 request line starts "PRI * HTTP/2.0": HTTP/2 answers it
    # with a PROTOCOL_ERROR GOAWAY (RFC 9113 3.4), not HTTP/1.1 with a 505.
    assert sniff(data) is Sniffed.HTTP2


@pytest.mark.parametrize(
    "data", [GET, b"P", b"POST / HTTP/1.1\r\n", b"PRI * HTTP/1.1\r\n", b"PRX", b"\r\n"]
)
def test_anything_else_is_http1_at_the_first_byte_that_differs(data: bytes) -> None:
    decision = sniff(data)
    if PREFACE.startswith(data):
        assert decision is Sniffed.MORE  # "P" alone could still be the preface
    else:
        assert decision is Sniffed.HTTP1


def test_http1_is_decided_in_the_read_where_the_preface_is_left() -> None:
    assert sniff_reads([b"PO", b"ST / HTTP/1.1\r\n"]) == (Sniffed.HTTP1, 1)
    assert sniff_reads([b"P", b"R", b"I", b" ", b"/"]) == (Sniffed.HTTP1, 5)


# ---------------------------------------------------------------- an HTTP/2-only port (--http 2)


@pytest.mark.parametrize(
    "data",
    [
        b"INVALID CONNECTION PREFACE\r\n\r\n",  # h2spec 3.5/2
        b"\x16\x03\x01\x02\x00",  # a TLS ClientHello on the cleartext port
        b"GET / HTTP/1.1 and more\r\n",
        b"GET  / HTTP/1.1\r\n",
        b"GET /\r\n",  # HTTP/0.9
        b"x" * 8193,  # no end of line in sight
    ],
)
def test_http2_only_takes_anything_but_a_request_line_for_a_bad_preface(data: bytes) -> None:
    # RFC 9113 3.4: a PROTOCOL_ERROR for HTTP/2 to answer; with HTTP/1.1 enabled
    # the same bytes are HTTP/1.1's to refuse.
    assert sniff_http2_only(data) is Sniffed.HTTP2
    assert sniff(data) is Sniffed.HTTP1


@pytest.mark.parametrize("version", [b"1.1", b"1.0", b"2.0"])
def test_http2_only_tells_a_request_line_from_garbage_at_its_end(version: bytes) -> None:
    line = b"GET /index.html?q=1 HTTP/" + version + b"\r\nHost: t\r\n\r\n"
    end = line.index(b"\n")
    # Every beginning of the line could still be a request line: wait.
    for n in range(1, end + 1):
        assert sniff_http2_only(line[:n]) is Sniffed.MORE, line[:n]
    # With its end, it is an HTTP/1.x client, which is told 505.
    assert sniff_http2_only(line[: end + 1]) is Sniffed.HTTP1
    assert sniff_http2_only(line) is Sniffed.HTTP1


def test_http2_only_still_knows_the_preface() -> None:
    assert sniff_http2_only(PREFACE[:5]) is Sniffed.MORE
    assert sniff_http2_only(PREFACE) is Sniffed.HTTP2
    assert sniff_http2_only(b"PRI * HTTP/2.0\r\n\r\nXX\r\n\r\n") is Sniffed.HTTP2
    assert sniff_http2_only(b"PRI * HTTP/1.1\r\n") is Sniffed.HTTP1


# ---------------------------------------------------------------- h2c Upgrade (RFC 7540 3.2)


def upgrade_request(*fields: tuple[bytes, bytes], expect: bool = False) -> Request:
    headers = [
        (b"host", b"test"),
        (b"connection", b"Upgrade, HTTP2-Settings"),
        (b"upgrade", b"h2c"),
        *fields,
    ]
    return Request(3, "POST", b"/u", b"q=1", headers, "1.1", expect, b"test")


SETTINGS = (b"http2-settings", b"AAMAAABkAARAAAAAAAIAAAAA")


def test_h2c_upgrade_becomes_stream_1_without_hop_by_hop_fields() -> None:
    request = upgrade_request(SETTINGS, (b"keep-alive", b"5"), (b"content-length", b"5"))
    upgrade = h2c_upgrade(request, 65535)
    assert upgrade is not None
    assert (upgrade.settings, upgrade.body_length) == (SETTINGS[1], 5)
    stream = upgrade.request
    assert (stream.stream_id, stream.http_version, stream.method) == (1, "2", "POST")
    assert (stream.raw_path, stream.query_string, stream.authority) == (b"/u", b"q=1", b"test")
    assert stream.headers == [(b"host", b"test"), (b"content-length", b"5")]
    assert request.stream_id == 3  # the HTTP/1.1 request itself is left as it was


@pytest.mark.parametrize(
    "fields",
    [
        (),  # no HTTP2-Settings
        (SETTINGS, SETTINGS),  # two
        (SETTINGS, (b"transfer-encoding", b"chunked")),  # a body HTTP/2 cannot be told the end of
        (SETTINGS, (b"content-length", b"65536")),  # more than one stream window
    ],
)
def test_h2c_upgrades_not_worth_switching_are_declined(fields: tuple[tuple[bytes, bytes]]) -> None:
    assert h2c_upgrade(upgrade_request(*fields), 65535) is None


def test_h2c_upgrade_waiting_for_100_continue_is_declined_unless_bodiless() -> None:
    # The 101 would wait for the body, the client for a 100 before sending it.
    declined = upgrade_request(SETTINGS, (b"content-length", b"3"), expect=True)
    assert h2c_upgrade(declined, 65535) is None
    bodiless = upgrade_request(SETTINGS, (b"content-length", b"0"), expect=True)
    assert h2c_upgrade(bodiless, 65535) is not None
