"""The development reloader: serve in a child process, restart it when files change.

The parent process binds the listening socket once and hands it to each child,
so the port stays the same across restarts (also with ``port=0``) and clients
that connect while a child restarts wait in the kernel's accept queue instead
of being refused.  The parent never imports the app: every child starts from a
fresh interpreter, so a restart picks up every changed module, not only the
one that was edited.

The parent only watches files (``watchfiles``, inotify/FSEvents; no polling of
the tree) and supervises:

- a change that passes the filter stops the child (SIGTERM, the same graceful
  drain as in production, bounded by the shutdown timeouts) and starts a new one;
- a child that dies on its own (a syntax error, a failing lifespan startup) is
  reported, and the next change starts a new one;
- SIGINT/SIGTERM to the parent, or :meth:`Reloader.request_shutdown` from any
  thread, stop the child and return from :meth:`Reloader.run`.

Each child runs in its own session, so Ctrl-C in a terminal reaches only the
parent, which then stops the child once, gracefully.  The child reads its
configuration from a pipe and treats the end of that pipe as "the parent is
gone", so it never outlives a parent that was killed.
"""

from __future__ import annotations

import contextlib
import dataclasses
import fnmatch
import logging
import os
import signal
import subprocess
import threading
from collections.abc import Sequence
from pathlib import Path, PurePath
from types import FrameType
from typing import Any

from ..config import Config, ReloadConfig, WorkersConfig
from ..errors import StartupError
from .listeners import Listener, bind_sockets
from .process import RELOAD_CHILD, Host, import_target, in_child, spawn

logger = logging.getLogger("asgiri.error")


class Reloader:
    """Supervise one child server process per version of the watched files."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self._stop = threading.Event()
        self._proc: subprocess.Popen[bytes] | None = None
        self._stopping: subprocess.Popen[bytes] | None = None
        self.target, self.app_dir = "", config.app_options.app_dir
        self.dirs: list[Path] = []
        if in_child():
            return  # see run(): inside a child this reloader never runs
        if config.tls.ssl_context is not None:
            raise ValueError(
                "reload cannot be combined with ssl_context (it cannot be passed to the "
                "server process); use certfile/keyfile or cert_data/key_data"
            )
        self.target, self.app_dir = import_target(config.app, config.app_options.app_dir)
        dirs = config.reload.reload_dirs or [self.app_dir]
        self.dirs = [Path(d).resolve() for d in dirs]
        for directory in self.dirs:
            if not directory.is_dir():
                raise ValueError(f"reload_dirs: {str(directory)!r} is not a directory")

    def request_shutdown(self) -> None:
        """Stop watching and stop the child; safe from any thread."""
        self._stop.set()

    def run(self, host: Host | None = None) -> None:
        """Bind, start the first child, restart it on changes until asked to stop.

        ``host``: the ``Server`` whose ``run()`` this is, told the sockets and
        when the first child was started.
        """
        if in_child():
            # Reached while the child imports an app module that starts a
            # reloading server at import time: the child serves it already.
            return
        try:
            import watchfiles
        except ImportError:
            raise StartupError(
                "reload needs the watchfiles package: pip install 'asgiri[reload]'"
            ) from None
        listeners = bind_sockets(self.config.bind, self.config.port)
        installed = self._install_signals()
        try:
            if host is not None:
                host.listeners = listeners
            child_config = self._child_config(listeners)
            changes_filter = ChangeFilter(
                self.dirs, self.config.reload.reload_includes, self.config.reload.reload_excludes
            )
            logger.info(
                "Started reloader process [%d]; watching %s in %s",
                os.getpid(),
                changes_filter.describe(),
                ", ".join(str(d) for d in self.dirs),
            )
            self._start(child_config, listeners)
            if host is not None:
                host.started.set()
            delay_ms = round(self.config.reload.reload_delay * 1000)
            for changes in watchfiles.watch(
                *self.dirs,
                watch_filter=changes_filter,
                step=max(delay_ms, 1),
                debounce=max(delay_ms, 1600),
                stop_event=self._stop,
                raise_interrupt=False,
            ):
                names = sorted({self._describe(path) for _, path in changes})
                logger.info("Detected changes in %s; restarting", ", ".join(names))
                self._stop_child()
                self._start(child_config, listeners)
        finally:
            self._stop_child()
            for listener in listeners:
                listener.close()
            self._restore_signals(installed)
            if host is not None:
                host.started.clear()
            logger.info("Stopped reloader process [%d]", os.getpid())

    # ------------------------------------------------------------ internals

    def _child_config(self, listeners: list[Listener]) -> Config:
        """The parent's configuration, serving the inherited socket, without reload."""
        config = self.config
        return dataclasses.replace(
            config,
            app=self.target,
            app_options=dataclasses.replace(config.app_options, app_dir=self.app_dir),
            bind=dataclasses.replace(
                config.bind,
                binds=[
                    f"{listener.scheme}://fd://{listener.sock.fileno()}"
                    if listener.scheme
                    else f"fd://{listener.sock.fileno()}"
                    for listener in listeners
                ],
                fd=None,
                uds=None,
            ),
            reload=ReloadConfig(),
            workers=WorkersConfig(),
        )

    def _start(self, child_config: Config, listeners: list[Listener]) -> None:
        fds = [listener.sock.fileno() for listener in listeners]
        proc = spawn(RELOAD_CHILD, child_config, fds)
        self._proc = proc
        threading.Thread(target=self._watch_exit, args=(proc,), daemon=True).start()

    def _watch_exit(self, proc: subprocess.Popen[bytes]) -> None:
        code = proc.wait()
        if proc is not self._stopping and not self._stop.is_set():
            logger.error(
                "Server process [%d] exited with code %d; waiting for changes to restart it",
                proc.pid,
                code,
            )

    def _stop_child(self) -> None:
        proc, self._proc = self._proc, None
        if proc is None:
            return
        self._stopping = proc
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(signal.SIGTERM)
            timeouts = self.config.timeouts
            grace = (
                timeouts.timeout_graceful_shutdown
                + self.config.app_options.lifespan_shutdown_timeout
                + 5
            )
            try:
                proc.wait(grace)
            except subprocess.TimeoutExpired:
                logger.warning("Server process [%d] did not stop; killing it", proc.pid)
                proc.kill()
                proc.wait()
        if proc.stdin is not None:
            with contextlib.suppress(OSError):
                proc.stdin.close()

    def _describe(self, path: str) -> str:
        for root in self.dirs:
            with contextlib.suppress(ValueError):
                return str(Path(path).relative_to(root))
        return path

    def _install_signals(self) -> dict[int, Any]:
        if threading.current_thread() is not threading.main_thread():
            return {}

        def stop(signum: int, frame: FrameType | None) -> None:
            logger.info("Received %s; stopping", signal.Signals(signum).name)
            self._stop.set()

        def forward(signum: int, frame: FrameType | None) -> None:
            # SIGUSR1 reloads the certificate: the server process has it.
            proc = self._proc
            if proc is not None and proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    proc.send_signal(signum)

        installed: dict[int, Any] = {
            sig: signal.signal(sig, stop) for sig in (signal.SIGINT, signal.SIGTERM)
        }
        installed[signal.SIGUSR1] = signal.signal(signal.SIGUSR1, forward)
        return installed

    def _restore_signals(self, installed: dict[int, Any]) -> None:
        for sig, handler in installed.items():
            signal.signal(sig, handler)


#: What restarts the server when no --reload-include says otherwise: the code.
DEFAULT_INCLUDES = ("*.py",)


class ChangeFilter:
    """Which changed paths restart the server.

    watchfiles' default filter already drops VCS and cache directories and
    editor swap/backup files; on top of it, hidden paths and ``*.log`` files
    (a log written next to the code would restart the server forever) are
    ignored, then ``excludes`` (a glob on the file name or on the path
    relative to the watched directory; ``"name/"`` drops a directory
    anywhere), then only files matching one of the includes count: ``*.py``
    and ``includes``, as with uvicorn, so that an app writing a data file
    does not restart itself.  An exclude spelled exactly as an include
    (``--reload-exclude '*.py'``) takes that include out; with no include
    left, any file counts.
    """

    def __init__(
        self, roots: Sequence[Path], includes: Sequence[str], excludes: Sequence[str]
    ) -> None:
        import watchfiles

        self._default = watchfiles.DefaultFilter()
        self._roots = list(roots)
        self._excludes = list(excludes)
        self._includes = [
            pattern
            for pattern in dict.fromkeys([*DEFAULT_INCLUDES, *includes])
            if pattern not in self._excludes
        ]

    def describe(self) -> str:
        """What is watched, for the start-up line: ``*.py, *.html; ignoring build/``."""
        text = ", ".join(self._includes) if self._includes else "any file"
        if self._excludes:
            text += "; ignoring " + ", ".join(self._excludes)
        return text

    def __call__(self, change: Any, path: str) -> bool:
        if not self._default(change, path):
            return False
        rel = self._relative(path)
        if any(part.startswith(".") for part in rel.parts) or rel.suffix == ".log":
            return False
        name = rel.name
        text = rel.as_posix()
        for pattern in self._excludes:
            if pattern.endswith("/"):
                # The directory itself (created, removed) and anything below it.
                if any(fnmatch.fnmatch(part, pattern[:-1]) for part in rel.parts):
                    return False
            elif fnmatch.fnmatch(name, pattern) or fnmatch.fnmatch(text, pattern):
                return False
        if self._includes:
            return any(
                fnmatch.fnmatch(name, pattern) or fnmatch.fnmatch(text, pattern)
                for pattern in self._includes
            )
        return True

    def _relative(self, path: str) -> PurePath:
        full = Path(path)
        for root in self._roots:
            with contextlib.suppress(ValueError):
                return full.relative_to(root)
        return PurePath(full.name)
