"""HTTP/3 with ``--workers 2``: each QUIC connection stays with one worker.

Runs once the build serves HTTP/3 (tests/h3_client.py and asgiri's h3 server).
"""

from __future__ import annotations

import re
import threading
from pathlib import Path

import pytest

from asgiri.config import SUPPORTED_HTTP_VERSIONS, HttpProtocolVersion
from asgiri.ssl_utils import generate_self_signed_cert
from tests.servers import CLIServer

pytestmark = pytest.mark.skipif(
    HttpProtocolVersion.HTTP_3 not in SUPPORTED_HTTP_VERSIONS,
    reason="this build does not serve HTTP/3",
)


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
