"""A framework-free ASGI 3.0 demo app for poking at asgiri by hand.

Run it with ``make demo`` (HTTPS on 8443 and cleartext on 8000) or::

    asgiri examples.demo:app --port 8000

Routes:
    /         HTML index with the negotiated HTTP version and scheme
    /hello    plain text
    /echo     GET: a form; POST: streams the request body back chunk by chunk
    /stream   10 chunks, 0.2 s apart, no content-length (chunked / DATA frames)
    /info     the ASGI scope as JSON
    /ws       WebSocket echo (HTTP/1.1, HTTP/2, HTTP/3)
    /wt       WebTransport echo over HTTP/3: bidirectional streams and datagrams

The index page has a WebSocket panel and a WebTransport panel.  WebTransport
needs HTTP/3 (so TLS); to trust the self-signed development certificate the
page hands the browser its SHA-256 (``serverCertificateHashes``), read from
the file ``DEMO_CERT`` names, and connects to the HTTPS port ``DEMO_HTTPS_PORT``
(``make demo`` sets both).

It is written against the raw ASGI interface on purpose: each route shows exactly
which messages a server must handle, with no framework smoothing over gaps.
"""

from __future__ import annotations

import asyncio
import html
import json
import os
import time
from collections.abc import Awaitable, Callable
from typing import Any

Scope = dict[str, Any]
Message = dict[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

STREAM_CHUNKS = 10
STREAM_DELAY = 0.2

_started_at: float | None = None


async def app(scope: Scope, receive: Receive, send: Send) -> None:
    """ASGI 3.0 entry point."""
    kind = scope["type"]
    if kind == "http":
        await _http(scope, receive, send)
    elif kind == "websocket":
        await _websocket(scope, receive, send)
    elif kind == "webtransport":
        await _webtransport(scope, receive, send)
    elif kind == "lifespan":
        await _lifespan(scope, receive, send)
    else:
        raise RuntimeError(f"unsupported ASGI scope type {kind!r}")


# --- lifespan -------------------------------------------------------------------------


async def _lifespan(scope: Scope, receive: Receive, send: Send) -> None:
    global _started_at
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            _started_at = time.time()
            state = scope.get("state")
            if isinstance(state, dict):  # lifespan state extension, when supported
                state["started_at"] = _started_at
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return


# --- websocket ------------------------------------------------------------------------


async def _websocket(scope: Scope, receive: Receive, send: Send) -> None:
    """``/ws`` echoes every message with the protocol it came over; other paths get 403."""
    message = await receive()
    if message["type"] != "websocket.connect":
        return
    if scope["path"] != "/ws":
        await send({"type": "websocket.close", "code": 1008})  # before accept: 403
        return
    await send({"type": "websocket.accept"})
    via = f"HTTP/{scope['http_version']}"
    while True:
        message = await receive()
        if message["type"] == "websocket.disconnect":
            return
        text = message.get("text")
        if text is None:
            await send({"type": "websocket.send", "bytes": message.get("bytes") or b""})
        else:
            await send({"type": "websocket.send", "text": f"echo over {via}: {text}"})


# --- webtransport -----------------------------------------------------------------------


async def _webtransport(scope: Scope, receive: Receive, send: Send) -> None:
    """``/wt``: every bidirectional stream and datagram is echoed back, prefixed."""
    message = await receive()
    if message["type"] != "webtransport.connect":
        return
    if scope["path"] != "/wt":
        await send({"type": "webtransport.close"})  # before accept: 403
        return
    await send({"type": "webtransport.accept"})
    while True:
        message = await receive()
        kind = message["type"]
        if kind == "webtransport.disconnect":
            return
        if kind == "webtransport.datagram.receive":
            await send(
                {"type": "webtransport.datagram.send", "data": b"datagram: " + message["data"]}
            )
        elif kind == "webtransport.stream.receive" and not message["unidirectional"]:
            data = message["data"]
            await send(
                {
                    "type": "webtransport.stream.send",
                    "stream": message["stream"],
                    "data": data,
                    "end_stream": message["stream_ended"],
                }
            )


def _webtransport_target(scope: Scope) -> tuple[str, list[int]] | None:
    """The port and certificate hash the page's WebTransport panel needs, if known."""
    cert = os.environ.get("DEMO_CERT")
    port = os.environ.get("DEMO_HTTPS_PORT")
    if not cert or not port:
        return None
    try:
        with open(cert, "rb") as handle:
            pem = handle.read()
    except OSError:
        return None
    from asgiri.ssl_utils import cert_sha256

    return port, list(cert_sha256(pem))


# --- http -----------------------------------------------------------------------------


async def _http(scope: Scope, receive: Receive, send: Send) -> None:
    path = scope["path"]
    method = scope["method"]
    if path == "/":
        if await _only(method, ("GET", "HEAD"), send):
            await _index(scope, send)
    elif path == "/hello":
        if await _only(method, ("GET", "HEAD"), send):
            await _respond(send, 200, b"Hello, world!\n", "text/plain; charset=utf-8", method)
    elif path == "/echo":
        if method == "POST":
            await _echo(scope, receive, send)
        elif await _only(method, ("GET", "HEAD", "POST"), send):
            await _respond(send, 200, _ECHO_FORM.encode(), "text/html; charset=utf-8", method)
    elif path == "/stream":
        if await _only(method, ("GET",), send):
            await _stream(send)
    elif path == "/info":
        if await _only(method, ("GET", "HEAD"), send):
            body = json.dumps(_jsonable_scope(scope), indent=2, sort_keys=True).encode()
            await _respond(send, 200, body + b"\n", "application/json", method)
    else:
        await _respond(send, 404, b"Not Found\n", "text/plain; charset=utf-8", method)


async def _only(method: str, allowed: tuple[str, ...], send: Send) -> bool:
    """Answer 405 for other methods; returns whether the route should proceed."""
    if method in allowed:
        return True
    await _respond(
        send,
        405,
        b"Method Not Allowed\n",
        "text/plain; charset=utf-8",
        method,
        extra_headers=[(b"allow", ", ".join(allowed).encode())],
    )
    return False


async def _respond(
    send: Send,
    status: int,
    body: bytes,
    content_type: str,
    method: str = "GET",
    extra_headers: list[tuple[bytes, bytes]] | None = None,
) -> None:
    headers = [
        (b"content-type", content_type.encode()),
        (b"content-length", str(len(body)).encode()),
        *(extra_headers or []),
    ]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": b"" if method == "HEAD" else body})


async def _index(scope: Scope, send: Send) -> None:
    esc = html.escape
    started = (
        time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(_started_at))
        if _started_at is not None
        else "no lifespan startup received"
    )
    target = _webtransport_target(scope)
    wt_target = "null" if target is None else json.dumps({"port": target[0], "hash": target[1]})
    wt_status = "connecting" if target is not None else "off (run it with make demo)"
    page = f"""<!doctype html>
<html lang="en">
<head><meta charset="utf-8"><title>asgiri demo</title></head>
<body>
<h1>asgiri demo</h1>
<p>HTTP version: <strong id="http-version">{esc(str(scope.get("http_version")))}</strong>,
scheme: <strong id="scheme">{esc(str(scope.get("scheme", "http")))}</strong></p>
<p>Server started: {esc(started)}</p>
<ul>
  <li><a href="/hello">/hello</a> &mdash; plain text</li>
  <li><a href="/echo">/echo</a> &mdash; POST a body and get it streamed back</li>
  <li><a href="/stream">/stream</a> &mdash; {STREAM_CHUNKS} chunks, {STREAM_DELAY}s apart</li>
  <li><a href="/info">/info</a> &mdash; the ASGI scope as JSON</li>
</ul>
<h2>WebSocket echo (<code>/ws</code>)</h2>
<p>Status: <strong id="ws-status">connecting</strong></p>
<form id="ws-form"><input id="ws-text" value="Hello over WebSocket!" size="40">
<button type="submit">Send</button></form>
<ol id="ws-log"></ol>
<script>
const scheme = location.protocol === "https:" ? "wss:" : "ws:";
const socket = new WebSocket(scheme + "//" + location.host + "/ws");
const log = (text) => {{
  const item = document.createElement("li");
  item.textContent = text;
  document.getElementById("ws-log").appendChild(item);
}};
socket.onopen = () => {{
  document.getElementById("ws-status").textContent = "open";
  socket.send("hello from the page");
}};
socket.onmessage = (event) => log(event.data);
socket.onclose = (event) => {{
  document.getElementById("ws-status").textContent = "closed (" + event.code + ")";
}};
document.getElementById("ws-form").onsubmit = (event) => {{
  event.preventDefault();
  socket.send(document.getElementById("ws-text").value);
}};
</script>
<h2>WebTransport echo (<code>/wt</code>, HTTP/3)</h2>
<p>Status: <strong id="wt-status">{wt_status}</strong></p>
<form id="wt-form"><input id="wt-text" value="Hello over WebTransport!" size="40">
<button type="submit">Send on a stream</button>
<button type="button" id="wt-datagram">Send as a datagram</button></form>
<ol id="wt-log"></ol>
<script>
const wtTarget = {wt_target};
const wtLog = (text) => {{
  const item = document.createElement("li");
  item.textContent = text;
  document.getElementById("wt-log").appendChild(item);
}};
async function wtDemo() {{
  if (!wtTarget || typeof WebTransport === "undefined") return null;
  const url = "https://" + location.hostname + ":" + wtTarget.port + "/wt";
  const transport = new WebTransport(url, {{
    serverCertificateHashes: [{{algorithm: "sha-256", value: new Uint8Array(wtTarget.hash)}}],
  }});
  await transport.ready;
  document.getElementById("wt-status").textContent = "open";
  const datagrams = transport.datagrams.readable.getReader();
  (async () => {{
    for (;;) {{
      const {{value, done}} = await datagrams.read();
      if (done) return;
      wtLog(new TextDecoder().decode(value));
    }}
  }})();
  transport.closed.then((info) => {{
    document.getElementById("wt-status").textContent = "closed (" + info.closeCode + ")";
  }});
  return transport;
}}
async function wtStream(transport, text) {{
  const stream = await transport.createBidirectionalStream();
  const writer = stream.writable.getWriter();
  await writer.write(new TextEncoder().encode(text));
  await writer.close();
  const reader = stream.readable.getReader();
  let reply = "";
  for (;;) {{
    const {{value, done}} = await reader.read();
    if (done) break;
    reply += new TextDecoder().decode(value);
  }}
  wtLog("stream: " + reply);
  return reply;
}}
window.wtReady = wtDemo().catch((error) => {{
  document.getElementById("wt-status").textContent = "failed: " + error;
  return null;
}});
document.getElementById("wt-form").onsubmit = async (event) => {{
  event.preventDefault();
  const transport = await window.wtReady;
  if (transport) await wtStream(transport, document.getElementById("wt-text").value);
}};
document.getElementById("wt-datagram").onclick = async () => {{
  const transport = await window.wtReady;
  if (!transport) return;
  const writer = transport.datagrams.writable.getWriter();
  await writer.write(new TextEncoder().encode(document.getElementById("wt-text").value));
  writer.releaseLock();
}};
</script>
</body>
</html>
"""
    await _respond(send, 200, page.encode(), "text/html; charset=utf-8", scope["method"])


_ECHO_FORM = """<!doctype html>
<html lang="en">
<head><meta charset="utf-8"><title>echo</title></head>
<body>
<h1>echo</h1>
<form method="post" action="/echo" enctype="text/plain">
  <textarea name="text" rows="8" cols="60">Hello, asgiri!</textarea><br>
  <button type="submit">POST</button>
</form>
</body>
</html>
"""


async def _echo(scope: Scope, receive: Receive, send: Send) -> None:
    """Stream the request body back as it arrives (full duplex, no buffering).

    No content-length is sent, so HTTP/1.1 uses chunked encoding and HTTP/2 and 3 send
    DATA frames as each request chunk comes in.
    """
    content_type = b"application/octet-stream"
    for name, value in scope["headers"]:
        if name == b"content-type":
            content_type = value
            break
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [(b"content-type", content_type)],
        }
    )
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return
        chunk = message.get("body", b"")
        more = message.get("more_body", False)
        if chunk or not more:
            await send({"type": "http.response.body", "body": chunk, "more_body": more})
        if not more:
            return


async def _stream(send: Send) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [
                (b"content-type", b"text/plain; charset=utf-8"),
                # Without nosniff, browsers buffer the start of a text/plain body to
                # sniff its type, which hides the streaming.
                (b"x-content-type-options", b"nosniff"),
                (b"cache-control", b"no-store"),
            ],
        }
    )
    for i in range(1, STREAM_CHUNKS + 1):
        await send(
            {
                "type": "http.response.body",
                "body": f"chunk {i}/{STREAM_CHUNKS}\n".encode(),
                "more_body": True,
            }
        )
        await asyncio.sleep(STREAM_DELAY)
    await send({"type": "http.response.body", "body": b"", "more_body": False})


# --- /info ----------------------------------------------------------------------------

_OMIT = object()


def _jsonable_scope(scope: Scope) -> dict[str, Any]:
    """Return the scope with bytes decoded and anything non-JSON (app, state...) dropped."""
    result = _jsonable(scope)
    return result if isinstance(result, dict) else {}


def _jsonable(value: Any) -> Any:
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, (bytes, bytearray)):
        # Header bytes are latin-1 by HTTP's definition; this never fails.
        return bytes(value).decode("latin-1")
    if isinstance(value, dict):
        out = {}
        for key, item in value.items():
            converted = _jsonable(item)
            if isinstance(key, str) and converted is not _OMIT:
                out[key] = converted
        return out
    if isinstance(value, (list, tuple)):
        items = [_jsonable(item) for item in value]
        return [item for item in items if item is not _OMIT]
    return _OMIT
