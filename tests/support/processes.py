"""Subprocesses the tests start and watch: a spawned CLI whose output is read as it comes,
RSS sampling of a server process, and the readiness lines of a supervisor's workers.
"""

from __future__ import annotations

import contextlib
import queue
import re
import signal
import socket
import subprocess
import threading
import time
from pathlib import Path

import psutil

from tests.support.servers import ROOT, CLIServer, subprocess_env


class Spawned:
    """Any command line as a subprocess whose merged output is read in a thread.

    ``CLIServer`` covers ``python -m asgiri``; this one also runs the console
    script and passes inherited file descriptors.
    """

    def __init__(
        self, argv: list[str], pass_fds: tuple[int, ...] = (), cwd: str | Path = ROOT
    ) -> None:
        self.proc = subprocess.Popen(
            argv,
            cwd=cwd,
            env=subprocess_env(),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            pass_fds=pass_fds,
        )
        self.lines: list[str] = []
        self._queue: queue.Queue[str | None] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line)
            self._queue.put(line)
        self._queue.put(None)

    def wait_for(self, pattern: str, timeout: float = 15.0) -> re.Match[str]:
        regex = re.compile(pattern)
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(f"no line matching {pattern!r} in:\n{''.join(self.lines)}")
            try:
                line = self._queue.get(timeout=remaining)
            except queue.Empty:
                continue
            if line is None:
                raise RuntimeError(f"process exited; output:\n{''.join(self.lines)}")
            match = regex.search(line)
            if match:
                return match

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(30)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()


class RSSSampler:
    """Samples a process's RSS every few milliseconds in a background thread."""

    def __init__(self, pid: int) -> None:
        self.process = psutil.Process(pid)
        self.baseline = self.process.memory_info().rss
        self.peak = self.baseline
        self.samples = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                rss = self.process.memory_info().rss
            except psutil.Error:
                return
            self.peak = max(self.peak, rss)
            self.samples += 1
            self._stop.wait(0.005)

    def __enter__(self) -> RSSSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(5)
        with contextlib.suppress(psutil.Error):  # what grew since the last sample
            self.peak = max(self.peak, self.process.memory_info().rss)

    @property
    def growth(self) -> int:
        return self.peak - self.baseline


def dropped_by_server(sock: socket.socket, timeout: float) -> bool:
    """Whether the server closes ``sock`` within ``timeout``, seen without reading.

    The TCP state (Linux ``TCP_INFO``) leaves ESTABLISHED when the server's
    FIN or RST arrives, while the bytes it sent stay unread in the socket:
    the client goes on reading nothing (its window stays shut) as it waits.
    """
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 1)[0] != _TCP_ESTABLISHED:
            return True
        time.sleep(0.05)
    return False


READY_RE = r"Worker process \[(\d+)\] is ready"


def ready_pids(srv: CLIServer) -> list[int]:
    return [int(m) for m in re.findall(READY_RE, srv.output)]


def wait_ready_count(srv: CLIServer, count: int, timeout: float = 30.0) -> list[int]:
    """Wait until ``count`` workers in total have reported ready; their pids."""
    srv.wait_count(READY_RE, count, timeout)
    return ready_pids(srv)


_TCP_ESTABLISHED = 1
