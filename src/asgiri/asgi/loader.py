"""Turning ``module:attr`` into an ASGI 3 callable.

Failures are :class:`~asgiri.errors.AppLoadError` with a one-line message,
so the CLI can print it without a traceback.  ASGI 2 (double-callable) apps
are wrapped into ASGI 3.
"""

from __future__ import annotations

import importlib
import inspect
import os
import sys
from typing import Any

from ..errors import AppLoadError
from .types import ASGIApp, Receive, Scope, Send


def import_from_string(target: str) -> Any:
    module_name, _, attrs = target.partition(":")
    if not module_name or not attrs:
        raise AppLoadError(f'app must be given as "module:attribute", got {target!r}')
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        # Only the module itself (or a parent package) missing means "no such
        # module"; a missing dependency is an error inside the app's import.
        if exc.name and (module_name == exc.name or module_name.startswith(exc.name + ".")):
            raise AppLoadError(f"could not import module {module_name!r}") from exc
        raise AppLoadError(f"error while importing {module_name!r}: {_one_line(exc)}") from exc
    except Exception as exc:
        raise AppLoadError(f"error while importing {module_name!r}: {_one_line(exc)}") from exc
    obj: Any = module
    for attr in attrs.split("."):
        try:
            obj = getattr(obj, attr)
        except AttributeError:
            raise AppLoadError(f"attribute {attrs!r} not found in module {module_name!r}") from None
    return obj


def _one_line(exc: BaseException) -> str:
    """``SyntaxError: invalid syntax (app.py, line 3)``: readable, never multi-line."""
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__


def load_app(app: Any, *, factory: bool = False, app_dir: str = ".") -> ASGIApp:
    """Import (if needed), call the factory (if asked) and adapt ASGI 2 apps."""
    if isinstance(app, str):
        path = os.path.abspath(app_dir)
        if path not in sys.path:
            sys.path.insert(0, path)
        app = import_from_string(app)
    if factory:
        try:
            app = app()
        except Exception as exc:
            raise AppLoadError(f"error calling the app factory: {exc!r}") from exc
    if not callable(app):
        raise AppLoadError(f"the app {app!r} is not callable")
    if _is_asgi2(app):
        return _asgi2_adapter(app)
    return app  # type: ignore[no-any-return]


def _is_asgi2(app: Any) -> bool:
    if inspect.isclass(app):
        return not hasattr(app, "__await__")
    if inspect.isfunction(app) or inspect.ismethod(app):
        return not inspect.iscoroutinefunction(app)
    call = getattr(app, "__call__", None)  # noqa: B004 - want the bound method
    return call is not None and not inspect.iscoroutinefunction(call)


def _asgi2_adapter(app: Any) -> ASGIApp:
    async def asgi3(scope: Scope, receive: Receive, send: Send) -> None:
        instance = app(scope)
        await instance(receive, send)

    return asgi3
