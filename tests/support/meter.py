"""What a server process costs while something is done to it, and whether others are served.

:class:`ProcessMeter` measures a server subprocess (and its children, for
``--workers``) with psutil: the CPU seconds it spent and the peak of its
resident memory over a baseline, sampled every few milliseconds.
:class:`Bystander` is a well-behaved client asking the same server for a
small answer in a loop, on its own connection, for as long as an attack
lasts: every one of its requests must be answered within a deadline.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import psutil

MIB = 1024 * 1024


def cpu_seconds(process: psutil.Process) -> float:
    """User and system CPU time of ``process``; 0 once it has gone."""
    try:
        times = process.cpu_times()
    except psutil.Error:
        return 0.0
    return float(times.user + times.system)


class ProcessMeter:
    """CPU time and peak RSS growth of one process between ``__enter__`` and ``__exit__``.

    The baseline is the RSS when the meter starts, so a test warms the code
    paths it exercises up first (imports and first allocations are not
    growth).
    """

    def __init__(self, pid: int, interval: float = 0.005) -> None:
        self.process = psutil.Process(pid)
        self.interval = interval
        self.baseline = 0
        self.peak = 0
        self.cpu = 0.0
        self.seconds = 0.0
        self._cpu_before = 0.0
        self._started = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _rss(self) -> int:
        try:
            return int(self.process.memory_info().rss)
        except psutil.Error:
            return self.peak

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self._rss())
            self._stop.wait(self.interval)

    def __enter__(self) -> ProcessMeter:
        self.baseline = self.peak = self._rss()
        self._cpu_before = cpu_seconds(self.process)
        self._started = time.monotonic()
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(5)
        self.peak = max(self.peak, self._rss())
        self.cpu = cpu_seconds(self.process) - self._cpu_before
        self.seconds = time.monotonic() - self._started

    @property
    def growth(self) -> int:
        """Peak RSS over the baseline, in bytes."""
        return self.peak - self.baseline

    def check(self, cpu: float, rss: int = 16 * MIB) -> None:
        """Fail unless the process spent under ``cpu`` seconds and grew under ``rss`` bytes."""
        assert self.cpu < cpu, f"the server spent {self.cpu:.2f} s of CPU (bound {cpu} s)"
        assert self.growth < rss, (
            f"the server's RSS grew {self.growth / MIB:.1f} MiB (bound {rss / MIB:.0f} MiB)"
        )


@dataclass
class Bystander:
    """A client that keeps asking for a small answer while something else goes on.

    ``probe`` makes one request (on a connection of its own) and raises if
    the answer is wrong; it runs in a loop, ``pause`` seconds apart, from
    :meth:`__enter__` to :meth:`__exit__`.  :meth:`check` then fails if any
    probe failed or took longer than ``within`` seconds, or if too few ran.
    """

    probe: Callable[[], None]
    within: float = 2.0
    pause: float = 0.05
    latencies: list[float] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def _run(self) -> None:
        while not self._stop.is_set():
            started = time.monotonic()
            try:
                self.probe()
            except Exception as exc:  # reported by check()
                self.errors.append(f"{type(exc).__name__}: {exc}")
            self.latencies.append(time.monotonic() - started)
            self._stop.wait(self.pause)

    def __enter__(self) -> Bystander:
        self.probe()  # served before the attack, or the check below means nothing
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(self.within + 30)
        # One more after the attack: the server serves on.
        started = time.monotonic()
        try:
            self.probe()
        except Exception as exc:
            self.errors.append(f"after the attack: {type(exc).__name__}: {exc}")
        self.latencies.append(time.monotonic() - started)

    def check(self, at_least: int = 2) -> None:
        assert not self.errors, f"a bystander's request failed: {self.errors[:3]}"
        assert len(self.latencies) >= at_least, (
            f"only {len(self.latencies)} bystander requests were answered"
        )
        slowest = max(self.latencies)
        assert slowest < self.within, (
            f"a bystander waited {slowest:.2f} s for its answer (bound {self.within} s)"
        )
