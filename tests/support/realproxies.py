"""Real nginx and HAProxy on loopback, configured from the templates in docs/deployment.md.

Neither can bind port 0 and report the port, so a free port is found by
binding a socket to port 0 and closing it; if another process takes it in
between, the proxy fails to bind and is started again on a new port.
Readiness is the proxy accepting a TCP connection.
"""

from __future__ import annotations

import contextlib
import shutil
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

START_TIMEOUT = 10.0
ATTEMPTS = 5


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def binary(name: str) -> str:
    """The proxy's executable; ``make test`` installs the Debian package when it is missing."""
    path = shutil.which(name) or shutil.which(name, path="/usr/sbin:/usr/local/sbin")
    if path is None:
        raise RuntimeError(f"{name} is not installed; `make system-deps` installs it")
    return path


class RealProxy:
    """One running proxy process and the ports it listens on."""

    def __init__(self, proc: subprocess.Popen[bytes], ports: list[int], log: Path) -> None:
        self.proc = proc
        self.ports = ports
        self.log = log

    @property
    def port(self) -> int:
        return self.ports[0]


def _accepting(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return True
    except OSError:
        return False


@contextlib.contextmanager
def run_proxy(
    command: Callable[[list[int]], list[str]],
    nports: int,
    log: Path,
) -> Iterator[RealProxy]:
    """Start ``command(ports)``; retry on new ports when a port was taken meanwhile."""
    for _ in range(ATTEMPTS):
        ports = [free_port() for _ in range(nports)]
        with log.open("ab") as out:
            proc = subprocess.Popen(command(ports), stdout=out, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + START_TIMEOUT
        while proc.poll() is None and not all(_accepting(p) for p in ports):
            if time.monotonic() > deadline:
                proc.kill()
                proc.wait()
                raise RuntimeError(f"proxy did not start:\n{log.read_text()}")
            time.sleep(0.02)
        if proc.poll() is not None:
            text = log.read_text()
            if "in use" in text:  # nginx: "Address already in use"; HAProxy: "cannot bind"
                continue
            raise RuntimeError(f"proxy exited with {proc.returncode}:\n{text}")
        try:
            yield RealProxy(proc, ports, log)
        finally:
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        return
    raise RuntimeError(f"no free port after {ATTEMPTS} attempts:\n{log.read_text()}")


NGINX_CONF = """\
# Test harness: foreground, one process, everything under the temporary prefix.
daemon off;
master_process off;
user root;
worker_processes 1;
pid {prefix}/nginx.pid;
error_log {prefix}/error.log info;

events {{
    worker_connections 256;
}}

http {{
    access_log off;
    client_body_temp_path {prefix}/client_body;
    proxy_temp_path {prefix}/proxy;
    fastcgi_temp_path {prefix}/fastcgi;
    uwsgi_temp_path {prefix}/uwsgi;
    scgi_temp_path {prefix}/scgi;

    # -- from docs/deployment.md --------------------------------------------
    map $http_upgrade $connection_upgrade {{
        default upgrade;
        ''      '';
    }}

    upstream asgiri {{
        server 127.0.0.1:{upstream_port};
        keepalive 32;
    }}

    server {{
        listen 127.0.0.1:{http_port};
        listen 127.0.0.1:{https_port} ssl;
        ssl_certificate {certfile};
        ssl_certificate_key {keyfile};

        location / {{
            proxy_pass http://asgiri;
            proxy_http_version 1.1;
            proxy_set_header Upgrade $http_upgrade;
            proxy_set_header Connection $connection_upgrade;
            proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
            proxy_set_header X-Forwarded-Proto $scheme;
            proxy_set_header X-Forwarded-Host $http_host;
            proxy_read_timeout 1h;
            proxy_buffering off;
        }}
    }}
}}
"""


@contextlib.contextmanager
def nginx(upstream_port: int, certfile: str, keyfile: str, directory: Path) -> Iterator[RealProxy]:
    """nginx on two ports (http, https) reverse-proxying to asgiri on ``upstream_port``."""
    exe = binary("nginx")
    conf = directory / "nginx.conf"

    def command(ports: list[int]) -> list[str]:
        conf.write_text(
            NGINX_CONF.format(
                prefix=directory,
                upstream_port=upstream_port,
                http_port=ports[0],
                https_port=ports[1],
                certfile=certfile,
                keyfile=keyfile,
            )
        )
        return [exe, "-p", str(directory), "-e", str(directory / "error.log"), "-c", str(conf)]

    with run_proxy(command, 2, directory / "nginx.out") as proxy:
        yield proxy


HAPROXY_CONF = """\
global
    maxconn 256

defaults
    mode tcp
    timeout connect 5s
    timeout client 1m
    timeout server 1m

frontend asgiri_in
    bind 127.0.0.1:{port}
    default_backend asgiri

backend asgiri
    server asgiri1 127.0.0.1:{upstream_port} {send_proxy}
"""

HAPROXY_HTTP_CONF = """\
global
    maxconn 256

defaults
    mode http
    option http-server-close
    timeout connect 5s
    timeout client 1m
    timeout server 1m
    timeout tunnel 1h

frontend asgiri_in
    bind 127.0.0.1:{port}
    option forwardfor
    http-request set-header X-Forwarded-Proto https if {{ ssl_fc }}
    http-request set-header X-Forwarded-Proto http if !{{ ssl_fc }}
    http-request set-header X-Forwarded-Host %[req.hdr(host)]
    default_backend asgiri

backend asgiri
    server asgiri1 127.0.0.1:{upstream_port}
"""


@contextlib.contextmanager
def haproxy(upstream_port: int, send_proxy: str, directory: Path) -> Iterator[RealProxy]:
    """HAProxy passing connections to asgiri: TCP mode with a PROXY header
    (``send_proxy`` is ``send-proxy`` or ``send-proxy-v2``), or ``send_proxy="http"``
    for HTTP mode with X-Forwarded-* headers."""
    exe = binary("haproxy")
    conf = directory / f"haproxy-{send_proxy}.cfg"

    def command(ports: list[int]) -> list[str]:
        if send_proxy == "http":
            text = HAPROXY_HTTP_CONF.format(port=ports[0], upstream_port=upstream_port)
        else:
            text = HAPROXY_CONF.format(
                port=ports[0], upstream_port=upstream_port, send_proxy=send_proxy
            )
        conf.write_text(text)
        return [exe, "-db", "-f", str(conf)]

    with run_proxy(command, 1, directory / f"haproxy-{send_proxy}.out") as proxy:
        yield proxy
