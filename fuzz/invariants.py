"""What every target checks, and the helpers the checks share.

Nothing here imports asgiri: the runner imports this module before it turns
coverage instrumentation on for the code under test.
"""

from __future__ import annotations

import random
from collections import deque
from collections.abc import Iterable, Iterator, Sequence
from typing import Any, NoReturn

__all__ = [
    "Violation",
    "check",
    "fail",
    "is_extension",
    "reads",
    "retained_bytes",
    "sampled",
]


class Violation(AssertionError):
    """An invariant broke: the input that led here is a finding."""


def fail(message: str) -> NoReturn:
    raise Violation(message)


def check(condition: object, message: str) -> None:
    """Raise :class:`Violation` with ``message`` unless ``condition`` holds."""
    if not condition:
        raise Violation(message)


def reads(data: bytes, pattern: int) -> list[bytes]:
    """``data`` cut into reads as a network might deliver it, chosen by ``pattern``.

    0 is one read; 1 is one byte at a time (for short inputs); anything else
    seeds a generator of random cut points, from a few cuts to many, so that
    the fuzzer keeps a split it found interesting while it mutates the data.
    """
    size = len(data)
    if pattern == 0 or size < 2:
        return [data]
    if pattern == 1 and size <= 2048:
        return [data[i : i + 1] for i in range(size)]
    rng = random.Random(pattern)
    count = min(size - 1, rng.choice((1, 2, 3, 5, 8, 16, 64, 256)))
    cuts = sorted(rng.sample(range(1, size), count))
    return [data[a:b] for a, b in zip([0, *cuts], [*cuts, size], strict=True)]


def sampled(index: int, count: int) -> bool:
    """Whether to measure after read ``index`` of ``count``: the 1st, 2nd, 4th, 8th... and last.

    Walking a connection's objects costs a fraction of a millisecond; after
    every one of hundreds of one-byte reads it would cost more than the run.
    """
    return index & (index + 1) == 0 or index == count - 1


def is_extension(shorter: Sequence[Any], longer: Sequence[Any]) -> bool:
    """Whether ``longer`` begins with every item of ``shorter``."""
    return len(shorter) <= len(longer) and list(longer[: len(shorter)]) == list(shorter)


#: Objects of these packages are walked into by :func:`retained_bytes`; others
#: (loggers, configuration, codecs) hold nothing that grows with the input.
WALKED = ("asgiri", "h2", "hpack", "hyperframe", "wsproto", "aioquic", "collections", "builtins")


def _parts(value: object) -> Iterator[object]:
    if isinstance(value, dict):
        yield from value.keys()
        yield from value.values()
    elif isinstance(value, list | tuple | set | frozenset | deque):
        # (Tables of numbers, such as HPACK's Huffman codes, hold no bytes.)
        if value and type(next(iter(value))) is not int:
            yield from value
    elif type(value).__module__.partition(".")[0] in WALKED:
        try:
            yield from vars(value).values()
        except TypeError:
            for cls in type(value).__mro__:
                for name in getattr(cls, "__slots__", ()):
                    if hasattr(value, name):
                        yield getattr(value, name)


def retained_bytes(root: object, depth: int = 3, exclude: Iterable[object] = ()) -> int:
    """Bytes and characters an object holds on to, ``depth`` attribute levels down.

    A generic measure (attribute names are not needed, so it survives
    refactoring): every bytes, bytearray and str reachable from ``root``
    through instance attributes, lists, tuples, sets, deques and dicts is
    counted once.  Only objects of the protocol libraries are walked into, and
    not those in ``exclude`` (what the caller itself put there).
    """
    seen: set[int] = {id(value) for value in exclude}
    total = 0
    level: list[object] = [root]
    for _ in range(depth + 1):
        following: list[object] = []
        for value in level:
            if id(value) in seen:
                continue
            seen.add(id(value))
            if isinstance(value, bytes | bytearray | str | memoryview):
                total += len(value)
            elif not (value is None or isinstance(value, int | float | type) or callable(value)):
                following.extend(_parts(value))
        level = following
    return total
