"""``--pid FILE``: the serving process's id in a file, for init scripts and monitors."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator

from ..errors import StartupError

__all__ = ["pid_file"]


@contextlib.contextmanager
def pid_file(path: str | None) -> Iterator[None]:
    """Write this process's id to ``path`` for the duration of the block (no-op for None).

    The file is replaced whole (written beside it, then renamed), so a reader
    never sees a partial number; on the way out it is removed only while it
    still names this process, so a newer server's file is left alone.
    """
    if path is None:
        yield
        return
    pid = str(os.getpid())
    temporary = f"{path}.{pid}.tmp"
    try:
        with open(temporary, "w") as fh:
            fh.write(pid + "\n")
        os.replace(temporary, path)
    except OSError as exc:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        raise StartupError(f"cannot write --pid file {path!r}: {exc.strerror or exc}") from None
    try:
        yield
    finally:
        with contextlib.suppress(OSError):
            with open(path) as fh:
                mine = fh.read().strip() == pid
            if mine:
                os.unlink(path)
