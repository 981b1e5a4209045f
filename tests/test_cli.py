"""The ``asgiri`` command line, run as a real process against real clients.

Every server binds port 0 (or a socket the test made) and is waited on through
its "Listening on" log line; nothing sleeps for a fixed time.
"""

from __future__ import annotations

import json
import math
import os
import platform
import queue
import re
import signal
import socket
import ssl
import subprocess
import sys
import threading
import time
import typing
from importlib.metadata import PackageNotFoundError
from importlib.metadata import version as dist_version
from pathlib import Path

import httpx
import pytest

import asgiri
from asgiri.cli import main as cli_main
from asgiri.config import iter_options
from asgiri.config_file import ConfigFileError, load_config_file
from asgiri.server import Server
from tests.h3_client import H3Client
from tests.servers import ROOT, CLIServer, cli_server, run_cli

# Every option the documentation promises.
DOCUMENTED_OPTIONS = [
    "--host",
    "--port",
    "--uds",
    "--fd",
    "--certfile",
    "--keyfile",
    "--ssl-certfile",
    "--ssl-keyfile",
    "--http",
    "--no-http3",
    "--lifespan",
    "--factory",
    "--app-dir",
    "--root-path",
    "--log-level",
    "--log-config",
    "--access-log",
    "--no-access-log",
    "--timeout-keep-alive",
    "--timeout-graceful-shutdown",
    "--limit-concurrency",
    "--limit-max-requests",
    "--backlog",
    "--limit-request-header-size",
    "--limit-request-body",
    "--version",
    "--generate-cert",
]

HELLO_APP = """
async def app(scope, receive, send):
    if scope["type"] != "http":
        return
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": BODY})
"""


def _module(directory: Path, name: str, source: str) -> Path:
    path = directory / f"{name}.py"
    path.write_text(source)
    return path


def _stderr_lines(result: subprocess.CompletedProcess[str]) -> list[str]:
    return [line for line in result.stderr.splitlines() if line.strip()]


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(
        [str(ROOT / "tests"), str(ROOT), os.environ.get("PYTHONPATH", "")]
    )
    env["PYTHONUNBUFFERED"] = "1"
    return env


class Spawned:
    """Any command line as a subprocess whose merged output is read in a thread.

    ``CLIServer`` covers ``python -m asgiri``; this one also runs the console
    script and passes inherited file descriptors.
    """

    def __init__(
        self, argv: list[str], pass_fds: tuple[int, ...] = (), cwd: str | Path = ROOT
    ) -> None:
        self.proc = subprocess.Popen(
            argv,
            cwd=cwd,
            env=_env(),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            pass_fds=pass_fds,
        )
        self.lines: list[str] = []
        self._queue: queue.Queue[str | None] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line)
            self._queue.put(line)
        self._queue.put(None)

    def wait_for(self, pattern: str, timeout: float = 15.0) -> re.Match[str]:
        regex = re.compile(pattern)
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(f"no line matching {pattern!r} in:\n{''.join(self.lines)}")
            try:
                line = self._queue.get(timeout=remaining)
            except queue.Empty:
                continue
            if line is None:
                raise RuntimeError(f"process exited; output:\n{''.join(self.lines)}")
            match = regex.search(line)
            if match:
                return match

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(30)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()


# ---------------------------------------------------------------- help and version


def test_help_lists_every_documented_option() -> None:
    result = run_cli("--help")
    assert result.returncode == 0, result.stderr
    for option in DOCUMENTED_OPTIONS:
        assert re.search(rf"(?<![\w-]){re.escape(option)}(?![\w-])", result.stdout), option
    # The choices are spelled out, not just the option names.
    assert "{auto,1.1,2,3}" in result.stdout
    assert "{auto,on,off}" in result.stdout


def test_version_prints_the_installed_version() -> None:
    result = run_cli("--version")
    assert result.returncode == 0
    first, python, libraries = result.stdout.strip().splitlines()
    assert first == f"asgiri {dist_version('asgiri')}"
    assert asgiri.__version__ == dist_version("asgiri")
    assert python.startswith(f"Python {platform.python_version()} (")
    assert platform.system() in python
    for name in ("httptools", "h2", "aioquic", "wsproto"):
        assert f"{name} {dist_version(name)}" in libraries
    try:
        uvloop = f"uvloop {dist_version('uvloop')}"
    except PackageNotFoundError:
        uvloop = "uvloop not installed"
    assert uvloop in libraries


CONSOLE_SCRIPT = Path(sys.executable).with_name("asgiri")


@pytest.mark.skipif(not CONSOLE_SCRIPT.exists(), reason="asgiri console script not installed")
def test_console_script_runs_and_serves() -> None:
    result = subprocess.run(
        [str(CONSOLE_SCRIPT), "--version"], capture_output=True, text=True, timeout=30
    )
    assert result.returncode == 0
    assert result.stdout.splitlines()[0] == f"asgiri {asgiri.__version__}"
    proc = Spawned([str(CONSOLE_SCRIPT), "apps:hello", "--port", "0"])
    try:
        port = proc.wait_for(r"Listening on http://127\.0\.0\.1:(\d+)").group(1)
        response = httpx.get(f"http://127.0.0.1:{port}/")
        assert response.status_code == 200
        assert response.content == b"Hello, World!"
    finally:
        assert proc.stop() == 0


# ---------------------------------------------------------------- app loading errors


def _assert_one_line_error(
    result: subprocess.CompletedProcess[str], *fragments: str, code: int = 1
) -> str:
    assert result.returncode == code, (result.returncode, result.stderr)
    lines = _stderr_lines(result)
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.stderr
    for fragment in fragments:
        assert fragment in lines[0], (fragment, lines[0])
    return lines[0]


def test_unimportable_module_is_one_line_exit_1() -> None:
    result = run_cli("no_such_module_xyz:app", "--port", "0")
    _assert_one_line_error(result, "no_such_module_xyz")


def test_missing_attribute_is_one_line_exit_1() -> None:
    result = run_cli("apps:no_such_attribute", "--port", "0")
    _assert_one_line_error(result, "no_such_attribute", "apps")


def test_attribute_not_callable_is_one_line_exit_1() -> None:
    result = run_cli("apps:HELLO", "--port", "0")
    _assert_one_line_error(result, "not callable")


def test_syntax_error_in_module_is_one_line_exit_1(tmp_path: Path) -> None:
    _module(tmp_path, "broken_syntax", "async def app(scope, receive, send:\n    pass\n")
    result = run_cli("broken_syntax:app", "--app-dir", str(tmp_path), "--port", "0")
    _assert_one_line_error(result, "broken_syntax", "SyntaxError")


def test_missing_dependency_is_reported_as_the_dependency(tmp_path: Path) -> None:
    # The module exists; what it imports does not.  The dependency's name is a
    # prefix of the module's, which must not make the module look missing.
    _module(tmp_path, "depcheck_app", "import depcheck\n")
    result = run_cli("depcheck_app:app", "--app-dir", str(tmp_path), "--port", "0")
    line = _assert_one_line_error(result, "depcheck")
    assert "No module named 'depcheck'" in line
    assert "could not import module 'depcheck_app'" not in line


def test_log_level_debug_shows_the_traceback(tmp_path: Path) -> None:
    _module(tmp_path, "broken_syntax", "async def app(scope, receive, send:\n    pass\n")
    result = run_cli(
        "broken_syntax:app", "--app-dir", str(tmp_path), "--port", "0", "--log-level", "debug"
    )
    assert result.returncode == 1
    assert "Traceback" in result.stderr
    assert "SyntaxError" in result.stderr
    assert result.stderr.rstrip().splitlines()[-1].startswith("Error:")


# ---------------------------------------------------------------- bind and usage errors


def test_port_in_use_is_one_line_exit_1() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = run_cli("apps:hello", "--port", str(port))
    _assert_one_line_error(result, "already in use", str(port))


@pytest.mark.parametrize(
    ("args", "option"),
    [
        (["--port", "70000"], "--port"),
        (["--timeout-keep-alive", "-1"], "--timeout-keep-alive"),
        (["--http", "9"], "--http"),
        (["--port", "eighty"], "--port"),
        (["--limit-max-requests", "0"], "--limit-max-requests"),
    ],
)
def test_invalid_option_value_is_one_line_naming_the_option(args: list[str], option: str) -> None:
    result = run_cli("apps:hello", *args)
    assert result.returncode == 2, result.stderr
    lines = _stderr_lines(result)
    assert len(lines) == 1, result.stderr
    assert option in lines[0]
    assert "error" in lines[0]


def test_h2_codec_without_its_package_is_a_usage_error(tmp_path: Path) -> None:
    """Where ngh2 does not import (PyPy, a platform without its wheel), asking for
    the nghttp2 codec names the missing package; ``auto`` takes h2 there instead."""
    stand_in = tmp_path / "ngh2"
    stand_in.mkdir()
    (stand_in / "__init__.py").write_text('raise ImportError("no wheel for this platform")\n')
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(
        [str(tmp_path), str(ROOT / "tests"), str(ROOT), env.get("PYTHONPATH", "")]
    )
    command = [sys.executable, "-m", "asgiri", "apps:hello", "--port", "0"]
    result = subprocess.run(
        [*command, "--h2-codec", "nghttp2"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 2, result.stderr
    lines = _stderr_lines(result)
    assert len(lines) == 1, result.stderr
    assert "--h2-codec" in lines[0]
    assert "ngh2" in lines[0]
    assert "Listening on" not in result.stderr + result.stdout


def _float_options() -> list[str]:
    """Every option of the config tree that takes a float (seconds, all of them)."""
    names = []
    for spec in iter_options():
        hint = spec.type
        args = typing.get_args(hint) if typing.get_args(hint) else (hint,)
        if float in args:
            names.append(spec.name)
    return names


FLOAT_OPTIONS = _float_options()


def test_the_float_options_are_found() -> None:
    # The walk below must not silently find nothing.
    assert {"timeout_keep_alive", "lifespan_startup_timeout", "ws_ping_interval"} <= set(
        FLOAT_OPTIONS
    )
    assert len(FLOAT_OPTIONS) >= 12


@pytest.mark.parametrize("value", ["nan", "inf", "-inf", "NaN", "infinity"])
@pytest.mark.parametrize("name", FLOAT_OPTIONS)
def test_every_float_option_refuses_nan_and_inf(
    name: str, value: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    flag = "--" + name.replace("_", "-")
    # The command line: one line naming the option, exit code 2.
    with pytest.raises(SystemExit) as exit_info:
        cli_main(["apps:hello", f"{flag}={value}"])  # "=": argparse reads -inf as a flag
    assert exit_info.value.code == 2
    lines = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(lines) == 1, lines
    assert f"{flag} must be a finite number" in lines[0]
    # Server(...): the same sentence, with the Python name.
    with pytest.raises(ValueError, match=f"^{name} must be a finite number"):
        Server("apps:hello", **{name: float(value)})
    # A --config file (TOML spells them nan, inf, -inf).
    toml = {"nan": "nan", "NaN": "nan", "inf": "inf", "infinity": "inf", "-inf": "-inf"}[value]
    path = tmp_path / "asgiri.toml"
    path.write_text(f"{name} = {toml}\n")
    with pytest.raises(ConfigFileError, match=f"{name} must be"):
        load_config_file(path)


@pytest.mark.parametrize(
    "name", ["shutdown_timeout", "reload_delay_ms", "lifespan_startup_timeout"]
)
def test_the_03_float_arguments_refuse_nan_and_inf(name: str) -> None:
    for value in (math.nan, math.inf):
        with pytest.raises(ValueError, match="must be a finite number"):
            Server("apps:hello", **{name: value})


@pytest.mark.parametrize(
    "args", [["--timeout-keep-alive", "nan"], ["--lifespan-startup-timeout", "nan"]]
)
def test_nan_on_the_command_line_is_a_usage_error_not_a_hang(args: list[str]) -> None:
    result = run_cli("apps:hello", "--port", "0", *args, timeout=15)
    assert result.returncode == 2, result.stderr
    lines = _stderr_lines(result)
    assert len(lines) == 1, result.stderr
    assert f"{args[0]} must be a finite number of seconds, got nan" in lines[0]
    assert "Listening on" not in result.stdout + result.stderr


def test_http3_without_certificate_serves_with_a_temporary_one() -> None:
    # As asgiri 0.3's --http3 command lines run: with a certificate made at start-up.
    with cli_server("apps:hello", "--port", "0", "--http", "3") as srv:
        match = srv.wait_for(
            r"no certificate was given: .* trust it from (\S+), deleted on shutdown"
        )
        path = match.group(1)
        assert os.path.exists(path)
        assert srv.port is not None

        def configure(configuration: typing.Any) -> None:
            configuration.verify_mode = ssl.CERT_REQUIRED
            configuration.load_verify_locations(cafile=path)

        with H3Client(srv.port, configure=configure) as client:
            response = client.get("/")
        assert (response.status, response.body) == (200, b"Hello, World!")
    assert srv.proc.returncode == 0
    assert not os.path.exists(path), "the temporary certificate outlived the server"


def test_missing_app_argument_is_a_usage_error() -> None:
    result = run_cli("--port", "0")
    assert result.returncode == 2
    assert "APP" in result.stderr


# ---------------------------------------------------------------- where the app comes from


def test_factory_is_called_to_build_the_app(tmp_path: Path) -> None:
    _module(
        tmp_path,
        "factory_app",
        HELLO_APP.replace("BODY", "b'from factory'")
        + "\ncalls = []\n\ndef create_app():\n    calls.append(1)\n    return app\n",
    )
    with cli_server(
        "factory_app:create_app", "--factory", "--app-dir", str(tmp_path), "--port", "0"
    ) as srv:
        response = httpx.get(srv.url + "/")
        assert response.status_code == 200
        assert response.content == b"from factory"


def test_app_dir_is_put_on_sys_path(tmp_path: Path) -> None:
    _module(tmp_path, "app_dir_only", HELLO_APP.replace("BODY", "b'from app dir'"))
    # Without --app-dir the module is not importable from the working directory...
    missing = run_cli("app_dir_only:app", "--port", "0")
    _assert_one_line_error(missing, "app_dir_only")
    # ...with it, it is.
    with cli_server("app_dir_only:app", "--app-dir", str(tmp_path), "--port", "0") as srv:
        assert httpx.get(srv.url + "/").content == b"from app dir"


def test_root_path_reaches_the_scope() -> None:
    with cli_server("apps:scope_json", "--port", "0", "--root-path", "/api") as srv:
        scope = httpx.get(srv.url + "/items?x=1").json()
    assert scope["root_path"] == "/api"
    assert scope["path"] == "/api/items"
    assert scope["query_string"] == "x=1"


# ---------------------------------------------------------------- where the server listens


def test_uds_serves_over_a_unix_socket(tmp_path: Path) -> None:
    path = str(tmp_path / "asgiri.sock")
    srv = CLIServer("apps:scope_json", "--uds", path)
    try:
        srv.wait_for(r"Listening on http\+unix://" + re.escape(path))
        transport = httpx.HTTPTransport(uds=path)
        with httpx.Client(transport=transport) as client:
            response = client.get("http://localhost/over-uds")
        assert response.status_code == 200
        assert response.json()["path"] == "/over-uds"
    finally:
        assert srv.stop() == 0


def test_fd_serves_an_inherited_socket() -> None:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen()
    port = sock.getsockname()[1]
    fd = sock.fileno()
    proc = Spawned([sys.executable, "-m", "asgiri", "apps:hello", "--fd", str(fd)], pass_fds=(fd,))
    sock.close()  # the child holds its own copy
    try:
        proc.wait_for(rf"Listening on http://127\.0\.0\.1:{port}\b")
        response = httpx.get(f"http://127.0.0.1:{port}/")
        assert response.status_code == 200
        assert response.content == b"Hello, World!"
    finally:
        assert proc.stop() == 0


def test_backlog_sets_the_listen_queue() -> None:
    """``--backlog`` reaches listen(): Linux reports a listening socket's
    accept-queue bound as ``tcpi_sacked`` in TCP_INFO."""
    from tests.apps import hello
    from tests.servers import serve

    def listen_backlog(sock: socket.socket) -> int:
        info = sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 32)
        return int.from_bytes(info[28:32], sys.byteorder)

    with serve(hello, backlog=7) as srv:
        assert listen_backlog(srv.server.listeners[0].sock) == 7
        assert httpx.get(srv.url).status_code == 200
    # The default, as far as the kernel allows.
    somaxconn = int(Path("/proc/sys/net/core/somaxconn").read_text())
    with serve(hello) as srv:
        assert listen_backlog(srv.server.listeners[0].sock) == min(2048, somaxconn)


# ---------------------------------------------------------------- logging


ACCESS_RE = r'127\.0\.0\.1:\d+ - "GET /some/path\?a=1&b=two HTTP/1\.1" 200 13 \d+(\.\d+)?ms'


def test_default_access_line_has_all_fields() -> None:
    with cli_server("apps:hello", "--port", "0") as srv:
        assert httpx.get(srv.url + "/some/path?a=1&b=two").status_code == 200
        srv.wait_for(ACCESS_RE)


def test_no_access_log_suppresses_access_lines() -> None:
    srv = CLIServer("apps:hello", "--port", "0", "--no-access-log").wait_ready()
    try:
        assert httpx.get(srv.url + "/some/path?a=1&b=two").status_code == 200
    finally:
        assert srv.stop() == 0
    output = srv.output
    assert "Finished server process" in output  # the log itself still works
    assert "/some/path" not in output


def test_log_config_json_takes_effect(tmp_path: Path) -> None:
    config = {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"custom": {"format": "CUSTOM[%(name)s] %(message)s"}},
        "handlers": {
            "out": {
                "class": "logging.StreamHandler",
                "formatter": "custom",
                "stream": "ext://sys.stdout",
            }
        },
        "loggers": {
            "asgiri.error": {"handlers": ["out"], "level": "INFO", "propagate": False},
            "asgiri.access": {"handlers": ["out"], "level": "INFO", "propagate": False},
        },
    }
    path = tmp_path / "logging.json"
    path.write_text(json.dumps(config))
    with cli_server("apps:hello", "--port", "0", "--log-config", str(path)) as srv:
        srv.wait_for(r"^CUSTOM\[asgiri\.error\] Listening on http://")
        httpx.get(srv.url + "/some/path?a=1&b=two")
        srv.wait_for(r"^CUSTOM\[asgiri\.access\] " + ACCESS_RE)


def test_invalid_log_config_is_one_line_exit_1(tmp_path: Path) -> None:
    path = tmp_path / "logging.json"
    path.write_text("{not json")
    result = run_cli("apps:hello", "--port", "0", "--log-config", str(path))
    _assert_one_line_error(result, "--log-config")


# ---------------------------------------------------------------- limits


def test_limit_max_requests_stops_the_server() -> None:
    srv = CLIServer("apps:hello", "--port", "0", "--limit-max-requests", "3").wait_ready()
    try:
        with httpx.Client() as client:
            statuses = [client.get(srv.url + f"/{i}").status_code for i in range(3)]
        assert statuses == [200, 200, 200]
        assert srv.wait(15) == 0
        assert "Maximum request limit reached" in srv.output
    finally:
        srv.stop()


# ---------------------------------------------------------------- TLS


def test_generate_cert_writes_a_usable_pair(tmp_path: Path) -> None:
    out = tmp_path / "certs"
    result = run_cli("--generate-cert", str(out))
    assert result.returncode == 0, result.stderr
    cert, key = out / "cert.pem", out / "key.pem"
    assert "BEGIN CERTIFICATE" in cert.read_text()
    assert "PRIVATE KEY" in key.read_text()
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)  # raises if they do not match


def test_generate_cert_keeps_existing_files_unless_forced(tmp_path: Path) -> None:
    assert run_cli("--generate-cert", str(tmp_path)).returncode == 0
    cert = tmp_path / "cert.pem"
    first = cert.read_bytes()
    refused = run_cli("--generate-cert", str(tmp_path))
    assert refused.returncode == 1
    assert _stderr_lines(refused) == [
        f"Error: {tmp_path / 'cert.pem'} and {tmp_path / 'key.pem'} already exist; "
        "add --force to replace"
    ]
    assert cert.read_bytes() == first
    (tmp_path / "cert.pem").unlink()  # one file left is enough to refuse
    assert run_cli("--generate-cert", str(tmp_path)).returncode == 1
    assert not cert.exists()
    forced = run_cli("--generate-cert", str(tmp_path), "--force")
    assert forced.returncode == 0, forced.stderr
    assert cert.read_bytes() != first
    devcert = subprocess.run(
        [sys.executable, "-m", "asgiri.devcert", str(tmp_path)],
        capture_output=True,
        text=True,
        env=_env(),
        timeout=60,
    )
    assert devcert.returncode == 1
    assert "add --force to replace" in devcert.stderr
    assert run_cli("--force").returncode == 2


@pytest.mark.parametrize(
    ("cert_flag", "key_flag"),
    [("--certfile", "--keyfile"), ("--ssl-certfile", "--ssl-keyfile")],
)
def test_tls_listener_serves_https(tmp_path: Path, cert_flag: str, key_flag: str) -> None:
    assert run_cli("--generate-cert", str(tmp_path)).returncode == 0
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    with cli_server(
        "apps:scope_json", "--port", "0", cert_flag, str(cert), key_flag, str(key)
    ) as srv:
        assert srv.scheme == "https"  # the startup line says https://
        verify = ssl.create_default_context(cafile=str(cert))
        response = httpx.get(srv.url + "/secure", verify=verify)
        assert response.status_code == 200
        assert response.json()["scheme"] == "https"
        # A cleartext request on the TLS port gets no HTTP answer.
        with pytest.raises(httpx.HTTPError):
            httpx.get(f"http://127.0.0.1:{srv.port}/", timeout=5)
