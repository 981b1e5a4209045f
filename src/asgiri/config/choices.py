"""The enumerated values options take, with every spelling the command line accepts.

``--http 2``, ``http_version="http/2"`` and ``HttpProtocolVersion.HTTP_2``
are one value; the maps here turn each accepted spelling into the enum
member, and ``--help`` lists their keys.
"""

from __future__ import annotations

import enum

__all__ = [
    "HTTP_CHOICES",
    "INTERFACES",
    "LIFESPAN_CHOICES",
    "LOG_LEVELS",
    "LOOP_CHOICES",
    "HttpProtocolVersion",
    "LifespanPolicy",
    "LoopChoice",
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
            return HTTP_CHOICES.get(value.lower())
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


_HTTP_OPTION = {
    HttpProtocolVersion.AUTO: "auto",
    HttpProtocolVersion.HTTP_1_1: "1.1",
    HttpProtocolVersion.HTTP_2: "2",
    HttpProtocolVersion.HTTP_3: "3",
}
#: ``--http`` takes its own spellings first (what ``--help`` shows), then the values.
HTTP_CHOICES = {
    **{option: version for version, option in _HTTP_OPTION.items()},
    **{version.value: version for version in HttpProtocolVersion},
}
LIFESPAN_CHOICES = {
    "auto": LifespanPolicy.AUTO,
    "on": LifespanPolicy.ENABLED,
    "off": LifespanPolicy.DISABLED,
    "enabled": LifespanPolicy.ENABLED,
    "disabled": LifespanPolicy.DISABLED,
}
LOOP_CHOICES = {v.value: v for v in LoopChoice}
LOG_LEVELS = ("critical", "error", "warning", "info", "debug", "trace")
INTERFACES = ("auto", "asgi3", "asgi2", "wsgi")
