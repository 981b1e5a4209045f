"""Starting app coroutines, eagerly where the interpreter allows it.

Most requests to most apps complete without ever waiting on I/O: the app
reads a body that already arrived and sends a response that fits in the
socket buffer.  On Python 3.12+ the coroutine's first step runs right away
inside an eagerly started task (``eager_start=True``), so such a request
never goes through the event loop's ready queue, and the response leaves in
the same callback that read the request.

Older interpreters get an ordinary task.  Running the first step by hand
there is not an option: during that step ``asyncio.current_task()`` would be
None, and libraries that key their state on the current task (sniffio, and
through it anyio, Starlette and FastAPI) fail.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Coroutine
from typing import TYPE_CHECKING, Any, Final

if TYPE_CHECKING:
    from ..asgi.http_stream import HTTPStream
    from .context import ServerContext

__all__ = ["EAGER", "TASK_NAME", "start_app", "start_eagerly"]

#: Whether app coroutines start inside the connection's callback.
EAGER = sys.version_info >= (3, 12)


#: The name of every app task.  Without one, Python before 3.12 formats a
#: unique "Task-N" for each task, a measurable share of a small request.
TASK_NAME: Final = "asgiri-app"


def start_eagerly(
    loop: asyncio.AbstractEventLoop, coro: Coroutine[Any, Any, None]
) -> asyncio.Task[None] | None:
    """Start ``coro``; returns its task, or None when it already finished."""
    if loop.get_task_factory() is not None:
        # An app (or a library) installed its own tasks: it gets them.
        return loop.create_task(coro, name=TASK_NAME)
    if EAGER:
        task: asyncio.Task[None] = asyncio.Task(
            coro,
            loop=loop,
            name=TASK_NAME,
            eager_start=True,  # type: ignore[call-arg,unused-ignore]
        )
        return None if task.done() else task
    return asyncio.Task(coro, loop=loop, name=TASK_NAME)


def start_app(ctx: ServerContext, stream: HTTPStream) -> None:
    """Run the app of one request stream, the same way for HTTP/1.1, HTTP/2 and HTTP/3.

    While the first step runs inside the connection's callback the stream
    holds a response head back (``eager``), so that head and first body
    chunk leave in one write; if the app then suspends, a head it sent must
    not wait for its body.
    """
    stream.eager = True
    task = start_eagerly(ctx.loop, stream.run(ctx.app))
    stream.eager = False
    if task is not None:
        stream.task = task
        ctx.tasks.add(task)
        if EAGER:
            stream.flush_head()
