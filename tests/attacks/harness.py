"""What every attack test shares: its server process, a bystander, and the bounds.

Each module starts the contract app (``tests.contract.app:app``) in a CLI
server process of its own, so that :class:`~tests.support.meter.ProcessMeter`
measures only the server.  :func:`under_attack` wraps an attack: it starts a
bystander on its own connection (every one of its requests must be answered
within :data:`SERVED_WITHIN` seconds), measures the server's CPU time and
peak RSS growth, and checks both bounds when the attack is over.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from pathlib import Path

from tests.support.meter import MIB, Bystander, ProcessMeter
from tests.support.servers import CLIServer

APP = "tests.contract.app:app"
#: A bystander's request is answered within this many seconds, whatever the attack.
SERVED_WITHIN = 2.0
#: Default bounds of one attack class (all its variants): server CPU seconds, RSS growth.
CPU_BOUND = 0.5
RSS_BOUND = 16 * MIB


def start(*args: str, cert: tuple[str, str] | None = None) -> CLIServer:
    """A server process of the contract app; ``cert`` turns TLS (and HTTP/3) on."""
    tls = ["--ssl-certfile", cert[0], "--ssl-keyfile", cert[1]] if cert else []
    srv = CLIServer(
        APP, "--port", "0", "--no-access-log", "--timeout-graceful-shutdown", "1", *tls, *args
    )
    return srv.wait_ready()


@contextlib.contextmanager
def running(*args: str, cert: tuple[str, str] | None = None) -> Iterator[CLIServer]:
    srv = start(*args, cert=cert)
    try:
        yield srv
    finally:
        srv.stop()


def port_of(srv: CLIServer) -> int:
    assert srv.port is not None, "the server is not ready"
    return srv.port


@contextlib.contextmanager
def under_attack(
    srv: CLIServer,
    probe: Callable[[], None],
    *,
    cpu: float = CPU_BOUND,
    rss: int = RSS_BOUND,
) -> Iterator[ProcessMeter]:
    """Run the ``with`` body as an attack on ``srv``; check the bounds after it.

    ``probe`` is one bystander request (raising on a wrong answer).
    """
    bystander = Bystander(probe, within=SERVED_WITHIN)
    with bystander, ProcessMeter(srv.proc.pid) as meter:
        yield meter
    # Shown with -s (and on failure): how far each attack is from its bounds.
    print(
        f"server CPU {meter.cpu:.2f} s (bound {cpu}), RSS +{meter.growth / MIB:.1f} MiB "
        f"(bound {rss / MIB:.0f}), bystander: {len(bystander.latencies)} requests, "
        f"slowest {max(bystander.latencies, default=0):.2f} s"
    )
    assert srv.proc.poll() is None, f"the server exited:\n{srv.output[-2000:]}"
    bystander.check()
    meter.check(cpu, rss)
    assert "Traceback" not in srv.output, srv.output[-3000:]


def write_cert(folder: Path) -> tuple[str, str]:
    """A self-signed certificate for localhost in ``folder``: (cert file, key file)."""
    from asgiri.ssl_utils import generate_self_signed_cert

    cert, key = generate_self_signed_cert("localhost", key_type="ec")
    (folder / "cert.pem").write_bytes(cert)
    (folder / "key.pem").write_bytes(key)
    return str(folder / "cert.pem"), str(folder / "key.pem")
