"""Building ASGI scopes: the only place that knows the scope layout.

HTTP/1.1, HTTP/2 and HTTP/3 all come here with the same
:class:`~asgiri.protocol.events.Request`, so a scope looks the same whatever
the wire protocol (ASGI spec 2.4).
"""

from __future__ import annotations

from typing import Any, Final
from urllib.parse import unquote_to_bytes

from ..protocol.events import Request

ASGI_VERSION: Final = {"version": "3.0", "spec_version": "2.4"}


def decode_path(raw_path: bytes) -> str:
    """Percent-decode a request path into text, as the ASGI ``path`` key wants it."""
    if b"%" not in raw_path:
        try:
            return raw_path.decode("ascii")
        except UnicodeDecodeError:
            pass
    return unquote_to_bytes(raw_path).decode("utf-8", "replace")


def http_scope(
    request: Request,
    scheme: str,
    client: tuple[str, int] | None,
    server: tuple[str, int | None] | None,
    root_path: str,
    state: dict[str, Any] | None,
    extensions: dict[str, Any],
    scope_type: str = "http",
) -> dict[str, Any]:
    """The scope of one request; ``root_path`` is prefixed to ``path`` like uvicorn does."""
    raw_path = request.raw_path
    if b"%" in raw_path or not raw_path.isascii():
        path = decode_path(raw_path)
    else:
        path = raw_path.decode("ascii")
    if root_path:
        path = root_path + path
        raw_path = root_path.encode("utf-8") + raw_path
    scope: dict[str, Any] = {
        "type": scope_type,
        "asgi": ASGI_VERSION,
        "http_version": request.http_version,
        "server": server,
        "client": client,
        "scheme": scheme,
        "method": request.method,
        "root_path": root_path,
        "path": path,
        "raw_path": raw_path,
        "query_string": request.query_string,
        "headers": request.headers,
        "extensions": extensions,
    }
    if state is not None:
        scope["state"] = state.copy()
    return scope


def websocket_scope(
    request: Request,
    scheme: str,
    client: tuple[str, int] | None,
    server: tuple[str, int | None] | None,
    root_path: str,
    state: dict[str, Any] | None,
    connection_extensions: dict[str, Any],
) -> dict[str, Any]:
    """The scope of a WebSocket request, on any transport (ASGI websocket spec 2.4)."""
    extensions: dict[str, Any] = {"websocket.http.response": {}}
    if "tls" in connection_extensions:
        extensions["tls"] = connection_extensions["tls"]
    scope = http_scope(
        request, scheme, client, server, root_path, state, extensions, scope_type="websocket"
    )
    del scope["method"]
    protocols: list[str] = []
    for name, value in request.headers:
        if name == b"sec-websocket-protocol":
            protocols.extend(p.strip() for p in value.decode("latin-1").split(",") if p.strip())
    scope["subprotocols"] = protocols
    return scope
