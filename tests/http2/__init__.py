"""HTTP/2 specifics against a real server with real clients (h2, httpx, curl, nghttp, node,
h2load), attack classes, and the frame-level conformance suite in ``conformance/``.
"""
