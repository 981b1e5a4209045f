"""The development reloader, for real: a server process, a file edit, a new answer.

Each test starts ``asgiri --reload`` (or a script calling
``Server(app, reload=True).run()``) on an app in a temporary directory, asks
it something, rewrites the app, and polls until the answer changes, with a
deadline.  The edit is repeated while polling: a change made in the instant
before the watcher is set up would otherwise be missed, and the test would be
measuring that race rather than the reloader.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest

from asgiri.cli import build_parser
from asgiri.server import Server
from asgiri.server.process import import_target
from asgiri.server.reload import ChangeFilter
from tests.servers import ROOT, CLIServer, run_cli

APP = """
async def app(scope, receive, send):
    if scope["type"] != "http":
        return
    await send({{"type": "http.response.start", "status": 200, "headers": []}})
    await send({{"type": "http.response.body", "body": b"{version}"}})
"""

SCRIPT = """
import sys
from asgiri.server import Server

async def app(scope, receive, send):
    if scope["type"] != "http":
        return
    await send({{"type": "http.response.start", "status": 200, "headers": []}})
    await send({{"type": "http.response.body", "body": b"{version}"}})

# No __main__ guard, like many 0.3 scripts: the server process imports this
# module again, and this line must not start a second reloader there.
Server(app, port=0, reload=True, reload_delay_ms=50).run()
"""

DEADLINE = 30.0


def _get(url: str) -> str | None:
    try:
        return httpx.get(url, timeout=5).text
    except httpx.HTTPError:
        return None


def _edit_until(path: Path, source: str, url: str, expected: str) -> None:
    """Rewrite ``path`` until the server answers ``expected`` (bounded)."""
    deadline = time.monotonic() + DEADLINE
    while time.monotonic() < deadline:
        path.write_text(source)
        if _get(url) == expected:
            return
        time.sleep(0.2)  # poll interval, not a synchronisation
    raise AssertionError(f"the server never answered {expected!r} after {path.name} changed")


def test_cli_reload_serves_the_edited_app(tmp_path: Path) -> None:
    app_file = tmp_path / "reload_app.py"
    app_file.write_text(APP.format(version="v1"))
    srv = CLIServer(
        "reload_app:app",
        "--reload",
        "--port",
        "0",
        "--app-dir",
        str(tmp_path),
        "--reload-dir",
        str(tmp_path),
        "--reload-delay-ms",
        "50",
        "--reload-ignore",
        "*.txt",
    ).wait_ready()
    try:
        assert srv.wait_for(r"Started reloader process")
        first_pid = srv.wait_for(r"Started server process \[(\d+)\]").group(1)
        assert _get(srv.url) == "v1"
        _edit_until(app_file, APP.format(version="v2"), srv.url, "v2")
        # A new process answered, on the same port the parent keeps bound.
        # (Log lines reach us through a reader thread: wait for them, too.)
        srv.wait_for(rf"Started server process \[(?!{first_pid}\])\d+\]")
        srv.wait_for(r"Detected changes in reload_app\.py")
        # A syntax error kills the server process; the reloader waits for the fix.
        app_file.write_text("async def app(:\n")
        srv.wait_for(r"exited with code 1; waiting for changes", DEADLINE)
        _edit_until(app_file, APP.format(version="v3"), srv.url, "v3")
    finally:
        code = srv.stop()
    assert code == 0, srv.output
    assert "Stopped reloader process" in srv.output


def test_ignored_changes_do_not_restart(tmp_path: Path) -> None:
    app_file = tmp_path / "reload_app.py"
    app_file.write_text(APP.format(version="v1"))
    srv = CLIServer(
        "reload_app:app",
        "--reload",
        "--port",
        "0",
        "--app-dir",
        str(tmp_path),
        "--reload-delay-ms",
        "50",
        "--reload-ignore",
        "*.txt",
        "--reload-exclude",
        "data/",
    ).wait_ready()
    try:
        (tmp_path / "notes.txt").write_text("ignored")
        (tmp_path / "data").mkdir()
        (tmp_path / "data" / "x.py").write_text("ignored = True\n")
        (tmp_path / "server.log").write_text("ignored\n")
        # A change that does count, made after the ignored ones: the first
        # restart the log reports must be for it.
        _edit_until(app_file, APP.format(version="v2"), srv.url, "v2")
        srv.wait_for(r"Detected changes in reload_app\.py")
    finally:
        srv.stop()
    detected = [line for line in srv.lines if "Detected changes" in line]
    assert detected, srv.output
    for line in detected:
        assert "notes.txt" not in line and "x.py" not in line and "server.log" not in line


WRITER = """
import os

async def app(scope, receive, send):
    if scope["type"] != "http":
        return
    with open("store.json", "a") as fh:  # an app that keeps data next to its code
        fh.write("{{}}\\n")
    await send({{"type": "http.response.start", "status": 200, "headers": []}})
    await send({{"type": "http.response.body", "body": str(os.getpid()).encode()}})
"""


def test_an_app_writing_data_files_is_not_restarted(tmp_path: Path) -> None:
    """Only *.py restarts by default (uvicorn's default), and the start-up line says so."""
    (tmp_path / "writer.py").write_text(WRITER)
    srv = CLIServer(
        "writer:app", "--reload", "--port", "0", "--reload-delay", "0.05", cwd=tmp_path
    ).wait_ready()
    try:
        srv.wait_for(rf"Started reloader process \[\d+\]; watching \*\.py in {tmp_path}")
        pids = {httpx.get(srv.url).text for _ in range(5)}
        assert (tmp_path / "store.json").read_text().count("{}") == 5
        # Long enough for a restart to have shown: the same process answers.
        deadline = time.monotonic() + 2.0
        while time.monotonic() < deadline:
            pids.add(httpx.get(srv.url).text)
            time.sleep(0.2)  # poll interval
        assert len(pids) == 1, srv.output
        assert "Detected changes" not in srv.output
    finally:
        srv.stop()


def test_python_api_reload_from_a_script_without_main_guard(tmp_path: Path) -> None:
    script = tmp_path / "devserver.py"
    script.write_text(SCRIPT.format(version="one"))
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT / "src"), env.get("PYTHONPATH", "")])
    proc = subprocess.Popen(
        [sys.executable, str(script)],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    lines: list[str] = []
    try:
        port = _wait_port(proc, lines)
        url = f"http://127.0.0.1:{port}/"
        assert _get(url) == "one"
        _edit_until(script, SCRIPT.format(version="two"), url, "two")
    finally:
        proc.send_signal(signal.SIGINT)
        output = "".join(lines) + proc.communicate(timeout=30)[0]
    assert proc.returncode == 0, output
    assert output.count("Started reloader process") == 1, output


def test_python_api_reload_in_a_thread_stops_on_request_shutdown(tmp_path: Path) -> None:
    server = Server(
        "apps:hello",
        port=0,
        reload=True,
        app_dir=str(ROOT / "tests"),
        reload_dirs=[tmp_path],
        log_level="warning",
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    assert server.started.wait(DEADLINE)
    url = f"http://127.0.0.1:{server.port}/"
    try:
        # The parent holds the socket: the request waits until the child serves it.
        assert _get(url) == "Hello, World!"
    finally:
        server.request_shutdown()
        thread.join(DEADLINE)
    assert not thread.is_alive()
    assert not server.started.is_set()
    with pytest.raises(httpx.ConnectError):
        httpx.get(url)


def _wait_port(proc: subprocess.Popen[str], lines: list[str]) -> int:
    assert proc.stdout is not None
    deadline = time.monotonic() + DEADLINE
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        lines.append(line)
        if "Listening on http://" in line:
            return int(line.rsplit(":", 1)[1].split()[0])
    raise AssertionError("no Listening line:\n" + "".join(lines))


# ----------------------------------------------------------------------------- pieces


def test_reload_options_on_the_command_line() -> None:
    args = build_parser().parse_args(
        [
            "m:app",
            "--reload",
            "--reload-dir",
            "src",
            "--reload-dir",
            "lib",
            "--reload-include",
            "*.html",
            "--reload-exclude",
            "*.tmp",
            "--reload-ignore",
            "build/",
            "--reload-delay-ms",
            "350",
        ]
    )
    assert args.reload is True
    assert args.reload_dirs == ["src", "lib"]
    assert args.reload_includes == ["*.html"]
    assert args.reload_excludes == ["*.tmp", "build/"]
    assert args.reload_delay == pytest.approx(0.35)


def test_bad_reload_delay_is_a_one_line_usage_error() -> None:
    result = run_cli("apps:hello", "--reload-delay-ms", "soon")
    assert result.returncode == 2
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "--reload-delay-ms" in lines[0], result.stderr


def test_reload_refuses_what_a_child_process_cannot_receive(tmp_path: Path) -> None:
    import ssl

    async def local_app(scope: object, receive: object, send: object) -> None:
        return None

    with pytest.raises(ValueError, match="module level"):
        Server(local_app, reload=True)
    with pytest.raises(ValueError, match="ssl_context"):
        Server("apps:hello", reload=True, ssl_context=ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER))
    with pytest.raises(ValueError, match="not a directory"):
        Server("apps:hello", reload=True, reload_dirs=[tmp_path / "missing"])


def test_import_target_of_a_module_level_app() -> None:
    from tests import apps

    assert import_target(apps.hello, ".") == ("tests.apps:hello", ".")
    assert import_target("pkg.mod:app", "src") == ("pkg.mod:app", "src")


def test_change_filter(tmp_path: Path) -> None:
    from watchfiles import Change

    def passes(flt: ChangeFilter, rel: str) -> bool:
        return flt(Change.modified, str(tmp_path / rel))

    default = ChangeFilter([tmp_path], [], [])
    assert passes(default, "app.py")
    assert not passes(default, "templates/page.html")  # *.py only, as with uvicorn
    assert not passes(default, "data/store.json")  # an app writing data does not restart
    assert default.describe() == "*.py"
    html = ChangeFilter([tmp_path], ["*.html"], [])
    assert passes(html, "templates/page.html") and passes(html, "app.py")
    assert html.describe() == "*.py, *.html"
    only_html = ChangeFilter([tmp_path], ["*.html"], ["*.py"])
    assert passes(only_html, "page.html") and not passes(only_html, "app.py")
    assert only_html.describe() == "*.html; ignoring *.py"
    everything = ChangeFilter([tmp_path], [], ["*.py"])
    assert passes(everything, "templates/page.html")
    assert everything.describe() == "any file; ignoring *.py"
    assert not passes(default, "__pycache__/app.cpython-311.pyc")
    assert not passes(default, ".git/index")
    assert not passes(default, ".hidden/app.py")
    assert not passes(default, "server.log")
    custom = ChangeFilter([tmp_path], ["*.py"], ["build/", "*_test.py", "gen/*.py"])
    assert passes(custom, "pkg/app.py")
    assert not passes(custom, "templates/page.html")
    assert not passes(custom, "build/app.py")
    assert not passes(ChangeFilter([tmp_path], [], ["build/"]), "build")  # the directory itself
    assert not passes(custom, "pkg/app_test.py")
    assert not passes(custom, "gen/models.py")
