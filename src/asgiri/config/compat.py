"""asgiri 0.3's command-line spellings, each an alias of one option.

Kept apart from the option declarations: they are a compatibility layer,
shown in a ``--help`` group of their own, and never the spelling new
documentation uses.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

__all__ = ["COMPAT_FLAGS", "CompatFlag"]


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


def milliseconds(value: str) -> float:
    """``--reload-delay-ms 200`` -> 0.2 seconds (the name shows in argparse errors)."""
    return int(value) / 1000


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
            convert=milliseconds,
            help="Same as --reload-delay, in milliseconds.",
        ),
    ),
}
