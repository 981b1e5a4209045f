#!/usr/bin/env bash
# Serve examples.demo:app over HTTPS (HTTP/1.1, HTTP/2, HTTP/3) and cleartext HTTP.
# The cleartext server runs in the background and is stopped when this script exits.
set -euo pipefail
cd "$(dirname "$0")/.."

HOST="${HOST:-127.0.0.1}"
HTTPS_PORT="${HTTPS_PORT:-8443}"
HTTP_PORT="${HTTP_PORT:-8000}"
ASGIRI=".venv/bin/asgiri"
APP="examples.demo:app"

# Console scripts do not put the working directory on sys.path.
export PYTHONPATH=".${PYTHONPATH:+:$PYTHONPATH}"

if [[ ! -f certs/cert.pem || ! -f certs/key.pem ]]; then
  .venv/bin/python -m asgiri.devcert certs
fi

echo "asgiri demo:"
echo "  https://$HOST:$HTTPS_PORT/   (TLS, self-signed certs/cert.pem)"
echo "  http://$HOST:$HTTP_PORT/    (cleartext)"
echo "Press Ctrl-C to stop both."

"$ASGIRI" "$APP" --host "$HOST" --port "$HTTP_PORT" &
http_pid=$!

cleanup() {
  kill "$http_pid" 2>/dev/null || true
  wait "$http_pid" 2>/dev/null || true
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

"$ASGIRI" "$APP" --host "$HOST" --port "$HTTPS_PORT" \
  --certfile certs/cert.pem --keyfile certs/key.pem
