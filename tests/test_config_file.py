"""``--config FILE``: TOML options under their Python names, the CLI winning.

Servers run as real ``python -m asgiri`` processes on port 0; the file's
effect is checked from outside (what the server answers and logs), and every
bad file must be one usage line naming the file and the key.
"""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from asgiri.config import iter_options
from asgiri.config_file import ConfigFileError, load_config_file
from asgiri.server import Server
from tests.servers import cli_server, run_cli


def write(tmp_path: Path, text: str, name: str = "asgiri.toml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_file_sets_options_and_the_app(tmp_path: Path) -> None:
    conf = write(
        tmp_path,
        'app = "apps:scope_json"\nport = 0\nroot_path = "/api"\n'
        "server-header = false\naccess_log = false\n",
    )
    with cli_server("--config", str(conf)) as srv:
        response = httpx.get(srv.url + "/api/x")
        assert response.json()["root_path"] == "/api"
        assert "server" not in response.headers
    assert "/api/x" not in srv.output  # access_log = false


def test_command_line_overrides_the_file(tmp_path: Path) -> None:
    conf = write(tmp_path, 'app = "apps:nothing_here"\nport = 0\nroot_path = "/file"\n')
    with cli_server("apps:scope_json", "--config", str(conf), "--root-path", "/cli") as srv:
        assert httpx.get(srv.url + "/cli/").json()["root_path"] == "/cli"


def test_pyproject_reads_the_tool_asgiri_table(tmp_path: Path) -> None:
    conf = write(
        tmp_path,
        '[project]\nname = "x"\n\n[tool.asgiri]\napp = "apps:hello"\nport = 0\n'
        "server_header = false\n",
        name="pyproject.toml",
    )
    with cli_server("--config", str(conf)) as srv:
        response = httpx.get(srv.url + "/")
        assert response.text == "Hello, World!"
        assert "server" not in response.headers


def test_pyproject_is_not_read_unless_named(tmp_path: Path) -> None:
    write(tmp_path, "[tool.asgiri]\nport = 1\n", name="pyproject.toml")
    (tmp_path / "tinyapp.py").write_text(
        "async def app(scope, receive, send):\n    pass\n", encoding="utf-8"
    )
    # Port 1 would fail to bind; served on port 0 means the file was ignored.
    with cli_server("tinyapp:app", "--port", "0", cwd=tmp_path) as srv:
        assert srv.port not in (None, 1)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("prot = 8000\n", "asgiri.toml: unknown option 'prot'"),
        ('port = "eighty"\n', "asgiri.toml: 'port' must be an integer, got 'eighty'"),
        ("port = 70000\n", "asgiri.toml: port must be between 0 and 65535, got 70000"),
        ("access_log = 1\n", "asgiri.toml: 'access_log' must be true or false, got 1"),
        ('http = "9"\n', "asgiri.toml: unknown option 'http'"),
        ('http_version = "9"\n', "'http_version' must be one of auto, 1.1, 2, 3"),
        ("reload_dirs = [1]\n", "'reload_dirs' must be a list of strings"),
        ('access_log_format = "{nope}"\n', "access_log_format has an unknown atom '{nope}'"),
        ("port = \n", "is not valid TOML"),
    ],
)
def test_bad_file_is_one_line_naming_the_key(tmp_path: Path, text: str, expected: str) -> None:
    conf = write(tmp_path, text)
    result = run_cli("apps:hello", "--config", str(conf))
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert expected in lines[0]
    assert str(conf) in lines[0]  # the file is named by its full path, not only its name


def test_missing_file_and_missing_table_are_usage_errors(tmp_path: Path) -> None:
    result = run_cli("apps:hello", "--config", str(tmp_path / "none.toml"))
    assert result.returncode == 2
    assert "cannot read config file" in result.stderr
    conf = write(tmp_path, '[project]\nname = "x"\n', name="pyproject.toml")
    result = run_cli("apps:hello", "--config", str(conf))
    assert result.returncode == 2
    assert "no [tool.asgiri] table" in result.stderr


def test_every_cli_option_can_be_set_in_a_file(tmp_path: Path) -> None:
    """Each option of the table is accepted with its default (both spellings)."""
    lines = []
    for spec in iter_options():
        if spec.flags is None or spec.default is None:
            continue
        default = spec.default
        if hasattr(default, "value"):
            value = f'"{default.value}"'
        elif isinstance(default, bool):
            value = "true" if default else "false"
        elif isinstance(default, str):
            value = f'"{default}"'
        elif isinstance(default, list):
            value = "[]"
        else:
            value = repr(default)
        lines.append(f"{spec.name} = {value}")
    options = load_config_file(write(tmp_path, "\n".join(lines) + "\n"))
    assert len(options) == len(lines)
    dashed = "\n".join(
        name.replace("_", "-") + " = " + rest
        for name, rest in (line.split(" = ", 1) for line in lines)
    )
    dashed_options = load_config_file(write(tmp_path, dashed + "\n", name="dashed.toml"))
    assert dashed_options == options


def test_same_option_in_both_spellings_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigFileError, match="given twice"):
        load_config_file(write(tmp_path, "root_path = '/a'\nroot-path = '/b'\n"))


def test_python_api_takes_the_same_file(tmp_path: Path) -> None:
    conf = write(tmp_path, 'app = "apps:hello"\nport = 0\ntimeout-keep-alive = 2.5\n')
    server = Server(**load_config_file(conf))
    assert server.config.app == "apps:hello"
    assert server.config.timeouts.timeout_keep_alive == 2.5
