"""A raw HTTP/1.1 client over a socket: exact request bytes out, responses parsed by hand,
so pipelining, framing and bad input can be checked byte for byte.
"""

from __future__ import annotations

import socket
import time
from typing import Any

IO_TIMEOUT = 5.0


class RawClient:
    """A TCP client that writes exact bytes and reads responses by their framing."""

    def __init__(self, port: int, timeout: float = IO_TIMEOUT) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self.sock.settimeout(timeout)
        self.buf = b""
        self.raw = b""

    def __enter__(self) -> RawClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self.sock.close()

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def _fill(self) -> None:
        data = self.sock.recv(65536)
        if not data:
            raise EOFError(f"connection closed; unparsed bytes {self.buf!r}")
        self.buf += data
        self.raw += data

    def _line(self) -> bytes:
        while b"\r\n" not in self.buf:
            self._fill()
        line, self.buf = self.buf.split(b"\r\n", 1)
        return line

    def _exact(self, n: int) -> bytes:
        while len(self.buf) < n:
            self._fill()
        data, self.buf = self.buf[:n], self.buf[n:]
        return data

    def _head(self) -> tuple[int, bytes, list[tuple[bytes, bytes]]]:
        line = self._line()
        version, _, rest = line.partition(b" ")
        assert version == b"HTTP/1.1", f"bad status line {line!r}"
        code, _, reason = rest.partition(b" ")
        headers = []
        while True:
            field = self._line()
            if not field:
                break
            name, sep, value = field.partition(b":")
            assert sep and name == name.strip(), f"bad header line {field!r}"
            headers.append((name.lower(), value.strip()))
        return int(code), reason, headers

    def read_response(self, head_request: bool = False) -> Response:
        """Read one final response (1xx interim responses are recorded, then skipped)."""
        start = len(self.raw) - len(self.buf)
        interim = []
        while True:
            status, reason, headers = self._head()
            if 100 <= status < 200 and status != 101:
                interim.append(status)
                continue
            break
        names = {name for name, _ in headers}
        trailers: list[tuple[bytes, bytes]] = []
        if head_request or status in (204, 304):
            body = b""
        elif b"transfer-encoding" in names:
            assert dict(headers)[b"transfer-encoding"] == b"chunked"
            assert b"content-length" not in names, "both Content-Length and chunked"
            parts = []
            while True:
                size_line = self._line()
                size = int(size_line.split(b";")[0], 16)
                if size == 0:
                    break
                parts.append(self._exact(size))
                assert self._exact(2) == b"\r\n"
            while True:
                field = self._line()
                if not field:
                    break
                name, _, value = field.partition(b":")
                trailers.append((name.lower(), value.strip()))
            body = b"".join(parts)
        elif b"content-length" in names:
            body = self._exact(int(dict(headers)[b"content-length"]))
        else:
            body = self.read_until_eof()
        raw = self.raw[start : len(self.raw) - len(self.buf)]
        return Response(status, reason, headers, body, raw, interim, trailers)

    def read_until_eof(self) -> bytes:
        """Everything until the server closes; raises ``socket.timeout`` if it does not."""
        data, self.buf = self.buf, b""
        while True:
            try:
                chunk = self.sock.recv(65536)
            except ConnectionResetError:
                return data
            if not chunk:
                return data
            self.raw += chunk
            data += chunk

    def assert_closed(self) -> None:
        """The server closed the connection and sent nothing more."""
        rest = self.read_until_eof()
        assert rest == b"", f"unexpected bytes after the response: {rest!r}"


def get(path: str = "/", *extra: str, version: str = "1.1", host: bool = True) -> bytes:
    lines = [f"GET {path} HTTP/{version}"]
    if host:
        lines.append("Host: test")
    lines.extend(extra)
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def exchange(port: int, data: bytes, head_request: bool = False) -> Response:
    with RawClient(port) as client:
        client.send(data)
        return client.read_response(head_request)


class Response:
    """One parsed response: status, lower-cased headers, decoded body, raw bytes."""

    def __init__(
        self,
        status: int,
        reason: bytes,
        headers: list[tuple[bytes, bytes]],
        body: bytes,
        raw: bytes,
        interim: list[int],
        trailers: list[tuple[bytes, bytes]],
    ) -> None:
        self.status = status
        self.reason = reason
        self.headers = headers
        self.body = body
        self.raw = raw
        self.interim = interim
        self.trailers = trailers

    def get(self, name: bytes) -> bytes | None:
        values = self.get_all(name)
        return values[0] if values else None

    def get_all(self, name: bytes) -> list[bytes]:
        return [value for key, value in self.headers if key == name]

    def __repr__(self) -> str:
        return f"<Response {self.status} {self.raw[:300]!r}>"


def post(path: str, body: bytes, *extra: str) -> bytes:
    lines = [f"POST {path} HTTP/1.1", "Host: test", f"Content-Length: {len(body)}", *extra]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


def wait_until(predicate: Any, timeout: float = 5.0) -> bool:
    """Poll ``predicate`` until true (bounded); for state the server updates asynchronously."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.01)
    return bool(predicate())
