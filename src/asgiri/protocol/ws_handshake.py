"""WebSocket opening handshakes: checks of the request, and the extensions agreed.

The handshake differs per transport: an HTTP/1.1 Upgrade answered with 101
(RFC 6455 4.2), an extended CONNECT answered with 200 on HTTP/2 (RFC 8441)
and HTTP/3 (RFC 9220).  What the request must hold is checked here, and a
bad one raises :class:`HandshakeError` carrying the HTTP answer; what follows
a handshake is the same on every transport (:class:`~asgiri.protocol.ws.WSSession`).
"""

from __future__ import annotations

import base64
import binascii

from wsproto.extensions import Extension, PerMessageDeflate
from wsproto.utilities import generate_accept_token, split_comma_header

from .events import Headers
from .ws_deflate import DEFAULT_DEFLATE_LEVEL, Deflate

__all__ = [
    "HandshakeError",
    "accept_token",
    "check_connect_handshake",
    "check_h1_handshake",
    "negotiate_extensions",
]


class HandshakeError(Exception):
    """A bad opening handshake; ``status`` and ``headers`` make the HTTP answer."""

    def __init__(self, status: int, message: str, headers: Headers | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.headers = headers or []


def _header_values(headers: Headers, name: bytes) -> list[bytes]:
    return [value for key, value in headers if key == name]


def check_h1_handshake(method: str, headers: Headers) -> bytes:
    """Validate an HTTP/1.1 Upgrade request (RFC 6455 4.2.1); returns the key.

    Raises :class:`HandshakeError` with 400 (malformed) or 426 (wrong
    version, with the ``Sec-WebSocket-Version`` the server speaks).
    """
    if method != "GET":
        raise HandshakeError(400, "WebSocket handshake must be a GET request")
    connection = b",".join(_header_values(headers, b"connection")).lower()
    if b"upgrade" not in [token.strip() for token in connection.split(b",")]:
        raise HandshakeError(400, "Connection header must contain 'upgrade'")
    versions = _header_values(headers, b"sec-websocket-version")
    if versions != [b"13"]:
        raise HandshakeError(
            426, "unsupported WebSocket version", [(b"sec-websocket-version", b"13")]
        )
    keys = _header_values(headers, b"sec-websocket-key")
    if len(keys) != 1:
        raise HandshakeError(400, "exactly one Sec-WebSocket-Key is required")
    try:
        if len(base64.b64decode(keys[0], validate=True)) != 16:
            raise ValueError
    except (binascii.Error, ValueError):
        raise HandshakeError(400, "Sec-WebSocket-Key must be 16 bytes, base64") from None
    return keys[0]


def check_connect_handshake(headers: Headers) -> None:
    """RFC 8441 / RFC 9220: the version must be 13; there is no key."""
    versions = _header_values(headers, b"sec-websocket-version")
    if versions and versions != [b"13"]:
        raise HandshakeError(
            426, "unsupported WebSocket version", [(b"sec-websocket-version", b"13")]
        )


def accept_token(key: bytes) -> bytes:
    return generate_accept_token(key)


def negotiate_extensions(
    headers: Headers, enabled: bool, level: int = DEFAULT_DEFLATE_LEVEL
) -> tuple[list[Extension], bytes | None]:
    """Accept permessage-deflate when offered (and enabled).

    Returns the wsproto extensions for the session and the
    ``Sec-WebSocket-Extensions`` response value (None when nothing agreed).
    """
    if not enabled:
        return [], None
    for value in _header_values(headers, b"sec-websocket-extensions"):
        for offer in split_comma_header(value):
            name = offer.split(";", 1)[0].strip()
            if name == PerMessageDeflate.name:
                extension = Deflate(level)
                accepted = extension.accept(offer)
                if accepted is None:
                    continue
                # accept() gives the parameters only ("" or True for none).
                agreed = f"{name}; {accepted}" if isinstance(accepted, str) and accepted else name
                return [extension], agreed.encode("ascii")
    return [], None
