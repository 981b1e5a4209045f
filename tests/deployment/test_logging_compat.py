"""Logs as people bring them from other servers: colours, uvicorn's --log-config, %-formats."""

from __future__ import annotations

import json
import os
import pty
import re
import select
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from uvicorn.config import LOGGING_CONFIG

from asgiri.asgi.access_log import translate_percent_format
from tests.support.servers import ROOT, cli_server, run_cli, subprocess_env

ACCESS = r'127\.0\.0\.1:\d+ - "GET /x\?q=1 HTTP/1\.1" 200'


def _request(url: str) -> None:
    assert httpx.get(url + "/x?q=1").status_code == 200


# ---------------------------------------------------------------- colours


def test_use_colors_colours_the_level_and_the_status() -> None:
    with cli_server("apps:hello", "--port", "0", "--use-colors") as srv:
        _request(srv.url)
        srv.wait_for(ACCESS.replace(" 200", " \x1b\\[32m200\x1b\\[0m"))
    assert "\x1b[32mINFO   \x1b[0m Started server process" in srv.output


@pytest.mark.parametrize("args", [["--no-use-colors"], []])
def test_no_colours_on_a_pipe_unless_asked(args: list[str]) -> None:
    with cli_server("apps:hello", "--port", "0", *args) as srv:
        _request(srv.url)
        srv.wait_for(ACCESS)
    assert "\x1b[" not in srv.output


def test_json_access_lines_are_never_coloured() -> None:
    with cli_server("apps:hello", "--port", "0", "--use-colors", "--access-log-json") as srv:
        _request(srv.url)
        line = srv.wait_for(r'\{.*"path_query": "/x\?q=1".*\}')
    json.loads(line.group(0))
    assert "\x1b[" not in line.string


def _on_a_terminal(env: dict[str, str]) -> str:
    """The server's output when stderr is a terminal (a pseudo-terminal here)."""
    master, slave = pty.openpty()
    full = subprocess_env(env)
    proc = subprocess.Popen(
        [sys.executable, "-m", "asgiri", "apps:hello", "--port", "0"],
        cwd=ROOT,
        env=full,
        stdout=slave,
        stderr=slave,
    )
    os.close(slave)
    seen = b""
    try:
        deadline = time.monotonic() + 15
        while b"GET /x?q=1" not in seen:
            assert time.monotonic() < deadline, seen
            ready, _, _ = select.select([master], [], [], 0.5)
            if ready:
                seen += os.read(master, 65536)
            port = re.search(rb"Listening on http://127\.0\.0\.1:(\d+)", seen)
            if port and b"/x?q=1" not in seen and b"requested" not in seen:
                _request(f"http://127.0.0.1:{int(port.group(1))}")
                seen += b"requested"
    finally:
        proc.terminate()
        proc.wait(30)
        os.close(master)
    return seen.decode(errors="replace")


def test_colours_on_a_terminal_unless_no_color() -> None:
    coloured = _on_a_terminal({})
    assert "\x1b[32mINFO" in coloured and "\x1b[32m200\x1b[0m" in coloured
    plain = _on_a_terminal({"NO_COLOR": "1"})
    assert "GET /x?q=1" in plain and "\x1b[" not in plain


# ---------------------------------------------------------------- uvicorn's --log-config


def test_uvicorns_own_log_config_works_unchanged(tmp_path: Path) -> None:
    """uvicorn's default LOGGING_CONFIG, with its own formatter classes, as a file."""
    config = tmp_path / "uvicorn-logging.json"
    config.write_text(json.dumps(LOGGING_CONFIG))
    with cli_server("apps:hello", "--port", "0", "--log-config", str(config)) as srv:
        _request(srv.url)
        line = srv.wait_for(r"INFO: +" + ACCESS)
    assert line.string.startswith("INFO:     127.0.0.1:")
    assert re.search(r"^INFO: +Started server process \[\d+\]", srv.output, flags=re.M)


def test_uvicorn_record_fields_in_a_plain_formatter(tmp_path: Path) -> None:
    config = tmp_path / "fields.json"
    fields = "ACCESS %(client_addr)s|%(request_line)s|%(status_code)s"
    config.write_text(
        json.dumps(
            {
                "version": 1,
                "disable_existing_loggers": False,
                "formatters": {"fields": {"format": fields}, "plain": {"format": "%(message)s"}},
                "handlers": {
                    "out": {"class": "logging.StreamHandler", "formatter": "fields"},
                    "err": {"class": "logging.StreamHandler", "formatter": "plain"},
                },
                "loggers": {
                    "asgiri.access": {"handlers": ["out"], "level": "INFO", "propagate": False},
                    "asgiri.error": {"handlers": ["err"], "level": "INFO", "propagate": False},
                },
            }
        )
    )
    with cli_server("apps:hello", "--port", "0", "--log-config", str(config)) as srv:
        _request(srv.url)
        srv.wait_for(r"ACCESS 127\.0\.0\.1:\d+\|GET /x\?q=1 HTTP/1\.1\|200$")


def test_uvicorn_ini_log_config(tmp_path: Path) -> None:
    """An INI file naming only uvicorn's loggers (qualname) gets asgiri's records."""
    config = tmp_path / "logging.ini"
    config.write_text(
        "[loggers]\nkeys=root,access,error\n\n"
        "[handlers]\nkeys=out,err\n\n"
        "[formatters]\nkeys=fields,plain\n\n"
        "[logger_root]\nlevel=WARNING\nhandlers=\n\n"
        "[logger_access]\nlevel=INFO\nhandlers=out\nqualname=uvicorn.access\npropagate=0\n\n"
        "[logger_error]\nlevel=INFO\nhandlers=err\nqualname=uvicorn.error\npropagate=0\n\n"
        "[handler_out]\nclass=StreamHandler\nformatter=fields\nargs=(sys.stdout,)\n\n"
        "[handler_err]\nclass=StreamHandler\nformatter=plain\nargs=(sys.stderr,)\n\n"
        "[formatter_fields]\nformat=INI %(client_addr)s %(request_line)s %(status_code)s\n\n"
        "[formatter_plain]\nformat=%(name)s %(message)s\n"
    )
    with cli_server("apps:hello", "--port", "0", "--log-config", str(config)) as srv:
        _request(srv.url)
        srv.wait_for(r"INI 127\.0\.0\.1:\d+ GET /x\?q=1 HTTP/1\.1 200")
    assert "uvicorn.error Listening on http://127.0.0.1:" in srv.output


# ---------------------------------------------------------------- %-style access formats

HYPERCORN_DEFAULT = '%(h)s %(l)s %(l)s %(t)s "%(r)s" %(s)s %(b)s "%(f)s" "%(a)s"'


def test_a_percent_style_format_is_translated_with_a_warning() -> None:
    with cli_server("apps:hello", "--port", "0", "--access-log-format", HYPERCORN_DEFAULT) as srv:
        httpx.get(srv.url + "/x?q=1", headers={"user-agent": "ua/1", "referer": "r/2"})
        line = srv.wait_for(r'127\.0\.0\.1 - - \[.*\] "GET /x\?q=1 HTTP/1\.1" 200 13 "r/2" "ua/1"')
    assert "%(" not in line.string
    warnings = [ln for ln in srv.lines if "--access-log-format has %(...)s placeholders" in ln]
    assert len(warnings) == 1, srv.output
    assert "{client_host} - - {time}" in warnings[0]


def test_granian_format_and_headers() -> None:
    assert translate_percent_format('%(addr)s "%(method)s %(path)s" %(status)s %(dt_ms)s') == (
        '{client_host} "{method} {path}" {status} {duration_ms}'
    )
    assert translate_percent_format("%({X-Id}i)s %({Content-Type}o)s 100%% {x}") == (
        "{header:x-id} {response_header:content-type} 100% {{x}}"
    )
    assert translate_percent_format("{client} {status}") is None


def test_an_unknown_percent_placeholder_is_one_line() -> None:
    result = run_cli("apps:hello", "--access-log-format", "%(h)s %(p)s")
    assert result.returncode == 2
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1
    assert "placeholder %(p)s has no asgiri counterpart" in lines[0]
