"""HTTP/3 with ``--workers 2``: each QUIC connection stays with one worker."""

from __future__ import annotations

import re
import threading
from pathlib import Path

from asgiri.ssl_utils import generate_self_signed_cert
from tests.servers import CLIServer


def test_h3_connections_stay_with_their_worker(tmp_path: Path) -> None:
    from tests.h3_client import H3Client

    cert, key = generate_self_signed_cert()
    (tmp_path / "cert.pem").write_bytes(cert)
    (tmp_path / "key.pem").write_bytes(key)
    srv = CLIServer(
        "tests.workerapps:app",
        "--port",
        "0",
        "--workers",
        "2",
        "--no-access-log",
        "--certfile",
        str(tmp_path / "cert.pem"),
        "--keyfile",
        str(tmp_path / "key.pem"),
    )
    try:
        srv.wait_ready()
        srv.wait_count(r"Worker process \[\d+\] is ready", 2)
        workers = {int(p) for p in re.findall(r"Worker process \[(\d+)\] is ready", srv.output)}
        assert srv.port is not None
        port = srv.port
        results: dict[int, list[int]] = {}
        errors: list[str] = []

        def client(index: int) -> None:
            # Requests spread over the connection's life: every packet of it,
            # the handshake's and the later ones', must reach the same worker.
            try:
                with H3Client(port, timeout=20) as h3:
                    pids = []
                    for n in range(5):
                        response = h3.get(f"/?n={n}")
                        assert response.status == 200, response
                        pids.append(int(response.header(b"x-pid") or 0))
                    results[index] = pids
            except Exception as exc:  # reported below, with the others
                errors.append(f"client {index}: {type(exc).__name__}: {exc}")

        seen: set[int] = set()
        rounds = 0
        while len(seen) < 2 and rounds < 4:
            threads = [threading.Thread(target=client, args=(i,)) for i in range(8)]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join(60)
            assert errors == []
            for pids in results.values():
                assert len(set(pids)) == 1, pids  # one connection, one worker
                seen.add(pids[0])
            results.clear()
            rounds += 1
        # Distinct client ports hash to both workers' sockets.
        assert seen == workers
    finally:
        assert srv.stop() == 0


#: RFC 9114: H3_NO_ERROR closes a connection gracefully; H3_REQUEST_REJECTED
#: refuses a request the server did not process, which a client may retry.
H3_NO_ERROR = 0x100
H3_REQUEST_REJECTED = 0x10B


def test_h3_clients_that_reconnect_lose_nothing_across_sighup(tmp_path: Path) -> None:
    """A rolling restart closes HTTP/3 connections only in ways a client may retry."""
    import signal

    from tests.h3_client import H3Client

    cert, key = generate_self_signed_cert()
    (tmp_path / "cert.pem").write_bytes(cert)
    (tmp_path / "key.pem").write_bytes(key)
    srv = CLIServer(
        "tests.workerapps:app",
        "--port",
        "0",
        "--workers",
        "2",
        "--no-access-log",
        "--certfile",
        str(tmp_path / "cert.pem"),
        "--keyfile",
        str(tmp_path / "key.pem"),
    )
    stop = threading.Event()
    failures: list[str] = []
    counts: list[int] = []

    def load(port: int) -> None:
        client: H3Client | None = None
        done = 0
        try:
            while not stop.is_set():
                for _attempt in range(5):
                    if client is None:
                        client = H3Client(port, timeout=10)
                        client.connect()
                    try:
                        response = client.get("/")
                    except ConnectionError:
                        terminated = client.terminated
                        if terminated is None or terminated.error_code != H3_NO_ERROR:
                            raise
                        client = None  # closed gracefully: reconnect and retry
                        continue
                    if response.status == 200:
                        done += 1
                        break
                    if response.reset_code != H3_REQUEST_REJECTED:
                        failures.append(f"unexpected response {response}")
                        return
                    client.close()
                    client = None  # after the server's GOAWAY: a new connection
                else:
                    failures.append("a request was refused five times in a row")
                    return
        except Exception as exc:
            failures.append(f"{type(exc).__name__}: {exc}")
        finally:
            if client is not None:
                client.close()
            counts.append(done)

    try:
        srv.wait_ready()
        srv.wait_count(r"Worker process \[\d+\] is ready", 2)
        assert srv.port is not None
        threads = [threading.Thread(target=load, args=(srv.port,)) for _ in range(4)]
        for thread in threads:
            thread.start()
        try:
            srv.signal(signal.SIGHUP)
            srv.wait_count(r"Restart complete", 1, timeout=60)
            srv.wait_count(r"Worker process \[\d+\] stopped", 2, timeout=60)
        finally:
            stop.set()
            for thread in threads:
                thread.join(60)
        assert failures == []
        assert len(counts) == 4 and all(count > 0 for count in counts)
    finally:
        assert srv.stop() == 0
