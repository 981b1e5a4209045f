"""Turning ``module:attr`` into an ASGI 3 callable.

Failures are :class:`~asgiri.errors.AppLoadError` with a one-line message,
so the CLI can print it without a traceback.  ASGI 2 (double-callable) and
WSGI apps are wrapped into ASGI 3.
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


def load_app(
    app: Any,
    *,
    factory: bool = False,
    app_dir: str = ".",
    interface: str = "auto",
    loop: Any = None,
    wsgi_max_workers: int = 10,
) -> ASGIApp:
    """Import (if needed), call the factory (if asked) and adapt ASGI 2 and WSGI apps.

    ``interface="auto"`` looks at the callable: a coroutine function (or an
    object whose ``__call__`` is one) is ASGI 3; a class, or a plain callable
    taking one argument, is ASGI 2 (``app(scope)`` returns the coroutine
    callable); a plain callable taking two, ``(environ, start_response)``, is
    WSGI (Flask, Django's ``WSGIHandler``).  WSGI needs the server's ``loop``.
    """
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
    if interface == "auto":
        interface = detect_interface(app)
    if interface == "wsgi":
        if loop is None:
            raise AppLoadError("a WSGI app needs the server's event loop")
        from .wsgi import WSGIAdapter

        return WSGIAdapter(app, loop, wsgi_max_workers)
    if interface == "asgi2":
        return _asgi2_adapter(app)
    return app  # type: ignore[no-any-return]


def detect_interface(app: Any) -> str:
    """The interface of ``app``, asgi3, asgi2 or wsgi, told from its shape (see load_app).

    Arguments with defaults do not count.  A plain function requiring three
    arguments is ASGI 3 even when it is not a coroutine function (a decorated
    app returning an awaitable).
    """
    if inspect.isclass(app):
        return "asgi3" if hasattr(app, "__await__") else "asgi2"
    if inspect.iscoroutinefunction(app):  # also sees through functools.partial
        return "asgi3"
    call: Any
    if inspect.isfunction(app) or inspect.ismethod(app):
        call = app
    else:
        call = getattr(app, "__call__", None)  # noqa: B004 - want the bound method
        if call is None:
            return "asgi3"
    if inspect.iscoroutinefunction(call):
        return "asgi3"
    count = _positional_count(app)  # signature() sees through partials and __call__
    if count == 2:
        return "wsgi"
    return "asgi3" if count == 3 else "asgi2"


def _positional_count(func: Any) -> int | None:
    """How many positional arguments ``func`` requires (None: cannot tell, or *args)."""
    try:
        params = inspect.signature(func).parameters.values()
    except (TypeError, ValueError):
        return None
    count = 0
    for param in params:
        if param.kind is inspect.Parameter.VAR_POSITIONAL:
            return None
        if param.default is inspect.Parameter.empty and param.kind in (
            inspect.Parameter.POSITIONAL_ONLY,
            inspect.Parameter.POSITIONAL_OR_KEYWORD,
        ):
            count += 1
    return count


def _asgi2_adapter(app: Any) -> ASGIApp:
    async def asgi3(scope: Scope, receive: Receive, send: Send) -> None:
        instance = app(scope)
        await instance(receive, send)

    return asgi3
