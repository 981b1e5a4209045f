"""The option groups: one small dataclass per concern, each validating its own fields.

Each leaf field is an option declared with :func:`~.options.option` (its
help text, extra flags, choices and kind); the first line of a group's
docstring is its title in ``--help``.  Validation runs in each group's
``__post_init__`` and is pure: nothing here reads the environment or makes
anything (what start-up resolves is in :mod:`.tree`).
"""

from __future__ import annotations

import os
import ssl
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ..access_format import parse_format
from ..protocol.h2_codecs import CODECS, codec_available
from ..protocol.proxy_headers import TrustedProxies
from .checks import (
    coerce_choice,
    int_range,
    octal_mode,
    parse_bind,
    parse_header,
    parse_host_port,
    positive,
)
from .choices import (
    HTTP_CHOICES,
    INTERFACES,
    LIFESPAN_CHOICES,
    LOG_LEVELS,
    LOOP_CHOICES,
    HttpProtocolVersion,
    LifespanPolicy,
    LoopChoice,
)
from .options import option

__all__ = [
    "AccessLogConfig",
    "AppConfig",
    "BindConfig",
    "HTTP2Config",
    "HTTPConfig",
    "InterfaceConfig",
    "LimitsConfig",
    "LoggingConfig",
    "MetricsConfig",
    "ProxyConfig",
    "QUICConfig",
    "ReloadConfig",
    "RuntimeConfig",
    "TLSConfig",
    "TimeoutsConfig",
    "WebSocketConfig",
    "WebTransportConfig",
    "WorkersConfig",
]


@dataclass
class AppConfig:
    """Where the application comes from and how it is run."""

    factory: bool = option(
        False, kind="store_true", help="Treat APP as a factory: call it to get the ASGI app."
    )
    app_dir: str = option(".", help="Directory added to sys.path before importing APP.")
    lifespan: LifespanPolicy = option(
        LifespanPolicy.AUTO,
        choices={
            "auto": LifespanPolicy.AUTO,
            "on": LifespanPolicy.ENABLED,
            "off": LifespanPolicy.DISABLED,
        },
        help="Run the ASGI lifespan protocol: on (failure is fatal), off, or auto.",
    )
    lifespan_startup_timeout: float = option(
        10.0, help="Seconds the app may take to complete lifespan startup."
    )
    lifespan_shutdown_timeout: float = option(
        10.0, help="Seconds the app may take to complete lifespan shutdown."
    )
    root_path: str = option("", help="ASGI root_path, for apps mounted below a path prefix.")
    env_file: str | None = option(
        None,
        metavar="PATH",
        help="Set the variables of this dotenv file (KEY=VALUE lines) for the app; variables "
        "already in the environment win. Its ASGIRI_* lines configure the server too.",
    )

    def __post_init__(self) -> None:
        if self.env_file is not None and (not isinstance(self.env_file, str) or not self.env_file):
            raise ValueError(f"env_file must be a file path, got {self.env_file!r}")
        self.lifespan = coerce_choice("lifespan", self.lifespan, LIFESPAN_CHOICES, LifespanPolicy)
        positive("lifespan_startup_timeout", self.lifespan_startup_timeout)
        positive("lifespan_shutdown_timeout", self.lifespan_shutdown_timeout)
        if not isinstance(self.root_path, str) or (
            self.root_path and not self.root_path.startswith("/")
        ):
            raise ValueError(f"root_path must be empty or start with '/', got {self.root_path!r}")
        self.root_path = self.root_path.rstrip("/")


@dataclass
class BindConfig:
    """Where the server listens."""

    host: str = option("127.0.0.1", help="Address to bind.")
    port: int | None = option(
        None, help="Port to bind (default 8000, or 8443 with TLS; 0 picks a free port)."
    )
    uds: str | None = option(None, metavar="PATH", help="Bind a Unix domain socket instead.")
    uds_permissions: str | int | None = option(
        None,
        metavar="MODE",
        help="Octal file mode of the Unix sockets bound (--uds, --bind unix:), e.g. 660 "
        "(default: 666, anyone on the host may connect).",
    )
    fd: int | None = option(None, help="Serve on an already bound socket file descriptor.")
    backlog: int = option(2048, help="Maximum number of pending connections.")
    reuse_port: bool = option(False, kind="bool", help="Set SO_REUSEPORT on the listening socket.")
    binds: list[str] = option(
        default_factory=list,
        flags=("--bind", "-b"),
        kind="append",
        metavar="ADDRESS",
        help="Listen on HOST:PORT, [IPV6]:PORT, unix:PATH or fd://N, each optionally after "
        "http:// (cleartext) or https:// (TLS) (repeatable; replaces --host/--port).",
    )
    redirect_http: bool = option(
        False,
        kind="store_true",
        help="Answer requests on the http:// listeners with a 308 redirect to the same URL "
        "on the first https:// one.",
    )

    def __post_init__(self) -> None:
        if isinstance(self.binds, str) or not all(isinstance(b, str) for b in self.binds):
            raise ValueError(f"binds must be a list of strings, got {self.binds!r}")
        self.binds = list(self.binds)
        for address in self.binds:
            parse_bind(address)
        if self.port is not None:
            int_range("port", self.port, 0, 65535)
        if self.fd is not None:
            int_range("fd", self.fd, 0, 1 << 30)
        if self.uds_permissions is not None:
            self.uds_permissions = octal_mode("uds_permissions", self.uds_permissions)
        int_range("backlog", self.backlog, 1, 1 << 20)
        if not isinstance(self.host, str) or not self.host:
            raise ValueError("host must be a non-empty string")


@dataclass
class TLSConfig:
    """TLS for the TCP listener (and QUIC, which always needs it)."""

    certfile: str | None = option(
        None, flags=("--ssl-certfile",), metavar="PATH", help="TLS certificate chain (PEM)."
    )
    keyfile: str | None = option(
        None, flags=("--ssl-keyfile",), metavar="PATH", help="TLS private key (PEM)."
    )
    keyfile_password: str | None = option(
        None, flags=("--ssl-keyfile-password",), help="Password of an encrypted private key."
    )
    ca_certs: str | None = option(
        None, flags=("--ssl-ca-certs",), metavar="PATH", help="CA bundle to verify clients."
    )
    cert_reqs: int = option(
        int(ssl.CERT_NONE),
        flags=("--ssl-cert-reqs",),
        help="Client certificate requirement: 0 none, 1 optional, 2 required.",
    )
    ciphers: str | None = option(
        None, flags=("--ssl-ciphers",), help="OpenSSL cipher string for TLS 1.2."
    )
    ssl_watch: bool = option(
        False,
        kind="store_true",
        help="Reload --certfile/--keyfile/--ca-certs for new handshakes when they change "
        "(SIGUSR1 does it on demand).",
    )
    ssl_context: ssl.SSLContext | None = option(
        None, flags=None, help="A ready server SSLContext (Python API only)."
    )
    cert_data: bytes | None = option(None, flags=None, help="PEM certificate bytes (API only).")
    key_data: bytes | None = option(None, flags=None, help="PEM private key bytes (API only).")
    selfcert: bool = option(
        False,
        flags=None,
        help="Serve TLS with a self-signed certificate made at start-up (development).",
    )

    @property
    def enabled(self) -> bool:
        return bool(self.certfile or self.cert_data or self.ssl_context or self.selfcert)

    def __post_init__(self) -> None:
        if self.selfcert and (self.certfile or self.cert_data or self.ssl_context):
            raise ValueError("selfcert cannot be combined with certfile, cert_data or ssl_context")
        if self.certfile and not self.keyfile and not self.cert_data:
            # A combined PEM holding both key and certificate is allowed.
            pass
        if self.keyfile and not (self.certfile or self.cert_data):
            raise ValueError("keyfile given without certfile")
        if self.cert_data is not None and not isinstance(self.cert_data, bytes | str):
            raise ValueError("cert_data must be PEM bytes")
        if self.key_data is not None and self.cert_data is None:
            raise ValueError("key_data given without cert_data")
        if self.ssl_context is not None and not isinstance(self.ssl_context, ssl.SSLContext):
            raise ValueError("ssl_context must be an ssl.SSLContext")
        int_range("cert_reqs", self.cert_reqs, 0, 2)
        if self.ssl_watch and not self.certfile:
            raise ValueError(
                "ssl_watch needs the certificate as files to watch: give --certfile and --keyfile"
            )


@dataclass
class ProxyConfig:
    """Behind proxies and load balancers."""

    proxy_headers: bool = option(
        True,
        kind="bool",
        help="Take the client address, scheme and host from X-Forwarded-For/-Proto/-Host "
        "and Forwarded headers, on connections from --forwarded-allow-ips only.",
    )
    forwarded_allow_ips: str | None = option(
        None,
        metavar="LIST",
        help="Comma-separated IPs and CIDR networks of trusted proxies; '*' trusts all, "
        "'unix' Unix-socket peers (default: $FORWARDED_ALLOW_IPS or 127.0.0.1).",
    )
    proxy_protocol: bool = option(
        False,
        kind="store_true",
        help="Expect a PROXY protocol v1/v2 header on every connection (HAProxy send-proxy, "
        "cloud load balancers); connections without one are closed.",
    )

    def __post_init__(self) -> None:
        if isinstance(self.forwarded_allow_ips, list | tuple):
            self.forwarded_allow_ips = ",".join(self.forwarded_allow_ips)
        if self.forwarded_allow_ips is not None:
            _check_trusted("forwarded_allow_ips", self.forwarded_allow_ips)

    def allow_ips(self, environ: Mapping[str, str]) -> str:
        """The trusted proxies in effect: the option, else ``$FORWARDED_ALLOW_IPS``, else 127.0.0.1.

        The server reads the environment when it starts (building the
        configuration never does); a bad value there is a ValueError naming
        the variable.
        """
        if self.forwarded_allow_ips is not None:
            return self.forwarded_allow_ips
        value = environ.get("FORWARDED_ALLOW_IPS", "127.0.0.1")
        _check_trusted("FORWARDED_ALLOW_IPS", value)
        return value


def _check_trusted(name: str, value: Any) -> None:
    if not isinstance(value, str):
        raise ValueError(f"{name} must be a comma-separated string, got {value!r}")
    try:
        TrustedProxies(value)
    except ValueError as exc:
        raise ValueError(f"{name} must list IP addresses and networks: {exc}") from None


@dataclass
class HTTPConfig:
    """Which protocols are spoken and what every response carries."""

    http_version: HttpProtocolVersion = option(
        HttpProtocolVersion.AUTO,
        flags=("--http",),
        choices=HTTP_CHOICES,
        metavar="{auto,1.1,2,3}",
        help="HTTP version(s) to serve (http/1.1, http/2, http/3 are accepted too).",
    )
    enable_http3: bool | None = option(
        None,
        flags=("--no-http3",),
        kind="store_false",
        help="Do not open the UDP listener for HTTP/3 (on by default with TLS in auto mode).",
    )
    http3_port: int | None = option(
        None, help="UDP port for HTTP/3 (default: the TCP port); Alt-Svc advertises it."
    )
    alt_svc: bool = option(
        True,
        kind="bool",
        help="Advertise HTTP/3 with an Alt-Svc header on TCP responses (an app's own wins).",
    )
    alt_svc_max_age: int = option(86400, help="Seconds clients may remember the Alt-Svc entry.")
    server_header: bool = option(True, kind="bool", help="Send a 'server: asgiri' header.")
    date_header: bool = option(True, kind="bool", help="Send a 'date' header.")
    headers: list[str] = option(
        default_factory=list,
        flags=("--header",),
        kind="append",
        metavar="NAME:VALUE",
        help="Add this header to every response (repeatable); 'server:...' or 'date:...' "
        "replaces the server's own.",
    )
    health_path: str | None = option(
        None,
        metavar="PATH",
        help="Answer requests for PATH (e.g. /healthz) in the server itself: 200 while serving, "
        "503 once draining, on every protocol; the app never sees it.",
    )

    def __post_init__(self) -> None:
        if isinstance(self.headers, str) or not all(isinstance(h, str) for h in self.headers):
            raise ValueError(
                f"headers must be a list of 'NAME:VALUE' strings, got {self.headers!r}"
            )
        self.headers = list(self.headers)
        for header in self.headers:
            parse_header(header)
        if self.health_path is not None and (
            not isinstance(self.health_path, str)
            or not self.health_path.startswith("/")
            or any(c in self.health_path for c in "?# ")
        ):
            raise ValueError(
                f"health_path must be a path starting with '/' (no query), got {self.health_path!r}"
            )
        self.http_version = coerce_choice(
            "http_version", self.http_version, HTTP_CHOICES, HttpProtocolVersion
        )
        if self.http3_port is not None:
            int_range("http3_port", self.http3_port, 0, 65535)
        int_range("alt_svc_max_age", self.alt_svc_max_age, 0, 1 << 31)


@dataclass
class QUICConfig:
    """HTTP/3 over QUIC (UDP), served next to the TCP listener."""

    quic_idle_timeout: float = option(
        30.0, help="Close a QUIC connection after this many seconds without packets."
    )
    quic_max_streams: int = option(
        100, help="Request streams a client may have open at once on one connection."
    )
    quic_max_datagram_size: int = option(
        1350, help="Largest UDP payload sent (1200 is always safe; path MTU allowing)."
    )
    quic_gso: bool = option(
        True,
        kind="bool",
        help="Send runs of datagrams in one system call with UDP GSO where the kernel "
        "supports it (Linux 4.18+; falls back by itself where the device refuses).",
    )
    quic_retry: bool = option(
        False,
        kind="bool",
        help="Make every new client prove its address with a Retry round trip first "
        "(without it, only while over 100 handshakes are in progress).",
    )
    quic_0rtt: bool = option(
        False,
        kind="bool",
        help=(
            "Accept 0-RTT requests on resumed connections (replayable: unsafe methods get "
            "425). Session tickets for resumption are issued either way."
        ),
    )
    quic_log_dir: str | None = option(
        None, metavar="DIR", help="Write a QLOG file per QUIC connection into DIR (debugging)."
    )
    quic_bind: list[str] = option(
        default_factory=list,
        kind="append",
        metavar="HOST:PORT",
        help="Serve HTTP/3 on this UDP address instead of next to each TLS listener "
        "(repeatable); Alt-Svc advertises the first one's port.",
    )

    def __post_init__(self) -> None:
        positive("quic_idle_timeout", self.quic_idle_timeout)
        int_range("quic_max_streams", self.quic_max_streams, 1, 1 << 20)
        int_range("quic_max_datagram_size", self.quic_max_datagram_size, 1200, 65527)
        if isinstance(self.quic_bind, str) or not all(isinstance(b, str) for b in self.quic_bind):
            raise ValueError(
                f"quic_bind must be a list of HOST:PORT strings, got {self.quic_bind!r}"
            )
        self.quic_bind = list(self.quic_bind)
        for address in self.quic_bind:
            parse_host_port("quic_bind", address)


@dataclass
class HTTP2Config:
    """HTTP/2 settings advertised to clients."""

    h2_max_concurrent_streams: int = option(
        100, help="Streams a client may have open at once on one connection."
    )
    h2_max_header_list_size: int = option(
        65536, help="Largest decoded header list accepted (bounds HPACK bombs)."
    )
    h2_initial_window_size: int = option(
        1024 * 1024, help="Per-stream receive window: request body bytes buffered per stream."
    )
    h2_max_frame_size: int = option(16384, help="Largest frame payload the server accepts.")
    h2_max_inbound_frame_size: int = option(
        1 << 20, help="Hard cap on inbound frame payloads (FRAME_SIZE_ERROR beyond)."
    )
    h2_codec: str = option(
        "auto",
        choices={"auto": "auto", "nghttp2": "nghttp2", "h2": "h2"},
        help="HTTP/2 codec: nghttp2 (libnghttp2, compiled), h2 (pure Python), or auto "
        "(nghttp2 when the ngh2 package is installed, else h2).",
    )

    def __post_init__(self) -> None:
        int_range("h2_max_concurrent_streams", self.h2_max_concurrent_streams, 1, 1 << 31)
        int_range("h2_max_header_list_size", self.h2_max_header_list_size, 1024, 1 << 30)
        int_range("h2_initial_window_size", self.h2_initial_window_size, 1, (1 << 31) - 1)
        int_range("h2_max_frame_size", self.h2_max_frame_size, 16384, (1 << 24) - 1)
        int_range("h2_max_inbound_frame_size", self.h2_max_inbound_frame_size, 16384, (1 << 24) - 1)
        if self.h2_codec != "auto" and self.h2_codec not in CODECS:
            raise ValueError(f"h2_codec must be one of auto, nghttp2, h2, got {self.h2_codec!r}")
        if self.h2_codec != "auto" and not codec_available(self.h2_codec):
            raise ValueError(
                f"h2_codec {self.h2_codec} needs the {CODECS[self.h2_codec]} package, "
                "which is not installed"
            )


@dataclass
class WebSocketConfig:
    """WebSocket over HTTP/1.1 (RFC 6455), HTTP/2 (RFC 8441) and HTTP/3 (RFC 9220)."""

    ws: str = option(
        "auto",
        choices={"auto": "auto", "wsproto": "wsproto", "none": "none"},
        help="WebSocket support: auto/wsproto (on) or none (Upgrade requests are plain HTTP).",
    )
    ws_max_size: int = option(
        16 * 1024 * 1024, help="Largest incoming message (close 1009 beyond)."
    )
    ws_max_queue: int = option(
        32, help="Incoming messages buffered for the app before reading pauses."
    )
    ws_ping_interval: float | None = option(
        20.0, help="Seconds between keepalive pings (0 turns them off)."
    )
    ws_ping_timeout: float | None = option(
        20.0, help="Seconds to wait for a pong before closing the connection."
    )
    ws_per_message_deflate: bool = option(
        True, kind="bool", help="Negotiate permessage-deflate compression when offered."
    )
    ws_deflate_level: int = option(
        1,
        metavar="LEVEL",
        help="zlib level (1 fastest to 9 smallest) of the messages the server compresses.",
    )
    ws_close_timeout: float = option(
        10.0, help="Seconds to wait for the client's close frame after ours."
    )

    @property
    def enabled(self) -> bool:
        return self.ws != "none"

    def __post_init__(self) -> None:
        if self.ws not in ("auto", "wsproto", "none"):
            raise ValueError(f"ws must be one of auto, wsproto, none, got {self.ws!r}")
        int_range("ws_max_size", self.ws_max_size, 1, 1 << 40)
        int_range("ws_max_queue", self.ws_max_queue, 1, 1 << 20)
        int_range("ws_deflate_level", self.ws_deflate_level, 1, 9)
        for name in ("ws_ping_interval", "ws_ping_timeout"):
            value = getattr(self, name)
            if value is not None:
                positive(name, value, allow_zero=True)
        positive("ws_close_timeout", self.ws_close_timeout)


@dataclass
class WebTransportConfig:
    """WebTransport over HTTP/3 (experimental; see docs/WEBTRANSPORT.md)."""

    webtransport: bool = option(
        True,
        kind="bool",
        help="Serve WebTransport sessions over HTTP/3 (extended CONNECT, :protocol webtransport).",
    )
    webtransport_max_sessions: int = option(
        16, help="WebTransport sessions one QUIC connection may have open; beyond it 429."
    )
    webtransport_max_streams: int = option(
        100,
        help="Streams one WebTransport session may have open; the peer's beyond it are reset.",
    )
    webtransport_max_datagrams: int = option(
        64,
        help="Incoming datagrams a session holds for an app that does not read them; "
        "newer ones are dropped beyond it (datagrams are unreliable).",
    )

    def __post_init__(self) -> None:
        int_range("webtransport_max_sessions", self.webtransport_max_sessions, 1, 1 << 16)
        int_range("webtransport_max_streams", self.webtransport_max_streams, 1, 1 << 20)
        int_range("webtransport_max_datagrams", self.webtransport_max_datagrams, 1, 1 << 20)


@dataclass
class LimitsConfig:
    """Bounds on everything a client or app can make the server hold."""

    limit_concurrency: int | None = option(
        None, help="Maximum concurrent requests; beyond it new requests get 503."
    )
    limit_max_requests: int | None = option(
        None,
        help="Stop the server after this many requests; with --workers, the worker is "
        "replaced by a fresh one instead (no request is dropped).",
    )
    limit_max_requests_jitter: int = option(
        0,
        metavar="N",
        help="Add a random 0..N to --limit-max-requests per worker, so that workers "
        "do not all recycle at once.",
    )
    # 16 KiB, as h11, Node.js and asgiri 0.3: see docs/CLI.md (Limits) for why.
    limit_request_header_size: int = option(
        16384, help="Maximum bytes in a request's header section (431 beyond)."
    )
    limit_request_line: int = option(8190, help="Maximum request-target length (414 beyond).")
    limit_request_fields: int = option(100, help="Maximum number of request headers (431 beyond).")
    limit_request_body: int | None = option(
        None, help="Maximum request body size in bytes (413 beyond); unlimited by default."
    )

    def __post_init__(self) -> None:
        for name in ("limit_concurrency", "limit_max_requests", "limit_request_body"):
            value = getattr(self, name)
            if value is not None:
                int_range(name, value, 0 if name == "limit_request_body" else 1, 1 << 62)
        int_range("limit_max_requests_jitter", self.limit_max_requests_jitter, 0, 1 << 62)
        int_range("limit_request_header_size", self.limit_request_header_size, 256, 1 << 30)
        int_range("limit_request_line", self.limit_request_line, 16, 1 << 30)
        int_range("limit_request_fields", self.limit_request_fields, 1, 1 << 20)


@dataclass
class TimeoutsConfig:
    """Timers that stop a client from holding a connection for free."""

    timeout_keep_alive: float = option(
        5.0, help="Close a keep-alive connection after this many idle seconds."
    )
    timeout_request_header: float = option(
        10.0, help="Seconds a client may take to send a complete request header section."
    )
    timeout_graceful_shutdown: float = option(
        30.0, help="Seconds in-flight requests may take to finish on shutdown."
    )
    timeout_write: float = option(
        60.0,
        help="Seconds a response may stay blocked on a client that reads nothing "
        "(full socket buffer, or a closed HTTP/2 window) before it is dropped.",
    )

    def __post_init__(self) -> None:
        positive("timeout_keep_alive", self.timeout_keep_alive)
        positive("timeout_request_header", self.timeout_request_header)
        positive("timeout_graceful_shutdown", self.timeout_graceful_shutdown, allow_zero=True)
        positive("timeout_write", self.timeout_write)


@dataclass
class LoggingConfig:
    """Where logs go and how chatty they are."""

    log_level: str = option(
        "info", choices={lv: lv for lv in LOG_LEVELS}, help="Log level of asgiri's loggers."
    )
    access_log: bool = option(True, kind="bool", help="Log one line per request.")
    log_config: str | None = option(
        None, metavar="PATH", help="Logging configuration file: JSON, YAML or INI (dictConfig)."
    )
    use_colors: bool | None = option(
        None,
        kind="bool",
        help="Colour the log level and the status of access lines (default: on when stderr "
        "is a terminal and NO_COLOR is unset; never with --log-config or JSON lines).",
    )

    def __post_init__(self) -> None:
        if not isinstance(self.log_level, str) or self.log_level.lower() not in LOG_LEVELS:
            raise ValueError(
                f"log_level must be one of {', '.join(LOG_LEVELS)}, got {self.log_level!r}"
            )
        self.log_level = self.log_level.lower()


@dataclass
class AccessLogConfig:
    """Access log format."""

    access_log_format: str | None = option(
        None,
        metavar="FORMAT",
        help="Access line format of {atom} placeholders, e.g. '{client} {method} {path} "
        "{status} {duration_ms}ms'; atoms are listed in docs/operations.md.",
    )
    access_log_json: bool = option(
        False,
        kind="store_true",
        help="Write each access line as a JSON object of the format's atoms.",
    )

    def __post_init__(self) -> None:
        if self.access_log_format is not None:
            if not isinstance(self.access_log_format, str):
                raise ValueError(
                    f"access_log_format must be a string, got {self.access_log_format!r}"
                )
            parse_format(self.access_log_format)  # unknown atoms fail here, not per request


@dataclass
class InterfaceConfig:
    """How the application is called."""

    interface: str = option(
        "auto",
        choices={c: c for c in INTERFACES},
        help="Application interface; auto tells ASGI 3, ASGI 2 and WSGI apart by their signature.",
    )
    wsgi_max_workers: int = option(
        10, help="Threads that run a WSGI app: requests served at once (others wait)."
    )

    def __post_init__(self) -> None:
        if not isinstance(self.interface, str) or self.interface.lower() not in INTERFACES:
            raise ValueError(
                f"interface must be one of {', '.join(INTERFACES)}, got {self.interface!r}"
            )
        self.interface = self.interface.lower()
        int_range("wsgi_max_workers", self.wsgi_max_workers, 1, 10_000)


@dataclass
class MetricsConfig:
    """Prometheus metrics."""

    metrics_bind: str | None = option(
        None,
        metavar="HOST:PORT",
        help="Serve Prometheus metrics at http://HOST:PORT/metrics (needs asgiri[metrics]).",
    )
    metrics_listen: bool = option(
        True,
        flags=None,
        help="Open the metrics listener in this process; a worker whose supervisor serves "
        "the metrics of all workers counts with this off (Python API only).",
    )

    def __post_init__(self) -> None:
        if self.metrics_bind is not None:
            parse_host_port("metrics_bind", self.metrics_bind)


@dataclass
class ReloadConfig:
    """Development reloader: restart the server when source files change."""

    reload: bool = option(
        False,
        kind="store_true",
        help="Run the server in a child process and restart it when watched files change.",
    )
    reload_dirs: list[str] = option(
        default_factory=list,
        flags=("--reload-dir",),
        kind="append",
        metavar="DIR",
        help="Directory to watch (repeatable; default: --app-dir).",
    )
    reload_includes: list[str] = option(
        default_factory=list,
        flags=("--reload-include",),
        kind="append",
        metavar="GLOB",
        help="Changes to files matching GLOB restart too (repeatable; *.py always does).",
    )
    reload_excludes: list[str] = option(
        default_factory=list,
        flags=("--reload-exclude",),
        kind="append",
        metavar="GLOB",
        help="Ignore changes to paths matching GLOB; 'name/' ignores a directory (repeatable).",
    )
    reload_delay: float = option(
        0.2, help="Seconds without further changes before the server restarts."
    )

    def __post_init__(self) -> None:
        for name in ("reload_dirs", "reload_includes", "reload_excludes"):
            value = getattr(self, name)
            if isinstance(value, str) or not all(isinstance(v, str) for v in value):
                raise ValueError(f"{name} must be a list of strings, got {value!r}")
            setattr(self, name, list(value))
        positive("reload_delay", self.reload_delay, allow_zero=True)


@dataclass
class RuntimeConfig:
    """How the process runs."""

    loop: LoopChoice = option(
        LoopChoice.AUTO, choices=LOOP_CHOICES, help="Event loop: auto (uvloop if installed)."
    )
    pid_file: str | None = option(
        None,
        flags=("--pid",),
        metavar="PATH",
        help="Write the server's process id to PATH at start-up (the supervisor's with "
        "--workers) and remove it on exit.",
    )
    memory_trim_interval: float = option(
        10.0,
        metavar="SECONDS",
        help="Seconds between two returns of freed heap memory to the operating system "
        "(glibc's malloc_trim), so that a process's RSS comes down after a burst of large "
        "bodies instead of staying at its peak; with it, blocks of 256 KiB or more are "
        "mapped on their own (glibc's mmap threshold held there, unless "
        "MALLOC_MMAP_THRESHOLD_ is set). 0 leaves malloc alone. No effect without glibc.",
    )

    def __post_init__(self) -> None:
        self.loop = coerce_choice("loop", self.loop, LOOP_CHOICES, LoopChoice)
        positive("memory_trim_interval", self.memory_trim_interval, allow_zero=True)
        if self.pid_file is not None and (not isinstance(self.pid_file, str) or not self.pid_file):
            raise ValueError(f"pid_file must be a file path, got {self.pid_file!r}")


@dataclass
class WorkersConfig:
    """Worker processes: one supervisor process, N workers sharing its sockets."""

    workers: str | int | None = option(
        None,
        flags=("-w",),
        metavar="N",
        help="Run N worker processes under a supervisor ('auto': one per CPU core; "
        "default: $WEB_CONCURRENCY, else a single process without supervisor).",
    )
    timeout_worker_healthcheck: float = option(
        10.0,
        metavar="SECONDS",
        help="Seconds a worker's event loop may go without a heartbeat before the "
        "supervisor kills and replaces it.",
    )
    workers_max_rss: int | None = option(
        None,
        metavar="MiB",
        help="Replace a worker (gracefully, as SIGHUP does) whose resident memory stays "
        "above this many MiB for --rss-samples samples.",
    )
    workers_rss_interval: float = option(
        10.0,
        flags=("--rss-sample-interval",),
        metavar="SECONDS",
        help="Seconds between two samples of each worker's memory for --workers-max-rss.",
    )
    workers_rss_samples: int = option(
        3,
        flags=("--rss-samples",),
        metavar="N",
        help="Samples in a row over --workers-max-rss before a worker is replaced.",
    )
    workers_lifetime: float | None = option(
        None,
        metavar="SECONDS",
        help="Replace each worker (gracefully, as SIGHUP does) this long after it started.",
    )
    workers_lifetime_jitter: float | None = option(
        None,
        metavar="SECONDS",
        help="Add a random 0..SECONDS to --workers-lifetime per worker, so that workers do "
        "not all go at once (default: a tenth of the lifetime).",
    )

    @property
    def count(self) -> int | None:
        """The number of workers, or None to serve in this process without a supervisor."""
        return self.workers if isinstance(self.workers, int) else None

    def __post_init__(self) -> None:
        if isinstance(self.workers, str):
            text = self.workers.strip().lower()
            if text == "auto":
                self.workers = _cpu_count()
            elif text.isdigit():
                self.workers = int(text)
            else:
                raise ValueError(f"workers must be a number or 'auto', got {self.workers!r}")
        if self.workers is not None:
            int_range("workers", self.workers, 1, 1024)
        positive("timeout_worker_healthcheck", self.timeout_worker_healthcheck)
        if self.workers_max_rss is not None:
            int_range("workers_max_rss", self.workers_max_rss, 1, 1 << 30)
        positive("workers_rss_interval", self.workers_rss_interval)
        int_range("workers_rss_samples", self.workers_rss_samples, 1, 1_000_000)
        if self.workers_lifetime is not None:
            positive("workers_lifetime", self.workers_lifetime)
        if self.workers_lifetime_jitter is not None:
            positive("workers_lifetime_jitter", self.workers_lifetime_jitter, allow_zero=True)
        recycling = [
            name
            for name in ("workers_max_rss", "workers_lifetime")
            if getattr(self, name) is not None
        ]
        if recycling and self.workers is None:
            raise ValueError(
                f"{recycling[0]} replaces worker processes: it needs --workers N (a supervisor "
                "to start the replacement)"
            )


def _cpu_count() -> int:
    """Cores this process may run on (the affinity mask, e.g. under ``taskset`` or cgroups)."""
    if hasattr(os, "sched_getaffinity"):
        return max(1, len(os.sched_getaffinity(0)))
    return max(1, os.cpu_count() or 1)
