#!/usr/bin/env python3
"""Memory and scale load client: idle connections held open, and 1 GiB streamed each way.

  scale_bench.py idle-h1   --host H --port P --pid PID [-c 10000] [--hold 3]
  scale_bench.py idle-h2   --host H --port P --pid PID [-c 1000]  [--hold 3]
  scale_bench.py stream-h1 --host H --port P --pid PID [--bytes 1073741824]
  scale_bench.py stream-h2 --host H --port P --pid PID [--bytes ...]   (h2c, prior knowledge)
  scale_bench.py stream-h3 --host H --port P --pid PID [--bytes ...] [--h3-client ngtcp2|aioquic]
                                                                       (QUIC on UDP PORT)

idle-*: opens C connections (at most --parallel being set up at once); each makes one
request, GET /, and reads its answer (HTTP/2: after the connection preface and the SETTINGS
exchange both ways), then every connection is held open without traffic.  After --hold
seconds the server's RSS is sampled: (RSS held - RSS before the first connection) / the
connections still open = what one idle connection costs the server.

stream-*: on one connection, GET /stream?bytes=N read and dropped as it arrives, then
POST /upload with N bytes sent as fast as flow control lets (the app counts and drops them
and answers with the count).  For each direction: the server's peak RSS during it (VmHWM,
reset before each direction through /proc/PID/clear_refs) minus its RSS before the first
direction, and the rate.  Needs the app in bench/scale_app.py.

Server memory is summed over the process group PID leads and every descendant of it (as
bench.sh does), so supervisors and their workers count.  Prints one JSON object as the last
line of stdout; "ok" is false when connections failed or a transfer came up short.

HTTP/1.1 uses plain asyncio protocols, HTTP/2 the h2 library.  HTTP/3 uses ngtcp2's
gtlsclient (C; --h3-client ngtcp2, the default when it is installed): aioquic's client costs
about as much CPU per byte as the server it measures, so with it the figure is the client's.
gtlsclient makes one request per run, so each direction is its own connection (one
handshake more than the other protocols, nothing next to 1 GiB).  The download is written
to a temporary file (in /dev/shm when it has room) and its size checked; the upload is read
from a sparse file of --bytes and the app's answer (the count) checked.
--h3-client aioquic uses aioquic's client on one connection, as before.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import shutil
import ssl
import sys
import tempfile
import time

try:
    import uvloop  # client-side speed only, as in ws_bench.py
except ImportError:  # pragma: no cover
    uvloop = None

GIB = 1 << 30
CHUNK = b"u" * (256 * 1024)


# --------------------------------------------------------------------------- server memory


def group_pids(leader: int) -> list[int]:
    """``leader``, the process group it leads (if any) and every descendant of them
    (workers may be in sessions of their own)."""
    procs: dict[int, tuple[int, int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as fh:
                fields = fh.read().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        procs[int(entry)] = (int(fields[1]), int(fields[2]))  # ppid, pgrp
    keep = {pid for pid, (_, pgrp) in procs.items() if pgrp == leader or pid == leader}
    grew = True
    while grew:
        grew = False
        for pid, (ppid, _) in procs.items():
            if pid not in keep and ppid in keep:
                keep.add(pid)
                grew = True
    return sorted(keep)


def rss_kb(leader: int, field: str = "VmRSS") -> int:
    total = 0
    for pid in group_pids(leader):
        try:
            with open(f"/proc/{pid}/status") as fh:
                for line in fh:
                    if line.startswith(field + ":"):
                        total += int(line.split()[1])
                        break
        except (OSError, ValueError):
            continue
    return total


def reset_peak(leader: int) -> bool:
    """Reset VmHWM to the current RSS (Linux >= 4.0), so each direction has its own peak."""
    ok = True
    for pid in group_pids(leader):
        try:
            with open(f"/proc/{pid}/clear_refs", "w") as fh:
                fh.write("5")
        except OSError:
            ok = False
    return ok


def raise_fd_limit() -> int:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or soft < hard:
        want = hard if hard != resource.RLIM_INFINITY else 1 << 20
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
            soft = want
        except (ValueError, OSError):
            pass
    return soft


# --------------------------------------------------------------------------- HTTP/1.1


class H1Client(asyncio.Protocol):
    """One HTTP/1.1 connection: one response at a time, body counted (and its head kept)."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.closed = asyncio.get_running_loop().create_future()
        self._response: asyncio.Future | None = None
        self._buf = bytearray()
        self._head_done = False
        self._left = 0
        self._status = 0
        self._body = bytearray()
        self._count = 0
        self._can_write = asyncio.Event()
        self._can_write.set()

    def connection_made(self, transport) -> None:  # uvloop's transports are not asyncio's
        self.transport = transport
        transport.set_write_buffer_limits(high=1 << 20)

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.closed.done():
            self.closed.set_result(exc)
        if self._response is not None and not self._response.done():
            self._response.set_exception(ConnectionError(f"connection lost: {exc!r}"))
        self._can_write.set()

    def pause_writing(self) -> None:
        self._can_write.clear()

    def resume_writing(self) -> None:
        self._can_write.set()

    def expect_response(self) -> asyncio.Future:
        """(status, body bytes received, the first 64 bytes of the body) of the next response."""
        self._response = asyncio.get_running_loop().create_future()
        self._buf.clear()
        self._head_done = False
        self._body.clear()
        self._count = 0
        return self._response

    def data_received(self, data: bytes) -> None:
        if self._response is None or self._response.done():
            return
        if not self._head_done:
            self._buf += data
            end = self._buf.find(b"\r\n\r\n")
            if end < 0:
                return
            head = bytes(self._buf[:end]).decode("latin-1").split("\r\n")
            data = bytes(self._buf[end + 4 :])
            self._head_done = True
            self._status = int(head[0].split()[1])
            self._left = 0
            for line in head[1:]:
                name, _, value = line.partition(":")
                if name.strip().lower() == "content-length":
                    self._left = int(value)
        take = min(len(data), self._left)
        self._count += take
        self._left -= take
        if len(self._body) < 64:
            self._body += data[: 64 - len(self._body)]
        if self._left == 0:
            self._response.set_result((self._status, self._count, bytes(self._body)))

    async def write(self, data: bytes | memoryview) -> None:
        await self._can_write.wait()
        if self.transport is None or self.transport.is_closing():
            raise ConnectionError("connection closed while sending")
        self.transport.write(data)


def h1_request(method: str, path: str, host: str, length: int | None = None) -> bytes:
    head = f"{method} {path} HTTP/1.1\r\nHost: {host}\r\n"
    if length is not None:
        head += f"Content-Type: application/octet-stream\r\nContent-Length: {length}\r\n"
    return (head + "\r\n").encode("latin-1")


# --------------------------------------------------------------------------- HTTP/2


class H2Client(asyncio.Protocol):
    """One HTTP/2 connection (h2 library, cleartext with prior knowledge)."""

    def __init__(self, authority: str, window: int = 6 << 20, conn_window: int = 15 << 20):
        import h2.config
        import h2.connection
        import h2.settings

        self.authority = authority
        self.conn = h2.connection.H2Connection(
            h2.config.H2Configuration(client_side=True, header_encoding=None)
        )
        # Roughly what browsers ask for (Chromium: 6 MiB per stream, 15 MiB per connection).
        self.conn.local_settings = h2.settings.Settings(
            client=True,
            initial_values={
                h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: window,
                h2.settings.SettingCodes.ENABLE_PUSH: 0,
            },
        )
        self._conn_window = conn_window
        self.transport: asyncio.Transport | None = None
        self.closed = asyncio.get_running_loop().create_future()
        self.ready = asyncio.get_running_loop().create_future()
        self._settings_received = False
        self._settings_acked = False
        self._streams: dict[int, dict] = {}
        self._progress = asyncio.Event()
        self._can_write = asyncio.Event()
        self._can_write.set()

    def connection_made(self, transport) -> None:  # uvloop's transports are not asyncio's
        self.transport = transport
        transport.set_write_buffer_limits(high=1 << 20)
        self.conn.initiate_connection()
        self.conn.increment_flow_control_window(self._conn_window - 65535)
        self.flush()

    def connection_lost(self, exc: Exception | None) -> None:
        err = ConnectionError(f"connection lost: {exc!r}")
        if not self.closed.done():
            self.closed.set_result(exc)
        if not self.ready.done():
            self.ready.set_exception(err)
        for st in self._streams.values():
            if not st["done"].done():
                st["done"].set_exception(err)
        self._progress.set()
        self._can_write.set()

    def pause_writing(self) -> None:
        self._can_write.clear()

    def resume_writing(self) -> None:
        self._can_write.set()

    def flush(self) -> None:
        data = self.conn.data_to_send()
        if data and self.transport is not None and not self.transport.is_closing():
            self.transport.write(data)

    def data_received(self, data: bytes) -> None:
        import h2.events
        import h2.exceptions

        try:
            events = self.conn.receive_data(data)
        except h2.exceptions.ProtocolError as exc:
            self.flush()
            if self.transport is not None:
                self.transport.close()
            self.connection_lost(exc)
            return
        for ev in events:
            if isinstance(ev, h2.events.RemoteSettingsChanged):
                self._settings_received = True
            elif isinstance(ev, h2.events.SettingsAcknowledged):
                self._settings_acked = True
            elif isinstance(ev, h2.events.ResponseReceived):
                st = self._streams.get(ev.stream_id)
                if st is not None:
                    st["status"] = int(dict(ev.headers)[b":status"])
            elif isinstance(ev, h2.events.DataReceived):
                st = self._streams.get(ev.stream_id)
                if st is not None:
                    st["count"] += len(ev.data)
                    if len(st["body"]) < 64:
                        st["body"] += ev.data[: 64 - len(st["body"])]
                self.conn.acknowledge_received_data(ev.flow_controlled_length, ev.stream_id)
            elif isinstance(ev, h2.events.StreamEnded):
                st = self._streams.get(ev.stream_id)
                if st is not None and not st["done"].done():
                    st["done"].set_result((st["status"], st["count"], bytes(st["body"])))
            elif isinstance(ev, h2.events.StreamReset):
                st = self._streams.get(ev.stream_id)
                if st is not None and not st["done"].done():
                    st["done"].set_exception(
                        ConnectionError(f"stream reset, error code {ev.error_code}")
                    )
            elif isinstance(ev, h2.events.ConnectionTerminated):
                self.connection_lost(ConnectionError(f"GOAWAY, error code {ev.error_code}"))
        if self._settings_received and self._settings_acked and not self.ready.done():
            self.ready.set_result(None)
        self._progress.set()
        self.flush()

    def request(
        self, method: str, path: str, length: int | None = None
    ) -> tuple[int, asyncio.Future]:
        sid = self.conn.get_next_available_stream_id()
        headers = [
            (b":method", method.encode()),
            (b":path", path.encode()),
            (b":scheme", b"http"),
            (b":authority", self.authority.encode()),
        ]
        if length is not None:
            headers.append((b"content-length", str(length).encode()))
        done = asyncio.get_running_loop().create_future()
        self._streams[sid] = {"status": 0, "count": 0, "body": bytearray(), "done": done}
        self.conn.send_headers(sid, headers, end_stream=length is None)
        self.flush()
        return sid, done

    async def upload(self, sid: int, total: int) -> None:
        """Send ``total`` bytes on ``sid`` as flow control allows, then END_STREAM."""
        left = total
        while left > 0:
            if self.closed.done():
                raise ConnectionError("connection closed while sending")
            window = min(self.conn.local_flow_control_window(sid), left)
            if window <= 0:
                self._progress.clear()
                await self._progress.wait()
                continue
            frame = self.conn.max_outbound_frame_size
            while window > 0:
                n = min(window, frame, len(CHUNK))
                left -= n
                window -= n
                self.conn.send_data(sid, CHUNK[:n], end_stream=left == 0)
            self.flush()
            await self._can_write.wait()
        if total == 0:
            self.conn.end_stream(sid)
            self.flush()


# --------------------------------------------------------------------------- HTTP/3


def _h3_protocol_class():
    from aioquic.asyncio.protocol import QuicConnectionProtocol
    from aioquic.h3.connection import H3Connection
    from aioquic.h3.events import DataReceived, HeadersReceived
    from aioquic.quic.events import ConnectionTerminated, StreamReset

    class H3Client(QuicConnectionProtocol):
        """HTTP/3 over aioquic's client protocol, counting response bodies."""

        def __init__(self, *args, **kwargs) -> None:
            super().__init__(*args, **kwargs)
            self.h3 = H3Connection(self._quic)
            self._streams: dict[int, dict] = {}
            self._written: dict[int, int] = {}
            self._progress = asyncio.Event()
            self.terminated: str | None = None

        def quic_event_received(self, event) -> None:
            if isinstance(event, ConnectionTerminated):
                self.terminated = f"connection closed, error code {event.error_code}"
                for st in self._streams.values():
                    if not st["done"].done():
                        st["done"].set_exception(ConnectionError(self.terminated))
            elif isinstance(event, StreamReset):
                st = self._streams.get(event.stream_id)
                if st is not None and not st["done"].done():
                    st["done"].set_exception(
                        ConnectionError(f"stream reset, error code {event.error_code}")
                    )
            for ev in self.h3.handle_event(event):
                st = self._streams.get(ev.stream_id) if hasattr(ev, "stream_id") else None
                if st is None:
                    continue
                if isinstance(ev, HeadersReceived):
                    st["status"] = int(dict(ev.headers).get(b":status", b"0"))
                elif isinstance(ev, DataReceived):
                    st["count"] += len(ev.data)
                    if len(st["body"]) < 64:
                        st["body"] += ev.data[: 64 - len(st["body"])]
                if getattr(ev, "stream_ended", False) and not st["done"].done():
                    st["done"].set_result((st["status"], st["count"], bytes(st["body"])))

        def transmit(self) -> None:
            super().transmit()
            # Called after every datagram received and every timer: acknowledgements and
            # credit may have freed room in the send buffer.
            self._progress.set()

        def request(self, method: str, path: str, authority: str, length: int | None = None):
            sid = self._quic.get_next_available_stream_id()
            headers = [
                (b":method", method.encode()),
                (b":scheme", b"https"),
                (b":authority", authority.encode()),
                (b":path", path.encode()),
            ]
            if length is not None:
                headers.append((b"content-length", str(length).encode()))
            done = asyncio.get_running_loop().create_future()
            self._streams[sid] = {"status": 0, "count": 0, "body": bytearray(), "done": done}
            self.h3.send_headers(sid, headers, end_stream=length is None)
            self.transmit()
            return sid, done

        def _unsent(self, sid: int) -> int:
            # aioquic buffers everything handed to it; there is no public view of a stream's
            # send buffer, so pace on what its sender has put on the wire so far.
            stream = self._quic._streams.get(sid)
            if stream is None:
                return 0
            return self._written.get(sid, 0) - stream.sender.highest_offset

        async def upload(self, sid: int, total: int, high: int = 1 << 20) -> None:
            left = total
            self._written[sid] = 0
            while left > 0:
                if self.terminated:
                    raise ConnectionError(self.terminated)
                if self._unsent(sid) >= high:
                    self._progress.clear()
                    await self._progress.wait()
                    continue
                n = min(left, len(CHUNK))
                left -= n
                self.h3.send_data(sid, CHUNK[:n], end_stream=left == 0)
                self._written[sid] += n
                self.transmit()
            if total == 0:
                self.h3.send_data(sid, b"", end_stream=True)
                self.transmit()

    return H3Client


# --------------------------------------------------------------------------- idle


async def idle_h1(a: argparse.Namespace) -> dict:
    loop = asyncio.get_running_loop()
    request = h1_request("GET", "/", f"{a.host}:{a.port}")
    gate = asyncio.Semaphore(a.parallel)
    protos: list[H1Client] = []
    errors: list[str] = []

    async def one() -> None:
        async with gate:
            try:
                _, proto = await asyncio.wait_for(
                    loop.create_connection(H1Client, a.host, a.port), 30
                )
                response = proto.expect_response()
                proto.transport.write(request)
                status, _, body = await asyncio.wait_for(response, 30)
                if status != 200 or body != b"Hello, World!":
                    raise ConnectionError(f"GET / answered {status} {body[:20]!r}")
                protos.append(proto)
            except (OSError, asyncio.TimeoutError, ConnectionError) as exc:
                errors.append(repr(exc)[:200])

    return await _hold(a, [one() for _ in range(a.connections)], protos, errors)


async def idle_h2(a: argparse.Namespace) -> dict:
    loop = asyncio.get_running_loop()
    authority = f"{a.host}:{a.port}"
    gate = asyncio.Semaphore(a.parallel)
    protos: list[H2Client] = []
    errors: list[str] = []

    async def one() -> None:
        async with gate:
            try:
                _, proto = await asyncio.wait_for(
                    loop.create_connection(lambda: H2Client(authority), a.host, a.port), 30
                )
                _, done = proto.request("GET", "/")
                status, _, body = await asyncio.wait_for(done, 30)
                await asyncio.wait_for(proto.ready, 30)
                if status != 200 or body != b"Hello, World!":
                    raise ConnectionError(f"GET / answered {status} {body[:20]!r}")
                protos.append(proto)
            except (OSError, asyncio.TimeoutError, ConnectionError) as exc:
                errors.append(repr(exc)[:200])

    return await _hold(a, [one() for _ in range(a.connections)], protos, errors)


async def _hold(a: argparse.Namespace, openers: list, protos: list, errors: list[str]) -> dict:
    before = rss_kb(a.pid)
    t0 = time.perf_counter()
    await asyncio.gather(*openers)
    open_s = time.perf_counter() - t0
    opened = len(protos)
    await asyncio.sleep(a.hold)  # let the server settle (idle timers armed, buffers freed)
    held = sum(1 for p in protos if not p.closed.done())
    after = rss_kb(a.pid)
    peak = rss_kb(a.pid, "VmHWM")
    for p in protos:
        if p.transport is not None:
            p.transport.close()
    await asyncio.sleep(0)
    growth = after - before
    return {
        "ok": held >= 0.99 * a.connections,
        "connections": a.connections,
        "opened": opened,
        "held": held,
        "failed": a.connections - opened,
        "closed_by_server": opened - held,
        "first_error": errors[0] if errors else None,
        "open_s": round(open_s, 3),
        "rss_before_kb": before,
        "rss_held_kb": after,
        "rss_peak_kb": peak,
        "kib_per_conn": round(growth / held, 2) if held else None,
    }


# --------------------------------------------------------------------------- streams


async def _directions(a: argparse.Namespace, download, upload) -> dict:
    """Run download() then upload() with the server's peak RSS of each (see the docstring)."""
    out: dict = {"bytes": a.bytes, "errors": 0, "first_error": None}
    before = rss_kb(a.pid)
    out["rss_before_kb"] = before
    resets = True
    for name, run in (("down", download), ("up", upload)):
        resets = reset_peak(a.pid) and resets
        t0 = time.perf_counter()
        try:
            status, count, body = await run()
            if status != 200:
                raise ConnectionError(f"status {status} {body[:40]!r}")
            if count != a.bytes:
                raise ConnectionError(f"{count} of {a.bytes} bytes")
            seconds = time.perf_counter() - t0
            out[f"{name}_s"] = round(seconds, 3)
            out[f"{name}_mib_s"] = round(a.bytes / seconds / (1 << 20), 1) if seconds else None
        except (OSError, asyncio.TimeoutError, ConnectionError, ValueError) as exc:
            out["errors"] += 1
            out["first_error"] = out["first_error"] or f"{name}: {exc!r}"[:200]
            out[f"{name}_s"] = out[f"{name}_mib_s"] = None
        peak = rss_kb(a.pid, "VmHWM")
        out[f"peak_{name}_kb"] = peak
        out[f"growth_{name}_mib"] = round(max(peak - before, 0) / 1024, 1)
    # Without the reset, "up" is the peak over both directions.
    out["peak_reset"] = resets
    out["ok"] = out["errors"] == 0
    return out


async def stream_h1(a: argparse.Namespace) -> dict:
    loop = asyncio.get_running_loop()
    host = f"{a.host}:{a.port}"
    _, proto = await loop.create_connection(H1Client, a.host, a.port)

    async def download():
        response = proto.expect_response()
        proto.transport.write(h1_request("GET", f"/stream?bytes={a.bytes}", host))
        return await response

    async def upload():
        response = proto.expect_response()
        await proto.write(h1_request("POST", "/upload", host, a.bytes))
        view = memoryview(CHUNK)
        left = a.bytes
        while left > 0:
            n = min(left, len(CHUNK))
            await proto.write(view[:n])
            left -= n
        status, _, body = await response
        return status, int(body or b"-1"), body

    try:
        return await _directions(a, download, upload)
    finally:
        proto.transport.close()


async def stream_h2(a: argparse.Namespace) -> dict:
    loop = asyncio.get_running_loop()
    _, proto = await loop.create_connection(lambda: H2Client(f"{a.host}:{a.port}"), a.host, a.port)
    await asyncio.wait_for(proto.ready, 30)

    async def download():
        _, done = proto.request("GET", f"/stream?bytes={a.bytes}")
        return await done

    async def upload():
        sid, done = proto.request("POST", "/upload", a.bytes)
        await proto.upload(sid, a.bytes)
        status, _, body = await done
        return status, int(body or b"-1"), body

    try:
        return await _directions(a, download, upload)
    finally:
        if proto.transport is not None:
            proto.transport.close()


async def stream_h3(a: argparse.Namespace) -> dict:
    if a.h3_client == "ngtcp2":
        return {**await stream_h3_ngtcp2(a), "client": "ngtcp2"}
    return {**await stream_h3_aioquic(a), "client": "aioquic"}


def _spool_dir(size: int) -> str | None:
    """/dev/shm when the download fits there with room to spare (no disk writes)."""
    try:
        stat = os.statvfs("/dev/shm")
    except OSError:
        return None
    return "/dev/shm" if stat.f_bavail * stat.f_frsize > size + (256 << 20) else None


async def stream_h3_ngtcp2(a: argparse.Namespace) -> dict:
    binary = shutil.which("gtlsclient")
    if binary is None:
        raise ConnectionError("gtlsclient (ngtcp2-client) is not installed")
    base = f"https://{a.host}:{a.port}"
    with tempfile.TemporaryDirectory(prefix="scale-h3-", dir=_spool_dir(a.bytes)) as tmp:
        data = os.path.join(tmp, "request-body")
        with open(data, "wb") as fh:
            fh.truncate(a.bytes)  # sparse: zeros, read without touching a disk

        async def run(method: str, path: str, name: str) -> tuple[int, int, bytes]:
            """One request; (200, body length, its first 64 bytes) when a body came back."""
            out = os.path.join(tmp, name)
            os.mkdir(out)
            cmd = [binary, "-q", "--exit-on-all-streams-close", "--no-quic-dump"]
            cmd += ["--no-http-dump", f"--download={out}", f"--http-method={method}"]
            cmd += ["--timeout=30s"] + ([f"--data={data}"] if method == "POST" else [])
            proc = await asyncio.create_subprocess_exec(
                *cmd,
                a.host,
                str(a.port),
                base + path,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.DEVNULL,
                stderr=asyncio.subprocess.PIPE,
            )
            _, err = await proc.communicate()
            files = os.listdir(out)
            if proc.returncode != 0 or not files:
                tail = err.decode(errors="replace").strip().splitlines()[-1:]
                raise ConnectionError(f"gtlsclient exit {proc.returncode}, no body {tail}")
            body = os.path.join(out, files[0])
            size = os.path.getsize(body)
            with open(body, "rb") as fh:
                head = fh.read(64)
            os.unlink(body)
            return 200, size, head

        async def download():
            return await run("GET", f"/stream?bytes={a.bytes}", "down")

        async def upload():
            status, _, body = await run("POST", "/upload", "up")
            return status, int(body or b"-1"), body

        return await _directions(a, download, upload)


async def stream_h3_aioquic(a: argparse.Namespace) -> dict:
    from aioquic.asyncio.client import connect
    from aioquic.h3.connection import H3_ALPN
    from aioquic.quic.configuration import QuicConfiguration

    config = QuicConfiguration(is_client=True, alpn_protocols=H3_ALPN)
    config.verify_mode = ssl.CERT_NONE
    authority = f"{a.host}:{a.port}"
    async with connect(
        a.host, a.port, configuration=config, create_protocol=_h3_protocol_class()
    ) as proto:

        async def download():
            _, done = proto.request("GET", f"/stream?bytes={a.bytes}", authority)
            return await done

        async def upload():
            sid, done = proto.request("POST", "/upload", authority, a.bytes)
            await proto.upload(sid, a.bytes)
            status, _, body = await done
            return status, int(body or b"-1"), body

        return await _directions(a, download, upload)


MODES = {
    "idle-h1": idle_h1,
    "idle-h2": idle_h2,
    "stream-h1": stream_h1,
    "stream-h2": stream_h2,
    "stream-h3": stream_h3,
}


def main() -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("mode", choices=sorted(MODES))
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument(
        "--pid", type=int, required=True, help="the server (its process group, descendants)"
    )
    ap.add_argument("-c", "--connections", type=int, default=None, help="idle-*: connections")
    ap.add_argument("--parallel", type=int, default=256, help="idle-*: connections set up at once")
    ap.add_argument("--hold", type=float, default=3.0, help="idle-*: seconds held before sampling")
    ap.add_argument("--bytes", type=int, default=GIB, help="stream-*: bytes each way")
    ap.add_argument(
        "--h3-client",
        choices=("ngtcp2", "aioquic"),
        default="ngtcp2" if shutil.which("gtlsclient") else "aioquic",
        help="stream-h3: the client (default: ngtcp2's gtlsclient when installed)",
    )
    a = ap.parse_args()
    if a.connections is None:
        a.connections = 10000 if a.mode == "idle-h1" else 1000
    limit = raise_fd_limit()
    if a.mode.startswith("idle") and limit < a.connections + 64:
        print(f"scale_bench.py: fd limit {limit} < {a.connections} connections", file=sys.stderr)
    if uvloop is not None:
        uvloop.install()
    t0 = time.perf_counter()
    try:
        result = asyncio.run(MODES[a.mode](a))
    except (OSError, asyncio.TimeoutError, ConnectionError) as exc:
        result = {"ok": False, "errors": 1, "first_error": repr(exc)[:200]}
    result = {"mode": a.mode, **result, "wall_s": round(time.perf_counter() - t0, 3)}
    print(json.dumps(result))
    return 0 if result.get("ok") else 1


if __name__ == "__main__":
    sys.exit(main())
