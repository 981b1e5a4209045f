"""``--access-log-format`` and ``--access-log-json``, read from a real server's output."""

from __future__ import annotations

import json
import re

import httpx
import pytest

from asgiri.access_format import ATOM_NAMES
from asgiri.asgi.access_log import ATOMS, compile_format
from tests.servers import cli_server, run_cli

FORMAT = (
    "[{protocol} {http_version}] {client_host} {method} {path} q={query} {status} "
    "{bytes} in={bytes_in} ua={header:user-agent} ct={response_header:content-type} "
    "x={header:x-missing} {duration_ms}ms {duration_s}s 100% {{braces}}"
)


def _client(protocol: str) -> httpx.Client:
    if protocol == "h2":
        return httpx.Client(http1=False, http2=True)  # h2c with prior knowledge
    return httpx.Client()


@pytest.mark.parametrize(("protocol", "version"), [("h1", "HTTP/1.1"), ("h2", "HTTP/2")])
def test_custom_format_renders_every_atom(protocol: str, version: str) -> None:
    with cli_server("apps:echo", "--port", "0", "--access-log-format", FORMAT) as srv:
        with _client(protocol) as client:
            response = client.post(
                srv.url + "/up/load?a=1", content=b"x" * 1000, headers={"user-agent": "probe/1"}
            )
            assert response.status_code == 200
        line = srv.wait_for(r"\[h[12] .*braces\}").group(0)
    pattern = (
        rf"\[{protocol} {version}\] 127\.0\.0\.1 POST /up/load q=a=1 200 1000 in=1000 "
        r"ua=probe/1 ct=- x=- \d+\.\d+ms \d+\.\d+s 100% \{braces\}"
    )
    assert re.fullmatch(pattern, line), line


def test_json_lines_are_json_with_typed_values() -> None:
    with cli_server("apps:hello", "--port", "0", "--access-log-json") as srv:
        assert httpx.get(srv.url + "/j?k=v").status_code == 200
        raw = srv.wait_for(r'^\{"time": .*"/j\?k=v".*\}$').group(0)
    record = json.loads(raw)
    assert record["method"] == "GET"
    assert record["path_query"] == "/j?k=v"
    assert record["status"] == 200
    assert record["bytes"] == 13
    assert record["http_version"] == "HTTP/1.1"
    assert isinstance(record["duration_ms"], float)
    assert record["time"].endswith("+00:00")


def test_json_with_a_format_uses_its_atoms_as_keys() -> None:
    fmt = "{method} {status} {header:user-agent} {response_header:content-type}"
    args = ["--access-log-json", "--access-log-format", fmt]
    with cli_server("apps:hello", "--port", "0", *args) as srv:
        httpx.get(srv.url + "/", headers={"user-agent": "ua-test"})
        raw = srv.wait_for(r'^\{"time".*ua-test.*\}$').group(0)
    record = json.loads(raw)
    assert set(record) == {
        "time",
        "method",
        "status",
        "header:user-agent",
        "response_header:content-type",
    }
    assert record["header:user-agent"] == "ua-test"
    assert record["response_header:content-type"] == "text/plain"
    assert record["status"] == 200


@pytest.mark.parametrize(
    ("fmt", "message"),
    [
        ("{nope}", "--access-log-format has an unknown atom '{nope}'"),
        ("{header}", "needs a header name"),
        ("{status", "unmatched '{'"),
    ],
)
def test_bad_format_is_a_usage_error(fmt: str, message: str) -> None:
    result = run_cli("apps:hello", "--access-log-format", fmt)
    assert result.returncode == 2
    assert message in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_compiled_template_escapes_percent_signs() -> None:
    template, getters = compile_format("100% {status}")
    assert template == "100%% %s"
    assert [name for name, _ in getters] == ["status"]


def test_every_atom_the_format_language_accepts_has_a_value() -> None:
    # The configuration checks formats against ATOM_NAMES; the log fills them from ATOMS.
    assert set(ATOMS) == set(ATOM_NAMES)
    template, getters = compile_format(" ".join(f"{{{name}}}" for name in ATOM_NAMES))
    assert [name for name, _ in getters] == list(ATOM_NAMES)
    assert template == " ".join(["%s"] * len(ATOM_NAMES))
