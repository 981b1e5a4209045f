"""WebSocket over HTTP/1.1 and HTTP/2 (RFC 8441) with real clients, and the Autobahn runs."""
