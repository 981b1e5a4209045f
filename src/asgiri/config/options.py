"""How an option is declared: a dataclass field whose metadata describes its command line.

Every leaf option of the tree is declared once, with :func:`option`, in its
group (:mod:`.groups`); :class:`OptionSpec` is what the command-line parser
(``cli.py``), the config file reader and the environment reader see of it,
so a flag, a TOML key and an ``ASGIRI_*`` variable can never disagree.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

__all__ = ["OptionSpec", "option"]


def option(
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

    @property
    def cli_flags(self) -> list[str]:
        """The command-line spellings of this option, its primary ``--name`` first."""
        primary = "--" + self.name.replace("_", "-")
        extra = list(self.flags or ())
        if self.kind == "store_false":
            return extra or ["--no-" + self.name.replace("_", "-")]
        return [primary, *[f for f in extra if f != primary]]

    @property
    def value_type(self) -> Any:
        """The type of a given value: ``int | None`` -> ``int``; ``object`` when several fit."""
        hint = self.type
        if isinstance(hint, types.UnionType) or typing.get_origin(hint) is typing.Union:
            args = [a for a in typing.get_args(hint) if a is not type(None)]
            return args[0] if len(args) == 1 else object
        return hint
