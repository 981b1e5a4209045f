"""Options from ``ASGIRI_*`` environment variables, and ``--env-file``.

Containers and platforms configure processes through their environment, so
every option the command line has can also be given as ``ASGIRI_<NAME>``:
the option's Python name in upper case (``ASGIRI_TIMEOUT_KEEP_ALIVE=10``),
or any of its long flags (``ASGIRI_BIND``, ``ASGIRI_SSL_CERTFILE``), plus
``ASGIRI_APP`` and ``ASGIRI_CONFIG``.  Values are text and are read as the
option's type: numbers, ``true``/``false`` (also 1/0, yes/no, on/off) for
on/off options, and for repeatable options a whitespace-separated list or a
JSON array (``ASGIRI_HEADER='["x-a: 1", "x-b: 2"]'`` when items hold spaces).

The command line decides the order (see :func:`asgiri.cli.main`): command
line over environment over ``--config`` file over defaults.  An ``ASGIRI_``
variable that names no option is reported in one line (with the option it
is closest to), so that a typo does not leave a production setting at its
default without a word; it is not an error, as apps and test suites use the
prefix for variables of their own.

``--env-file`` names a dotenv file whose variables are set for the app (and
for this process, so its ``ASGIRI_*`` lines configure the server too);
variables already in the environment win over the file's.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping, MutableMapping
from typing import Any

from .config import OptionSpec, iter_options
from .spellings import did_you_mean

__all__ = [
    "PREFIX",
    "EnvironmentConfigError",
    "apply_env_file",
    "environment_names",
    "options_from_environ",
    "read_env_file",
]

PREFIX = "ASGIRI_"
#: Variables that are not options.
_EXTRA = {"ASGIRI_APP": "app", "ASGIRI_CONFIG": "config"}
_TRUE = frozenset(("true", "1", "yes", "on"))
_FALSE = frozenset(("false", "0", "no", "off"))


class EnvironmentConfigError(ValueError):
    """An ``ASGIRI_*`` variable or an env file that cannot be used; one line."""


def environment_names() -> dict[str, tuple[OptionSpec, bool]]:
    """``ASGIRI_NAME`` -> (option, negated) for every option the command line has.

    ``negated`` marks a ``--no-x`` flag spelled as a variable (``ASGIRI_NO_HTTP3=true``
    turns HTTP/3 off).
    """
    names: dict[str, tuple[OptionSpec, bool]] = {}
    for spec in iter_options():
        if spec.flags is None:
            continue
        names[PREFIX + spec.name.upper()] = (spec, False)
        for flag in spec.cli_flags:
            if not flag.startswith("--"):
                continue  # short flags (-b) make no variable names
            negated = spec.kind == "store_false"
            names.setdefault(PREFIX + flag[2:].replace("-", "_").upper(), (spec, negated))
    return names


def options_from_environ(
    environ: Mapping[str, str], unknown: list[str] | None = None
) -> dict[str, Any]:
    """The options ``ASGIRI_*`` variables set, as ``Server`` keywords (plus app, config).

    A variable that is no option is skipped; a line saying so is added to ``unknown``.
    """
    table = environment_names()
    options: dict[str, Any] = {}
    given_by: dict[str, str] = {}
    for var in sorted(environ):
        if not var.startswith(PREFIX):
            continue
        text = environ[var]
        if var in _EXTRA:
            options[_EXTRA[var]] = text
            continue
        entry = table.get(var)
        if entry is None:
            aliases = {k[len(PREFIX) :].lower(): v[0].name for k, v in table.items()}
            hint = did_you_mean(var[len(PREFIX) :], aliases.values(), aliases)
            if hint:
                target = hint.split("'")[1]
                hint = f" (did you mean {PREFIX}{target.upper()}?)"
            if unknown is not None:
                unknown.append(f"{var} is not an asgiri option; ignored{hint}")
            continue
        spec, negated = entry
        if spec.name in given_by:
            raise EnvironmentConfigError(
                f"{given_by[spec.name]} and {var} both set option {spec.name!r}; keep one"
            )
        given_by[spec.name] = var
        options[spec.name] = _convert(var, spec, text, negated)
    return options


def _convert(var: str, spec: OptionSpec, text: str, negated: bool) -> Any:
    value = text.strip()
    if spec.kind in ("bool", "store_true", "store_false"):
        word = value.lower()
        if word not in _TRUE | _FALSE:
            raise EnvironmentConfigError(
                f"{var} must be true or false (or 1/0, yes/no, on/off), got {text!r}"
            )
        on = word in _TRUE
        return (not on) if negated else on
    if spec.kind == "append":
        if value.startswith("["):
            try:
                items = json.loads(value)
            except ValueError as exc:
                raise EnvironmentConfigError(f"{var} is not a JSON array: {exc}") from None
            if not isinstance(items, list) or not all(isinstance(i, str) for i in items):
                raise EnvironmentConfigError(f"{var} must be a JSON array of strings")
            return items
        return value.split()
    if spec.choices:
        return value
    base = spec.value_type
    if base is int:
        try:
            return int(value)
        except ValueError:
            raise EnvironmentConfigError(f"{var} must be an integer, got {text!r}") from None
    if base is float:
        try:
            return float(value)
        except ValueError:
            raise EnvironmentConfigError(f"{var} must be a number, got {text!r}") from None
    return text


# ---------------------------------------------------------------- env files

_LINE = re.compile(r"^\s*(?:export\s+)?([A-Za-z_][A-Za-z0-9_]*)\s*=\s*(.*?)\s*$")
_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", '"': '"', "\\": "\\", "$": "$"}


def read_env_file(path: str | os.PathLike[str]) -> dict[str, str]:
    """The variables of a dotenv file: ``KEY=VALUE`` lines, ``export`` allowed.

    Values may be bare (a `` #`` starts a comment), in single quotes (taken
    literally) or in double quotes (``\\n``, ``\\t``, ``\\"`` and ``\\\\``
    escapes; may span lines).  Blank lines and ``#`` comments are skipped;
    any other line is an error naming the file and the line number.
    """
    name = os.fspath(path)
    try:
        with open(name, encoding="utf-8") as fh:
            text = fh.read()
    except OSError as exc:
        raise EnvironmentConfigError(f"cannot read env file {name!r}: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise EnvironmentConfigError(f"env file {name!r} is not UTF-8 text") from None
    lines = text.splitlines()
    variables: dict[str, str] = {}
    i = 0
    while i < len(lines):
        number, line = i + 1, lines[i]
        i += 1
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        match = _LINE.match(line)
        if match is None:
            raise EnvironmentConfigError(f"{name}:{number}: expected KEY=VALUE, got {line!r}")
        key, raw = match.groups()
        if raw.startswith('"'):
            body = raw[1:]
            while not _closes(body):
                if i >= len(lines):
                    raise EnvironmentConfigError(f"{name}:{number}: unterminated double quote")
                body += "\n" + lines[i]
                i += 1
            end = _closing_quote(body)
            rest = body[end + 1 :].strip()
            if rest and not rest.startswith("#"):
                raise EnvironmentConfigError(f"{name}:{number}: text after the closing quote")
            variables[key] = re.sub(
                r"\\(.)", lambda m: _ESCAPES.get(m.group(1), "\\" + m.group(1)), body[:end]
            )
        elif raw.startswith("'"):
            end = raw.find("'", 1)
            if end < 0:
                raise EnvironmentConfigError(f"{name}:{number}: unterminated single quote")
            rest = raw[end + 1 :].strip()
            if rest and not rest.startswith("#"):
                raise EnvironmentConfigError(f"{name}:{number}: text after the closing quote")
            variables[key] = raw[1:end]
        else:
            variables[key] = re.split(r"\s+#", raw, maxsplit=1)[0].strip()
    return variables


def _closing_quote(body: str) -> int:
    escaped = False
    for index, char in enumerate(body):
        if escaped:
            escaped = False
        elif char == "\\":
            escaped = True
        elif char == '"':
            return index
    return -1


def _closes(body: str) -> bool:
    return _closing_quote(body) >= 0


def apply_env_file(
    path: str | os.PathLike[str], environ: MutableMapping[str, str] | None = None
) -> list[str]:
    """Set the file's variables that are not set yet; the names that were set."""
    target = os.environ if environ is None else environ
    added = []
    for key, value in read_env_file(path).items():
        if key not in target:
            target[key] = value
            added.append(key)
    return added
