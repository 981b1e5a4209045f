"""HTTP/3 and QUIC attack classes: garbage, Version Negotiation, Initial floods, large bodies.

The attacker is a raw UDP socket (or aioquic driven by hand); the bystander
keeps one HTTP/3 connection of its own (``tests/support/h3_client.py``) and asks
for ``/ok`` on it.  What the server may send back to a datagram is the point
of most of these: never more than one datagram, never larger than what came
in, and nothing at all to what cannot be a client's first packet.  The
answers are in docs/security.md.
"""

from __future__ import annotations

import contextlib
import os
import socket
import time
from collections.abc import Iterator

import pytest
from aioquic.buffer import Buffer
from aioquic.quic.configuration import QuicConfiguration
from aioquic.quic.connection import QuicConnection
from aioquic.quic.packet import pull_quic_header

from tests.support.h3_client import H3Client
from tests.support.servers import CLIServer

from .harness import MIB, port_of, running, under_attack, write_cert

pytestmark = pytest.mark.timeout(60)

#: --limit-request-body of this module's server.
BODY_LIMIT = 1024 * 1024
VERSION_1 = 0x00000001
#: Long-header packet types (RFC 9000 17.2), in the two bits after the fixed bit.
INITIAL, RETRY = 0, 3


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[CLIServer]:
    cert = write_cert(tmp_path_factory.mktemp("h3-attacks"))
    with running("--limit-request-body", str(BODY_LIMIT), cert=cert) as srv:
        with H3Client(port_of(srv)) as client:
            for _ in range(3):  # warm-up: first allocations are not growth
                assert client.get("/ok").status == 200
        yield srv


@contextlib.contextmanager
def attack(server: CLIServer, cpu: float = 1.0, rss: int = 16 * MIB) -> Iterator[None]:
    """The bystander keeps one connection and asks for ``/ok`` on it."""
    client = H3Client(port_of(server), timeout=5)
    client.connect()

    def probe() -> None:
        response = client.get("/ok")
        assert (response.status, bytes(response.body)) == (200, b"ok"), response

    try:
        with under_attack(server, probe, cpu=cpu, rss=rss):
            yield
    finally:
        client.close()


@contextlib.contextmanager
def udp(port: int) -> Iterator[socket.socket]:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 22)
        sock.connect(("127.0.0.1", port))
        sock.settimeout(0.05)
        yield sock


def replies(sock: socket.socket, quiet: float = 0.3) -> list[bytes]:
    """Datagrams received until none came for ``quiet`` seconds."""
    got = []
    last = time.monotonic()
    while time.monotonic() - last < quiet:
        try:
            got.append(sock.recv(65536))
        except TimeoutError:
            continue
        last = time.monotonic()
    return got


def initial(port: int) -> bytes:
    """A real client's first datagram (an Initial of 1200 bytes), with new connection ids."""
    quic = QuicConnection(
        configuration=QuicConfiguration(
            is_client=True, alpn_protocols=["h3"], server_name="localhost", verify_mode=0
        )
    )
    quic.connect(("127.0.0.1", port), now=time.monotonic())
    return quic.datagrams_to_send(now=time.monotonic())[0][0]


def _packet_end(datagram: bytes) -> int:
    """Where the first packet of ``datagram`` ends."""
    return int(pull_quic_header(Buffer(data=datagram), host_cid_length=8).packet_length)


def long_header(version: int, size: int, first: int = 0xC0) -> bytes:
    """A long-header packet of ``version`` with 8-byte connection ids, padded to ``size``."""
    head = bytes([first]) + version.to_bytes(4, "big") + b"\x08" + os.urandom(8)
    head += b"\x08" + os.urandom(8)
    return head + os.urandom(max(size - len(head), 0))


# ---------------------------------------------------------------- garbage and truncated datagrams


def test_garbage_and_truncated_datagrams(server: CLIServer) -> None:
    """Dropped without a word (a reply would make the server a reflector)."""
    port = port_of(server)
    real = initial(port)
    # The Initial packet ends before the datagram does (the rest is padding).
    end = _packet_end(real)
    garbage = [
        b"",
        b"\x00",
        os.urandom(10),
        bytes([os.urandom(1)[0] & 0x7F]) + os.urandom(1499),  # short header, random bytes
        b"GET / HTTP/1.1\r\n\r\n",
        b"\x40" + os.urandom(40),  # short header, a connection id nobody has
        b"\xc0\x00\x00\x00\x01\xff" + os.urandom(1300),  # connection id length out of range
        long_header(VERSION_1, 1250, first=0xC3),  # a v1 Initial header around random bytes
        long_header(VERSION_1, 1250, first=0xE3),  # a v1 Handshake packet for no connection
        *(real[:cut] for cut in (1, 5, 6, 7, 20, 100, end - 1, 1199)),  # an Initial cut short
        real[:300] + os.urandom(900),  # the right size, the packet garbled half-way
        # One bit of the authentication tag flipped.
        real[: end - 1] + bytes([real[end - 1] ^ 1]) + real[end:],
    ]
    with attack(server), udp(port) as sock:
        for _ in range(100):
            for data in garbage:
                sock.send(data)
            time.sleep(0.001)  # within what the socket buffers hold: the server sees them all
        assert replies(sock) == []


# ---------------------------------------------------------------- Version Negotiation (aioquic#635)


def test_version_negotiation_is_never_answered_and_answered_once(server: CLIServer) -> None:
    """A Version Negotiation packet is never answered (two servers would
    bounce them forever); an unknown version gets one Version Negotiation per
    datagram, and none to a datagram under 1200 bytes (no amplification)."""
    port = port_of(server)
    with attack(server), udp(port) as sock:
        for size in (40, 1200, 1400):
            for _ in range(200):
                sock.send(long_header(0, size))  # version 0: a Version Negotiation packet
        assert replies(sock) == []
        for _ in range(200):
            sock.send(long_header(0x1A2A3A4A, 1199))
        assert replies(sock) == []
        # 200 datagrams of unknown versions, each with three packets coalesced
        # (sent 20 at a time: a burst larger than the socket buffers would be
        # dropped by the kernel before the server sees it).
        answers = []
        for first in range(0, 200, 20):
            for i in range(first, first + 20):
                sock.send(long_header(0x0A0A0A0A + i, 400) * 3)
            answers += replies(sock, quiet=0.1)
        assert len(answers) == 200, f"{len(answers)} answers to 200 datagrams"
        for answer in answers:
            assert len(answer) < 1200
            header = pull_quic_header(Buffer(data=answer), host_cid_length=8)
            assert header.version == 0  # Version Negotiation
            assert VERSION_1.to_bytes(4, "big") in answer


# ---------------------------------------------------------------- 1,000 Initials


INITIALS = 1000


def test_a_thousand_initials_with_distinct_connection_ids(server: CLIServer) -> None:
    """1,000 handshakes begun and abandoned: beyond 100 in progress, new ones
    are answered with a Retry (no handshake work for an unproven address), so
    memory and CPU stay bounded; the bystander's connection is unaffected."""
    port = port_of(server)
    initials = [initial(port) for _ in range(INITIALS)]
    assert len({data[6:14] for data in initials}) == INITIALS  # distinct connection ids
    answers: list[bytes] = []
    with attack(server, cpu=2.0, rss=32 * MIB), udp(port) as sock:
        # Paced by the answers, 50 at a time: a burst beyond the socket
        # buffers would be dropped by the kernel, not answered with Retry.
        for first in range(0, INITIALS, 50):
            for data in initials[first : first + 50]:
                sock.send(data)
            answers += replies(sock, quiet=0.1)
    firsts = {}
    for answer in answers:
        if answer[0] & 0x80:  # long header: the packet type of the first packet
            firsts.setdefault(answer[6 : 6 + answer[5]], (answer[0] & 0x30) >> 4)
    kinds = list(firsts.values())
    # About 100 handshakes went ahead; every later client was sent a Retry.
    assert 90 <= kinds.count(INITIAL) <= 110, kinds.count(INITIAL)
    assert kinds.count(RETRY) >= INITIALS - 150, kinds.count(RETRY)
    # A real client still gets through (it follows the Retry if there is one).
    with H3Client(port) as client:
        assert client.get("/ok").status == 200


# ---------------------------------------------------------------- request-body limit


def test_request_body_limit(server: CLIServer) -> None:
    """Over --limit-request-body: 413, whether declared (before the body is
    read) or not (as it crosses); the server does not take the rest in."""
    port = port_of(server)
    with attack(server), H3Client(port, timeout=10) as client:
        declared = client.send_request(
            "POST", "/echo", [(b"content-length", b"%d" % (8 * MIB))], end=False
        )
        assert client.wait_response(declared).status == 413
        streamed = client.send_request("POST", "/echo", end=False)
        for _ in range(8):
            client.send_data(streamed, b"x" * MIB)
        client.send_data(streamed, b"", end=True)
        assert client.wait_response(streamed).status == 413
        assert client.get("/ok").status == 200
        # At the limit: served.
        body = b"y" * BODY_LIMIT
        response = client.request("POST", "/echo", [(b"content-length", b"%d" % len(body))], body)
        assert (response.status, bytes(response.body)) == (200, b"%d bytes" % BODY_LIMIT)
