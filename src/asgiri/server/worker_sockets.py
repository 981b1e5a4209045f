"""The supervisor's sockets: TCP listeners every worker shares, UDP sockets one per worker.

Why one shared listening socket rather than ``SO_REUSEPORT`` per worker: the
kernel keeps one accept queue per socket.  With a socket per worker, a worker
that stops takes its queue with it and the connections waiting in it are
reset; with one shared socket, a worker that stops only closes its own file
descriptor, the queue lives on in the supervisor and the other workers, and
whatever waits in it is accepted by them.

UDP (HTTP/3) is the other way round: every worker must read only the
datagrams of its own QUIC connections, so each worker slot has a socket of
its own in one ``SO_REUSEPORT`` group per address.  The kernel spreads
datagrams over a group by a hash of the 4-tuple, so a connection stays with
one socket while the client's address stays the same.  The supervisor keeps
each slot's sockets for its whole life and hands them to every worker of that
slot, so the group never changes size and replacing one worker does not move
the other workers' connections.  The limits are in docs/workers.md.
"""

from __future__ import annotations

import socket

from ..config import Config, HttpProtocolVersion, parse_host_port
from .listeners import Listener, UDPPortInUse, bind_sockets, bind_udp

__all__ = ["bind_worker_sockets"]


def bind_worker_sockets(
    config: Config, slots: int
) -> tuple[list[Listener], list[list[socket.socket]]]:
    """The shared listening sockets, and each of ``slots`` worker slots' UDP sockets.

    With ``port=0`` the UDP port is the one the kernel picked for TCP, which
    may be taken for UDP; then both are bound again on another pick.
    """
    for attempt in range(10):
        listeners: list[Listener] = []
        if config.http.http_version is not HttpProtocolVersion.HTTP_3:
            listeners = bind_sockets(config.bind, config.port)
        try:
            return listeners, _bind_udp(config, listeners, slots)
        except UDPPortInUse:
            for listener in listeners:
                listener.close()
            if (
                config.port != 0
                or config.http.http3_port is not None
                or config.quic.quic_bind
                or attempt == 9
            ):
                raise
    raise AssertionError("unreachable")


def _bind_udp(config: Config, listeners: list[Listener], slots: int) -> list[list[socket.socket]]:
    """One ``SO_REUSEPORT`` UDP socket per slot and address, for HTTP/3."""
    http = config.http
    empty: list[list[socket.socket]] = [[] for _ in range(slots)]
    if not http.enable_http3:
        return empty
    if config.quic.quic_bind:
        return _bind_groups(
            [parse_host_port("quic_bind", address) for address in config.quic.quic_bind], slots
        )
    if config.bind.uds or config.bind.fd is not None:
        return empty  # HTTP/3 is served next to a TCP host:port only
    # (host, port) of each UDP group: next to each TLS TCP listener, or alone with --http 3.
    targets: list[tuple[str, int]] = [
        (
            listener.sock.getsockname()[0],
            http.http3_port if http.http3_port is not None else listener.port or 0,
        )
        for listener in listeners
        if listener.kind == "tcp" and listener.tls(config.tls.enabled)
    ]
    if not listeners:
        targets.append(
            (config.bind.host, http.http3_port if http.http3_port is not None else config.port)
        )
    return _bind_groups(targets, slots)


def _bind_groups(targets: list[tuple[str, int]], slots: int) -> list[list[socket.socket]]:
    """A reuseport group per (host, port), one socket in it per slot."""
    per_slot: list[list[socket.socket]] = [[] for _ in range(slots)]
    try:
        for host, port in targets:
            for sockets in per_slot:
                sock = bind_udp(host, port, reuse_port=True)
                port = sock.getsockname()[1]  # port 0: the others join the first's
                sockets.append(sock)
    except BaseException:
        for sockets in per_slot:
            for sock in sockets:
                sock.close()
        raise
    return per_slot
