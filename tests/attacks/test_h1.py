"""HTTP/1.1 attack classes: request smuggling by framing, bad bytes, a pipelining flood.

Every request that frames its body ambiguously gets ``400`` (``501`` for a
transfer coding the server does not implement) with ``Connection: close``,
then the connection closes: the request smuggled behind it is never
answered.  Lenient-looking but valid framing (optional whitespace, leading
zeros) is served with the body the framing says, and the request pipelined
after it is answered as the next one.  See docs/security.md.
"""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Iterator

import psutil
import pytest

from tests.support.h1_client import RawClient, exchange, wait_until
from tests.support.servers import CLIServer

from .harness import MIB, port_of, running, under_attack

pytestmark = pytest.mark.timeout(60)

SMUGGLED = b"GET /ok?smuggled HTTP/1.1\r\nHost: t\r\n\r\n"
#: The request after an accepted one: answered, and the connection ends.
NEXT = b"GET /ok HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n"


@pytest.fixture(scope="module")
def server() -> Iterator[CLIServer]:
    # --timeout-write 1: a client that reads nothing is dropped quickly.
    with running("--timeout-write", "1", "--timeout-keep-alive", "2") as srv:
        for _ in range(3):
            probe(port_of(srv))  # warm-up: first allocations are not growth
        yield srv


def probe(port: int) -> None:
    response = exchange(port, b"GET /ok HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
    assert (response.status, response.body) == (200, b"ok"), response


def assert_refused(port: int, data: bytes, status: int = 400) -> None:
    """``data`` and a request smuggled behind it get one answer, ``status``, then EOF."""
    with RawClient(port) as client:
        client.send(data + SMUGGLED)
        response = client.read_response()
        assert response.status == status, (data, response)
        assert response.get(b"connection") == b"close", (data, response)
        client.assert_closed()


def assert_framed(port: int, data: bytes, length: int) -> None:
    """``data`` (a POST /echo) is served with a body of ``length`` bytes; the next request too."""
    with RawClient(port) as client:
        client.send(data + NEXT)
        response = client.read_response()
        assert (response.status, response.body) == (200, b"%d bytes" % length), (data, response)
        after = client.read_response()
        assert (after.status, after.body) == (200, b"ok"), (data, after)
        client.assert_closed()


def post(*fields: bytes, version: bytes = b"1.1") -> bytes:
    return b"POST /echo HTTP/%b\r\nHost: t\r\n%b\r\n" % (
        version,
        b"".join(field + b"\r\n" for field in fields),
    )


CHUNKED = b"Transfer-Encoding: chunked"


def check_all(port: int, refused: dict[str, bytes], framed: dict[str, tuple[bytes, int]]) -> None:
    for name, data in refused.items():
        try:
            assert_refused(port, data)
        except AssertionError as exc:
            raise AssertionError(f"{name}: {exc}") from None
    for name, (data, length) in framed.items():
        try:
            assert_framed(port, data, length)
        except AssertionError as exc:
            raise AssertionError(f"{name}: {exc}") from None


# ---------------------------------------------------------------- chunk lines (h11 CVE-2025-43859)

BAD_CHUNK_LINES = {
    "bare LF after the chunk size": post(CHUNKED) + b"5\nhello\r\n0\r\n\r\n",
    "bare CR after the chunk size": post(CHUNKED) + b"5\rhello\r\n0\r\n\r\n",
    "bare LF after the chunk data": post(CHUNKED) + b"5\r\nhello\n0\r\n\r\n",
    "bare CR after the chunk data": post(CHUNKED) + b"5\r\nhello\r0\r\n\r\n",
    "two other bytes after the chunk data": post(CHUNKED) + b"5\r\nhelloXX0\r\n\r\n",
    "no line end after the chunk data": post(CHUNKED) + b"5\r\nhello0\r\n\r\n",
    "bare LF after the last chunk": post(CHUNKED) + b"5\r\nhello\r\n0\n\r\n",
    "bare LF ending the trailers": post(CHUNKED) + b"5\r\nhello\r\n0\r\n\n",
    "bare LF in a chunk extension": post(CHUNKED) + b"5;a\nb\r\nhello\r\n0\r\n\r\n",
    "bare CR in a chunk extension": post(CHUNKED) + b"5;a\rb\r\nhello\r\n0\r\n\r\n",
    "space before the chunk size": post(CHUNKED) + b" 5\r\nhello\r\n0\r\n\r\n",
    "space after the chunk size": post(CHUNKED) + b"5 \r\nhello\r\n0\r\n\r\n",
    "tab after the chunk size": post(CHUNKED) + b"5\t\r\nhello\r\n0\r\n\r\n",
    "0x chunk size": post(CHUNKED) + b"0x5\r\nhello\r\n0\r\n\r\n",
    "+ chunk size": post(CHUNKED) + b"+5\r\nhello\r\n0\r\n\r\n",
    "chunk size overflow": post(CHUNKED) + b"1" + b"0" * 16 + b"5\r\nhello\r\n0\r\n\r\n",
    "empty chunk size": post(CHUNKED) + b"\r\nhello\r\n0\r\n\r\n",
    "chunk longer than its size": post(CHUNKED) + b"3\r\nhello\r\n0\r\n\r\n",
}


def test_bad_line_endings_in_chunk_lines(server: CLIServer) -> None:
    port = port_of(server)
    framed = {
        "chunk extension": (post(CHUNKED) + b"5;name=value\r\nhello\r\n0\r\n\r\n", 5),
        "upper-case hex size": (post(CHUNKED) + b"A\r\nhellohello\r\n0\r\n\r\n", 10),
        "leading zeros": (post(CHUNKED) + b"0005\r\nhello\r\n0\r\n\r\n", 5),
    }
    with under_attack(server, lambda: probe(port)):
        check_all(port, BAD_CHUNK_LINES, framed)


# ----------------------------------------------------------- Content-Length (llhttp CVE-2024-27982)

BAD_CONTENT_LENGTHS = {
    "+5": post(b"Content-Length: +5") + b"hello",
    "-5": post(b"Content-Length: -5") + b"hello",
    "5 5": post(b"Content-Length: 5 5") + b"hello",
    "0x5": post(b"Content-Length: 0x5") + b"hello",
    "5.0": post(b"Content-Length: 5.0") + b"hello",
    "5e0": post(b"Content-Length: 5e0") + b"hello",
    "empty": post(b"Content-Length:") + b"hello",
    "list of the same value": post(b"Content-Length: 5, 5") + b"hello",
    "list of two values": post(b"Content-Length: 5, 0") + b"hello",
    "duplicate, same value": post(b"Content-Length: 5", b"Content-Length: 5") + b"hello",
    "duplicate, other value": post(b"Content-Length: 0", b"Content-Length: 5") + b"hello",
    "vertical tab before the value": post(b"Content-Length: \x0b5") + b"hello",
    "NUL after the value": post(b"Content-Length: 5\x00") + b"hello",
    "space before the field line": post(b" Content-Length: 5") + b"hello",
    "space before the colon": post(b"Content-Length : 5") + b"hello",
    "overflow": post(b"Content-Length: 184467440737095516160") + b"hello",
}


def test_obfuscated_content_length(server: CLIServer) -> None:
    port = port_of(server)
    framed = {
        "spaces around the value": (post(b"Content-Length:   5   ") + b"hello", 5),
        "tab before the value": (post(b"Content-Length:\t5") + b"hello", 5),
        "leading zeros": (post(b"Content-Length: 005") + b"hello", 5),
        "upper-case name": (post(b"CONTENT-LENGTH: 5") + b"hello", 5),
    }
    with under_attack(server, lambda: probe(port)):
        check_all(port, BAD_CONTENT_LENGTHS, framed)


# ---------------------------------------- Transfer-Encoding (gunicorn CVE-2024-1135, CVE-2024-6827)

#: A chunked body whose "end" smuggles a request if the chunked coding is ignored.
BODY = b"5\r\nhello\r\n0\r\n\r\n"

BAD_TRANSFER_ENCODINGS = {
    "chunked, identity": post(b"Transfer-Encoding: chunked, identity") + BODY,
    "chunked, gzip (chunked not last)": post(b"Transfer-Encoding: chunked, gzip") + BODY,
    "identity": post(b"Transfer-Encoding: identity") + BODY,
    "xchunked": post(b"Transfer-Encoding: xchunked") + BODY,
    "chunkedx": post(b"Transfer-Encoding: chunkedx") + BODY,
    "chunked with a parameter": post(b"Transfer-Encoding: chunked;q=1") + BODY,
    "chunked twice in two fields": post(CHUNKED, CHUNKED) + BODY,
    "chunked then identity in two fields": post(CHUNKED, b"Transfer-Encoding: identity") + BODY,
    "vertical tab before chunked": post(b"Transfer-Encoding: \x0bchunked") + BODY,
    "form feed after chunked": post(b"Transfer-Encoding: chunked\x0c") + BODY,
    "tab before the colon": post(b"Transfer-Encoding\t: chunked") + BODY,
    "obs-fold": post(b"Transfer-Encoding:", b" chunked") + BODY,
    "obs-fold with tab": post(b"Transfer-Encoding: x", b"\tchunked") + BODY,
    "TE then CL": post(CHUNKED, b"Content-Length: 4") + BODY,
    "CL then TE": post(b"Content-Length: 4", CHUNKED) + BODY,
    "TE in HTTP/1.0": post(CHUNKED, version=b"1.0") + BODY,
    "TE in HTTP/1.0 keep-alive": post(b"Connection: keep-alive", CHUNKED, version=b"1.0") + BODY,
}


def test_transfer_encoding_variants(server: CLIServer) -> None:
    port = port_of(server)
    framed = {
        "tab before chunked": (post(b"Transfer-Encoding:\tchunked") + BODY, 5),
        "Chunked": (post(b"Transfer-Encoding: Chunked") + BODY, 5),
    }
    with under_attack(server, lambda: probe(port)):
        check_all(port, BAD_TRANSFER_ENCODINGS, framed)
        # A coding the server does not implement before chunked: 501 (RFC 9112 6.1).
        assert_refused(port, post(b"Transfer-Encoding: gzip, chunked") + BODY, 501)
        assert_refused(port, post(b"Transfer-Encoding: identity, chunked") + BODY, 501)


def test_chunked_with_whitespace_around_it_is_chunked(server: CLIServer) -> None:
    """RFC 9110 5.5: whitespace around a field value is not part of it, so
    ``chunked`` with spaces around it is the chunked coding, not a coding the
    server does not implement (501).  A tab after it is the one exception:
    llhttp (through httptools 0.9) skips only spaces after ``chunked``, reads
    the value as some other coding and refuses the request with 400, which
    smuggles nothing either."""
    port = port_of(server)
    for value in (b"chunked ", b"  chunked  ", b"Chunked ", b", chunked"):
        assert_framed(port, post(b"Transfer-Encoding: " + value) + BODY, 5)
    assert_refused(port, post(b"Transfer-Encoding: chunked\t") + BODY, 400)
    assert_refused(port, post(b"Transfer-Encoding: gzip , chunked ") + BODY, 501)


# --------------------------------------------------------- CR, LF, NUL; whitespace before the colon

BAD_BYTES = {
    "CR in a value": b"GET /ok HTTP/1.1\r\nHost: t\r\nX: a\rb\r\n\r\n",
    "LF in a value": b"GET /ok HTTP/1.1\r\nHost: t\r\nX: a\nb\r\n\r\n",
    "NUL in a value": b"GET /ok HTTP/1.1\r\nHost: t\r\nX: a\x00b\r\n\r\n",
    "CR LF inside a value, then a field": b"GET /ok HTTP/1.1\r\nHost: t\r\nX: a\r\n: b\r\n\r\n",
    "CR in the target": b"GET /ok\r HTTP/1.1\r\nHost: t\r\n\r\n",
    "LF in the target": b"GET /o\nk HTTP/1.1\r\nHost: t\r\n\r\n",
    "NUL in the target": b"GET /o\x00k HTTP/1.1\r\nHost: t\r\n\r\n",
    "NUL in a name": b"GET /ok HTTP/1.1\r\nHost: t\r\nX\x00: y\r\n\r\n",
    "CR in a name": b"GET /ok HTTP/1.1\r\nHost: t\r\nX\r: y\r\n\r\n",
}


def test_cr_lf_nul_in_field_values_and_target(server: CLIServer) -> None:
    port = port_of(server)
    with under_attack(server, lambda: probe(port)):
        check_all(port, BAD_BYTES, {})
        # The request line ends at the CR LF: a request without a version (HTTP/0.9).
        assert_refused(port, b"GET /o\r\nX: y HTTP/1.1\r\nHost: t\r\n\r\n", 505)


WHITESPACE_BEFORE_COLON = {
    "space before the colon of Host": b"GET /ok HTTP/1.1\r\nHost : t\r\n\r\n",
    "tab before the colon": b"GET /ok HTTP/1.1\r\nHost: t\r\nX\t: y\r\n\r\n",
    "space before the colon of a field": b"GET /ok HTTP/1.1\r\nHost: t\r\nX-A : y\r\n\r\n",
    "space before the colon of Content-Length": post(b"Content-Length : 5") + b"hello",
    "space before the colon of Transfer-Encoding": post(b"Transfer-Encoding : chunked") + BODY,
}


def test_whitespace_before_the_colon(server: CLIServer) -> None:
    port = port_of(server)
    with under_attack(server, lambda: probe(port)):
        check_all(port, WHITESPACE_BEFORE_COLON, {})


# ---------------------------------------------------------------- pipelining without reading

PIPELINED = 10_000


def test_pipelined_requests_from_a_client_that_never_reads(server: CLIServer) -> None:
    """10,000 requests in one go, no response read: the server answers them at
    the pace the socket takes them (stopping to read while writing is paused),
    its memory stays flat, and it lets go of the connection (after
    ``--timeout-write`` while blocked, ``--timeout-keep-alive`` once idle)."""
    port = port_of(server)
    requests = b"GET /ok HTTP/1.1\r\nHost: t\r\n\r\n" * PIPELINED
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    process = psutil.Process(server.proc.pid)
    with sock, under_attack(server, lambda: probe(port), rss=8 * MIB):
        sock.connect(("127.0.0.1", port))
        sock.settimeout(10)
        client_port = sock.getsockname()[1]

        def send() -> None:
            with contextlib.suppress(OSError):  # dropped by the server while sending
                sock.sendall(requests)

        sender = threading.Thread(target=send, daemon=True)
        sender.start()
        held = lambda: any(  # noqa: E731
            c.raddr and c.raddr.port == client_port for c in process.net_connections("tcp")
        )
        assert wait_until(held, 5), "the server never accepted the connection"
        assert wait_until(lambda: not held(), 15), "the server holds a client reading nothing"
        sender.join(10)
