"""Errors that stop a server from starting, each with the exit code the CLI uses.

The CLI prints ``str(error)`` as one line and exits with ``exit_code``; the
Python API lets them propagate so that callers can catch them.
"""

from __future__ import annotations


class StartupError(Exception):
    """The server could not start; the message is meant for the user as is."""

    exit_code = 1


class AppLoadError(StartupError):
    """The application could not be imported or is not an ASGI callable."""


class BindError(StartupError):
    """A listening socket could not be opened (port in use, bad address...)."""


class LifespanStartupError(StartupError):
    """The application's lifespan startup failed or timed out."""

    exit_code = 3
