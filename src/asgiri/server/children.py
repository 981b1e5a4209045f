"""The entry points of server processes started by a parent: a reloader's child, a worker.

:func:`~asgiri.server.process.spawn` starts a fresh interpreter that runs one
of the functions here (named by :data:`~asgiri.server.process.RELOAD_CHILD`
and :data:`~asgiri.server.process.WORKER`).  Each reads what its parent sent
on stdin, builds an ordinary :class:`~asgiri.server.server.Server` and runs
it until the parent asks it to stop or goes away.  This is the only module of
the reloader and worker machinery that imports ``Server``: the parents
(:mod:`.reload`, :mod:`.supervisor`) only name these entry points, so the
server imports its supervisors and never the other way round.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import pickle
import socket
import sys
import threading
from collections.abc import Callable
from typing import IO

from ..config import Config
from ..errors import StartupError
from .listeners import Listener
from .process import (
    MSG_HEARTBEAT,
    MSG_MAX_REQUESTS,
    MSG_READY,
    MSG_RESTART,
    MSG_TAKE_UDP,
    WorkerSpec,
    mark_child,
)
from .server import Server, WorkerHooks

__all__ = ["reload_child", "worker"]


def reload_child() -> None:
    """A server process started by the reloader: the parent's config, its inherited socket."""
    mark_child()
    stdin: IO[bytes] = sys.stdin.buffer
    config: Config = pickle.load(stdin)
    server = Server.from_config(config)
    _serve(server, stdin, lambda data: None)


def worker() -> None:
    """A worker process started by the supervisor: readiness, heartbeats and requests to it."""
    mark_child()
    stdin: IO[bytes] = sys.stdin.buffer
    spec: WorkerSpec = pickle.load(stdin)
    status = _StatusPipe(spec.status_fd)
    listeners = [_inherited(fd) for fd in spec.fds]
    for listener, scheme in zip(listeners, spec.schemes, strict=False):
        listener.scheme = scheme

    loops: list[asyncio.AbstractEventLoop] = []

    def started(loop: asyncio.AbstractEventLoop) -> None:
        loops.append(loop)
        status.send(MSG_READY)

        def beat() -> None:
            status.send(MSG_HEARTBEAT)
            loop.call_later(spec.heartbeat, beat)

        loop.call_later(spec.heartbeat, beat)

    hooks = WorkerHooks(
        listeners=listeners,
        on_started=started,
        on_max_requests=lambda: status.send(MSG_MAX_REQUESTS),
        udp_sockets=[_inherited_udp(fd) for fd in spec.udp_fds],
        udp_deferred=spec.udp_deferred,
    )
    server = Server.from_config(spec.config, hooks)

    def take_udp() -> None:
        release = hooks.release_udp
        if release is not None:
            hooks.release_udp = None
            release()

    def from_supervisor(data: bytes) -> None:
        if MSG_TAKE_UDP in data and loops:
            with contextlib.suppress(RuntimeError):  # the loop is closing
                loops[0].call_soon_threadsafe(take_udp)
        if MSG_RESTART in data:
            server.request_shutdown(restart=True)

    _serve(server, stdin, from_supervisor)


def _serve(server: Server, stdin: IO[bytes], on_message: Callable[[bytes], None]) -> None:
    """Run ``server`` until the parent asks it to stop or goes away (end of stdin)."""

    def parent_watch() -> None:
        # Unbuffered: a daemon thread must not hold the buffered reader's lock
        # at interpreter exit.  pickle.load consumed everything the parent sent.
        with contextlib.suppress(OSError):
            while data := os.read(stdin.fileno(), 4096):
                on_message(data)
        server.request_shutdown()

    threading.Thread(target=parent_watch, daemon=True).start()
    try:
        server.run()
    except StartupError as exc:
        print(f"Error: {exc}", file=sys.stderr)
        raise SystemExit(exc.exit_code) from None
    except KeyboardInterrupt:
        pass


class _StatusPipe:
    """The worker's end of the pipe to its supervisor."""

    def __init__(self, fd: int) -> None:
        self.fd = fd
        os.set_blocking(fd, False)

    def send(self, message: bytes) -> None:
        # A full pipe means the supervisor is not reading: nothing to add then.
        with contextlib.suppress(BlockingIOError, BrokenPipeError, OSError):
            os.write(self.fd, message)


def _inherited(fd: int) -> Listener:
    sock = socket.socket(fileno=fd)
    sock.setblocking(False)
    return Listener(sock, "unix" if sock.family == socket.AF_UNIX else "tcp")


def _inherited_udp(fd: int) -> socket.socket:
    sock = socket.socket(fileno=fd)
    sock.setblocking(False)
    return sock
