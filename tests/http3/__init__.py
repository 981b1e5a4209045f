"""HTTP/3 and QUIC specifics: aioquic, ngtcp2 and Chromium clients, WebTransport,
workers over UDP."""
