"""WSGI apps the tests serve: a plain PEP 3333 app and a Flask app."""

from __future__ import annotations

import hashlib
import json
import sys
import threading
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from flask import Flask, Response, request, stream_with_context

StartResponse = Callable[..., Any]

#: Chunks the streaming generator has produced (read by the backpressure test).
produced = 0
produced_lock = threading.Lock()
CHUNK = b"z" * 65536


def _environ_view(environ: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in environ.items() if isinstance(v, str | int | tuple)}


def plain(environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
    """Routes by PATH_INFO: /environ, /upload, /stream, /lines, /error, /late-error."""
    path = environ["PATH_INFO"]
    if path == "/environ":
        body = json.dumps(_environ_view(environ)).encode()
        start_response("200 OK", [("Content-Type", "application/json")])
        return [body]
    if path == "/upload":
        # Read in pieces, as a streaming consumer would.
        digest = hashlib.sha256()
        total = 0
        stream = environ["wsgi.input"]
        while True:
            chunk = stream.read(100_000)
            if not chunk:
                break
            digest.update(chunk)
            total += len(chunk)
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [f"{total} {digest.hexdigest()}".encode()]
    if path == "/lines":
        lines = list(environ["wsgi.input"])
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [json.dumps([line.decode() for line in lines]).encode()]
    if path == "/stream":
        count = int(environ["QUERY_STRING"] or "4")
        start_response("200 OK", [("Content-Type", "application/octet-stream")])
        return _generate(count)
    if path == "/write":
        write = start_response("200 OK", [("Content-Type", "text/plain")])
        write(b"written ")
        return [b"then returned"]
    if path == "/exc-info":
        start_response("200 OK", [("Content-Type", "text/plain")])
        try:
            raise ValueError("changed my mind")
        except ValueError:
            start_response(
                "503 Service Unavailable", [("Content-Type", "text/plain")], sys.exc_info()
            )
        environ["wsgi.errors"].write("exc-info route logged this\n")
        return [b"replaced answer"]
    if path == "/error":
        raise RuntimeError("boom before start_response")
    start_response("404 Not Found", [("Content-Type", "text/plain")])
    return [b"not found"]


def _generate(count: int) -> Iterator[bytes]:
    global produced
    for _ in range(count):
        with produced_lock:
            produced += 1
        yield CHUNK


flask_app = Flask("wsgiapps")


@flask_app.get("/hello")
def flask_hello() -> str:
    return f"hello {request.args.get('name', 'world')} over {request.environ['SERVER_PROTOCOL']}"


@flask_app.post("/upload")
def flask_upload() -> dict[str, Any]:
    digest = hashlib.sha256()
    total = 0
    while True:
        chunk = request.stream.read(65536)
        if not chunk:
            break
        digest.update(chunk)
        total += len(chunk)
    return {"size": total, "sha256": digest.hexdigest()}


@flask_app.get("/stream")
def flask_stream() -> Response:
    parts = int(request.args.get("parts", "5"))

    def generate() -> Iterator[str]:
        for i in range(parts):
            yield f"part {i}\n"

    return Response(stream_with_context(generate()), mimetype="text/plain")
