"""Receiving datagrams: the event loop's datagram transport against UDP GRO.

An HTTP/3 upload reaches the server as one 1350-byte datagram after another,
and asgiri reads them through the event loop's datagram transport: one
``recvfrom`` and one Python callback each.  Linux (5.0 and later) can hand
over a run of datagrams of one flow in one buffer instead (``UDP_GRO``: the
receiver reads the segment size from a control message and cuts the buffer
itself), which saves the system call and the loop's callback per datagram
but not what QUIC does with each of them.  uvloop refuses ``add_reader`` on
a socket it already reads for a transport, so GRO needs a reader of its own;
this measures what that reader would save before building one.

A sender process (pinned to the first CPU this process may use) sends
``--mib`` MiB of 1350-byte datagrams to a receiver in this process (pinned to
the last), in runs of 16 per
``sendmsg`` with UDP GSO as a QUIC sender on Linux does (``--sender
single``: one per call), keeping at most ``--window`` KiB unacknowledged so
that nothing overflows the receiver's socket buffer.  The receiver counts
every datagram through a per-datagram callback that does nothing, as the
fixed cost under QUIC's own work.  Reported per receiver: its CPU time
(user + system, this process only) per MiB, datagrams per read, and
whether every byte arrived.

    .venv/bin/python -m bench.codec.udp_gro --mib 256 --rounds 3
"""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
import struct
import subprocess
import sys
import time
from typing import Any

MIB = 1 << 20
SIZE = 1350
RUN = 16
#: From linux/udp.h (Python's socket module names them only from 3.12 on).
UDP_SEGMENT = getattr(socket, "UDP_SEGMENT", 103)
UDP_GRO = getattr(socket, "UDP_GRO", 104)
RECEIVERS = ("transport", "gro")


def sender(port: int, ack_port: int, nbytes: int, window: int, gso: bool) -> None:
    """Send ``nbytes`` in datagrams; wait for the receiver's acknowledgements."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4 << 20)
    acks = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    acks.bind(("127.0.0.1", ack_port))
    acks.settimeout(5)
    payload = b"x" * SIZE
    control = [(socket.IPPROTO_UDP, UDP_SEGMENT, struct.pack("=H", SIZE))]
    sent = acked = 0
    while sent < nbytes:
        while sent - acked < window and sent < nbytes:
            count = min(RUN, (nbytes - sent + SIZE - 1) // SIZE)
            if gso:
                sock.sendmsg([payload] * count, control, 0, ("127.0.0.1", port))
            else:
                for _ in range(count):
                    sock.sendto(payload, ("127.0.0.1", port))
            sent += count * SIZE
        acked = int(acks.recv(64))
    sock.sendto(b"", ("127.0.0.1", port))  # the end


class Receiver:
    """Counts datagrams; acknowledges every quarter window."""

    def __init__(self, ack_port: int, window: int) -> None:
        self.received = 0
        self.datagrams = 0
        #: System calls that returned data (GRO: one buffer of several datagrams).
        self.reads = 0
        self.done = asyncio.get_running_loop().create_future()
        self._acks = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self._ack_to = ("127.0.0.1", ack_port)
        self._step = window // 4
        self._next_ack = self._step

    def datagram(self, data: bytes, addr: Any) -> None:
        """What a QUIC listener's per-datagram entry costs at least: a call."""
        if not data:
            if not self.done.done():
                self.done.set_result(None)
            return
        self.received += len(data)
        self.datagrams += 1
        if self.received >= self._next_ack:
            self._next_ack = self.received + self._step
            self._acks.sendto(str(self.received).encode(), self._ack_to)


class TransportReceiver(asyncio.DatagramProtocol):
    def __init__(self, receiver: Receiver) -> None:
        self.receiver = receiver

    def datagram_received(self, data: bytes, addr: Any) -> None:
        self.receiver.reads += 1  # one read and one callback per datagram
        self.receiver.datagram(data, addr)


async def receive(kind: str, sock: socket.socket, receiver: Receiver) -> None:
    loop = asyncio.get_running_loop()
    if kind == "transport":
        transport, _ = await loop.create_datagram_endpoint(
            lambda: TransportReceiver(receiver), sock=sock
        )
        try:
            await receiver.done
        finally:
            transport.close()
        return
    sock.setsockopt(socket.IPPROTO_UDP, UDP_GRO, 1)
    sock.setblocking(False)
    space = socket.CMSG_SPACE(4)

    def readable() -> None:
        while True:
            try:
                data, ancillary, _, addr = sock.recvmsg(65535, space)
            except BlockingIOError:
                return
            receiver.reads += 1
            segment = len(data)
            for level, kind_, value in ancillary:
                if level == socket.IPPROTO_UDP and kind_ == UDP_GRO:
                    segment = struct.unpack("=i", value[:4])[0]
            if not data or segment >= len(data):
                receiver.datagram(data, addr)
                continue
            view = memoryview(data)
            for start in range(0, len(data), segment):
                receiver.datagram(bytes(view[start : start + segment]), addr)

    loop.add_reader(sock.fileno(), readable)
    try:
        await receiver.done
    finally:
        loop.remove_reader(sock.fileno())


async def one(kind: str, a: argparse.Namespace, sender_cpu: int) -> dict[str, Any]:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    probe = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    probe.bind(("127.0.0.1", 0))
    ack_port = probe.getsockname()[1]
    probe.close()
    nbytes = int(a.mib * MIB)
    window = a.window * 1024
    receiver = Receiver(ack_port, window)
    args = [str(port), str(ack_port), str(nbytes), str(window), a.sender]
    cmd = [sys.executable, "-m", "bench.codec.udp_gro", "--send", *args]
    start_cpu = time.process_time()
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, preexec_fn=lambda: os.sched_setaffinity(0, {sender_cpu}))
    await receive(kind, sock, receiver)
    wall = time.perf_counter() - start
    cpu = time.process_time() - start_cpu
    proc.wait()
    sock.close()
    return {
        "receiver": kind,
        "cpu_ms_per_mib": cpu * 1000 / (receiver.received / MIB),
        "per_read": receiver.datagrams / max(1, receiver.reads),
        "mib_s": receiver.received / MIB / wall,
        "whole": receiver.received == (nbytes + SIZE - 1) // SIZE * SIZE,
    }


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--send":
        port, ack_port, nbytes, window = map(int, sys.argv[2:6])
        sender(port, ack_port, nbytes, window, sys.argv[6] == "gso")
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mib", type=float, default=128)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--window", type=int, default=1024, help="KiB unacknowledged")
    parser.add_argument("--sender", choices=("gso", "single"), default="gso")
    parser.add_argument("--loop", choices=("uvloop", "asyncio"), default="uvloop")
    a = parser.parse_args()
    # Sender and receiver on two CPUs this process may use (the first and the last).
    cpus = sorted(os.sched_getaffinity(0))
    os.sched_setaffinity(0, {cpus[-1]})
    if a.loop == "uvloop":
        import uvloop

        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    print(f"{'receiver':10} {'CPU ms/MiB':>10} {'per read':>9} {'MiB/s':>7}  whole")
    failed = False
    for _ in range(a.rounds):
        for kind in RECEIVERS:
            r = asyncio.run(one(kind, a, cpus[0]))
            failed |= not r["whole"]
            print(
                f"{r['receiver']:10} {r['cpu_ms_per_mib']:10.2f} {r['per_read']:9.1f}"
                f" {r['mib_s']:7.1f}  {r['whole']}",
                flush=True,
            )
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
