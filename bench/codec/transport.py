"""The in-memory transport the codec drivers hand their connections.

It takes every write, counts the bytes and never pauses, so a driver measures
the server's own work per request or message and nothing of a socket's.
"""

from __future__ import annotations

import asyncio
from typing import Any


class CountingTransport(asyncio.Transport):
    """Keeps the byte count of what the server writes; never pauses."""

    def __init__(self) -> None:
        super().__init__()
        self.written = 0
        self.closing = False

    def write(self, data: Any) -> None:
        self.written += len(data)

    def writelines(self, chunks: Any) -> None:
        for chunk in chunks:
            self.write(chunk)

    def is_closing(self) -> bool:
        return self.closing

    def close(self) -> None:
        self.closing = True

    def abort(self) -> None:
        self.closing = True

    def get_write_buffer_size(self) -> int:
        return 0

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        if name == "peername":
            return ("127.0.0.1", 50000)
        if name == "sockname":
            return ("127.0.0.1", 8000)
        return default

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass
