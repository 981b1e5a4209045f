"""The ASGI app every conformance module serves.

It reads the whole request body first (so body bytes are consumed and
credited back), then answers by path:

* ``/echo``: the request body;
* ``/big?n=N``: ``N`` bytes of ``x`` (for flow-control and frame-size cases);
* ``/conn-headers``: a response that tries to send connection-specific and
  upper-case header fields, which the server must drop or lower-case;
* ``/no-content``: 204;
* anything else: :data:`HELLO`.

Request fields whose names start with ``x-``, plus ``user-agent`` and
``cookie``, come back as ``echo-<name>`` response fields, so a test can see
what the server decoded (HPACK representations, cookie crumbs).  The method
and the body length come back as ``x-method`` and ``x-body-length``.
"""

from __future__ import annotations

from typing import Any

HELLO = b"Hello, World!"

_ECHOED = (b"user-agent", b"cookie")


async def app(scope: Any, receive: Any, send: Any) -> None:
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
    if scope["type"] != "http":
        return
    body = bytearray()
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return
        body += message.get("body", b"")
        if not message.get("more_body", False):
            break
    path = scope["path"]
    status = 200
    headers: list[tuple[bytes, bytes]] = [
        (b"content-type", b"text/plain"),
        (b"x-method", scope["method"].encode()),
        (b"x-body-length", b"%d" % len(body)),
    ]
    for name, value in scope["headers"]:
        if name.startswith(b"x-") or name in _ECHOED:
            headers.append((b"echo-" + name, value))
    if path == "/echo":
        payload = bytes(body)
    elif path == "/big":
        query = scope["query_string"].decode()
        size = int(query.partition("n=")[2] or "0")
        payload = b"x" * size
    elif path == "/conn-headers":
        payload = HELLO
        headers += [
            (b"Connection", b"keep-alive"),
            (b"keep-alive", b"timeout=5"),
            (b"transfer-encoding", b"chunked"),
            (b"upgrade", b"h2c"),
            (b"X-Upper-Case", b"yes"),
        ]
    elif path == "/no-content":
        status = 204
        payload = b""
    else:
        payload = HELLO
    if status != 204:
        headers.append((b"content-length", b"%d" % len(payload)))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": payload})
