"""The one configuration tree of asgiri.

The command line, a ``--config`` file, ``ASGIRI_*`` variables and
``Server(**options)`` all fill the same :class:`Config`.  Every leaf option
is a dataclass field whose metadata carries its command-line spelling and
help text, so the CLI is generated from these declarations and can never
drift from the API.  Validation happens once, on construction, and every
error names the option the way the user spelled it (``--port`` on the CLI,
``port`` in Python).  Construction is pure; what depends on the process
(the environment, a certificate to make) is resolved at start-up.

- :mod:`.options`: how an option is declared (:func:`~.options.option`, :class:`OptionSpec`);
- :mod:`.choices`: the enumerated values options take, with their spellings;
- :mod:`.groups`: the option groups, each validating its own fields;
- :mod:`.checks`: the checks and parsers the groups share;
- :mod:`.compat`: asgiri 0.3's command-line spellings;
- :mod:`.tree`: :class:`Config` itself, built from flat option names.
"""

from __future__ import annotations

from .checks import bind_scheme, parse_bind, parse_header, parse_host_port
from .choices import HttpProtocolVersion, LifespanPolicy, LoopChoice
from .compat import COMPAT_FLAGS, CompatFlag
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
from .tree import Config, iter_options

__all__ = [
    "COMPAT_FLAGS",
    "AccessLogConfig",
    "AppConfig",
    "BindConfig",
    "CompatFlag",
    "Config",
    "HTTP2Config",
    "HTTPConfig",
    "HttpProtocolVersion",
    "InterfaceConfig",
    "LifespanPolicy",
    "LimitsConfig",
    "LoggingConfig",
    "LoopChoice",
    "MetricsConfig",
    "OptionSpec",
    "ProxyConfig",
    "QUICConfig",
    "ReloadConfig",
    "RuntimeConfig",
    "TLSConfig",
    "TimeoutsConfig",
    "WebSocketConfig",
    "WebTransportConfig",
    "WorkersConfig",
    "bind_scheme",
    "iter_options",
    "parse_bind",
    "parse_header",
    "parse_host_port",
]
