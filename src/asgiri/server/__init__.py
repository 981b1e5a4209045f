"""The asyncio layer: transports, TLS, listeners, signals and graceful drain.

This is the only layer that imports asyncio.  ``from asgiri.server import
Server, HttpProtocolVersion`` is the public entry point.
"""

from ..config import HttpProtocolVersion, LifespanPolicy
from .server import Server

__all__ = ["HttpProtocolVersion", "LifespanPolicy", "Server"]
