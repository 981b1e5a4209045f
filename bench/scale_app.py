"""The benchmark app (app.py, the reference copy, unchanged) plus two routes for the
memory and scale scenarios (harness/scale_bench.py).

Routes added:
  GET  /stream?bytes=N  -> N bytes (default 1 GiB) streamed in 64 KiB chunks, with
                           Content-Length, so the server's flow control and buffering,
                           not the app, decide how much is held in memory
  POST /upload          -> reads the body chunk by chunk without keeping it and answers
                           with the number of bytes received (decimal, text/plain)
Everything else (/, /echo, /big, /ws, lifespan) is app.app.
Usage: <server> scale_app:app  (from bench/)
"""

from urllib.parse import parse_qs

from app import app as reference_app

CHUNK = b"x" * 65536
DEFAULT_STREAM_BYTES = 1 << 30

TEXT_PLAIN = (b"content-type", b"text/plain")
OCTET_STREAM = (b"content-type", b"application/octet-stream")


async def _stream(scope, send):
    query = parse_qs(scope.get("query_string", b"").decode("latin-1"))
    try:
        total = int(query.get("bytes", [DEFAULT_STREAM_BYTES])[0])
    except ValueError:
        total = -1
    if total < 0:
        body = b"bytes must be a non-negative integer"
        await send(
            {
                "type": "http.response.start",
                "status": 400,
                "headers": [TEXT_PLAIN, (b"content-length", str(len(body)).encode())],
            }
        )
        await send({"type": "http.response.body", "body": body})
        return
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [OCTET_STREAM, (b"content-length", str(total).encode())],
        }
    )
    left = total
    while left > len(CHUNK):
        await send({"type": "http.response.body", "body": CHUNK, "more_body": True})
        left -= len(CHUNK)
    await send({"type": "http.response.body", "body": CHUNK[:left]})


async def _upload(receive, send):
    received = 0
    more = True
    while more:
        msg = await receive()
        if msg["type"] == "http.disconnect":
            return
        received += len(msg.get("body", b""))
        more = msg.get("more_body", False)
    body = str(received).encode()
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [TEXT_PLAIN, (b"content-length", str(len(body)).encode())],
        }
    )
    await send({"type": "http.response.body", "body": body})


async def app(scope, receive, send):
    if scope["type"] == "http":
        if scope["path"] == "/stream":
            await _stream(scope, send)
            return
        if scope["path"] == "/upload":
            await _upload(receive, send)
            return
    await reference_app(scope, receive, send)
