"""Real HTTP/3 clients for tests: ngtcp2's example client and headless Chromium.

Both are Debian packages that ``make test`` installs (``ngtcp2-client`` ships
``gtlsclient``; ``chromium``).  Neither is mocked or wrapped in a library: the
tests run the binaries the way a person trying asgiri from a shell would, and
read back what the client itself reports (ngtcp2's ``:status`` line and the
downloaded file; Chromium's ``nextHopProtocol`` from the Navigation Timing API).

Chromium is driven over the DevTools protocol from Python (``websockets`` is a
dev dependency already), so no npm package is needed.  Everything waits on an
event with a deadline: the DevTools URL Chromium prints on stderr, a
``Page.loadEventFired`` notification, ngtcp2's exit.  A missing binary fails
the test with a message naming the package, rather than skipping it.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import subprocess
import tempfile
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from websockets.sync.client import ClientConnection, connect

__all__ = [
    "Chromium",
    "ChromiumError",
    "Ngtcp2Response",
    "find_binary",
    "ngtcp2_get",
]

# Debian's ngtcp2-client builds the example client against GnuTLS only.
NGTCP2_CLIENT = "gtlsclient"
CHROMIUM = "chromium"
_PACKAGES = {NGTCP2_CLIENT: "ngtcp2-client", CHROMIUM: "chromium"}

# ngtcp2 prints response headers (without --quiet) as "http: stream 0x0 [:status: 200]".
_NG_HEADER_RE = re.compile(r"^http: stream 0x[0-9a-f]+ \[([^:\]][^:]*|:[^:]+): (.*)\]$")
_NG_ALPN_RE = re.compile(r"^Negotiated ALPN is (\S+)$", re.MULTILINE)
_DEVTOOLS_RE = re.compile(r"DevTools listening on (ws://\S+)")


def find_binary(name: str) -> str:
    """Path of *name*; a clear failure (not a skip) when ``make test`` was bypassed."""
    path = shutil.which(name)
    if path is None:
        package = _PACKAGES.get(name, name)
        raise RuntimeError(
            f"{name!r} is not installed: run `make system-deps` (Debian package {package})"
        )
    return path


# ----------------------------------------------------------------------------- ngtcp2


@dataclass
class Ngtcp2Response:
    """What ngtcp2's client reported for one request."""

    status: int
    headers: list[tuple[str, str]]
    body: bytes
    alpn: str
    log: str = field(repr=False)

    def header(self, name: str) -> str | None:
        for key, value in self.headers:
            if key == name:
                return value
        return None


def ngtcp2_get(
    url: str,
    *,
    method: str = "GET",
    data: bytes | None = None,
    timeout: float = 10.0,
) -> Ngtcp2Response:
    """Fetch *url* over HTTP/3 with ``gtlsclient`` and return status, headers and body.

    The client exits 0 even when the server never answers (it idles out), so
    success is judged from what it printed: the negotiated ALPN and the
    ``:status`` header.  The body is whatever ``--download`` wrote; the file is
    named after the last path segment, so each call downloads into its own
    empty directory and reads the one file there.
    """
    binary = find_binary(NGTCP2_CLIENT)
    parts = urlsplit(url)
    if parts.scheme != "https" or parts.hostname is None or parts.port is None:
        raise ValueError(f"need an https URL with an explicit port: {url!r}")
    seconds = max(1, int(timeout))
    with tempfile.TemporaryDirectory(prefix="ngtcp2-") as tmp:
        download = os.path.join(tmp, "download")
        os.mkdir(download)
        cmd = [
            binary,
            "--exit-on-all-streams-close",
            "--no-quic-dump",
            "--no-http-dump",
            f"--timeout={seconds}s",
            # A loopback handshake takes milliseconds; fail fast when nothing answers.
            f"--handshake-timeout={min(seconds, 5)}s",
            f"--download={download}",
            f"--http-method={method}",
        ]
        if data is not None:
            body_file = os.path.join(tmp, "request-body")
            with open(body_file, "wb") as handle:
                handle.write(data)
            cmd.append(f"--data={body_file}")
        cmd += [parts.hostname, str(parts.port), url]
        # ngtcp2 writes its whole log to stderr; stdout stays empty with --no-http-dump.
        result = subprocess.run(
            cmd, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=timeout + 5
        )
        log = result.stderr
        files = os.listdir(download)
        body = b""
        if files:
            with open(os.path.join(download, files[0]), "rb") as handle:
                body = handle.read()
    headers = [
        (match.group(1), match.group(2))
        for line in log.splitlines()
        if (match := _NG_HEADER_RE.match(line))
    ]
    statuses = [value for name, value in headers if name == ":status"]
    alpn = _NG_ALPN_RE.search(log)
    if result.returncode != 0 or not statuses or alpn is None:
        tail = "\n".join(line for line in log.splitlines() if not line.startswith("I0"))[-3000:]
        raise AssertionError(
            f"ngtcp2 got no HTTP/3 response from {url} (exit {result.returncode}):\n{tail}"
        )
    return Ngtcp2Response(
        status=int(statuses[-1]),
        headers=[(name, value) for name, value in headers if name != ":status"],
        body=body,
        alpn=alpn.group(1),
        log=log,
    )


# ----------------------------------------------------------------------------- Chromium


class ChromiumError(AssertionError):
    """Chromium could not start, navigate, or answer over DevTools in time."""


# Flags that keep a headless Chromium quiet, root-safe and free of outside traffic.
_BASE_FLAGS = (
    "--headless=new",
    "--no-sandbox",  # required as root
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-extensions",
    "--disable-default-apps",
    "--no-first-run",
    "--no-default-browser-check",
    "--no-proxy-server",
    # Names never leave the machine (Chromium still phones home for updates and
    # sign-in otherwise); IP literals such as 127.0.0.1 are not resolved at all.
    "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE localhost, EXCLUDE 127.0.0.1",
    "--remote-debugging-port=0",
)


# The DevTools events a navigation looks at; all others are dropped as they arrive.
_KEPT_EVENTS = frozenset({"Page.loadEventFired", "Network.responseReceived"})


class Chromium:
    """One headless Chromium process with one tab, driven over DevTools.

    *spki_pins* trusts exactly those certificates (``--ignore-certificate-errors``
    alone is not enough for QUIC: the handshake fails with ERR_QUIC_PROTOCOL_ERROR).
    *force_quic_on* lists ``host:port`` origins Chromium must reach over QUIC
    without waiting for Alt-Svc.  Extra command-line flags go in *flags*.
    """

    def __init__(
        self,
        spki_pins: Sequence[str] = (),
        *,
        force_quic_on: Sequence[str] = (),
        flags: Sequence[str] = (),
        timeout: float = 15.0,
    ) -> None:
        self.timeout = timeout
        self._user_data = tempfile.TemporaryDirectory(prefix="chromium-")
        cmd = [find_binary(CHROMIUM), *_BASE_FLAGS, f"--user-data-dir={self._user_data.name}"]
        cmd.append("--enable-quic")
        if spki_pins:
            cmd.append("--ignore-certificate-errors-spki-list=" + ",".join(spki_pins))
        if force_quic_on:
            cmd.append("--origin-to-force-quic-on=" + ",".join(force_quic_on))
        cmd += [*flags, "about:blank"]
        self.cmd = cmd
        self._stderr: list[str] = []
        self._proc = subprocess.Popen(
            cmd,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        self._ws: ClientConnection | None = None
        self._exit = contextlib.ExitStack()
        self._next_id = 0
        self._events: list[dict[str, Any]] = []
        self._session: str | None = None
        self.document_headers: dict[str, str] = {}
        try:
            self._ws = self._exit.enter_context(
                connect(self._wait_devtools_url(), proxy=None, max_size=None, open_timeout=timeout)
            )
            self._session = self._open_tab()
        except BaseException:
            self.close()
            raise

    # --- process and transport

    def _wait_devtools_url(self) -> str:
        """Read stderr until Chromium prints its DevTools endpoint (an event, not a poll)."""
        found: list[str] = []
        ready = threading.Event()
        assert self._proc.stderr is not None
        stderr = self._proc.stderr

        def reader() -> None:
            for line in stderr:
                self._stderr.append(line)
                match = _DEVTOOLS_RE.search(line)
                if match and not found:
                    found.append(match.group(1))
                    ready.set()
            ready.set()  # EOF: Chromium exited before printing it

        threading.Thread(target=reader, daemon=True).start()
        if not ready.wait(self.timeout) or not found:
            raise ChromiumError(
                f"Chromium did not start ({' '.join(self.cmd)}):\n{self.stderr_text}"
            )
        return found[0]

    @property
    def stderr_text(self) -> str:
        return "".join(self._stderr)[-4000:]

    def close(self) -> None:
        if self._ws is not None:
            with contextlib.suppress(Exception):
                self._call("Browser.close", session=False)
            with contextlib.suppress(Exception):
                self._exit.close()
            self._ws = None
        if self._proc.poll() is None:
            try:
                self._proc.wait(5)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait(5)
        self._user_data.cleanup()

    def __enter__(self) -> Chromium:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # --- DevTools protocol

    def _call(
        self,
        method: str,
        params: dict[str, Any] | None = None,
        *,
        session: bool = True,
        timeout: float | None = None,
    ) -> dict[str, Any]:
        """Send one command and wait for its reply; events seen meanwhile are kept."""
        if self._ws is None:
            raise ChromiumError("DevTools connection is closed")
        self._next_id += 1
        message: dict[str, Any] = {"id": self._next_id, "method": method, "params": params or {}}
        if session and self._session is not None:
            message["sessionId"] = self._session
        self._ws.send(json.dumps(message))
        deadline = time.monotonic() + (timeout or self.timeout)
        while True:
            reply = self._receive(deadline, f"reply to {method}")
            if reply.get("id") == self._next_id:
                if "error" in reply:
                    raise ChromiumError(f"{method} failed: {reply['error']}")
                result: dict[str, Any] = reply.get("result", {})
                return result
            if reply.get("method") in _KEPT_EVENTS:
                self._events.append(reply)

    def _receive(self, deadline: float, what: str) -> dict[str, Any]:
        assert self._ws is not None
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise ChromiumError(f"timed out waiting for {what}\n{self.stderr_text}")
        try:
            raw = self._ws.recv(timeout=remaining)
        except TimeoutError:
            raise ChromiumError(f"timed out waiting for {what}\n{self.stderr_text}") from None
        message: dict[str, Any] = json.loads(raw)
        return message

    def _wait_event(self, method: str, deadline: float) -> dict[str, Any]:
        for index, event in enumerate(self._events):
            if event.get("method") == method and event.get("sessionId") == self._session:
                return self._events.pop(index)
        while True:
            event = self._receive(deadline, method)
            if event.get("method") == method and event.get("sessionId") == self._session:
                return event
            if event.get("method") in _KEPT_EVENTS:
                self._events.append(event)

    def _open_tab(self) -> str:
        target = self._call("Target.createTarget", {"url": "about:blank"}, session=False)
        attached = self._call(
            "Target.attachToTarget",
            {"targetId": target["targetId"], "flatten": True},
            session=False,
        )
        session: str = attached["sessionId"]
        self._session = session
        self._call("Page.enable")
        # Network events say what Chromium received for the document (headers,
        # protocol); with the cache off, every load really goes to the server.
        self._call("Network.enable")
        self._call("Network.setCacheDisabled", {"cacheDisabled": True})
        return session

    def evaluate(self, expression: str) -> Any:
        """Value of a JavaScript expression in the tab (promises are awaited)."""
        result = self._call(
            "Runtime.evaluate",
            {"expression": expression, "returnByValue": True, "awaitPromise": True},
        )
        if "exceptionDetails" in result:
            raise ChromiumError(f"{expression!r} threw: {result['exceptionDetails']}")
        return result["result"].get("value")

    def navigate(self, url: str) -> str:
        """Load *url* in the tab and return the protocol the document came over.

        The document's response headers, as Chromium received them, are left in
        :attr:`document_headers`.  Raises ChromiumError when the navigation fails
        (the net:: error Chromium reports, e.g. ERR_QUIC_PROTOCOL_ERROR) or the load
        does not finish in time.
        """
        deadline = time.monotonic() + self.timeout
        # Only this navigation's events matter; older ones would be mistaken for them.
        self._events.clear()
        result = self._call("Page.navigate", {"url": url})
        if result.get("errorText"):
            raise ChromiumError(f"navigating to {url} failed: {result['errorText']}")
        self._wait_event("Page.loadEventFired", deadline)
        loader = result.get("loaderId")
        self.document_headers = {}
        for event in self._events:
            params = event.get("params", {})
            if event.get("method") == "Network.responseReceived" and (
                params.get("loaderId") == loader and params.get("type") == "Document"
            ):
                headers = params["response"].get("headers", {})
                self.document_headers = {k.lower(): v for k, v in headers.items()}
        protocol: str = self.evaluate(
            "performance.getEntriesByType('navigation')[0].nextHopProtocol"
        )
        return protocol

    def navigate_until(self, url: str, protocol: str, attempts: int = 10) -> list[str]:
        """Load *url* again and again until it comes over *protocol*; every protocol seen.

        This is how Alt-Svc discovery looks from outside: the load that brings the
        header comes over TCP, and Chromium starts its QUIC handshake alongside the
        next request, which usually still wins on the open HTTP/2 connection.  Once
        the QUIC session is up, loads move to it.  There is no event for "QUIC is
        ready", so the loads are repeated, a bounded number of times.
        """
        seen: list[str] = []
        for _ in range(attempts):
            seen.append(self.navigate(url))
            if seen[-1] == protocol:
                break
        return seen
