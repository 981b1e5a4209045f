"""Replacing workers for their memory or age: ``--workers-max-rss``, ``--workers-lifetime``.

An app that leaks (a cache without bound, a C extension holding on to
buffers) grows until the kernel's OOM killer ends the process in the middle
of its requests.  Replacing the worker first, the way SIGHUP does (the new
one ready before the old one drains), drops nothing.  This module only
decides *when*; the supervisor does the replacing.

- **Memory.**  Every ``--rss-sample-interval`` seconds the resident set size
  of each serving worker is read (``/proc/PID/status`` on Linux, ``ps``
  elsewhere).  A worker over ``--workers-max-rss`` MiB for
  ``--rss-samples`` samples in a row is replaced: one sample over the line
  (a large upload being processed) is not a leak.
- **Age.**  Each worker is replaced ``--workers-lifetime`` seconds after it
  started, plus a random part of ``--workers-lifetime-jitter`` (by default a
  tenth of the lifetime) drawn per worker, so that workers started together
  are not all replaced at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import subprocess
from collections.abc import Callable, Iterable
from typing import Generic, Protocol, TypeVar

from ..config import WorkersConfig

logger = logging.getLogger("asgiri.error")

__all__ = ["Recyclable", "WorkerRecycling", "rss_bytes"]

_MIB = 1024 * 1024


class Recyclable(Protocol):
    """What this module reads of a worker (the supervisor's ``Worker``)."""

    @property
    def pid(self) -> int: ...
    @property
    def stopping(self) -> bool: ...
    @property
    def ready(self) -> asyncio.Future[bool]: ...
    @property
    def exited(self) -> asyncio.Future[int]: ...


Worker = TypeVar("Worker", bound=Recyclable)


def rss_bytes(pid: int) -> int | None:
    """The resident set size of process ``pid``, or None when it cannot be read."""
    try:
        with open(f"/proc/{pid}/status", "rb") as fh:
            for line in fh:
                if line.startswith(b"VmRSS:"):
                    return int(line.split()[1]) * 1024  # kB
        return None
    except FileNotFoundError:
        pass  # not Linux, or the process is gone
    except (OSError, ValueError, IndexError):
        return None
    with contextlib.suppress(OSError, ValueError, subprocess.SubprocessError):
        out = subprocess.run(
            ["ps", "-o", "rss=", "-p", str(pid)], capture_output=True, text=True, timeout=5
        ).stdout.strip()
        return int(out) * 1024 if out else None
    return None


class WorkerRecycling(Generic[Worker]):
    """Asks for a worker's replacement (``retire(worker, reason)``) once it is due."""

    def __init__(self, config: WorkersConfig, retire: Callable[[Worker, str], None]) -> None:
        self.config = config
        self._retire = retire
        self._timers: dict[Worker, asyncio.TimerHandle] = {}
        self._strikes: dict[Worker, int] = {}
        #: Asked for already: their replacement is starting.
        self._due: set[Worker] = set()

    @property
    def watches_memory(self) -> bool:
        return self.config.workers_max_rss is not None

    def started(self, worker: Worker) -> None:
        """Start ``worker``'s lifetime."""
        lifetime = self.config.workers_lifetime
        if lifetime is None:
            return
        jitter = self.config.workers_lifetime_jitter
        if jitter is None:
            jitter = lifetime / 10
        due = lifetime + random.uniform(0, jitter)
        loop = asyncio.get_running_loop()
        self._timers[worker] = loop.call_later(
            due, self._ask, worker, f"it reached its lifetime ({due:.0f}s)"
        )

    def _ask(self, worker: Worker, reason: str) -> None:
        if worker not in self._due:
            self._due.add(worker)
            self._retire(worker, reason)

    def failed(self, worker: Worker) -> None:
        """``worker``'s replacement did not start: it is asked for again later."""
        self._due.discard(worker)
        self._timers.pop(worker, None)
        self.started(worker)

    def forget(self, worker: Worker) -> None:
        """``worker`` exited."""
        timer = self._timers.pop(worker, None)
        if timer is not None:
            timer.cancel()
        self._strikes.pop(worker, None)
        self._due.discard(worker)

    async def monitor(self, workers: Callable[[], Iterable[Worker]]) -> None:
        """Sample every serving worker's memory until cancelled."""
        limit = self.config.workers_max_rss
        assert limit is not None  # only started with --workers-max-rss
        interval = self.config.workers_rss_interval
        samples = self.config.workers_rss_samples
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(interval)
            for worker in workers():
                serving = worker.ready.done() and worker.ready.result()
                if not serving or worker.stopping or worker.exited.done() or worker in self._due:
                    continue
                rss = await loop.run_in_executor(None, rss_bytes, worker.pid)
                if rss is None or rss <= limit * _MIB:
                    self._strikes.pop(worker, None)
                    continue
                strikes = self._strikes.get(worker, 0) + 1
                self._strikes[worker] = strikes
                if strikes >= samples:
                    self._strikes.pop(worker, None)
                    self._ask(
                        worker,
                        f"its memory ({rss // _MIB} MiB) stayed over --workers-max-rss "
                        f"{limit} MiB for {samples} sample{'s' if samples > 1 else ''}",
                    )
