"""asgiri: an ASGI 3.0 server for HTTP/1.1, HTTP/2, HTTP/3 and WebSocket."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("asgiri")
except PackageNotFoundError:  # running from a source tree
    __version__ = "0.0.0"

__all__ = ["__version__"]
