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

PIN="$(.venv/bin/python -c 'import sys; from asgiri.ssl_utils import spki_sha256_base64; print(spki_sha256_base64(open(sys.argv[1], "rb").read()))' certs/cert.pem)"

echo "asgiri demo:"
echo "  https://$HOST:$HTTPS_PORT/   (TLS, self-signed certs/cert.pem: HTTP/1.1 and HTTP/2 on TCP,"
echo "                              HTTP/3 on UDP port $HTTPS_PORT, advertised with Alt-Svc)"
echo "  http://$HOST:$HTTP_PORT/    (cleartext: HTTP/1.1 and h2c)"
echo
echo "Try HTTP/3:"
echo "  Chromium (first load already over HTTP/3; the page shows the HTTP version):"
echo "    chromium --user-data-dir=\$(mktemp -d) --origin-to-force-quic-on=$HOST:$HTTPS_PORT \\"
echo "      --ignore-certificate-errors-spki-list=$PIN https://$HOST:$HTTPS_PORT/"
echo "  (with --origin-to-force-quic-on=$HOST:9 instead, the first load is HTTP/2 and a reload"
echo "   moves to HTTP/3 through Alt-Svc; see docs/HTTP3.md)"
echo "  ngtcp2 (Debian ngtcp2-client):  gtlsclient $HOST $HTTPS_PORT https://$HOST:$HTTPS_PORT/hello"
echo "  curl built with HTTP/3:         curl -k --http3-only https://$HOST:$HTTPS_PORT/hello"
echo "Press Ctrl-C to stop both."

"$ASGIRI" "$APP" --host "$HOST" --port "$HTTP_PORT" --no-http3 &
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
