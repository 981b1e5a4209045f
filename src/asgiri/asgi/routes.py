"""Requests the server answers itself, in front of the app.

Each is an ASGI 3 app wrapping the user's, so it holds on HTTP/1.1, HTTP/2
and HTTP/3 alike without a line in the per-protocol code, and costs one
comparison per request only when it is configured.

- :func:`health_endpoint` (``--health-path``): 200 while the server serves,
  503 once it drains, so that a load balancer stops sending new requests to
  a process before it goes.
- :func:`redirect_to_https` (``--redirect-http``): requests that arrived in
  cleartext get a 308 to the same URL on the TLS listener.
"""

from __future__ import annotations

from collections.abc import Callable

from .types import ASGIApp, Receive, Scope, Send

__all__ = ["health_endpoint", "redirect_to_https"]

_TEXT = (b"content-type", b"text/plain; charset=utf-8")
_NO_STORE = (b"cache-control", b"no-store")


def health_endpoint(app: ASGIApp, path: str, draining: Callable[[], bool]) -> ASGIApp:
    """Answer ``path`` here: 200 ``ok`` while serving, 503 ``draining`` once ``draining()``.

    The request body (health checks send none) is read to its end before the
    answer is chosen, so the answer describes the moment the request was
    complete.  ``path`` is what the client sends: the scope's path carries
    ``root_path`` in front of it, so that is matched.
    """

    async def health(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] != scope.get("root_path", "") + path:
            await app(scope, receive, send)
            return
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            if not message.get("more_body", False):
                break
        status, body = (503, b"draining\n") if draining() else (200, b"ok\n")
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [_TEXT, _NO_STORE, (b"content-length", b"%d" % len(body))],
            }
        )
        await send({"type": "http.response.body", "body": body})

    return health


def redirect_to_https(app: ASGIApp, https_port: int) -> ASGIApp:
    """Requests that came in cleartext get ``308`` to ``https://HOST:https_port/same/path``.

    "Came in cleartext" is the scope's scheme, so a request a trusted proxy
    says it received over TLS (``X-Forwarded-Proto: https``) goes to the app.
    The health path is answered in front of this (load balancers check the
    cleartext port as it is).  A cleartext WebSocket is refused (403): a
    browser does not follow a redirect on one.
    """
    port_suffix = b"" if https_port == 443 else b":%d" % https_port

    async def redirect(scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if (kind, scope.get("scheme")) not in (("http", "http"), ("websocket", "ws")):
            await app(scope, receive, send)
            return
        if kind == "websocket":
            await send({"type": "websocket.close", "code": 1008})
            return
        location = b"https://" + _host(scope) + port_suffix + scope.get("raw_path", b"/")
        if scope.get("query_string"):
            location += b"?" + scope["query_string"]
        body = b"Moved to https\n"
        await send(
            {
                "type": "http.response.start",
                "status": 308,
                "headers": [
                    (b"location", location),
                    _TEXT,
                    (b"content-length", b"%d" % len(body)),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})

    return redirect


def _host(scope: Scope) -> bytes:
    """The request's host name without its port: the Host header, else the server address."""
    for name, raw in scope.get("headers", ()):
        if name == b"host":
            value = bytes(raw)
            if value.startswith(b"["):
                return value[: value.find(b"]") + 1] or value
            return value.rpartition(b":")[0] if b":" in value else value
    server = scope.get("server")
    if server:
        host = str(server[0])
        return (f"[{host}]" if ":" in host else host).encode("ascii", "replace")
    return b"localhost"
