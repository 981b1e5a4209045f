"""Starting a server process that inherits sockets from its parent.

Shared by the development reloader and the worker supervisor: both bind the
sockets once in the parent and start fresh interpreters that serve them.  A
fresh interpreter (rather than ``fork``) means the parent never imports the
app, every child sees the code as it is on disk now, and nothing of the
parent's state (threads, an event loop, open connections) leaks into it.

The child gets a pickled payload on its stdin and keeps that pipe open: when
the parent dies, the child reads end-of-file and shuts itself down, so no
server outlives its parent.
"""

from __future__ import annotations

import os
import pickle
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path


def child_env() -> dict[str, str]:
    """The environment of a child: it must import this very asgiri, and what the parent could."""
    env = dict(os.environ)
    package_root = str(Path(__file__).resolve().parents[2])
    script_dir = os.path.abspath(sys.path[0]) if sys.path and sys.path[0] else ""
    env["PYTHONPATH"] = os.pathsep.join(
        p for p in (package_root, script_dir, env.get("PYTHONPATH", "")) if p
    )
    return env


def spawn(code: str, payload: object, pass_fds: Sequence[int]) -> subprocess.Popen[bytes]:
    """Run ``python -c code`` with ``pass_fds`` inherited and ``payload`` on its stdin.

    The child runs in its own session, so a Ctrl-C in a terminal reaches only
    the parent, which then stops its children once, gracefully.
    """
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
