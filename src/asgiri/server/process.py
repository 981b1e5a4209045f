"""Server processes started by a parent: spawning them, and what passes between the two.

Shared by the development reloader (:mod:`.reload`) and the worker
supervisor (:mod:`.supervisor`): both bind the sockets once in the parent and
start fresh interpreters that serve them.  A fresh interpreter (rather than
``fork``) means the parent never imports the app, every child sees the code
as it is on disk now, and nothing of the parent's state (threads, an event
loop, open connections) leaks into it.

The child gets a pickled payload on its stdin and keeps that pipe open: when
the parent dies, the child reads end-of-file and shuts itself down, so no
server outlives its parent.  What a child runs is named by the parent as an
entry point of :mod:`.children`, the one module of this machinery that
imports the :class:`~asgiri.server.server.Server`: the parents never do.
"""

from __future__ import annotations

import os
import pickle
import subprocess
import sys
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from ..config import Config
from .listeners import Listener

__all__ = [
    "MSG_HEARTBEAT",
    "MSG_MAX_REQUESTS",
    "MSG_READY",
    "MSG_RESTART",
    "MSG_TAKE_UDP",
    "RELOAD_CHILD",
    "WORKER",
    "Host",
    "WorkerSpec",
    "import_target",
    "in_child",
    "mark_child",
    "spawn",
]

#: The entry points a parent starts (see :mod:`.children`).
RELOAD_CHILD = "reload_child"
WORKER = "worker"

# Worker to supervisor, on the worker's status pipe, one byte per message.
#: Its listeners accept connections.
MSG_READY = b"R"
#: Written by a timer of the worker's event loop: the loop is not blocked.
MSG_HEARTBEAT = b"H"
#: ``--limit-max-requests`` was reached: start my replacement, then stop me.
MSG_MAX_REQUESTS = b"M"
# Supervisor to worker, on the worker's stdin.
#: The slot's UDP sockets are yours now.
MSG_TAKE_UDP = b"U"
#: You are being replaced (rolling restart, recycling): shut down gracefully,
#: WebSockets with 1012 (service restart).
MSG_RESTART = b"X"

_in_child = False


def in_child() -> bool:
    """Whether this process is a server started by a reloader or a supervisor.

    Set before the app module is imported: a module that calls
    ``Server(app, reload=True).run()`` (or ``workers=N``) at import time, with
    no ``__main__`` guard, must not start a reloader or supervisor of its own
    inside the child.
    """
    return _in_child


def mark_child() -> None:
    """This process is a child server (see :func:`in_child`)."""
    global _in_child
    _in_child = True


class Host(Protocol):
    """What a reloader or supervisor tells the ``Server`` object whose ``run()`` started it.

    The listening sockets are the parent's (``Server.port`` reads them), and
    ``started`` is set once the children serve, so ``Server.wait_started()``
    works the same with and without child processes.
    """

    listeners: list[Listener]

    @property
    def started(self) -> threading.Event: ...


@dataclass
class WorkerSpec:
    """What a worker process reads from its stdin."""

    config: Config
    #: Inherited listening sockets (TCP / Unix), shared by every worker.
    fds: list[int]
    #: Each listener's ``--bind`` scheme ("http", "https" or None), in ``fds`` order.
    schemes: list[str | None]
    #: This worker slot's UDP sockets for HTTP/3 (see docs/workers.md).
    udp_fds: list[int]
    #: Serve ``udp_fds`` only once the supervisor says so (``MSG_TAKE_UDP`` on stdin):
    #: the slot's previous worker is still draining its QUIC connections on them.
    udp_deferred: bool
    #: Write end of the pipe to the supervisor.
    status_fd: int
    #: Seconds between heartbeats.
    heartbeat: float


def child_env() -> dict[str, str]:
    """The environment of a child: it must import this very asgiri, and what the parent could."""
    env = dict(os.environ)
    package_root = str(Path(__file__).resolve().parents[2])
    script_dir = os.path.abspath(sys.path[0]) if sys.path and sys.path[0] else ""
    env["PYTHONPATH"] = os.pathsep.join(
        p for p in (package_root, script_dir, env.get("PYTHONPATH", "")) if p
    )
    return env


def spawn(entry: str, payload: object, pass_fds: Sequence[int]) -> subprocess.Popen[bytes]:
    """Run the :mod:`.children` entry point ``entry`` with ``pass_fds`` inherited
    and ``payload`` on its stdin.

    The child runs in its own session, so a Ctrl-C in a terminal reaches only
    the parent, which then stops its children once, gracefully.
    """
    code = f"from asgiri.server.children import {entry}; {entry}()"
    proc = subprocess.Popen(
        [sys.executable, "-c", code],
        stdin=subprocess.PIPE,
        pass_fds=list(pass_fds),
        env=child_env(),
        start_new_session=True,
    )
    assert proc.stdin is not None  # stdin=PIPE
    try:
        proc.stdin.write(pickle.dumps(payload))
        proc.stdin.flush()
    except BrokenPipeError:
        pass  # the child died at once; the caller sees it exit
    return proc


def import_target(app: Any, app_dir: str, needs: str = "reload needs") -> tuple[str, str]:
    """``(module:attr, app_dir)`` a fresh process can import the app from.

    An import string is used as it is.  An app object works when it is defined
    at module level: its module and name are found, and an app in the script
    being run (``__main__``) is imported from that script's file.  ``needs``
    begins the error otherwise raised ("reload needs", "workers need").
    """
    if isinstance(app, str):
        return app, app_dir
    module_name = getattr(app, "__module__", None)
    qualname = getattr(app, "__qualname__", None)
    candidates: list[tuple[str, str]] = []
    if isinstance(module_name, str) and isinstance(qualname, str) and "<" not in qualname:
        candidates.append((module_name, qualname))
    main = sys.modules.get("__main__")
    if main is not None:
        for attr, value in vars(main).items():
            if value is app and not attr.startswith("__"):
                candidates.append(("__main__", attr))
    for module_name, attr in candidates:
        module = sys.modules.get(module_name)
        if module is None or _resolve(module, attr) is not app:
            continue
        if module_name != "__main__":
            return f"{module_name}:{attr}", app_dir
        spec = getattr(module, "__spec__", None)
        if spec is not None and spec.name:
            return f"{spec.name}:{attr}", app_dir
        filename = getattr(module, "__file__", None)
        if filename:
            script = Path(filename).resolve()
            return f"{script.stem}:{attr}", str(script.parent)
    raise ValueError(
        f"{needs} an app that a new process can import: pass it as 'module:attr', "
        "or define it at module level"
    )


def _resolve(obj: Any, dotted: str) -> Any:
    for part in dotted.split("."):
        obj = getattr(obj, part, None)
    return obj
