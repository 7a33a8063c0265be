"""Jittered, capped exponential backoff: the only retry policy in the daemon."""

from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Backoff:
    """Delays of ``initial * factor**n`` seconds, capped at ``cap``, with full jitter."""

    initial: float = 0.2
    factor: float = 2.0
    cap: float = 30.0

    def delays(self) -> Iterator[float]:
        """Yield an endless sequence of jittered delays (AWS "full jitter", never 0)."""
        ceiling = self.initial
        while True:
            yield random.uniform(ceiling / 2, ceiling)  # noqa: S311 - jitter, not a secret
            ceiling = min(self.cap, ceiling * self.factor)
