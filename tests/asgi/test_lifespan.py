"""The ASGI lifespan protocol, against a real server process or thread.

The apps print marker lines (flushed, so they interleave correctly with the
server's log in the merged output) and the tests read them back.
"""

from __future__ import annotations

import re
import threading
import time
from pathlib import Path

import httpx
import pytest

from asgiri.errors import LifespanStartupError
from asgiri.server import Server
from tests.support.servers import CLIServer, cli_server, run_cli, serve

LIFESPAN_APP = """
import asyncio

MODE = "{mode}"


async def app(scope, receive, send):
    print("SCOPE", scope["type"], flush=True)
    if scope["type"] == "lifespan":
        if MODE == "raise":
            raise RuntimeError("this app has no lifespan support")
        message = await receive()
        assert message["type"] == "lifespan.startup"
        if MODE == "fail":
            await send({{"type": "lifespan.startup.failed", "message": "database unreachable"}})
            return
        if MODE == "hang":
            await asyncio.Event().wait()
        scope["state"]["token"] = "from-lifespan"
        print("STARTUP-RAN", flush=True)
        await send({{"type": "lifespan.startup.complete"}})
        message = await receive()
        assert message["type"] == "lifespan.shutdown"
        print("SHUTDOWN-RAN", flush=True)
        await send({{"type": "lifespan.shutdown.complete"}})
        return
    token = scope.get("state", {{}}).get("token", "none")
    await send({{"type": "http.response.start", "status": 200, "headers": []}})
    await send({{"type": "http.response.body", "body": token.encode()}})
"""


def _app_dir(tmp_path: Path, mode: str = "ok") -> str:
    (tmp_path / "lifespan_app.py").write_text(LIFESPAN_APP.format(mode=mode))
    return str(tmp_path)


def _index(lines: list[str], pattern: str) -> int:
    for i, line in enumerate(lines):
        if re.search(pattern, line):
            return i
    raise AssertionError(f"no line matching {pattern!r} in:\n{''.join(lines)}")


def test_startup_and_shutdown_both_run_in_order(tmp_path: Path) -> None:
    srv = CLIServer("lifespan_app:app", "--app-dir", _app_dir(tmp_path), "--port", "0")
    try:
        srv.wait_ready()
        assert httpx.get(srv.url + "/").content == b"from-lifespan"
    finally:
        code = srv.stop()
    assert code == 0, srv.output
    lines = srv.lines
    startup = _index(lines, "^STARTUP-RAN")
    listening = _index(lines, "Listening on")
    signal_seen = _index(lines, "Received SIGTERM")
    shutdown = _index(lines, "^SHUTDOWN-RAN")
    finished = _index(lines, "Finished server process")
    # Startup completes before the socket is served; shutdown runs after the
    # signal and before the process reports it is done.
    assert startup < listening < signal_seen < shutdown < finished


def test_lifespan_state_reaches_every_request_scope() -> None:
    # apps.lifespan_ok stores state["started"] = True during startup.
    with cli_server("apps:scope_json", "--port", "0") as srv, httpx.Client() as client:
        for _ in range(2):
            scope = client.get(srv.url + "/").json()
            assert scope["state"] == {"started": True}


def test_request_cannot_change_the_lifespan_state_of_later_requests() -> None:
    async def app(scope, receive, send):  # type: ignore[no-untyped-def]
        if scope["type"] == "lifespan":
            await receive()
            scope["state"]["counter"] = 0
            await send({"type": "lifespan.startup.complete"})
            await receive()
            await send({"type": "lifespan.shutdown.complete"})
            return
        seen = scope["state"]["counter"]
        scope["state"]["counter"] = seen + 1
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": str(seen).encode()})

    with serve(app) as srv, httpx.Client() as client:
        assert [client.get(srv.url).text for _ in range(3)] == ["0", "0", "0"]


def test_startup_failed_message_exits_3(tmp_path: Path) -> None:
    result = run_cli("lifespan_app:app", "--app-dir", _app_dir(tmp_path, "fail"), "--port", "0")
    assert result.returncode == 3, result.stderr
    assert "database unreachable" in result.stderr
    assert "Traceback" not in result.stderr
    assert "Listening on" not in result.stderr
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("Error:") and "startup failed" in last


def test_lifespan_on_with_an_app_that_raises_exits_3(tmp_path: Path) -> None:
    result = run_cli(
        "lifespan_app:app",
        "--app-dir",
        _app_dir(tmp_path, "raise"),
        "--port",
        "0",
        "--lifespan",
        "on",
    )
    assert result.returncode == 3, result.stderr
    assert "Listening on" not in result.stderr
    assert "no lifespan support" in result.stderr.strip().splitlines()[-1]


def test_lifespan_auto_with_an_app_that_raises_still_serves(tmp_path: Path) -> None:
    with cli_server(
        "lifespan_app:app",
        "--app-dir",
        _app_dir(tmp_path, "raise"),
        "--port",
        "0",
        "--lifespan",
        "auto",
    ) as srv:
        response = httpx.get(srv.url + "/")
        assert response.status_code == 200
        assert response.content == b"none"  # no state: startup never completed
    assert "SCOPE lifespan" in srv.output  # it was tried...
    assert "Traceback" not in srv.output  # ...and quietly given up on


@pytest.mark.parametrize(("policy", "called"), [("off", False), ("on", True), ("auto", True)])
def test_lifespan_off_never_calls_the_app_with_lifespan(
    tmp_path: Path, policy: str, called: bool
) -> None:
    srv = CLIServer(
        "lifespan_app:app", "--app-dir", _app_dir(tmp_path), "--port", "0", "--lifespan", policy
    ).wait_ready()
    try:
        body = httpx.get(srv.url + "/").content
    finally:
        assert srv.stop() == 0
    assert "SCOPE http" in srv.output
    assert ("SCOPE lifespan" in srv.output) is called
    assert body == (b"from-lifespan" if called else b"none")


def test_startup_timeout_on_the_cli_exits_3(tmp_path: Path) -> None:
    started = time.monotonic()
    result = run_cli(
        "lifespan_app:app",
        "--app-dir",
        _app_dir(tmp_path, "hang"),
        "--port",
        "0",
        "--lifespan-startup-timeout",
        "0.5",
        "--lifespan",
        "on",
    )
    elapsed = time.monotonic() - started
    assert result.returncode == 3, result.stderr
    assert "did not complete within 0.5s" in result.stderr
    assert "Listening on" not in result.stderr
    assert elapsed < 8  # the 0.5 s timeout, not the 10 s default


def test_startup_timeout_in_the_python_api_raises() -> None:
    async def hanging(scope, receive, send):  # type: ignore[no-untyped-def]
        await receive()
        await __import__("asyncio").Event().wait()

    server = Server(
        hanging, port=0, lifespan="on", lifespan_startup_timeout=0.5, log_level="critical"
    )
    errors: list[BaseException] = []

    def run() -> None:
        try:
            server.run()
        except BaseException as exc:
            errors.append(exc)

    thread = threading.Thread(target=run, daemon=True)
    started = time.monotonic()
    thread.start()
    thread.join(10)
    assert not thread.is_alive()
    assert time.monotonic() - started < 8
    assert not server.started.is_set()
    assert len(errors) == 1
    assert isinstance(errors[0], LifespanStartupError)
    assert errors[0].exit_code == 3


class ASGI2App:
    """A double-callable (ASGI 2) app: instantiated with the scope, then called."""

    events: list[str] = []

    def __init__(self, scope: dict) -> None:  # type: ignore[type-arg]
        self.scope = scope

    async def __call__(self, receive, send) -> None:  # type: ignore[no-untyped-def]
        if self.scope["type"] == "lifespan":
            while True:
                message = await receive()
                self.events.append(message["type"])
                if message["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                else:
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        await send({"type": "http.response.start", "status": 200, "headers": [(b"x-asgi", b"2")]})
        await send({"type": "http.response.body", "body": self.scope["path"].encode()})


def test_asgi2_double_callable_app() -> None:
    ASGI2App.events.clear()
    with serve(ASGI2App, lifespan="on") as srv:
        response = httpx.get(srv.url + "/asgi2/path")
        assert response.status_code == 200
        assert response.headers["x-asgi"] == "2"
        assert response.content == b"/asgi2/path"
    assert ASGI2App.events == ["lifespan.startup", "lifespan.shutdown"]
