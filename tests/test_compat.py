"""Code written for asgiri 0.3 runs unchanged.

These tests call the public API the way an application's own test suite
does: ``threading.Thread(target=Server(...).run, daemon=True)``, wait on
``server.started``, talk to the server with real clients (httpx, the
``websockets`` library, ``ssl``), then ``server.request_shutdown()``.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import ipaddress
import logging
import os
import queue
import re
import signal
import socket
import ssl
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from aioquic.quic.configuration import QuicConfiguration
from cryptography import x509
from websockets.sync.client import connect

from asgiri.cli import build_parser
from asgiri.config import Config
from asgiri.config_file import load_config_file
from asgiri.errors import BindError, LifespanStartupError, StartupError
from asgiri.server import HttpProtocolVersion, LifespanPolicy, Server
from asgiri.ssl_utils import (
    create_ssl_context,
    generate_self_signed_cert,
    save_cert_and_key,
    spki_sha256_base64,
)
from tests.h3_client import H3Client
from tests.servers import cli_server, run_cli
from tests.test_websocket import PING, RawWS

TIMEOUT = 15.0


# ----------------------------------------------------------------------------- apps


async def hello(scope: Any, receive: Any, send: Any) -> None:
    if scope["type"] != "http":
        return
    body = f"{scope['http_version']} {scope['scheme']}".encode()
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": body})


class LifespanApp:
    """Records lifespan events; ``mode`` "ok" supports lifespan, "raise" does not.

    "hang" never answers the startup, "fail" answers it with ``lifespan.startup.failed``.
    """

    def __init__(self, mode: str = "ok") -> None:
        self.mode = mode
        self.events: list[str] = []

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            self.events.append("lifespan-scope")
            if self.mode == "raise":
                raise RuntimeError("no lifespan here")
            while True:
                message = await receive()
                self.events.append(message["type"])
                if message["type"] == "lifespan.startup":
                    if self.mode == "hang":
                        await asyncio.Event().wait()
                    if self.mode == "fail":
                        message = {"type": "lifespan.startup.failed", "message": "no database"}
                        await send(message)
                        return
                    scope["state"]["ready"] = "yes"
                    await send({"type": "lifespan.startup.complete"})
                else:
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        ready = scope.get("state", {}).get("ready", "no")
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": ready.encode()})


async def ws_echo(scope: Any, receive: Any, send: Any) -> None:
    if scope["type"] != "websocket":
        return
    message = await receive()
    assert message["type"] == "websocket.connect"
    await send({"type": "websocket.accept"})
    while True:
        message = await receive()
        if message["type"] == "websocket.disconnect":
            return
        await send({"type": "websocket.send", "text": message.get("text")})


class ASGI2Hello:
    """A double-callable (ASGI 2) app."""

    def __init__(self, scope: Any) -> None:
        self.scope = scope

    async def __call__(self, receive: Any, send: Any) -> None:
        if self.scope["type"] != "http":
            return
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"asgi2 " + self.scope["path"].encode()})


# ----------------------------------------------------------------------------- helpers


@contextlib.contextmanager
def running(server: Server) -> Iterator[Server]:
    """Exactly what an application's test suite writes."""
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + TIMEOUT
    while not server.started.wait(0.05):
        assert thread.is_alive(), "the server thread ended before it started serving"
        assert time.monotonic() < deadline, "the server did not start"
    try:
        yield server
    finally:
        server.request_shutdown()
        thread.join(TIMEOUT)
        assert not thread.is_alive(), "request_shutdown() did not stop run()"


def url(server: Server, path: str = "/") -> str:
    scheme = "https" if server.config.tls.enabled else "http"
    return f"{scheme}://127.0.0.1:{server.port}{path}"


@pytest.fixture(scope="module")
def pem() -> tuple[bytes, bytes]:
    return generate_self_signed_cert()


@pytest.fixture
def pem_files(tmp_path: Path, pem: tuple[bytes, bytes]) -> tuple[Path, Path]:
    return save_cert_and_key(*pem, tmp_path / "server.crt", tmp_path / "server.key")


def trusting(pem: tuple[bytes, bytes]) -> ssl.SSLContext:
    """A client context that trusts exactly the generated certificate."""
    return ssl.create_default_context(cadata=pem[0].decode())


# ----------------------------------------------------------------------------- signature


def test_server_signature_is_the_03_one() -> None:
    params = list(inspect.signature(Server).parameters.values())
    expected = [
        ("app", inspect.Parameter.empty),
        ("host", None),
        ("port", None),
        ("http_version", None),
        ("ssl_context", None),
        ("certfile", None),
        ("keyfile", None),
        ("cert_data", None),
        ("key_data", None),
        ("lifespan", None),
        ("lifespan_startup_timeout", 10.0),
        ("enable_http3", None),
        ("http3_port", None),
        ("reuse_port", False),
        ("shutdown_timeout", 30.0),
        ("ws_ping_interval", 20.0),
        ("ws_ping_timeout", 20.0),
        ("reload", False),
        ("reload_dirs", None),
        ("reload_delay_ms", 200),
        ("reload_ignore_patterns", None),
    ]
    assert [(p.name, p.default) for p in params[:-1]] == expected
    assert params[-1].kind is inspect.Parameter.VAR_KEYWORD


def test_signature_defaults_are_the_config_defaults() -> None:
    """The 0.3 defaults change nothing: the config stays the one source of defaults."""
    plain = Config(app=hello)
    server = Server(hello)
    for attr in ("app_options", "bind", "http", "websocket", "timeouts", "reload"):
        assert getattr(server.config, attr) == getattr(plain, attr), attr
    assert plain.timeouts.timeout_graceful_shutdown == 30.0
    assert plain.reload.reload_delay == 0.2


def test_names_of_03_map_onto_config_options() -> None:
    config = Server(
        hello,
        shutdown_timeout=3,
        reload_delay_ms=50,
        reload_ignore_patterns=["*.tmp", "build/"],
        reuse_port=True,
        lifespan_startup_timeout=2.5,
    ).config
    assert config.timeouts.timeout_graceful_shutdown == 3
    assert config.reload.reload_delay == 0.05
    assert config.reload.reload_excludes == ["*.tmp", "build/"]
    assert config.bind.reuse_port is True
    assert config.app_options.lifespan_startup_timeout == 2.5
    # The config's own names keep working beside them, but not two values for one option.
    assert Server(hello, timeout_graceful_shutdown=7).config.timeouts.timeout_graceful_shutdown == 7
    with pytest.raises(ValueError, match="shutdown_timeout or timeout_graceful_shutdown"):
        Server(hello, shutdown_timeout=3, timeout_graceful_shutdown=7)


def test_host_and_port_defaults(pem: tuple[bytes, bytes], pem_files: tuple[Path, Path]) -> None:
    plain = Server(hello).config
    assert (plain.bind.host, plain.port) == ("127.0.0.1", 8000)
    for tls in (
        {"certfile": str(pem_files[0]), "keyfile": str(pem_files[1])},
        {"certfile": pem_files[0], "keyfile": pem_files[1]},  # pathlib paths, as 0.3 took
        {"cert_data": pem[0], "key_data": pem[1]},
        {"ssl_context": create_ssl_context(cert_data=pem[0], key_data=pem[1])},
    ):
        assert Server(hello, **tls).config.port == 8443, tls
    assert Server(hello, host="0.0.0.0", port=9000).config.bind.host == "0.0.0.0"


@pytest.mark.parametrize(
    ("http_version", "tls", "enabled"),
    [
        (None, True, True),
        (HttpProtocolVersion.AUTO, True, True),
        (None, False, False),
        (HttpProtocolVersion.HTTP_1_1, True, False),
        (HttpProtocolVersion.HTTP_2, True, False),
        (HttpProtocolVersion.HTTP_3, True, True),
    ],
)
def test_enable_http3_default_follows_the_mode(
    pem: tuple[bytes, bytes], http_version: Any, tls: bool, enabled: bool
) -> None:
    kwargs: dict[str, Any] = {"cert_data": pem[0], "key_data": pem[1]} if tls else {}
    config = Server(hello, http_version=http_version, **kwargs).config
    assert config.http.enable_http3 is enabled
    if http_version is HttpProtocolVersion.HTTP_3:
        with pytest.raises(ValueError, match="serves only HTTP/3"):
            Server(hello, http_version=http_version, enable_http3=False, **kwargs)
    elif tls:
        off = Server(hello, http_version=http_version, enable_http3=False, **kwargs).config
        assert off.http.enable_http3 is False


def test_enum_values_are_the_03_ones() -> None:
    assert [(v.name, v.value) for v in HttpProtocolVersion] == [
        ("HTTP_1_1", "http/1.1"),
        ("HTTP_2", "http/2"),
        ("HTTP_3", "http/3"),
        ("AUTO", "auto"),
    ]
    assert [(v.name, v.value) for v in LifespanPolicy] == [
        ("ENABLED", "enabled"),
        ("DISABLED", "disabled"),
        ("AUTO", "auto"),
    ]
    for version in HttpProtocolVersion:
        assert HttpProtocolVersion(version.value) is version
        assert HttpProtocolVersion(version.option) is version  # the --http spelling
        assert HttpProtocolVersion(version.value.upper()) is version


@pytest.mark.parametrize(
    ("spelling", "expected"),
    [
        ("1.1", HttpProtocolVersion.HTTP_1_1),
        ("http/1.1", HttpProtocolVersion.HTTP_1_1),
        ("2", HttpProtocolVersion.HTTP_2),
        ("http/2", HttpProtocolVersion.HTTP_2),
        ("auto", HttpProtocolVersion.AUTO),
        (HttpProtocolVersion.HTTP_2, HttpProtocolVersion.HTTP_2),
    ],
)
def test_http_version_spellings_everywhere(
    spelling: Any, expected: HttpProtocolVersion, tmp_path: Path
) -> None:
    assert Server(hello, http_version=spelling).config.http.http_version is expected
    if isinstance(spelling, str):
        args = vars(build_parser().parse_args(["apps:hello", "--http", spelling]))
        assert Server(**args).config.http.http_version is expected
        path = tmp_path / "asgiri.toml"
        path.write_text(f'http_version = "{spelling}"\n')
        options = load_config_file(path)
        assert Server("apps:hello", **options).config.http.http_version is expected


def test_help_shows_the_short_http_spellings() -> None:
    result = run_cli("--help")
    assert "--http {auto,1.1,2,3}" in result.stdout
    assert "http/1.1, http/2, http/3 are accepted too" in " ".join(result.stdout.split())


def test_http_version_is_logged_in_its_cli_spelling(pem: tuple[bytes, bytes]) -> None:
    server = Server(
        hello, port=0, http_version="http/2", enable_http3=True, cert_data=pem[0], key_data=pem[1]
    )
    records: list[str] = []
    handler = logging.Handler()
    handler.emit = lambda record: records.append(record.getMessage())  # type: ignore[method-assign]
    error_logger = logging.getLogger("asgiri.error")
    error_logger.addHandler(handler)
    try:
        with running(server):
            pass
    finally:
        error_logger.removeHandler(handler)
    assert "HTTP/3 is off: --http 2 was asked for" in records


# ----------------------------------------------------------------------------- protocols


@pytest.mark.parametrize(
    ("http_version", "client_http2", "expected"),
    [
        (HttpProtocolVersion.HTTP_1_1, True, "HTTP/1.1"),
        (HttpProtocolVersion.HTTP_2, True, "HTTP/2"),
        (HttpProtocolVersion.AUTO, True, "HTTP/2"),
        (HttpProtocolVersion.AUTO, False, "HTTP/1.1"),
        (None, True, "HTTP/2"),
    ],
)
def test_each_protocol_version_over_tls(
    pem: tuple[bytes, bytes], http_version: Any, client_http2: bool, expected: str
) -> None:
    server = Server(hello, port=0, http_version=http_version, cert_data=pem[0], key_data=pem[1])
    with running(server), httpx.Client(verify=trusting(pem), http2=client_http2) as client:
        response = client.get(url(server))
    assert response.status_code == 200
    assert response.http_version == expected
    assert response.text == f"{expected[5:]} https"


@pytest.mark.parametrize("http_version", [HttpProtocolVersion.HTTP_3, HttpProtocolVersion.AUTO])
def test_http3_over_quic(pem: tuple[bytes, bytes], http_version: Any) -> None:
    server = Server(hello, port=0, http_version=http_version, cert_data=pem[0], key_data=pem[1])
    with running(server):
        assert server.http3_port is not None
        with H3Client(server.http3_port) as client:
            response = client.get("/")
        assert response.status == 200
        assert response.body == b"3 https"
        if http_version is HttpProtocolVersion.AUTO:
            # TCP answers too, and points the client at HTTP/3 on the same port.
            with httpx.Client(verify=trusting(pem)) as tcp:
                reply = tcp.get(url(server))
            assert reply.text == "1.1 https"
            assert reply.headers["alt-svc"] == f'h3=":{server.port}"; ma=86400'
        else:
            assert server.listeners == []  # HTTP/3 only: no TCP listener


def trusting_file(path: str) -> Any:
    """An aioquic client configuration hook that verifies against exactly ``path``."""

    def configure(configuration: QuicConfiguration) -> None:
        configuration.verify_mode = ssl.CERT_REQUIRED
        configuration.load_verify_locations(cafile=path)

    return configure


def test_a_self_signed_certificate_is_made_at_start_up_not_by_the_config() -> None:
    config = Config.from_options("m:app", selfcert=True, host="127.0.0.2")
    assert config.tls.enabled and config.tls.cert_data is None  # construction makes nothing
    config.make_certificate()
    cert = config.tls.cert_data
    assert isinstance(cert, bytes) and cert.startswith(b"-----BEGIN CERTIFICATE-----")
    assert config.tls.key_data is not None and b"PRIVATE KEY" in config.tls.key_data
    names = x509.load_pem_x509_certificate(cert).extensions.get_extension_for_class(
        x509.SubjectAlternativeName
    )
    assert ipaddress.ip_address("127.0.0.2") in names.value.get_values_for_type(x509.IPAddress)
    config.make_certificate()
    assert config.tls.cert_data is cert  # once: reload children and workers share it


def test_http3_alone_without_a_certificate_serves_with_a_temporary_one() -> None:
    # 0.3 accepted this call (and served nothing); the certificate is made at start-up.
    server = Server(hello, port=0, http_version=HttpProtocolVersion.HTTP_3)
    assert server.enable_http3 is True
    assert server.temp_certfile is None  # written when the server runs
    records: list[logging.LogRecord] = []
    handler = logging.Handler()
    handler.emit = records.append  # type: ignore[method-assign]
    error_logger = logging.getLogger("asgiri.error")
    error_logger.addHandler(handler)
    try:
        with running(server):
            path = server.temp_certfile
            assert path is not None and os.path.exists(path)
            written = Path(path).read_bytes()
            assert written == server.cert_data and b"PRIVATE KEY" not in written
            assert server.http3_port is not None
            # A client that trusts exactly that file gets through, verifying it.
            with H3Client(server.http3_port, configure=trusting_file(path)) as client:
                response = client.get("/")
            assert (response.status, response.body) == (200, b"3 https")
    finally:
        error_logger.removeHandler(handler)
    assert not os.path.exists(path), "the temporary certificate outlived the server"
    assert server.temp_certfile is None
    warnings = [r.getMessage() for r in records if r.levelno == logging.WARNING]
    assert any(
        "HTTP/3 needs TLS and no certificate was given" in w and path in w for w in warnings
    ), warnings


def test_http3_alone_with_only_an_ssl_context_is_refused(pem: tuple[bytes, bytes]) -> None:
    context = create_ssl_context(cert_data=pem[0], key_data=pem[1])
    with pytest.raises(ValueError, match="QUIC cannot use a ready ssl_context"):
        Server(hello, http_version=HttpProtocolVersion.HTTP_3, ssl_context=context)


def test_http3_port_moves_the_udp_listener_and_alt_svc(pem: tuple[bytes, bytes]) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.bind(("127.0.0.1", 0))
        udp_port = probe.getsockname()[1]
    server = Server(hello, port=0, http3_port=udp_port, cert_data=pem[0], key_data=pem[1])
    with running(server):
        assert server.http3_port == udp_port != server.port
        with httpx.Client(verify=trusting(pem)) as tcp:
            assert tcp.get(url(server)).headers["alt-svc"] == f'h3=":{udp_port}"; ma=86400'
        with H3Client(udp_port) as client:
            assert client.get("/").body == b"3 https"


@pytest.mark.parametrize(
    ("http_version", "expected"),
    [
        (HttpProtocolVersion.HTTP_1_1, "1.1"),
        (HttpProtocolVersion.AUTO, "1.1"),
        (HttpProtocolVersion.HTTP_2, "2"),
    ],
)
def test_each_protocol_version_in_cleartext(http_version: Any, expected: str) -> None:
    server = Server(hello, port=0, http_version=http_version)
    prior_knowledge = http_version is HttpProtocolVersion.HTTP_2
    with (
        running(server),
        httpx.Client(http1=not prior_knowledge, http2=prior_knowledge) as client,
    ):
        response = client.get(url(server))
    assert response.text == f"{expected} http"


def test_auto_in_cleartext_also_takes_http2_prior_knowledge() -> None:
    server = Server(hello, port=0)
    with running(server), httpx.Client(http1=False, http2=True) as client:
        assert client.get(url(server)).text == "2 http"


# ----------------------------------------------------------------------------- TLS


def test_tls_from_paths(pem: tuple[bytes, bytes], pem_files: tuple[Path, Path]) -> None:
    server = Server(hello, port=0, certfile=str(pem_files[0]), keyfile=str(pem_files[1]))
    with running(server):
        response = httpx.get(url(server), verify=trusting(pem))
    assert response.text == "1.1 https"


def test_tls_from_pem_bytes(pem: tuple[bytes, bytes]) -> None:
    server = Server(hello, port=0, cert_data=pem[0], key_data=pem[1])
    with running(server):
        response = httpx.get(url(server), verify=trusting(pem))
    assert response.text == "1.1 https"


def test_tls_from_a_plain_ssl_context_gets_alpn_from_the_server(
    pem_files: tuple[Path, Path], pem: tuple[bytes, bytes]
) -> None:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)  # no ALPN set by the caller
    context.load_cert_chain(pem_files[0], pem_files[1])
    server = Server(hello, port=0, ssl_context=context)
    with running(server), httpx.Client(verify=trusting(pem), http2=True) as client:
        response = client.get(url(server))
    assert response.http_version == "HTTP/2"  # only possible if the server offered h2
    assert response.text == "2 https"


def test_tls_from_create_ssl_context(pem: tuple[bytes, bytes]) -> None:
    context = create_ssl_context(cert_data=pem[0], key_data=pem[1])
    server = Server(hello, port=0, ssl_context=context, http_version=HttpProtocolVersion.HTTP_1_1)
    with running(server), httpx.Client(verify=trusting(pem), http2=True) as client:
        response = client.get(url(server))
    # The server narrowed the context's ALPN to what --http 1.1 serves.
    assert response.http_version == "HTTP/1.1"


# ----------------------------------------------------------------------------- lifespan


@pytest.mark.parametrize(
    "policy", [LifespanPolicy.ENABLED, LifespanPolicy.AUTO, "enabled", "auto", None]
)
def test_lifespan_runs_for_an_app_that_supports_it(policy: Any) -> None:
    app = LifespanApp("ok")
    server = Server(app, port=0, lifespan=policy)
    with running(server):
        assert httpx.get(url(server)).text == "yes"
    assert app.events == ["lifespan-scope", "lifespan.startup", "lifespan.shutdown"]


@pytest.mark.parametrize("policy", [LifespanPolicy.DISABLED, "disabled"])
def test_lifespan_disabled_never_calls_the_app_with_lifespan(policy: Any) -> None:
    for mode in ("ok", "raise"):
        app = LifespanApp(mode)
        server = Server(app, port=0, lifespan=policy)
        with running(server):
            assert httpx.get(url(server)).text == "no"
        assert app.events == []


@pytest.mark.parametrize("policy", [LifespanPolicy.AUTO, "auto", None])
def test_lifespan_auto_serves_an_app_that_raises_on_lifespan(policy: Any) -> None:
    app = LifespanApp("raise")
    server = Server(app, port=0, lifespan=policy)
    with running(server):
        assert httpx.get(url(server)).text == "no"
    assert app.events == ["lifespan-scope"]


def test_lifespan_enabled_with_an_app_that_raises_is_a_clear_error() -> None:
    app = LifespanApp("raise")
    server = Server(app, port=0, lifespan=LifespanPolicy.ENABLED)
    with pytest.raises(LifespanStartupError, match="no lifespan here"):
        server.run()
    assert not server.started.is_set()


def test_lifespan_startup_timeout_is_a_clear_error_when_enabled() -> None:
    server = Server(
        LifespanApp("hang"), port=0, lifespan=LifespanPolicy.ENABLED, lifespan_startup_timeout=0.3
    )
    started = time.monotonic()
    with pytest.raises(LifespanStartupError, match=r"did not complete within 0\.3s"):
        server.run()
    assert time.monotonic() - started < 5
    assert not server.started.is_set()


def test_lifespan_auto_serves_an_app_whose_startup_hangs() -> None:
    app = LifespanApp("hang")
    server = Server(app, port=0, lifespan=LifespanPolicy.AUTO, lifespan_startup_timeout=0.3)
    started = time.monotonic()
    with running(server):
        assert time.monotonic() - started < 5
        assert httpx.get(f"http://127.0.0.1:{server.port}/").text == "no"
    assert app.events == ["lifespan-scope", "lifespan.startup"]


def test_lifespan_rejects_an_unknown_policy() -> None:
    with pytest.raises(ValueError, match="lifespan must be one of"):
        Server(hello, lifespan="sometimes")


# ----------------------------------------------------------------------------- WebSocket


class _Frames(logging.Handler):
    """Collects the frames the websockets client logs at DEBUG level."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.lines: queue.Queue[str] = queue.Queue()

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.put(record.getMessage())

    def wait_for(self, needle: str, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while (remaining := deadline - time.monotonic()) > 0:
            try:
                if needle in self.lines.get(timeout=remaining):
                    return True
            except queue.Empty:
                break
        return False


def _client_logger(name: str) -> tuple[logging.Logger, _Frames]:
    frames = _Frames()
    client_logger = logging.getLogger(f"tests.compat.{name}")
    client_logger.setLevel(logging.DEBUG)
    client_logger.propagate = False
    client_logger.handlers[:] = [frames]
    return client_logger, frames


def test_websocket_with_custom_ping_settings() -> None:
    server = Server(ws_echo, port=0, ws_ping_interval=0.2, ws_ping_timeout=2.0)
    client_logger, frames = _client_logger("pings")
    with (
        running(server),
        connect(f"ws://127.0.0.1:{server.port}/", logger=client_logger, proxy=None) as ws,
    ):
        assert frames.wait_for("< PING", TIMEOUT)  # the server pings...
        assert frames.wait_for("< PING", TIMEOUT)  # ...every interval, as each is answered
        ws.send("still here")
        assert ws.recv(TIMEOUT) == "still here"


def test_websocket_keepalive_with_the_03_defaults() -> None:
    """Pings every 20 s, 20 s for the pong, as 0.3's defaults say (this takes a minute).

    Two clients at once: one that answers pings (the websockets library) is
    still connected after three pings; one that completes the handshake and
    then reads without answering is closed once its first ping goes
    unanswered for ws_ping_timeout, 40 s after it connected, as in 0.3.
    """
    server = Server(ws_echo, port=0)
    assert (server.ws_ping_interval, server.ws_ping_timeout) == (20.0, 20.0)
    client_logger, frames = _client_logger("defaults")
    with (
        running(server),
        connect(
            f"ws://127.0.0.1:{server.port}/",
            logger=client_logger,
            proxy=None,
            ping_interval=None,  # only the server pings
        ) as ws,
    ):
        silent = RawWS(server.port, "/")
        silent.sock.settimeout(30)
        connected = time.monotonic()
        ping = silent.recv_frame()
        assert ping.opcode == PING
        assert 18 < time.monotonic() - connected < 25
        while True:  # read on, never answering, until the server gives up
            try:
                if not silent.sock.recv(65536):
                    break
            except ConnectionResetError:
                break
        assert 38 < time.monotonic() - connected < 46
        silent.sock.close()
        for _ in range(3):
            assert frames.wait_for("< PING", 30), "the server stopped pinging"
        assert time.monotonic() - connected > 55
        ws.send("still here")  # three intervals later, the answering client is connected
        assert ws.recv(TIMEOUT) == "still here"


def test_websocket_ping_interval_none_turns_pings_off() -> None:
    server = Server(ws_echo, port=0, ws_ping_interval=None)
    assert server.config.websocket.ws_ping_interval is None
    client_logger, frames = _client_logger("no-pings")
    with (
        running(server),
        connect(f"ws://127.0.0.1:{server.port}/", logger=client_logger, proxy=None) as ws,
    ):
        # Three times the interval that pinged in the test above.
        assert not frames.wait_for("< PING", 0.6)
        ws.send("hello")
        assert ws.recv(TIMEOUT) == "hello"


@pytest.mark.parametrize("name", ["ws_ping_interval", "ws_ping_timeout"])
def test_negative_ping_settings_are_a_value_error(name: str) -> None:
    with pytest.raises(ValueError, match=name):
        Server(ws_echo, **{name: -1.0})


# ----------------------------------------------------------------------------- threads


def test_asgi2_app() -> None:
    server = Server(ASGI2Hello, port=0)
    with running(server):
        assert httpx.get(url(server, "/two")).text == "asgi2 /two"


def test_run_in_a_thread_leaves_signal_handlers_alone() -> None:
    before = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    server = Server(hello, port=0)
    with running(server):
        during = {sig: signal.getsignal(sig) for sig in before}
        assert httpx.get(url(server)).status_code == 200
    assert during == before


def test_request_shutdown_before_run_stops_it_at_once() -> None:
    server = Server(hello, port=0)
    server.request_shutdown()
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    thread.join(TIMEOUT)
    assert not thread.is_alive()


# ---------------------------------------------------------------------- start-up, from a thread


def run_in_thread(server: Server) -> threading.Thread:
    """``run()`` in a thread; its start-up error reaches the test through wait_started()."""

    def target() -> None:
        with contextlib.suppress(StartupError):
            server.run()

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    return thread


def test_wait_started_returns_true_once_serving_and_stopped_is_set_after() -> None:
    server = Server(hello, port=0)
    assert server.port == 0  # configured, nothing bound yet
    assert not server.wait_started(timeout=0.05)  # not run yet: a timeout, not a hang
    thread = run_in_thread(server)
    assert server.wait_started(TIMEOUT) is True
    assert isinstance(server.port, int) and server.port > 0
    assert httpx.get(url(server)).text == "1.1 http"
    assert server.startup_error is None and not server.stopped.is_set()
    server.request_shutdown()
    assert server.stopped.wait(TIMEOUT)
    thread.join(TIMEOUT)
    assert server.startup_error is None
    assert server.port is None  # nothing bound any more


def test_wait_started_raises_when_lifespan_startup_fails() -> None:
    server = Server(LifespanApp("raise"), port=0, lifespan=LifespanPolicy.ENABLED)
    thread = run_in_thread(server)
    with pytest.raises(LifespanStartupError, match="no lifespan here"):
        server.wait_started(TIMEOUT)
    assert server.stopped.wait(TIMEOUT)
    assert isinstance(server.startup_error, LifespanStartupError)
    assert not server.started.is_set()
    assert server.port is None
    assert server.http3_port is None
    thread.join(TIMEOUT)


def test_wait_started_raises_when_the_port_is_in_use() -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        server = Server(hello, port=busy.getsockname()[1])
        thread = run_in_thread(server)
        with pytest.raises(BindError):
            server.wait_started(TIMEOUT)
    assert server.stopped.is_set()
    assert isinstance(server.startup_error, BindError)
    assert server.port is None
    thread.join(TIMEOUT)


def test_port_never_raises_after_a_failed_tls_start(pem: tuple[bytes, bytes]) -> None:
    # TLS in auto mode opens the HTTP/3 UDP socket too; both are closed by the failure.
    server = Server(
        LifespanApp("raise"),
        port=0,
        cert_data=pem[0],
        key_data=pem[1],
        lifespan=LifespanPolicy.ENABLED,
    )
    assert server.port == 0 and server.http3_port == 0  # as configured
    thread = run_in_thread(server)
    with pytest.raises(LifespanStartupError):
        server.wait_started(TIMEOUT)
    assert server.port is None
    assert server.http3_port is None
    thread.join(TIMEOUT)


def test_serve_records_its_start_up_error_too() -> None:
    async def main() -> Server:
        server = Server(LifespanApp("raise"), port=0, lifespan=LifespanPolicy.ENABLED)
        with pytest.raises(LifespanStartupError):
            await server.serve()
        return server

    server = asyncio.run(main())
    assert server.stopped.is_set()
    assert isinstance(server.startup_error, LifespanStartupError)
    with pytest.raises(LifespanStartupError):
        server.wait_started(0)


# ----------------------------------------------------------------------------- 0.3 attributes


def test_a_run_serves_and_should_exit_stops_it() -> None:
    app = LifespanApp("ok")

    async def main() -> tuple[str, Server]:
        server = Server(app, port=0, lifespan=LifespanPolicy.ENABLED)
        handler = server.lifespan_handler
        assert isinstance(server.should_exit, asyncio.Event)
        assert not server.should_exit.is_set()
        assert not handler.startup_complete.is_set()
        task = asyncio.create_task(server.a_run())
        loop = asyncio.get_running_loop()
        assert await loop.run_in_executor(None, server.wait_started, TIMEOUT)
        assert handler.startup_complete.is_set() and not handler.startup_failed
        assert handler.startup_error is None
        async with httpx.AsyncClient() as client:
            text = (await client.get(url(server))).text
        server.should_exit.set()  # from inside the loop, as 0.3's documentation does
        await asyncio.wait_for(task, TIMEOUT)
        assert handler.shutdown_complete.is_set()
        return text, server

    text, server = asyncio.run(main())
    assert text == "yes"  # the lifespan state reached the request
    assert app.events == ["lifespan-scope", "lifespan.startup", "lifespan.shutdown"]
    assert server.stopped.is_set() and server.port is None


def test_should_exit_set_before_a_run_stops_the_server_once_started() -> None:
    async def main() -> Server:
        server = Server(hello, port=0)
        server.should_exit.set()
        await asyncio.wait_for(server.a_run(), TIMEOUT)
        return server

    server = asyncio.run(main())
    assert server.stopped.is_set() and server.startup_error is None


def test_lifespan_handler_shows_a_failed_startup() -> None:
    server = Server(LifespanApp("fail"), port=0, lifespan=LifespanPolicy.AUTO)
    handler = server.lifespan_handler
    assert (handler.policy, handler.startup_timeout) == (LifespanPolicy.AUTO, 10.0)
    with pytest.raises(LifespanStartupError, match="no database"):
        server.run()
    assert handler.startup_complete.is_set()
    assert handler.startup_failed is True
    assert handler.startup_error == "no database"
    assert not handler.shutdown_complete.is_set()


def test_lifespan_handler_when_lifespan_is_off() -> None:
    server = Server(LifespanApp("ok"), port=0, lifespan=LifespanPolicy.DISABLED)
    with running(server):
        assert server.lifespan_handler.startup_complete.is_set()
    assert not server.lifespan_handler.startup_failed
    assert not server.lifespan_handler.shutdown_complete.is_set()  # no lifespan ran


def test_constructor_arguments_are_readable_as_attributes(
    pem: tuple[bytes, bytes], pem_files: tuple[Path, Path]
) -> None:
    server = Server(
        hello,
        host="127.0.0.1",
        port=0,
        http_version=HttpProtocolVersion.AUTO,
        cert_data=pem[0],
        key_data=pem[1],
        reuse_port=True,
        shutdown_timeout=3.0,
        ws_ping_interval=5.0,
        ws_ping_timeout=6.0,
        reload_dirs=["src", Path("lib")],
        reload_delay_ms=250,
        reload_ignore_patterns=["*.tmp"],
    )
    assert server.host == "127.0.0.1"
    assert server.http_version is HttpProtocolVersion.AUTO
    assert (server.cert_data, server.key_data) == pem
    assert (server.certfile, server.keyfile, server.ssl_context) == (None, None, None)
    assert server.enable_http3 is True  # AUTO with TLS
    assert server.reuse_port is True
    assert server.shutdown_timeout == 3.0
    assert (server.ws_ping_interval, server.ws_ping_timeout) == (5.0, 6.0)
    assert server.reload is False
    assert server.reload_dirs == ["src", "lib"]
    assert server.reload_delay_ms == 250
    assert server.reload_ignore_patterns == ["*.tmp"]
    # port: as configured, then the port bound while serving, then None.
    assert server.port == 0
    with running(server):
        bound = server.port
        assert isinstance(bound, int) and bound > 0
        assert isinstance(server.ssl_context, ssl.SSLContext)  # the one built to serve
        with httpx.Client(verify=trusting(pem)) as client:
            assert client.get(f"https://127.0.0.1:{bound}/").text == "1.1 https"
    assert server.port is None
    files = Server(hello, certfile=pem_files[0], keyfile=pem_files[1], reload=True)
    assert (files.certfile, files.keyfile) == (str(pem_files[0]), str(pem_files[1]))
    assert files.reload is True
    assert files.port == 8443  # the default with TLS, before anything is bound
    plain = Server(hello)
    assert (plain.host, plain.port, plain.enable_http3) == ("127.0.0.1", 8000, False)
    assert plain.http_version is HttpProtocolVersion.AUTO
    context = create_ssl_context(cert_data=pem[0], key_data=pem[1])
    assert Server(hello, ssl_context=context).ssl_context is context


def test_serve_inside_a_running_loop() -> None:
    async def main() -> str:
        server = Server(hello, port=0)
        task = asyncio.create_task(server.serve())
        while not server.started.is_set():
            await asyncio.sleep(0.01)
        async with httpx.AsyncClient() as client:
            text = (await client.get(url(server))).text
        server.request_shutdown()
        await task
        return text

    assert asyncio.run(main()) == "1.1 http"


# ----------------------------------------------------------------------------- ssl_utils


def test_ssl_utils_signatures() -> None:
    def defaults(func: Any) -> list[tuple[str, Any]]:
        return [
            (p.name, p.default)
            for p in inspect.signature(func).parameters.values()
            if p.kind is not inspect.Parameter.KEYWORD_ONLY
        ]

    assert defaults(generate_self_signed_cert) == [
        ("hostname", "localhost"),
        ("ip_addresses", None),
        ("key_size", 2048),
        ("validity_days", 365),
    ]
    assert defaults(save_cert_and_key) == [
        ("cert_pem", inspect.Parameter.empty),
        ("key_pem", inspect.Parameter.empty),
        ("cert_path", "server.crt"),
        ("key_path", "server.key"),
    ]
    assert defaults(create_ssl_context) == [
        ("certfile", None),
        ("keyfile", None),
        ("cert_data", None),
        ("key_data", None),
        ("verify_mode", None),
        ("cafile", None),
    ]


def test_generated_certificate_names_and_ssl_loading(tmp_path: Path) -> None:
    cert_pem, key_pem = generate_self_signed_cert("dev.example", ip_addresses=["10.1.2.3"])
    assert isinstance(cert_pem, bytes) and isinstance(key_pem, bytes)
    cert = x509.load_pem_x509_certificate(cert_pem)
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert "dev.example" in san.get_values_for_type(x509.DNSName)
    ips = san.get_values_for_type(x509.IPAddress)
    assert ipaddress.ip_address("10.1.2.3") in ips
    assert ipaddress.ip_address("127.0.0.1") in ips
    # ``ssl`` loads the pair, as a server context and as a client's trust anchor.
    cert_path, key_path = save_cert_and_key(
        cert_pem, key_pem, tmp_path / "server.crt", tmp_path / "server.key"
    )
    server_side = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_side.load_cert_chain(cert_path, key_path)
    client_side = ssl.create_default_context(cadata=cert_pem.decode())
    # A verifying client accepts it under each of its names, and no other.
    for name in ("dev.example", "10.1.2.3", "127.0.0.1"):
        assert _handshake(server_side, client_side, name) is None  # no ALPN offered
    with pytest.raises(ssl.SSLCertVerificationError):
        _handshake(server_side, client_side, "other.example")
    # aioquic loads the same files, and a server serves HTTP/3 with them.
    QuicConfiguration(is_client=False).load_cert_chain(cert_path, key_path)
    server = Server(hello, port=0, certfile=cert_path, keyfile=key_path)
    with running(server):
        assert server.http3_port is not None
        with H3Client(server.http3_port) as client:
            assert client.get("/").body == b"3 https"


def test_save_cert_and_key_default_paths(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, pem: tuple[bytes, bytes]
) -> None:
    monkeypatch.chdir(tmp_path)
    cert_path, key_path = save_cert_and_key(*pem)
    assert (cert_path, key_path) == (Path("server.crt"), Path("server.key"))
    assert (tmp_path / "server.crt").read_bytes() == pem[0]
    assert (tmp_path / "server.key").read_bytes() == pem[1]


def test_create_ssl_context_is_a_server_context_offering_h2(pem: tuple[bytes, bytes]) -> None:
    context = create_ssl_context(cert_data=pem[0], key_data=pem[1])
    assert context.protocol is ssl.PROTOCOL_TLS_SERVER
    client_context = trusting(pem)
    client_context.set_alpn_protocols(["h2", "http/1.1"])
    assert _handshake(context, client_context) == "h2"


def _handshake(
    server_context: ssl.SSLContext, client_context: ssl.SSLContext, name: str = "localhost"
) -> str | None:
    """A TLS handshake in memory; returns the protocol ALPN chose."""
    bios = [ssl.MemoryBIO() for _ in range(4)]
    server = server_context.wrap_bio(bios[0], bios[1], server_side=True)
    client = client_context.wrap_bio(bios[2], bios[3], server_hostname=name)
    done = {"server": False, "client": False}
    for _ in range(10):
        for name, end in (("client", client), ("server", server)):
            if not done[name]:
                try:
                    end.do_handshake()
                    done[name] = True
                except ssl.SSLWantReadError:
                    pass
        bios[0].write(bios[3].read())  # client -> server
        bios[2].write(bios[1].read())  # server -> client
        if all(done.values()):
            break
    assert all(done.values()), "the TLS handshake did not finish"
    assert server.selected_alpn_protocol() == client.selected_alpn_protocol()
    return client.selected_alpn_protocol()


# ----------------------------------------------------------------------------- CLI

COMPAT_FLAGS = [
    "--http11",
    "--http2",
    "--http3",
    "--cert",
    "--key",
    "--selfcert",
    "--lifespan-policy",
    "--reload-ignore",
    "--reload-delay-ms",
]


def test_help_groups_the_03_spellings_as_compatibility() -> None:
    result = run_cli("--help")
    assert result.returncode == 0, result.stderr
    before, _, compat = result.stdout.partition("\ncompatibility:\n")
    assert compat, result.stdout
    before = before.partition("\n\n")[2]  # the groups, without the usage summary
    for flag in COMPAT_FLAGS:
        assert re.search(rf"^\s+{re.escape(flag)}\b", compat, re.M), flag
        assert not re.search(rf"(?<![\w-]){re.escape(flag)}(?![\w-])", before), flag


@pytest.mark.parametrize(
    ("argv", "option", "value"),
    [
        (["--http11"], "http_version", "1.1"),
        (["--http2"], "http_version", "auto"),
        (["--http3"], "http_version", "3"),
        (["--cert", "c.pem"], "certfile", "c.pem"),
        (["--key", "k.pem"], "keyfile", "k.pem"),
        (["--selfcert"], "selfcert", True),
        (["--lifespan-policy", "enabled"], "lifespan", "enabled"),
        (["--lifespan-policy", "disabled"], "lifespan", "disabled"),
        (["--reload-ignore", "*.tmp"], "reload_excludes", ["*.tmp"]),
        (["--reload-delay-ms", "500"], "reload_delay", 0.5),
    ],
)
def test_compat_flags_set_the_config_options(argv: list[str], option: str, value: Any) -> None:
    args = vars(build_parser().parse_args(["apps:hello", *argv]))
    assert args[option] == value


def test_cli_http11_and_http2_over_tls(
    pem: tuple[bytes, bytes], pem_files: tuple[Path, Path]
) -> None:
    common = ["apps:hello", "--port", "0", "--cert", str(pem_files[0]), "--key", str(pem_files[1])]
    for flag, expected in (("--http11", "HTTP/1.1"), ("--http2", "HTTP/2")):
        with cli_server(*common, flag) as srv, httpx.Client(verify=trusting(pem), http2=True) as c:
            response = c.get(srv.url + "/")
        assert srv.scheme == "https"
        assert (response.status_code, response.http_version) == (200, expected), flag


def test_cli_selfcert_serves_tls_and_logs_the_pin() -> None:
    with cli_server("apps:hello", "--port", "0", "--selfcert") as srv:
        assert srv.scheme == "https"
        pin = srv.wait_for(r"SPKI pin ([A-Za-z0-9+/=]{44})").group(1)
        der = ssl.get_server_certificate(("127.0.0.1", srv.port))
        # The certificate the server presents is the one whose pin was logged,
        # and a client trusting exactly it gets through with full verification.
        assert spki_sha256_base64(der.encode()) == pin
        trusted = ssl.create_default_context(cadata=der)
        assert httpx.get(srv.url + "/", verify=trusted).status_code == 200
        assert httpx.get(f"https://localhost:{srv.port}/", verify=trusted).status_code == 200


def test_cli_lifespan_policy(tmp_path: Path) -> None:
    (tmp_path / "no_lifespan.py").write_text(
        "async def app(scope, receive, send):\n"
        "    if scope['type'] == 'lifespan':\n"
        "        raise RuntimeError('no lifespan here')\n"
        "    await send({'type': 'http.response.start', 'status': 200, 'headers': []})\n"
        "    await send({'type': 'http.response.body', 'body': b'ok'})\n"
    )
    common = ["no_lifespan:app", "--app-dir", str(tmp_path), "--port", "0"]
    result = run_cli(*common, "--lifespan-policy", "enabled")
    assert result.returncode == 3, result.stderr
    assert "no lifespan here" in result.stderr
    for policy in ("auto", "disabled"):
        with cli_server(*common, "--lifespan-policy", policy) as srv:
            assert httpx.get(srv.url + "/").text == "ok"
