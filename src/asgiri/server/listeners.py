"""Opening sockets: TCP host:port, Unix sockets and inherited fds, and UDP for HTTP/3.

Sockets are created here rather than by ``loop.create_server(host, port)``
so that a port in use becomes a one-line :class:`~asgiri.errors.BindError`,
port 0 reports the port the kernel picked, and the same socket objects can
later be handed to worker processes.
"""

from __future__ import annotations

import errno
import os
import socket
import stat
from dataclasses import dataclass
from typing import Any

from ..config import BindConfig, bind_scheme, parse_bind
from ..errors import BindError


@dataclass
class Listener:
    """A bound socket and how to describe it in the startup log."""

    sock: socket.socket
    kind: str  # "tcp" or "unix"
    #: A Unix socket file this process created, removed again by :meth:`close`:
    #: (path, (device, inode)) of the file as bound.
    created: tuple[str, tuple[int, int]] | None = None
    #: "http" or "https" when the bind address said so; None: TLS when configured.
    scheme: str | None = None

    def tls(self, configured: bool) -> bool:
        """Whether this listener speaks TLS, ``configured`` being whether a certificate is."""
        return self.scheme == "https" or (self.scheme is None and configured)

    def close(self) -> None:
        """Close the socket, and remove the socket file this process created.

        The file is removed only while it is still the one bound here: a newer
        server that has already replaced it keeps its own.
        """
        self.sock.close()
        created, self.created = self.created, None
        if created is None:
            return
        path, identity = created
        try:
            info = os.stat(path)
            if (info.st_dev, info.st_ino) == identity and stat.S_ISSOCK(info.st_mode):
                os.unlink(path)
        except OSError:
            pass

    def url(self, scheme: str) -> str:
        """How the startup log names this listener (``scheme`` is "http" or "https")."""
        if self.kind == "unix":
            return f"{scheme}+unix://{self.sock.getsockname()}"
        host, port = self.sock.getsockname()[:2]
        if ":" in host:
            host = f"[{host}]"
        return f"{scheme}://{host}:{port}"

    @property
    def port(self) -> int | None:
        if self.kind == "unix":
            return None
        return int(self.sock.getsockname()[1])


def bind_sockets(bind: BindConfig, port: int) -> list[Listener]:
    """Bind every socket the configuration asks for, or raise BindError.

    ``--bind``, ``--uds`` and ``--fd`` add up; only when none is given does
    the server listen on sockets systemd passed (``LISTEN_FDS``) or, without
    those, on ``--host``/``--port``.
    """
    listeners: list[Listener] = []
    try:
        permissions = 0o666 if bind.uds_permissions is None else int(bind.uds_permissions)
        for address in bind.binds:
            kind, value, bind_port = parse_bind(address)
            if kind == "unix":
                listeners.append(_bind_unix(str(value), bind.backlog, permissions))
            elif kind == "fd":
                listeners.append(_from_fd(int(value)))
            else:
                assert bind_port is not None  # parse_bind gives tcp a port
                listeners += _bind_tcp(str(value), bind_port, bind.backlog, bind.reuse_port)
            listeners[-1].scheme = bind_scheme(address)[0]
        if bind.uds:
            listeners.append(_bind_unix(bind.uds, bind.backlog, permissions))
        if bind.fd is not None:
            listeners.append(_from_fd(bind.fd))
        if not listeners:
            listeners = systemd_sockets() or _bind_tcp(
                bind.host, port, bind.backlog, bind.reuse_port
            )
    except BindError:
        for listener in listeners:
            listener.close()
        raise
    return listeners


#: The first file descriptor systemd passes (SD_LISTEN_FDS_START).
_SD_LISTEN_FDS_START = 3


def systemd_sockets() -> list[Listener]:
    """Sockets passed by systemd socket activation (sd_listen_fds(3)), if any.

    They are for this process only when ``LISTEN_PID`` names it; the
    variables are removed so that child processes do not take them too.
    """
    if os.environ.get("LISTEN_PID") != str(os.getpid()):
        return []
    count = os.environ.pop("LISTEN_FDS", "")
    os.environ.pop("LISTEN_PID", None)
    os.environ.pop("LISTEN_FDNAMES", None)
    if not count.isdigit():
        return []
    return [_from_fd(fd) for fd in range(_SD_LISTEN_FDS_START, _SD_LISTEN_FDS_START + int(count))]


def new_socket(host: str, port: int, kind: int) -> tuple[socket.socket, int, Any]:
    """A socket of ``kind`` for the first address ``host`` resolves to: (socket, family, address).

    A host that does not resolve is a one-line :class:`BindError`; binding is the caller's.
    """
    try:
        infos = socket.getaddrinfo(host, port, type=kind, flags=socket.AI_PASSIVE)
    except socket.gaierror as exc:
        raise BindError(f"cannot resolve host {host!r}: {exc.strerror}") from None
    family, socktype, proto, _, addr = infos[0]
    return socket.socket(family, socktype, proto), family, addr


class UDPPortInUse(BindError):
    """The UDP port for HTTP/3 is taken (with ``port=0``: the TCP port the kernel picked).

    Kept apart from other bind errors because it can be retried: a server
    that let the kernel pick its TCP port binds both again on another pick.
    """


#: Kernel buffer asked for on each side of an HTTP/3 socket.  The default
#: (about 200 KiB, some 90 full datagrams) overflows while the server spends
#: a few milliseconds building packets and a client keeps sending: every
#: datagram dropped there is a loss to the client's congestion control.  The
#: kernel caps the request at net.core.rmem_max / wmem_max.
UDP_BUFFER = 4 * 1024 * 1024


def bind_udp(host: str, port: int, *, reuse_port: bool = False) -> socket.socket:
    """A non-blocking UDP socket for QUIC; a port in use is :class:`UDPPortInUse`.

    ``reuse_port``: join the ``SO_REUSEPORT`` group of ``host:port``, one
    socket per worker (see :mod:`.worker_sockets`).
    """
    sock, family, addr = new_socket(host, port, socket.SOCK_DGRAM)
    for option in (socket.SO_RCVBUF, socket.SO_SNDBUF):
        try:
            if sock.getsockopt(socket.SOL_SOCKET, option) < UDP_BUFFER:
                sock.setsockopt(socket.SOL_SOCKET, option, UDP_BUFFER)
        except OSError:
            pass  # a smaller buffer only costs throughput
    try:
        if reuse_port:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        if family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0 if host == "::" else 1)
        sock.bind(addr)
    except OSError as exc:
        sock.close()
        if exc.errno == errno.EADDRINUSE:
            raise UDPPortInUse(f"UDP address {host}:{port} (HTTP/3) is already in use") from None
        message = f"cannot bind UDP {host}:{port} for HTTP/3: {exc.strerror or exc}"
        raise BindError(message) from None
    sock.setblocking(False)
    return sock


def _bind_tcp(host: str, port: int, backlog: int, reuse_port: bool) -> list[Listener]:
    sock, family, addr = new_socket(host, port, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if reuse_port and hasattr(socket, "SO_REUSEPORT"):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        if family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0 if host in ("::",) else 1)
        sock.bind(addr)
        sock.listen(backlog)
    except OSError as exc:
        sock.close()
        if exc.errno == errno.EADDRINUSE:
            raise BindError(f"address {host}:{port} is already in use") from None
        if exc.errno == errno.EACCES:
            raise BindError(f"permission denied binding {host}:{port}") from None
        raise BindError(f"cannot bind {host}:{port}: {exc.strerror or exc}") from None
    sock.setblocking(False)
    return [Listener(sock, "tcp")]


def _bind_unix(path: str, backlog: int, permissions: int) -> Listener:
    try:
        if stat.S_ISSOCK(os.stat(path).st_mode):
            os.unlink(path)
    except FileNotFoundError:
        pass
    except OSError as exc:
        raise BindError(f"cannot use unix socket {path!r}: {exc.strerror}") from None
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.bind(path)
        info = os.stat(path)
        os.chmod(path, permissions)
        sock.listen(backlog)
    except OSError as exc:
        sock.close()
        raise BindError(f"cannot bind unix socket {path!r}: {exc.strerror or exc}") from None
    sock.setblocking(False)
    return Listener(sock, "unix", created=(path, (info.st_dev, info.st_ino)))


def _from_fd(fd: int) -> Listener:
    try:
        sock = socket.socket(fileno=fd)
    except OSError as exc:
        raise BindError(f"file descriptor {fd} is not a usable socket: {exc.strerror}") from None
    if sock.type != socket.SOCK_STREAM:
        raise BindError(f"file descriptor {fd} is not a stream socket")
    sock.setblocking(False)
    return Listener(sock, "unix" if sock.family == socket.AF_UNIX else "tcp")
