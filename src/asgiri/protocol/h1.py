"""HTTP/1.1 server connection, sans I/O: both sides of it, on top of httptools (llhttp).

:class:`H1Connection` is the whole of HTTP/1.1's rules for one connection,
the client's requests and the server's responses, the way h11's connection
is: bytes in through :meth:`~H1Connection.receive_data` (version-neutral
events out, :mod:`asgiri.protocol.events`), responses in through
:meth:`~H1Connection.send_response` / :meth:`~H1Connection.send_data` /
:meth:`~H1Connection.send_trailers` (bytes out).  The server layer moves
bytes and runs apps; whether the connection is reused, which request is
answered next and whether a protocol switch is possible are decided here.

Reading.  llhttp already refuses the request-smuggling vectors of RFC 9112
section 6.3 (Content-Length with Transfer-Encoding, duplicate or malformed
Content-Length, a Transfer-Encoding that does not end in chunked, bare LF,
obs-fold, invalid header bytes), so what it accepted is not validated again
here; this module adds the size limits llhttp does not know about and maps
failures to the status to answer with (400, 413, 414, 431, 501, 505).

Both sides have an explicit state (:class:`ReadState`, :class:`WriteState`;
why each state exists is said there)::

    read_state (the client's requests, parsed ahead of the answers)

      IDLE ──first byte of a head──▶ HEAD ──head parsed──▶ BODY ──body ends──▶ IDLE
                                       │                    └──(no keep-alive)──▶ CLOSED
                                       └──an Upgrade request's head, next to be answered──▶ UPGRADE
      UPGRADE ──accept_upgrade()──▶ SWITCHED
      UPGRADE ──decline_upgrade()──▶ BODY, IDLE or CLOSED   (HTTP/1.1 goes on, body included)
      any ──malformed input (RemoteProtocolError)──▶ ERROR

    write_state (the server's responses, one request at a time, in order)

      IDLE ──next_request()──▶ RESPONSE ──send_response(end=False)──▶ BODY
      RESPONSE ──send_response(end=True)──┐   BODY ──send_data(end=True) / send_trailers()──┐
                                          ▼                                                 ▼
                         IDLE when the connection may be reused, else CLOSE
      RESPONSE ──send_informational()──▶ RESPONSE            (1xx, HTTP/1.1 clients only)
      IDLE ──accept_upgrade()──▶ SWITCHED
      any ──malformed input, answered or cut off (AfterError)──▶ CLOSE

The rules:

1. Requests are parsed as they arrive and wait, in order, until
   :meth:`~H1Connection.next_request` makes the first of them the one being
   answered; that happens only when the previous response has ended and
   allowed the connection to be reused.  One ``receive_data`` call parses
   at most ``max_requests`` requests; the bytes after them are held
   (:attr:`~H1Connection.holding`) until the next call.
2. A response ends in IDLE (the connection is reused) only when its head
   allowed it (the request did: HTTP/1.1 without ``Connection: close``,
   HTTP/1.0 with ``Connection: keep-alive``; the app did not send
   ``connection: close``; an HTTP/1.0 body's length was known), its
   request's body was received completely (an unread body is never
   skipped), and the connection is not draining with nothing left waiting.
   Otherwise it ends in CLOSE and the server closes the connection.
3. Draining (:meth:`~H1Connection.close_when_done`): every response head
   not yet sent says ``connection: close``.  A response whose head already
   promised keep-alive is followed by the next waiting request (the client
   sent it already), whose head then says close.
4. A request with ``Upgrade`` is offered to the server
   (:class:`UpgradeRequested` instead of its :class:`Request`) only when it
   is the next to be answered, because a ``101`` cannot overtake responses
   owed to earlier requests.  Otherwise, or when the server declines, it
   is an ordinary HTTP/1.1 request, body included.
5. 1xx responses go to HTTP/1.1 clients only (RFC 9110 15.2), and only
   before the final response head.
6. After malformed input nothing more is parsed, and
   :attr:`~H1Connection.after_error` tells the server what is left to do
   (:class:`AfterError`): answer the error status, close at once, or
   finish the response under way and then close.

Requests are numbered from 1 as ``stream_id``.
"""

from __future__ import annotations

import enum
import http
import re
from collections import deque
from dataclasses import dataclass
from typing import Final

import httptools

from .errors import LocalProtocolError, RemoteProtocolError
from .events import Body, EndBody, Headers, Request
from .fields import check_field_name, check_field_value

__all__ = [
    "AfterError",
    "H1Connection",
    "H1Event",
    "H1Response",
    "ReadState",
    "RequestInfo",
    "UpgradeRequested",
    "WriteState",
]

_EXPECT_CONTINUE: Final = b"100-continue"
_HEAD_ONLY_STATUSES: Final = frozenset({204, 304})
_STATUS_LINES: dict[int, bytes] = {}
_MAX_VALID_NAMES: Final = 4096
CONTINUE_RESPONSE: Final = b"HTTP/1.1 100 Continue\r\n\r\n"
#: Body pieces at least this large are written as their own buffer instead of
#: being copied next to their framing.
COPY_LIMIT: Final = 16 * 1024
_SPECIAL_REQUEST_HEADERS: Final = frozenset(
    {b"host", b"expect", b"content-length", b"upgrade", b"transfer-encoding"}
)
_METHODS: Final = {
    m.encode(): m
    for m in ("GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "CONNECT", "TRACE")
}


def status_line(status: int) -> bytes:
    """``HTTP/1.1 <status> <reason>\\r\\n``, cached: there are few statuses."""
    line = _STATUS_LINES.get(status)
    if line is None:
        try:
            phrase = http.HTTPStatus(status).phrase.encode("ascii")
        except ValueError:
            phrase = b""
        line = b"HTTP/1.1 %d %s\r\n" % (status, phrase)
        if len(_STATUS_LINES) < 1024:
            _STATUS_LINES[status] = line
    return line


def without_alt_svc(block: bytes) -> bytes:
    """A default header block minus its ``alt-svc`` line."""
    return b"".join(
        line for line in block.splitlines(keepends=True) if not line.startswith(b"alt-svc:")
    )


#: States of the walk over a chunked body's framing (H1Connection._chunked_end).
_WALK_SIZE: Final = 0
_WALK_DATA: Final = 1
_WALK_TRAILERS: Final = 2
_HEX_RE: Final = re.compile(rb"[0-9A-Fa-f]+")
#: The shortest request there is: ``GET / HTTP/1.0`` and a blank line.
_MIN_REQUEST: Final = 18

_CONTENT_LENGTH: Final = 1
_TRANSFER_ENCODING: Final = 2
_CONNECTION: Final = 3
_ALT_SVC: Final = 4
_SPECIAL_RESPONSE_HEADERS: Final = {
    b"content-length": _CONTENT_LENGTH,
    b"transfer-encoding": _TRANSFER_ENCODING,
    b"connection": _CONNECTION,
    b"alt-svc": _ALT_SVC,
}
#: Response header names already validated, with what framing must know of
#: them (0 for an ordinary header); apps send the same few names over and over.
_NAME_KIND: dict[bytes, int] = {}


def _classify_name(name: bytes) -> int:
    check_field_name(name)
    kind = _SPECIAL_RESPONSE_HEADERS.get(name.lower(), 0)
    if len(_NAME_KIND) < _MAX_VALID_NAMES:
        _NAME_KIND[name] = kind
    return kind


class ReadState(enum.Enum):
    """Where the client's side of the connection is (rules: the module docstring)."""

    #: Between requests: nothing of the next head has arrived (empty lines
    #: may, RFC 9112 2.2), so the keep-alive timer runs, not the header timer.
    IDLE = "idle"
    #: A request head has begun: the header-section limits count its bytes,
    #: and the header timer runs (a client dribbling a head is cut off).
    HEAD = "head"
    #: A head was parsed and its body is arriving; only once it has ended may
    #: the response to it leave the connection open.
    BODY = "body"
    #: An Upgrade request waits for the server's decision.  llhttp stopped
    #: after its head: the bytes after it may belong to another protocol.
    UPGRADE = "upgrade"
    #: The server accepted the Upgrade: the bytes are the new protocol's.
    SWITCHED = "switched"
    #: The last request did not allow keep-alive: what the client sends
    #: after it is never read (RFC 9112 9.6).
    CLOSED = "closed"
    #: The input broke HTTP/1.1: nothing more is parsed (see AfterError).
    ERROR = "error"


class WriteState(enum.Enum):
    """Where the server's side of the connection is (rules: the module docstring)."""

    #: No request is being answered: the next waiting one may start.
    IDLE = "idle"
    #: A request is being answered and nothing of its final response went
    #: out: 1xx responses may still be sent, and an error can still be a
    #: whole response (a 500 from the server, a 400 for bad input).
    RESPONSE = "response"
    #: The head went out; the body is framed by an H1Response until it ends.
    BODY = "body"
    #: The last response could not be followed by another: the connection
    #: is to be closed once it is written.
    CLOSE = "close"
    #: The connection was handed to the protocol an Upgrade asked for.
    SWITCHED = "switched"


class AfterError(enum.Enum):
    """What is left for the server to do once the input broke the protocol."""

    #: No response to the exchange being answered has begun (or none is
    #: due): answer the error's status, then close.
    ANSWER = "answer"
    #: The response to the very request whose input broke has begun: closing
    #: now is the only way left to tell the client it is incomplete.
    CLOSE = "close"
    #: The bad input came from a request waiting behind the one being
    #: answered: that response finishes (saying ``connection: close`` if its
    #: head is still to go), nothing after it starts, then the connection
    #: closes.
    FINISH = "finish"


# Module-level names for the states the parser callbacks set per request.
_IDLE: Final = ReadState.IDLE
_HEAD: Final = ReadState.HEAD
_BODY: Final = ReadState.BODY
_UPGRADE: Final = ReadState.UPGRADE
_SWITCHED: Final = ReadState.SWITCHED
_CLOSED: Final = ReadState.CLOSED
_ERROR: Final = ReadState.ERROR
_W_IDLE: Final = WriteState.IDLE
_W_RESPONSE: Final = WriteState.RESPONSE
_W_BODY: Final = WriteState.BODY
_W_CLOSE: Final = WriteState.CLOSE


@dataclass(slots=True)
class UpgradeRequested:
    """A request asks to switch protocols, and the connection could switch now.

    It stands in place of the request's :class:`Request` event.  The server
    either serves ``protocol`` (:meth:`H1Connection.accept_upgrade`) or
    declines (:meth:`H1Connection.decline_upgrade`), and then the request
    is an ordinary HTTP/1.1 one.
    """

    request: Request
    #: The Upgrade field value, lower-cased: ``b"websocket"``, ``b"h2c"``...
    protocol: bytes


#: What :meth:`H1Connection.receive_data` reports.
H1Event = Request | Body | EndBody | UpgradeRequested


class RequestInfo:
    """What the response side must remember about a request it answers."""

    __slots__ = ("head", "http11", "keep_alive", "stream_id")

    def __init__(self, stream_id: int, head: bool, http11: bool, keep_alive: bool) -> None:
        self.stream_id = stream_id
        self.head = head
        self.http11 = http11
        self.keep_alive = keep_alive


class H1Response:
    """Body framing of one response; every method returns the bytes to write."""

    __slots__ = ("_chunked", "_no_body", "_remaining", "keep_alive")

    def __init__(self, chunked: bool, no_body: bool, remaining: int | None, keep_alive: bool):
        self._chunked = chunked
        self._no_body = no_body
        #: Bytes still owed under Content-Length; None when not length-framed.
        self._remaining = remaining
        self.keep_alive = keep_alive

    @property
    def chunked(self) -> bool:
        return self._chunked

    def account(self, nbytes: int) -> None:
        """Count bytes written around this framing (zero-copy file sends)."""
        if self._remaining is not None:
            self._remaining -= nbytes
            if self._remaining < 0:
                raise LocalProtocolError("response body longer than its Content-Length")

    def data(self, data: bytes) -> list[bytes]:
        """Frame a body chunk (not the last): the buffers to write, in order.

        Large chunks are returned as they are, next to their framing, so that
        a transport with ``writelines`` sends them without another copy.
        """
        if self._remaining is not None:
            self._remaining -= len(data)
            if self._remaining < 0:
                raise LocalProtocolError("response body longer than its Content-Length")
        if self._no_body or not data:
            return []
        if self._chunked:
            if len(data) < COPY_LIMIT:
                return [b"%x\r\n%b\r\n" % (len(data), data)]
            return [b"%x\r\n" % len(data), data, b"\r\n"]
        return [data]

    def end(self, data: bytes = b"", trailers: Headers | None = None) -> list[bytes]:
        """Frame the last chunk and the end of the body (with trailers when chunked)."""
        out = self.data(data) if data else []
        if self._remaining:
            raise LocalProtocolError(
                f"response body shorter than its Content-Length ({self._remaining} bytes missing)"
            )
        if self._chunked:
            if trailers:
                lines = [b"0\r\n"]
                for name, value in trailers:
                    check_field_name(name)
                    check_field_value(value)
                    lines.append(b"%b: %b\r\n" % (name, value))
                lines.append(b"\r\n")
                out.append(b"".join(lines))
            else:
                out.append(b"0\r\n\r\n")
        return out


class _Inert:
    """A parser protocol without callbacks: what a released connection's parser reports to."""


_INERT = _Inert()


class H1Connection:
    """One HTTP/1.x server connection, both sides (the rules: the module docstring).

    The server layer calls, per request: :meth:`receive_data` with what it
    read; for each :class:`Request` event, later :meth:`next_request` to
    learn which request to answer now; for that request
    :meth:`send_response` (and :meth:`send_data`, :meth:`send_trailers`,
    :meth:`send_informational`), writing the bytes they return; and, once
    the response is over, :attr:`write_state` says whether the connection
    goes on (IDLE) or closes (CLOSE).
    """

    def __init__(
        self,
        *,
        max_header_size: int = 16384,
        max_request_line: int = 8190,
        max_fields: int = 100,
        max_body: int | None = None,
        max_requests: int | None = None,
    ) -> None:
        self._parser = httptools.HttpRequestParser(self)
        #: Request messages one receive_data() call parses at most (None: all).
        self._max_requests = max_requests
        #: Bytes received but not parsed yet, after ``max_requests`` messages.
        self._held = b""
        #: Received bytes wait to be parsed by the next :meth:`receive_data`
        #: call.  (An attribute kept with ``_held``, not a property: the
        #: server asks after every read.)
        self.holding = False
        #: The walk over a chunked body's framing (see _chunked_end).
        self._walk = _WALK_SIZE
        self._walk_left = 0
        self._walk_line = b""
        #: The last bytes fed under ``max_requests`` (a blank line may straddle reads).
        self._tail = b""
        self._max_header_size = max_header_size
        self._max_request_line = max_request_line
        self._max_fields = max_fields
        self._max_body = max_body
        #: Where the client's requests are (see ReadState).
        self.read_state = ReadState.IDLE
        #: Where the server's responses are (see WriteState).
        self.write_state = WriteState.IDLE
        #: What the server is left to do after input broke the protocol.
        self.after_error: AfterError | None = None
        self._events: list[H1Event] = []
        #: Requests parsed and not yet being answered, in the order they came.
        self._waiting: deque[RequestInfo] = deque()
        #: The request being answered, and its body framing once its head is out.
        self._answering: RequestInfo | None = None
        self._response: H1Response | None = None
        #: False once the connection is draining (close_when_done).
        self._keep_alive = True
        #: The last request whose body was received to its end.
        self._ended = 0
        self._error: RemoteProtocolError | None = None
        self._stream_id = 0
        self._url = b""
        self._headers: Headers = []
        self._trailers: Headers | None = None
        self._authority: bytes | None = None
        self._expect = False
        #: The Upgrade field of the head being parsed, lower-cased.
        self._upgrade: bytes | None = None
        #: The same, for a parsed request after which llhttp stops to switch.
        self._upgrade_to: bytes | None = None
        self._content_length = 0
        self._chunked = False
        #: The Transfer-Encoding field values, joined.
        self._te: bytes | None = None
        #: Framing of an Upgrade request's body still to parse: its length,
        #: "chunked", or None.
        self._upgrade_body: int | str | None = None
        self._body_only = False
        self._head_size = 0
        #: Raw bytes of the head in progress (``_head_size`` counts its lines).
        self._head_bytes = 0
        self._body_size = 0
        self._trailer_size = 0
        #: Body plus trailer bytes seen when a chunked body last made progress,
        #: and the bytes fed since then (see ``_feed``).
        self._progress_mark = -1
        self._framing_bytes = 0
        #: Bytes after an Upgrade request's head: the new protocol's if the
        #: server accepts, HTTP/1.1's (the request's body, more requests) if not.
        self._after_upgrade = b""
        #: The read state an Upgrade request left, to go on from when declined.
        self._resume_state = ReadState.IDLE
        #: The Upgrade request offered to the server: its own events (Request,
        #: and EndBody when it has no body) and what answering it needs.
        self._offered: list[H1Event] = []
        self._offered_info: RequestInfo | None = None

    # ------------------------------------------------------------ reading

    def receive_data(self, data: bytes) -> list[H1Event]:
        """Feed received bytes; returns the events they complete.

        Raises :class:`RemoteProtocolError` with the status to answer when the
        input is malformed or over a limit; :attr:`after_error` then says what
        the server is left to do.  Events produced before the error are lost
        with the connection, which closes after the error is dealt with.

        With ``max_requests``, one call parses at most that many request
        messages: the bytes after them are held (:attr:`holding`) and parsed
        by a later call, which may bring no new bytes (``receive_data(b"")``).
        One read full of small pipelined requests thus becomes a few requests
        at a time, at the pace the server answers them.
        """
        state = self.read_state
        if state is _UPGRADE or state is _SWITCHED:
            raise LocalProtocolError("an Upgrade is pending or accepted; HTTP/1 parsing is over")
        if self.holding:
            data = self._held + data
            self._held = b""
            self.holding = False
        if state is _CLOSED or state is _ERROR or not data:
            return []
        self._parse(data, self._stream_id, self._stream_id)
        events = self._events
        self._events = []
        return events

    def _parse(self, data: bytes, first_id: int, delivered: int) -> None:
        """Parse ``data``; an Upgrade that cannot be offered to the server is declined here.

        ``first_id`` is the request count the ``max_requests`` bound starts
        from, ``delivered`` the last request whose events the server has.
        """
        try:
            while True:
                if self._max_requests is None:
                    self._feed(data)
                else:
                    self._feed_bounded(data, first_id)
                if self.read_state is not _UPGRADE or self._offer():
                    return
                data = self._resume()
                if not data:
                    return
        except RemoteProtocolError:
            self._broken(delivered)
            raise

    def _feed_bounded(self, data: bytes, first_id: int) -> None:
        """Feed ``data`` one message at a time; hold what follows the ``max_requests``-th one.

        llhttp cannot be paused in the middle of a buffer, so the bytes are
        cut where messages end before llhttp sees them: a head after its
        blank line, a Content-Length body after its length, a chunked body
        after its last chunk and trailers (:meth:`_chunked_end`).  The cuts
        only decide how much is parsed at once; llhttp parses and validates
        every byte, so a wrong cut (on malformed input) costs nothing but the
        bound.  ``first_id`` is the request count when the call began.
        """
        limit = self._max_requests or 0
        pos = 0
        size = len(data)
        while pos < size:
            state = self.read_state
            if state is not _BODY:
                if limit - (self._stream_id - first_id) <= 0:
                    self._held = data[pos:]
                    self.holding = True
                    return
                # Too few bytes left for more requests than allowed: no cut.
                end = self._head_end(data, pos)
            elif self._chunked:
                end = self._chunked_end(data, pos)
            else:
                end = pos + self._content_length - self._body_size
                if not pos < end < size:
                    end = size
            self._feed(data if pos == 0 and end == size else data[pos:end])
            pos = end
            state = self.read_state
            if state is _HEAD:
                self._tail = (self._tail + data[max(0, pos - 3) : pos])[-3:]
            elif state is _UPGRADE:
                self._after_upgrade += data[pos:]
                return
            elif state is _CLOSED:
                return

    def _head_end(self, data: bytes, pos: int) -> int:
        """Just past the blank line ending the head that ``data[pos:]`` starts or continues."""
        if pos == 0 and self.read_state is _HEAD and self._tail:
            # The blank line may have begun at the end of the previous read.
            end = (self._tail + data[:3]).find(b"\r\n\r\n")
            if end >= 0:
                return end + 4 - len(self._tail)
        end = data.find(b"\r\n\r\n", pos)
        return len(data) if end < 0 else end + 4

    def _chunked_end(self, data: bytes, pos: int) -> int:
        """Where the chunked body being parsed ends in ``data``, or ``len(data)``.

        A walk over the chunk framing alone, kept across reads: size lines
        are read, chunk data is skipped by its size (never scanned), then
        trailer lines up to the blank one.  Framing it cannot read makes it
        give up (the rest is fed at once) and leaves the error to llhttp.
        """
        size = len(data)
        p = pos
        while p < size:
            if self._walk == _WALK_DATA:
                step = min(self._walk_left, size - p)
                p += step
                self._walk_left -= step
                if not self._walk_left:
                    self._walk = _WALK_SIZE
                continue
            eol = data.find(b"\n", p)
            if eol < 0:
                # An unfinished line; llhttp bounds how long it may grow.
                self._walk_line += data[p:]
                return size
            line = self._walk_line + data[p:eol] if self._walk_line else data[p:eol]
            self._walk_line = b""
            p = eol + 1
            if self._walk == _WALK_SIZE:
                digits = _HEX_RE.match(line)
                if digits is None:
                    return size
                chunk = int(digits.group(), 16)
                if chunk:
                    self._walk = _WALK_DATA
                    self._walk_left = chunk + 2  # the data and its CRLF
                else:
                    self._walk = _WALK_TRAILERS
            elif line in (b"\r", b""):
                self._walk = _WALK_SIZE
                return p
        return size

    def _feed(self, data: bytes) -> None:
        """Hand ``data`` to llhttp, adding the limits it does not know about."""
        before = self.read_state
        first_id = self._stream_id
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserUpgrade as exc:
            self._resume_state = self.read_state
            self.read_state = _UPGRADE
            self._after_upgrade = data[exc.args[0] :]
        except httptools.HttpParserCallbackError as exc:
            raise self._error or RemoteProtocolError(str(exc)) from None
        except httptools.HttpParserError as exc:
            if self._error is None and self._h2_preface():
                # llhttp stops at the HTTP/2 preface; say what it means.
                raise RemoteProtocolError("HTTP/2 is not enabled on this server", 505) from None
            if self.read_state is _CLOSED and self._error is None:
                # Bytes after a request that closes the connection: answer
                # that request, ignore the rest (llhttp calls them an error).
                return
            raise self._error or RemoteProtocolError(_describe(exc)) from None
        state = self.read_state
        if state is _BODY and self._chunked:
            # Chunk-size lines, their extensions and the trailer section are
            # read without an event until each line ends, and llhttp keeps an
            # unfinished trailer line in memory: bytes that make no progress
            # (no body, no trailer field) are bounded like a header section.
            mark = self._body_size + self._trailer_size
            if mark == self._progress_mark and self._stream_id == first_id:
                self._framing_bytes += len(data)
                if self._framing_bytes > self._max_header_size:
                    raise RemoteProtocolError("chunked framing or trailers too large", 431)
            else:
                self._progress_mark = mark
                self._framing_bytes = 0
        elif state is _HEAD:
            # A header section dribbled over many reads: count every byte fed
            # since it began, so that one endless header line is bounded too.
            # (When it began after another message in this read, where is
            # unknown: until the next read only its finished lines count.)
            if self._stream_id != first_id or before is _BODY:
                self._head_bytes = 0
            elif before is _HEAD:
                self._head_bytes += len(data)
            else:
                self._head_bytes = len(data)
            if max(self._head_size, self._head_bytes) > self._max_header_size:
                raise RemoteProtocolError("request header section too large", 431)

    def _broken(self, delivered: int) -> None:
        """The input broke the protocol: stop reading, and settle what the server does.

        The events of the failed call never reach the server, so requests
        parsed in it (after ``delivered``) are forgotten.
        """
        self.read_state = _ERROR
        self._held = b""
        self.holding = False
        self._events = []
        self._offered = []
        self._offered_info = None
        waiting = self._waiting
        while waiting and waiting[-1].stream_id > delivered:
            waiting.pop()
        answering = self._answering
        if answering is None or (
            answering.stream_id == delivered and self.write_state is _W_RESPONSE
        ):
            self.after_error = AfterError.ANSWER
            self.write_state = _W_CLOSE
        elif answering.stream_id == delivered:
            self.after_error = AfterError.CLOSE
            self.write_state = _W_CLOSE
        else:
            self.after_error = AfterError.FINISH
            waiting.clear()
            self._keep_alive = False

    # ------------------------------------------------------------ switching protocols

    def _offer(self) -> bool:
        """Offer the Upgrade request llhttp stopped at to the server, if it can be.

        It can when it is the next request to answer.  Otherwise (responses
        are owed to earlier requests, and a 101 cannot overtake them), or
        when it names no protocol (CONNECT), it is declined at once.
        """
        protocol = self._upgrade_to
        if protocol is None or self.write_state is not _W_IDLE or len(self._waiting) != 1:
            return False
        events = self._events
        # The request's own events end the list: Request, and EndBody when
        # it has no body (a body is parsed only once the upgrade is declined).
        at = len(events) - 1 if type(events[-1]) is Request else len(events) - 2
        request = events[at]
        if not isinstance(request, Request):
            return False  # never: llhttp stops right after the request's head
        self._offered = events[at:]
        del events[at:]
        events.append(UpgradeRequested(request, protocol))
        self._offered_info = self._waiting.pop()
        return True

    def accept_upgrade(self) -> tuple[RequestInfo, bytes]:
        """The server serves the protocol asked for: HTTP/1.1 is over on this connection.

        Returns what answering the request needs (a refused WebSocket
        handshake is still an HTTP/1.1 response) and the bytes received
        after its head, which belong to the new protocol.
        """
        info = self._offered_info
        if self.read_state is not _UPGRADE or info is None:
            raise LocalProtocolError("no Upgrade request is waiting for a decision")
        data = self._after_upgrade
        self._after_upgrade = b""
        self._offered = []
        self._offered_info = None
        self.read_state = _SWITCHED
        self.write_state = WriteState.SWITCHED
        return info, data

    def _h2_preface(self) -> bool:
        """The connection began with the HTTP/2 preface, however it was cut into reads.

        llhttp stops on ``PRI * HTTP/2.0`` before any header; what it parsed
        of that first request line tells it apart from other bad input.
        """
        parser = self._parser
        return (
            self._stream_id == 0
            and parser.get_method() == b"PRI"
            and parser.get_http_version() == "2.0"
        )

    def decline_upgrade(self) -> list[H1Event]:
        """The server does not serve the protocol asked for: HTTP/1.1 goes on.

        Returns the request's own events (now an ordinary :class:`Request`)
        followed by those of the bytes after its head: its body, and the
        requests pipelined behind it.
        """
        info = self._offered_info
        if self.read_state is not _UPGRADE or info is None:
            raise LocalProtocolError("no Upgrade request is waiting for a decision")
        self._offered_info = None
        self._waiting.append(info)
        self._events = self._offered
        self._offered = []
        rest = self._resume()
        if rest:
            self._parse(rest, info.stream_id, info.stream_id - 1)
        events = self._events
        self._events = []
        return events

    def _resume(self) -> bytes:
        """Go on parsing HTTP/1.1 after a declined Upgrade; returns the bytes left to parse.

        llhttp stops right after an Upgrade request's head, before its body.
        The body (Content-Length or chunked) is parsed from the bytes that
        followed, through a fresh parser primed with a synthetic head of the
        same framing, so the app still receives it; requests after it are
        parsed as usual.
        """
        rest = self._after_upgrade
        self._after_upgrade = b""
        self._upgrade_to = None
        self.read_state = self._resume_state
        self._parser = httptools.HttpRequestParser(self)
        framing = self._upgrade_body
        self._upgrade_body = None
        if framing is not None:
            self._body_only = True
            if isinstance(framing, int):
                head = b"PUT / HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % framing
            else:
                head = b"PUT / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
            self._parser.feed_data(head)
        elif self.read_state is _CLOSED:
            return b""  # the request did not allow keep-alive: nothing after it is read
        return rest

    # ------------------------------------------------------------ llhttp callbacks

    def on_message_begin(self) -> None:
        if self._body_only:
            return
        self.read_state = _HEAD
        self._tail = b""
        self._url = b""
        self._headers = []
        self._head_size = 0
        self._body_size = 0
        self._trailers = None
        self._trailer_size = 0
        self._progress_mark = -1
        self._framing_bytes = 0
        self._authority = None
        self._expect = False
        self._upgrade = None
        self._upgrade_to = None
        self._content_length = 0
        self._chunked = False
        self._te = None

    def on_url(self, url: bytes) -> None:
        if self._body_only:
            return
        self._url += url
        self._head_size += len(url)
        if len(self._url) > self._max_request_line:
            self._fail(RemoteProtocolError("request target too long", 414))

    def on_header(self, name: bytes, value: bytes) -> None:
        # Called for every field of every request: the size bound is checked
        # per field (it bounds memory, and with it the number of fields); the
        # count of fields once the head is complete (on_headers_complete).
        if self.read_state is not _HEAD:
            self._trailer(name, value)
            return
        size = self._head_size = self._head_size + len(name) + len(value) + 4
        if size > self._max_header_size:
            self._fail(RemoteProtocolError("request header section too large", 431))
        name = name.lower()
        self._headers.append((name, value))
        if name in _SPECIAL_REQUEST_HEADERS:
            self._special_header(name, value)

    def _trailer(self, name: bytes, value: bytes) -> None:
        """A field after the body (chunked trailers), or one of _resume()'s synthetic head."""
        if self._body_only and self.read_state is not _BODY:
            return  # the synthetic head of _resume()
        # The trailer section has the header section's limits.
        if self._trailers is None:
            self._trailers = []
        self._trailer_size += len(name) + len(value) + 4
        if self._trailer_size > self._max_header_size:
            self._fail(RemoteProtocolError("request trailer section too large", 431))
        if len(self._trailers) >= self._max_fields:
            self._fail(RemoteProtocolError("too many request trailers", 431))
        self._trailers.append((name.lower(), value))

    def _special_header(self, name: bytes, value: bytes) -> None:
        """The few request headers the connection itself acts on."""
        if name == b"host":
            if self._authority is not None:
                self._fail(RemoteProtocolError("duplicate Host header"))
            self._authority = value
        elif name == b"expect":
            if value.lower() == _EXPECT_CONTINUE:
                self._expect = True
        elif name == b"content-length":
            # llhttp has validated the digits; only the size limit is ours.
            self._content_length = int(value)
            if self._max_body is not None and self._content_length > self._max_body:
                self._fail(RemoteProtocolError("request body too large", 413))
        elif name == b"transfer-encoding":
            self._chunked = True
            self._te = value if self._te is None else self._te + b"," + value
        elif name == b"upgrade":
            self._upgrade = value.lower()

    def on_headers_complete(self) -> None:
        self._walk = _WALK_SIZE
        self._walk_line = b""
        self.read_state = _BODY
        if self._body_only:
            return
        if len(self._headers) > self._max_fields:
            self._fail(RemoteProtocolError("too many request headers", 431))
        te = self._te
        if te is not None and te.lower() != b"chunked":
            self._check_codings(te)
        parser = self._parser
        self._stream_id += 1
        url = self._url
        target_authority: bytes | None = None
        if url.startswith(b"/"):
            path, _, query = url.partition(b"?")
        elif url == b"*":
            path, query = url, b""
        else:
            try:
                parsed = httptools.parse_url(url)
            except httptools.HttpParserInvalidURLError:
                self._fail(RemoteProtocolError("invalid request target"))
            path = parsed.path or b"/"
            query = parsed.query or b""
            if parsed.schema:
                target_authority = _target_authority(url)
        if path.find(b"#") >= 0:  # find: ``in`` on bytes first tries an int, and raises
            path = path.partition(b"#")[0]
        authority = self._authority
        version = parser.get_http_version()
        http11 = version == "1.1"
        if http11:
            if authority is None:
                self._fail(RemoteProtocolError("missing Host header"))
        elif version != "1.0":
            self._fail(RemoteProtocolError(f"HTTP/{version} is not supported", 505))
        elif te is not None:
            # RFC 9112 6.1: HTTP/1.0 has no chunked coding, so its framing is
            # faulty; whatever follows could be a smuggled request.
            self._fail(RemoteProtocolError("Transfer-Encoding in an HTTP/1.0 request"))
        if target_authority is not None and target_authority != authority:
            authority = target_authority
            self._replace_host(target_authority)
        if self._upgrade is not None and parser.should_upgrade():
            # llhttp stops after this head (see _offer).
            self._upgrade_to = self._upgrade
            if self._chunked:
                self._upgrade_body = "chunked"
            elif self._content_length:
                self._upgrade_body = self._content_length
        raw_method = parser.get_method()
        method = _METHODS.get(raw_method)
        if method is None:
            method = raw_method.decode("ascii")
        self._waiting.append(
            RequestInfo(
                self._stream_id,
                method == "HEAD",
                http11,
                bool(parser.should_keep_alive()),
            )
        )
        self._events.append(
            Request(
                self._stream_id,
                method,
                path,
                query,
                self._headers,
                version,
                self._expect,
                authority,
            )
        )

    def _replace_host(self, authority: bytes) -> None:
        """RFC 9112 3.2.2: with an absolute-form target, its authority is the host.

        The Host header is ignored in favour of the target's authority; the app
        sees that value as ``host``, so that an app (or a proxy behind it) never
        acts on one host while the request named another.
        """
        headers = self._headers
        for i, (name, _) in enumerate(headers):
            if name == b"host":
                headers[i] = (b"host", authority)
                return
        headers.insert(0, (b"host", authority))

    def _check_codings(self, te: bytes) -> None:
        """RFC 9112 6.1: a transfer coding the server cannot undo gets 501.

        llhttp, right after this callback, answers 400 for codings that do not
        end in exactly one chunked; those are left to it.  What it accepts
        (``gzip, chunked``) would reach the app still gzip-coded as if plain.
        """
        # RFC 9110 5.5 and 5.6.1: the whitespace around a field value and
        # around each list element is not part of it, and empty elements are
        # ignored, so ``chunked `` (llhttp passes trailing OWS on) is chunked.
        codings = [c for c in (c.strip(b" \t").lower() for c in te.split(b",")) if c]
        if codings == [b"chunked"]:
            return
        if codings and codings[-1] == b"chunked" and b"chunked" not in codings[:-1]:
            self._fail(
                RemoteProtocolError(
                    f"transfer coding {te.decode('latin-1')!r} not implemented", 501
                )
            )

    def on_body(self, body: bytes) -> None:
        self._body_size += len(body)
        if self._max_body is not None and self._body_size > self._max_body:
            self._fail(RemoteProtocolError("request body too large", 413))
        self._events.append(Body(self._stream_id, body))

    def on_message_complete(self) -> None:
        if self._body_only:
            self._body_only = False
            self.read_state = _IDLE
        elif self._upgrade_body is not None:
            # An Upgrade request with a body: llhttp ends the message at the
            # head; the body's end is reported once it is really parsed.
            self.read_state = _IDLE
            return
        elif self._parser.should_keep_alive():
            self.read_state = _IDLE
        else:
            self.read_state = _CLOSED
        self._ended = self._stream_id
        self._events.append(EndBody(self._stream_id, self._trailers))

    def _fail(self, error: RemoteProtocolError) -> None:
        # Raised inside an llhttp callback, the exception comes back wrapped
        # in HttpParserCallbackError; remembering it keeps the status.
        if self.read_state is _HEAD and self._url and error.request is None:
            error.request = self._partial_request()
        self._error = error
        raise error

    def _partial_request(self) -> Request | None:
        """The request line (and fields so far) of a head refused before it ended."""
        parser = self._parser
        try:
            method = parser.get_method().decode("ascii", "replace")
            version = parser.get_http_version()
        except httptools.HttpParserError:
            return None
        path, _, query = self._url.partition(b"?")
        return Request(self._stream_id + 1, method, path, query, self._headers, version)

    # ------------------------------------------------------------ writing

    @property
    def waiting(self) -> int:
        """Requests parsed and not yet being answered."""
        return len(self._waiting)

    def next_request(self) -> int | None:
        """Make the next waiting request the one being answered; returns its ``stream_id``.

        None while a response is in progress or the last one closes the
        connection, or when no request waits.
        """
        if self.write_state is not _W_IDLE or not self._waiting:
            return None
        info = self._answering = self._waiting.popleft()
        self.write_state = _W_RESPONSE
        return info.stream_id

    def release(self) -> None:
        """The connection is over: drop the parser, whose callbacks are this object's methods.

        Kept, parser and codec would be a reference cycle, freed only by the
        cyclic garbage collector; nothing is parsed after this.
        """
        self._parser = httptools.HttpRequestParser(_INERT)

    def close_when_done(self) -> None:
        """Drain: no response head from now on promises keep-alive (rule 3)."""
        self._keep_alive = False

    def send_response(
        self,
        status: int,
        headers: Headers,
        default_headers: bytes,
        body: bytes,
        end: bool,
        trailers: bool = False,
    ) -> list[bytes]:
        """The head of the response being answered, with its first body chunk: buffers to write.

        ``end``: the body is complete (no trailers follow).  ``trailers``: the
        app will send trailers, which only a chunked HTTP/1.1 body can carry.
        Raises :class:`LocalProtocolError` for a head HTTP forbids; then
        nothing changed and an error response can still take its place.
        """
        info = self._answering
        if info is None or self.write_state is not _W_RESPONSE:
            raise LocalProtocolError("no response can start now")
        if not self._keep_alive:
            info.keep_alive = False
        parts, response = self.start_response(
            info, status, headers, default_headers, body, end, trailers and info.http11
        )
        if end:
            self._ended_response(info, response)
        else:
            self._response = response
            self.write_state = _W_BODY
        return parts

    def send_data(self, data: bytes, end: bool) -> list[bytes]:
        """A later body chunk (``end``: the last, and no trailers follow): buffers to write."""
        response = self._response
        if response is None or self._answering is None:
            raise LocalProtocolError("no response body is being sent")
        if not end:
            return response.data(data)
        parts = response.end(data)
        self._ended_response(self._answering, response)
        return parts

    def send_trailers(self, trailers: Headers) -> list[bytes]:
        """Trailers, which end the body (dropped unless it is chunked): buffers to write."""
        response = self._response
        if response is None or self._answering is None:
            raise LocalProtocolError("no response body is being sent")
        parts = response.end(b"", trailers)
        self._ended_response(self._answering, response)
        return parts

    @property
    def raw_body(self) -> bool:
        """The body being sent goes out unframed, so file bytes may be sent as they are."""
        return self._response is not None and not self._response.chunked

    def send_raw(self, nbytes: int) -> None:
        """Count ``nbytes`` of body written around the framing (zero-copy file sends)."""
        if self._response is None:
            raise LocalProtocolError("no response body is being sent")
        self._response.account(nbytes)

    def send_informational(self, status: int, headers: Headers) -> bytes:
        """A 1xx interim response (100 Continue, 103 Early Hints), or b"" when not allowed now."""
        info = self._answering
        if info is None or self.write_state is not _W_RESPONSE or not info.http11:
            return b""
        if status == 100:
            return CONTINUE_RESPONSE
        return self.informational(status, headers)

    def _ended_response(self, info: RequestInfo, response: H1Response) -> None:
        """The response is complete: may the connection go on (rule 2)?"""
        self._answering = None
        self._response = None
        if (
            response.keep_alive
            and self._ended >= info.stream_id
            and (self._keep_alive or self._waiting)
        ):
            self.write_state = _W_IDLE
        else:
            self.write_state = _W_CLOSE

    # ------------------------------------------------------------ serialising

    @staticmethod
    def start_response(
        info: RequestInfo,
        status: int,
        headers: Headers,
        default_headers: bytes,
        body: bytes,
        end: bool,
        trailers: bool = False,
    ) -> tuple[list[bytes], H1Response]:
        """Serialise a response head plus its first body chunk: the buffers to write.

        ``default_headers`` is a ready block of ``name: value\\r\\n`` lines
        (Date, Server, Alt-Svc) that the server layer caches.  When the whole
        body is known at once (``end``) and the app set no Content-Length, one
        is added instead of chunked framing, so most responses go out in one
        write with one length.
        """
        keep_alive = info.keep_alive
        content_length: int | None = None
        close_sent = False
        parts = [_STATUS_LINES.get(status) or status_line(status), default_headers]
        app_lines = len(headers)
        for name, value in headers:
            kind = _NAME_KIND.get(name)
            if kind is None:
                kind = _classify_name(name)
            if kind:
                if kind == _CONTENT_LENGTH:
                    if not value.isdigit():
                        raise LocalProtocolError(f"invalid Content-Length {value!r}")
                    content_length = int(value)
                elif kind == _TRANSFER_ENCODING:
                    # Framing is the server's job: chunked is applied below.
                    app_lines -= 1
                    continue
                elif kind == _ALT_SVC:
                    # The app's own Alt-Svc replaces the server's (one header).
                    if default_headers.find(b"alt-svc:") >= 0:
                        default_headers = without_alt_svc(default_headers)
                        parts[1] = default_headers
                elif value.lower().find(b"close") >= 0:
                    keep_alive = False
                    close_sent = True
            parts += (name, b": ", value, b"\r\n")
        framing_start = len(parts)
        chunked = False
        if status in _HEAD_ONLY_STATUSES or status < 200:
            no_body = True
            content_length = None
        else:
            no_body = info.head
            if content_length is None:
                if end and not trailers:
                    content_length = len(body)
                    parts.append(b"content-length: %d\r\n" % content_length)
                elif info.http11:
                    chunked = not no_body
                    if chunked:
                        parts.append(b"transfer-encoding: chunked\r\n")
                else:
                    # HTTP/1.0 without a known length: the end of the body is
                    # the end of the connection.
                    keep_alive = False
        if not keep_alive:
            # Said whenever the client could otherwise expect a persistent
            # connection (always on HTTP/1.1: RFC 9112 section 9.6), once.
            if (info.keep_alive or info.http11) and not close_sent:
                parts.append(b"connection: close\r\n")
        elif not info.http11:
            parts.append(b"connection: keep-alive\r\n")
        parts.append(b"\r\n")
        head = b"".join(parts)
        # Three scans of the whole head instead of three per value: every line
        # written here (status, defaults, app fields, framing, blank) holds
        # exactly one CR and one LF, so a CR or LF inside a field value shows
        # up as more of them than that.
        lines = 1 + default_headers.count(b"\n") + app_lines + (len(parts) - framing_start)
        if head.count(b"\n") != lines or head.count(b"\r") != lines or head.find(b"\0") >= 0:
            for _, value in headers:
                check_field_value(value)
            raise LocalProtocolError("invalid response header")
        if end and content_length == len(body) and not no_body:
            # The common response: the whole body at once, as long as it says.
            # Nothing is left to frame or to count.
            response = H1Response(False, False, 0, keep_alive)
            if len(body) < COPY_LIMIT:
                return [head + body], response
            return [head, body], response
        response = H1Response(chunked, no_body, None if no_body else content_length, keep_alive)
        tail = response.end(body) if end else response.data(body)
        if not tail:
            return [head], response
        if len(tail) == 1 and len(tail[0]) < COPY_LIMIT:
            return [head + tail[0]], response
        # A large body stays its own buffer rather than being copied.
        return [head, *tail], response

    @staticmethod
    def informational(status: int, headers: Headers) -> bytes:
        """A 1xx interim response (100 Continue, 103 Early Hints)."""
        lines = [status_line(status)]
        for name, value in headers:
            check_field_name(name)
            check_field_value(value)
            lines.append(b"%b: %b\r\n" % (name, value))
        lines.append(b"\r\n")
        return b"".join(lines)


def simple_response(status: int, body: bytes, default_headers: bytes = b"") -> bytes:
    """A complete error response that closes the connection (400, 413, 503...)."""
    return (
        b"%b%bcontent-type: text/plain; charset=utf-8\r\ncontent-length: %d\r\n"
        b"connection: close\r\n\r\n%b" % (status_line(status), default_headers, len(body), body)
    )


def _target_authority(url: bytes) -> bytes:
    """The authority of an absolute-form target (``http://host:port/...``), userinfo dropped."""
    rest = url.partition(b"://")[2]
    end = len(rest)
    for stop in (b"/", b"?", b"#"):
        found = rest.find(stop)
        if 0 <= found < end:
            end = found
    return rest[:end].rpartition(b"@")[2]


def _describe(exc: Exception) -> str:
    text = str(exc) or type(exc).__name__
    return text.splitlines()[0][:200]
