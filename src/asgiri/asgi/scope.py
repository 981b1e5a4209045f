"""Building ASGI scopes: the only place that knows the scope layout.

HTTP/1.1, HTTP/2 and HTTP/3 all come here with the same
:class:`~asgiri.protocol.events.Request`, so a scope looks the same whatever
the wire protocol (ASGI spec 2.4).
"""

from __future__ import annotations

from typing import Any, Final
from urllib.parse import unquote_to_bytes

from ..protocol.events import Request
from ..protocol.proxy_headers import TrustedProxies, forwarded_info

ASGI_VERSION: Final = {"version": "3.0", "spec_version": "2.4"}


def decode_path(raw_path: bytes) -> str:
    """Percent-decode a request path into text, as the ASGI ``path`` key wants it."""
    if raw_path.find(b"%") < 0:
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
    forwarded: TrustedProxies | None = None,
) -> dict[str, Any]:
    """The scope of one request; ``root_path`` is prefixed to ``path`` like uvicorn does.

    ``forwarded`` is given only for connections from a trusted proxy
    (``--proxy-headers``): their ``X-Forwarded-*``/``Forwarded`` headers then
    replace the client address, the scheme and the ``host`` header.
    """
    headers = request.headers
    if forwarded is not None:
        info = forwarded_info(headers, forwarded, scope_type == "websocket")
        if info is not None:
            if info.client is not None:
                client = info.client
            if info.scheme is not None:
                scheme = info.scheme
            if info.host is not None:
                host = info.host
                headers = [(n, host if n == b"host" else v) for n, v in headers]
                if not any(n == b"host" for n, _ in headers):
                    headers.insert(0, (b"host", host))
    raw_path = request.raw_path
    # find, not ``in``: for bytes, ``in`` tries the needle as an int first,
    # which costs a raised and cleared TypeError on every request.
    if raw_path.find(b"%") >= 0 or not raw_path.isascii():
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
        "headers": headers,
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
    forwarded: TrustedProxies | None = None,
) -> dict[str, Any]:
    """The scope of a WebSocket request, on any transport (ASGI websocket spec 2.4)."""
    extensions: dict[str, Any] = {"websocket.http.response": {}}
    if "tls" in connection_extensions:
        extensions["tls"] = connection_extensions["tls"]
    scope = http_scope(
        request,
        scheme,
        client,
        server,
        root_path,
        state,
        extensions,
        scope_type="websocket",
        forwarded=forwarded,
    )
    del scope["method"]
    protocols: list[str] = []
    for name, value in request.headers:
        if name == b"sec-websocket-protocol":
            protocols.extend(p.strip() for p in value.decode("latin-1").split(",") if p.strip())
    scope["subprotocols"] = protocols
    return scope
