"""Where options come from: the command line, ASGIRI_* variables, --env-file, --config.

Precedence is command line > environment > config file > defaults; every
source is tried against a real server process, and every mistake is one line.
"""

from __future__ import annotations

import asyncio
import subprocess
from pathlib import Path

import httpx
import pytest
import websockets

from asgiri.environment import EnvironmentConfigError, options_from_environ, read_env_file
from asgiri.server import Server
from tests.support.servers import CLIServer, cli_server, run_cli, subprocess_env


def _run_env(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    import sys

    from tests.support.servers import ROOT

    full = subprocess_env(env)
    return subprocess.run(
        [sys.executable, "-m", "asgiri", *args],
        cwd=ROOT,
        env=full,
        capture_output=True,
        text=True,
        timeout=60,
    )


def _one_line(result: subprocess.CompletedProcess[str]) -> str:
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    return lines[0]


# ---------------------------------------------------------------- environment


def test_environment_sets_options_and_the_app() -> None:
    env = {
        "ASGIRI_APP": "apps:scope_json",
        "ASGIRI_PORT": "0",
        "ASGIRI_ROOT_PATH": "/mounted",
        "ASGIRI_SERVER_HEADER": "false",
        "ASGIRI_TIMEOUT_KEEP_ALIVE": "7.5",
    }
    with cli_server(env=env) as srv:
        response = httpx.get(srv.url + "/mounted/x")
    assert response.json()["root_path"] == "/mounted"
    assert "server" not in response.headers


def test_command_line_beats_environment_beats_config_file(tmp_path: Path) -> None:
    config = tmp_path / "asgiri.toml"
    config.write_text(
        'app = "apps:scope_json"\nroot_path = "/from-file"\nserver_header = false\n'
        "date_header = false\n"
    )
    env = {"ASGIRI_ROOT_PATH": "/from-env", "ASGIRI_DATE_HEADER": "true"}
    with cli_server("--config", str(config), "--port", "0", env=env) as srv:
        from_env = httpx.get(srv.url + "/from-env/x")
    assert from_env.json()["root_path"] == "/from-env"  # environment over file
    assert "date" in from_env.headers  # environment over file
    assert "server" not in from_env.headers  # the file, where nothing else says otherwise
    with cli_server(
        "--config", str(config), "--port", "0", "--root-path", "/from-cli", env=env
    ) as srv:
        from_cli = httpx.get(srv.url + "/from-cli/x")
    assert from_cli.json()["root_path"] == "/from-cli"


def test_config_file_from_the_environment(tmp_path: Path) -> None:
    config = tmp_path / "asgiri.toml"
    config.write_text('app = "apps:scope_json"\nport = 0\nroot_path = "/f"\n')
    with cli_server(env={"ASGIRI_CONFIG": str(config)}) as srv:
        assert httpx.get(srv.url + "/f/x").json()["root_path"] == "/f"


def test_repeatable_options_and_flag_spellings_as_variables(tmp_path: Path) -> None:
    sock = tmp_path / "s.sock"
    env = {"ASGIRI_BIND": f"127.0.0.1:0 unix:{sock}"}  # --bind's spelling, whitespace-separated
    with cli_server("apps:hello", env=env) as srv:
        assert httpx.get(srv.url).text == "Hello, World!"
        with httpx.Client(transport=httpx.HTTPTransport(uds=str(sock))) as client:
            assert client.get("http://localhost/").text == "Hello, World!"
    parsed = options_from_environ({"ASGIRI_BIND": '["127.0.0.1:1", "unix:/a b"]'})
    assert parsed == {"binds": ["127.0.0.1:1", "unix:/a b"]}
    assert options_from_environ({"ASGIRI_NO_HTTP3": "yes"}) == {"enable_http3": False}
    assert options_from_environ({"ASGIRI_HTTP": "2"}) == {"http_version": "2"}
    assert options_from_environ({"ASGIRI_SSL_CERTFILE": "c.pem"}) == {"certfile": "c.pem"}


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({"ASGIRI_PORT": "eighty"}, "asgiri: error: ASGIRI_PORT must be an integer, got 'eighty'"),
        (
            {"ASGIRI_ACCESS_LOG": "maybe"},
            "asgiri: error: ASGIRI_ACCESS_LOG must be true or false (or 1/0, yes/no, on/off), "
            "got 'maybe'",
        ),
        (
            {"ASGIRI_PORT": "70000"},
            "asgiri: error: ASGIRI_PORT must be between 0 and 65535, got 70000 "
            "(see 'asgiri --help')",
        ),
        (
            {"ASGIRI_BIND": "0.0.0.0:1", "ASGIRI_BINDS": "0.0.0.0:2"},
            "asgiri: error: ASGIRI_BIND and ASGIRI_BINDS both set option 'binds'; keep one",
        ),
    ],
)
def test_bad_variables_are_one_line(env: dict[str, str], expected: str) -> None:
    result = _run_env("apps:hello", env=env)
    assert result.returncode == 2
    line = _one_line(result)
    assert line.startswith(expected), line


def test_unknown_variables_are_named_not_fatal() -> None:
    """A typo gets a line with the option it is close to; the app's own ASGIRI_* are let be."""
    env = {"ASGIRI_TIMEOUT_KEEPALIVE": "2", "ASGIRI_MY_APP_SETTING": "x"}
    with cli_server("apps:hello", "--port", "0", env=env) as srv:
        assert httpx.get(srv.url).text == "Hello, World!"
    notes = [line.strip() for line in srv.lines if line.startswith("asgiri: note:")]
    assert notes == [
        "asgiri: note: ASGIRI_MY_APP_SETTING is not an asgiri option; ignored",
        "asgiri: note: ASGIRI_TIMEOUT_KEEPALIVE is not an asgiri option; ignored "
        "(did you mean ASGIRI_TIMEOUT_KEEP_ALIVE?)",
    ]


# ---------------------------------------------------------------- --env-file


def test_env_file_sets_variables_for_the_app_and_the_server(tmp_path: Path) -> None:
    env_file = tmp_path / ".env"
    env_file.write_text(
        "# deployment settings\n"
        "export DATABASE_URL=postgres://db/app  # trailing comment\n"
        "GREETING='hello # not a comment'\n"
        'MULTI="line one\\nline two"\n'
        "ALREADY=from-file\n"
        "ASGIRI_ROOT_PATH=/via-env-file\n"
    )
    query = "/via-env-file/?DATABASE_URL,GREETING,MULTI,ALREADY"
    with cli_server(
        "apps.ops:environ", "--port", "0", "--env-file", str(env_file), env={"ALREADY": "real"}
    ) as srv:
        seen = httpx.get(srv.url + query).json()
    assert seen == {
        "DATABASE_URL": "postgres://db/app",
        "GREETING": "hello # not a comment",
        "MULTI": "line one\nline two",
        "ALREADY": "real",  # the real environment wins over the file
    }


def test_env_file_from_python_and_with_workers(tmp_path: Path) -> None:
    env_file = tmp_path / "app.env"
    env_file.write_text("OPS_TEST_TOKEN=s3cret\n")
    with cli_server(
        "apps.ops:environ", "--port", "0", "--workers", "2", "--env-file", str(env_file)
    ) as srv:
        srv.wait_count(r"Worker process \[\d+\] is ready", 2)
        assert httpx.get(srv.url + "/?OPS_TEST_TOKEN").json() == {"OPS_TEST_TOKEN": "s3cret"}
    import os

    assert "OPS_TEST_TOKEN_API" not in os.environ
    env_file.write_text("OPS_TEST_TOKEN_API=yes\n")
    try:
        Server("apps.ops:environ", env_file=str(env_file))
        assert os.environ["OPS_TEST_TOKEN_API"] == "yes"
    finally:
        os.environ.pop("OPS_TEST_TOKEN_API", None)


def test_bad_env_files_are_one_line(tmp_path: Path) -> None:
    missing = run_cli("apps:hello", "--env-file", str(tmp_path / "nope.env"))
    assert missing.returncode == 2
    assert "cannot read env file" in _one_line(missing)
    bad = tmp_path / "bad.env"
    bad.write_text("OK=1\nthis is not an assignment\n")
    result = run_cli("apps:hello", "--env-file", str(bad))
    assert result.returncode == 2
    assert _one_line(result).startswith(f"asgiri: error: {bad}:2: expected KEY=VALUE")
    with pytest.raises(EnvironmentConfigError, match="unterminated double quote"):
        bad.write_text('A="open\n')
        read_env_file(bad)


# ---------------------------------------------------------------- other servers' spellings


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('bind = ["0.0.0.0:8000"]', "unknown option 'bind' (did you mean 'binds'?)"),
        ('http = "2"', "unknown option 'http' (did you mean 'http_version'?)"),
        ("keep_alive_timeout = 5", "unknown option 'keep_alive_timeout' (did you mean"),
        ("graceful_timeout = 5", "(did you mean 'timeout_graceful_shutdown'?)"),
        ("timeout_keepalive = 5", "(did you mean 'timeout_keep_alive'?)"),
    ],
)
def test_config_file_keys_close_to_an_option_get_did_you_mean(
    tmp_path: Path, text: str, expected: str
) -> None:
    config = tmp_path / "c.toml"
    config.write_text(text + "\n")
    result = run_cli("apps:hello", "--config", str(config))
    assert result.returncode == 2
    assert expected in _one_line(result)


def test_python_keywords_close_to_an_option_get_did_you_mean() -> None:
    with pytest.raises(ValueError, match=r"unknown option 'http' \(did you mean 'http_version'"):
        Server("apps:hello", http="2")
    with pytest.raises(ValueError, match=r"unknown option 'bind' \(did you mean 'binds'"):
        Server("apps:hello", bind=["127.0.0.1:0"])


def test_uvicorn_implementation_choices_get_a_notice_and_serve(tmp_path: Path) -> None:
    with cli_server(
        "apps:hello", "--port", "0", "--http", "h11", "--ws", "websockets-sansio"
    ) as srv:
        assert httpx.get(srv.url).text == "Hello, World!"
    notes = [line for line in srv.lines if line.startswith("asgiri: note:")]
    assert len(notes) == 2, srv.output
    assert "--http h11: asgiri picks its HTTP parsers itself" in notes[0]
    assert "--ws websockets-sansio: asgiri frames WebSocket with wsproto" in notes[1]
    config = tmp_path / "u.toml"
    config.write_text('http_version = "httptools"\nws = "websockets"\n')
    with cli_server("apps:hello", "--port", "0", "--config", str(config)) as srv:
        assert httpx.get(srv.url).text == "Hello, World!"
    assert f"{config}: http_version = httptools" in srv.output
    with cli_server("apps:hello", "--port", "0", env={"ASGIRI_HTTP": "h11"}) as srv:
        assert httpx.get(srv.url).text == "Hello, World!"
    assert "ASGIRI_HTTP= h11: asgiri picks" in srv.output


@pytest.mark.parametrize("value", ["false", "False", "0"])
def test_on_off_flags_take_uvicorns_true_false_values(value: str) -> None:
    offered = "permessage-deflate; client_max_window_bits"

    async def extensions(port: int) -> str | None:
        async with websockets.connect(f"ws://127.0.0.1:{port}/") as ws:
            await ws.send("x")
            await ws.recv()
            return ws.response.headers.get("sec-websocket-extensions")

    with cli_server("apps.ws:echo", "--port", "0", "--ws-per-message-deflate", value) as srv:
        assert asyncio.run(extensions(srv.port or 0)) is None
    with cli_server("apps.ws:echo", "--port", "0", "--ws-per-message-deflate", "true") as srv:
        negotiated = asyncio.run(extensions(srv.port or 0))
    assert negotiated is not None and negotiated.startswith(offered.split(";")[0])
    with cli_server("apps:hello", "--port", "0", "--access-log", "false") as srv:
        httpx.get(srv.url)
    assert '"GET / HTTP/1.1" 200' not in srv.output


def test_hypercorn_short_flags(tmp_path: Path) -> None:
    config = tmp_path / "h.toml"
    config.write_text("root_path = '/short'\n")
    srv = CLIServer("apps.ops:pid", "-b", "127.0.0.1:0", "-w", "1", "-c", str(config))
    try:
        srv.wait_ready()
        srv.wait_for(r"Worker process \[\d+\] is ready")
        assert httpx.get(srv.url + "/short/").status_code == 200
        assert "Started supervisor process" in srv.output
    finally:
        srv.stop()


# ---------------------------------------------------------------- --print-config


def test_print_config_round_trips_through_config(tmp_path: Path) -> None:
    config = tmp_path / "base.toml"
    config.write_text('root_path = "/rt"\nreload_excludes = ["tests/"]\n')
    env = {"ASGIRI_TIMEOUT_KEEP_ALIVE": "3.5", "ASGIRI_KEYFILE_PASSWORD": "hunter2"}
    printed = _run_env(
        "apps:scope_json", "--config", str(config), "--port", "0", "--print-config", env=env
    )
    assert printed.returncode == 0, printed.stderr
    text = printed.stdout
    assert 'app = "apps:scope_json"' in text
    assert "timeout_keep_alive = 3.5" in text  # from the environment
    assert 'root_path = "/rt"' in text  # from the file
    assert "port = 0" in text  # from the command line
    assert 'reload_excludes = ["tests/"]' in text
    assert 'lifespan = "auto"' in text and "backlog = 2048" in text  # defaults too
    assert "hunter2" not in text and "# keyfile_password = ...  (set; not shown)" in text
    assert "# enable_http3 =  (auto: HTTP/3 is off: it needs TLS" in text
    dumped = tmp_path / "effective.toml"
    dumped.write_text(text)
    again = run_cli("--config", str(dumped), "--print-config")
    assert again.returncode == 0, again.stderr
    assert again.stdout == text.replace(
        "# keyfile_password = ...  (set; not shown)", "# keyfile_password =  (not set)"
    )
    with cli_server("--config", str(dumped)) as srv:
        assert httpx.get(srv.url + "/rt/x").json()["root_path"] == "/rt"


def test_print_config_without_an_app_shows_the_defaults() -> None:
    result = run_cli("--print-config", "--workers", "auto")
    assert result.returncode == 0, result.stderr
    assert '# app = "module:attribute"' in result.stdout
    assert "workers = " in result.stdout and "# workers =" not in result.stdout
    bad = run_cli("--print-config", "--port", "70000")
    assert bad.returncode == 2
    assert _one_line(bad).startswith("asgiri: error: --port must be between 0 and 65535")


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (
            ["--keep-alive", "5"],
            "--keep-alive is hypercorn's option; asgiri's is --timeout-keep-alive",
        ),
        (["--insecure-bind", "0.0.0.0:80"], "asgiri's is --bind http://HOST:PORT"),
        (["--ssl-version", "17"], "--ssl-version is uvicorn's option; asgiri has none"),
        (["--no-ws"], "--no-ws is granian's option; asgiri's is --ws none"),
        (["--http1-header-read-timeout=5000"], "(seconds, not milliseconds)"),
    ],
)
def test_other_servers_options_get_an_answer(args: list[str], expected: str) -> None:
    result = run_cli("apps:hello", *args)
    assert result.returncode == 2
    line = _one_line(result)
    assert expected in line and line.endswith("(see docs/migration.md) (see 'asgiri --help')")


def test_other_servers_options_are_not_asgiris() -> None:
    from asgiri.cli import build_parser
    from asgiri.spellings import PEER_FLAGS

    ours = {flag for action in build_parser()._actions for flag in action.option_strings}
    assert not ours & set(PEER_FLAGS)


def test_granians_http_1() -> None:
    with cli_server("apps:hello", "--port", "0", "--http", "1") as srv:
        reply = httpx.get(srv.url)
    assert reply.status_code == 200
    assert "(h1)" in srv.output  # HTTP/1.1 only: no h2c on the listener
