"""The tree: :class:`Config`, made of the option groups, built from flat option names.

``Config.from_options`` takes the names the CLI (``--timeout-keep-alive``),
a config file, ``ASGIRI_*`` variables and ``Server(**options)`` share, puts
each in its group and validates the combinations no single group can judge.
:func:`iter_options` walks every leaf option, which is how the command line
is generated from these declarations.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from .checks import bind_scheme
from .choices import HttpProtocolVersion
from .groups import (
    AccessLogConfig,
    AppConfig,
    BindConfig,
    HTTP2Config,
    HTTPConfig,
    InterfaceConfig,
    LimitsConfig,
    LoggingConfig,
    MetricsConfig,
    ProxyConfig,
    QUICConfig,
    ReloadConfig,
    RuntimeConfig,
    TimeoutsConfig,
    TLSConfig,
    WebSocketConfig,
    WebTransportConfig,
    WorkersConfig,
)
from .options import OptionSpec

__all__ = ["GROUPS", "Config", "iter_options"]


GROUPS: dict[str, type[Any]] = {
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
            # certificate (and then served nothing); it is served with one made at start-up.
            self.tls.selfcert = True
            self.selfcert_note = "HTTP/3 needs TLS and no certificate was given"
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
            if not (self.tls.certfile or self.tls.cert_data or self.tls.selfcert):
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
        groups: dict[str, dict[str, Any]] = {g: {} for g in GROUPS}
        index = _option_index()
        for name, value in options.items():
            if name not in index:
                from ..spellings import did_you_mean

                raise ValueError(f"unknown option {name!r}{did_you_mean(name, index)}")
            groups[index[name].group_key][name] = value
        built = {_attr_for_group(g): GROUPS[g](**kw) for g, kw in groups.items()}
        return cls(app=app, **built)

    def make_certificate(self) -> None:
        """``selfcert``: make the certificate now, as the server starts (once).

        Construction stays pure: a configuration built only to check options
        (a config file, ``--print-config``) makes nothing.  The server calls
        this as it starts, in the process the user started, so the children
        of a reloader and the workers, which receive the configuration with
        the certificate in it, serve the same one, and a browser told its pin
        keeps trusting it across restarts.
        """
        tls = self.tls
        if tls.selfcert and tls.cert_data is None:
            tls.cert_data, tls.key_data = _self_signed_cert(self.bind.host)

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
        if not (config.tls.certfile or config.tls.cert_data or config.tls.selfcert):
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


def iter_options() -> Iterator[OptionSpec]:
    """Every leaf option of the tree, in declaration order."""
    for key, cls in GROUPS.items():
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
    """An in-memory certificate for ``selfcert`` (see :meth:`Config.make_certificate`).

    An EC key keeps start-up quick; the bind address is added when it is a specific IP.
    """
    import ipaddress

    from ..ssl_utils import generate_self_signed_cert

    ips: list[str] = []
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        pass
    else:
        if not address.is_unspecified:
            ips.append(str(address))
    return generate_self_signed_cert("localhost", ip_addresses=ips, key_type="ec")
