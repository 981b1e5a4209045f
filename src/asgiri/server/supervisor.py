"""``--workers N``: the supervisor process, which keeps N worker processes serving.

The supervisor binds the listening sockets once (:mod:`.worker_sockets`) and
starts each worker as a fresh interpreter (:mod:`.process`, as the reloader
does) that inherits them and runs the ordinary server (the worker side is
:func:`asgiri.server.children.worker`).  The supervisor never imports the app,
nor the server.  Sharing one listening socket is what lets a worker be
stopped (SIGHUP, ``--limit-max-requests``) without dropping a connection:
see :mod:`.worker_sockets`.

Each worker reports on a pipe of its own, one byte per message
(:data:`~.process.MSG_READY` and the others):

``R`` ready
    its listeners accept connections.
``H`` heartbeat
    written by a timer of the worker's event loop; a loop that is blocked
    (a handler calling ``time.sleep``, a deadlock) stops writing them, and
    after ``--timeout-worker-healthcheck`` seconds the supervisor kills it.
``M`` max requests
    ``--limit-max-requests`` was reached: the supervisor starts a replacement,
    waits for it to be ready, then stops this worker gracefully.

Signals to the supervisor: SIGTERM/SIGINT stop every worker gracefully (a
second one makes them close at once); SIGHUP replaces the workers one by one,
each new one ready before an old one is stopped.

A worker that exits on its own is replaced.  When workers die soon after
starting, each replacement waits twice as long as the one before (0.5 s up to
30 s), so a crash loop costs little CPU; one that stays up resets the delay.
A worker stopped from outside (SIGKILL, SIGTERM or SIGINT from an operator,
the OOM killer or the supervisor's own watchdog; a ready worker's clean exit)
is replaced at once and does not count: it says nothing about whether the app
can run, and counting it would leave the service without workers for up to
30 s after a few kills in a row.
Until some worker has been ready once, a worker that fails to start stops
the supervisor with that worker's exit code: an app that cannot even be
imported is a deployment error to report, not something to retry forever.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import os
import random
import signal
import socket
import subprocess
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ..config import Config, WorkersConfig
from ..errors import StartupError
from .listeners import Listener
from .process import (
    MSG_HEARTBEAT,
    MSG_MAX_REQUESTS,
    MSG_READY,
    MSG_RESTART,
    MSG_TAKE_UDP,
    WORKER,
    Host,
    WorkerSpec,
    import_target,
    in_child,
    spawn,
)
from .recycling import WorkerRecycling
from .worker_sockets import bind_worker_sockets

logger = logging.getLogger("asgiri.error")

#: A worker that lived at least this long did not die "quickly": the back-off resets.
STABLE_UPTIME = 10.0
BACKOFF_FIRST = 0.5
BACKOFF_MAX = 30.0
#: Extra seconds a worker gets to start, on top of the lifespan startup timeout
#: (importing a large app, opening TLS files).
STARTUP_MARGIN = 60.0
#: Extra seconds a stopping worker gets beyond its own shutdown timeouts.
STOP_MARGIN = 5.0
#: Exit statuses of a worker stopped from outside (see the module docstring):
#: killed, or ended by the signal of a graceful stop before its handler was set.
EXTERNAL_STOPS = frozenset({-signal.SIGKILL, -signal.SIGTERM, -signal.SIGINT})


@dataclass(eq=False)
class Worker:
    """One worker process as the supervisor sees it."""

    slot: int
    proc: subprocess.Popen[bytes]
    status_fd: int
    started_at: float
    ready: asyncio.Future[bool]
    exited: asyncio.Future[int]
    #: The supervisor asked it to stop; its exit is expected.
    stopping: bool = False
    watchdog: asyncio.TimerHandle | None = None
    pidfd: int | None = None
    ready_at: float | None = None

    @property
    def pid(self) -> int:
        return self.proc.pid


@dataclass
class _Slot:
    """A worker position: its current worker and its UDP sockets (HTTP/3)."""

    index: int
    udp: list[socket.socket] = field(default_factory=list)
    worker: Worker | None = None
    #: A replaced worker still draining its QUIC connections on ``udp``: the
    #: slot's next worker takes the UDP sockets only once it has gone.
    draining: Worker | None = None
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)


class Supervisor:
    """Run ``config.workers.count`` worker processes until asked to stop."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self.target, self.app_dir = "", config.app_options.app_dir
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._stop_requested = False
        self._workers: set[Worker] = set()
        self._slots: list[_Slot] = []
        self._failures = 0
        self._ever_ready = False
        self._exit_code = 0
        self._tasks: set[asyncio.Task[None]] = set()
        #: Inherited by every worker: the shared listening sockets' descriptors.
        self._fds: list[int] = []
        self._schemes: list[str | None] = []
        #: --workers-max-rss and --workers-lifetime: when a worker is due for replacement.
        self._recycling: WorkerRecycling[Worker] = WorkerRecycling(config.workers, self._retire)
        self._child_config = config
        if in_child():
            return  # see run(): a worker importing such a module serves it already
        if config.tls.ssl_context is not None:
            raise ValueError(
                "workers cannot be combined with ssl_context (it cannot be passed to a "
                "worker process); use certfile/keyfile or cert_data/key_data"
            )
        self.target, self.app_dir = import_target(
            config.app, config.app_options.app_dir, "workers need"
        )

    @property
    def count(self) -> int:
        return self.config.workers.count or 1

    def request_shutdown(self) -> None:
        """Stop every worker gracefully; safe from any thread."""
        self._stop_requested = True
        loop, stop = self._loop, self._stop
        if loop is not None and stop is not None and not loop.is_closed():
            with contextlib.suppress(RuntimeError):  # the loop closed meanwhile
                loop.call_soon_threadsafe(stop.set)

    def run(self, host: Host | None = None) -> None:
        """Bind, start the workers, supervise them until asked to stop.

        ``host``: the ``Server`` whose ``run()`` this is, told the sockets and
        when every worker is ready.
        """
        if in_child():
            # Reached while a worker imports an app module that starts a
            # supervised server at import time: the worker serves it already.
            return
        listeners, udp = bind_worker_sockets(self.config, self.count)
        self._slots = [_Slot(i, sockets) for i, sockets in enumerate(udp)]
        try:
            if host is not None:
                host.listeners = listeners
            asyncio.run(self._main(listeners, host))
        finally:
            for listener in listeners:
                listener.close()
            for sockets in udp:
                for sock in sockets:
                    sock.close()
            if host is not None:
                host.started.clear()
            logger.info("Stopped supervisor process [%d]", os.getpid())
        if self._exit_code:
            raise WorkerStartError(self._exit_code)

    # ------------------------------------------------------------ main loop

    async def _main(self, listeners: list[Listener], host: Host | None) -> None:
        loop = asyncio.get_running_loop()
        self._loop = loop
        self._stop = asyncio.Event()
        if self._stop_requested:
            self._stop.set()
        installed = self._install_signals(loop)
        logger.info(
            "Started supervisor process [%d]; starting %d worker%s",
            os.getpid(),
            self.count,
            "" if self.count == 1 else "s",
        )
        for listener in listeners:
            scheme = "https" if listener.tls(self.config.tls.enabled) else "http"
            logger.info("Supervisor listening on %s", listener.url(scheme))
        if self._slots and self._slots[0].udp:
            for sock in self._slots[0].udp:
                address, port = sock.getsockname()[:2]
                logger.info(
                    "Supervisor listening on udp %s:%d (h3), one SO_REUSEPORT socket per worker",
                    f"[{address}]" if ":" in address else address,
                    port,
                )
        self._fds = [listener.sock.fileno() for listener in listeners]
        self._schemes = [listener.scheme for listener in listeners]
        self._child_config = self._worker_config()
        metrics = None
        try:
            metrics = await self._start_metrics(loop)
            for slot in self._slots:
                self._start(slot)
            if self._recycling.watches_memory:
                self._spawn_task(self._recycling.monitor(lambda: list(self._workers)))
            if host is not None:
                self._spawn_task(self._mark_started(host))
            await self._stop.wait()
        finally:
            await self._stop_all()
            if metrics is not None:
                metrics.close()
            for task in list(self._tasks):
                task.cancel()
            for sig in installed:
                loop.remove_signal_handler(sig)

    async def _start_metrics(self, loop: asyncio.AbstractEventLoop) -> Any:
        """``--metrics-bind``: workers write to a shared directory, this process serves the sum."""
        bind = self.config.metrics.metrics_bind
        if bind is None or not self.config.metrics.metrics_listen:
            return None
        from .metrics import prepare_multiprocess_dir, render_all_processes, start_metrics_listener

        # Exported before any worker starts, so that every one of them inherits it.
        prepare_multiprocess_dir()
        listener = await start_metrics_listener(loop, bind, render_all_processes)
        logger.info(
            "Prometheus metrics of all workers on http://%s:%d/metrics",
            bind.rpartition(":")[0],
            listener.port,
        )
        return listener

    async def _mark_started(self, host: Host) -> None:
        """``Server.started`` for API users: set once every worker is ready."""
        results = await asyncio.gather(
            *(slot.worker.ready for slot in self._slots if slot.worker is not None)
        )
        if all(results):
            host.started.set()

    def _spawn_task(self, coro: Any) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # ------------------------------------------------------------ one worker

    def _worker_config(self) -> Config:
        """The supervisor's configuration, for a worker: the app by import string, no workers."""
        config = self.config
        return dataclasses.replace(
            config,
            app=self.target,
            app_options=dataclasses.replace(config.app_options, app_dir=self.app_dir),
            workers=WorkersConfig(),
            # Workers count; the supervisor serves the sum of all of them.
            metrics=dataclasses.replace(config.metrics, metrics_listen=False),
        )

    def _start(self, slot: _Slot) -> Worker:
        """Start a worker for ``slot``; it becomes the slot's current worker.

        While a replaced worker still drains on the slot's UDP sockets, the
        new one waits for them (two readers of one UDP socket would take each
        other's QUIC packets; TCP needs no such care, its queue is shared).
        """
        udp_deferred = slot.draining is not None and not slot.draining.exited.done()
        loop = asyncio.get_running_loop()
        config = self._child_config
        limits = config.limits
        if limits.limit_max_requests is not None and limits.limit_max_requests_jitter:
            jittered = limits.limit_max_requests + random.randint(
                0, limits.limit_max_requests_jitter
            )
            config = dataclasses.replace(
                config, limits=dataclasses.replace(limits, limit_max_requests=jittered)
            )
        read_fd, write_fd = os.pipe()
        os.set_blocking(read_fd, False)
        udp_fds = [sock.fileno() for sock in slot.udp]
        spec = WorkerSpec(
            config=config,
            fds=self._fds,
            schemes=self._schemes,
            udp_fds=udp_fds,
            udp_deferred=udp_deferred and bool(udp_fds),
            status_fd=write_fd,
            heartbeat=self.config.workers.timeout_worker_healthcheck / 4,
        )
        try:
            proc = spawn(WORKER, spec, [*self._fds, *udp_fds, write_fd])
        finally:
            os.close(write_fd)
        worker = Worker(
            slot=slot.index,
            proc=proc,
            status_fd=read_fd,
            started_at=loop.time(),
            ready=loop.create_future(),
            exited=loop.create_future(),
        )
        self._workers.add(worker)
        slot.worker = worker
        loop.add_reader(read_fd, self._on_status, worker)
        self._watch_exit(worker)
        self._recycling.started(worker)
        startup = self.config.app_options.lifespan_startup_timeout + STARTUP_MARGIN
        worker.watchdog = loop.call_later(startup, self._hung, worker, "did not start")
        logger.info("Started worker process [%d] (slot %d)", worker.pid, slot.index)
        return worker

    def _watch_exit(self, worker: Worker) -> None:
        """Learn of the worker's exit from a pidfd in the loop, or from a waiting thread."""
        loop = asyncio.get_running_loop()
        pidfd_open: Callable[[int], int] | None = getattr(os, "pidfd_open", None)
        if pidfd_open is not None:
            try:
                worker.pidfd = pidfd_open(worker.pid)
            except OSError:
                worker.pidfd = None
        if worker.pidfd is not None:
            loop.add_reader(worker.pidfd, self._reap, worker)
            return

        def wait() -> None:
            worker.proc.wait()
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(self._reap, worker)

        threading.Thread(target=wait, daemon=True).start()

    def _on_status(self, worker: Worker) -> None:
        try:
            data = os.read(worker.status_fd, 4096)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if not data:
            self._close_status(worker)
            return
        if MSG_READY in data and not worker.ready.done():
            loop = asyncio.get_running_loop()
            worker.ready.set_result(True)
            worker.ready_at = loop.time()
            self._ever_ready = True
            logger.info("Worker process [%d] is ready", worker.pid)
        if MSG_READY in data or MSG_HEARTBEAT in data:
            self._arm_watchdog(worker)
        if MSG_MAX_REQUESTS in data and not worker.stopping:
            logger.info("Worker process [%d] reached its request limit; replacing it", worker.pid)
            self._spawn_task(self._replace(self._slots[worker.slot], worker))

    def _retire(self, worker: Worker, reason: str) -> None:
        """Replace ``worker`` as SIGHUP would (its successor ready first), saying why."""
        slot = self._slots[worker.slot]
        if worker.stopping or worker.exited.done() or slot.worker is not worker:
            return
        if self._stop is None or self._stop.is_set():
            return
        logger.info("Worker process [%d]: %s; replacing it", worker.pid, reason)
        self._spawn_task(self._recycle(slot, worker))

    async def _recycle(self, slot: _Slot, worker: Worker) -> None:
        if not await self._replace(slot, worker) and not worker.exited.done():
            self._recycling.failed(worker)

    def _arm_watchdog(self, worker: Worker) -> None:
        if worker.watchdog is not None:
            worker.watchdog.cancel()
        loop = asyncio.get_running_loop()
        timeout = self.config.workers.timeout_worker_healthcheck
        worker.watchdog = loop.call_later(timeout, self._hung, worker, "missed its heartbeat")

    def _hung(self, worker: Worker, what: str) -> None:
        if worker.exited.done():
            return
        logger.error("Worker process [%d] %s; killing it", worker.pid, what)
        with contextlib.suppress(ProcessLookupError):
            worker.proc.kill()

    def _close_status(self, worker: Worker) -> None:
        loop = asyncio.get_running_loop()
        if worker.status_fd >= 0:
            loop.remove_reader(worker.status_fd)
            os.close(worker.status_fd)
            worker.status_fd = -1

    def _reap(self, worker: Worker) -> None:
        """The worker process ended: tidy up, then replace it if nobody asked it to stop."""
        if worker.exited.done():
            return
        loop = asyncio.get_running_loop()
        if worker.pidfd is not None:
            loop.remove_reader(worker.pidfd)
            os.close(worker.pidfd)
            worker.pidfd = None
        code = worker.proc.wait()
        # Whatever the worker wrote before it died is still in the pipe.
        if worker.status_fd >= 0:
            self._on_status(worker)
        self._close_status(worker)
        if worker.watchdog is not None:
            worker.watchdog.cancel()
        self._recycling.forget(worker)
        self._workers.discard(worker)
        if self.config.metrics.metrics_bind is not None:
            from .metrics import worker_exited

            worker_exited(worker.pid)  # its live gauges (open connections...) stop counting
        if not worker.ready.done():
            worker.ready.set_result(False)
        worker.exited.set_result(code)
        slot = self._slots[worker.slot]
        stopping = self._stop is None or self._stop.is_set()
        if worker.stopping or stopping:
            logger.info("Worker process [%d] stopped (code %d)", worker.pid, code)
            return
        if slot.worker is not worker:
            return
        slot.worker = None
        if not self._ever_ready:
            logger.error(
                "Worker process [%d] failed to start (code %d); stopping", worker.pid, code
            )
            self._exit_code = code if code > 0 else 1
            if self._stop is not None:
                self._stop.set()
            return
        uptime = loop.time() - (worker.ready_at or worker.started_at)
        if code in EXTERNAL_STOPS or (code == 0 and worker.ready_at is not None):
            logger.error(
                "Worker process [%d] was stopped (code %d); starting a new one", worker.pid, code
            )
            self._spawn_task(self._restart_slot(slot, 0.0))
            return
        if worker.ready_at is not None and uptime >= STABLE_UPTIME:
            self._failures = 0
            delay = 0.0
        else:
            self._failures += 1
            delay = min(BACKOFF_FIRST * 2 ** (self._failures - 1), BACKOFF_MAX)
        logger.error(
            "Worker process [%d] died (code %d); starting a new one%s",
            worker.pid,
            code,
            f" in {delay:g}s" if delay else "",
        )
        self._spawn_task(self._restart_slot(slot, delay))

    async def _restart_slot(self, slot: _Slot, delay: float) -> None:
        if delay:
            assert self._stop is not None
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._stop.wait(), delay)
        if self._stop is None or self._stop.is_set():
            return
        async with slot.lock:
            if slot.worker is None:
                self._start(slot)

    # ------------------------------------------------------------ replacing and stopping

    async def _replace(self, slot: _Slot, old: Worker | None) -> bool:
        """Start a new worker in ``slot``, and once it is ready stop ``old`` gracefully."""
        async with slot.lock:
            if self._stop is None or self._stop.is_set():
                return False
            if old is not None and (slot.worker is not old or old.stopping):
                return True  # replaced meanwhile
            # With HTTP/3 the slot's UDP socket passes from old to new only once
            # the old worker has gone (see _start).
            handover = bool(slot.udp) and old is not None and not old.exited.done()
            if handover:
                slot.draining = old
            new = self._start(slot)
            ready = await new.ready
            if not ready and (self._stop is None or self._stop.is_set()):
                return False  # stopped by the shutdown that interrupted the restart
            if not ready:
                logger.error(
                    "New worker process [%d] did not start; keeping worker process [%s]",
                    new.pid,
                    old.pid if old is not None else "-",
                )
                slot.draining = None
                if old is not None and not old.exited.done():
                    slot.worker = old
                return False
            if old is not None:
                self._stop_replaced(old)
        if handover and old is not None:
            # Outside the lock: a new worker that dies meanwhile is replaced
            # at once (its successor waits for the UDP sockets too).
            await self._wait_stopped(old)
            if slot.draining is old:
                slot.draining = None
                if slot.worker is not None:
                    self._take_udp(slot.worker)
        return True

    async def _wait_stopped(self, worker: Worker) -> None:
        """Wait for a worker told to stop; kill it once its shutdown timeouts are over."""
        grace = (
            self.config.timeouts.timeout_graceful_shutdown
            + self.config.app_options.lifespan_shutdown_timeout
            + STOP_MARGIN
        )
        try:
            await asyncio.wait_for(asyncio.shield(worker.exited), grace)
        except asyncio.TimeoutError:
            logger.warning("Worker process [%d] did not stop; killing it", worker.pid)
            with contextlib.suppress(ProcessLookupError):
                worker.proc.kill()
            await worker.exited

    def _take_udp(self, worker: Worker) -> None:
        self._tell(worker, MSG_TAKE_UDP)

    def _tell(self, worker: Worker, message: bytes) -> bool:
        """Send ``message`` down the worker's stdin; False when it cannot be."""
        stdin = worker.proc.stdin
        if stdin is None or worker.exited.done():
            return False
        try:
            stdin.write(message)
            stdin.flush()
        except OSError:
            return False
        return True

    def _stop_replaced(self, worker: Worker) -> None:
        """Stop a worker that has been replaced, as a restart (not a shutdown)."""
        worker.stopping = True
        if worker.watchdog is not None:
            worker.watchdog.cancel()
            worker.watchdog = None
        if not self._tell(worker, MSG_RESTART):
            self._terminate(worker, signal.SIGTERM)

    async def _rolling_restart(self) -> None:
        """SIGHUP: every worker replaced, one at a time, each new one ready first."""
        logger.info("Restarting %d worker(s) one by one", len(self._slots))
        for slot in self._slots:
            old = slot.worker
            if not await self._replace(slot, old):
                if self._stop is None or self._stop.is_set():
                    return
                logger.error("Restart stopped: the remaining workers keep running")
                return
        logger.info("Restart complete")

    def _terminate(self, worker: Worker, sig: int) -> None:
        worker.stopping = True
        if worker.watchdog is not None:
            worker.watchdog.cancel()
            worker.watchdog = None
        if not worker.exited.done():
            with contextlib.suppress(ProcessLookupError):
                worker.proc.send_signal(sig)

    async def _stop_all(self) -> None:
        workers = list(self._workers)
        for worker in workers:
            self._terminate(worker, signal.SIGTERM)
        if not workers:
            return
        logger.info("Stopping %d worker(s)", len(workers))
        grace = (
            self.config.timeouts.timeout_graceful_shutdown
            + self.config.app_options.lifespan_shutdown_timeout
            + STOP_MARGIN
        )
        waiting = [w.exited for w in workers]
        _, pending = await asyncio.wait(waiting, timeout=grace)
        if pending:
            for worker in workers:
                if not worker.exited.done():
                    logger.warning("Worker process [%d] did not stop; killing it", worker.pid)
                    with contextlib.suppress(ProcessLookupError):
                        worker.proc.kill()
            await asyncio.wait(pending, timeout=5)

    # ------------------------------------------------------------ signals and sockets

    def _install_signals(self, loop: asyncio.AbstractEventLoop) -> list[int]:
        if threading.current_thread() is not threading.main_thread():
            return []
        installed: list[int] = []
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGUSR1):
            loop.add_signal_handler(sig, self._on_signal, sig)
            installed.append(sig)
        return installed

    def reload_certificates(self) -> None:
        """Every worker reads its certificate files again (SIGUSR1); safe from any thread."""
        loop = self._loop
        if loop is not None and not loop.is_closed():
            with contextlib.suppress(RuntimeError):  # the loop closed meanwhile
                loop.call_soon_threadsafe(self._forward_certificate_signal)

    def _forward_certificate_signal(self) -> None:
        """SIGUSR1 to the workers that serve; one still starting reads the files anyway.

        Not to a starting one: until its handler is installed, SIGUSR1 would kill it.
        """
        for worker in list(self._workers):
            ready = worker.ready.done() and worker.ready.result()
            if ready and not worker.stopping and not worker.exited.done():
                with contextlib.suppress(ProcessLookupError):
                    worker.proc.send_signal(signal.SIGUSR1)

    def _on_signal(self, sig: int) -> None:
        name = signal.Signals(sig).name
        if sig == signal.SIGUSR1:
            logger.info("Received SIGUSR1; workers reload the TLS certificate")
            self._forward_certificate_signal()
            return
        if sig == signal.SIGHUP:
            if self._stop is not None and not self._stop.is_set():
                logger.info("Received SIGHUP; restarting workers")
                self._spawn_task(self._rolling_restart())
            return
        assert self._stop is not None
        if self._stop.is_set():
            logger.warning("Received %s again; workers close all connections now", name)
            for worker in list(self._workers):
                with contextlib.suppress(ProcessLookupError):
                    worker.proc.send_signal(sig)
            return
        logger.info("Received %s; stopping workers gracefully", name)
        self._stop.set()


class WorkerStartError(StartupError):
    """No worker could start; the supervisor exits with the worker's exit code."""

    def __init__(self, code: int) -> None:
        super().__init__("no worker process could start (see the error above)")
        self.exit_code = code
