"""Apps that break the ASGI contract in every way a real app can (raising before or after
the start, bad headers, wrong lengths, sending after a disconnect), for the app-error tests.
"""

from __future__ import annotations

import asyncio
import queue
from collections.abc import Callable
from typing import Any

events: queue.Queue[Any] = queue.Queue()


async def start(send: Any, status: Any = 200, headers: Any = None) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [(b"content-type", b"text/plain")] if headers is None else headers,
        }
    )


async def body(send: Any, data: bytes, more: bool = False) -> None:
    await send({"type": "http.response.body", "body": data, "more_body": more})


async def raise_before_start(send: Any) -> None:
    raise RuntimeError("boom before start")


async def raise_after_start(send: Any) -> None:
    await start(send)
    await body(send, b"first", more=True)
    await asyncio.sleep(0.01)
    await body(send, b"second", more=True)
    raise RuntimeError("boom mid-stream")


async def raise_right_after_start(send: Any) -> None:
    await start(send)
    raise RuntimeError("boom after start, before any body")


async def return_without_response(send: Any) -> None:
    return


async def return_after_partial_body(send: Any) -> None:
    await start(send)
    await body(send, b"partial", more=True)


async def return_after_start_204(send: Any) -> None:
    await start(send, 204, [])


async def unknown_type(send: Any) -> None:
    await send({"type": "http.response.bogus", "status": 200})


async def missing_type(send: Any) -> None:
    await send({"status": 200})


async def str_headers(send: Any) -> None:
    await start(send, 200, [("content-type", "text/plain")])
    await body(send, b"never")


async def status_not_int(send: Any) -> None:
    await start(send, "200")
    await body(send, b"never")


async def status_out_of_range(send: Any) -> None:
    await start(send, 99)
    await body(send, b"never")


async def body_before_start(send: Any) -> None:
    await body(send, b"too early")


async def body_after_final(send: Any) -> None:
    await start(send)
    await body(send, b"complete")
    await body(send, b"extra")


async def double_start(send: Any) -> None:
    await start(send)
    await start(send, 201)
    await body(send, b"never")


async def crlf_header(send: Any) -> None:
    await start(send, 200, [(b"x-good", b"1"), (b"x-evil", b"ok\r\nx-injected: yes")])
    await body(send, b"never")


async def crlf_header_flushed(send: Any) -> None:
    await start(send, 200, [(b"x-evil", b"ok\r\nx-injected: yes")])
    await asyncio.sleep(0.01)  # the server tries to write the head meanwhile
    await body(send, b"never")


async def bad_header_name(send: Any) -> None:
    await start(send, 200, [(b"x bad:name", b"1")])
    await body(send, b"never")


async def length_long(send: Any) -> None:
    await start(send, 200, [(b"content-length", b"10")])
    await body(send, b"x" * 20)


async def length_short(send: Any) -> None:
    await start(send, 200, [(b"content-length", b"10")])
    await body(send, b"y" * 5)


async def length_long_streamed(send: Any) -> None:
    await start(send, 200, [(b"content-length", b"10")])
    await body(send, b"a" * 6, more=True)
    await asyncio.sleep(0.01)
    await body(send, b"b" * 14, more=True)
    await body(send, b"")


async def length_short_streamed(send: Any) -> None:
    await start(send, 200, [(b"content-length", b"10")])
    await body(send, b"c" * 5, more=True)
    await asyncio.sleep(0.01)
    await body(send, b"")


async def bad_trailer(send: Any) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [(b"trailer", b"x-checksum")],
            "trailers": True,
        }
    )
    await body(send, b"hello")
    await send(
        {"type": "http.response.trailers", "headers": [(b"x-checksum", b"a\r\nx-injected: 1")]}
    )


async def raise_after_complete(send: Any) -> None:
    await start(send)
    await body(send, b"delivered")
    raise RuntimeError("boom after the response")


BEHAVIOURS: dict[str, Callable[[Any], Any]] = {
    f.__name__: f
    for f in (
        raise_before_start,
        raise_after_start,
        raise_right_after_start,
        return_without_response,
        return_after_partial_body,
        return_after_start_204,
        unknown_type,
        missing_type,
        str_headers,
        status_not_int,
        status_out_of_range,
        body_before_start,
        body_after_final,
        double_start,
        crlf_header,
        crlf_header_flushed,
        bad_header_name,
        length_long,
        length_short,
        length_long_streamed,
        length_short_streamed,
        raise_after_complete,
        bad_trailer,
    )
}


async def send_after_disconnect(receive: Any, send: Any) -> None:
    """Streams on after the client left; records what its sends did."""
    outcome = "no error"
    try:
        await start(send)
        await body(send, b"tick", more=True)
        events.put("streaming")
        while (await receive())["type"] != "http.disconnect":
            pass
        for _ in range(50):
            try:
                await body(send, b"tick" * 1024, more=True)
            except OSError as exc:  # ASGI 2.4: a server-specific OSError subclass
                outcome = f"OSError {type(exc).__name__}"
                return
        await body(send, b"")
    except BaseException as exc:
        outcome = f"unexpected {exc!r}"
        raise
    finally:
        events.put(("finally", outcome))


async def app(scope: Any, receive: Any, send: Any) -> None:
    if scope["type"] != "http":
        return
    name = scope["path"].strip("/")
    if name == "ok":
        await start(send)
        await body(send, b"ok")
    elif name == "send_after_disconnect":
        await send_after_disconnect(receive, send)
    else:
        await BEHAVIOURS[name](send)
