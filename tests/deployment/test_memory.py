"""Server memory stays flat while 200 MiB flow through it in either direction.

The server runs as a CLI subprocess (``apps.mem:download`` / ``apps.mem:upload``)
so its RSS can be measured alone with psutil; a background thread samples
it throughout the transfer.  Without backpressure (a server that keeps
reading from a fast client for a slow app, or keeps buffering a fast app's
output for a slow client) the growth would be on the order of the transfer.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import psutil
import pytest

from tests.support.processes import RSSSampler, dropped_by_server
from tests.support.servers import CLIServer, cli_server, serve

MIB = 1024 * 1024
TOTAL_MIB = 200
LIMIT = 50 * MIB
TIMEOUT = 20.0

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
def download_server() -> Iterator[CLIServer]:
    with cli_server("apps.mem:download", "--port", "0", "--no-access-log") as srv:
        yield srv


@pytest.fixture
def upload_server() -> Iterator[CLIServer]:
    with cli_server("apps.mem:upload", "--port", "0", "--no-access-log") as srv:
        yield srv


def read_head(sock: socket.socket) -> tuple[bytes, bytes]:
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(4096)
        assert chunk, f"connection closed before the head: {data!r}"
        data += chunk
    head, _, rest = data.partition(b"\r\n\r\n")
    return head, rest


def download(port: int, mib: int, slow_seconds: float) -> int:
    """GET ``mib`` MiB reading slowly (tiny receive buffer) at first; returns bytes read."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)
    sock.settimeout(TIMEOUT)
    with sock:
        sock.connect(("127.0.0.1", port))
        sock.sendall(f"GET /?mib={mib} HTTP/1.1\r\nHost: t\r\n\r\n".encode())
        head, received = read_head(sock)
        assert head.startswith(b"HTTP/1.1 200 ")
        assert f"content-length: {mib * MIB}".encode() in head.lower()
        total = len(received)
        assert received.strip(b"\xa5") == b""
        slow_until = time.monotonic() + slow_seconds
        while total < mib * MIB:
            if time.monotonic() < slow_until:
                chunk = sock.recv(1024)
                time.sleep(0.002)  # a slow reader: the server must not buffer for it
            else:
                chunk = sock.recv(1024 * 1024)
            if not chunk:
                break
            assert chunk.strip(b"\xa5") == b"", "corrupted body"
            total += len(chunk)
        return total


def test_streamed_download_to_a_slow_client(download_server: CLIServer) -> None:
    assert download_server.port is not None
    port = download_server.port
    assert download(port, 2, 0) == 2 * MIB  # warm up the code paths
    started = time.monotonic()
    with RSSSampler(download_server.proc.pid) as rss:
        received = download(port, TOTAL_MIB, slow_seconds=1.5)
    elapsed = time.monotonic() - started
    assert received == TOTAL_MIB * MIB
    assert rss.samples > 10
    assert rss.growth < LIMIT, f"server RSS grew {rss.growth / MIB:.1f} MiB"
    assert elapsed < TIMEOUT
    # The connection-level flow was healthy: the server answers again.
    assert download(port, 1, 0) == MIB


def upload(port: int, mib: int) -> bytes:
    """POST ``mib`` MiB as fast as the server accepts it; returns the response body."""
    block = memoryview(b"\x5a" * MIB)
    sock = socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT)
    with sock:
        sock.sendall(
            f"POST /up HTTP/1.1\r\nHost: t\r\nContent-Length: {mib * MIB}\r\n\r\n".encode()
        )
        for _ in range(mib):
            sock.sendall(block)
        head, body = read_head(sock)
        assert head.startswith(b"HTTP/1.1 200 ")
        length = int(head.lower().split(b"content-length: ")[1].split(b"\r\n")[0])
        while len(body) < length:
            chunk = sock.recv(4096)
            assert chunk, "closed before the whole response"
            body += chunk
        return body


def test_streamed_upload_to_a_slow_app(upload_server: CLIServer) -> None:
    assert upload_server.port is not None
    port = upload_server.port
    count, _ = upload(port, 2).split()
    assert int(count) == 2 * MIB  # warm up
    started = time.monotonic()
    with RSSSampler(upload_server.proc.pid) as rss:
        body = upload(port, TOTAL_MIB)
    elapsed = time.monotonic() - started
    count, messages = body.split()
    assert int(count) == TOTAL_MIB * MIB
    assert int(messages) > 100, "the body should reach the app in many small messages"
    assert rss.samples > 10
    assert rss.growth < LIMIT, f"server RSS grew {rss.growth / MIB:.1f} MiB"
    assert elapsed < TIMEOUT


def test_pipelining_client_that_never_reads() -> None:
    """Requests keep coming, responses are never read: the server stops reading.

    Each request is answered into the write buffer; without reading paused
    while writing is, a few MiB of pipelined requests grow the server by
    hundreds of MiB.  A client that stays that way is dropped after
    ``--timeout-write``.
    """
    args = ("apps:hello", "--port", "0", "--no-access-log", "--timeout-write", "1")
    with cli_server(*args, "--timeout-keep-alive", "60") as srv:
        assert srv.port is not None
        batch = b"GET / HTTP/1.1\r\nHost: t\r\n\r\n" * 1000
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        with sock, RSSSampler(srv.proc.pid) as rss:
            sock.connect(("127.0.0.1", srv.port))
            sock.settimeout(0.5)
            sent = 0
            try:
                while sent < 16 * MIB:
                    sock.sendall(batch)
                    sent += len(batch)
            except TimeoutError:
                pass  # the server stopped reading: what this test wants
            assert sent < 16 * MIB, "the server read every request of a client reading nothing"
            assert dropped_by_server(sock, 10), "a client reading nothing was never dropped"
        assert rss.growth < LIMIT, f"server RSS grew {rss.growth / MIB:.1f} MiB"
        # Everyone else is still served.
        with socket.create_connection(("127.0.0.1", srv.port), timeout=TIMEOUT) as other:
            other.sendall(b"GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
            head, _ = read_head(other)
            assert head.startswith(b"HTTP/1.1 200 ")


def pipeline(port: int, kib: int, count: int) -> tuple[socket.socket, threading.Thread]:
    """Connect and send ``count`` pipelined GETs for ``kib`` KiB answers; read nothing.

    The requests go out from a thread, as a server that stops reading them
    would block a plain ``sendall``.
    """
    requests = b"".join(
        b"GET /%d?kib=%d HTTP/1.1\r\nHost: t\r\n\r\n" % (i, kib) for i in range(count)
    )
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)
    sock.connect(("127.0.0.1", port))
    sock.settimeout(TIMEOUT)
    sender = threading.Thread(target=sock.sendall, args=(requests,), daemon=True)
    sender.start()
    return sock, sender


@pytest.mark.parametrize(("kib", "count"), [(64, 3000), (1024, 200)], ids=["64KiB", "1MiB"])
def test_pipelined_large_answers_wait_for_a_client_that_does_not_read(kib: int, count: int) -> None:
    """Each answer is one body message; the next pipelined request waits for the buffer.

    Such a response never waits on the transport itself, so starting the next
    pipelined request right after it would answer every request of a client
    that reads nothing into the write buffer (3000 x 64 KiB, 200 x 1 MiB).
    The server is watched for a while with nothing read, then the client
    reads everything: every answer, in order.
    """
    args = ("apps.mem:blob", "--port", "0", "--no-access-log", "--timeout-keep-alive", "60")
    with cli_server(*args) as srv:
        assert srv.port is not None
        with RSSSampler(srv.proc.pid) as rss:
            sock, sender = pipeline(srv.port, kib, count)
            with sock:
                # Nothing is read: a server that kept answering would grow by
                # the whole batch within this time; stop early once it has.
                deadline = time.monotonic() + 3.0
                while time.monotonic() < deadline and rss.growth < LIMIT:
                    time.sleep(0.05)
                assert rss.growth < LIMIT, f"server RSS grew {rss.growth / MIB:.1f} MiB"
                for i in range(count):
                    head, body = read_head(sock)
                    assert head.startswith(b"HTTP/1.1 200 "), head
                    assert f"x-n: {i}\r\n".encode() in head + b"\r\n", (i, head)
                    length = int(head.lower().split(b"content-length: ")[1].split(b"\r\n")[0])
                    assert length == kib * 1024
                    while len(body) < length:
                        chunk = sock.recv(min(MIB, length - len(body)))
                        assert chunk, f"closed during answer {i}"
                        body += chunk
                    assert len(body) == length, "an answer ran into the next one"
                sender.join(TIMEOUT)
                assert not sender.is_alive()
        assert rss.growth < LIMIT, f"server RSS grew {rss.growth / MIB:.1f} MiB"


def test_one_read_of_many_pipelined_requests_is_parsed_a_few_at_a_time() -> None:
    """256 KiB of small pipelined requests behind one the app holds, on 20 connections.

    One read holds about 8000 such requests; parsed at once, each would wait
    as a request object, a scope and a stream (about 5 MiB a connection).
    Parsed a few at a time, the rest waits as the bytes it came as.
    """
    request = b"GET /?s=30 HTTP/1.1\r\nHost: t\r\n\r\n"
    args = ("apps:slow", "--port", "0", "--no-access-log", "--timeout-graceful-shutdown", "0.5")
    with cli_server(*args, "--timeout-keep-alive", "60") as srv:
        assert srv.port is not None
        socks = []
        with RSSSampler(srv.proc.pid) as rss:
            for _ in range(20):
                sock = socket.create_connection(("127.0.0.1", srv.port), timeout=TIMEOUT)
                sock.sendall(request * (256 * 1024 // len(request)))
                socks.append(sock)
            deadline = time.monotonic() + 2.0
            while time.monotonic() < deadline and rss.growth < 30 * MIB:
                time.sleep(0.05)
            # The first request of each connection is being answered.
            for sock in socks:
                head, _ = read_head(sock)
                assert head.startswith(b"HTTP/1.1 200 ")
        for sock in socks:
            sock.close()
        assert rss.growth < 30 * MIB, f"server RSS grew {rss.growth / MIB:.1f} MiB"


def closed_by_process(pid: int, sock: socket.socket, timeout: float) -> bool:
    """Whether process ``pid`` closes its end of ``sock`` within ``timeout``.

    Seen from the server's open sockets: a server that has read every request
    closes with a FIN queued behind the unread answers, which a client that
    reads nothing never receives.
    """
    client = sock.getsockname()
    process = psutil.Process(pid)
    seen = False  # the server may not have accepted it yet
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        held = any(c.raddr == client for c in process.net_connections("tcp"))
        if seen and not held:
            return True
        seen = seen or held
        time.sleep(0.05)
    assert seen, "the server never had the connection"
    return False


def test_pipelined_large_answers_to_a_client_that_never_reads_are_dropped() -> None:
    """The request waiting for the write buffer to drain does not keep the client alive."""
    args = ("apps.mem:blob", "--port", "0", "--no-access-log", "--timeout-write", "1")
    with cli_server(*args, "--timeout-keep-alive", "60") as srv:
        assert srv.port is not None
        sock, _ = pipeline(srv.port, 1024, 50)
        with sock:
            assert closed_by_process(srv.proc.pid, sock, 10), "a client reading nothing was kept"


def test_slow_reader_of_a_single_shot_body_is_not_dropped() -> None:
    """``--timeout-write`` drops clients that read nothing, not slow ones.

    The whole body is handed over in one send, so the server's write buffer
    stays above its low-water mark for seconds while the client reads it
    slowly: progress, not a stall.
    """
    size = 24 * MIB  # several times what the socket buffers take

    async def app(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"\xa5" * size})

    with serve(app, timeout_write=0.5) as srv:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)
        with sock:
            sock.connect(("127.0.0.1", srv.port))
            sock.settimeout(TIMEOUT)
            sock.sendall(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n")
            head, received = read_head(sock)
            assert head.startswith(b"HTTP/1.1 200 ")
            total = len(received)
            started = time.monotonic()
            while total < size:
                chunk = sock.recv(64 * 1024)
                assert chunk, f"dropped after {time.monotonic() - started:.1f} s, {total} bytes"
                total += len(chunk)
                time.sleep(0.005)  # at most 13 MB/s: the transfer takes seconds
            assert time.monotonic() - started > 1.0
