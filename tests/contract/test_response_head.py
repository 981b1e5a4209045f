"""A response head the app sent leaves at once, even while its body waits.

The server holds a head back for a moment so that it can leave in one write
with the first body chunk (asgi/http_stream.py, ``HeadFlush``).  That hold
ends with the loop iteration: an app that sends its head and then waits on
something else (here, the rest of the request body, which the client sends
only once it has seen the head) must not keep the head to itself.
"""

from __future__ import annotations

import pytest

from .conftest import Servers
from .transports import HTTP_TRANSPORTS, HTTPTransport

pytestmark = pytest.mark.timeout(60)


@pytest.mark.parametrize("transport", HTTP_TRANSPORTS, ids=str)
def test_a_head_leaves_before_a_body_that_waits(transport: HTTPTransport, servers: Servers) -> None:
    srv = servers.get(transport)
    with transport.connect(srv) as conn:
        handle = conn.start("POST", "/head-first", [], b"x", end=False)
        head = conn.response(handle, head_only=True)
        assert head.status == 200 and not head.complete, head
        assert conn.send(handle, b"", end=True)
        reply = conn.response(handle)
    assert reply.complete and reply.body == b"after the head", reply
    transport.assert_serving(srv)
