"""The ``asgiri`` command line, generated from :mod:`asgiri.config`.

Every option comes from a config field, so the CLI and ``Server(**options)``
accept the same things with the same validation.  Options the user did not
give are left out entirely, so the dataclass defaults stay the only
defaults.
"""

from __future__ import annotations

import argparse
import enum
import os
import sys
import typing
from typing import Any

from . import __version__
from .config import COMPAT_FLAGS, iter_options
from .errors import StartupError


class _Parser(argparse.ArgumentParser):
    """Usage errors are one line naming the option, not the whole usage block."""

    def error(self, message: str) -> typing.NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see '{self.prog} --help')\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="asgiri",
        description="Serve an ASGI application over HTTP/1.1 (and newer protocols).",
        epilog="Example: asgiri myproject.main:app --host 0.0.0.0 --port 8000",
        argument_default=argparse.SUPPRESS,
    )
    parser.add_argument("app", nargs="?", metavar="APP", help="The ASGI app as 'module:attribute'.")
    parser.add_argument(
        "--version",
        action="store_true",
        help="Print the versions of asgiri, Python, the platform and the protocol libraries, "
        "and exit.",
    )
    parser.add_argument(
        "--print-config",
        action="store_true",
        help="Print the effective configuration (command line, environment and --config file "
        "together, defaults included) as TOML that --config reads, and exit.",
    )
    parser.add_argument(
        "--generate-cert",
        metavar="DIR",
        help="Write a localhost development certificate (cert.pem, key.pem) into DIR and exit; "
        "existing files are kept unless --force is given.",
    )
    parser.add_argument(
        "--force",
        action="store_true",
        help="With --generate-cert: replace cert.pem and key.pem when they exist.",
    )
    parser.add_argument(
        "-c",
        "--config",
        metavar="FILE",
        help="Read options from a TOML file (pyproject.toml: its [tool.asgiri] table); "
        "options given on the command line win.",
    )
    groups: dict[str, argparse._ArgumentGroup] = {}
    for opt in iter_options():
        if opt.flags is None:
            continue
        group = groups.get(opt.group_key)
        if group is None:
            group = groups[opt.group_key] = parser.add_argument_group(opt.group_title.rstrip("."))
        flags = opt.cli_flags
        help_text = opt.help
        if opt.kind == "store_false":
            group.add_argument(*flags, dest=opt.name, action="store_false", help=help_text)
        elif opt.kind == "store_true":
            group.add_argument(*flags, dest=opt.name, action="store_true", help=help_text)
        elif opt.kind == "append":
            group.add_argument(
                *flags, dest=opt.name, action="append", metavar=opt.metavar, help=help_text
            )
        elif opt.kind == "bool":
            default = "auto" if opt.default is None else "on" if opt.default else "off"
            group.add_argument(
                *flags,
                dest=opt.name,
                action=argparse.BooleanOptionalAction,
                help=f"{help_text} (default: {default})",
            )
        else:
            kwargs: dict[str, Any] = {"dest": opt.name}
            if opt.choices:
                kwargs["choices"] = list(opt.choices)
                default = opt.default.value if isinstance(opt.default, enum.Enum) else opt.default
                if isinstance(opt.default, enum.Enum):
                    for key, value in opt.choices.items():
                        if value is opt.default:
                            default = key
                            break
            else:
                base = opt.value_type
                if base in (int, float):
                    kwargs["type"] = base
                default = opt.default
            if opt.metavar:
                kwargs["metavar"] = opt.metavar
            if default not in (None, ""):
                help_text = f"{help_text} (default: {default})"
            group.add_argument(*flags, help=help_text, **kwargs)
    _add_compat_flags(parser)
    return parser


def _add_compat_flags(parser: argparse.ArgumentParser) -> None:
    """The asgiri 0.3 spellings, in one group of their own at the end of ``--help``."""
    group = parser.add_argument_group(
        "compatibility", "Spellings of asgiri 0.3, kept so that its command lines still work."
    )
    options = {opt.name: opt for opt in iter_options()}
    for name, spellings in COMPAT_FLAGS.items():
        opt = options[name]
        for compat in spellings:
            if compat.const is not None:
                group.add_argument(
                    compat.flag,
                    dest=opt.name,
                    action="store_const",
                    const=compat.const,
                    help=compat.help,
                )
                continue
            kwargs: dict[str, Any] = {"dest": opt.name, "help": compat.help}
            if opt.kind == "append":
                kwargs["action"] = "append"
            if compat.choices:
                kwargs["choices"] = list(compat.choices)
            if compat.metavar:
                kwargs["metavar"] = compat.metavar
            if compat.convert is not None:
                kwargs["type"] = compat.convert
            group.add_argument(compat.flag, **kwargs)


def _cli_message(message: str, sources: dict[str, str] | None = None) -> str:
    """Name options in validation errors as the user gave them (flag, variable or file)."""
    first, _, rest = message.partition(" ")
    names = {o.name for o in iter_options()}
    if first in names:
        source = (sources or {}).get(first)
        if source is not None:
            return f"{source} {rest}"
        return "--" + first.replace("_", "-") + " " + rest
    return message


def _switches() -> tuple[set[str], set[str]]:
    """Long flags of on/off options: (with a --no- form, switched on only)."""
    negatable: set[str] = set()
    switches: set[str] = set()
    for opt in iter_options():
        if opt.flags is None:
            continue
        long_flags = [f for f in opt.cli_flags if f.startswith("--")]
        if opt.kind == "bool":
            negatable.update(long_flags)
        elif opt.kind == "store_true":
            switches.update(long_flags)
    return negatable, switches


#: Libraries whose versions decide what asgiri does on the wire.
_LIBRARIES = ("httptools", "h2", "aioquic", "wsproto", "uvloop")


def version_report() -> str:
    """``--version``: asgiri, Python and platform, and the protocol libraries' versions."""
    import platform
    from importlib.metadata import PackageNotFoundError
    from importlib.metadata import version as dist_version

    libraries = []
    for name in _LIBRARIES:
        try:
            libraries.append(f"{name} {dist_version(name)}")
        except PackageNotFoundError:
            libraries.append(f"{name} not installed")
    return "\n".join(
        (
            f"asgiri {__version__}",
            f"Python {platform.python_version()} ({platform.python_implementation()}) "
            f"on {platform.platform()}",
            ", ".join(libraries),
        )
    )


def _note(message: str) -> None:
    print(f"asgiri: note: {message}", file=sys.stderr)


def main(argv: list[str] | None = None) -> int:
    from .spellings import normalize_argv, peer_flag_answer

    parser = build_parser()
    raw = list(sys.argv[1:] if argv is None else argv)
    raw, notices = normalize_argv(raw, *_switches())
    answer = peer_flag_answer(raw)
    if answer is not None:
        parser.error(answer)
    args = vars(parser.parse_args(raw))
    for notice in notices:
        _note(notice)
    if args.pop("version", False):
        print(version_report())
        return 0
    print_config = args.pop("print_config", False)
    cert_dir = args.pop("generate_cert", None)
    force = args.pop("force", False)
    if cert_dir is not None:
        from .devcert import CertificateExistsError, write_dev_cert

        try:
            cert, key = write_dev_cert(cert_dir, force=force)
        except CertificateExistsError as exc:
            print(f"Error: {exc}", file=sys.stderr)
            return 1
        except (OSError, ValueError) as exc:
            print(f"Error: could not write the development certificate: {exc}", file=sys.stderr)
            return 1
        print(f"Wrote {cert} and {key}")
        return 0
    if force:
        parser.error("--force only applies to --generate-cert")
    if args.get("app") is None:
        args.pop("app", None)
    options, sources = _gather(parser, args)
    app = options.pop("app", None)
    if print_config:
        from .config import Config
        from .config_file import render_config

        try:
            config = Config.from_options(app or "module:attribute", **options)
            text = render_config(config)
        except ValueError as exc:
            parser.error(_cli_message(str(exc), sources))
        if not app:
            text = text.replace('app = "module:attribute"', '# app = "module:attribute"', 1)
        sys.stdout.write(text)
        return 0
    if not app:
        parser.error(
            "the APP argument ('module:attribute') is required "
            "(or 'app' in the --config file, or ASGIRI_APP)"
        )
    from .server import Server

    try:
        server = Server(app, **options)
    except ValueError as exc:
        parser.error(_cli_message(str(exc), sources))
    try:
        server.run()
    except StartupError as exc:
        if server.config.logging.log_level in ("debug", "trace"):
            import traceback

            traceback.print_exc()
        print(f"Error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        return 0
    return 0


def _gather(
    parser: argparse.ArgumentParser, args: dict[str, Any]
) -> tuple[dict[str, Any], dict[str, str]]:
    """Every source laid over the next: command line > environment > config file.

    Returns the options (with ``app``) and, for the options that did not come
    from the command line, where they came from (for error messages).
    """
    from .config_file import ConfigFileError, load_config_file
    from .environment import (
        PREFIX,
        EnvironmentConfigError,
        apply_env_file,
        environment_names,
        options_from_environ,
    )
    from .spellings import normalize_values

    try:
        from_env = options_from_environ(os.environ)
    except EnvironmentConfigError as exc:
        parser.error(str(exc))
    notices: list[str] = []
    config_file = args.pop("config", None) or from_env.pop("config", None)
    from_env.pop("config", None)
    from_file: dict[str, Any] = {}
    if config_file is not None:
        try:
            from_file = load_config_file(config_file, notices=notices)
        except ConfigFileError as exc:
            parser.error(str(exc))
    env_file = args.get("env_file") or from_env.get("env_file") or from_file.get("env_file")
    if env_file:
        # Before the environment is read for good: the file may hold ASGIRI_* lines.
        try:
            apply_env_file(env_file)
        except EnvironmentConfigError as exc:
            parser.error(str(exc))
    try:
        from_env = options_from_environ(os.environ, notices)
    except EnvironmentConfigError as exc:
        parser.error(str(exc))
    from_env.pop("config", None)
    table = environment_names()

    def variable(name: str) -> str:
        given = [var for var, (spec, _) in table.items() if spec.name == name and var in os.environ]
        return given[0] if given else PREFIX + name.upper()

    notices += normalize_values(from_env, lambda name: variable(name) + "=")
    for notice in notices:
        _note(notice)
    sources: dict[str, str] = {}
    for name in from_file:
        sources[name] = f"{config_file}: {name}"
    for name in from_env:
        sources[name] = variable(name)
    for name in args:
        sources.pop(name, None)
    options = {**from_file, **from_env, **args}
    if "workers" not in options and not options.get("reload"):
        concurrency = os.environ.get("WEB_CONCURRENCY")
        if concurrency:
            # As uvicorn and gunicorn do: platforms (Heroku, Dokku...) set it per dyno
            # size.  --reload wins over it: a development server runs one process.
            options["workers"] = concurrency
            sources["workers"] = "WEB_CONCURRENCY"
    return options, sources


if __name__ == "__main__":
    raise SystemExit(main())
