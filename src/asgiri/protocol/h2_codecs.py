"""Picking the HTTP/2 codec (``--h2-codec``): libnghttp2 through ngh2, or the h2 library.

Both implement :class:`~asgiri.protocol.h2_common.H2Codec`; this module is
the one that knows them both.  Each is imported only when it serves: the h2
library costs 1.4 MiB of memory and 29 ms per process that nghttp2 spares.
"""

from __future__ import annotations

import functools
import importlib
from collections.abc import Callable
from typing import Final

from .h2_common import H2Codec, H2Limits

__all__ = ["CODECS", "codec_available", "codec_factory", "resolve_codec"]

#: The codecs, by the name ``--h2-codec`` gives them, with the package each needs.
CODECS: Final = {"nghttp2": "ngh2", "h2": "h2"}


def codec_available(name: str) -> bool:
    """Whether the package codec ``name`` needs imports here."""
    try:
        importlib.import_module(CODECS[name])
    except ImportError:
        return False
    return True


def resolve_codec(name: str) -> str:
    """``auto`` is nghttp2 when the ngh2 package imports (it has no wheel for
    PyPy, for one), else h2; any other name stands for itself."""
    if name == "auto":
        return "nghttp2" if codec_available("nghttp2") else "h2"
    return name


@functools.cache
def codec_factory(name: str) -> Callable[[H2Limits], H2Codec]:
    """The connection class of codec ``name`` (``--h2-codec``), looked up once."""
    if resolve_codec(name) == "nghttp2":
        from .h2_nghttp2 import H2Connection as NgConnection

        return NgConnection
    from .h2 import H2Connection

    return H2Connection
