"""Running in production: workers and supervision, reload, gunicorn, binds and sockets,
certificates and their renewal, proxies and the PROXY protocol, metrics, memory, logs.
"""
