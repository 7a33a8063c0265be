"""Named event counters shown on the retained health topic."""

from __future__ import annotations

from collections import Counter


class Counters:
    """Monotonic counters keyed by a dotted name, e.g. ``forwarded.health`` or ``mdns.errors``."""

    __slots__ = ("_values",)

    def __init__(self) -> None:
        self._values: Counter[str] = Counter()

    def inc(self, name: str, amount: int = 1) -> None:
        """Add ``amount`` to counter ``name``."""
        self._values[name] += amount

    def get(self, name: str) -> int:
        """Return the current value of counter ``name`` (0 if never counted)."""
        return self._values[name]

    def snapshot(self) -> dict[str, int]:
        """Return a copy of every counter, sorted by name."""
        return dict(sorted(self._values.items()))
