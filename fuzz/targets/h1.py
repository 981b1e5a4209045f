"""HTTP/1.1: ``H1Connection`` fed raw bytes (request heads, chunked bodies, trailers,
pipelining, upgrades), and answering as a server does.

Input: one options byte, one byte choosing how the rest is cut into reads,
then the bytes a client sends.  Raw bytes rather than a structured generator:
HTTP/1.1 is text, the corpus recorded from the test suite covers its framings,
and libFuzzer's dictionary (``fuzz/dicts/h1.dict``) and comparison tracing
supply the tokens; a generator would only produce what llhttp already accepts.

The harness plays the server: each request is answered, in order, once its
body has ended (a response with a length, a chunked one with trailers, or a
1xx and a 204), which is what lets the next request be answered and an
Upgrade request be offered.  The bytes written for each response are checked
too, so both sides of the connection are driven: requests in, responses out.

Options: bit 0 small limits (so that every limit is reachable with short
inputs), bits 1-2 ``max_requests`` (none, 1, 2, 4), bit 3 accept an Upgrade
when it is offered (the bytes after it are handed over) instead of declining
it (HTTP/1.1 goes on, body included).

Invariants:

* the only exception is ``RemoteProtocolError``, with a status among
  400/413/414/431/501/505 (408 is the server's timer, not the parser's);
  after it the connection is in its ERROR state, says what the server is left
  to do, and produces no event for further input;
* events are well formed: requests numbered 1, 2, 3..., body and end only
  for the request being read, one end per request, headers and trailers
  within ``max_fields``, bodies within ``max_body`` and their Content-Length;
  an Upgrade is offered only for the next request to be answered, and
  requests are answered in order;
* one call yields at most ``max_requests`` requests, and held bytes always
  make progress;
* each response is written as sent: a ``HTTP/1.1`` status line, a 1xx head
  whole, no body and no framing fields on a 204, no body for HEAD, a
  Content-Length body exact, a chunked body with its trailers, and a body
  without either (an HTTP/1.0 client) only on a connection that closes;
* bytes taken without an event stay within the header limits plus one read,
  and what the connection holds on to stays within its limits plus one read;
* with upgrades declined, the same bytes in one read give the same requests,
  bodies and trailers (an error may come earlier when cut: events of the
  failing read are dropped with the connection; and bytes that make no
  progress are counted across reads, so cut input may be refused with 431
  where one read is not).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from asgiri.protocol.errors import RemoteProtocolError
from asgiri.protocol.events import Body, EndBody, Request
from asgiri.protocol.h1 import H1Connection, ReadState, UpgradeRequested, WriteState

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


_READING = (ReadState.HEAD, ReadState.BODY)


class Run:
    """One connection fed a list of reads, answering its requests, checking each call."""

    def __init__(self, options: int) -> None:
        self.conn, self.limits = connection(options)
        self.accept = bool(options & 8)
        self.max_requests: int | None = self.limits["max_requests"]
        self.outcome = Outcome()
        self.last_id = 0
        #: The request being read (None between requests).
        self.reading: int | None = None
        self.body_size = 0
        self.declared: int | None = None
        #: Requests whose body has ended, and the next one to answer.
        self.ended: set[int] = set()
        self.next_answer = 1
        #: Bytes fed inside a message since a call last produced an event.
        self.quiet = 0
        #: The method of each request not yet answered.
        self.methods: dict[int, str] = {}

    def feed(self, chunks: list[bytes]) -> Outcome:
        out = self.outcome
        conn = self.conn
        for index, data in enumerate(chunks):
            if out.upgraded:
                out.handed_over += data
                continue
            try:
                self._call(data)
            except RemoteProtocolError as exc:
                check(exc.status in STATUSES, f"RemoteProtocolError status {exc.status}: {exc}")
                check(conn.read_state is ReadState.ERROR, f"failed in state {conn.read_state}")
                check(conn.after_error is not None, "failed without saying what is left to do")
                out.status = exc.status
                self._dead([*chunks[index + 1 :], PROBE])
                return out
            if sampled(index, len(chunks)):
                self._bounded(max(len(c) for c in chunks[: index + 1]))
        out.unfinished = conn.read_state in _READING and not out.upgraded
        return out

    def _call(self, data: bytes) -> None:
        conn = self.conn
        events = conn.receive_data(data)
        self._batch(events)
        # Only bytes inside a message count: empty lines between requests and
        # bytes after a closing request are dropped, not kept.
        inside = conn.read_state in _READING
        self.quiet = self.quiet + len(data) if inside and not events else 0
        self._answer()
        # Bytes held under max_requests are parsed by empty calls, as the
        # server does once it answered the requests before them.
        rounds = 0
        while conn.holding and not self.outcome.upgraded:
            rounds += 1
            check(rounds <= len(data) + 2, "held bytes make no progress")
            events = conn.receive_data(b"")
            check(events or not conn.holding, "a call on held bytes produced nothing")
            self._batch(events)
            if events:
                self.quiet = 0
            self._answer()

    def _batch(self, events: list[Any]) -> None:
        limits = self.limits
        requests = 0
        for index, event in enumerate(events):
            kind = type(event)
            if kind is Request:
                requests += 1
                self._request(event)
            elif kind is UpgradeRequested:
                requests += 1
                check(index == len(events) - 1, "events after an Upgrade offered")
                self._upgrade(event)
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
                self.ended.add(event.stream_id)
                self.reading = None
            else:
                fail(f"unexpected event {event!r}")
        if self.max_requests is not None:
            check(requests <= self.max_requests, f"{requests} requests in one call")

    def _upgrade(self, offer: UpgradeRequested) -> None:
        conn = self.conn
        request = offer.request
        check(request.stream_id == self.next_answer, "an Upgrade offered out of turn")
        check(conn.write_state is WriteState.IDLE, f"an Upgrade offered in {conn.write_state}")
        upgrade = [v.lower() for n, v in request.headers if n == b"upgrade"]
        check(offer.protocol in upgrade, f"Upgrade {offer.protocol!r} offered for {upgrade}")
        if self.accept:
            info, rest = conn.accept_upgrade()
            check(info.stream_id == request.stream_id, "the Upgrade accepted is another request")
            self._request(request)
            self.outcome.upgraded = True
            self.outcome.handed_over = rest
            return
        # Declined: the request's own events come back, then what follows it.
        self._batch(conn.decline_upgrade())

    def _answer(self) -> None:
        """Answer each request in turn once its body has ended, as an app that reads it."""
        conn = self.conn
        while not self.outcome.upgraded and self.next_answer in self.ended:
            stream_id = conn.next_request()
            if stream_id is None:
                check(
                    conn.write_state is WriteState.CLOSE or not conn.waiting,
                    f"request {self.next_answer} cannot be answered in {conn.write_state}",
                )
                return
            check(stream_id == self.next_answer, f"request {stream_id} answered out of turn")
            kind = stream_id % 3
            early = b""
            if kind == 0:
                out = conn.send_response(
                    200, [(b"content-type", b"text/plain")], b"", b"hello", True
                )
            elif kind == 1:
                out = conn.send_response(200, [], b"", b"", False, trailers=True)
                out += conn.send_data(b"chunk", False)
                out += conn.send_trailers([(b"x-t", b"1")])
            else:
                early = conn.send_informational(103, [(b"link", b"</a>")])
                out = conn.send_response(204, [], b"", b"", True)
            check(
                conn.write_state in (WriteState.IDLE, WriteState.CLOSE),
                f"a response ended in {conn.write_state}",
            )
            self._response(kind, self.methods.pop(stream_id, ""), early, b"".join(out))
            self.next_answer += 1

    def _response(self, kind: int, method: str, early: bytes, out: bytes) -> None:
        """The bytes written for a response frame what the harness sent, and only that."""
        if early:
            check(early.startswith(b"HTTP/1.1 103 "), f"informational head {early[:40]!r}")
            check(early.endswith(b"\r\n\r\n") and early.count(b"\r\n\r\n") == 1, "bad 1xx")
        head, sep, body = out.partition(b"\r\n\r\n")
        check(sep, f"response head not ended: {out[:80]!r}")
        lines = head.split(b"\r\n")
        status = (200, 200, 204)[kind]
        check(lines[0].startswith(b"HTTP/1.1 %d " % status), f"status line {lines[0]!r}")
        names = [line.partition(b":")[0].lower() for line in lines[1:]]
        chunked = b"transfer-encoding" in names
        if kind == 2:
            check(not chunked and b"content-length" not in names, "framing fields on a 204")
            check(body == b"", f"a 204 with a body {body[:40]!r}")
        elif method == "HEAD":
            check(body == b"", f"a response to HEAD with a body {body[:40]!r}")
        elif kind == 0:
            check(not chunked and b"content-length" in names, f"response framing {names}")
            check(body == b"hello", f"body {body[:40]!r} for b'hello'")
        elif chunked:
            check(body == b"5\r\nchunk\r\n0\r\nx-t: 1\r\n\r\n", f"chunked body {body!r}")
        else:
            # No chunked coding (HTTP/1.0): the body ends with the connection.
            check(body == b"chunk", f"body {body[:40]!r} for b'chunk'")
            check(self.conn.write_state is WriteState.CLOSE, "a body without length kept alive")

    def _request(self, request: Request) -> None:
        limits = self.limits
        check(self.reading is None, f"request {request.stream_id} before the end of the last")
        check(request.stream_id == self.last_id + 1, f"request numbered {request.stream_id}")
        self.last_id = request.stream_id
        self.reading = request.stream_id
        self.methods[request.stream_id] = request.method
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
        held = retained_bytes(self.conn)
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
    if pattern == 0 or options & 8:
        # (Whether an Upgrade is offered depends on when the requests before
        # it were answered, so accepted upgrades are not compared.)
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
