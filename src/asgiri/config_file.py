"""``--config FILE``: options from a TOML file, checked against the option table.

A file holds the same options as the command line, under their Python names
(``timeout_keep_alive = 10``; the dashed CLI spelling ``timeout-keep-alive``
is accepted too).  ``pyproject.toml`` is read from its ``[tool.asgiri]``
table, any other file from its top level.  The file is only read when named:
a server that changes behaviour because of a file lying in the working
directory is hard to debug, so nothing is picked up implicitly.

Nothing here builds a configuration of its own: the file becomes the same
flat ``name=value`` options ``Server(**options)`` takes, the command line is
laid over them, and :meth:`Config.from_options` validates the result.  This
module only checks what TOML can get wrong on its own (an unknown key, a
value of the wrong type) so that such errors name the key and the file.
"""

from __future__ import annotations

import enum
import functools
import json
import math
import os
import sys
from typing import Any

from .config import COMPAT_FLAGS, Config, OptionSpec, iter_options
from .spellings import did_you_mean, normalize_values

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on Python 3.10 only
    import tomli as tomllib

__all__ = ["ConfigFileError", "load_config_file"]

#: Keys a file may hold besides the options: the app itself.
_EXTRA_KEYS = ("app",)


class ConfigFileError(ValueError):
    """A configuration file that cannot be used; the message is one line."""


def load_config_file(
    path: str | os.PathLike[str], *, notices: list[str] | None = None
) -> dict[str, Any]:
    """The options of ``path`` as ``Server`` keyword arguments (plus ``app``).

    uvicorn's implementation names (``http_version = "h11"``, ``ws = "websockets"``)
    are replaced, and a line saying so is appended to ``notices``.
    """
    name = os.fspath(path)
    try:
        with open(name, "rb") as fh:
            data = tomllib.load(fh)
    except OSError as exc:
        raise ConfigFileError(f"cannot read config file {name!r}: {exc.strerror}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigFileError(f"config file {name!r} is not valid TOML: {exc}") from None
    if os.path.basename(name) == "pyproject.toml":
        table = data.get("tool", {}).get("asgiri")
        if table is None:
            raise ConfigFileError(f"{name}: no [tool.asgiri] table")
        where = f"{name} [tool.asgiri]"
    else:
        table, where = data, name
    if not isinstance(table, dict):
        raise ConfigFileError(f"{where}: [tool.asgiri] must be a table")
    specs = {o.name: o for o in iter_options() if _settable(o)}
    options: dict[str, Any] = {}
    for key, value in table.items():
        option = key.replace("-", "_")
        if option in _EXTRA_KEYS:
            if not isinstance(value, str):
                raise ConfigFileError(f"{where}: 'app' must be a string 'module:attribute'")
            options[option] = value
            continue
        spec = specs.get(option)
        if spec is None:
            hint = did_you_mean(key, [*specs, *_EXTRA_KEYS], _flag_aliases())
            raise ConfigFileError(f"{where}: unknown option {key!r}{hint}")
        if option in options:
            raise ConfigFileError(f"{where}: option {key!r} is given twice")
        replaced = normalize_values({option: value}, functools.partial(_label, f"{where}: {key} ="))
        if replaced:
            if notices is not None:
                notices.extend(replaced)
            if option == "http_version":
                continue  # asgiri's choice of versions stays
            value = "auto"
        options[option] = _check_type(where, key, spec, value)
    # Ranges and combinations are the config's to judge; checked here as well
    # so that a bad value is blamed on the file, not on the command line.
    try:
        Config.from_options("config:file", **{k: v for k, v in options.items() if k != "app"})
    except ValueError as exc:
        raise ConfigFileError(f"{where}: {exc}") from None
    return options


def _label(text: str, _: str) -> str:
    return text


def _flag_aliases() -> dict[str, str]:
    """Command-line spellings (``bind`` of ``--bind``) -> option names, for "did you mean"."""
    aliases: dict[str, str] = {}
    for spec in iter_options():
        if spec.flags is None:
            continue
        for flag in spec.cli_flags:
            if flag.startswith("--") and spec.kind != "store_false":
                aliases.setdefault(flag[2:].replace("-", "_"), spec.name)
    return aliases


def _settable(spec: OptionSpec) -> bool:
    """Options a file can hold: the CLI's (Python objects such as ssl_context are not)."""
    return spec.flags is not None or spec.name in COMPAT_FLAGS


def _check_type(where: str, key: str, spec: OptionSpec, value: Any) -> Any:
    if spec.kind in ("bool", "store_true", "store_false"):
        if not isinstance(value, bool):
            raise ConfigFileError(f"{where}: {key!r} must be true or false, got {value!r}")
        return value
    if spec.kind == "append":
        if isinstance(value, str):
            value = [value]
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise ConfigFileError(f"{where}: {key!r} must be a list of strings, got {value!r}")
        return value
    if spec.choices:
        allowed = list(spec.choices)
        text = value.value if isinstance(value, enum.Enum) else value
        if isinstance(text, int | float) and not isinstance(text, bool):
            text = str(text)  # http_version = 2
        if not isinstance(text, str) or text.lower() not in allowed:
            raise ConfigFileError(
                f"{where}: {key!r} must be one of {', '.join(allowed)}, got {value!r}"
            )
        return text.lower()
    base = spec.value_type
    if base is bool:
        if not isinstance(value, bool):
            raise ConfigFileError(f"{where}: {key!r} must be true or false, got {value!r}")
    elif base is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigFileError(f"{where}: {key!r} must be an integer, got {value!r}")
    elif base is float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ConfigFileError(f"{where}: {key!r} must be a number, got {value!r}")
        value = float(value)
    elif base is str and not isinstance(value, str):
        raise ConfigFileError(f"{where}: {key!r} must be a string, got {value!r}")
    return value


# ---------------------------------------------------------------- writing a file

#: Options whose value is a secret: named in the output, never shown.
_SECRETS = frozenset({"keyfile_password"})


def render_config(config: Config) -> str:
    """The effective configuration as a TOML file ``--config`` reads back.

    Every option a file can hold is written with the value in effect, defaults
    and values worked out at start-up included (the port, ``enable_http3``,
    ``forwarded_allow_ips``, ``workers = "auto"`` as a number), grouped under
    the titles ``--help`` uses.  Options without a value are written as
    comments, and so are secrets (``keyfile_password``), whose value is left out.
    """
    lines = ["# asgiri configuration (asgiri --print-config); read it with --config FILE", ""]
    if isinstance(config.app, str):
        lines.append(f"app = {_toml_value(config.app)}")
    else:
        lines.append('# app = "module:attribute"  (an app object given from Python)')
    title = None
    for spec in iter_options():
        if not _settable(spec):
            continue
        if spec.group_title != title:
            title = spec.group_title
            lines += ["", f"# {title.rstrip('.')}"]
        value = getattr(getattr(config, _group_attribute(spec.group_key)), spec.name)
        if spec.name == "forwarded_allow_ips":
            value = config.proxy.allow_ips(os.environ)  # as the server will see it
        if spec.name in _SECRETS:
            if value:
                lines.append(f"# {spec.name} = ...  (set; not shown)")
            else:
                lines.append(f"# {spec.name} =  (not set)")
            continue
        if value is None:
            lines.append(f"# {spec.name} =  (not set)")
            continue
        if spec.name == "enable_http3" and config.http3_note is not None:
            # Off only for want of TLS: written out, it would stay off once TLS is added.
            lines.append(f"# {spec.name} =  (auto: {config.http3_note})")
            continue
        if spec.name == "uds_permissions":
            lines.append(f"{spec.name} = 0o{value:03o}")  # a file mode reads best in octal
            continue
        lines.append(f"{spec.name} = {_toml_value(_choice_key(spec, value))}")
    return "\n".join(lines) + "\n"


def _group_attribute(group_key: str) -> str:
    return "app_options" if group_key == "app" else group_key


def _choice_key(spec: OptionSpec, value: Any) -> Any:
    """An enum back to the word the option takes (``LifespanPolicy.ENABLED`` -> ``"on"``)."""
    if spec.choices and isinstance(value, enum.Enum):
        for key, choice in spec.choices.items():
            if choice is value:
                return key
        return value.value
    return value


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        return repr(value)
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str):
        # A TOML basic string: JSON's escapes are TOML's (\\uXXXX included).
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_toml_value(item) for item in value) + "]"
    if isinstance(value, bytes):
        return _toml_value(value.decode("latin-1"))
    raise TypeError(f"cannot write {value!r} as TOML")
