"""Real servers for tests: in a thread of this process, or as a CLI subprocess.

Both bind port 0 and wait for the server to say it is ready; no test sleeps
for a fixed time or uses a fixed port.
"""

from __future__ import annotations

import contextlib
import os
import queue
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from asgiri.protocol.h2_codecs import resolve_codec
from asgiri.server import Server

ROOT = Path(__file__).resolve().parent.parent
#: The HTTP/2 codec the servers of this run use: ``ASGIRI_H2_CODEC`` (read by the
#: CLI servers as ``--h2-codec``; given to the in-process ones) picks it, so a
#: suite runs on each codec by setting it.
H2_CODEC = resolve_codec(os.environ.get("ASGIRI_H2_CODEC") or "auto")
_LISTEN_RE = re.compile(r"Listening on (https?)://([^ ]+):(\d+)")


class ThreadServer:
    """A :class:`Server` running ``run()`` in a daemon thread."""

    def __init__(self, app: Any, **options: Any) -> None:
        options.setdefault("port", 0)
        options.setdefault("log_level", "warning")
        options.setdefault("h2_codec", H2_CODEC)
        self.server = Server(app, **options)
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        try:
            self.server.run()
        except BaseException as exc:  # surfaced to the test by start()
            self.error = exc

    def start(self, timeout: float = 15.0) -> ThreadServer:
        """Run the server; returns once it serves, raises its start-up error if it fails."""
        self.thread.start()
        if not self.server.wait_started(timeout):
            if self.server.stopped.is_set():
                raise RuntimeError(f"server stopped before it started: {self.error!r}")
            raise TimeoutError("server did not start")
        return self

    def stop(self, timeout: float = 30.0) -> None:
        self.server.request_shutdown()
        self.thread.join(timeout)
        if self.thread.is_alive():
            raise RuntimeError("server thread did not stop")

    @property
    def port(self) -> int:
        port = self.server.port
        assert port is not None
        return port

    @property
    def url(self) -> str:
        scheme = "https" if self.server.config.tls.enabled else "http"
        return f"{scheme}://127.0.0.1:{self.port}"


@contextlib.contextmanager
def serve(app: Any, **options: Any) -> Iterator[ThreadServer]:
    """``with serve(app, timeout_keep_alive=1) as srv: httpx.get(srv.url)``."""
    srv = ThreadServer(app, **options).start()
    try:
        yield srv
    finally:
        srv.stop()


class CLIServer:
    """``python -m asgiri ARGS`` in a subprocess; ``port`` parsed from its log."""

    def __init__(
        self,
        *args: str,
        cwd: str | Path | None = None,
        env: dict[str, str] | None = None,
        module: str = "asgiri",
    ):
        full_env = dict(os.environ)
        full_env["PYTHONPATH"] = os.pathsep.join(
            [str(ROOT / "tests"), str(ROOT), full_env.get("PYTHONPATH", "")]
        )
        full_env["PYTHONUNBUFFERED"] = "1"
        if env:
            full_env.update(env)
        self.args = [sys.executable, "-m", module, *args]
        self.proc = subprocess.Popen(
            self.args,
            cwd=cwd or ROOT,
            env=full_env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        self.lines: list[str] = []
        self._queue: queue.Queue[str | None] = queue.Queue()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        self.port: int | None = None
        self.scheme = "http"

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line)
            self._queue.put(line)
        self._queue.put(None)

    def wait_for(self, pattern: str, timeout: float = 15.0) -> re.Match[str]:
        """Wait for a log line matching ``pattern`` (lines already seen count)."""
        regex = re.compile(pattern)
        for line in list(self.lines):
            match = regex.search(line)
            if match:
                return match
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(f"no line matching {pattern!r}; output:\n{self.output}")
            try:
                line = self._queue.get(timeout=remaining)
            except queue.Empty:
                continue
            if line is None:
                raise RuntimeError(f"process exited; output:\n{self.output}")
            match = regex.search(line)
            if match:
                return match

    def wait_count(self, pattern: str, count: int = 1, timeout: float = 30.0) -> list[str]:
        """Wait until ``pattern`` has matched ``count`` log lines in all; the matches."""
        regex = re.compile(pattern)
        deadline = time.monotonic() + timeout
        while True:
            found = [m.group(0) for line in list(self.lines) if (m := regex.search(line))]
            if len(found) >= count:
                return found
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(f"{count} x {pattern!r} not seen; output:\n{self.output}")
            try:
                # Any new line may be the one; the list above is the record.
                line = self._queue.get(timeout=remaining)
            except queue.Empty:
                continue
            if line is None:
                raise RuntimeError(f"process exited; output:\n{self.output}")

    def wait_ready(self, timeout: float = 15.0) -> CLIServer:
        match = self.wait_for(_LISTEN_RE.pattern, timeout)
        self.scheme = match.group(1)
        self.port = int(match.group(3))
        return self

    @property
    def url(self) -> str:
        return f"{self.scheme}://127.0.0.1:{self.port}"

    @property
    def output(self) -> str:
        return "".join(self.lines)

    def signal(self, sig: int = signal.SIGTERM) -> None:
        self.proc.send_signal(sig)

    def wait(self, timeout: float = 30.0) -> int:
        code = self.proc.wait(timeout)
        self._reader.join(5)
        return code

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.signal(signal.SIGTERM)
            try:
                return self.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        return self.wait(10)


@contextlib.contextmanager
def cli_server(*args: str, **kwargs: Any) -> Iterator[CLIServer]:
    srv = CLIServer(*args, **kwargs).wait_ready()
    try:
        yield srv
    finally:
        srv.stop()


def run_cli(*args: str, timeout: float = 30.0, **kwargs: Any) -> subprocess.CompletedProcess[str]:
    """Run the CLI to completion (for --help, errors, exit codes)."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT / "tests"), str(ROOT), env.get("PYTHONPATH", "")])
    return subprocess.run(
        [sys.executable, "-m", "asgiri", *args],
        cwd=kwargs.get("cwd", ROOT),
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
