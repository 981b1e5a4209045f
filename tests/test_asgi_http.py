"""The ASGI ``http`` scope and its extensions, against a real running server.

Every test talks to a :func:`tests.servers.serve` server over a real socket
(httpx, a raw socket when the exact bytes matter, or curl).  The apps record
what they saw into thread-safe queues that the test reads back.
"""

from __future__ import annotations

import asyncio
import copy
import datetime
import hashlib
import os
import queue
import socket
import ssl
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from asgiri.ssl_utils import generate_self_signed_cert, save_cert_and_key

from .servers import serve

TIMEOUT = 10.0


# ----------------------------------------------------------------------------- helpers


def raw_exchange(port: int, data: bytes, timeout: float = TIMEOUT) -> bytes:
    """Send ``data`` and read until the server closes the connection."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(data)
        return read_to_eof(sock)


def read_to_eof(sock: socket.socket) -> bytes:
    chunks = []
    while True:
        chunk = sock.recv(65536)
        if not chunk:
            return b"".join(chunks)
        chunks.append(chunk)


class ResponseReader:
    """Reads complete HTTP/1.1 responses (1xx, Content-Length, chunked) off a socket."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.buf = b""

    def _fill(self) -> None:
        chunk = self.sock.recv(65536)
        if not chunk:
            raise EOFError("connection closed mid-response")
        self.buf += chunk

    def _take_line(self) -> bytes:
        while b"\r\n" not in self.buf:
            self._fill()
        line, _, self.buf = self.buf.partition(b"\r\n")
        return line

    def _take(self, n: int) -> bytes:
        while len(self.buf) < n:
            self._fill()
        data, self.buf = self.buf[:n], self.buf[n:]
        return data

    def head(self) -> tuple[int, list[tuple[bytes, bytes]]]:
        while b"\r\n\r\n" not in self.buf:
            self._fill()
        raw, _, self.buf = self.buf.partition(b"\r\n\r\n")
        lines = raw.split(b"\r\n")
        status = int(lines[0].split(b" ")[1])
        headers = []
        for line in lines[1:]:
            name, _, value = line.partition(b":")
            headers.append((name.strip().lower(), value.strip()))
        return status, headers

    def response(self, head_request: bool = False) -> tuple[int, dict[bytes, bytes], bytes]:
        status, header_list = self.head()
        headers = dict(header_list)
        if head_request or status in (204, 304) or status < 200:
            return status, headers, b""
        if headers.get(b"transfer-encoding") == b"chunked":
            body = b""
            while True:
                size = int(self._take_line(), 16)
                if size == 0:
                    while self._take_line():
                        pass
                    return status, headers, body
                body += self._take(size)
                assert self._take(2) == b"\r\n"
        return status, headers, self._take(int(headers[b"content-length"]))


def request_bytes(method: str, target: str, *headers: str, body: bytes = b"") -> bytes:
    lines = [f"{method} {target} HTTP/1.1", "Host: testserver", *headers]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


async def respond(send: Any, body: bytes = b"ok", status: int = 200) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [(b"content-type", b"text/plain")],
        }
    )
    await send({"type": "http.response.body", "body": body})


async def lifespan_with_state(receive: Any, send: Any, scope: Any) -> None:
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            scope["state"]["started"] = True
            scope["state"]["greeting"] = "hello"
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return


class ScopeRecorder:
    """An app that records a deep copy of every http scope it is called with."""

    def __init__(self) -> None:
        self.scopes: queue.Queue[dict[str, Any]] = queue.Queue()

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            await lifespan_with_state(receive, send, scope)
            return
        self.scopes.put(copy.deepcopy(scope))
        await respond(send)

    def get(self) -> dict[str, Any]:
        return self.scopes.get(timeout=TIMEOUT)


@pytest.fixture(scope="module")
def tls_files(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, str, bytes]:
    cert_pem, key_pem = generate_self_signed_cert("localhost", key_type="ec")
    directory = tmp_path_factory.mktemp("tls")
    cert, key = save_cert_and_key(cert_pem, key_pem, directory / "cert.pem", directory / "key.pem")
    return str(cert), str(key), cert_pem


def tls_client_context(
    cafile: str, maximum: ssl.TLSVersion | None = None, client: tuple[str, str] | None = None
) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=cafile)
    if maximum is not None:
        context.maximum_version = maximum
    if client is not None:
        context.load_cert_chain(*client)
    return context


# ----------------------------------------------------------------------------- scope


def test_scope_keys_per_spec() -> None:
    app = ScopeRecorder()
    with serve(app) as srv, socket.create_connection(("127.0.0.1", srv.port)) as sock:
        sock.settimeout(TIMEOUT)
        sock.sendall(
            b"GET /caf%C3%A9/a%2Fb?q=a%20b&x=1&x=2 HTTP/1.1\r\n"
            b"Host: testserver\r\n"
            b"X-Custom: MixedCase Value\r\n"
            b"x-dup: 1\r\n"
            b"Accept: */*\r\n"
            b"X-Dup: 2\r\n"
            b"\r\n"
        )
        status, _, body = ResponseReader(sock).response()
        client_port = sock.getsockname()[1]
        server_port = srv.port
    assert (status, body) == (200, b"ok")
    scope = app.get()
    assert scope["type"] == "http"
    assert scope["asgi"] == {"version": "3.0", "spec_version": "2.4"}
    assert scope["http_version"] == "1.1"
    assert scope["method"] == "GET"
    assert scope["scheme"] == "http"
    assert scope["path"] == "/café/a/b"
    assert type(scope["path"]) is str
    assert scope["raw_path"] == b"/caf%C3%A9/a%2Fb"
    assert scope["query_string"] == b"q=a%20b&x=1&x=2"
    assert scope["root_path"] == ""
    assert scope["headers"] == [
        (b"host", b"testserver"),
        (b"x-custom", b"MixedCase Value"),
        (b"x-dup", b"1"),
        (b"accept", b"*/*"),
        (b"x-dup", b"2"),
    ]
    for name, value in scope["headers"]:
        assert type(name) is bytes and type(value) is bytes
    assert scope["client"] == ("127.0.0.1", client_port)
    assert isinstance(scope["client"], tuple)
    assert scope["server"] == ("127.0.0.1", server_port)
    assert isinstance(scope["server"], tuple)
    assert scope["state"]["started"] is True


def test_scope_methods_and_empty_query() -> None:
    app = ScopeRecorder()
    with serve(app) as srv, httpx.Client(base_url=srv.url, timeout=TIMEOUT) as client:
        for method in ("GET", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "HEAD"):
            response = client.request(method, "/plain")
            assert response.status_code == 200
            scope = app.get()
            assert scope["method"] == method
            assert scope["path"] == "/plain"
            assert scope["query_string"] == b""


def test_scope_http_10() -> None:
    app = ScopeRecorder()
    with serve(app) as srv:
        raw = raw_exchange(srv.port, b"GET /old?v=1 HTTP/1.0\r\n\r\n")
    assert raw.startswith(b"HTTP/1.1 200 ")
    assert raw.endswith(b"\r\n\r\nok")
    scope = app.get()
    assert scope["http_version"] == "1.0"
    assert scope["path"] == "/old"
    assert scope["query_string"] == b"v=1"


def test_scope_root_path() -> None:
    app = ScopeRecorder()
    with serve(app, root_path="/api") as srv:
        response = httpx.get(f"{srv.url}/users/caf%C3%A9?id=3", timeout=TIMEOUT)
    assert response.status_code == 200
    scope = app.get()
    assert scope["root_path"] == "/api"
    assert scope["path"] == "/api/users/café"
    assert scope["raw_path"].endswith(b"/users/caf%C3%A9")
    assert scope["query_string"] == b"id=3"


def test_scope_state_is_a_copy_per_request() -> None:
    seen: queue.Queue[dict[str, Any]] = queue.Queue()

    async def app(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            await lifespan_with_state(receive, send, scope)
            return
        seen.put(dict(scope["state"]))
        scope["state"]["leaked"] = scope["path"]
        scope["state"]["greeting"] = "changed"
        await respond(send)

    with serve(app) as srv, httpx.Client(base_url=srv.url, timeout=TIMEOUT) as client:
        assert client.get("/first").status_code == 200
        assert client.get("/second").status_code == 200
    first = seen.get(timeout=TIMEOUT)
    second = seen.get(timeout=TIMEOUT)
    assert first == {"started": True, "greeting": "hello"}
    assert second == {"started": True, "greeting": "hello"}


def test_scope_extensions_cleartext() -> None:
    app = ScopeRecorder()
    with serve(app) as srv:
        assert httpx.get(srv.url, timeout=TIMEOUT).status_code == 200
    extensions = app.get()["extensions"]
    for name in (
        "http.response.trailers",
        "http.response.early_hint",
        "http.response.pathsend",
        "http.response.zerocopy",
    ):
        assert extensions[name] == {}
    assert "tls" not in extensions


@pytest.mark.parametrize(
    ("maximum", "version"),
    [(ssl.TLSVersion.TLSv1_2, 0x0303), (ssl.TLSVersion.TLSv1_3, 0x0304)],
)
def test_scope_tls_extension(
    tls_files: tuple[str, str, bytes], maximum: ssl.TLSVersion, version: int
) -> None:
    certfile, keyfile, cert_pem = tls_files
    app = ScopeRecorder()
    with serve(app, certfile=certfile, keyfile=keyfile) as srv:
        context = tls_client_context(certfile, maximum)
        with (
            socket.create_connection(("127.0.0.1", srv.port), timeout=TIMEOUT) as plain,
            context.wrap_socket(plain, server_hostname="localhost") as sock,
        ):
            sock.sendall(request_bytes("GET", "/secure", "Connection: close"))
            raw = read_to_eof(sock)
            negotiated = sock.cipher()
            client_port = sock.getsockname()[1]
    assert raw.startswith(b"HTTP/1.1 200 ")
    scope = app.get()
    assert scope["scheme"] == "https"
    assert scope["client"] == ("127.0.0.1", client_port)
    extensions = scope["extensions"]
    assert "http.response.zerocopy" not in extensions
    assert "http.response.pathsend" in extensions
    tls = extensions["tls"]
    assert tls["tls_version"] == version
    assert type(tls["cipher_suite"]) is int
    expected_ids = {c["name"]: c["id"] & 0xFFFF for c in context.get_ciphers()}
    assert tls["cipher_suite"] == expected_ids[negotiated[0]]
    assert type(tls["server_cert"]) is str
    assert tls["server_cert"].startswith("-----BEGIN CERTIFICATE-----")
    assert tls["server_cert"].strip() == cert_pem.decode().strip()
    assert tls["client_cert_chain"] == []
    assert tls["client_cert_name"] is None


def _client_cert(
    directory: Path, common_name: str = "test-client", organization: str = "asgiri tests"
) -> tuple[str, str, str]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name(
        [
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, organization),
        ]
    )
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=2))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    cert_pem = cert.public_bytes(serialization.Encoding.PEM).decode()
    cert_path = directory / "client.pem"
    key_path = directory / "client.key"
    cert_path.write_text(cert_pem)
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return str(cert_path), str(key_path), cert_pem


def test_scope_tls_client_certificate(tls_files: tuple[str, str, bytes], tmp_path: Path) -> None:
    certfile, keyfile, _ = tls_files
    client_cert, client_key, client_pem = _client_cert(tmp_path)
    app = ScopeRecorder()
    with serve(app, certfile=certfile, keyfile=keyfile, ca_certs=client_cert, cert_reqs=2) as srv:
        context = tls_client_context(certfile, client=(client_cert, client_key))
        with (
            socket.create_connection(("127.0.0.1", srv.port), timeout=TIMEOUT) as plain,
            context.wrap_socket(plain, server_hostname="localhost") as sock,
        ):
            sock.sendall(request_bytes("GET", "/mtls", "Connection: close"))
            raw = read_to_eof(sock)
    assert raw.startswith(b"HTTP/1.1 200 ")
    tls = app.get()["extensions"]["tls"]
    chain = tls["client_cert_chain"]
    assert isinstance(chain, list) and len(chain) == 1
    assert type(chain[0]) is str
    assert chain[0].strip() == client_pem.strip()
    assert tls["client_cert_name"] == "O=asgiri tests,CN=test-client"


def test_scope_tls_client_cert_name_is_escaped(
    tls_files: tuple[str, str, bytes], tmp_path: Path
) -> None:
    """RFC 4514: characters that would split the name are escaped."""
    certfile, keyfile, _ = tls_files
    client_cert, client_key, client_pem = _client_cert(tmp_path, 'Doe, "J" +1;<x>', "#org ")
    app = ScopeRecorder()
    with serve(app, certfile=certfile, keyfile=keyfile, ca_certs=client_cert, cert_reqs=2) as srv:
        context = tls_client_context(certfile, client=(client_cert, client_key))
        with (
            socket.create_connection(("127.0.0.1", srv.port), timeout=TIMEOUT) as plain,
            context.wrap_socket(plain, server_hostname="localhost") as sock,
        ):
            sock.sendall(request_bytes("GET", "/mtls", "Connection: close"))
            assert read_to_eof(sock).startswith(b"HTTP/1.1 200 ")
    expected = x509.load_pem_x509_certificate(client_pem.encode()).subject.rfc4514_string()
    assert app.get()["extensions"]["tls"]["client_cert_name"] == expected
    assert expected == 'O=\\#org\\ ,CN=Doe\\, \\"J\\" \\+1\\;\\<x\\>'


# ----------------------------------------------------------------------------- extensions


async def trailers_app(scope: Any, receive: Any, send: Any) -> None:
    if scope["type"] != "http":
        return
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [(b"trailer", b"x-checksum, x-other")],
            "trailers": True,
        }
    )
    await send({"type": "http.response.body", "body": b"hello", "more_body": True})
    await send({"type": "http.response.body", "body": b" world", "more_body": False})
    await send(
        {
            "type": "http.response.trailers",
            "headers": [(b"x-checksum", b"abc123")],
            "more_trailers": True,
        }
    )
    await send({"type": "http.response.trailers", "headers": [(b"x-other", b"1")]})


def test_trailers_on_the_wire() -> None:
    with serve(trailers_app) as srv:
        raw = raw_exchange(
            srv.port, request_bytes("GET", "/t", "TE: trailers", "Connection: close")
        )
    head, _, body = raw.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 ")
    head_lines = head.lower().split(b"\r\n")
    assert b"transfer-encoding: chunked" in head_lines
    assert b"trailer: x-checksum, x-other" in head_lines
    assert not any(line.startswith(b"content-length") for line in head_lines)
    assert body == b"5\r\nhello\r\n6\r\n world\r\n0\r\nx-checksum: abc123\r\nx-other: 1\r\n\r\n"


def test_trailers_keep_the_connection_usable() -> None:
    with serve(trailers_app) as srv, socket.create_connection(("127.0.0.1", srv.port)) as sock:
        sock.settimeout(TIMEOUT)
        reader = ResponseReader(sock)
        for _ in range(2):
            sock.sendall(request_bytes("GET", "/t", "TE: trailers"))
            status, _, body = reader.response()
            assert (status, body) == (200, b"hello world")


def make_early_hint_app(proceed: threading.Event) -> Any:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        await send(
            {
                "type": "http.response.early_hint",
                "links": [
                    b"</style.css>; rel=preload; as=style",
                    b"</app.js>; rel=preload; as=script",
                ],
            }
        )
        if scope["query_string"] == b"wait":
            # The final response is only produced once the client saw the 103.
            await asyncio.to_thread(proceed.wait, TIMEOUT)
        await respond(send, b"final")

    return app


def test_early_hints_arrive_before_the_response() -> None:
    proceed = threading.Event()
    with (
        serve(make_early_hint_app(proceed)) as srv,
        socket.create_connection(("127.0.0.1", srv.port)) as sock,
    ):
        sock.settimeout(TIMEOUT)
        sock.sendall(request_bytes("GET", "/?wait"))
        reader = ResponseReader(sock)
        status, headers = reader.head()
        assert status == 103
        assert headers == [
            (b"link", b"</style.css>; rel=preload; as=style"),
            (b"link", b"</app.js>; rel=preload; as=script"),
        ]
        assert reader.buf == b""  # nothing of the final response yet
        proceed.set()
        status, _, body = reader.response()
    assert (status, body) == (200, b"final")


def test_early_hints_with_curl() -> None:
    with serve(make_early_hint_app(threading.Event())) as srv:
        result = subprocess.run(
            ["curl", "-sv", "--max-time", "10", f"{srv.url}/hints"],
            capture_output=True,
            text=True,
            timeout=30,
        )
    assert result.returncode == 0, result.stderr
    assert result.stdout == "final"
    lines = result.stderr.splitlines()
    hint = next(i for i, line in enumerate(lines) if line.startswith("< HTTP/1.1 103"))
    final = next(i for i, line in enumerate(lines) if line.startswith("< HTTP/1.1 200"))
    assert hint < final
    assert "< link: </style.css>; rel=preload; as=style" in lines[hint:final]
    assert "< link: </app.js>; rel=preload; as=script" in lines[hint:final]


def test_early_hints_not_sent_to_http_10() -> None:
    with serve(make_early_hint_app(threading.Event())) as srv:
        raw = raw_exchange(srv.port, b"GET / HTTP/1.0\r\n\r\n")
    assert raw.startswith(b"HTTP/1.1 200 ")
    assert b"103" not in raw.split(b"\r\n")[0]
    assert b"link:" not in raw.lower()


@pytest.fixture(scope="module")
def data_file(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, bytes]:
    data = os.urandom(3 * 1024 * 1024 + 12345)
    path = tmp_path_factory.mktemp("files") / "blob.bin"
    path.write_bytes(data)
    return path, data


def make_pathsend_app(path: Path, size: int) -> Any:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        assert "http.response.pathsend" in scope["extensions"]
        headers = [(b"content-type", b"application/octet-stream")]
        if scope["query_string"] != b"chunked":
            headers.append((b"content-length", str(size).encode()))
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.pathsend", "path": str(path)})

    return app


# uvloop (the default when installed) has no loop.sendfile, so files go out in
# chunks there; the asyncio loop takes the os.sendfile path for cleartext.
LOOPS = pytest.mark.parametrize("loop", ["auto", "asyncio"])


@LOOPS
@pytest.mark.parametrize("tls", [False, True], ids=["cleartext", "tls"])
@pytest.mark.parametrize("framing", ["length", "chunked"])
def test_pathsend(
    tls: bool,
    framing: str,
    loop: str,
    data_file: tuple[Path, bytes],
    tls_files: tuple[str, str, bytes],
) -> None:
    path, data = data_file
    options: dict[str, Any] = {"loop": loop}
    verify: Any = True
    if tls:
        options.update(certfile=tls_files[0], keyfile=tls_files[1])
        verify = tls_client_context(tls_files[0])
    query = "?chunked" if framing == "chunked" else ""
    with (
        serve(make_pathsend_app(path, len(data)), **options) as srv,
        httpx.Client(base_url=srv.url.replace("127.0.0.1", "localhost"), verify=verify) as client,
    ):
        for _ in range(2):  # the connection stays usable after a file
            response = client.get(f"/file{query}", timeout=TIMEOUT)
            assert response.status_code == 200
            if framing == "chunked":
                assert response.headers["transfer-encoding"] == "chunked"
            else:
                assert response.headers["content-length"] == str(len(data))
            assert len(response.content) == len(data)
            assert hashlib.sha256(response.content).digest() == hashlib.sha256(data).digest()


@LOOPS
@pytest.mark.parametrize("delta", [-1000, 1000], ids=["file-longer", "file-shorter"])
def test_pathsend_length_mismatch_closes(
    loop: str, delta: int, data_file: tuple[Path, bytes]
) -> None:
    """A file that does not match the declared Content-Length: never more bytes, then EOF."""
    path, data = data_file
    declared = len(data) + delta
    with serve(make_pathsend_app(path, declared), loop=loop) as srv:
        raw = raw_exchange(srv.port, request_bytes("GET", "/file"))
        assert httpx.get(f"{srv.url}/file?chunked", timeout=TIMEOUT).content == data
    head, _, body = raw.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 ")
    assert f"content-length: {declared}".encode() in head.lower()
    assert len(body) < declared
    assert body == data[: len(body)]


def test_pathsend_opens_and_reads_the_file_off_the_event_loop(tmp_path: Path) -> None:
    """A file that takes its time holds up its own response only, not the server.

    Here the file is a named pipe, whose ``open()`` waits for a writer: were it
    opened on the event loop, no other request would be answered meanwhile.
    """
    fifo = tmp_path / "slow-file"
    os.mkfifo(fifo)
    entered = threading.Event()

    async def app(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        await send({"type": "http.response.start", "status": 200, "headers": []})
        if scope["path"] == "/file":
            entered.set()  # the next send opens the file, without yielding first
            await send({"type": "http.response.pathsend", "path": str(fifo)})
        else:
            await send({"type": "http.response.body", "body": b"pong"})

    outcome: queue.Queue[object] = queue.Queue()

    def fetch(url: str) -> None:
        try:
            outcome.put(httpx.get(url, timeout=TIMEOUT))
        except httpx.HTTPError as exc:
            outcome.put(exc)

    with serve(app) as srv:
        waiting = threading.Thread(target=fetch, args=(f"{srv.url}/file",), daemon=True)
        waiting.start()
        assert entered.wait(TIMEOUT)
        try:
            # The server is inside the pathsend of /file now; it still answers.
            assert httpx.get(f"{srv.url}/ping", timeout=5).content == b"pong"
        finally:
            with open(fifo, "wb"):  # a writer lets the open() of /file return
                pass
        waiting.join(TIMEOUT)
        assert not waiting.is_alive()
        # (A pipe cannot be read at an offset, so /file itself fails: its response is cut.)
        assert isinstance(outcome.get_nowait(), httpx.HTTPError | httpx.Response)
        assert httpx.get(f"{srv.url}/ping", timeout=TIMEOUT).content == b"pong"


def make_zerocopy_app(path: Path) -> Any:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        assert "http.response.zerocopy" in scope["extensions"]
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"content-length", b"%d" % (5000 + 3000 + 100000 + 4))],
            }
        )
        with open(path, "rb") as fh:
            await send(
                {
                    "type": "http.response.zerocopy",
                    "file": fh,
                    "offset": 100,
                    "count": 5000,
                    "more_body": True,
                }
            )
            fh.seek(7777)  # no offset: the file's current position is used
            await send(
                {"type": "http.response.zerocopy", "file": fh, "count": 3000, "more_body": True}
            )
            await send(
                {
                    "type": "http.response.zerocopy",
                    "file": fh,
                    "offset": 2_000_000,
                    "count": 100000,
                    "more_body": True,
                }
            )
        await send({"type": "http.response.body", "body": b"tail"})

    return app


@LOOPS
def test_zerocopy(loop: str, data_file: tuple[Path, bytes]) -> None:
    path, data = data_file
    expected = data[100:5100] + data[7777:10777] + data[2_000_000:2_100_000] + b"tail"
    with (
        serve(make_zerocopy_app(path), loop=loop) as srv,
        httpx.Client(base_url=srv.url, timeout=TIMEOUT) as client,
    ):
        for _ in range(2):
            response = client.get("/zc")
            assert response.status_code == 200
            assert response.headers["content-length"] == str(len(expected))
            assert response.content == expected


# ----------------------------------------------------------------------------- request body


class BodyRecorder:
    """Records (len(body), more_body) of every http.request message, then answers."""

    def __init__(self, delay: float = 0.0) -> None:
        self.delay = delay
        self.messages: queue.Queue[list[tuple[int, bool]]] = queue.Queue()

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        seen = []
        digest = hashlib.sha256()
        while True:
            message = await receive()
            assert message["type"] == "http.request"
            digest.update(message["body"])
            seen.append((len(message["body"]), message["more_body"]))
            if not message["more_body"]:
                break
            if self.delay:
                await asyncio.sleep(self.delay)
        self.messages.put(seen)
        await respond(send, digest.hexdigest().encode())


FIVE_MIB = 5 * 1024 * 1024


def _assert_streamed(seen: list[tuple[int, bool]], total: int) -> None:
    assert len(seen) > 1, "a 5 MiB body should arrive in several messages"
    assert sum(n for n, _ in seen) == total
    assert all(more for _, more in seen[:-1])
    assert seen[-1][1] is False


def test_request_body_streamed_chunked_upload() -> None:
    data = os.urandom(FIVE_MIB)
    app = BodyRecorder()

    def chunks() -> Iterator[bytes]:
        for i in range(0, len(data), 256 * 1024):
            yield data[i : i + 256 * 1024]

    with serve(app) as srv:
        response = httpx.post(f"{srv.url}/up", content=chunks(), timeout=TIMEOUT)
    assert response.status_code == 200
    assert response.text == hashlib.sha256(data).hexdigest()
    _assert_streamed(app.messages.get(timeout=TIMEOUT), len(data))


def test_request_body_slow_reader_gets_every_byte() -> None:
    data = os.urandom(FIVE_MIB)
    app = BodyRecorder(delay=0.005)
    with serve(app) as srv:
        response = httpx.post(f"{srv.url}/up", content=data, timeout=30)
    assert response.status_code == 200
    assert response.text == hashlib.sha256(data).hexdigest()
    seen = app.messages.get(timeout=TIMEOUT)
    _assert_streamed(seen, len(data))
    # Reading pauses while the app is slow: no message holds a large share.
    assert max(n for n, _ in seen) < 2 * 1024 * 1024


def test_disconnect_while_reading_body() -> None:
    events: queue.Queue[Any] = queue.Queue()

    async def app(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        if scope["path"] == "/ok":
            await respond(send)
            return
        first = await receive()
        events.put(("first", first["type"], len(first["body"]), first["more_body"]))
        try:
            events.put(await receive())
        finally:
            events.put("finally")

    with serve(app) as srv:
        sock = socket.create_connection(("127.0.0.1", srv.port), timeout=TIMEOUT)
        sock.sendall(request_bytes("POST", "/up", "Content-Length: 100000", body=b"x" * 1000))
        assert events.get(timeout=TIMEOUT) == ("first", "http.request", 1000, True)
        sock.close()
        assert events.get(timeout=TIMEOUT) == {"type": "http.disconnect"}
        assert events.get(timeout=TIMEOUT) == "finally"
        assert httpx.get(f"{srv.url}/ok", timeout=TIMEOUT).text == "ok"


def test_disconnect_while_waiting_after_body() -> None:
    """A long-poll app blocked in receive() learns that the client left."""
    events: queue.Queue[Any] = queue.Queue()

    async def app(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        events.put(await receive())
        events.put(await receive())

    with serve(app) as srv:
        sock = socket.create_connection(("127.0.0.1", srv.port), timeout=TIMEOUT)
        sock.sendall(request_bytes("GET", "/poll"))
        assert events.get(timeout=TIMEOUT) == {
            "type": "http.request",
            "body": b"",
            "more_body": False,
        }
        with pytest.raises(queue.Empty):
            events.get(timeout=0.2)  # still connected: receive() must block
        sock.close()
        assert events.get(timeout=TIMEOUT) == {"type": "http.disconnect"}


def test_receive_after_response_returns_disconnect() -> None:
    events: queue.Queue[Any] = queue.Queue()

    async def app(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        body = b""
        while True:
            message = await receive()
            body += message["body"]
            if not message["more_body"]:
                break
        await respond(send, body)
        try:
            events.put(await asyncio.wait_for(receive(), TIMEOUT))
        except asyncio.TimeoutError:
            events.put("timeout")

    with serve(app) as srv, socket.create_connection(("127.0.0.1", srv.port)) as sock:
        sock.settimeout(TIMEOUT)
        reader = ResponseReader(sock)
        sock.sendall(request_bytes("POST", "/x", "Content-Length: 5", body=b"hello"))
        assert reader.response()[2] == b"hello"
        # The connection is still open (keep-alive), yet the app is told the
        # exchange is over.
        assert events.get(timeout=TIMEOUT) == {"type": "http.disconnect"}
        sock.sendall(request_bytes("POST", "/x", "Content-Length: 3", body=b"abc"))
        assert reader.response()[2] == b"abc"
        assert events.get(timeout=TIMEOUT) == {"type": "http.disconnect"}


def test_receive_survives_a_cancelled_receive() -> None:
    """A receive() cancelled by a timeout must not poison the next receive()."""
    events: queue.Queue[Any] = queue.Queue()

    async def app(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        try:
            await asyncio.wait_for(receive(), 0.05)
            events.put("no timeout")
        except asyncio.TimeoutError:
            events.put("timed out")
        message = await receive()
        await respond(send, message["body"])

    with serve(app) as srv:
        sock = socket.create_connection(("127.0.0.1", srv.port), timeout=TIMEOUT)
        with sock:
            sock.sendall(request_bytes("POST", "/x", "Content-Length: 5"))
            assert events.get(timeout=TIMEOUT) == "timed out"
            sock.sendall(b"hello")
            status, _, body = ResponseReader(sock).response()
    assert (status, body) == (200, b"hello")


def test_expect_100_continue() -> None:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        message = await receive()
        await respond(send, message["body"])

    with serve(app) as srv, socket.create_connection(("127.0.0.1", srv.port)) as sock:
        sock.settimeout(TIMEOUT)
        sock.sendall(request_bytes("POST", "/x", "Content-Length: 4", "Expect: 100-continue"))
        reader = ResponseReader(sock)
        assert reader.head()[0] == 100
        sock.sendall(b"data")
        status, _, body = reader.response()
    assert (status, body) == (200, b"data")
