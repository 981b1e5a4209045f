"""One server per module; after every case the server must still serve.

A module may set ``SERVER_OPTIONS`` (``serve`` keywords) for its server.
Every module runs twice: over cleartext (prior knowledge) and over TLS (ALPN
``h2``), as h2spec is run against both.
After each case a new connection must get a 200 (the h2 library as client),
the server thread must be alive, and the server must not have logged an
error (an exception in a protocol callback is logged by asyncio, one in the
server by ``asgiri.error``): a misbehaving client may lose its connection,
never the server.
"""

from __future__ import annotations

import logging
import ssl
from collections.abc import Iterator

import pytest

from asgiri.ssl_utils import generate_self_signed_cert

from ..servers import ThreadServer, serve
from . import driver
from .app import HELLO, app
from .driver import h2_request


class _Errors(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


_ERRORS = _Errors()
_LOGGERS = ("asyncio", "asgiri.error")


@pytest.fixture(scope="session")
def tls_pems() -> tuple[bytes, bytes]:
    return generate_self_signed_cert("localhost", key_type="ec")


@pytest.fixture(scope="module", params=["h2c", "tls"])
def server(request: pytest.FixtureRequest, tls_pems: tuple[bytes, bytes]) -> Iterator[ThreadServer]:
    options = dict(getattr(request.module, "SERVER_OPTIONS", {}))
    if request.param == "tls":
        options.update(cert_data=tls_pems[0], key_data=tls_pems[1])
        context = ssl.create_default_context(cadata=tls_pems[0].decode())
        context.set_alpn_protocols(["h2"])
        driver.TLS = context
    for name in _LOGGERS:
        logging.getLogger(name).addHandler(_ERRORS)
    try:
        with serve(app, **options) as srv:
            yield srv
    finally:
        driver.TLS = None
        for name in _LOGGERS:
            logging.getLogger(name).removeHandler(_ERRORS)


@pytest.fixture(autouse=True)
def _server_survives(server: ThreadServer) -> Iterator[None]:
    _ERRORS.records.clear()
    yield
    assert server.thread.is_alive(), "the server thread died"
    response = h2_request(server.port)
    assert (response.status, response.body) == (200, HELLO)
    errors = [f"{r.name}: {r.getMessage()}" for r in _ERRORS.records]
    assert not errors, f"the server logged errors: {errors}"


@pytest.fixture
def port(server: ThreadServer) -> int:
    return server.port
