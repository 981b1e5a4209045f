"""One access-log line per request on every transport, also for answers the server gives itself.

The lines are read from the ``asgiri.access`` logger of the in-process
server.  Every request carries a fresh query string so that its line can be
counted exactly; a marker request afterwards (its line seen) bounds the wait.
"""

from __future__ import annotations

import itertools
import time

import pytest

from tests.support.logs import AccessLines
from tests.support.servers import ThreadServer

from .app import RECORD
from .conftest import Servers
from .transports import HTTP_TRANSPORTS, TIMEOUT, H1Conn, HTTPTransport

pytestmark = pytest.mark.timeout(60)

OPTIONS = {
    "log_level": "info",
    "access_log": True,
    "limit_request_body": 1000,
    "limit_concurrency": 1,
    "limit_request_header_size": 4096,
}

#: What the server answers by itself, and on which transports it can happen:
#: a malformed request head is an HTTP/1.1 matter (HTTP/2 and HTTP/3 fail the
#: stream instead), and HTTP/2 applies its own header-list limit, not 431.
CASES = {
    "app": {"h1", "h1-tls", "h2-tls", "h2c", "h3"},
    "413": {"h1", "h1-tls", "h2-tls", "h2c", "h3"},
    "503": {"h1", "h1-tls", "h2-tls", "h2c", "h3"},
    "400": {"h1", "h1-tls"},
    "431": {"h1", "h1-tls", "h2-tls", "h2c", "h3"},
}
PAIRS = [(t, case) for t in HTTP_TRANSPORTS for case in CASES if t.name in CASES[case]]

_nonce = itertools.count()


def nonce() -> str:
    return f"n={next(_nonce)}-{time.monotonic_ns()}"


def _malformed(transport: HTTPTransport, srv: ThreadServer, query: str) -> int:
    """A request head with a space in a field name: 400 from the HTTP/1.1 parser."""
    conn = transport.connect(srv)
    assert isinstance(conn, H1Conn)
    with conn:
        conn.sock.sendall(f"GET /ok?{query} HTTP/1.1\r\nHost: x\r\nBad Field: 1\r\n\r\n".encode())
        data = b""
        while chunk := conn.sock.recv(65536):
            data += chunk
    return int(data.split(b" ", 2)[1])


def _refused_while_held(transport: HTTPTransport, srv: ThreadServer, query: str) -> int:
    with transport.connect(srv) as conn:
        held = transport.hold(conn)
        RECORD.wait("hold")
        status = transport.request(srv, "GET", f"/ok?{query}").status
        conn.abandon(held)
    deadline = time.monotonic() + TIMEOUT
    while transport.request(srv, "GET", f"/ok?{nonce()}").status == 503:
        assert time.monotonic() < deadline, "the held request's slot was never freed"
    return status


@pytest.mark.parametrize(("transport", "case"), PAIRS, ids=[f"{t}-{c}" for t, c in PAIRS])
def test_one_access_line_per_request(
    transport: HTTPTransport, case: str, servers: Servers, access_lines: AccessLines
) -> None:
    srv = servers.get(transport, **OPTIONS)
    query = nonce()
    if case == "app":
        method, status = "GET", transport.request(srv, "GET", f"/ok?{query}").status
    elif case == "413":
        body = b"x" * 5000
        method, status = "POST", transport.request(srv, "POST", f"/echo?{query}", body=body).status
    elif case == "503":
        method, status = "GET", _refused_while_held(transport, srv, query)
    elif case == "400":
        method, status = "GET", _malformed(transport, srv, query)
    else:
        big = [(b"x-big", b"b" * 5000)]
        method, status = "GET", transport.request(srv, "GET", f"/ok?{query}", big).status
    expected = 200 if case == "app" else int(case)
    assert status == expected
    marker = nonce()
    assert transport.request(srv, "GET", f"/ok?{marker}").status == 200
    access_lines.wait_for(marker)
    lines = access_lines.matching(query)
    if case in ("400", "431"):
        # The head was refused whole: its line may not know the method and path.
        lines = [line for line in access_lines.messages() if f'" {expected} ' in line]
    assert len(lines) == 1, access_lines.messages()
    assert f'{transport.version}" {expected} ' in lines[0], lines[0]
    if case not in ("400", "431"):
        assert f'"{method} /' in lines[0] and query in lines[0], lines[0]
