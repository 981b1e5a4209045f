"""WebTransport over HTTP/3, sans I/O: the session's capsules and its events.

A WebTransport session (draft-ietf-webtrans-http3, as browsers speak it:
``sec-webtransport-http3-draft: draft02``) is an extended CONNECT request
with ``:protocol webtransport``.  Once it is answered 200, the CONNECT
stream carries *capsules* (RFC 9297) as its DATA: CLOSE_WEBTRANSPORT_SESSION
(an error code and a reason), DRAIN_WEBTRANSPORT_SESSION, and unknown
capsule types, which must be ignored (browsers send GREASE ones).  The
session's own streams (bidirectional and unidirectional, either side may
open them) and its HTTP datagrams are framed by aioquic's HTTP/3 layer;
:class:`~asgiri.protocol.h3.H3Connection` reports them as the events below.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from aioquic.buffer import Buffer, BufferReadError, encode_uint_var

__all__ = [
    "CLOSE_SESSION",
    "DRAFT_HEADER",
    "DRAIN_SESSION",
    "SESSION_GONE",
    "CapsuleParser",
    "SessionClosed",
    "SessionDraining",
    "WebTransportDatagram",
    "WebTransportStreamData",
    "WebTransportStreamReset",
    "close_capsule",
    "drain_capsule",
]

#: Capsule types (draft-ietf-webtrans-http3 5.4, 5.5).
CLOSE_SESSION: Final = 0x2843
DRAIN_SESSION: Final = 0x78AE
#: The stream error code for the streams of a session that is gone.
SESSION_GONE: Final = 0x170D7B68
#: The response field the drafts browsers implement expect on the 200.
DRAFT_HEADER: Final = (b"sec-webtransport-http3-draft", b"draft02")
#: A reason in CLOSE_WEBTRANSPORT_SESSION is at most 1024 bytes.
MAX_REASON: Final = 1024
#: A capsule this large on the CONNECT stream is not one the session needs:
#: the two it acts on are small, and the rest are skipped, not buffered.
_MAX_KEPT_CAPSULE: Final = MAX_REASON + 16


@dataclass(slots=True)
class WebTransportStreamData:
    """Bytes of a WebTransport stream of ``session_id`` (``ended``: its FIN came)."""

    session_id: int
    stream_id: int
    data: bytes
    ended: bool


@dataclass(slots=True)
class WebTransportStreamReset:
    """The peer reset (or stopped reading) a WebTransport stream."""

    session_id: int
    stream_id: int
    error_code: int


@dataclass(slots=True)
class WebTransportDatagram:
    """An HTTP datagram for the session whose CONNECT stream is ``session_id``."""

    session_id: int
    data: bytes


@dataclass(slots=True)
class SessionClosed:
    """The peer's CLOSE_WEBTRANSPORT_SESSION capsule."""

    code: int
    reason: str


@dataclass(slots=True)
class SessionDraining:
    """The peer's DRAIN_WEBTRANSPORT_SESSION capsule: it will not open more streams."""


Capsule = SessionClosed | SessionDraining


class CapsuleParser:
    """Capsules out of the DATA of a session's CONNECT stream, as they arrive.

    Unknown capsule types are skipped as their bytes arrive, so a peer
    cannot make the session buffer one; a CLOSE capsule longer than any
    valid one is a protocol error (``ValueError``).
    """

    __slots__ = ("_buffer", "_skip")

    def __init__(self) -> None:
        self._buffer = b""
        #: Bytes of an ignored capsule still to come.
        self._skip = 0

    def feed(self, data: bytes) -> list[Capsule]:
        if self._skip:
            taken = min(self._skip, len(data))
            self._skip -= taken
            data = data[taken:]
        buffer = self._buffer + data
        out: list[Capsule] = []
        while buffer:
            buf = Buffer(data=buffer)
            try:
                kind = buf.pull_uint_var()
                length = buf.pull_uint_var()
            except BufferReadError:
                break
            start = buf.tell()
            if kind not in (CLOSE_SESSION, DRAIN_SESSION):
                available = len(buffer) - start
                if length > available:
                    self._skip = length - available
                    buffer = b""
                    break
                buffer = buffer[start + length :]
                continue
            if length > _MAX_KEPT_CAPSULE:
                raise ValueError(f"capsule {kind:#x} of {length} bytes is too long")
            if len(buffer) - start < length:
                break
            value = buffer[start : start + length]
            buffer = buffer[start + length :]
            if kind == DRAIN_SESSION:
                out.append(SessionDraining())
            else:
                if length < 4:
                    raise ValueError("CLOSE_WEBTRANSPORT_SESSION without an error code")
                code = int.from_bytes(value[:4], "big")
                out.append(SessionClosed(code, value[4:].decode("utf-8", "replace")))
        self._buffer = buffer
        return out


def close_capsule(code: int, reason: str) -> bytes:
    """A CLOSE_WEBTRANSPORT_SESSION capsule (the reason cut to its 1024-byte limit)."""
    payload = (code & 0xFFFFFFFF).to_bytes(4, "big") + _cut(reason.encode("utf-8"), MAX_REASON)
    return encode_uint_var(CLOSE_SESSION) + encode_uint_var(len(payload)) + payload


def drain_capsule() -> bytes:
    """A DRAIN_WEBTRANSPORT_SESSION capsule: no new streams, please finish."""
    return encode_uint_var(DRAIN_SESSION) + encode_uint_var(0)


def _cut(text: bytes, limit: int) -> bytes:
    """``text`` cut to ``limit`` bytes without splitting a UTF-8 character."""
    if len(text) <= limit:
        return text
    return text[:limit].decode("utf-8", "ignore").encode("utf-8")
