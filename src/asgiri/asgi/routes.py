"""Requests the server answers itself, in front of the app.

Each is an ASGI 3 app wrapping the user's, so it holds on HTTP/1.1, HTTP/2
and HTTP/3 alike without a line in the per-protocol code, and costs one
comparison per request only when it is configured.

- :func:`health_endpoint` (``--health-path``): 200 while the server serves,
  503 once it drains, so that a load balancer stops sending new requests to
  a process before it goes.
"""

from __future__ import annotations

from collections.abc import Callable

from .types import ASGIApp, Receive, Scope, Send

__all__ = ["health_endpoint"]

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
