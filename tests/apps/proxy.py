"""Apps for the proxy tests: they answer with who they think the client is."""

from __future__ import annotations

import json
from typing import Any


def whoami_dict(scope: Any) -> dict[str, Any]:
    headers = dict(scope["headers"])
    tls = scope["extensions"].get("tls")
    return {
        "type": scope["type"],
        "client": list(scope["client"]) if scope["client"] else None,
        "server": list(scope["server"]) if scope["server"] else None,
        "scheme": scope["scheme"],
        "host": headers.get(b"host", b"").decode("latin-1"),
        "http_version": scope["http_version"],
        "client_cert_name": tls["client_cert_name"] if tls else None,
    }


async def whoami(scope: Any, receive: Any, send: Any) -> None:
    """HTTP: the JSON of :func:`whoami_dict`; WebSocket: the same as one text message."""
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
    body = json.dumps(whoami_dict(scope))
    if scope["type"] == "websocket":
        await receive()  # websocket.connect
        await send({"type": "websocket.accept"})
        await send({"type": "websocket.send", "text": body})
        message = await receive()
        if message["type"] == "websocket.receive":
            await send({"type": "websocket.send", "text": "echo:" + message.get("text", "")})
            await receive()
        return
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [(b"content-type", b"application/json")],
        }
    )
    await send({"type": "http.response.body", "body": body.encode()})
