"""The ASGI lifespan protocol.

The app runs as one long task for the whole server life; startup and
shutdown are messages on its receive channel.  Unless lifespan is
``required`` (``--lifespan on``), an app that raises before answering the
startup message is taken not to implement lifespan, and one whose startup
does not answer within the startup timeout is cancelled; either way the
server starts without lifespan.  When it is required both are fatal.  An
explicit ``lifespan.startup.failed`` is fatal either way.
A shutdown that fails (or times out) is logged as one line: the server is
stopping anyway, and its requests are already drained.
"""

from __future__ import annotations

import logging
from typing import Any

from ..errors import LifespanStartupError
from .types import ASGIApp, Loop, Message, is_cancellation

logger = logging.getLogger("asgiri.error")


class _Failed(Exception):
    """A lifespan phase failed; the message says how."""


class Lifespan:
    """Drive one app through ``lifespan.startup`` and ``lifespan.shutdown``."""

    def __init__(
        self, app: ASGIApp, loop: Loop, *, enabled: bool = True, required: bool = False
    ) -> None:
        self._app = app
        self._loop = loop
        #: ``--lifespan off``: the app is never sent a lifespan scope.
        self._enabled = enabled
        #: ``--lifespan on``: an app that does not complete startup stops the server.
        self._required = required
        self.state: dict[str, Any] = {}
        self._inbox: list[Message] = []
        self._inbox_waiter: Any = None
        self._answer: Any = None
        self._task: Any = None
        self._unsupported = False
        self._error: BaseException | None = None
        self.running = False
        #: The message of the app's ``lifespan.startup.failed``, when it sent one.
        self.failure: str | None = None

    async def startup(self, timeout: float) -> None:
        """Run startup; raises :class:`LifespanStartupError` when it must stop the server."""
        if not self._enabled:
            return
        scope = {
            "type": "lifespan",
            "asgi": {"version": "3.0", "spec_version": "2.0"},
            "state": self.state,
        }
        self._answer = self._loop.create_future()
        self._task = self._loop.create_task(self._main(scope))
        self._put({"type": "lifespan.startup"})
        try:
            message = await self._await_answer(timeout, "startup")
        except _Failed as exc:
            raise LifespanStartupError(str(exc)) from None
        if message is None:
            return
        if message["type"] == "lifespan.startup.failed":
            text = message.get("message") or "no message"
            self.failure = text
            raise LifespanStartupError(f"Application startup failed: {text}")
        self.running = True

    async def shutdown(self, timeout: float) -> None:
        if not self.running:
            return
        self.running = False
        self._answer = self._loop.create_future()
        self._put({"type": "lifespan.shutdown"})
        try:
            message = await self._await_answer(timeout, "shutdown")
        except _Failed as exc:
            logger.error("%s", exc)
            return
        if message is not None and message["type"] == "lifespan.shutdown.failed":
            logger.error("Application shutdown failed: %s", message.get("message") or "")

    async def _await_answer(self, timeout: float, phase: str) -> Message | None:
        answer = self._answer
        timer = self._loop.call_later(timeout, self._timed_out, answer)
        try:
            message: Message | None = await answer
        finally:
            timer.cancel()
        if message is None:
            # The app's lifespan task ended or timed out without answering.
            if self._error is not None and self._unsupported:
                if self._required or phase == "shutdown":
                    raise _Failed(f"Application lifespan {phase} failed: {self._error!r}")
                logger.info("ASGI 'lifespan' not supported by the app; running without it")
                return None
            if self._error is not None:
                raise _Failed(f"Application {phase} failed: {self._error!r}")
            if self._task is not None and not self._task.done():
                self._task.cancel()
                if not self._required and phase == "startup":
                    # "auto" promises to serve apps whatever their lifespan does;
                    # one whose startup hangs is served as if it had none.
                    logger.warning(
                        "Application startup did not complete within %gs; "
                        "running without lifespan (use --lifespan on to make this fatal)",
                        timeout,
                    )
                    return None
                raise _Failed(f"Application {phase} did not complete within {timeout:g}s")
            if self._required and phase == "startup":
                raise _Failed("Application returned from lifespan without startup")
            return None
        return message

    def _timed_out(self, answer: Any) -> None:
        if not answer.done():
            answer.set_result(None)

    def _put(self, message: Message) -> None:
        self._inbox.append(message)
        waiter = self._inbox_waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    async def _receive(self) -> Message:
        while not self._inbox:
            self._inbox_waiter = self._loop.create_future()
            await self._inbox_waiter
        return self._inbox.pop(0)

    async def _send(self, message: Message) -> None:
        kind = message.get("type")
        if kind not in (
            "lifespan.startup.complete",
            "lifespan.startup.failed",
            "lifespan.shutdown.complete",
            "lifespan.shutdown.failed",
        ):
            raise RuntimeError(f"unexpected ASGI lifespan message {kind!r}")
        answer = self._answer
        if answer is not None and not answer.done():
            answer.set_result(message)

    async def _main(self, scope: dict[str, Any]) -> None:
        answered = False
        try:
            await self._app(scope, self._receive, self._send)
        except BaseException as exc:
            answered = self._answer is not None and self._answer.done()
            self._error = exc
            # An app that raises before answering startup does not speak lifespan.
            self._unsupported = not answered and not self.running
            if is_cancellation(exc):
                return
            reported = self._answer.result() if answered else None
            if reported is not None and reported["type"].endswith(".failed"):
                # The app reported its failure (Starlette sends the traceback
                # as the message, then raises): that is logged once already.
                logger.debug("lifespan raised after reporting a failure", exc_info=exc)
            elif self._required or answered or self.running:
                logger.error("Exception in ASGI lifespan", exc_info=exc)
            else:
                logger.debug("lifespan raised", exc_info=exc)
        finally:
            answer = self._answer
            if answer is not None and not answer.done():
                answer.set_result(None)
