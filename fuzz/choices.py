"""Typed choices drawn from a fuzz input, for the structured generators.

A thin layer over atheris' ``FuzzedDataProvider``: the same input always
makes the same choices, so a structured input replays exactly, and the
fuzzer's mutations of the bytes become changes of the choices.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TypeVar

import atheris

T = TypeVar("T")


class Choices:
    def __init__(self, data: bytes) -> None:
        self._fdp = atheris.FuzzedDataProvider(data)

    def left(self) -> int:
        """Bytes of the input not used yet."""
        return int(self._fdp.remaining_bytes())

    def number(self, low: int, high: int) -> int:
        """An integer in ``low..high`` (``low`` once the input is used up)."""
        return int(self._fdp.ConsumeIntInRange(low, high))

    def flag(self) -> bool:
        return bool(self._fdp.ConsumeBool())

    def rarely(self, odds: int) -> bool:
        """True about once in ``odds`` choices."""
        return self.number(0, odds - 1) == 0

    def pick(self, items: Sequence[T]) -> T:
        return items[self.number(0, len(items) - 1)]

    def data(self, size: int) -> bytes:
        """``size`` bytes of the input (fewer once it runs out)."""
        return bytes(self._fdp.ConsumeBytes(size))

    def some(self, most: int) -> bytes:
        """Up to ``most`` bytes of the input, as many as the input chooses."""
        return self.data(self.number(0, most))

    def text(self, most: int) -> str:
        return str(self._fdp.ConsumeUnicodeNoSurrogates(self.number(0, most)))
