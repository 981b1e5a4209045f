"""The README's examples, extracted from README.md and run as written.

The only substitutions: fixed ports become ``0`` (a free port, read back from
the "Listening on" line), fixed paths go to a temporary directory, and the
``serve()`` example's illustrative 5 s pause is shortened.
"""

from __future__ import annotations

import re
import shlex
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from tests.support.processes import Spawned
from tests.support.servers import ROOT

README = (ROOT / "README.md").read_text()
BLOCKS = re.findall(r"^```(\w*)\n(.*?)^```", README, flags=re.S | re.M)
CONSOLE_SCRIPT = Path(sys.executable).with_name("asgiri")
LISTENING = r"Listening on (https?)://127\.0\.0\.1:(\d+)"


def _block(lang: str, marker: str) -> str:
    found = [code for kind, code in BLOCKS if kind == lang and marker in code]
    assert len(found) == 1, f"expected one {lang} block containing {marker!r}"
    return found[0]


def _commands(block: str) -> list[str]:
    """The block's command lines, without trailing comments."""
    lines = []
    for raw in block.splitlines():
        line = raw.split("  #", 1)[0].strip()
        if line and not line.startswith("#"):
            lines.append(line)
    return lines


def _argv(command: str, **replace: str) -> list[str]:
    for old, new in replace.items():
        command = command.replace(old, new)
    argv = shlex.split(command)
    if argv[0] == "asgiri":
        argv[0] = str(CONSOLE_SCRIPT)
    elif argv[0] == "python":
        argv[0] = sys.executable
    return argv


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _get_when_up(url: str, proc: Spawned, timeout: float = 15.0) -> str:
    """GET ``url`` once the server accepts connections (it logs nothing to wait on)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return httpx.get(url).text
        except httpx.ConnectError:
            assert proc.proc.poll() is None, "".join(proc.lines)
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


QUICK_START = _block("python", "server.run()")


def _main_py(directory: Path) -> None:
    """``main.py`` as the README says: the quick start without its last two lines."""
    lines = QUICK_START.rstrip().splitlines()
    assert lines[-2:] == [
        'server = Server(app=app, host="127.0.0.1", port=8000)',
        "server.run()",
    ]
    (directory / "main.py").write_text("\n".join(lines[:-2]) + "\n")


def test_readme_promises_the_setup_commands_and_links() -> None:
    for needle in ("make demo", "make test", "docs/CLI.md", "docs/ARCHITECTURE.md"):
        assert needle in README
    assert "bench/RESULTS.md" in README
    for path in ("docs/CLI.md", "docs/ARCHITECTURE.md", "examples/demo.py", "scripts/demo.sh"):
        assert (ROOT / path).exists(), path


def test_quick_start_runs(tmp_path: Path) -> None:
    code = QUICK_START.replace("port=8000", "port=0")
    assert code != QUICK_START
    script = tmp_path / "quick_start.py"
    script.write_text(code)
    proc = Spawned([sys.executable, str(script)], cwd=tmp_path)
    try:
        port = proc.wait_for(LISTENING).group(2)
        response = httpx.get(f"http://127.0.0.1:{port}/")
        assert response.status_code == 200
        assert response.headers["content-type"] == "text/plain"
        assert response.text == "Hello, World!"
    finally:
        assert proc.stop() == 0


def test_serve_and_request_shutdown_example_runs(tmp_path: Path) -> None:
    example = _block("python", "server.serve()")
    code = example.replace("port=8000", "port=0").replace("asyncio.sleep(5)", "asyncio.sleep(2)")
    assert code.count("port=0") == 1 and "asyncio.sleep(2)" in code
    script = tmp_path / "serve_example.py"
    script.write_text(code)
    proc = Spawned([sys.executable, str(script)], cwd=tmp_path)
    try:
        port = proc.wait_for(LISTENING).group(2)
        assert httpx.get(f"http://127.0.0.1:{port}/").text == "Hello from serve()"
        # request_shutdown() stops it on its own after the pause.
        assert proc.proc.wait(15) == 0
    finally:
        proc.stop()


def test_wait_started_example_runs(tmp_path: Path) -> None:
    example = _block("python", "server.wait_started(")
    app = "async def app(scope, receive, send):\n    pass\n\n"
    script = tmp_path / "wait_started_example.py"
    script.write_text(app + example + "server.request_shutdown()\nserver.stopped.wait(10)\n")
    result = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, timeout=30
    )
    assert result.returncode == 0, result.stderr
    assert re.fullmatch(r"serving on port \d+\n", result.stdout), result.stdout


CLI_BLOCK = _block("bash", "asgiri main:app --host 127.0.0.1 --port 8000")


@pytest.mark.skipif(not CONSOLE_SCRIPT.exists(), reason="asgiri console script not installed")
@pytest.mark.parametrize("command", _commands(CLI_BLOCK))
def test_cli_example_runs(tmp_path: Path, command: str) -> None:
    _main_py(tmp_path)
    proc = Spawned(_argv(command, **{"--port 8000": "--port 0"}), cwd=tmp_path)
    try:
        port = proc.wait_for(LISTENING).group(2)
        assert httpx.get(f"http://127.0.0.1:{port}/").text == "Hello, World!"
    finally:
        assert proc.stop() == 0


MORE_BLOCK = _block("bash", "asgiri --help")


@pytest.mark.skipif(not CONSOLE_SCRIPT.exists(), reason="asgiri console script not installed")
@pytest.mark.parametrize("command", _commands(MORE_BLOCK))
def test_more_cli_examples_run(tmp_path: Path, command: str) -> None:
    _main_py(tmp_path)
    sock = str(tmp_path / "asgiri.sock")
    argv = _argv(
        command,
        **{"--port 8000": "--port 0", "/tmp/asgiri.sock": sock, "127.0.0.1:8000": "127.0.0.1:0"},
    )
    if "--help" in argv:
        result = subprocess.run(argv, capture_output=True, text=True, timeout=30)
        assert result.returncode == 0
        assert "--timeout-graceful-shutdown" in result.stdout
        return
    quiet = "warning" in argv  # no "Listening on" line to read the port from
    if quiet:
        port = _free_port()
        argv = [str(port) if arg == "0" else arg for arg in argv]
    proc = Spawned(argv, cwd=tmp_path)
    try:
        if quiet:
            assert _get_when_up(f"http://127.0.0.1:{port}/", proc) == "Hello, World!"
        elif "--uds" in argv or f"unix:{sock}" in argv:
            proc.wait_for(r"Listening on http\+unix://")
            with httpx.Client(transport=httpx.HTTPTransport(uds=sock)) as client:
                assert client.get("http://localhost/").text == "Hello, World!"
        else:
            port = proc.wait_for(LISTENING).group(2)
            assert httpx.get(f"http://127.0.0.1:{port}/").text == "Hello, World!"
    finally:
        assert proc.stop() == 0


@pytest.mark.skipif(not CONSOLE_SCRIPT.exists(), reason="asgiri console script not installed")
def test_tls_example_runs(tmp_path: Path) -> None:
    _main_py(tmp_path)
    generate, devcert, serve, curl = _commands(_block("bash", "asgiri --generate-cert certs"))
    for command in (generate, devcert):
        (tmp_path / "certs" / "cert.pem").unlink(missing_ok=True)
        (tmp_path / "certs" / "key.pem").unlink(missing_ok=True)
        result = subprocess.run(
            _argv(command), cwd=tmp_path, capture_output=True, text=True, timeout=30
        )
        assert result.returncode == 0, result.stderr
        assert (tmp_path / "certs" / "cert.pem").exists()
        assert (tmp_path / "certs" / "key.pem").exists()
    proc = Spawned([*_argv(serve), "--port", "0"], cwd=tmp_path)
    try:
        scheme, port = proc.wait_for(LISTENING).groups()
        assert scheme == "https"
        curl_argv = _argv(curl, **{":8443/": f":{port}/"})
        assert curl_argv[0] == "curl"
        if shutil.which("curl") is None:
            pytest.skip("curl is not installed (make test installs it)")
        result = subprocess.run(curl_argv, cwd=tmp_path, capture_output=True, timeout=30)
        assert result.returncode == 0, result.stderr
        assert result.stdout == b"Hello, World!"
    finally:
        assert proc.stop() == 0


def test_asgiri_03_example_runs(tmp_path: Path) -> None:
    """The "Coming from asgiri 0.3" example is a whole program: it serves and answers over TLS."""
    code = _block("python", "LifespanPolicy.ENABLED")
    script = tmp_path / "compat_example.py"
    script.write_text(code)
    result = subprocess.run(
        [sys.executable, str(script)], cwd=tmp_path, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "Hello over TLS"


def test_links_into_the_docs_name_existing_headings() -> None:
    """``docs/X.md#anchor`` links in README and docs point at a heading that exists."""
    sources = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
    broken = []
    for source in sources:
        text = source.read_text()
        for target, anchor in re.findall(r"\]\(((?:docs/)?[\w.-]*\.md)?#([\w-]+)\)", text):
            if target:
                path = (source.parent / target).resolve()
                if not path.exists():
                    path = ROOT / target
            else:
                path = source
            if anchor not in _anchors(path.read_text()):
                broken.append(f"{source.name}: {target}#{anchor}")
    assert not broken, broken


def _anchors(markdown: str) -> set[str]:
    """GitHub's heading anchors: lower case, punctuation dropped, spaces as dashes."""
    anchors = set()
    for heading in re.findall(r"^#+ (.+)$", markdown, flags=re.M):
        slug = re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")
        anchors.add(slug)
    return anchors


def test_cli_doc_lists_every_option() -> None:
    """docs/CLI.md stays complete: every flag ``asgiri --help`` knows appears in it."""
    from asgiri.cli import build_parser

    doc = (ROOT / "docs" / "CLI.md").read_text()
    flags = {flag for action in build_parser()._actions for flag in action.option_strings}
    missing = sorted(
        flag for flag in flags if not re.search(rf"(?<![\w-]){re.escape(flag)}(?![\w-])", doc)
    )
    assert not missing, f"options missing from docs/CLI.md: {missing}"
