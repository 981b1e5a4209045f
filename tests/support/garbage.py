"""What of a server only reference cycles keep alive after its connections ended.

A connection whose objects still point at each other once it is over is
freed only by the next full garbage collection, and keeps its transport (over
TLS about 300 KiB of buffers) until then: under load a worker grows by
whatever ended between two collections.  :func:`cyclic_garbage` runs some
client work with the collector off, waits for the server to finish with it,
collects once and names the server's objects that were found only in cycles.
"""

from __future__ import annotations

import gc
import time
from collections.abc import Callable
from typing import Any

__all__ = ["cyclic_garbage"]

#: Types whose instances belong to a server connection (the tests' own clients
#: are h11, h2, wsproto and aioquic objects, never these).
SERVER_MODULES = ("asgiri.", "uvloop.")


def _type_name(obj: object) -> str:
    kind = type(obj)
    return f"{kind.__module__}.{kind.__qualname__}"


def cyclic_garbage(
    srv: Any, work: Callable[[], None], timeout: float = 15.0, client: tuple[str, ...] = ()
) -> list[str]:
    """Run ``work`` with the collector off; the server's types that only cycles kept.

    ``client``: asgiri types the test's own client uses too (its garbage is
    in the same process).
    """
    ctx = srv.server._ctx
    gc.collect()
    gc.disable()
    try:
        work()
        deadline = time.monotonic() + timeout
        while (ctx.connections or ctx.tasks) and time.monotonic() < deadline:
            time.sleep(0.02)
        assert not ctx.connections, f"connections still open: {ctx.connections}"
        assert not ctx.tasks, f"app tasks still running: {ctx.tasks}"
        gc.set_debug(gc.DEBUG_SAVEALL)
        gc.collect()
    finally:
        gc.set_debug(0)
        gc.enable()
    names = {_type_name(obj) for obj in gc.garbage}
    gc.garbage.clear()
    return sorted(name for name in names if name.startswith(SERVER_MODULES) and name not in client)
