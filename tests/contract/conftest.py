"""Fixtures of the contract suite: servers per transport, the app's record, log capture."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

import pytest

from tests.support.logs import AccessLines
from tests.support.servers import ThreadServer

from .app import RECORD, app
from .transports import Transport

__all__ = ["Servers", "access_lines", "record", "servers"]


class Servers:
    """In-process servers of the contract app, started when a test first needs them.

    :meth:`get` shares one server per (TLS or not, options) across a module's
    tests, so every transport of a guarantee usually talks to the same
    server; :meth:`start` gives a test a server of its own, to stop.
    """

    def __init__(self, pems: tuple[bytes, bytes]) -> None:
        self.pems = pems
        self._shared: dict[tuple[bool, tuple[tuple[str, Any], ...]], ThreadServer] = {}
        self._owned: list[ThreadServer] = []

    def options(self, transport: Transport, options: dict[str, Any]) -> dict[str, Any]:
        if transport.tls:
            return {"cert_data": self.pems[0], "key_data": self.pems[1], **options}
        return dict(options)

    def get(self, transport: Transport, **options: Any) -> ThreadServer:
        key = (transport.tls, tuple(sorted(options.items())))
        srv = self._shared.get(key)
        if srv is None or not srv.thread.is_alive():
            srv = ThreadServer(app, **self.options(transport, options)).start()
            self._shared[key] = srv
        return srv

    def start(self, transport: Transport, **options: Any) -> ThreadServer:
        srv = ThreadServer(app, **self.options(transport, options)).start()
        self._owned.append(srv)
        return srv

    def stop_all(self) -> None:
        for srv in [*self._shared.values(), *self._owned]:
            if srv.thread.is_alive():
                srv.server.request_shutdown()
        for srv in [*self._shared.values(), *self._owned]:
            srv.thread.join(40)


@pytest.fixture(scope="module")
def servers(pems: tuple[bytes, bytes]) -> Iterator[Servers]:
    pool = Servers(pems)
    try:
        yield pool
    finally:
        pool.stop_all()


@pytest.fixture(autouse=True)
def record() -> Iterator[None]:
    RECORD.clear()
    yield


@pytest.fixture
def access_lines() -> Iterator[AccessLines]:
    handler = AccessLines()
    logger = logging.getLogger("asgiri.access")
    logger.addHandler(handler)
    try:
        yield handler
    finally:
        logger.removeHandler(handler)
