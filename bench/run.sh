#!/usr/bin/env bash
# asgiri benchmarks: asgiri against peer servers, side by side, with the reference harness.
#
#   bench/run.sh [--quick] [--pairs LIST] [--scenarios LIST] [--rounds N] [--duration S]
#                [--warmup S] [--harness auto|shared|vendored] [--results PATH] [--no-install]
#   bench/run.sh --list        # the comparison pairs this script knows
#
# `make bench` runs it with no options: pairs uvloop,asyncio,h2,ws,h3,workers,scale (h2 =
# h2-granian and h2-hypercorn, ws = ws-uvicorn, ws-hypercorn and ws-granian, scale = the memory
# and scale pairs), 3 interleaved rounds of 10 s (+2 s warm-up; the scale pairs: SCALE_ROUNDS,
# 1), and writes bench/out/<run-id>/{meta.json,results.jsonl,RESULTS.md,results.png} and
# bench/RESULTS.md + bench/results.png.  `make bench-quick` (= --quick): h1_hello + h1_echo
# (uvloop), h2c_hello (granian) and ws_echo (uvicorn), 1 round of 4 s, and only writes
# bench/out/<run-id>/ (pass --results bench/RESULTS.md to publish).
# Later options override what --quick set, e.g. `--quick --duration 3`.
#
# Harness: the vendored copy in bench/harness/ by default: the reference harness
# (../shared/bench/bench.sh) with the same scenarios and load, plus h2c_big, ws_big, the
# memory and scale scenarios (idle_*, stream_*), h3_hello's latency and the server's CPU time
# per run.  --harness shared (or auto: shared when present) runs the reference itself; a pair
# that needs a scenario only the vendored copy has then still runs on the vendored copy.  The
# app is bench/app.py (a copy of the reference app), bench/scale_app.py (app.py plus /stream
# and /upload) for the scale pairs.  The server runs on CPU 1, the load generator on CPU 0
# (SERVER_CPU / LOAD_CPU override).
#
# Installs what it needs: wrk, h2load (nghttp2-client), gtlsclient (ngtcp2-client) with
# apt-get when missing, and the bench venv (BENCH_VENV, default bench/.venv) with the peers
# from bench/requirements.txt, uvloop and httptools pinned to the project venv's versions.
set -euo pipefail

BENCH_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$BENCH_DIR/.." && pwd)"
PROJECT_PY="$ROOT/.venv/bin/python"
ASGIRI_BIN="$ROOT/.venv/bin/asgiri"
BENCH_VENV="${BENCH_VENV:-$BENCH_DIR/.venv}"
BPY="$BENCH_VENV/bin/python"
SHARED_HARNESS="$ROOT/../shared/bench"
export SERVER_CPU="${SERVER_CPU:-1}" LOAD_CPU="${LOAD_CPU:-0}"

# --quick: one headline scenario per protocol family, 1 round of 4 s (about a minute).
QUICK_PAIRS="uvloop,h2-granian,ws-uvicorn"; QUICK_SCENARIOS="h1_hello,h1_echo,h2c_hello,ws_echo"
ROUNDS=3; DURATION=10; WARMUP=2; PAIRS="uvloop,asyncio,h2,ws,h3,workers,scale"; SCENARIOS=""; QUICK=0
SCALE_ROUNDS="${SCALE_ROUNDS:-1}"
INSTALL=1; HARNESS_PREF="${BENCH_HARNESS:-vendored}"; RESULTS_MD="$BENCH_DIR/RESULTS.md"

die() { echo "bench/run.sh: $*" >&2; exit 2; }
log() { echo "[run.sh $(date +%T)] $*" >&2; }

# ------------------------------------------------------------------------ comparison pairs
# A pair is one `bench.sh ratio` invocation: the peer (side A, run first in every round) and
# asgiri (side B) on the same scenarios.  pair_def LABEL sets:
#   P_DESC                      one-line description (the "peer" column of RESULTS.md)
#   P_PEER / P_PEER_CMD         peer name (unique across pairs) and plaintext server command
#   P_ASGIRI / P_ASGIRI_CMD     same for asgiri
#   P_*_TLS, P_*_H3             TLS (h2tls_hello) and TLS+QUIC (h3_hello) commands, may be empty
#   P_SCENARIOS                 comma-separated harness scenarios (see bench/README.md)
#   P_EXTRAS                    those of P_SCENARIOS reported as extras (not headline ratios)
#   P_APP                       the app (default app:app; scale_app:app for the scale pairs)
#   P_ROUNDS                    rounds of this pair (empty: --rounds)
# An empty P_PEER runs asgiri alone (`bench.sh run`): figures without a ratio.
# Placeholders {HOST} {PORT} {CERT} {KEY} {APP} are filled in by the harness.
# To add a comparison (h3, ws...), add a case here and name it in --pairs; a group name
# (PAIR_GROUPS) runs several pairs.
ASGIRI="$ASGIRI_BIN {APP} --host {HOST} --port {PORT} --no-access-log --log-level warning"
ASGIRI_TLS="$ASGIRI --certfile {CERT} --keyfile {KEY}"
ASGIRI_SCALE="$ASGIRI --loop uvloop --timeout-keep-alive 600"
BV="$BENCH_VENV/bin"
UVICORN="$BV/uvicorn --host {HOST} --port {PORT} --http httptools"
UVICORN_TAIL="--log-level warning --no-access-log {APP}"
GRANIAN="$BV/granian --interface asgi --host {HOST} --port {PORT} --workers 1 --runtime-threads 1 --blocking-threads 1 --loop uvloop --log-level warning"
HYPERCORN="$BV/hypercorn -k uvloop -w 1 --bind {HOST}:{PORT} --log-level warning"

pair_def() {
  P_PEER_TLS=""; P_ASGIRI_TLS=""; P_PEER_H3=""; P_ASGIRI_H3=""; P_EXTRAS=""
  P_APP="app:app"; P_ROUNDS=""
  case "$1" in
    uvloop)   # headline: both on uvloop, uvicorn with its httptools parser
      P_DESC="uvicorn (httptools + uvloop)"
      P_PEER=uvicorn-uvloop;   P_PEER_CMD="$UVICORN --loop uvloop $UVICORN_TAIL"
      P_ASGIRI=asgiri-uvloop;  P_ASGIRI_CMD="$ASGIRI --loop uvloop"
      P_SCENARIOS="h1_hello,h1_echo,h1_big" ;;
    asyncio)  # both on the stdlib asyncio loop
      P_DESC="uvicorn (httptools + asyncio)"
      P_PEER=uvicorn-asyncio;  P_PEER_CMD="$UVICORN --loop asyncio $UVICORN_TAIL"
      P_ASGIRI=asgiri-asyncio; P_ASGIRI_CMD="$ASGIRI --loop asyncio"
      P_SCENARIOS="h1_hello,h1_echo" ;;
    # ---- HTTP/2 (group "h2"): uvicorn has no HTTP/2, so the peers are granian and hypercorn.
    # All serve h2c with prior knowledge next to HTTP/1.1 on the same port (--http auto for
    # granian: its --http 2 would also refuse the harness's HTTP/1.1 readiness probe) and h2
    # over TLS through ALPN.  asgiri has a distinct name per pair, so each ratio only uses the
    # asgiri runs interleaved with its own peer.
    h2-granian)
      P_DESC="granian (HTTP/2, uvloop, 1 worker)"
      P_PEER=granian-h2;       P_PEER_CMD="$GRANIAN {APP}"
      P_PEER_TLS="$GRANIAN --ssl-certificate {CERT} --ssl-keyfile {KEY} {APP}"
      P_ASGIRI=asgiri-h2-vs-granian;   P_ASGIRI_CMD="$ASGIRI --loop uvloop"
      P_ASGIRI_TLS="$ASGIRI_TLS --loop uvloop --no-http3"
      P_SCENARIOS="h2c_hello,h2tls_hello,h2c_big"; P_EXTRAS="h2c_big" ;;
    h2-hypercorn)
      P_DESC="hypercorn (HTTP/2, uvloop, 1 worker)"
      P_PEER=hypercorn-h2;     P_PEER_CMD="$HYPERCORN {APP}"
      P_PEER_TLS="$HYPERCORN --certfile {CERT} --keyfile {KEY} {APP}"
      P_ASGIRI=asgiri-h2-vs-hypercorn; P_ASGIRI_CMD="$ASGIRI --loop uvloop"
      P_ASGIRI_TLS="$ASGIRI_TLS --loop uvloop --no-http3"
      P_SCENARIOS="h2c_hello,h2tls_hello,h2c_big"; P_EXTRAS="h2c_big" ;;
    h2-codec)     # the same server on the h2 library (--h2-codec h2) against libnghttp2 (default)
      P_DESC="asgiri on the h2 library (--h2-codec h2, uvloop)"
      P_PEER=asgiri-h2lib;     P_PEER_CMD="$ASGIRI --loop uvloop --h2-codec h2"
      P_ASGIRI=asgiri-h2-vs-h2lib;     P_ASGIRI_CMD="$ASGIRI --loop uvloop"
      P_SCENARIOS="h2c_hello" ;;
    # ---- WebSocket (group "ws"): 64 B echo round trips (the headline) and 1 MiB messages,
    # against uvicorn with its websockets implementation and against hypercorn (wsproto).
    ws-uvicorn)
      P_DESC="uvicorn (websockets + uvloop)"
      P_PEER=uvicorn-ws;       P_PEER_CMD="$UVICORN --ws websockets --loop uvloop $UVICORN_TAIL"
      P_ASGIRI=asgiri-ws-vs-uvicorn;   P_ASGIRI_CMD="$ASGIRI --loop uvloop"
      P_SCENARIOS="ws_echo,ws_echo_raw,ws_big" ;;
    ws-hypercorn)
      P_DESC="hypercorn (wsproto, uvloop, 1 worker)"
      P_PEER=hypercorn-ws;     P_PEER_CMD="$HYPERCORN {APP}"
      P_ASGIRI=asgiri-ws-vs-hypercorn; P_ASGIRI_CMD="$ASGIRI --loop uvloop"
      P_SCENARIOS="ws_echo,ws_big" ;;
    ws-granian)   # WebSocket is on by default in granian's ASGI interface (--ws)
      P_DESC="granian (WebSocket, uvloop, 1 worker)"
      P_PEER=granian-ws;       P_PEER_CMD="$GRANIAN --ws {APP}"
      P_ASGIRI=asgiri-ws-vs-granian;   P_ASGIRI_CMD="$ASGIRI --loop uvloop"
      P_SCENARIOS="ws_echo,ws_big" ;;
    # ---- HTTP/3: hypercorn (aioquic) is the only Python peer that serves it.
    h3)
      P_DESC="hypercorn (uvloop, aioquic)"
      P_PEER=hypercorn-h3;     P_PEER_CMD="$HYPERCORN {APP}"
      P_PEER_H3="$HYPERCORN --quic-bind {HOST}:{PORT} --certfile {CERT} --keyfile {KEY} {APP}"
      P_ASGIRI=asgiri-h3;      P_ASGIRI_CMD="$ASGIRI --loop uvloop"
      P_ASGIRI_H3="$ASGIRI_TLS --loop uvloop"
      P_SCENARIOS="h3_hello" ;;
    # ---- Two worker processes each (issue: --workers 2 against uvicorn --workers 2).  Both
    # servers' workers share the one pinned server core, so this measures what the process
    # model costs or gains on the same CPU, not scaling across cores.
    workers)
      P_DESC="uvicorn (httptools + uvloop, --workers 2)"
      P_PEER=uvicorn-workers2; P_PEER_CMD="$UVICORN --loop uvloop --workers 2 $UVICORN_TAIL"
      P_ASGIRI=asgiri-workers2; P_ASGIRI_CMD="$ASGIRI --loop uvloop --workers 2"
      P_SCENARIOS="h1_hello,h1_echo" ;;
    # ---- Memory and scale (group "scale"): reported, not ratios.  Idle connections held open
    # (RSS per connection) and 1 GiB streamed each way on one connection (peak RSS growth),
    # with bench/scale_app.py (app.py plus /stream and /upload).  Every server gets a
    # keep-alive timeout longer than the hold (600 s), hypercorn a backlog like the others'.
    scale-h1)
      P_DESC="uvicorn (httptools + uvloop)"
      P_PEER=uvicorn-scale;    P_PEER_CMD="$UVICORN --loop uvloop --timeout-keep-alive 600 $UVICORN_TAIL"
      P_ASGIRI=asgiri-scale-vs-uvicorn; P_ASGIRI_CMD="$ASGIRI_SCALE"
      P_SCENARIOS="idle_h1,stream_h1"; P_APP="scale_app:app"; P_ROUNDS="$SCALE_ROUNDS" ;;
    scale-h2-hypercorn)
      P_DESC="hypercorn (HTTP/2, uvloop, 1 worker)"
      P_PEER=hypercorn-scale;  P_PEER_CMD="$HYPERCORN --keep-alive 600 --backlog 2048 {APP}"
      P_ASGIRI=asgiri-scale-vs-hypercorn; P_ASGIRI_CMD="$ASGIRI_SCALE"
      P_SCENARIOS="idle_h2,stream_h2"; P_APP="scale_app:app"; P_ROUNDS="$SCALE_ROUNDS" ;;
    scale-h2-granian)
      P_DESC="granian (HTTP/2, uvloop, 1 worker)"
      P_PEER=granian-scale;    P_PEER_CMD="$GRANIAN {APP}"
      P_ASGIRI=asgiri-scale-vs-granian; P_ASGIRI_CMD="$ASGIRI_SCALE"
      P_SCENARIOS="idle_h2,stream_h2"; P_APP="scale_app:app"; P_ROUNDS="$SCALE_ROUNDS" ;;
    scale-h3)     # asgiri alone: hypercorn's HTTP/3 would take many minutes per GiB
      P_DESC="asgiri alone"
      P_PEER="";               P_PEER_CMD=""
      P_ASGIRI=asgiri-scale-h3; P_ASGIRI_CMD="$ASGIRI_SCALE"
      P_ASGIRI_H3="$ASGIRI_TLS --loop uvloop --timeout-keep-alive 600"
      P_SCENARIOS="stream_h3"; P_APP="scale_app:app"; P_ROUNDS="$SCALE_ROUNDS" ;;
    *) return 1 ;;
  esac
}
KNOWN_PAIRS="uvloop asyncio h2-granian h2-hypercorn ws-uvicorn ws-hypercorn ws-granian h3 workers"
KNOWN_PAIRS="$KNOWN_PAIRS scale-h1 scale-h2-hypercorn scale-h2-granian scale-h3"
# Group names usable in --pairs, each expanding to several pairs.
pair_group() {
  case "$1" in
    h2) echo "h2-granian,h2-hypercorn,h2-codec" ;;
    ws) echo "ws-uvicorn,ws-hypercorn,ws-granian" ;;
    scale) echo "scale-h1,scale-h2-hypercorn,scale-h2-granian,scale-h3" ;;
    *) echo "$1" ;;
  esac
}
PAIR_GROUPS="h2 ws scale"

# The scenarios a pair runs: --scenarios when given, else the pair's own (with --quick,
# only those of them in QUICK_SCENARIOS).  Call after pair_def.
pair_scenarios() {
  if [ -n "$SCENARIOS" ]; then echo "$SCENARIOS"; return; fi
  if [ "$QUICK" != 1 ]; then echo "$P_SCENARIOS"; return; fi
  local sc out=""
  IFS=, read -r -a _pscs <<<"$P_SCENARIOS"
  for sc in "${_pscs[@]}"; do
    if [[ ",$QUICK_SCENARIOS," == *",$sc,"* ]]; then out="$out,$sc"; fi
  done
  echo "${out#,}"
}

# ------------------------------------------------------------------------ arguments
while [ $# -gt 0 ]; do
  case "$1" in
    --quick) QUICK=1; ROUNDS=1; DURATION=4; PAIRS="$QUICK_PAIRS"; RESULTS_MD=""; shift ;;
    --pairs) PAIRS="$2"; shift 2 ;;
    --scenarios) SCENARIOS="$2"; shift 2 ;;
    --rounds) ROUNDS="$2"; shift 2 ;;
    --duration) DURATION="$2"; shift 2 ;;
    --warmup) WARMUP="$2"; shift 2 ;;
    --harness) HARNESS_PREF="$2"; shift 2 ;;
    --results) RESULTS_MD="$2"; shift 2 ;;
    --no-install) INSTALL=0; shift ;;
    --list)
      for p in $KNOWN_PAIRS; do pair_def "$p"
        printf '%-19s %-52s %s\n' "$p" "${P_PEER:+asgiri vs }$P_DESC" "$P_SCENARIOS"; done
      for g in $PAIR_GROUPS; do printf '%-19s = %s\n' "$g" "$(pair_group "$g")"; done; exit 0 ;;
    -h|--help) awk 'NR>1 && !/^#/ {exit} NR>1 {sub(/^# ?/, ""); print}' "$0"; exit 0 ;;
    *) die "unknown argument: $1 (see --help)" ;;
  esac
done
expanded=""
IFS=, read -r -a PAIR_LIST <<<"$PAIRS"
for p in "${PAIR_LIST[@]}"; do expanded="$expanded,$(pair_group "$p")"; done
IFS=, read -r -a PAIR_LIST <<<"${expanded#,}"
for p in "${PAIR_LIST[@]}"; do
  pair_def "$p" || die "unknown pair '$p' (known: $KNOWN_PAIRS; groups: $PAIR_GROUPS)"
done
[ -x "$ASGIRI_BIN" ] || die "$ASGIRI_BIN not found: run 'make venv' first"

# ------------------------------------------------------------------------ installs
as_root() {
  if [ "$(id -u)" -eq 0 ]; then "$@"
  elif command -v sudo >/dev/null 2>&1; then sudo -n "$@"
  else return 1; fi
}

install_system_tools() {  # command:debian-package; installed only when the command is missing
  local pair missing=""
  for pair in wrk:wrk h2load:nghttp2-client gtlsclient:ngtcp2-client curl:curl bc:bc ss:iproute2 taskset:util-linux; do
    command -v "${pair%%:*}" >/dev/null 2>&1 || missing="$missing ${pair#*:}"
  done
  if [ -z "$missing" ]; then return 0; fi
  log "installing system packages:$missing"
  if ! { as_root apt-get update -q && as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends $missing; }; then
    log "WARN: could not install$missing (need root or passwordless sudo)"
  fi
  for t in wrk curl taskset bc ss; do   # what the h1 scenarios cannot do without
    command -v "$t" >/dev/null 2>&1 || die "'$t' is still missing"
  done
}

install_bench_venv() {
  local pins=() v stamp want
  for pkg in uvloop httptools; do   # same C extensions on both sides of every ratio
    v=$("$PROJECT_PY" -c "from importlib.metadata import version as v; print(v('$pkg'))" 2>/dev/null) || v=""
    if [ -n "$v" ]; then pins+=("$pkg==$v"); fi
  done
  want="$(cat "$BENCH_DIR/requirements.txt") ${pins[*]}"
  stamp="$BENCH_VENV/.bench-installed"
  if [ -x "$BPY" ] && [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then return 0; fi
  log "setting up the bench venv in $BENCH_VENV (${pins[*]})"
  # Created from the project venv's interpreter so both sides run the same Python.
  if [ ! -x "$BPY" ]; then "$PROJECT_PY" -m venv "$BENCH_VENV"; fi
  "$BPY" -m pip install -q --upgrade pip >/dev/null 2>&1 || true
  "$BPY" -m pip install -q -r "$BENCH_DIR/requirements.txt" "${pins[@]}"
  echo "$want" >"$stamp"
}

if [ "$INSTALL" = 1 ]; then
  install_system_tools
  install_bench_venv
fi
[ -x "$BPY" ] || die "no bench venv at $BENCH_VENV (run without --no-install)"
if ! "$PROJECT_PY" -c "import uvloop" 2>/dev/null && [[ ",$PAIRS," == *,uvloop,* ]]; then
  die "uvloop is not installed in .venv: pip install -e '.[uvloop]'"
fi

# ------------------------------------------------------------------------ harness
case "$HARNESS_PREF" in
  auto) if [ -f "$SHARED_HARNESS/bench.sh" ] && [ -f "$SHARED_HARNESS/lua/report.lua" ]; then
          HARNESS="$(cd "$SHARED_HARNESS" && pwd)/bench.sh"
        else HARNESS="$BENCH_DIR/harness/bench.sh"; fi ;;
  shared) [ -f "$SHARED_HARNESS/bench.sh" ] || die "no shared harness at $SHARED_HARNESS"
          HARNESS="$(cd "$SHARED_HARNESS" && pwd)/bench.sh" ;;
  vendored) HARNESS="$BENCH_DIR/harness/bench.sh" ;;
  *) die "--harness must be auto, shared or vendored" ;;
esac
HARNESS_LABEL="vendored (bench/harness/bench.sh)"
VENDORED="$BENCH_DIR/harness/bench.sh"
# harness_for SCENARIOS: the chosen harness, or the vendored one when the chosen one has no
# case for one of the scenarios (h2c_big and ws_big are only in the vendored copy so far).
harness_for() {
  local sc
  IFS=, read -r -a _scs <<<"$1"
  for sc in "${_scs[@]}"; do
    if ! grep -qE "^ *$sc\)" "$HARNESS" && grep -qE "^ *$sc\)" "$VENDORED"; then
      echo "$VENDORED"; return
    fi
  done
  echo "$HARNESS"
}
if [ "$HARNESS" != "$BENCH_DIR/harness/bench.sh" ]; then
  HARNESS_LABEL="shared (../shared/bench/bench.sh)"
  cmp -s "$HARNESS" "$BENCH_DIR/harness/bench.sh" || \
    log "note: bench/harness/bench.sh differs from $HARNESS (refresh the vendored copy?)"
  cmp -s "$(dirname "$HARNESS")/app.py" "$BENCH_DIR/app.py" || \
    log "WARN: $(dirname "$HARNESS")/app.py differs from bench/app.py; bench/app.py is used"
fi

# TLS certificate, only for pairs that need one (h2tls_hello, h3_hello).
CERT="${CERT:-$ROOT/certs/cert.pem}"; KEY="${KEY:-$ROOT/certs/key.pem}"
needs_tls=0
for p in "${PAIR_LIST[@]}"; do
  pair_def "$p"
  if [ -n "$P_PEER_TLS$P_ASGIRI_TLS$P_PEER_H3$P_ASGIRI_H3" ]; then needs_tls=1; fi
done
if [ "$needs_tls" = 1 ] && [ ! -f "$CERT" ]; then "$ASGIRI_BIN" --generate-cert "$(dirname "$CERT")"; fi

# ------------------------------------------------------------------------ run
RUN_ID="$(date +%Y%m%d-%H%M%S)$([ "$QUICK" = 1 ] && echo -quick || true)"
OUTDIR="$BENCH_DIR/out/$RUN_ID"
mkdir -p "$OUTDIR"
LOADAVG_BEFORE="$(cut -d' ' -f1-3 /proc/loadavg)"
log "run $RUN_ID: pairs=$PAIRS rounds=$ROUNDS duration=${DURATION}s warmup=${WARMUP}s harness=$HARNESS"
log "load average before: $LOADAVG_BEFORE ($(nproc) CPUs; server on CPU $SERVER_CPU, load on CPU $LOAD_CPU)"

quick_flag=(); if [ "$QUICK" = 1 ]; then quick_flag=(--quick); fi
meta_pairs=(); on_vendored=""
run_pairs=()
for p in "${PAIR_LIST[@]}"; do
  pair_def "$p"
  if [ -z "$(pair_scenarios)" ]; then log "pair $p: none of its scenarios is in this run, skipped"; continue; fi
  run_pairs+=("$p")
  meta_pairs+=(--pair "$p" "$P_PEER" "$P_ASGIRI" "$(pair_scenarios)" "$P_EXTRAS" "$P_DESC")
  if [ "$(harness_for "$(pair_scenarios)")" != "$HARNESS" ]; then on_vendored="$on_vendored $p"; fi
done
if [ -n "$on_vendored" ]; then
  HARNESS_LABEL="$HARNESS_LABEL; vendored bench/harness/bench.sh for$on_vendored (scenarios the other lacks)"
fi
"$BPY" "$BENCH_DIR/report.py" meta --out "$OUTDIR/meta.json" \
  --project-python "$PROJECT_PY" --bench-python "$BPY" --harness "$HARNESS_LABEL" \
  --rounds "$ROUNDS" --duration "$DURATION" --warmup "$WARMUP" "${quick_flag[@]}" \
  --server-cpu "$SERVER_CPU" --load-cpu "$LOAD_CPU" --loadavg-before "$LOADAVG_BEFORE" "${meta_pairs[@]}"

for p in "${run_pairs[@]}"; do
  pair_def "$p"
  pair_harness="$(harness_for "$(pair_scenarios)")"
  pair_rounds="${P_ROUNDS:-$ROUNDS}"
  if [ -n "$P_PEER" ]; then
    log "pair $p: asgiri vs $P_DESC on $(pair_scenarios)"
    args=(ratio --name "$P_PEER" --cmd "$P_PEER_CMD" --name-b "$P_ASGIRI" --cmd-b "$P_ASGIRI_CMD")
    if [ -n "$P_PEER_TLS" ]; then args+=(--tls-cmd "$P_PEER_TLS"); fi
    if [ -n "$P_ASGIRI_TLS" ]; then args+=(--tls-cmd-b "$P_ASGIRI_TLS"); fi
    if [ -n "$P_PEER_H3" ]; then args+=(--h3-cmd "$P_PEER_H3"); fi
    if [ -n "$P_ASGIRI_H3" ]; then args+=(--h3-cmd-b "$P_ASGIRI_H3"); fi
  else   # asgiri alone
    log "pair $p: asgiri alone on $(pair_scenarios)"
    args=(run --name "$P_ASGIRI" --cmd "$P_ASGIRI_CMD")
    if [ -n "$P_ASGIRI_TLS" ]; then args+=(--tls-cmd "$P_ASGIRI_TLS"); fi
    if [ -n "$P_ASGIRI_H3" ]; then args+=(--h3-cmd "$P_ASGIRI_H3"); fi
  fi
  args+=(--scenarios "$(pair_scenarios)" --rounds "$pair_rounds" --duration "$DURATION"
         --warmup "$WARMUP" --out "$OUTDIR/results.jsonl")
  if [ "$pair_harness" != "$HARNESS" ]; then log "pair $p runs on $pair_harness (a scenario is missing from $HARNESS)"; fi
  PY="$BPY" APP="$P_APP" APPDIR="$BENCH_DIR" CERT="$CERT" KEY="$KEY" BENCH_RESULTS="$OUTDIR" \
    bash "$pair_harness" "${args[@]}" 2>&1 | tee "$OUTDIR/$p.log" || \
    log "WARN: pair $p: the harness exited with an error (see $OUTDIR/$p.log); rendering what was recorded"
done

# The chart goes next to each Markdown file: RESULTS.md -> results.png, RESULTS-x.md -> results-x.png.
chart_for() { local d b; d="$(dirname "$1")"; b="$(basename "$1" .md)"; echo "$d/$(echo "$b" | tr '[:upper:]' '[:lower:]').png"; }
render_args=(render "$OUTDIR" -o "$OUTDIR/RESULTS.md" --chart "$OUTDIR/results.png")
if [ -n "$RESULTS_MD" ]; then render_args+=(-o "$RESULTS_MD" --chart "$(chart_for "$RESULTS_MD")"); fi
echo
"$BPY" "$BENCH_DIR/report.py" "${render_args[@]}" --print
log "results: $OUTDIR (results.jsonl, RESULTS.md, results.png)${RESULTS_MD:+ and $RESULTS_MD, $(chart_for "$RESULTS_MD")}"
