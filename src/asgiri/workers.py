"""gunicorn worker classes: ``gunicorn -k asgiri.workers.AsgiriWorker module:app``.

gunicorn's arbiter then does what asgiri's own supervisor does with
``--workers``: it binds the sockets, forks the workers, replaces dead ones,
reloads on SIGHUP and kills workers that stop calling in.  Each worker runs
an ordinary asgiri :class:`~asgiri.server.server.Server` on the sockets it
inherited, configured from gunicorn's settings:

============================  =====================================
gunicorn setting              asgiri option
============================  =====================================
``--keep-alive``              ``timeout_keep_alive``
``--graceful-timeout``        ``timeout_graceful_shutdown``
``--max-requests`` (+jitter)  ``limit_max_requests``: the worker
                              stops, gunicorn starts a new one
``--limit-request-line``      ``limit_request_line``
``--limit-request-fields``    ``limit_request_fields``
``--certfile``/``--keyfile``  TLS (HTTP/2 offered through ALPN);
                              SIGUSR1 to the arbiter reopens the
                              logs and reloads the certificate
``--log-level``               level of the ``asgiri.error`` logger
``--access-logfile``          access log on, to gunicorn's handler
============================  =====================================

For any other asgiri option, subclass the worker and set
:attr:`AsgiriWorker.options`.  gunicorn is an optional dependency:
``pip install 'asgiri[gunicorn]'``.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import socket
import sys
from typing import Any, ClassVar

from gunicorn.workers.base import Worker

from .config import Config, LoopChoice
from .errors import StartupError
from .server.listeners import Listener
from .server.server import Server, WorkerHooks, run_coroutine

__all__ = ["AsgiriUVLoopWorker", "AsgiriWorker"]

#: gunicorn's exit code for a worker that could not boot: the arbiter stops.
_WORKER_BOOT_ERROR = 3


class AsgiriWorker(Worker):
    """A gunicorn worker serving an ASGI app with asgiri (HTTP/1.1 and HTTP/2)."""

    #: Event loop of the worker; the uvloop variant changes only this.
    loop_choice: ClassVar[LoopChoice] = LoopChoice.ASYNCIO
    #: Extra asgiri options (``Server`` keyword names) for a subclass to set.
    options: ClassVar[dict[str, Any]] = {}

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._server: Server | None = None
        self._route_logs()

    def _route_logs(self) -> None:
        """asgiri's loggers write through gunicorn's handlers (its files, its format)."""
        error = logging.getLogger("asgiri.error")
        error.handlers = list(self.log.error_log.handlers)
        error.setLevel(self.log.error_log.level)
        error.propagate = False
        access = logging.getLogger("asgiri.access")
        if self.cfg.accesslog:
            access.handlers = list(self.log.access_log.handlers)
            access.setLevel(logging.INFO)
        access.propagate = False

    def init_signals(self) -> None:
        """The server's loop handles SIGTERM/SIGINT itself (gunicorn's would not wake it)."""
        for sig in self.SIGNALS:
            signal.signal(sig, signal.SIG_DFL)
        signal.signal(signal.SIGUSR1, self.handle_usr1)
        signal.siginterrupt(signal.SIGUSR1, False)

    def handle_usr1(self, sig: int, frame: Any) -> None:
        """gunicorn's SIGUSR1 (reopen the log files), and the TLS certificate read again."""
        super().handle_usr1(sig, frame)
        if self._server is not None:
            self._server.reload_certificates()

    def config(self) -> Config:
        """The asgiri configuration this worker serves with, from gunicorn's settings."""
        cfg = self.cfg
        options: dict[str, Any] = {
            "timeout_keep_alive": max(float(cfg.keepalive), 0.001),
            "timeout_graceful_shutdown": float(cfg.graceful_timeout),
            "limit_request_fields": max(1, int(cfg.limit_request_fields)),
            "log_level": str(cfg.loglevel).lower(),
            "access_log": bool(cfg.accesslog),
            "loop": self.loop_choice,
        }
        if cfg.limit_request_line > 0:
            options["limit_request_line"] = max(16, int(cfg.limit_request_line))
        if self.max_requests < sys.maxsize:
            options["limit_max_requests"] = int(self.max_requests)
        if cfg.is_ssl:
            options["certfile"] = cfg.certfile
            options["keyfile"] = cfg.keyfile
            if cfg.ca_certs:
                options["ca_certs"] = cfg.ca_certs
            options["cert_reqs"] = int(cfg.cert_reqs)
            if cfg.ciphers:
                options["ciphers"] = cfg.ciphers
        options.update(self.options)
        return Config.from_options(self.wsgi, **options)

    def run(self) -> None:
        listeners = [
            Listener(s.sock, "unix" if s.sock.family == socket.AF_UNIX else "tcp")
            for s in self.sockets
        ]
        # SIGUSR1 stays gunicorn's (reopen the log files); handle_usr1 adds the certificate.
        hooks = WorkerHooks(listeners=listeners, on_started=self._started, certificate_signal=False)
        try:
            server = self._server = Server.from_config(self.config(), hooks)
            run_coroutine(server.serve(), self.loop_choice)
        except (StartupError, ValueError) as exc:
            self.log.error("Worker failed to start: %s", exc)
            sys.exit(_WORKER_BOOT_ERROR)

    def _started(self, loop: asyncio.AbstractEventLoop) -> None:
        """Call in to the arbiter from the loop: a blocked loop stops calling and is killed."""
        interval = max(self.timeout / 2, 0.5) if self.timeout else 1.0

        def beat() -> None:
            self.notify()
            if self.ppid != os.getppid():
                self.log.info("Parent changed, shutting down: %s", self)
                if self._server is not None:
                    self._server.request_shutdown()
                return
            loop.call_later(interval, beat)

        beat()
        # gunicorn's quick stop (SIGQUIT, what the arbiter sends on SIGINT):
        # stop accepting and drain like SIGTERM; the arbiter kills what is left
        # after its graceful timeout.
        server = self._server
        if server is not None:
            loop.add_signal_handler(signal.SIGQUIT, server.request_shutdown)


class AsgiriUVLoopWorker(AsgiriWorker):
    """:class:`AsgiriWorker` on uvloop (``pip install 'asgiri[uvloop]'``)."""

    loop_choice: ClassVar[LoopChoice] = LoopChoice.UVLOOP
