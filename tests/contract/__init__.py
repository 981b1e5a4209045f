"""The contract suite: each guarantee (limits, timeouts, error answers, access-log lines,
shutdown, extensions, WebSocket) checked over HTTP/1.1, h2c, HTTP/2 over TLS and HTTP/3 alike.
"""
