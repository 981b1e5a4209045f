"""HTTP/1.1 server connection, sans I/O, on top of httptools (llhttp).

Reading: :meth:`H1Connection.receive_data` feeds llhttp and returns
version-neutral events (:mod:`asgiri.protocol.events`).  llhttp already
refuses the request-smuggling vectors of RFC 9112 section 6.3 (Content-Length
with Transfer-Encoding, duplicate or malformed Content-Length, a
Transfer-Encoding that does not end in chunked, bare LF, obs-fold, invalid
header bytes), so what it accepted is not validated again here; this module
adds the size limits llhttp does not know about and maps failures to the
status to answer with (400, 413, 414, 431).

Writing: :meth:`H1Connection.start_response` turns an ASGI-level response
head into bytes and returns an :class:`H1Response` that frames the body
(Content-Length, chunked, or close-delimited for HTTP/1.0), enforces the
declared length, and knows whether the connection may be reused.

Requests are numbered from 1 as ``stream_id`` so that pipelined requests can
be answered strictly in order by the server layer.
"""

from __future__ import annotations

import http
import re
from typing import Final

import httptools

from .errors import LocalProtocolError, RemoteProtocolError
from .events import Body, EndBody, Event, Headers, Request

__all__ = ["H1Connection", "H1Response", "RequestInfo"]

_EXPECT_CONTINUE: Final = b"100-continue"
_HEAD_ONLY_STATUSES: Final = frozenset({204, 304})
_STATUS_LINES: dict[int, bytes] = {}
_TOKEN_RE: Final = re.compile(rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
#: Header names already seen to be valid tokens; apps send the same few names
#: over and over, so validation costs a set lookup after the first time.
_VALID_NAMES: set[bytes] = set()
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


def check_field_name(name: bytes) -> None:
    """A field name the app sent must be a token (RFC 9110 5.1); HTTP/2 checks it too."""
    if name not in _VALID_NAMES:
        if not _TOKEN_RE.fullmatch(name):
            raise LocalProtocolError(f"invalid header name {name!r}")
        if len(_VALID_NAMES) < _MAX_VALID_NAMES:
            _VALID_NAMES.add(name)


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


def _content_length(value: bytes) -> int:
    if not value.isdigit():
        raise LocalProtocolError(f"invalid Content-Length {value!r}")
    return int(value)


def check_field_value(value: bytes) -> None:
    """No CR, LF or NUL in a field value the app sent: they would split or end the head."""
    if b"\n" in value or b"\r" in value or b"\x00" in value:
        raise LocalProtocolError(f"invalid header value {value!r}")


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

    __slots__ = ("_chunked", "_no_body", "_remaining", "keep_alive", "trailers_allowed")

    def __init__(self, chunked: bool, no_body: bool, remaining: int | None, keep_alive: bool):
        self._chunked = chunked
        self._no_body = no_body
        #: Bytes still owed under Content-Length; None when not length-framed.
        self._remaining = remaining
        self.keep_alive = keep_alive
        self.trailers_allowed = chunked

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


class H1Connection:
    """One HTTP/1.x server connection: llhttp in, framed responses out.

    States of the reading side (``in_head``): between messages, or inside a
    request head (where the size limits on the header section apply), or in a
    body.  ``upgraded`` is set once the client switched protocols; after that
    the bytes in ``trailing_data`` belong to the new protocol and the parser is
    never fed again.
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
        self._events: list[Event] = []
        self._infos: dict[int, RequestInfo] = {}
        self._error: RemoteProtocolError | None = None
        self._stream_id = 0
        #: A request head has started but is not complete.
        #: A request head has started but is not complete.
        self.in_head = False
        self._in_body = False
        self._url = b""
        self._headers: Headers = []
        self._trailers: Headers | None = None
        self._authority: bytes | None = None
        self._expect = False
        self._upgrade: bytes | None = None
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
        #: and the bytes fed since then (see ``receive_data``).
        self._progress_mark = -1
        self._framing_bytes = 0
        #: The last complete request did not allow keep-alive: whatever the
        #: client sends after it is never processed (RFC 9112 section 9.6).
        self._input_closed = False
        self.upgraded = False
        #: Bytes after an Upgrade request's head, for the protocol switched to.
        self.trailing_data = b""
        #: The Upgrade header of the last request that asked to switch, lower-cased.
        self.upgrade_to: bytes | None = None

    # ------------------------------------------------------------ reading

    def receive_data(self, data: bytes) -> list[Event]:
        """Feed received bytes; returns the events they complete.

        Raises :class:`RemoteProtocolError` with the status to answer when the
        input is malformed or over a limit.  Events produced before the error
        are lost with the connection, which is closed after the error answer;
        any later call raises the same error.

        With ``max_requests``, one call parses at most that many request
        messages: the bytes after them are held (:attr:`holding`) and parsed
        by a later call, which may bring no new bytes (``receive_data(b"")``).
        One read full of small pipelined requests thus becomes a few requests
        at a time, at the pace the server answers them.
        """
        if self.upgraded:
            raise LocalProtocolError("connection was upgraded; HTTP/1 parsing is over")
        if self._error is not None:
            # A connection that failed parses nothing more: its answer is the
            # last thing it sends (some limits are checked after llhttp took
            # the bytes, and llhttp would go on from there).
            raise self._error
        if self._held:
            data = self._held + data
            self._held = b""
        if self._input_closed or not data:
            return []
        try:
            if self._max_requests is None:
                self._feed(data)
            else:
                self._feed_bounded(data, self._max_requests)
        except RemoteProtocolError as exc:
            self._error = exc
            raise
        events = self._events
        self._events = []
        return events

    @property
    def holding(self) -> bool:
        """Received bytes wait to be parsed by the next :meth:`receive_data` call."""
        return bool(self._held)

    def _feed_bounded(self, data: bytes, limit: int) -> None:
        """Feed ``data`` one message at a time; hold what follows the ``limit``-th request.

        llhttp cannot be paused in the middle of a buffer, so the bytes are
        cut where messages end before llhttp sees them: a head after its
        blank line, a Content-Length body after its length, a chunked body
        after its last chunk and trailers (:meth:`_chunked_end`).  The cuts
        only decide how much is parsed at once; llhttp parses and validates
        every byte, so a wrong cut (on malformed input) costs nothing but the
        bound.
        """
        first_id = self._stream_id
        pos = 0
        size = len(data)
        while pos < size:
            if not self._in_body:
                room = limit - (self._stream_id - first_id)
                if room <= 0:
                    self._held = data[pos:]
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
            if self.in_head:
                self._tail = (self._tail + data[max(0, pos - 3) : pos])[-3:]
            elif self.upgraded:
                self.trailing_data += data[pos:]
                return
            elif self._input_closed:
                return

    def _head_end(self, data: bytes, pos: int) -> int:
        """Just past the blank line ending the head that ``data[pos:]`` starts or continues."""
        if pos == 0 and self.in_head and self._tail:
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
        was_in_head = self.in_head
        was_in_body = self._in_body
        first_id = self._stream_id
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserUpgrade as exc:
            self.upgraded = True
            self.trailing_data = data[exc.args[0] :]
        except httptools.HttpParserCallbackError as exc:
            raise self._error or RemoteProtocolError(str(exc)) from None
        except httptools.HttpParserError as exc:
            if self._error is None and self._parser.get_method() == b"PRI":
                # llhttp stops at the HTTP/2 preface (however it was cut into
                # reads); say what it means.
                raise RemoteProtocolError("HTTP/2 is not enabled on this server", 505) from None
            if self._input_closed and self._error is None:
                # Bytes after a request that closes the connection: answer
                # that request, ignore the rest (llhttp calls them an error).
                self.in_head = False
                return
            raise self._error or RemoteProtocolError(_describe(exc)) from None
        if self._in_body and self._chunked:
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
        if self.in_head:
            # A header section dribbled over many reads: count every byte fed
            # since it began, so that one endless header line is bounded too.
            # (When it began after another message in this read, where is
            # unknown: until the next read only its finished lines count.)
            if self._stream_id != first_id or (was_in_body and not was_in_head):
                self._head_bytes = 0
            elif was_in_head:
                self._head_bytes += len(data)
            else:
                self._head_bytes = len(data)
            if max(self._head_size, self._head_bytes) > self._max_header_size:
                raise RemoteProtocolError("request header section too large", 431)

    def decline_upgrade(self) -> list[Event]:
        """The server will not switch protocols: go on parsing HTTP/1.1.

        llhttp stops right after an Upgrade request's head, before its body.
        The body (Content-Length or chunked) is parsed from the bytes that
        followed, through a fresh parser primed with a synthetic head of the
        same framing, so the app still receives it; requests after it are
        parsed as usual.
        """
        rest = self.trailing_data
        self.trailing_data = b""
        self.upgraded = False
        self.upgrade_to = None
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
        return self.receive_data(rest) if rest else []

    def on_message_begin(self) -> None:
        if self._body_only:
            return
        self.in_head = True
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
        self.upgrade_to = None
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
        if self._body_only and not self._in_body:
            return  # the synthetic head of decline_upgrade()
        if not self.in_head:
            # Chunked trailers arrive through the same callback after the body;
            # the trailer section has the header section's limits.
            if self._trailers is None:
                self._trailers = []
            self._trailer_size += len(name) + len(value) + 4
            if self._trailer_size > self._max_header_size:
                self._fail(RemoteProtocolError("request trailer section too large", 431))
            if len(self._trailers) >= self._max_fields:
                self._fail(RemoteProtocolError("too many request trailers", 431))
            self._trailers.append((name.lower(), value))
            return
        self._head_size += len(name) + len(value) + 4
        if self._head_size > self._max_header_size:
            self._fail(RemoteProtocolError("request header section too large", 431))
        headers = self._headers
        if len(headers) >= self._max_fields:
            self._fail(RemoteProtocolError("too many request headers", 431))
        name = name.lower()
        headers.append((name, value))
        if name in _SPECIAL_REQUEST_HEADERS:
            self._special_header(name, value)

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
        if self._body_only:
            self._in_body = True
            return
        self.in_head = False
        if self._te is not None and self._te.lower() != b"chunked":
            self._check_codings(self._te)
        parser = self._parser
        self._stream_id += 1
        url = self._url
        target_authority: bytes | None = None
        if url[:1] == b"/":
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
        if b"#" in path:
            path = path.partition(b"#")[0]
        authority = self._authority
        version = parser.get_http_version()
        if version != "1.1" and version != "1.0":
            self._fail(RemoteProtocolError(f"HTTP/{version} is not supported", 505))
        if version == "1.1" and authority is None:
            self._fail(RemoteProtocolError("missing Host header"))
        if target_authority is not None and target_authority != authority:
            authority = target_authority
            self._replace_host(target_authority)
        if version == "1.0" and self._te is not None:
            # RFC 9112 6.1: HTTP/1.0 has no chunked coding, so its framing is
            # faulty; whatever follows could be a smuggled request.
            self._fail(RemoteProtocolError("Transfer-Encoding in an HTTP/1.0 request"))
        if self._upgrade is not None and parser.should_upgrade():
            self.upgrade_to = self._upgrade
            if self._chunked:
                self._upgrade_body = "chunked"
            elif self._content_length:
                self._upgrade_body = self._content_length
        self._in_body = True
        raw_method = parser.get_method()
        method = _METHODS.get(raw_method)
        if method is None:
            method = raw_method.decode("ascii")
        self._infos[self._stream_id] = RequestInfo(
            self._stream_id,
            method == "HEAD",
            version == "1.1",
            bool(parser.should_keep_alive()),
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
        codings = [c.strip().lower() for c in te.split(b",")]
        if codings[-1] == b"chunked" and b"chunked" not in codings[:-1]:
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
        self._in_body = False
        if self._body_only:
            self._body_only = False
        elif self._upgrade_body is not None:
            # An Upgrade request with a body: llhttp ends the message at the
            # head; the body's end is reported once it is really parsed.
            return
        elif not self._parser.should_keep_alive():
            self._input_closed = True
        self._events.append(EndBody(self._stream_id, self._trailers))

    def _fail(self, error: RemoteProtocolError) -> None:
        # Raised inside an llhttp callback, the exception comes back wrapped
        # in HttpParserCallbackError; remembering it keeps the status.
        if self.in_head and self._url and error.request is None:
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

    @property
    def in_body(self) -> bool:
        """A request body is being received (its end has not been seen)."""
        return self._in_body

    def request_info(self, request: Request) -> RequestInfo:
        """What answering ``request`` needs (captured when its head was parsed)."""
        return self._infos.pop(request.stream_id)

    # ------------------------------------------------------------ writing

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
        extend = parts.extend
        app_lines = 0
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
                    continue
                elif kind == _ALT_SVC:
                    # The app's own Alt-Svc replaces the server's (one header).
                    if b"alt-svc:" in default_headers:
                        default_headers = without_alt_svc(default_headers)
                        parts[1] = default_headers
                elif b"close" in value.lower():
                    keep_alive = False
                    close_sent = True
            extend((name, b": ", value, b"\r\n"))
            app_lines += 1
        framing_start = len(parts)
        append = parts.append
        no_body = info.head or status in _HEAD_ONLY_STATUSES or status < 200
        chunked = False
        if status in _HEAD_ONLY_STATUSES or status < 200:
            content_length = None
        elif content_length is None:
            if end and not trailers:
                content_length = len(body)
                append(b"content-length: %d\r\n" % content_length)
            elif info.http11:
                chunked = not info.head
                if chunked:
                    append(b"transfer-encoding: chunked\r\n")
            else:
                # HTTP/1.0 without a known length: the end of the body is
                # the end of the connection.
                keep_alive = False
        if not keep_alive:
            # Said whenever the client could otherwise expect a persistent
            # connection (always on HTTP/1.1: RFC 9112 section 9.6), once.
            if (info.keep_alive or info.http11) and not close_sent:
                append(b"connection: close\r\n")
        elif not info.http11:
            append(b"connection: keep-alive\r\n")
        append(b"\r\n")
        head = b"".join(parts)
        # One scan of the whole head instead of three per value: a CR, LF or
        # NUL inside a header value shows up as more line breaks than the
        # lines written here (status, defaults, app headers, framing, blank).
        lines = 1 + default_headers.count(b"\n") + app_lines + (len(parts) - framing_start)
        if head.count(b"\n") != lines or head.count(b"\r") != lines or b"\0" in head:
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
