"""HTTP/1.1 specifics against a real server: keep-alive, pipelining, framing, bad input,
the http scope.
"""
