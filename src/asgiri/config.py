"""The one configuration tree of asgiri.

The command line, ``Server(**options)`` and (later) configuration files all
fill the same :class:`Config`.  Every leaf option is a dataclass field whose
metadata carries its command-line spelling and help text, so the CLI is
generated from this file and can never drift from the API.

Validation happens once, on construction, and every error names the option
the way the user spelled it (``--port`` on the CLI, ``port`` in Python).
"""

from __future__ import annotations

import contextlib
import dataclasses
import enum
import math
import os
import ssl
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "COMPAT_FLAGS",
    "CompatFlag",
    "Config",
    "HttpProtocolVersion",
    "LifespanPolicy",
    "LoopChoice",
    "OptionSpec",
    "bind_scheme",
    "iter_options",
    "parse_bind",
    "parse_header",
]


class HttpProtocolVersion(enum.Enum):
    """Which HTTP versions a server speaks.

    AUTO serves HTTP/1.1 on the TCP listener and picks up newer versions as
    they are available; the others restrict the server to one version.  The
    values are asgiri 0.3's; ``--http`` spells them ``1.1``, ``2``, ``3`` and
    ``auto`` (:attr:`option`), and both spellings are accepted everywhere.
    """

    HTTP_1_1 = "http/1.1"
    HTTP_2 = "http/2"
    HTTP_3 = "http/3"
    AUTO = "auto"

    @property
    def option(self) -> str:
        """How ``--http`` spells this version (``1.1``, ``2``, ``3``, ``auto``)."""
        return _HTTP_OPTION[self]

    @classmethod
    def _missing_(cls, value: object) -> HttpProtocolVersion | None:
        """Accept the ``--http`` spellings too: ``HttpProtocolVersion("2")``."""
        if isinstance(value, str):
            return _HTTP_CHOICES.get(value.lower())
        return None


class LifespanPolicy(enum.Enum):
    """Whether the ASGI lifespan protocol is run.

    AUTO runs it but tolerates apps that do not implement it (they raise on
    the lifespan scope); ENABLED makes any startup failure fatal.
    """

    ENABLED = "enabled"
    DISABLED = "disabled"
    AUTO = "auto"


class LoopChoice(enum.Enum):
    """Event loop implementation; AUTO picks uvloop when it is installed."""

    AUTO = "auto"
    ASYNCIO = "asyncio"
    UVLOOP = "uvloop"


#: Versions this build can actually serve.  Kept here so that asking for a
#: version that is not available is a clear configuration error, never a
#: silent fallback to HTTP/1.1.
SUPPORTED_HTTP_VERSIONS = frozenset(HttpProtocolVersion)

_HTTP_OPTION = {
    HttpProtocolVersion.AUTO: "auto",
    HttpProtocolVersion.HTTP_1_1: "1.1",
    HttpProtocolVersion.HTTP_2: "2",
    HttpProtocolVersion.HTTP_3: "3",
}
#: ``--http`` takes its own spellings first (what ``--help`` shows), then the values.
_HTTP_CHOICES = {
    **{option: version for version, option in _HTTP_OPTION.items()},
    **{version.value: version for version in HttpProtocolVersion},
}
_LIFESPAN_CHOICES = {
    "auto": LifespanPolicy.AUTO,
    "on": LifespanPolicy.ENABLED,
    "off": LifespanPolicy.DISABLED,
    "enabled": LifespanPolicy.ENABLED,
    "disabled": LifespanPolicy.DISABLED,
}
_LOOP_CHOICES = {v.value: v for v in LoopChoice}
_LOG_LEVELS = ("critical", "error", "warning", "info", "debug", "trace")
_INTERFACES = ("auto", "asgi3", "asgi2", "wsgi")


@dataclass(frozen=True)
class CompatFlag:
    """A command-line spelling of asgiri 0.3 that sets a config field.

    ``asgiri --help`` lists these together under "compatibility", apart from
    the option's own group, so old command lines keep working without the
    old names cluttering the main options.  With ``const`` the flag takes no
    value and stores ``const``; otherwise it takes a value, restricted to
    ``choices`` when given and passed through ``convert`` when given.
    """

    flag: str
    help: str
    const: Any = None
    choices: tuple[str, ...] | None = None
    metavar: str | None = None
    convert: Callable[[str], Any] | None = None


def _opt(
    default: Any = dataclasses.MISSING,
    *,
    help: str,
    flags: tuple[str, ...] | None = (),
    choices: Mapping[str, Any] | None = None,
    metavar: str | None = None,
    kind: str = "value",
    group: str = "",
    default_factory: Callable[[], Any] | None = None,
) -> Any:
    """A config field with its command-line description.

    ``flags`` lists extra spellings (the first generated one is
    ``--field-name``); ``flags=None`` keeps the option out of the CLI (it is
    Python-only, such as a ready ``ssl.SSLContext``).  ``kind`` is "value",
    "bool" (``--x/--no-x``), "store_false" (only ``--no-x`` exists),
    "store_true" or "append".  The asgiri 0.3 spellings of an option are in
    :data:`COMPAT_FLAGS`.
    """
    meta = {
        "help": help,
        "flags": flags,
        "choices": choices,
        "metavar": metavar,
        "kind": kind,
        "group": group,
    }
    if default_factory is not None:
        return field(default_factory=default_factory, metadata=meta)
    return field(default=default, metadata=meta)


@dataclass
class AppConfig:
    """Where the application comes from and how it is run."""

    factory: bool = _opt(
        False, kind="store_true", help="Treat APP as a factory: call it to get the ASGI app."
    )
    app_dir: str = _opt(".", help="Directory added to sys.path before importing APP.")
    lifespan: LifespanPolicy = _opt(
        LifespanPolicy.AUTO,
        choices={
            "auto": LifespanPolicy.AUTO,
            "on": LifespanPolicy.ENABLED,
            "off": LifespanPolicy.DISABLED,
        },
        help="Run the ASGI lifespan protocol: on (failure is fatal), off, or auto.",
    )
    lifespan_startup_timeout: float = _opt(
        10.0, help="Seconds the app may take to complete lifespan startup."
    )
    lifespan_shutdown_timeout: float = _opt(
        10.0, help="Seconds the app may take to complete lifespan shutdown."
    )
    root_path: str = _opt("", help="ASGI root_path, for apps mounted below a path prefix.")
    env_file: str | None = _opt(
        None,
        metavar="PATH",
        help="Set the variables of this dotenv file (KEY=VALUE lines) for the app; variables "
        "already in the environment win. Its ASGIRI_* lines configure the server too.",
    )

    def __post_init__(self) -> None:
        if self.env_file is not None and (not isinstance(self.env_file, str) or not self.env_file):
            raise ValueError(f"env_file must be a file path, got {self.env_file!r}")
        self.lifespan = _coerce_choice("lifespan", self.lifespan, _LIFESPAN_CHOICES, LifespanPolicy)
        _positive("lifespan_startup_timeout", self.lifespan_startup_timeout)
        _positive("lifespan_shutdown_timeout", self.lifespan_shutdown_timeout)
        if not isinstance(self.root_path, str) or (
            self.root_path and not self.root_path.startswith("/")
        ):
            raise ValueError(f"root_path must be empty or start with '/', got {self.root_path!r}")
        self.root_path = self.root_path.rstrip("/")


@dataclass
class BindConfig:
    """Where the server listens."""

    host: str = _opt("127.0.0.1", help="Address to bind.")
    port: int | None = _opt(
        None, help="Port to bind (default 8000, or 8443 with TLS; 0 picks a free port)."
    )
    uds: str | None = _opt(None, metavar="PATH", help="Bind a Unix domain socket instead.")
    uds_permissions: str | int | None = _opt(
        None,
        metavar="MODE",
        help="Octal file mode of the Unix sockets bound (--uds, --bind unix:), e.g. 660 "
        "(default: 666, anyone on the host may connect).",
    )
    fd: int | None = _opt(None, help="Serve on an already bound socket file descriptor.")
    backlog: int = _opt(2048, help="Maximum number of pending connections.")
    reuse_port: bool = _opt(False, kind="bool", help="Set SO_REUSEPORT on the listening socket.")
    binds: list[str] = _opt(
        default_factory=list,
        flags=("--bind", "-b"),
        kind="append",
        metavar="ADDRESS",
        help="Listen on HOST:PORT, [IPV6]:PORT, unix:PATH or fd://N, each optionally after "
        "http:// (cleartext) or https:// (TLS) (repeatable; replaces --host/--port).",
    )
    redirect_http: bool = _opt(
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
            _int_range("port", self.port, 0, 65535)
        if self.fd is not None:
            _int_range("fd", self.fd, 0, 1 << 30)
        if self.uds_permissions is not None:
            self.uds_permissions = _octal_mode("uds_permissions", self.uds_permissions)
        _int_range("backlog", self.backlog, 1, 1 << 20)
        if not isinstance(self.host, str) or not self.host:
            raise ValueError("host must be a non-empty string")


def _octal_mode(name: str, value: Any) -> int:
    """``"660"``, ``"0o660"``, ``"0660"`` or the number itself -> a file mode, 0 to 0o777."""
    if isinstance(value, str):
        text = value.strip().lower().removeprefix("0o")
        if not text or any(c not in "01234567" for c in text):
            raise ValueError(f"{name} must be an octal file mode such as 660, got {value!r}")
        value = int(text, 8)
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 0o777:
        raise ValueError(f"{name} must be an octal file mode from 000 to 777, got {value!r}")
    return value


def bind_scheme(address: str) -> tuple[str | None, str]:
    """``"https://0.0.0.0:8443"`` -> ("https", "0.0.0.0:8443"); no scheme -> (None, address).

    The scheme says whether a listener speaks TLS; without one it does when a
    certificate is configured.  A trailing ``/`` after the scheme form is allowed.
    """
    for scheme in ("https", "http"):
        prefix = scheme + "://"
        if address[: len(prefix)].lower() == prefix:
            rest = address[len(prefix) :]
            return scheme, rest[:-1] if rest.endswith("/") and ":" in rest else rest
    return None, address


def parse_bind(address: str) -> tuple[str, str | int, int | None]:
    """``--bind`` forms -> ("tcp", host, port), ("unix", path, None) or ("fd", n, None).

    An ``http://`` / ``https://`` in front is allowed (see :func:`bind_scheme`).
    """
    scheme, address = bind_scheme(address)
    if scheme is not None and ":" not in address:
        raise ValueError(f"binds entry '{scheme}://{address}' needs a port: {scheme}://HOST:PORT")
    if address.startswith("unix:"):
        path = address[5:]
        if not path:
            raise ValueError(f"binds entry {address!r} needs a path after 'unix:'")
        return ("unix", path, None)
    if address.startswith("fd://"):
        fd = address[5:]
        if not fd.isdigit():
            raise ValueError(f"binds entry {address!r}: fd:// needs a file descriptor number")
        return ("fd", int(fd), None)
    host, sep, port = address.rpartition(":")
    if not sep or not port.isdigit() or int(port) > 65535:
        raise ValueError(f"binds entry {address!r} is not HOST:PORT, unix:PATH or fd://N")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    elif ":" in host:
        raise ValueError(f"binds entry {address!r}: write an IPv6 address as [ADDRESS]:PORT")
    return ("tcp", host or "0.0.0.0", int(port))


@dataclass
class TLSConfig:
    """TLS for the TCP listener (and QUIC, which always needs it)."""

    certfile: str | None = _opt(
        None, flags=("--ssl-certfile",), metavar="PATH", help="TLS certificate chain (PEM)."
    )
    keyfile: str | None = _opt(
        None, flags=("--ssl-keyfile",), metavar="PATH", help="TLS private key (PEM)."
    )
    keyfile_password: str | None = _opt(
        None, flags=("--ssl-keyfile-password",), help="Password of an encrypted private key."
    )
    ca_certs: str | None = _opt(
        None, flags=("--ssl-ca-certs",), metavar="PATH", help="CA bundle to verify clients."
    )
    cert_reqs: int = _opt(
        int(ssl.CERT_NONE),
        flags=("--ssl-cert-reqs",),
        help="Client certificate requirement: 0 none, 1 optional, 2 required.",
    )
    ciphers: str | None = _opt(
        None, flags=("--ssl-ciphers",), help="OpenSSL cipher string for TLS 1.2."
    )
    ssl_watch: bool = _opt(
        False,
        kind="store_true",
        help="Reload --certfile/--keyfile/--ca-certs for new handshakes when they change "
        "(SIGUSR1 does it on demand).",
    )
    ssl_context: ssl.SSLContext | None = _opt(
        None, flags=None, help="A ready server SSLContext (Python API only)."
    )
    cert_data: bytes | None = _opt(None, flags=None, help="PEM certificate bytes (API only).")
    key_data: bytes | None = _opt(None, flags=None, help="PEM private key bytes (API only).")
    selfcert: bool = _opt(
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
        _int_range("cert_reqs", self.cert_reqs, 0, 2)
        if self.ssl_watch and not self.certfile:
            raise ValueError(
                "ssl_watch needs the certificate as files to watch: give --certfile and --keyfile"
            )


@dataclass
class ProxyConfig:
    """Behind proxies and load balancers."""

    proxy_headers: bool = _opt(
        True,
        kind="bool",
        help="Take the client address, scheme and host from X-Forwarded-For/-Proto/-Host "
        "and Forwarded headers, on connections from --forwarded-allow-ips only.",
    )
    forwarded_allow_ips: str | None = _opt(
        None,
        metavar="LIST",
        help="Comma-separated IPs and CIDR networks of trusted proxies; '*' trusts all, "
        "'unix' Unix-socket peers (default: $FORWARDED_ALLOW_IPS or 127.0.0.1).",
    )
    proxy_protocol: bool = _opt(
        False,
        kind="store_true",
        help="Expect a PROXY protocol v1/v2 header on every connection (HAProxy send-proxy, "
        "cloud load balancers); connections without one are closed.",
    )

    def __post_init__(self) -> None:
        if self.forwarded_allow_ips is None:
            self.forwarded_allow_ips = os.environ.get("FORWARDED_ALLOW_IPS", "127.0.0.1")
        if isinstance(self.forwarded_allow_ips, list | tuple):
            self.forwarded_allow_ips = ",".join(self.forwarded_allow_ips)
        if not isinstance(self.forwarded_allow_ips, str):
            raise ValueError(
                f"forwarded_allow_ips must be a comma-separated string, "
                f"got {self.forwarded_allow_ips!r}"
            )
        from .protocol.proxy_headers import TrustedProxies

        try:
            TrustedProxies(self.forwarded_allow_ips)
        except ValueError as exc:
            raise ValueError(
                f"forwarded_allow_ips must list IP addresses and networks: {exc}"
            ) from None


@dataclass
class HTTPConfig:
    """Which protocols are spoken and what every response carries."""

    http_version: HttpProtocolVersion = _opt(
        HttpProtocolVersion.AUTO,
        flags=("--http",),
        choices=_HTTP_CHOICES,
        metavar="{auto,1.1,2,3}",
        help="HTTP version(s) to serve (http/1.1, http/2, http/3 are accepted too).",
    )
    enable_http3: bool | None = _opt(
        None,
        flags=("--no-http3",),
        kind="store_false",
        help="Do not open the UDP listener for HTTP/3 (on by default with TLS in auto mode).",
    )
    http3_port: int | None = _opt(
        None, help="UDP port for HTTP/3 (default: the TCP port); Alt-Svc advertises it."
    )
    alt_svc: bool = _opt(
        True,
        kind="bool",
        help="Advertise HTTP/3 with an Alt-Svc header on TCP responses (an app's own wins).",
    )
    alt_svc_max_age: int = _opt(86400, help="Seconds clients may remember the Alt-Svc entry.")
    server_header: bool = _opt(True, kind="bool", help="Send a 'server: asgiri' header.")
    date_header: bool = _opt(True, kind="bool", help="Send a 'date' header.")
    headers: list[str] = _opt(
        default_factory=list,
        flags=("--header",),
        kind="append",
        metavar="NAME:VALUE",
        help="Add this header to every response (repeatable); 'server:...' or 'date:...' "
        "replaces the server's own.",
    )
    health_path: str | None = _opt(
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
        self.http_version = _coerce_choice(
            "http_version", self.http_version, _HTTP_CHOICES, HttpProtocolVersion
        )
        if self.http_version not in SUPPORTED_HTTP_VERSIONS:
            raise ValueError(
                f"http_version {self.http_version.option} is not available in this build of asgiri"
            )
        if self.http3_port is not None:
            _int_range("http3_port", self.http3_port, 0, 65535)
        _int_range("alt_svc_max_age", self.alt_svc_max_age, 0, 1 << 31)


_TOKEN_CHARS = frozenset(
    "!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
)
#: Headers that frame the message or the connection: the protocol code owns them.
_FRAMING_HEADERS = frozenset(
    ("content-length", "transfer-encoding", "connection", "keep-alive", "upgrade", "te", "trailer")
)


def parse_header(text: str) -> tuple[str, str]:
    """``--header`` ``"NAME:VALUE"`` -> (NAME, VALUE); ValueError says what is wrong."""
    name, sep, value = text.partition(":")
    name, value = name.strip(), value.strip()
    if not sep or not name:
        raise ValueError(f"headers entry {text!r} is not NAME:VALUE")
    if not set(name) <= _TOKEN_CHARS:
        raise ValueError(f"headers entry {text!r}: {name!r} is not a valid header name")
    if name.lower() in _FRAMING_HEADERS:
        raise ValueError(
            f"headers entry {text!r}: {name.lower()} is set by the server for each response"
        )
    if any(c in value for c in "\r\n\0") or not value.isprintable() or not _latin1(value):
        raise ValueError(f"headers entry {text!r}: the value must be printable latin-1 text")
    return name, value


def _latin1(text: str) -> bool:
    try:
        text.encode("latin-1")
    except UnicodeEncodeError:
        return False
    return True


@dataclass
class QUICConfig:
    """HTTP/3 over QUIC (UDP), served next to the TCP listener."""

    quic_idle_timeout: float = _opt(
        30.0, help="Close a QUIC connection after this many seconds without packets."
    )
    quic_max_streams: int = _opt(
        100, help="Request streams a client may have open at once on one connection."
    )
    quic_max_datagram_size: int = _opt(
        1350, help="Largest UDP payload sent (1200 is always safe; path MTU allowing)."
    )
    quic_retry: bool = _opt(
        False,
        kind="bool",
        help="Make every new client prove its address with a Retry round trip first "
        "(without it, only while over 100 handshakes are in progress).",
    )
    quic_0rtt: bool = _opt(
        False,
        kind="bool",
        help=(
            "Accept 0-RTT requests on resumed connections (replayable: unsafe methods get "
            "425). Session tickets for resumption are issued either way."
        ),
    )
    quic_log_dir: str | None = _opt(
        None, metavar="DIR", help="Write a QLOG file per QUIC connection into DIR (debugging)."
    )
    quic_bind: list[str] = _opt(
        default_factory=list,
        kind="append",
        metavar="HOST:PORT",
        help="Serve HTTP/3 on this UDP address instead of next to each TLS listener "
        "(repeatable); Alt-Svc advertises the first one's port.",
    )

    def __post_init__(self) -> None:
        _positive("quic_idle_timeout", self.quic_idle_timeout)
        _int_range("quic_max_streams", self.quic_max_streams, 1, 1 << 20)
        _int_range("quic_max_datagram_size", self.quic_max_datagram_size, 1200, 65527)
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

    h2_max_concurrent_streams: int = _opt(
        100, help="Streams a client may have open at once on one connection."
    )
    h2_max_header_list_size: int = _opt(
        65536, help="Largest decoded header list accepted (bounds HPACK bombs)."
    )
    h2_initial_window_size: int = _opt(
        1024 * 1024, help="Per-stream receive window: request body bytes buffered per stream."
    )
    h2_max_frame_size: int = _opt(16384, help="Largest frame payload the server accepts.")
    h2_max_inbound_frame_size: int = _opt(
        1 << 20, help="Hard cap on inbound frame payloads (FRAME_SIZE_ERROR beyond)."
    )
    h2_codec: str = _opt(
        choices={"auto": "auto", "nghttp2": "nghttp2", "h2": "h2"},
        default_factory=lambda: os.environ.get("ASGIRI_H2_CODEC") or "auto",
        help="HTTP/2 codec: nghttp2 (libnghttp2, compiled), h2 (pure Python), or auto "
        "(nghttp2 when the ngh2 package is installed, else h2); $ASGIRI_H2_CODEC sets the default.",
    )

    def __post_init__(self) -> None:
        _int_range("h2_max_concurrent_streams", self.h2_max_concurrent_streams, 1, 1 << 31)
        _int_range("h2_max_header_list_size", self.h2_max_header_list_size, 1024, 1 << 30)
        _int_range("h2_initial_window_size", self.h2_initial_window_size, 1, (1 << 31) - 1)
        _int_range("h2_max_frame_size", self.h2_max_frame_size, 16384, (1 << 24) - 1)
        _int_range(
            "h2_max_inbound_frame_size", self.h2_max_inbound_frame_size, 16384, (1 << 24) - 1
        )
        from .protocol.h2_common import CODECS, codec_available

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

    ws: str = _opt(
        "auto",
        choices={"auto": "auto", "wsproto": "wsproto", "none": "none"},
        help="WebSocket support: auto/wsproto (on) or none (Upgrade requests are plain HTTP).",
    )
    ws_max_size: int = _opt(16 * 1024 * 1024, help="Largest incoming message (close 1009 beyond).")
    ws_max_queue: int = _opt(
        32, help="Incoming messages buffered for the app before reading pauses."
    )
    ws_ping_interval: float | None = _opt(
        20.0, help="Seconds between keepalive pings (0 turns them off)."
    )
    ws_ping_timeout: float | None = _opt(
        20.0, help="Seconds to wait for a pong before closing the connection."
    )
    ws_per_message_deflate: bool = _opt(
        True, kind="bool", help="Negotiate permessage-deflate compression when offered."
    )
    ws_deflate_level: int = _opt(
        1,
        metavar="LEVEL",
        help="zlib level (1 fastest to 9 smallest) of the messages the server compresses.",
    )
    ws_close_timeout: float = _opt(
        10.0, help="Seconds to wait for the client's close frame after ours."
    )

    @property
    def enabled(self) -> bool:
        return self.ws != "none"

    def __post_init__(self) -> None:
        if self.ws not in ("auto", "wsproto", "none"):
            raise ValueError(f"ws must be one of auto, wsproto, none, got {self.ws!r}")
        _int_range("ws_max_size", self.ws_max_size, 1, 1 << 40)
        _int_range("ws_max_queue", self.ws_max_queue, 1, 1 << 20)
        _int_range("ws_deflate_level", self.ws_deflate_level, 1, 9)
        for name in ("ws_ping_interval", "ws_ping_timeout"):
            value = getattr(self, name)
            if value is not None:
                _positive(name, value, allow_zero=True)
        _positive("ws_close_timeout", self.ws_close_timeout)


@dataclass
class WebTransportConfig:
    """WebTransport over HTTP/3 (experimental; see docs/WEBTRANSPORT.md)."""

    webtransport: bool = _opt(
        True,
        kind="bool",
        help="Serve WebTransport sessions over HTTP/3 (extended CONNECT, :protocol webtransport).",
    )
    webtransport_max_sessions: int = _opt(
        16, help="WebTransport sessions one QUIC connection may have open; beyond it 429."
    )
    webtransport_max_streams: int = _opt(
        100,
        help="Streams one WebTransport session may have open; the peer's beyond it are reset.",
    )
    webtransport_max_datagrams: int = _opt(
        64,
        help="Incoming datagrams a session holds for an app that does not read them; "
        "newer ones are dropped beyond it (datagrams are unreliable).",
    )

    def __post_init__(self) -> None:
        _int_range("webtransport_max_sessions", self.webtransport_max_sessions, 1, 1 << 16)
        _int_range("webtransport_max_streams", self.webtransport_max_streams, 1, 1 << 20)
        _int_range("webtransport_max_datagrams", self.webtransport_max_datagrams, 1, 1 << 20)


@dataclass
class LimitsConfig:
    """Bounds on everything a client or app can make the server hold."""

    limit_concurrency: int | None = _opt(
        None, help="Maximum concurrent requests; beyond it new requests get 503."
    )
    limit_max_requests: int | None = _opt(
        None,
        help="Stop the server after this many requests; with --workers, the worker is "
        "replaced by a fresh one instead (no request is dropped).",
    )
    limit_max_requests_jitter: int = _opt(
        0,
        metavar="N",
        help="Add a random 0..N to --limit-max-requests per worker, so that workers "
        "do not all recycle at once.",
    )
    # 16 KiB, as h11, Node.js and asgiri 0.3: see docs/CLI.md (Limits) for why.
    limit_request_header_size: int = _opt(
        16384, help="Maximum bytes in a request's header section (431 beyond)."
    )
    limit_request_line: int = _opt(8190, help="Maximum request-target length (414 beyond).")
    limit_request_fields: int = _opt(100, help="Maximum number of request headers (431 beyond).")
    limit_request_body: int | None = _opt(
        None, help="Maximum request body size in bytes (413 beyond); unlimited by default."
    )

    def __post_init__(self) -> None:
        for name in ("limit_concurrency", "limit_max_requests", "limit_request_body"):
            value = getattr(self, name)
            if value is not None:
                _int_range(name, value, 0 if name == "limit_request_body" else 1, 1 << 62)
        _int_range("limit_max_requests_jitter", self.limit_max_requests_jitter, 0, 1 << 62)
        _int_range("limit_request_header_size", self.limit_request_header_size, 256, 1 << 30)
        _int_range("limit_request_line", self.limit_request_line, 16, 1 << 30)
        _int_range("limit_request_fields", self.limit_request_fields, 1, 1 << 20)


@dataclass
class TimeoutsConfig:
    """Timers that stop a client from holding a connection for free."""

    timeout_keep_alive: float = _opt(
        5.0, help="Close a keep-alive connection after this many idle seconds."
    )
    timeout_request_header: float = _opt(
        10.0, help="Seconds a client may take to send a complete request header section."
    )
    timeout_graceful_shutdown: float = _opt(
        30.0, help="Seconds in-flight requests may take to finish on shutdown."
    )
    timeout_write: float = _opt(
        60.0,
        help="Seconds a response may stay blocked on a client that reads nothing "
        "(full socket buffer, or a closed HTTP/2 window) before it is dropped.",
    )

    def __post_init__(self) -> None:
        _positive("timeout_keep_alive", self.timeout_keep_alive)
        _positive("timeout_request_header", self.timeout_request_header)
        _positive("timeout_graceful_shutdown", self.timeout_graceful_shutdown, allow_zero=True)
        _positive("timeout_write", self.timeout_write)


@dataclass
class LoggingConfig:
    """Where logs go and how chatty they are."""

    log_level: str = _opt(
        "info", choices={lv: lv for lv in _LOG_LEVELS}, help="Log level of asgiri's loggers."
    )
    access_log: bool = _opt(True, kind="bool", help="Log one line per request.")
    log_config: str | None = _opt(
        None, metavar="PATH", help="Logging configuration file: JSON, YAML or INI (dictConfig)."
    )
    use_colors: bool | None = _opt(
        None,
        kind="bool",
        help="Colour the log level and the status of access lines (default: on when stderr "
        "is a terminal and NO_COLOR is unset; never with --log-config or JSON lines).",
    )

    def __post_init__(self) -> None:
        if not isinstance(self.log_level, str) or self.log_level.lower() not in _LOG_LEVELS:
            raise ValueError(
                f"log_level must be one of {', '.join(_LOG_LEVELS)}, got {self.log_level!r}"
            )
        self.log_level = self.log_level.lower()


@dataclass
class AccessLogConfig:
    """Access log format."""

    access_log_format: str | None = _opt(
        None,
        metavar="FORMAT",
        help="Access line format of {atom} placeholders, e.g. '{client} {method} {path} "
        "{status} {duration_ms}ms'; atoms are listed in docs/operations.md.",
    )
    access_log_json: bool = _opt(
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
            from .asgi.access_log import compile_format

            compile_format(self.access_log_format)  # unknown atoms fail here, not per request


@dataclass
class InterfaceConfig:
    """How the application is called."""

    interface: str = _opt(
        "auto",
        choices={c: c for c in _INTERFACES},
        help="Application interface; auto tells ASGI 3, ASGI 2 and WSGI apart by their signature.",
    )
    wsgi_max_workers: int = _opt(
        10, help="Threads that run a WSGI app: requests served at once (others wait)."
    )

    def __post_init__(self) -> None:
        if not isinstance(self.interface, str) or self.interface.lower() not in _INTERFACES:
            raise ValueError(
                f"interface must be one of {', '.join(_INTERFACES)}, got {self.interface!r}"
            )
        self.interface = self.interface.lower()
        _int_range("wsgi_max_workers", self.wsgi_max_workers, 1, 10_000)


@dataclass
class MetricsConfig:
    """Prometheus metrics."""

    metrics_bind: str | None = _opt(
        None,
        metavar="HOST:PORT",
        help="Serve Prometheus metrics at http://HOST:PORT/metrics (needs asgiri[metrics]).",
    )
    metrics_listen: bool = _opt(
        True,
        flags=None,
        help="Open the metrics listener in this process; a worker whose supervisor serves "
        "the metrics of all workers counts with this off (Python API only).",
    )

    def __post_init__(self) -> None:
        if self.metrics_bind is not None:
            parse_host_port("metrics_bind", self.metrics_bind)


def parse_host_port(name: str, value: Any) -> tuple[str, int]:
    """``"127.0.0.1:9100"`` / ``"[::1]:9100"`` -> (host, port); ValueError names ``name``."""
    if isinstance(value, str):
        host, sep, port = value.rpartition(":")
        if host.startswith("[") and host.endswith("]"):
            host = host[1:-1]
        if sep and host and port.isdigit() and 0 <= int(port) <= 65535:
            return host, int(port)
    raise ValueError(f"{name} must be HOST:PORT, got {value!r}")


def _milliseconds(value: str) -> float:
    """``--reload-delay-ms 200`` -> 0.2 seconds (the name shows in argparse errors)."""
    return int(value) / 1000


@dataclass
class ReloadConfig:
    """Development reloader: restart the server when source files change."""

    reload: bool = _opt(
        False,
        kind="store_true",
        help="Run the server in a child process and restart it when watched files change.",
    )
    reload_dirs: list[str] = _opt(
        default_factory=list,
        flags=("--reload-dir",),
        kind="append",
        metavar="DIR",
        help="Directory to watch (repeatable; default: --app-dir).",
    )
    reload_includes: list[str] = _opt(
        default_factory=list,
        flags=("--reload-include",),
        kind="append",
        metavar="GLOB",
        help="Changes to files matching GLOB restart too (repeatable; *.py always does).",
    )
    reload_excludes: list[str] = _opt(
        default_factory=list,
        flags=("--reload-exclude",),
        kind="append",
        metavar="GLOB",
        help="Ignore changes to paths matching GLOB; 'name/' ignores a directory (repeatable).",
    )
    reload_delay: float = _opt(
        0.2, help="Seconds without further changes before the server restarts."
    )

    def __post_init__(self) -> None:
        for name in ("reload_dirs", "reload_includes", "reload_excludes"):
            value = getattr(self, name)
            if isinstance(value, str) or not all(isinstance(v, str) for v in value):
                raise ValueError(f"{name} must be a list of strings, got {value!r}")
            setattr(self, name, list(value))
        _positive("reload_delay", self.reload_delay, allow_zero=True)


@dataclass
class RuntimeConfig:
    """How the process runs."""

    loop: LoopChoice = _opt(
        LoopChoice.AUTO, choices=_LOOP_CHOICES, help="Event loop: auto (uvloop if installed)."
    )
    pid_file: str | None = _opt(
        None,
        flags=("--pid",),
        metavar="PATH",
        help="Write the server's process id to PATH at start-up (the supervisor's with "
        "--workers) and remove it on exit.",
    )

    def __post_init__(self) -> None:
        self.loop = _coerce_choice("loop", self.loop, _LOOP_CHOICES, LoopChoice)
        if self.pid_file is not None and (not isinstance(self.pid_file, str) or not self.pid_file):
            raise ValueError(f"pid_file must be a file path, got {self.pid_file!r}")


@dataclass
class WorkersConfig:
    """Worker processes: one supervisor process, N workers sharing its sockets."""

    workers: str | int | None = _opt(
        None,
        flags=("-w",),
        metavar="N",
        help="Run N worker processes under a supervisor ('auto': one per CPU core; "
        "default: $WEB_CONCURRENCY, else a single process without supervisor).",
    )
    timeout_worker_healthcheck: float = _opt(
        10.0,
        metavar="SECONDS",
        help="Seconds a worker's event loop may go without a heartbeat before the "
        "supervisor kills and replaces it.",
    )
    workers_max_rss: int | None = _opt(
        None,
        metavar="MiB",
        help="Replace a worker (gracefully, as SIGHUP does) whose resident memory stays "
        "above this many MiB for --rss-samples samples.",
    )
    workers_rss_interval: float = _opt(
        10.0,
        flags=("--rss-sample-interval",),
        metavar="SECONDS",
        help="Seconds between two samples of each worker's memory for --workers-max-rss.",
    )
    workers_rss_samples: int = _opt(
        3,
        flags=("--rss-samples",),
        metavar="N",
        help="Samples in a row over --workers-max-rss before a worker is replaced.",
    )
    workers_lifetime: float | None = _opt(
        None,
        metavar="SECONDS",
        help="Replace each worker (gracefully, as SIGHUP does) this long after it started.",
    )
    workers_lifetime_jitter: float | None = _opt(
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
            _int_range("workers", self.workers, 1, 1024)
        _positive("timeout_worker_healthcheck", self.timeout_worker_healthcheck)
        if self.workers_max_rss is not None:
            _int_range("workers_max_rss", self.workers_max_rss, 1, 1 << 30)
        _positive("workers_rss_interval", self.workers_rss_interval)
        _int_range("workers_rss_samples", self.workers_rss_samples, 1, 1_000_000)
        if self.workers_lifetime is not None:
            _positive("workers_lifetime", self.workers_lifetime)
        if self.workers_lifetime_jitter is not None:
            _positive("workers_lifetime_jitter", self.workers_lifetime_jitter, allow_zero=True)
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


#: The option groups, in the order ``--help`` shows them.
_GROUPS: dict[str, type[Any]] = {
    "app": AppConfig,
    "interface": InterfaceConfig,
    "bind": BindConfig,
    "tls": TLSConfig,
    "proxy": ProxyConfig,
    "http": HTTPConfig,
    "http2": HTTP2Config,
    "quic": QUICConfig,
    "websocket": WebSocketConfig,
    "webtransport": WebTransportConfig,
    "limits": LimitsConfig,
    "timeouts": TimeoutsConfig,
    "logging": LoggingConfig,
    "access": AccessLogConfig,
    "metrics": MetricsConfig,
    "runtime": RuntimeConfig,
    "workers": WorkersConfig,
    "reload": ReloadConfig,
}

#: The command-line spellings of asgiri 0.3, by the option they set.  Kept
#: apart from the fields: they are a compatibility layer, shown in a help
#: group of their own, and never the spelling new documentation uses.
COMPAT_FLAGS: dict[str, tuple[CompatFlag, ...]] = {
    "http_version": (
        CompatFlag("--http11", const="1.1", help="Same as --http 1.1."),
        CompatFlag("--http2", const="auto", help="Same as --http auto (HTTP/1.1 and HTTP/2)."),
        CompatFlag("--http3", const="3", help="Same as --http 3."),
    ),
    "certfile": (CompatFlag("--cert", metavar="PATH", help="Same as --certfile."),),
    "keyfile": (CompatFlag("--key", metavar="PATH", help="Same as --keyfile."),),
    "selfcert": (
        CompatFlag(
            "--selfcert",
            const=True,
            help="Serve TLS with a self-signed certificate generated in memory at start-up; "
            "its SHA-256 SPKI pin is logged (development only).",
        ),
    ),
    "lifespan": (
        CompatFlag(
            "--lifespan-policy",
            choices=("enabled", "disabled", "auto"),
            help="Same as --lifespan on/off/auto.",
        ),
    ),
    "reload_excludes": (
        CompatFlag("--reload-ignore", metavar="GLOB", help="Same as --reload-exclude."),
    ),
    "reload_delay": (
        CompatFlag(
            "--reload-delay-ms",
            metavar="MS",
            convert=_milliseconds,
            help="Same as --reload-delay, in milliseconds.",
        ),
    ),
}


@dataclass
class Config:
    """Everything a server needs, validated once.

    Build one with :meth:`Config.from_options`, which takes the flat option
    names shared by the CLI (``--timeout-keep-alive``) and ``Server``
    (``timeout_keep_alive=``).
    """

    app: Any
    app_options: AppConfig = field(default_factory=AppConfig)
    interface: InterfaceConfig = field(default_factory=InterfaceConfig)
    bind: BindConfig = field(default_factory=BindConfig)
    tls: TLSConfig = field(default_factory=TLSConfig)
    proxy: ProxyConfig = field(default_factory=ProxyConfig)
    http: HTTPConfig = field(default_factory=HTTPConfig)
    http2: HTTP2Config = field(default_factory=HTTP2Config)
    quic: QUICConfig = field(default_factory=QUICConfig)
    websocket: WebSocketConfig = field(default_factory=WebSocketConfig)
    webtransport: WebTransportConfig = field(default_factory=WebTransportConfig)
    limits: LimitsConfig = field(default_factory=LimitsConfig)
    timeouts: TimeoutsConfig = field(default_factory=TimeoutsConfig)
    logging: LoggingConfig = field(default_factory=LoggingConfig)
    access: AccessLogConfig = field(default_factory=AccessLogConfig)
    metrics: MetricsConfig = field(default_factory=MetricsConfig)
    runtime: RuntimeConfig = field(default_factory=RuntimeConfig)
    workers: WorkersConfig = field(default_factory=WorkersConfig)
    reload: ReloadConfig = field(default_factory=ReloadConfig)
    #: Why HTTP/3 is off by default (for the start-up log); None when it is on or turned off.
    http3_note: str | None = field(default=None, init=False, repr=False)
    #: Why a self-signed certificate was made without being asked for (HTTP/3 alone
    #: without one); the server warns with it.  None otherwise.
    selfcert_note: str | None = field(default=None, init=False, repr=False)

    def __post_init__(self) -> None:
        if self.app is None or (not isinstance(self.app, str) and not callable(self.app)):
            raise ValueError("app must be an ASGI application or an import string 'module:attr'")
        if self.http.http_version is HttpProtocolVersion.HTTP_3 and not self.tls.enabled:
            # QUIC is always encrypted.  asgiri 0.3 accepted HTTP/3 alone without a
            # certificate (and then served nothing); it is served with one made here.
            self.tls.selfcert = True
            self.selfcert_note = "HTTP/3 needs TLS and no certificate was given"
        if self.tls.selfcert and self.tls.cert_data is None:
            self.tls.cert_data, self.tls.key_data = _self_signed_cert(self.bind.host)
        if self.bind.port is None:
            self.bind.port = 8443 if self.tls.enabled else 8000
        if self.reload.reload and self.workers.count is not None and self.workers.count > 1:
            raise ValueError(
                "reload cannot be combined with workers > 1: the reloader runs one server "
                "process (drop --workers for development, or --reload for production)"
            )
        http = self.http
        if http.http_version is HttpProtocolVersion.HTTP_3:
            if http.enable_http3 is False:
                raise ValueError(
                    "http_version 3 serves only HTTP/3; it cannot be combined with --no-http3"
                )
            if not (self.tls.certfile or self.tls.cert_data):
                raise ValueError(
                    "http_version 3 needs the certificate itself, as QUIC cannot use a ready "
                    "ssl_context: give certfile/keyfile or cert_data/key_data"
                )
        if http.enable_http3 is None:
            http.enable_http3 = (
                self.tls.enabled and http.http_version is HttpProtocolVersion.AUTO
            ) or http.http_version is HttpProtocolVersion.HTTP_3
            if http.http_version is HttpProtocolVersion.AUTO and not self.tls.enabled:
                self.http3_note = "HTTP/3 is off: it needs TLS (--ssl-certfile/--ssl-keyfile)"
        _check_listeners(self)

    @classmethod
    def from_options(cls, app: Any, **options: Any) -> Config:
        """Build a config from flat option names; unknown names are an error."""
        groups: dict[str, dict[str, Any]] = {g: {} for g in _GROUPS}
        index = _option_index()
        for name, value in options.items():
            if name not in index:
                from .spellings import did_you_mean

                raise ValueError(f"unknown option {name!r}{did_you_mean(name, index)}")
            groups[index[name].group_key][name] = value
        built = {_attr_for_group(g): _GROUPS[g](**kw) for g, kw in groups.items()}
        return cls(app=app, **built)

    @property
    def port(self) -> int:
        assert self.bind.port is not None  # resolved in __post_init__
        return self.bind.port


def _check_listeners(config: Config) -> None:
    """What ``binds`` schemes, ``redirect_http`` and ``quic_bind`` need of the rest."""
    schemes = [bind_scheme(address)[0] for address in config.bind.binds]
    tls = config.tls.enabled
    if "https" in schemes and not tls:
        raise ValueError(
            "binds has an https:// entry but no certificate: give --certfile and --keyfile"
        )
    if config.bind.redirect_http:
        if "http" not in schemes:
            raise ValueError(
                "redirect_http needs a cleartext listener to answer on: add --bind http://HOST:PORT"
            )
        if not tls:
            raise ValueError(
                "redirect_http needs an https listener to redirect to: add --bind "
                "https://HOST:PORT and a certificate"
            )
    if config.quic.quic_bind:
        if not (config.tls.certfile or config.tls.cert_data):
            raise ValueError(
                "quic_bind needs a TLS certificate, as QUIC is always encrypted: "
                "give --ssl-certfile and --ssl-keyfile"
            )
        if config.http.enable_http3 is False:
            raise ValueError("quic_bind cannot be combined with --no-http3")
        if config.http.http3_port is not None:
            raise ValueError(
                "quic_bind and http3_port cannot be combined: give the port in quic_bind"
            )


def _attr_for_group(group: str) -> str:
    return "app_options" if group == "app" else group


@dataclass(frozen=True)
class OptionSpec:
    """One leaf option, as the CLI generator sees it."""

    name: str
    group_key: str
    group_title: str
    default: Any
    help: str
    flags: tuple[str, ...] | None
    choices: Mapping[str, Any] | None
    metavar: str | None
    kind: str
    type: Any


def iter_options() -> Iterator[OptionSpec]:
    """Every leaf option of the tree, in declaration order."""
    for key, cls in _GROUPS.items():
        title = (cls.__doc__ or key).strip().splitlines()[0]
        hints = _type_hints(cls)
        for f in dataclasses.fields(cls):
            meta = f.metadata
            factory: Any = f.default_factory
            default = factory() if f.default is dataclasses.MISSING else f.default
            yield OptionSpec(
                name=f.name,
                group_key=key,
                group_title=title,
                default=default,
                help=meta.get("help", ""),
                flags=meta.get("flags", ()),
                choices=meta.get("choices"),
                metavar=meta.get("metavar"),
                kind=meta.get("kind", "value"),
                type=hints[f.name],
            )


_INDEX: dict[str, OptionSpec] | None = None


def _option_index() -> dict[str, OptionSpec]:
    global _INDEX
    if _INDEX is None:
        _INDEX = {o.name: o for o in iter_options()}
    return _INDEX


def _type_hints(cls: type[Any]) -> dict[str, Any]:
    import typing

    return typing.get_type_hints(cls)


def _self_signed_cert(host: str) -> tuple[bytes, bytes]:
    """An in-memory certificate for ``selfcert``, made once per configuration.

    Made here rather than when the server starts so that everything reading
    ``tls.cert_data`` (the TCP listener, QUIC) sees the same certificate, and a
    reloaded child process keeps the pin the browser was told to trust.  An EC
    key keeps start-up quick; the bind address is added when it is a specific IP.
    """
    import ipaddress

    from .ssl_utils import generate_self_signed_cert

    ips: list[str] = []
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        pass
    else:
        if not address.is_unspecified:
            ips.append(str(address))
    return generate_self_signed_cert("localhost", ip_addresses=ips, key_type="ec")


# ----------------------------------------------------------------- validators


def _coerce_choice(name: str, value: Any, choices: Mapping[str, Any], enum_cls: type[Any]) -> Any:
    if isinstance(value, enum_cls):
        return value
    if isinstance(value, str) and value.lower() in choices:
        return choices[value.lower()]
    if isinstance(value, str):
        with contextlib.suppress(ValueError):
            return enum_cls(value)
    allowed = ", ".join(sorted(choices))
    raise ValueError(f"{name} must be one of {allowed}, got {value!r}")


def _int_range(name: str, value: Any, low: int, high: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"{name} must be an integer, got {value!r}")
    if not low <= value <= high:
        raise ValueError(f"{name} must be between {low} and {high}, got {value}")


def _positive(name: str, value: Any, *, allow_zero: bool = False) -> None:
    """Every option in seconds comes through here, from the CLI, a file or ``Server()``.

    ``nan`` and ``inf`` parse as floats everywhere (argparse, TOML, Python) but
    are no duration: NaN fails every comparison, so it slipped through the
    range check and broke timers at run time.  No option gives infinity a
    meaning ("never" is spelled otherwise where it exists, as
    ``ws_ping_interval=0``), so both are refused.
    """
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"{name} must be a number of seconds, got {value!r}")
    if not math.isfinite(value):
        raise ValueError(f"{name} must be a finite number of seconds, got {value}")
    if value < 0 or (value == 0 and not allow_zero):
        raise ValueError(f"{name} must be {'>= 0' if allow_zero else '> 0'}, got {value}")
