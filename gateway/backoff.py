"""Jittered, capped exponential backoff: the only retry policy in the daemon."""

from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Final

CAP_JITTER: Final = 0.2  # at the cap, delays spread over [cap, 1.2 x cap]


@dataclass(frozen=True, slots=True)
class Backoff:
    """Delays of ``initial * factor**n`` seconds, capped at ``cap``, with jitter.

    ``reset_after_s``: how long a success (a broker connection) must have lasted for the next
    failure to start the sequence afresh; 0 resets after any success. A peer that fails the
    caller right after accepting it (a broker dropping the hub after CONNACK) then meets the
    capped delay, not the first one, on every attempt.
    """

    initial: float = 0.2
    factor: float = 2.0
    cap: float = 30.0
    reset_after_s: float = 0.0

    def delays(self) -> Iterator[float]:
        """Yield an endless sequence of delays: "full jitter" in [d/2, d] below the cap, then
        in [cap, (1 + CAP_JITTER) x cap], so attempts are never closer than ``cap`` apart."""
        ceiling = self.initial
        while ceiling < self.cap:
            yield random.uniform(ceiling / 2, ceiling)  # noqa: S311 - jitter, not a secret
            ceiling *= self.factor
        while True:
            yield random.uniform(self.cap, self.cap * (1 + CAP_JITTER))  # noqa: S311

    def resets(self, lasted_s: float) -> bool:
        """Return whether a success that lasted ``lasted_s`` seconds restarts the sequence."""
        return lasted_s >= self.reset_after_s
