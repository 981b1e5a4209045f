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
