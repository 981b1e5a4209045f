"""HTTP/2 conformance suite (h2spec's areas, RFC 9113 and RFC 7541) over real sockets."""
