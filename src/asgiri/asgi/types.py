"""Types of the ASGI contract, defined once."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Coroutine, MutableMapping
from typing import Any, Protocol, TypeVar

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]
T = TypeVar("T")


class Waiter(Protocol):
    """The part of ``asyncio.Future`` the ASGI layer uses."""

    def done(self) -> bool: ...
    def set_result(self, result: None) -> None: ...
    def cancel(self) -> bool: ...
    def __await__(self) -> Any: ...


class TimerHandle(Protocol):
    def cancel(self) -> None: ...


class Loop(Protocol):
    """The part of the event loop the ASGI layer needs, so it never imports asyncio."""

    def create_future(self) -> Any: ...
    def create_task(self, coro: Coroutine[Any, Any, Any]) -> Any: ...
    def call_soon(self, callback: Callable[..., object], *args: Any) -> Any: ...
    def call_later(self, delay: float, callback: Callable[..., object], *args: Any) -> Any: ...
    def time(self) -> float: ...
    def run_in_executor(
        self, executor: Any, func: Callable[..., T], *args: Any
    ) -> Awaitable[T]: ...


#: Exceptions outside ``Exception`` that are the interpreter's, not the event loop's.
_NOT_CANCELLATION = (Exception, KeyboardInterrupt, SystemExit, GeneratorExit)


def is_cancellation(exc: BaseException) -> bool:
    """Whether ``exc`` is the event loop stopping a task, not the app failing.

    Event loops cancel a task by raising an exception that is deliberately not
    an ``Exception`` (asyncio's ``CancelledError``, which uvloop and anyio use
    too), so that an app's ``except Exception`` does not swallow it; the other
    such exceptions are the interpreter's own.  A ``BaseExceptionGroup`` (a
    task group cancelled as a whole) is a cancellation when everything in it is.
    This layer does not import asyncio, so the rule is written by kind rather
    than by naming asyncio's class.
    """
    if isinstance(exc, _NOT_CANCELLATION):
        return False
    members = getattr(exc, "exceptions", None)
    if isinstance(members, tuple):
        return all(is_cancellation(member) for member in members)
    return True
