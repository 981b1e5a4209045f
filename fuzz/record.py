"""Seeds from the test suite: what its clients send to each parser, recorded.

``python -m fuzz record`` runs a set of tests in this process (their servers
run in threads of it) with each parser's entry point wrapped: every
connection's bytes, every PROXY header, proxy-header list, header block and
datagram the tests send is written as an input of the matching target.  A
libFuzzer merge then adds to ``fuzz/corpus/<target>`` only the inputs that
reach code the corpus does not reach yet, which keeps it small.

Recording changes nothing the tests see: the wrappers call the original and
return what it returns.
"""

from __future__ import annotations

import functools
import hashlib
import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .runner import CORPUS, FINDINGS, HERE, WORK
from .targets import TARGETS, load

#: The inputs recorded, before the merge picks from them (not kept in the repository).
RECORDED = WORK / "recorded"

#: Tests whose servers run in this process and whose clients speak each protocol.
DEFAULT_TESTS = [
    "tests/protocol/test_h1_connection.py",
    "tests/http1/test_h1_bad_input.py",
    "tests/http1/test_h1_protocol.py",
    "tests/http2/conformance",
    "tests/http2/test_h2_semantics.py",
    "tests/websocket/test_websocket.py",
    "tests/websocket/test_ws_h2.py",
    "tests/deployment/test_proxy_protocol.py",
    "tests/deployment/test_proxy_headers.py",
    "tests/protocol/test_protocol_lifecycle.py",
    "tests/http3/test_h3.py",
    "tests/contract/test_bad_input.py",
    "-m",
    "not autobahn",
    "-k",
    "not flood and not memory and not bomb and not slow and not stall",
]
#: At most this many datagrams of one QUIC socket make one input.
_DATAGRAMS = 6


class Recorder:
    """Collects the inputs; one instance per recording session."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        #: id(connection) -> (connection, options byte, bytes so far, target).
        self.streams: dict[int, tuple[object, int, bytearray, str]] = {}
        #: id(QUIC router) -> (router, the first datagrams it routed).
        self.datagrams: dict[int, tuple[object, list[bytes]]] = {}
        #: Inputs of the targets fed whole (one call, one input).
        self.singles: dict[str, set[bytes]] = {name: set() for name in TARGETS}
        self.limits = {name: load(name).MAX_LEN for name in TARGETS}

    def stream(self, target: str, conn: object, data: bytes, options: int = 0) -> None:
        with self.lock:
            entry = self.streams.get(id(conn))
            if entry is None:
                entry = self.streams[id(conn)] = (conn, options, bytearray(), target)
            buf = entry[2]
            room = self.limits[target] - 2 - len(buf)
            if room > 0:
                buf += data[:room]

    def single(self, target: str, data: bytes) -> None:
        if len(data) <= self.limits[target]:
            with self.lock:
                self.singles[target].add(data)

    def inputs(self) -> dict[str, set[bytes]]:
        found = {name: set(items) for name, items in self.singles.items()}
        for _, options, buf, target in self.streams.values():
            if buf:
                # Options byte, then "one read": the targets' own layout.
                found[target].add(bytes([options, 0]) + bytes(buf))
        from .targets import quic

        for _, sent in self.datagrams.values():
            found["quic"].add(quic.encode(0, sent))
        return found

    def install(self) -> None:
        """Wrap the entry points (classes by their methods, functions where imported)."""
        from asgiri.protocol import fields, proxy_headers, proxy_protocol
        from asgiri.protocol.h1 import H1Connection
        from asgiri.protocol.h2 import H2Connection
        from asgiri.protocol.quic import QuicRouter
        from asgiri.protocol.ws import WSSession
        from asgiri.protocol.ws_deflate import Deflate

        from .targets import fields as fields_target
        from .targets import proxy_headers as headers_target

        recorder = self

        def on_stream(target: str, options: Callable[[Any], int] = lambda conn: 0) -> Any:
            def wrap(method: Any) -> Any:
                @functools.wraps(method)
                def wrapper(self: Any, data: Any, *args: Any, **kwargs: Any) -> Any:
                    if data:
                        recorder.stream(target, self, bytes(data), options(self))
                    return method(self, data, *args, **kwargs)

                return wrapper

            return wrap

        H1Connection.receive_data = on_stream("h1")(H1Connection.receive_data)  # type: ignore[method-assign]
        H2Connection.receive_data = on_stream("h2")(H2Connection.receive_data)  # type: ignore[method-assign]

        def ws_options(session: Any) -> int:
            # The large size limit (the tests send messages of many sizes), deflate if agreed.
            deflate = any(isinstance(e, Deflate) for e in session._proto.extensions)
            return 16 | (2 if deflate else 0)

        WSSession.receive_data = on_stream("ws", ws_options)(WSSession.receive_data)  # type: ignore[method-assign]

        original_route = QuicRouter.route

        @functools.wraps(original_route)
        def route(self: Any, data: bytes, *args: Any, **kwargs: Any) -> Any:
            with recorder.lock:
                sent = recorder.datagrams.setdefault(id(self), (self, []))[1]
                if len(sent) < _DATAGRAMS:
                    sent.append(bytes(data))
            return original_route(self, data, *args, **kwargs)

        QuicRouter.route = route  # type: ignore[method-assign]

        def on_call(module: Any, name: str, encode: Callable[..., bytes | None]) -> None:
            original = getattr(module, name)

            @functools.wraps(original)
            def wrapper(*args: Any, **kwargs: Any) -> Any:
                encoded = encode(*args, **kwargs)
                if encoded is not None:
                    recorder.single(target_of[name], encoded)
                return original(*args, **kwargs)

            # Replace the function wherever it was imported by name.
            for loaded in list(sys.modules.values()):
                if getattr(loaded, "__name__", "").startswith("asgiri") and (
                    getattr(loaded, name, None) is original
                ):
                    setattr(loaded, name, wrapper)

        target_of = {
            "parse": "proxy_protocol",
            "forwarded_info": "proxy_headers",
            "check_header_block": "fields",
        }
        _import_server()
        on_call(proxy_protocol, "parse", lambda data: bytes(data))
        on_call(proxy_headers, "forwarded_info", headers_target.encode)
        on_call(fields, "check_header_block", fields_target.encode)


def _import_server() -> None:
    """Load every module that imports a wrapped function, so each reference is replaced."""
    import asgiri.server.h1
    import asgiri.server.h2
    import asgiri.server.h3
    import asgiri.server.proxy_protocol
    import asgiri.server.server  # noqa: F401


def record_seeds(pytest_args: list[str]) -> int:
    """Run the tests while recording, then merge what they sent into the corpus."""
    import pytest

    recorder = Recorder()
    recorder.install()
    pytest.main([*(pytest_args or DEFAULT_TESTS), "-q", "-p", "no:cacheprovider"])
    found = recorder.inputs()
    for target, items in found.items():
        folder = RECORDED / target
        folder.mkdir(parents=True, exist_ok=True)
        for data in items:
            (folder / hashlib.sha1(data).hexdigest()).write_bytes(data)
        added = merge(target, folder)
        print(f"{target}: {len(items)} inputs recorded, {added} added to the corpus")
    return 0


def merge(target: str, folder: Path) -> int:
    """Add to the target's corpus the inputs of ``folder`` that reach new code."""
    corpus = CORPUS / target
    corpus.mkdir(parents=True, exist_ok=True)
    before = len(list(corpus.iterdir()))
    # Inputs that fail the checks are left out (and written under findings/).
    FINDINGS.mkdir(exist_ok=True)
    command = [sys.executable, "-m", "fuzz", "libfuzzer", target, "-merge=1", "-timeout=20"]
    command += [f"-artifact_prefix={FINDINGS}/{target}-merge-", f"-max_len={load(target).MAX_LEN}"]
    subprocess.run([*command, str(corpus), str(folder)], cwd=HERE.parent, check=True)
    return len(list(corpus.iterdir())) - before
