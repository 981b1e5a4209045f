"""The benchmark's own tools: the memory and scale client against a real asgiri, and the report.

`make bench` is not a test (it takes minutes and needs an idle machine), but the pieces it is
built from can break silently: the load client of the memory and scale scenarios
(bench/harness/scale_bench.py with bench/scale_app.py) is run here, scaled down, against a
real asgiri over HTTP/1.1, HTTP/2 and HTTP/3, and bench/report.py renders a small run.
"""

from __future__ import annotations

import importlib
import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from asgiri.ssl_utils import generate_self_signed_cert
from tests.support.servers import CLIServer, cli_server

ROOT = Path(__file__).resolve().parents[2]
BENCH = ROOT / "bench"
SCALE_BENCH = BENCH / "harness" / "scale_bench.py"
MIB = 1 << 20

pytestmark = pytest.mark.timeout(120)


def codec_tool(module: str, *options: str) -> subprocess.CompletedProcess[str]:
    """Run ``bench.codec.<module>`` from the repository root; it must exit 0."""
    result = subprocess.run(
        [sys.executable, "-m", f"bench.codec.{module}", *options],
        capture_output=True,
        text=True,
        timeout=90,
        cwd=ROOT,
    )
    assert result.returncode == 0, result.stderr
    return result


def scale_bench(mode: str, srv: CLIServer, *args: str) -> dict[str, Any]:
    command = [sys.executable, str(SCALE_BENCH), mode, "--port", str(srv.port)]
    result = subprocess.run(
        [*command, "--pid", str(srv.proc.pid), *args],
        capture_output=True,
        text=True,
        timeout=90,
        check=False,
    )
    assert result.stdout.strip(), result.stderr
    out: dict[str, Any] = json.loads(result.stdout.strip().splitlines()[-1])
    assert out["mode"] == mode
    assert out["ok"], out
    assert result.returncode == 0, result.stderr
    return out


@pytest.fixture(scope="module")
def plain_server() -> Iterator[CLIServer]:
    with cli_server(
        "scale_app:app", "--app-dir", str(BENCH), "--port", "0", "--timeout-keep-alive", "60"
    ) as srv:
        yield srv


@pytest.fixture(scope="module")
def tls_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[CLIServer]:
    cert, key = generate_self_signed_cert("localhost", key_type="ec")
    directory = tmp_path_factory.mktemp("benchcerts")
    (directory / "cert.pem").write_bytes(cert)
    (directory / "key.pem").write_bytes(key)
    with cli_server(
        "scale_app:app",
        "--app-dir",
        str(BENCH),
        "--port",
        "0",
        "--certfile",
        str(directory / "cert.pem"),
        "--keyfile",
        str(directory / "key.pem"),
    ) as srv:
        yield srv


@pytest.mark.parametrize("mode", ["idle-h1", "idle-h2"])
def test_idle_connections_are_held_and_measured(plain_server: CLIServer, mode: str) -> None:
    out = scale_bench(mode, plain_server, "-c", "200", "--hold", "0.2")
    assert out["opened"] == out["held"] == 200
    assert out["failed"] == 0
    # The server's own RSS was found and grew with 200 connections, by a plausible amount.
    assert out["rss_before_kb"] > 1000
    assert 0 < out["kib_per_conn"] < 1024


@pytest.mark.parametrize("mode", ["stream-h1", "stream-h2"])
def test_streams_both_ways_with_peak_growth(plain_server: CLIServer, mode: str) -> None:
    out = scale_bench(mode, plain_server, "--bytes", str(32 * MIB))
    assert out["bytes"] == 32 * MIB
    assert out["errors"] == 0
    assert out["down_mib_s"] > 0 and out["up_mib_s"] > 0
    assert out["peak_reset"] is True
    assert 0 <= out["growth_down_mib"] < 50
    assert 0 <= out["growth_up_mib"] < 50


@pytest.mark.parametrize("client", ["ngtcp2", "aioquic"])
def test_streams_over_http3(tls_server: CLIServer, client: str) -> None:
    out = scale_bench("stream-h3", tls_server, "--bytes", str(2 * MIB), "--h3-client", client)
    assert out["client"] == client
    assert out["errors"] == 0
    assert out["down_s"] is not None and out["up_s"] is not None
    assert 0 <= out["growth_down_mib"] < 50
    assert 0 <= out["growth_up_mib"] < 50


def test_scale_app_rejects_a_bad_size(plain_server: CLIServer) -> None:
    import httpx

    response = httpx.get(f"{plain_server.url}/stream?bytes=lots")
    assert response.status_code == 400
    assert httpx.get(f"{plain_server.url}/stream?bytes=5").content == b"x" * 5
    assert httpx.post(f"{plain_server.url}/upload", content=b"y" * 1000).text == "1000"
    assert httpx.get(f"{plain_server.url}/").text == "Hello, World!"


# ----------------------------------------------------------------------------- report.py


@pytest.fixture
def report(monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    """bench/report.py as ``python bench/report.py`` runs it: bench/ first on the path."""
    monkeypatch.syspath_prepend(str(BENCH))
    for name in [m for m in sys.modules if m == "report" or m.startswith("reporting")]:
        monkeypatch.delitem(sys.modules, name)
    return importlib.import_module("report")


def _row(server: str, scenario: str, rnd: int, rps: float | None, **more: Any) -> dict[str, Any]:
    row = {
        "server": server,
        "scenario": scenario,
        "round": rnd,
        "status": "ok",
        "rps": rps,
        "p50_ms": 1.0,
        "p99_ms": 2.5,
        "errors": 0,
        "rss_idle_kb": 40_000,
        "rss_peak_kb": 41_000,
        "duration_s": 10,
        "warmup_s": 2,
        "server_cpu_s": 1.0,
        "note": "",
        "cmd": f"{server} {{APP}}",
    }
    row.update(more)
    return row


def test_report_shows_targets_met_and_the_memory_and_scale_tables(
    tmp_path: Path, report: ModuleType
) -> None:
    pairs = [
        ("uvloop", "uvicorn-uvloop", "asgiri-uvloop", "h1_hello,h1_big", "uvicorn (uvloop)"),
        ("ws-uvicorn", "uvicorn-ws", "asgiri-ws", "ws_echo", "uvicorn (websockets)"),
        ("scale-h1", "uvicorn-scale", "asgiri-scale", "idle_h1,stream_h1", "uvicorn"),
        ("scale-h3", "", "asgiri-scale-h3", "stream_h3", "asgiri alone"),
    ]
    meta_args = ["meta", "--out", str(tmp_path / "meta.json")]
    meta_args += ["--project-python", sys.executable, "--bench-python", sys.executable]
    meta_args += ["--rounds", "3", "--duration", "10", "--warmup", "2"]
    for label, peer, asgiri, scenarios, desc in pairs:
        meta_args += ["--pair", label, peer, asgiri, scenarios, "", desc]
    assert report.main(meta_args) == 0

    idle = {"mode": "idle-h1", "ok": True, "connections": 10000, "opened": 10000}
    stream = {"mode": "stream-h1", "ok": True, "bytes": 1 << 30, "peak_reset": True}
    rows = []
    for rnd in (1, 2, 3):
        rows += [
            _row("uvicorn-uvloop", "h1_hello", rnd, 30_000.0),
            _row("asgiri-uvloop", "h1_hello", rnd, 42_000.0),  # 1.4x: meets 1.3
            _row("uvicorn-uvloop", "h1_big", rnd, 3_000.0),
            _row("asgiri-uvloop", "h1_big", rnd, 2_700.0),  # 0.9x: misses 1.0
            _row("uvicorn-ws", "ws_echo", rnd, 40_000.0),
            _row("asgiri-ws", "ws_echo", rnd, 44_000.0),  # 1.1x: meets 1.0, not issue 4's 1.2
        ]
    rows += [
        _row(
            "uvicorn-scale", "idle_h1", 1, None, scale={**idle, "held": 10000, "kib_per_conn": 8.0}
        ),
        _row(
            "asgiri-scale", "idle_h1", 1, None, scale={**idle, "held": 10000, "kib_per_conn": 9.5}
        ),
        _row(
            "uvicorn-scale",
            "stream_h1",
            1,
            None,
            scale={**stream, "growth_down_mib": 1.0, "growth_up_mib": 2.0},
        ),
        _row(
            "asgiri-scale",
            "stream_h1",
            1,
            None,
            scale={**stream, "growth_down_mib": 0.5, "growth_up_mib": 60.0},
        ),
        _row(
            "asgiri-scale-h3",
            "stream_h3",
            1,
            None,
            scale={**stream, "mode": "stream-h3", "client": "ngtcp2", "down_mib_s": 60.0},
        ),
    ]
    (tmp_path / "results.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))

    chart = tmp_path / "results.png"
    args = ["render", str(tmp_path), "-o", str(tmp_path / "RESULTS.md"), "--chart", str(chart)]
    assert report.main(args) == 0
    md = (tmp_path / "RESULTS.md").read_text()

    def line(start: str) -> str:
        found = [ln for ln in md.splitlines() if ln.startswith(start)]
        assert found, (start, md)
        return found[0]

    assert "| **1.400** | ≥ 1.3 | yes |" in line("| h1_hello |")
    assert "| **0.900** | ≥ 1.0 | **no** |" in line("| h1_big |")
    assert "| **1.100** | ≥ 1.0 (issue 4: 1.2) | yes |" in line("| ws_echo |")
    assert "- **Targets:** 2 of 3 met; not met (or no ratio): h1_big vs uvloop" in md
    assert "### Memory and scale" in md
    assert "| idle_h1 | asgiri-scale | 10,000 / 10,000 |" in md
    assert "| 9.5 | < 30 KiB | yes |" in line("| idle_h1 | asgiri-scale")
    assert "| < 50 MiB each | **no** |" in line("| stream_h1 | asgiri-scale")
    assert "| < 50 MiB each | yes |" in line("| stream_h1 | uvicorn-scale")
    # Rows without a rate are not ratios: no scale scenario in the throughput tables.
    assert not [ln for ln in md.split("### Memory under load")[0].splitlines() if "idle_h1" in ln]
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert {s["scenario"] for s in summary["ratios"]} == {"h1_hello", "h1_big", "ws_echo"}
    assert "| 60.0 |" in line("| stream_h3 | asgiri-scale-h3")
    assert "stream_h3's client is ngtcp2's gtlsclient" in md
    assert len(summary["scale"]) == 5
    # The chart needs matplotlib (in the bench venv); without it the report is still written.
    if importlib.util.find_spec("matplotlib") is not None:
        assert chart.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert "![asgiri ÷ peer per scenario, with the targets](results.png)" in md
    else:
        assert not chart.exists()


@pytest.mark.parametrize(
    "tool",
    [
        ["h1_driver", "hello"],
        ["h1_driver", "echo"],
        ["h1_driver", "pipelined"],
        ["h2_driver", "--codec", "nghttp2"],
        ["h2_driver", "--codec", "h2"],
    ],
    ids=lambda tool: "-".join(tool),
)
def test_in_process_drivers_serve_every_request(tool: list[str]) -> None:
    """The profiling drivers (docs/performance.md) drive the real server classes.

    Each checks that every request it fed was answered and exits non-zero otherwise.
    """
    module, *options = tool
    result = codec_tool(module, *options, "--reads", "10", "--repeat", "1")
    assert "µs/request" in result.stdout, result.stdout


@pytest.mark.parametrize(
    "options", [[], ["--text", "--size", "300"]], ids=["binary-64", "text-300"]
)
def test_ws_driver_echoes_every_message(options: list[str]) -> None:
    """bench/codec/ws_driver.py (docs/performance.md) upgrades real connections and echoes.

    It exits non-zero unless every connection was accepted with a 101 and wrote
    exactly one echo frame per message it was fed.
    """
    result = codec_tool("ws_driver", *options, "--reads", "10", "--repeat", "1")
    assert "160 messages per run" in result.stdout, result.stdout


@pytest.mark.parametrize("library", ["aioquic", "qh3"])
def test_quic_stacks_move_every_byte(library: str) -> None:
    """bench/codec/quic_stacks.py (docs/performance.md) moves a whole stream each way.

    It exits non-zero when a transfer stalls or arrives short; here the report is checked
    as well: one whole row per direction.  qh3 comes with the dev extra (asgiri does not
    depend on it).
    """
    result = codec_tool("quic_stacks", "--library", library, "--mib", "1", "--rounds", "1")
    rows = [line for line in result.stdout.splitlines() if line.startswith(f"{library:8} quic")]
    assert len(rows) == 2, result.stdout
    for row, direction in zip(rows, ("down", "up"), strict=True):
        assert row.split()[1:3] == ["quic", direction], row
        assert row.endswith(f"whole ({MIB} bytes)"), row


@pytest.mark.parametrize("sender", ["gso", "single"])
def test_udp_gro_receivers_count_every_datagram(sender: str) -> None:
    """bench/codec/udp_gro.py (docs/performance.md) reads every datagram with both
    receivers; with a GSO sender the GRO reader gets runs of them per system call."""
    options = ("--mib", "2", "--rounds", "1", "--sender", sender, "--loop", "asyncio")
    result = codec_tool("udp_gro", *options)
    rows = {line.split()[0]: line.split() for line in result.stdout.splitlines()[1:]}
    assert sorted(rows) == ["gro", "transport"], result.stdout
    assert all(row[-1] == "True" for row in rows.values()), result.stdout
    assert float(rows["transport"][2]) == 1.0
    assert float(rows["gro"][2]) > (4.0 if sender == "gso" else 0.0)


def test_h3_driver_moves_the_whole_body() -> None:
    """bench/codec/h3_driver.py (docs/performance.md) exits non-zero when the body stalls;
    the report shows the server's pacing: full bursts of datagrams per flush."""
    result = codec_tool("h3_driver", "--mib", "1", "--repeat", "1")
    assert result.stdout.startswith("1 MiB down: server "), result.stdout
    per_flush = float(result.stdout.rsplit("(", 1)[1].split()[0])
    assert per_flush > 8, result.stdout


def test_h3_driver_moves_a_whole_request_body_up() -> None:
    """With --up the server receives the body and checks it all arrived (exit 1 otherwise);
    it acknowledges in batches: many datagrams received per flush of its own."""
    result = codec_tool("h3_driver", "--mib", "1", "--repeat", "1", "--up")
    assert result.stdout.startswith("1 MiB up: server "), result.stdout
    per_flush = float(result.stdout.rsplit("(", 1)[1].split()[0])
    assert per_flush > 8, result.stdout
