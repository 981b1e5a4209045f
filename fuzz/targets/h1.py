"""HTTP/1.1: ``H1Connection`` fed raw bytes (request heads, chunked bodies, trailers,
pipelining, upgrades).

Input: one options byte, one byte choosing how the rest is cut into reads,
then the bytes a client sends.  Raw bytes rather than a structured generator:
HTTP/1.1 is text, the corpus recorded from the test suite covers its framings,
and libFuzzer's dictionary (``fuzz/dicts/h1.dict``) and comparison tracing
supply the tokens; a generator would only produce what llhttp already accepts.

Options: bit 0 small limits (so that every limit is reachable with short
inputs), bits 1-2 ``max_requests`` (none, 1, 2, 4), bit 3 decline upgrades
(HTTP/1.1 goes on, as when the server does not switch) instead of handing the
bytes over.

Invariants:

* the only exception is ``RemoteProtocolError``, with a status among
  400/413/414/431/501/505 (408 is the server's timer, not the parser's);
* after it, ``receive_data`` produces no event (it may raise again);
* events are well formed: requests numbered 1, 2, 3..., body and end only
  for the request being read, one end per request, headers and trailers
  within ``max_fields``, bodies within ``max_body`` and their Content-Length;
* one call yields at most ``max_requests`` requests, and held bytes always
  make progress;
* bytes taken without an event stay within the header limits plus one read,
  and what the connection holds on to stays within its limits plus one read;
* the same bytes in one read give the same requests, bodies, trailers and
  hand-over bytes (an error may come earlier when cut: events of the failing
  read are dropped with the connection, and a head that begins after
  another message in the same read is only counted from the next read).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from asgiri.protocol.errors import RemoteProtocolError
from asgiri.protocol.events import Body, EndBody, Request
from asgiri.protocol.h1 import H1Connection

from ..invariants import check, fail, is_extension, reads, retained_bytes, sampled

INSTRUMENT = ("asgiri.protocol",)
MAX_LEN = 8192

#: What ``H1Connection`` may answer with (RemoteProtocolError.status).
STATUSES = frozenset({400, 413, 414, 431, 501, 505})
#: The answers to input over a size limit.
LIMIT_STATUSES = frozenset({413, 414, 431})

DEFAULT_LIMITS: dict[str, Any] = {
    "max_header_size": 16384,
    "max_request_line": 8190,
    "max_fields": 100,
    "max_body": None,
}
SMALL_LIMITS: dict[str, Any] = {
    "max_header_size": 200,
    "max_request_line": 40,
    "max_fields": 4,
    "max_body": 32,
}
_MAX_REQUESTS = (None, 1, 2, 4)
#: A valid request, fed after an error to see that nothing more is parsed.
PROBE = b"GET /probe HTTP/1.1\r\nHost: probe\r\n\r\n"


def connection(options: int) -> tuple[H1Connection, dict[str, Any]]:
    limits = dict(SMALL_LIMITS if options & 1 else DEFAULT_LIMITS)
    limits["max_requests"] = _MAX_REQUESTS[(options >> 1) & 3]
    return H1Connection(**limits), limits


@dataclass
class Outcome:
    """What one run made of the input, in comparable terms."""

    #: ("request", ...), ("body", stream, bytes joined), ("end", stream, trailers).
    events: list[tuple[Any, ...]] = field(default_factory=list)
    status: int | None = None
    upgraded: bool = False
    #: Bytes handed to the protocol switched to.
    handed_over: bytes = b""
    #: The input ended inside a request head, body or trailers.
    unfinished: bool = False


class Run:
    """One connection fed a list of reads, checking each call."""

    def __init__(self, options: int) -> None:
        self.conn, self.limits = connection(options)
        self.decline = bool(options & 8)
        self.max_requests: int | None = self.limits["max_requests"]
        self.outcome = Outcome()
        self.last_id = 0
        #: The request being read (None between requests).
        self.reading: int | None = None
        self.body_size = 0
        self.declared: int | None = None
        #: Bytes fed inside a message since a call last produced an event.
        self.quiet = 0

    def feed(self, chunks: list[bytes]) -> Outcome:
        out = self.outcome
        for index, data in enumerate(chunks):
            if out.upgraded:
                out.handed_over += data
                continue
            try:
                self._call(data)
            except RemoteProtocolError as exc:
                check(exc.status in STATUSES, f"RemoteProtocolError status {exc.status}: {exc}")
                out.status = exc.status
                self._dead([*chunks[index + 1 :], PROBE])
                return out
            if sampled(index, len(chunks)):
                self._bounded(max(len(c) for c in chunks[: index + 1]))
        out.unfinished = bool(self.conn.in_head or self.reading is not None) and not out.upgraded
        return out

    def _call(self, data: bytes) -> None:
        conn = self.conn
        events = conn.receive_data(data)
        self._check_batch(events)
        # Only bytes inside a message count: empty lines between requests and
        # bytes after a closing request are dropped, not kept.
        inside = conn.in_head or self.reading is not None
        self.quiet = self.quiet + len(data) if inside and not events else 0
        # Bytes held under max_requests are parsed by empty calls, as the
        # server does once it answered the requests before them.
        rounds = 0
        while conn.holding and not conn.upgraded:
            rounds += 1
            check(rounds <= len(data) + 2, "held bytes make no progress")
            events = conn.receive_data(b"")
            check(events or not conn.holding, "a call on held bytes produced nothing")
            self._check_batch(events)
            if events:
                self.quiet = 0
        while conn.upgraded:
            if not self.decline:
                self.outcome.upgraded = True
                self.outcome.handed_over = conn.trailing_data
                return
            events = conn.decline_upgrade()
            self._check_batch(events)
            while conn.holding and not conn.upgraded:
                events = conn.receive_data(b"")
                self._check_batch(events)

    def _check_batch(self, events: list[Any]) -> None:
        limits = self.limits
        requests = 0
        for event in events:
            kind = type(event)
            if kind is Request:
                requests += 1
                self._request(event)
            elif kind is Body:
                check(event.stream_id == self.reading, f"body for {event.stream_id}, not read")
                check(event.data, "empty body event")
                self.body_size += len(event.data)
                if limits["max_body"] is not None:
                    check(self.body_size <= limits["max_body"], "body over max_body delivered")
                if self.declared is not None:
                    check(self.body_size <= self.declared, "body longer than its Content-Length")
                self._add_body(event.stream_id, event.data)
            elif kind is EndBody:
                check(event.stream_id == self.reading, f"end of {event.stream_id}, not read")
                if self.declared is not None and self.declared != self.body_size:
                    fail(f"body of {self.body_size} bytes ended, Content-Length {self.declared}")
                trailers = event.trailers
                if trailers is not None:
                    check(len(trailers) <= limits["max_fields"], "trailers over max_fields")
                    check(all(n == n.lower() for n, _ in trailers), "trailer name not lowered")
                self.outcome.events.append(("end", event.stream_id, trailers))
                self.reading = None
            else:
                fail(f"unexpected event {event!r}")
        if self.max_requests is not None:
            check(requests <= self.max_requests, f"{requests} requests in one call")

    def _request(self, request: Request) -> None:
        limits = self.limits
        check(self.reading is None, f"request {request.stream_id} before the end of the last")
        check(request.stream_id == self.last_id + 1, f"request numbered {request.stream_id}")
        self.last_id = request.stream_id
        self.reading = request.stream_id
        self.body_size = 0
        check(request.http_version in ("1.0", "1.1"), f"version {request.http_version}")
        check(request.method and request.method.isascii(), f"method {request.method!r}")
        check(len(request.headers) <= limits["max_fields"] + 1, "headers over max_fields")
        size = sum(len(n) + len(v) + 4 for n, v in request.headers)
        allowed = limits["max_header_size"] + limits["max_request_line"]
        check(size <= allowed, f"a head of {size} bytes accepted")
        check(all(n == n.lower() for n, _ in request.headers), "header name not lower-cased")
        lengths = [v for n, v in request.headers if n == b"content-length"]
        chunked = any(n == b"transfer-encoding" for n, _ in request.headers)
        self.declared = int(lengths[0]) if lengths and not chunked else None
        if self.declared is not None and limits["max_body"] is not None:
            check(self.declared <= limits["max_body"], "Content-Length over max_body accepted")
        # The server layer asks for this once per request it answers.
        info = self.conn.request_info(request)
        check(info.stream_id == request.stream_id, "request info of another request")
        self.outcome.events.append(
            (
                "request",
                request.stream_id,
                request.method,
                request.raw_path,
                request.query_string,
                tuple(request.headers),
                request.http_version,
                request.expect_continue,
                request.authority,
            )
        )

    def _add_body(self, stream_id: int, data: bytes) -> None:
        events = self.outcome.events
        if events and events[-1][0] == "body" and events[-1][1] == stream_id:
            events[-1] = ("body", stream_id, events[-1][2] + data)
        else:
            events.append(("body", stream_id, data))

    def _bounded(self, largest_read: int) -> None:
        """Nothing grows past the limits by more than what one read brings."""
        limits = self.limits
        allowance = 2 * limits["max_header_size"] + limits["max_request_line"] + 64
        check(
            self.quiet <= allowance + largest_read,
            f"{self.quiet} bytes taken without an event (limit {allowance} + one read)",
        )
        held = retained_bytes(self.conn) - len(self.conn.trailing_data)
        check(
            held <= allowance + 2 * largest_read,
            f"the connection holds {held} bytes (limit {allowance} + one read)",
        )

    def _dead(self, more: list[bytes]) -> None:
        """After a RemoteProtocolError the connection parses nothing more."""
        for data in more:
            try:
                events = self.conn.receive_data(data)
            except RemoteProtocolError:
                continue
            check(not events, f"events after a RemoteProtocolError: {events!r}")


def one_input(data: bytes) -> None:
    if len(data) < 2:
        return
    options, pattern, payload = data[0], data[1], data[2:]
    split = Run(options).feed(reads(payload, pattern))
    if pattern == 0:
        return
    whole = Run(options).feed([payload])
    compare(split, whole)


def compare(split: Outcome, whole: Outcome) -> None:
    """The same bytes in one read and cut into many: the same outcome."""
    if split.status is None and whole.status is None:
        check(split.events == whole.events, "cut into reads, the events differ from one read")
        check(split.upgraded == whole.upgraded, "cut into reads, the upgrade differs")
        check(split.handed_over == whole.handed_over, "cut into reads, the hand-over differs")
        return
    if split.status is not None and whole.status is not None:
        # Size limits are checked as bytes arrive, syntax where llhttp stops:
        # input with both faults may get either answer, depending on the cuts.
        check(
            split.status == whole.status or {split.status, whole.status} & LIMIT_STATUSES,
            f"cut into reads the answer is {split.status}, in one read {whole.status}",
        )
        return
    # Only one failed.  Bytes that make no progress (an unfinished head, chunk
    # framing, trailer lines) are counted across reads and refused with 431;
    # within one read llhttp sees a line whole and holds none of it, so cut
    # input may be refused where one read is not.  Everything else must agree.
    failed, other = (split, whole) if split.status is not None else (whole, split)
    check(
        failed.status == 431 and (failed is split or other.unfinished),
        f"only {'cut' if failed is split else 'one-read'} input fails ({failed.status})",
    )
    check(_prefix(failed.events, other.events), "events before the error differ")


def _prefix(shorter: list[tuple[Any, ...]], longer: list[tuple[Any, ...]]) -> bool:
    """``shorter`` begins ``longer``; its last body may be cut short."""
    if is_extension(shorter, longer):
        return True
    if not shorter or shorter[-1][0] != "body" or len(shorter) > len(longer):
        return False
    last, counterpart = shorter[-1], longer[len(shorter) - 1]
    return (
        shorter[:-1] == longer[: len(shorter) - 1]
        and counterpart[:2] == last[:2]
        and counterpart[2].startswith(last[2])
    )
