"""The :class:`Server`: start-up, listeners, signals and graceful shutdown."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import os
import signal
import socket
import ssl
import sys
import tempfile
import threading
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass, field
from typing import Any

from ..asgi.lifespan import Lifespan
from ..asgi.loader import load_app
from ..config import Config, HttpProtocolVersion, LifespanPolicy, LoopChoice, parse_host_port
from ..errors import LifespanStartupError, StartupError
from ..logging import configure_logging
from ..ssl_utils import spki_sha256_base64
from .certreload import CertificateReloader
from .context import ServerContext
from .h1 import H1Protocol
from .h3 import QuicListener, quic_configuration
from .listeners import Listener, UDPPortInUse, bind_sockets, bind_udp
from .memory import HeapTrimmer
from .pidfile import pid_file
from .process import in_child
from .proxy_protocol import ProxyProtocolListener
from .reload import Reloader
from .supervisor import Supervisor
from .tls import TLSInfo, build_ssl_context, read_server_cert

logger = logging.getLogger("asgiri.error")

_SIGNALS = (signal.SIGINT, signal.SIGTERM)


@dataclass
class WorkerHooks:
    """What a process manager (asgiri's supervisor, gunicorn) plugs into a server it runs.

    The manager owns the listening sockets and the decision when a worker is
    replaced; the server only serves and reports.
    """

    #: Sockets bound by the manager, served instead of binding the configured address
    #: (empty under ``--http 3``, which serves only the UDP sockets).
    listeners: list[Listener] = field(default_factory=list)
    #: Called in the server's loop once the listeners accept (readiness, heartbeats).
    on_started: Callable[[asyncio.AbstractEventLoop], None] | None = None
    #: Called instead of stopping when ``--limit-max-requests`` is reached, so the
    #: manager can start the replacement before this worker stops.
    on_max_requests: Callable[[], None] | None = None
    #: UDP sockets for HTTP/3 bound by the manager (one ``SO_REUSEPORT`` socket per
    #: worker slot); empty when HTTP/3 is off or not in this build.
    udp_sockets: list[socket.socket] = field(default_factory=list)
    #: Do not read ``udp_sockets`` yet: the previous worker of this slot still
    #: drains its QUIC connections on them.  The server then sets
    #: :attr:`release_udp`, which the manager calls (in the loop) once they are free.
    udp_deferred: bool = False
    release_udp: Callable[[], None] | None = None
    #: SIGUSR1 reloads the certificate (asgiri's workers); False where the manager
    #: gives the signal another meaning and calls :meth:`Server.reload_certificates`.
    certificate_signal: bool = True


class _Milestone(threading.Event):
    """A ``threading.Event`` that also sets the server's "settled" event.

    :meth:`Server.wait_started` waits for started *or* stopped, whichever
    comes first; ``started`` is set by the server and by the reloader and
    supervisor that run it, so both events report to a third one.
    """

    def __init__(self, settled: threading.Event) -> None:
        super().__init__()
        self._settled = settled
        #: Set during this run (``started`` is cleared again on shutdown).
        self.reached = False

    def set(self) -> None:
        self.reached = True
        super().set()
        self._settled.set()


class LifespanHandler:
    """The lifespan state of a server, under asgiri 0.3's names (``server.lifespan_handler``).

    The server drives the ASGI lifespan protocol itself (``asgi/lifespan.py``);
    this only shows how it went.  The events are ``asyncio.Event``s of the
    server's loop: await them from code running in that loop (next to
    ``serve()``/``a_run()``); other threads use ``server.started`` and
    ``server.wait_started()``.
    """

    def __init__(self, policy: LifespanPolicy, startup_timeout: float) -> None:
        self.policy = policy
        self.startup_timeout = startup_timeout
        #: Set once start-up is over: completed, failed (``startup_failed``), or
        #: skipped (lifespan off, or an app without lifespan under AUTO).
        self.startup_complete = asyncio.Event()
        #: Set once the app has answered the lifespan shutdown.
        self.shutdown_complete = asyncio.Event()
        self.startup_failed = False
        #: Why start-up failed: the app's ``lifespan.startup.failed`` message, or the error.
        self.startup_error: str | None = None


class Server:
    """An ASGI server.

    ``run()`` blocks until SIGINT/SIGTERM (or :meth:`request_shutdown`);
    ``await serve()`` does the same inside a running event loop.

    The named parameters are asgiri 0.3's, with its defaults, so code written
    for it runs unchanged; each one sets a :class:`~asgiri.config.Config`
    option (``shutdown_timeout`` is ``timeout_graceful_shutdown``,
    ``reload_delay_ms`` is ``reload_delay`` in seconds, ``reload_ignore_patterns``
    is ``reload_excludes``).  Every other keyword is a config option with the
    CLI's name (``timeout_keep_alive=``, ``limit_concurrency=``...).
    """

    def __init__(
        self,
        app: Any,
        host: str | None = None,
        port: int | None = None,
        http_version: HttpProtocolVersion | str | None = None,
        ssl_context: ssl.SSLContext | None = None,
        certfile: str | os.PathLike[str] | None = None,
        keyfile: str | os.PathLike[str] | None = None,
        cert_data: bytes | None = None,
        key_data: bytes | None = None,
        lifespan: LifespanPolicy | str | None = None,
        lifespan_startup_timeout: float = 10.0,
        enable_http3: bool | None = None,
        http3_port: int | None = None,
        reuse_port: bool = False,
        shutdown_timeout: float = 30.0,
        ws_ping_interval: float | None = 20.0,
        ws_ping_timeout: float | None = 20.0,
        reload: bool = False,
        reload_dirs: Sequence[str | os.PathLike[str]] | None = None,
        reload_delay_ms: int = 200,
        reload_ignore_patterns: Sequence[str] | None = None,
        **options: Any,
    ) -> None:
        # The named parameters are the asgiri 0.3 signature; each lands on one
        # Config option, so the dataclass stays the only place that validates.
        given = {
            "host": host,
            "port": port,
            "http_version": http_version,
            "ssl_context": ssl_context,
            "certfile": os.fspath(certfile) if certfile is not None else None,
            "keyfile": os.fspath(keyfile) if keyfile is not None else None,
            "cert_data": cert_data,
            "key_data": key_data,
            "lifespan": lifespan,
            "enable_http3": enable_http3,
            # Only passed when given: a build without HTTP/3 has no such option.
            "http3_port": http3_port,
            "reload_dirs": [os.fspath(d) for d in reload_dirs] if reload_dirs is not None else None,
        }
        for name, value in given.items():
            if value is not None:
                options[name] = value
        options["lifespan_startup_timeout"] = lifespan_startup_timeout
        options["reuse_port"] = reuse_port
        options["ws_ping_interval"] = ws_ping_interval
        options["ws_ping_timeout"] = ws_ping_timeout
        options["reload"] = reload
        _rename(options, "shutdown_timeout", shutdown_timeout, 30.0, "timeout_graceful_shutdown")
        _rename(options, "reload_delay_ms", reload_delay_ms, 200, "reload_delay", _ms_to_seconds)
        if reload_ignore_patterns is not None:
            options["reload_excludes"] = [
                *options.get("reload_excludes", ()),
                *reload_ignore_patterns,
            ]
        env_file = options.get("env_file")
        if isinstance(env_file, str) and env_file:
            # Before the config is built: the file may set FORWARDED_ALLOW_IPS and the like.
            from ..environment import apply_env_file

            apply_env_file(env_file)
        self._setup(Config.from_options(app, **options))
        # This process made the configuration: it (not a reloader child or a
        # worker, which get a copy) writes the certificate file for clients.
        self._owns_temp_cert = True

    @classmethod
    def from_config(cls, config: Config, hooks: WorkerHooks | None = None) -> Server:
        """A server for an already built :class:`Config` (reloader child, worker process)."""
        server = cls.__new__(cls)
        server._setup(config, hooks)
        return server

    def _setup(self, config: Config, hooks: WorkerHooks | None = None) -> None:
        self.config = config
        self._settled = threading.Event()
        #: Set once the listeners accept connections (usable from other threads).
        self.started = _Milestone(self._settled)
        #: Set once run()/serve() has returned, for any reason (start-up failure included).
        self.stopped = _Milestone(self._settled)
        #: The exception that stopped the server from starting; None otherwise.
        self.startup_error: BaseException | None = None
        #: run()/serve() has begun: ``port`` is the bound port from now on.
        self._ran = False
        app_options = config.app_options
        self.lifespan_handler = LifespanHandler(
            app_options.lifespan, app_options.lifespan_startup_timeout
        )
        #: The SSLContext built for the TCP listener (when none was given).
        self._built_ssl_context: ssl.SSLContext | None = None
        #: The certificate made for HTTP/3 without one, as a file for clients to
        #: trust while the server runs (the key stays in memory); None otherwise.
        self.temp_certfile: str | None = None
        self._owns_temp_cert = False
        self.listeners: list[Listener] = []
        #: UDP sockets serving HTTP/3, with the TCP listener each one sits next to.
        self.quic_sockets: list[tuple[socket.socket, Listener | None]] = []
        self._h3_off_reason: str | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._stop_requested = False
        self._restart = False
        self._force = False
        self._ctx: ServerContext | None = None
        self._hooks = hooks
        self._reloader: Reloader | None = None
        self._metrics: Any = None
        self._supervisor: Supervisor | None = None
        self._certs: CertificateReloader | None = None
        if hooks is not None:
            return  # a worker process: its manager (supervisor, gunicorn) does the rest
        if config.reload.reload:
            self._reloader = Reloader(config)
        elif config.workers.count is not None:
            self._supervisor = Supervisor(config)

    # ------------------------------------------------------------ public API

    @property
    def port(self) -> int | None:
        """The port: as configured until run()/serve() begins, then the one bound.

        With ``port=0`` the bound port is the one the kernel picked (TCP; UDP
        under HTTP/3 alone).  None while nothing is bound: start-up failed,
        or the server has stopped.  Never raises.
        """
        if not self._ran:
            return self.config.port
        for listener in self.listeners:
            if listener.kind != "unix":
                port = _bound_port(listener.sock)
                if port is not None:
                    return port
        return self.http3_port

    @property
    def http3_port(self) -> int | None:
        """The UDP port serving HTTP/3; None when HTTP/3 is off or nothing is bound.

        Before run()/serve() begins: the port HTTP/3 is configured to use.
        """
        if not self._ran:
            http = self.config.http
            if not http.enable_http3:
                return None
            return http.http3_port if http.http3_port is not None else self.config.port
        for sock, _ in self.quic_sockets:
            port = _bound_port(sock)
            if port is not None:
                return port
        return None

    def wait_started(self, timeout: float | None = None) -> bool:
        """Block until the server serves (True) or start-up fails (its error is raised).

        For a server whose ``run()`` runs in another thread: unlike
        ``started.wait()``, it does not block forever when start-up fails
        (a port in use, a lifespan startup that fails).  False when
        ``timeout`` passes first, or the server stopped without an error
        before it was seen serving.
        """
        self._settled.wait(timeout)
        if self.started.is_set():
            return True
        if self.startup_error is not None:
            raise self.startup_error
        return False

    # asgiri 0.3's attributes: the constructor's arguments, read from the one config.

    @property
    def host(self) -> str:
        """The address bound (``host=None`` is 127.0.0.1)."""
        return self.config.bind.host

    @property
    def http_version(self) -> HttpProtocolVersion:
        return self.config.http.http_version

    @property
    def enable_http3(self) -> bool:
        """Whether HTTP/3 is served: as given, or the default for the mode and TLS."""
        return bool(self.config.http.enable_http3)

    @property
    def certfile(self) -> str | None:
        return self.config.tls.certfile

    @property
    def keyfile(self) -> str | None:
        return self.config.tls.keyfile

    @property
    def cert_data(self) -> bytes | None:
        data = self.config.tls.cert_data
        return data.encode() if isinstance(data, str) else data

    @property
    def key_data(self) -> bytes | None:
        data = self.config.tls.key_data
        return data.encode() if isinstance(data, str) else data

    @property
    def ssl_context(self) -> ssl.SSLContext | None:
        """The context given, or the one the server built from the certificate once it runs."""
        return self.config.tls.ssl_context or self._built_ssl_context

    @property
    def reuse_port(self) -> bool:
        return self.config.bind.reuse_port

    @property
    def shutdown_timeout(self) -> float:
        return self.config.timeouts.timeout_graceful_shutdown

    @property
    def ws_ping_interval(self) -> float | None:
        return self.config.websocket.ws_ping_interval

    @property
    def ws_ping_timeout(self) -> float | None:
        return self.config.websocket.ws_ping_timeout

    @property
    def reload(self) -> bool:
        return self.config.reload.reload

    @property
    def reload_dirs(self) -> list[str]:
        """The directories watched; empty means the default (``--app-dir``)."""
        return self.config.reload.reload_dirs

    @property
    def reload_delay_ms(self) -> int:
        return round(self.config.reload.reload_delay * 1000)

    @property
    def reload_ignore_patterns(self) -> list[str]:
        return self.config.reload.reload_excludes

    @property
    def should_exit(self) -> asyncio.Event:
        """The event that stops the server when set (asgiri 0.3's name).

        ``server.should_exit.set()`` works from code in the server's loop, and
        before the server runs (it then stops as soon as it has started);
        from another thread, :meth:`request_shutdown` is the thread-safe way.
        """
        if self._stop is None:
            self._stop = asyncio.Event()
        return self._stop

    @property
    def metrics_port(self) -> int | None:
        """The port of the metrics endpoint (useful with ``metrics_bind="host:0"``)."""
        return self._metrics.port if self._metrics is not None else None

    def run(self) -> None:
        """Serve until asked to stop; works from the main thread or any other.

        In the main thread SIGINT/SIGTERM stop the server; in any other thread
        signals are left alone and :meth:`request_shutdown` stops it.  With
        ``reload=True`` this process only watches files and runs the server in
        a child process, restarted on every change; with ``workers=N`` it
        supervises N worker processes that share its sockets.  ``pid_file``
        names this process for as long as it runs.
        """
        self._begin_run()
        try:
            with pid_file(self._pid_file()):
                self._run()
        except Exception as exc:
            self._record_startup_error(exc)
            raise
        finally:
            self._remove_temp_cert()
            self.stopped.set()

    def _pid_file(self) -> str | None:
        """``pid_file`` for the process users signal: not in workers or a reloader's child."""
        if self._hooks is not None or in_child():
            return None
        return self.config.runtime.pid_file

    def _run(self) -> None:
        log = self.config.logging
        configure_logging(
            log.log_level,
            log.access_log,
            log.log_config,
            access_json=self.config.access.access_log_json,
            use_colors=log.use_colors,
        )
        self.config.make_certificate()
        self._write_temp_cert()
        if self._reloader is not None:
            if not self._stop_requested:
                self._reloader.run(self)
        elif self._supervisor is not None:
            if not self._stop_requested:
                self._supervisor.run(self)
        else:
            run_coroutine(self.serve(), self.config.runtime.loop)

    def request_shutdown(self, *, restart: bool = False) -> None:
        """Ask the server to shut down gracefully.  Safe to call from any thread.

        Stops accepting, lets requests in flight finish (for at most
        ``shutdown_timeout`` seconds), runs the lifespan shutdown; ``run()``
        then returns.  Calling it before the server has started makes it stop
        as soon as it does.  ``restart``: this process is being replaced (a
        rolling restart), so open WebSockets are closed with 1012 (service
        restart, reconnect now) instead of 1001 (going away).
        """
        self._stop_requested = True
        if restart:
            self._restart = True
        if self._reloader is not None:
            self._reloader.request_shutdown()
        if self._supervisor is not None:
            self._supervisor.request_shutdown()
        loop, stop = self._loop, self._stop
        if loop is None or stop is None or loop.is_closed():
            return
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is loop:
            stop.set()
        else:
            loop.call_soon_threadsafe(stop.set)

    def reload_certificates(self) -> None:
        """Read ``certfile``/``keyfile``/``ca_certs`` again for new handshakes (what SIGUSR1 does).

        Safe to call from any thread; with ``workers`` it signals every worker.
        Connections already open keep their certificate, and files that do not
        load leave the current certificate in place (logged).
        """
        if self._supervisor is not None:
            self._supervisor.reload_certificates()
            return
        loop, certs = self._loop, self._certs
        if loop is None or certs is None or loop.is_closed():
            return
        loop.call_soon_threadsafe(certs.reload, "reload_certificates()")

    async def shutdown(self) -> None:
        """Ask for a graceful shutdown from inside the server's loop."""
        self.request_shutdown()

    async def a_run(self) -> None:
        """asgiri 0.3's name for :meth:`serve`."""
        await self.serve()

    async def serve(self) -> None:
        """Start, serve until asked to stop, then drain and shut down."""
        self._begin_run()
        try:
            self.config.make_certificate()
            self._write_temp_cert()
            await self._serve()
        except Exception as exc:
            self._record_startup_error(exc)
            raise
        finally:
            self._remove_temp_cert()
            self.stopped.set()

    def _begin_run(self) -> None:
        self._ran = True
        self.startup_error = None
        self.started.reached = False
        self.stopped.clear()
        self._settled.clear()

    def _write_temp_cert(self) -> None:
        """HTTP/3 alone without a certificate: say so, and write the one made for clients.

        Only the certificate is written (QUIC reads it and its key from
        memory): a client such as ``curl --cacert`` or aioquic can then trust
        exactly it.  The file is removed when run()/serve() returns.
        """
        note = self.config.selfcert_note
        cert = self.config.tls.cert_data
        if note is None or cert is None or not self._owns_temp_cert or self.temp_certfile:
            return
        fd, path = tempfile.mkstemp(prefix="asgiri-", suffix="-cert.pem")
        with os.fdopen(fd, "wb") as fh:
            fh.write(cert.encode() if isinstance(cert, str) else cert)
        self.temp_certfile = path
        logger.warning(
            "%s: serving a self-signed certificate for localhost made at start-up "
            "(development only); clients can trust it from %s, deleted on shutdown",
            note,
            path,
        )

    def _remove_temp_cert(self) -> None:
        path, self.temp_certfile = self.temp_certfile, None
        if path is not None:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)

    def _record_startup_error(self, exc: Exception) -> None:
        """Keep ``exc`` as ``startup_error`` when it ended the run before it served."""
        if not self.started.reached and self.startup_error is None:
            self.startup_error = exc

    async def _serve(self) -> None:
        config = self.config
        if self._reloader is not None:
            raise StartupError("reload needs Server.run(): serve() cannot restart its own process")
        if self._supervisor is not None:
            raise StartupError("workers need Server.run(): serve() runs in one process")
        try:
            # The environment's part of the configuration, read as the server starts.
            forwarded_allow_ips = config.proxy.allow_ips(os.environ)
        except ValueError as exc:
            raise StartupError(str(exc)) from None
        loop = asyncio.get_running_loop()
        self._loop = loop
        stop = self.should_exit
        if self._stop_requested:
            stop.set()
        app = load_app(
            config.app,
            factory=config.app_options.factory,
            app_dir=config.app_options.app_dir,
            interface=config.interface.interface,
            loop=loop,
            wsgi_max_workers=config.interface.wsgi_max_workers,
        )
        mode = config.http.http_version
        alpn = []
        if mode in (HttpProtocolVersion.AUTO, HttpProtocolVersion.HTTP_2):
            alpn.append("h2")
        if mode in (HttpProtocolVersion.AUTO, HttpProtocolVersion.HTTP_1_1):
            alpn.append("http/1.1")
        ssl_context = build_ssl_context(config.tls, alpn)
        self._built_ssl_context = ssl_context
        quic_config = None
        if self._h3_wanted():
            quic_config = quic_configuration(config)
        hooks = self._hooks
        if hooks is not None:
            self.listeners = hooks.listeners
            if quic_config is not None:
                tcp: list[Listener | None] = [
                    listener
                    for listener in self.listeners
                    if listener.kind == "tcp" and listener.tls(config.tls.enabled)
                ]
                if not tcp or config.quic.quic_bind:
                    tcp = [None] * len(hooks.udp_sockets)
                self.quic_sockets = list(zip(hooks.udp_sockets, tcp, strict=False))
        else:
            self._bind(quic_config is not None)
        app = self._own_routes(app)
        ctx = ServerContext(config, app, loop, forwarded_allow_ips=forwarded_allow_ips)
        self._ctx = ctx
        if ssl_context is not None:
            ctx.tls_info = TLSInfo(ssl_context, read_server_cert(config.tls))
        if config.tls.enabled:
            self._certs = CertificateReloader(config, ssl_context, alpn, quic_config, ctx)
        h3_port = self.http3_port
        if h3_port is not None and config.http.alt_svc and self.listeners:
            ctx.advertise_h3(h3_port, config.http.alt_svc_max_age)
        ctx.on_max_requests = self._max_requests_reached
        metrics_bind = config.metrics.metrics_bind
        if metrics_bind is not None:
            from .metrics import Metrics

            ctx.enable_metrics(Metrics())
        policy = config.app_options.lifespan
        lifespan = Lifespan(
            app,
            loop,
            enabled=policy is not LifespanPolicy.DISABLED,
            required=policy is LifespanPolicy.ENABLED,
        )
        handler = self.lifespan_handler
        servers: list[asyncio.AbstractServer | ProxyProtocolListener] = []
        quic_listeners: list[QuicListener] = []
        try:
            try:
                await lifespan.startup(config.app_options.lifespan_startup_timeout)
            except LifespanStartupError as exc:
                handler.startup_failed = True
                handler.startup_error = lifespan.failure or str(exc)
                raise
            finally:
                handler.startup_complete.set()
            if lifespan.running:
                ctx.state = lifespan.state

            def protocol(tls: bool) -> H1Protocol:
                connection = H1Protocol(ctx)
                if tls:
                    connection.handshake = ctx.track_handshake(connection)
                return connection

            for listener in self.listeners:
                # --bind http:// and https:// choose per listener; by default, TLS if configured.
                listener_ssl = ssl_context if listener.tls(ssl_context is not None) else None
                if config.proxy.proxy_protocol:
                    servers.append(ProxyProtocolListener(ctx, listener.sock, listener_ssl))
                    continue
                servers.append(
                    await loop.create_server(
                        functools.partial(protocol, listener_ssl is not None),
                        sock=listener.sock,
                        ssl=listener_ssl,
                        backlog=config.bind.backlog,
                    )
                )

            async def open_quic(quic: Any) -> None:
                for sock, _ in self.quic_sockets:
                    if ctx.shutting_down:
                        return
                    quic_listener = QuicListener(ctx, quic, sock)
                    await loop.create_datagram_endpoint(quic_listener.factory, sock=sock)
                    quic_listeners.append(quic_listener)

            if quic_config is not None:
                if hooks is not None and hooks.udp_deferred:
                    # The supervisor hands the UDP sockets over once the slot's
                    # previous worker has gone (see supervisor.py).
                    deferred = quic_config
                    pending: list[asyncio.Task[None]] = []

                    def release() -> None:
                        pending.append(loop.create_task(open_quic(deferred)))
                        logger.info("Serving HTTP/3 on the UDP sockets handed over")

                    hooks.release_udp = release
                else:
                    await open_quic(quic_config)
            if metrics_bind is not None and config.metrics.metrics_listen:
                from .metrics import start_metrics_listener

                self._metrics = await start_metrics_listener(loop, metrics_bind, ctx.metrics.render)
                logger.info(
                    "Prometheus metrics on http://%s:%d/metrics",
                    metrics_bind.rpartition(":")[0],
                    self._metrics.port,
                )
            # Handlers first: a signal sent as soon as "Listening on" is read
            # must find a graceful shutdown, not the default action.
            installed = self._install_signals(loop)
            if self._certs is not None and config.tls.ssl_watch:
                self._certs.watch(loop)
            self._log_started(ssl_context is not None)
            trimmer = HeapTrimmer(loop, config.runtime.memory_trim_interval)
            trimmer.start()
            self.started.set()
            if hooks is not None and hooks.on_started is not None:
                hooks.on_started(loop)
            try:
                await stop.wait()
                # The handlers stay installed while draining, so that a second
                # signal closes everything at once instead of killing the process.
                await self._drain(ctx, servers, quic_listeners)
            finally:
                trimmer.stop()
                self._remove_signals(loop, installed)
        finally:
            if self._certs is not None:
                self._certs.stop()
            for server in servers:
                server.close()
            for quic_listener in quic_listeners:
                quic_listener.close_transport()
            for listener in self.listeners:
                listener.close()
            for sock, _ in self.quic_sockets:
                sock.close()
            if self._metrics is not None:
                self._metrics.close()
                self._metrics = None
            lifespan_ran = lifespan.running
            await lifespan.shutdown(config.app_options.lifespan_shutdown_timeout)
            if lifespan_ran:
                handler.shutdown_complete.set()
            self.started.clear()
            logger.info("Finished server process [%d]", os.getpid())

    # ------------------------------------------------------------ internals

    def _own_routes(self, app: Any) -> Any:
        """The app behind the requests the server answers itself (asgi/routes.py)."""
        config = self.config
        if config.bind.redirect_http:
            from ..asgi.routes import redirect_to_https

            app = redirect_to_https(app, self._https_port())
        health_path = config.http.health_path
        if health_path is not None:
            from ..asgi.routes import health_endpoint

            app = health_endpoint(app, health_path, self._draining)
        return app

    def _https_port(self) -> int:
        """Where ``--redirect-http`` sends cleartext requests: the first TLS TCP listener's port."""
        tls = self.config.tls.enabled
        for listener in self.listeners:
            port = listener.port
            if port is not None and listener.tls(tls):
                return port
        raise StartupError("--redirect-http: no https:// TCP listener to redirect to")

    def _draining(self) -> bool:
        """Whether this server has begun its graceful shutdown (``--health-path`` says 503)."""
        ctx = self._ctx
        return ctx is not None and ctx.shutting_down

    def _max_requests_reached(self) -> None:
        hooks = self._hooks
        if hooks is not None and hooks.on_max_requests is not None:
            hooks.on_max_requests()
            return
        logger.warning("Maximum request limit reached; shutting down")
        self.request_shutdown()

    def _h3_wanted(self) -> bool:
        """Whether to open UDP for HTTP/3; when not, remember why for the log."""
        config = self.config
        http = config.http
        if http.http_version is HttpProtocolVersion.HTTP_3:
            return True
        if not http.enable_http3:
            self._h3_off_reason = config.http3_note  # None when turned off on purpose
            return False
        if http.http_version is not HttpProtocolVersion.AUTO:
            self._h3_off_reason = f"HTTP/3 is off: --http {http.http_version.option} was asked for"
        elif not config.tls.enabled:
            self._h3_off_reason = "HTTP/3 is off: it needs TLS (--ssl-certfile/--ssl-keyfile)"
        elif not (config.tls.certfile or config.tls.cert_data):
            self._h3_off_reason = (
                "HTTP/3 is off: QUIC needs the certificate files, not a ready ssl_context"
            )
        elif (config.bind.uds or config.bind.fd is not None) and not config.quic.quic_bind:
            self._h3_off_reason = "HTTP/3 is off: it is served next to a TCP host:port listener"
        else:
            return True
        return False

    def _bind(self, quic: bool) -> None:
        """Bind TCP, then UDP next to it.

        With ``port=0`` the kernel picks a TCP port whose UDP twin may be
        taken; then both are bound again on another pick (a few times).
        """
        config = self.config
        for attempt in range(10):
            if config.http.http_version is not HttpProtocolVersion.HTTP_3:
                self.listeners = bind_sockets(config.bind, config.port)
            try:
                if quic:
                    self._bind_quic()
                if config.bind.redirect_http:
                    self._https_port()  # refused here, where the sockets get closed
                return
            except BaseException as exc:
                for listener in self.listeners:
                    listener.close()
                self.listeners = []
                for sock, _ in self.quic_sockets:
                    sock.close()
                self.quic_sockets = []
                retry = (
                    isinstance(exc, UDPPortInUse)
                    and config.port == 0
                    and config.http.http3_port is None
                    and not config.quic.quic_bind
                    and attempt < 9
                )
                if not retry:
                    raise

    def _bind_quic(self) -> None:
        """A UDP socket next to each TLS TCP listener (same host, same port unless
        --http3-port), or at each ``--quic-bind`` address."""
        config = self.config
        if config.quic.quic_bind:
            for address in config.quic.quic_bind:
                udp_host, udp_port = parse_host_port("quic_bind", address)
                self.quic_sockets.append((bind_udp(udp_host, udp_port), None))
            return
        h3_port = config.http.http3_port
        host = config.bind.host
        if not self.listeners:
            port = h3_port if h3_port is not None else config.port
            self.quic_sockets.append((bind_udp(host, port), None))
            return
        for listener in self.listeners:
            if listener.port is None or not listener.tls(config.tls.enabled):
                continue  # QUIC is TLS: never next to a cleartext listener
            port = h3_port if h3_port is not None else listener.port
            self.quic_sockets.append((bind_udp(host, port), listener))
        if not self.quic_sockets:
            self._h3_off_reason = "HTTP/3 is off: no https:// TCP listener to serve it next to"

    def _log_started(self, tls: bool) -> None:
        http = self.config.http
        logger.info("Started server process [%d]", os.getpid())
        mode = http.http_version
        quic_by_listener = {id(tcp): sock for sock, tcp in self.quic_sockets if tcp is not None}
        for listener in self.listeners:
            secure = listener.tls(tls)
            protocols = []
            if mode in (HttpProtocolVersion.AUTO, HttpProtocolVersion.HTTP_1_1):
                protocols.append("h1")
            if mode in (HttpProtocolVersion.AUTO, HttpProtocolVersion.HTTP_2):
                protocols.append("h2" if secure else "h2c")
            line = (
                f"Listening on {listener.url('https' if secure else 'http')} "
                f"({', '.join(protocols)})"
            )
            if not secure and self.config.bind.redirect_http:
                line += ", redirecting to https"
            sock = quic_by_listener.get(id(listener))
            if sock is not None:
                udp_port = sock.getsockname()[1]
                line += " + udp (h3)" if udp_port == listener.port else f" + udp :{udp_port} (h3)"
            logger.info("%s", line)
        for sock, tcp in self.quic_sockets:
            if tcp is None:
                host, port = sock.getsockname()[:2]
                if ":" in host:
                    host = f"[{host}]"
                logger.info("Listening on https://%s:%d udp (h3)", host, port)
        if self._h3_off_reason is not None:
            logger.info("%s", self._h3_off_reason)
        if self.config.proxy.proxy_protocol:
            logger.info("Every connection must start with a PROXY protocol header")
        tls_config = self.config.tls
        if tls_config.selfcert and tls_config.cert_data is not None:
            pin = spki_sha256_base64(tls_config.cert_data)
            logger.info(
                "Self-signed certificate for localhost; SHA-256 SPKI pin %s "
                "(chromium --ignore-certificate-errors-spki-list=%s)",
                pin,
                pin,
            )

    def _install_signals(self, loop: asyncio.AbstractEventLoop) -> list[signal.Signals]:
        if threading.current_thread() is not threading.main_thread():
            return []
        installed = []
        for sig in _SIGNALS:
            try:
                loop.add_signal_handler(sig, self._on_signal, sig)
            except (NotImplementedError, RuntimeError, ValueError):
                continue
            installed.append(sig)
        certs = self._certs
        if certs is not None and (self._hooks is None or self._hooks.certificate_signal):
            with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
                loop.add_signal_handler(signal.SIGUSR1, certs.reload, "SIGUSR1")
                installed.append(signal.SIGUSR1)
        return installed

    def _remove_signals(self, loop: asyncio.AbstractEventLoop, installed: list[Any]) -> None:
        for sig in installed:
            with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
                loop.remove_signal_handler(sig)

    def _on_signal(self, sig: signal.Signals) -> None:
        if self._stop is not None and self._stop.is_set():
            logger.warning("Received %s again; closing all connections now", sig.name)
            self._force = True
            if self._ctx is not None:
                for conn in list(self._ctx.connections):
                    conn.abort()
                self._ctx.abort_handshakes()
                for task in list(self._ctx.tasks):
                    task.cancel()
            return
        logger.info("Received %s; shutting down gracefully", sig.name)
        self.request_shutdown()

    async def _drain(
        self,
        ctx: ServerContext,
        servers: list[asyncio.AbstractServer | ProxyProtocolListener],
        quic_listeners: list[QuicListener],
    ) -> None:
        """Stop accepting, let in-flight work finish, then close what is left."""
        ctx.shutting_down = True
        ctx.restarting = self._restart
        for server in servers:
            server.close()
        for quic_listener in quic_listeners:
            # The UDP socket stays open: it still carries the open connections.
            quic_listener.close()
        for conn in list(ctx.connections):
            conn.shutdown()
        timeout = self.config.timeouts.timeout_graceful_shutdown
        if ctx.connections or ctx.tasks or ctx.handshakes:
            logger.info(
                "Waiting for %d connection(s) to finish", len(ctx.connections) + ctx.handshakes
            )
            drained = ctx.drained()
            try:
                await asyncio.wait_for(drained, timeout)
            except asyncio.TimeoutError:
                logger.warning(
                    "Graceful shutdown timed out after %gs; closing %d connection(s) "
                    "(%d TLS handshake(s)), cancelling %d app task(s)",
                    timeout,
                    len(ctx.connections) + ctx.handshakes,
                    ctx.handshakes,
                    len(ctx.tasks),
                )
        for conn in list(ctx.connections):
            conn.abort()
        ctx.abort_handshakes()
        tasks = list(ctx.tasks)
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks, timeout=5)


def _bound_port(sock: socket.socket) -> int | None:
    """The port ``sock`` is bound to; None once it is closed."""
    if sock.fileno() == -1:
        return None
    try:
        address = sock.getsockname()
    except OSError:
        return None
    return int(address[1]) if isinstance(address, tuple) else None


def _rename(
    options: dict[str, Any],
    name: str,
    value: Any,
    default: Any,
    target: str,
    convert: Callable[[Any], Any] = lambda v: v,
) -> None:
    """Map an asgiri 0.3 parameter onto its config option, refusing two different values."""
    if target in options:
        if value != default:
            raise ValueError(f"pass either {name} or {target}, not both")
        return
    options[target] = convert(value)


def _ms_to_seconds(value: Any) -> Any:
    """Milliseconds to seconds; anything else is left for the config to reject."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        return value / 1000
    return value


def run_coroutine(coro: Coroutine[Any, Any, None], choice: LoopChoice) -> None:
    """Run ``coro`` on a fresh loop of the chosen kind, in the calling thread."""
    factory = _loop_factory(choice)
    if sys.version_info >= (3, 11):
        with asyncio.Runner(loop_factory=factory) as runner:
            runner.run(coro)
        return
    loop = factory() if factory is not None else asyncio.new_event_loop()
    try:
        asyncio.set_event_loop(loop)
        loop.run_until_complete(coro)
    finally:
        try:
            loop.run_until_complete(loop.shutdown_asyncgens())
        finally:
            asyncio.set_event_loop(None)
            loop.close()


def _loop_factory(choice: LoopChoice) -> Callable[[], asyncio.AbstractEventLoop] | None:
    if choice is LoopChoice.ASYNCIO:
        return None
    try:
        import uvloop
    except ImportError:
        if choice is LoopChoice.UVLOOP:
            raise StartupError("--loop uvloop requested but uvloop is not installed") from None
        return None
    factory: Callable[[], asyncio.AbstractEventLoop] = uvloop.new_event_loop
    return factory
