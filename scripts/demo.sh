#!/usr/bin/env bash
# Serve examples.demo:app over HTTPS (HTTP/1.1, HTTP/2, HTTP/3) and cleartext HTTP, from one
# asgiri process with two listeners.
set -euo pipefail
cd "$(dirname "$0")/.."

HOST="${HOST:-127.0.0.1}"
HTTPS_PORT="${HTTPS_PORT:-8443}"
HTTP_PORT="${HTTP_PORT:-8000}"
CERT_DIR="${CERT_DIR:-certs}"
PYTHON="${PYTHON:-.venv/bin/python}"
ASGIRI="${ASGIRI:-.venv/bin/asgiri}"
APP="examples.demo:app"

# Console scripts do not put the working directory on sys.path.
export PYTHONPATH=".${PYTHONPATH:+:$PYTHONPATH}"

# A development certificate lives 13 days (WebTransport's serverCertificateHashes takes
# one valid at most 14): a missing one, or one that ends within a day, is made anew.
if [[ ! -f "$CERT_DIR/cert.pem" || ! -f "$CERT_DIR/key.pem" ]] || ! "$PYTHON" - "$CERT_DIR/cert.pem" <<'PY'
import datetime, sys
from cryptography import x509
cert = x509.load_pem_x509_certificate(open(sys.argv[1], "rb").read())
left = cert.not_valid_after_utc - datetime.datetime.now(datetime.timezone.utc)
sys.exit(0 if left > datetime.timedelta(days=1) else 1)
PY
then
  "$PYTHON" -m asgiri.devcert "$CERT_DIR" --force
fi
# The page's WebTransport panel trusts this certificate by its hash.
export DEMO_CERT="$CERT_DIR/cert.pem" DEMO_HTTPS_PORT="$HTTPS_PORT"

PIN="$("$PYTHON" -c 'import sys; from asgiri.ssl_utils import spki_sha256_base64; print(spki_sha256_base64(open(sys.argv[1], "rb").read()))' "$CERT_DIR/cert.pem")"

# An IPv6 address goes in brackets in a bind address.
BIND_HOST="$HOST"
[[ "$HOST" == *:* ]] && BIND_HOST="[$HOST]"

echo "asgiri demo:"
echo "  https://$BIND_HOST:$HTTPS_PORT/   (TLS, self-signed $CERT_DIR/cert.pem: HTTP/1.1 and HTTP/2 on TCP,"
echo "                              HTTP/3 on UDP port $HTTPS_PORT, advertised with Alt-Svc)"
echo "  http://$BIND_HOST:$HTTP_PORT/    (cleartext: HTTP/1.1 and h2c)"
echo
echo "Try HTTP/3:"
echo "  Chromium (first load already over HTTP/3; the page shows the HTTP version):"
echo "    chromium --user-data-dir=\$(mktemp -d) --origin-to-force-quic-on=$BIND_HOST:$HTTPS_PORT \\"
echo "      --ignore-certificate-errors-spki-list=$PIN https://$BIND_HOST:$HTTPS_PORT/"
echo "  (with --origin-to-force-quic-on=$BIND_HOST:9 instead, the first load is HTTP/2 and a reload"
echo "   moves to HTTP/3 through Alt-Svc; see docs/HTTP3.md)"
echo "  ngtcp2 (Debian ngtcp2-client):  gtlsclient $HOST $HTTPS_PORT https://$BIND_HOST:$HTTPS_PORT/hello"
echo "  curl built with HTTP/3:         curl -k --http3-only https://$BIND_HOST:$HTTPS_PORT/hello"
echo "WebTransport: the index page's panel connects to https://$BIND_HOST:$HTTPS_PORT/wt over HTTP/3,"
echo "  trusting the development certificate by its hash (no browser flag needed)."
echo "Press Ctrl-C to stop."

exec "$ASGIRI" "$APP" \
  --bind "https://$BIND_HOST:$HTTPS_PORT" --bind "http://$BIND_HOST:$HTTP_PORT" \
  --certfile "$CERT_DIR/cert.pem" --keyfile "$CERT_DIR/key.pem"
