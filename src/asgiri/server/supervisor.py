"""``--workers N``: one supervisor process, N worker processes sharing its sockets.

The supervisor binds the listening sockets once and starts each worker as a
fresh interpreter (:mod:`asgiri.server.process`, as the reloader does) that
inherits them and runs the ordinary :class:`~asgiri.server.server.Server`.
The supervisor never imports the app.

Why one shared listening socket rather than ``SO_REUSEPORT`` per worker: the
kernel keeps one accept queue per socket.  With a socket per worker, a worker
that stops takes its queue with it and the connections waiting in it are
reset; with one shared socket, a worker that stops only closes its own file
descriptor, the queue lives on in the supervisor and the other workers, and
whatever waits in it is accepted by them.  That is what lets a worker be
stopped (SIGHUP, ``--limit-max-requests``) without dropping a connection.

Each worker reports on a pipe of its own, one byte per message:

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
Until some worker has been ready once, a worker that fails to start stops
the supervisor with that worker's exit code: an app that cannot even be
imported is a deployment error to report, not something to retry forever.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import errno
import logging
import os
import pickle
import random
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import IO, TYPE_CHECKING, Any

from ..config import (
    SUPPORTED_HTTP_VERSIONS,
    Config,
    HttpProtocolVersion,
    WorkersConfig,
    parse_host_port,
)
from ..errors import BindError, StartupError
from . import reload
from .listeners import Listener, bind_sockets
from .process import spawn
from .recycling import WorkerRecycling

if TYPE_CHECKING:
    from .server import Server

logger = logging.getLogger("asgiri.error")

MSG_READY = b"R"
MSG_HEARTBEAT = b"H"
MSG_MAX_REQUESTS = b"M"
#: Supervisor to worker (on its stdin): the slot's UDP sockets are yours now.
MSG_TAKE_UDP = b"U"
#: Supervisor to worker: you are being replaced (rolling restart, recycling):
#: shut down gracefully, WebSockets with 1012 (service restart).
MSG_RESTART = b"X"

#: A worker that lived at least this long did not die "quickly": the back-off resets.
STABLE_UPTIME = 10.0
BACKOFF_FIRST = 0.5
BACKOFF_MAX = 30.0
#: Extra seconds a worker gets to start, on top of the lifespan startup timeout
#: (importing a large app, opening TLS files).
STARTUP_MARGIN = 60.0
#: Extra seconds a stopping worker gets beyond its own shutdown timeouts.
STOP_MARGIN = 5.0

_WORKER_CODE = "from asgiri.server.supervisor import worker_main; worker_main()"


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
        self._recycling = WorkerRecycling(config.workers, self._retire)
        self._child_config = config
        if reload.IN_CHILD:
            return  # see run(): a worker importing such a module serves it already
        if config.tls.ssl_context is not None:
            raise ValueError(
                "workers cannot be combined with ssl_context (it cannot be passed to a "
                "worker process); use certfile/keyfile or cert_data/key_data"
            )
        self.target, self.app_dir = reload.import_target(config.app, config.app_options.app_dir)

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

    def run(self, server: Server | None = None) -> None:
        """Bind, start the workers, supervise them until asked to stop."""
        if reload.IN_CHILD:
            # Reached while a worker imports an app module that starts a
            # supervised server at import time: the worker serves it already.
            return
        self._slots = [_Slot(i) for i in range(self.count)]
        listeners, udp = self._bind()
        try:
            if server is not None:
                server.listeners = listeners
            asyncio.run(self._main(listeners, server))
        finally:
            for listener in listeners:
                listener.close()
            for sock in udp:
                sock.close()
            if server is not None:
                server.started.clear()
            logger.info("Stopped supervisor process [%d]", os.getpid())
        if self._exit_code:
            raise WorkerStartError(self._exit_code)

    # ------------------------------------------------------------ main loop

    async def _main(self, listeners: list[Listener], server: Server | None) -> None:
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
                host, port = sock.getsockname()[:2]
                logger.info(
                    "Supervisor listening on udp %s:%d (h3), one SO_REUSEPORT socket per worker",
                    f"[{host}]" if ":" in host else host,
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
            if server is not None:
                self._spawn_task(self._mark_started(server))
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

    async def _mark_started(self, server: Server) -> None:
        """``Server.started`` for API users: set once every worker is ready."""
        results = await asyncio.gather(
            *(slot.worker.ready for slot in self._slots if slot.worker is not None)
        )
        if all(results):
            server.started.set()

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
            proc = spawn(_WORKER_CODE, spec, [*self._fds, *udp_fds, write_fd])
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

    def _bind(self) -> tuple[list[Listener], list[socket.socket]]:
        """The shared listening sockets, and each slot's UDP sockets for HTTP/3.

        With ``port=0`` the UDP port is the one the kernel picked for TCP, which
        may be taken for UDP; then both are bound again on another pick.
        """
        config = self.config
        for attempt in range(10):
            listeners: list[Listener] = []
            if config.http.http_version is not HttpProtocolVersion.HTTP_3:
                listeners = bind_sockets(config.bind, config.port)
            try:
                return listeners, self._bind_udp(listeners)
            except UDPPortInUse:
                for listener in listeners:
                    listener.close()
                for slot in self._slots:
                    slot.udp.clear()
                if (
                    config.port != 0
                    or getattr(config.http, "http3_port", None) is not None
                    or config.quic.quic_bind
                ):
                    raise
                if attempt == 9:
                    raise
        raise AssertionError("unreachable")

    def _bind_udp(self, listeners: list[Listener]) -> list[socket.socket]:
        """One ``SO_REUSEPORT`` UDP socket per slot and TCP listener, for HTTP/3.

        Every worker must read only the datagrams of its own QUIC connections.
        The kernel spreads datagrams over a reuseport group by a hash of the
        4-tuple, so a connection stays with one socket while the client's
        address stays the same.  The supervisor keeps each slot's socket for
        its whole life and hands it to every worker of that slot, so the group
        never changes size and replacing one worker does not move the other
        workers' connections.  The limits are in docs/workers.md.
        """
        config = self.config
        http = config.http
        if HttpProtocolVersion.HTTP_3 not in SUPPORTED_HTTP_VERSIONS or not http.enable_http3:
            return []
        if config.quic.quic_bind:
            return self._bind_udp_groups(
                [parse_host_port("quic_bind", address) for address in config.quic.quic_bind]
            )
        if config.bind.uds or config.bind.fd is not None:
            return []  # HTTP/3 is served next to a TCP host:port only
        port_option = getattr(http, "http3_port", None)
        # (host, port) of each UDP group: next to each TLS TCP listener, or alone with --http 3.
        targets: list[tuple[str, int]] = [
            (
                listener.sock.getsockname()[0],
                port_option if port_option is not None else listener.port or 0,
            )
            for listener in listeners
            if listener.kind == "tcp" and listener.tls(config.tls.enabled)
        ]
        if not listeners:
            alone = port_option if port_option is not None else config.port
            targets.append((config.bind.host, alone))
        return self._bind_udp_groups(targets)

    def _bind_udp_groups(self, targets: list[tuple[str, int]]) -> list[socket.socket]:
        """A reuseport group per (host, port), one socket in it per slot."""
        opened: list[socket.socket] = []
        try:
            for host, port in targets:
                for slot in self._slots:
                    sock = bind_reuseport_udp(host, port)
                    port = sock.getsockname()[1]  # port 0: the others join the first's
                    slot.udp.append(sock)
                    opened.append(sock)
        except BaseException:
            for sock in opened:
                sock.close()
            raise
        return opened


def bind_reuseport_udp(host: str, port: int) -> socket.socket:
    """A non-blocking UDP socket in the ``SO_REUSEPORT`` group of ``host:port``."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_DGRAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        if exc.errno == errno.EADDRINUSE:
            raise UDPPortInUse(f"UDP address {host}:{port} (HTTP/3) is already in use") from None
        message = f"cannot bind UDP {host}:{port} for HTTP/3: {exc.strerror or exc}"
        raise BindError(message) from None
    sock.setblocking(False)
    return sock


class UDPPortInUse(BindError):
    """The UDP port for HTTP/3 is taken (with ``port=0``: the TCP port the kernel picked)."""


class WorkerStartError(StartupError):
    """No worker could start; the supervisor exits with the worker's exit code."""

    def __init__(self, code: int) -> None:
        super().__init__("no worker process could start (see the error above)")
        self.exit_code = code


# ---------------------------------------------------------------- worker side


class _StatusPipe:
    """The worker's end of the pipe to its supervisor."""

    def __init__(self, fd: int) -> None:
        self.fd = fd
        os.set_blocking(fd, False)

    def send(self, message: bytes) -> None:
        # A full pipe means the supervisor is not reading: nothing to add then.
        with contextlib.suppress(BlockingIOError, BrokenPipeError, OSError):
            os.write(self.fd, message)


def worker_main() -> None:
    """Entry point of a worker process started by the supervisor."""
    reload.IN_CHILD = True
    from .server import Server, WorkerHooks

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

    def parent_watch() -> None:
        # Unbuffered: a daemon thread must not hold the buffered reader's lock
        # at interpreter exit.  pickle.load consumed everything the parent sent.
        with contextlib.suppress(OSError):
            while data := os.read(stdin.fileno(), 4096):
                if MSG_TAKE_UDP in data and loops:
                    with contextlib.suppress(RuntimeError):  # the loop is closing
                        loops[0].call_soon_threadsafe(take_udp)
                if MSG_RESTART in data:
                    server.request_shutdown(restart=True)
        server.request_shutdown()

    threading.Thread(target=parent_watch, daemon=True).start()
    try:
        server.run()
    except StartupError as exc:
        print(f"Error: {exc}", file=sys.stderr)
        raise SystemExit(exc.exit_code) from None
    except KeyboardInterrupt:
        pass


def _inherited(fd: int) -> Listener:
    sock = socket.socket(fileno=fd)
    sock.setblocking(False)
    return Listener(sock, "unix" if sock.family == socket.AF_UNIX else "tcp")


def _inherited_udp(fd: int) -> socket.socket:
    sock = socket.socket(fileno=fd)
    sock.setblocking(False)
    return sock
