"""Aggregates in place of raw readings, for categories whose consent is "coarse".

Per device and category, numeric fields are summarised over fixed windows of
``window_s`` seconds (aligned to the epoch of unix time): ``<field>_min``, ``<field>_mean``,
``<field>_max`` and ``count``. Non-numeric fields are not forwarded in this form. Pure: the
windows follow the readings' own times, and ``due(now)`` closes windows nobody reported into.

When a window ends is decided on the monotonic clock (``clock``): a window opened with ``r``
seconds of it left is due ``r`` monotonic seconds later, so a wall-clock jump (a Pi without a
real-time clock setting its time) neither closes windows early nor holds them for the size of
a backward jump.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from gateway.model import Observation, Value


@dataclass(slots=True)
class _Window:
    start: float
    deadline: float  # monotonic time the window ends
    count: int = 0
    stats: dict[str, list[float]] = field(default_factory=dict)  # name -> [min, sum, max]

    def add(self, fields: Iterable[tuple[str, Value]]) -> None:
        self.count += 1
        for name, value in fields:
            if isinstance(value, bool) or not isinstance(value, int | float):
                continue
            stat = self.stats.get(name)
            if stat is None:
                self.stats[name] = [float(value), float(value), float(value)]
            else:
                stat[0] = min(stat[0], value)
                stat[1] += value
                stat[2] = max(stat[2], value)

    def summary(self) -> dict[str, Value]:
        out: dict[str, Value] = {"count": self.count}
        for name, (low, total, high) in sorted(self.stats.items()):
            out[f"{name}_min"] = low
            out[f"{name}_mean"] = round(total / self.count, 6)
            out[f"{name}_max"] = high
        return out


class Aggregator:
    """Collects observations into windows and emits one summary per closed window."""

    def __init__(self, window_s: float, clock: Callable[[], float] = time.monotonic) -> None:
        if window_s <= 0:
            raise ValueError("window_s must be positive")
        self._window_s = window_s
        self._clock = clock
        self._open: dict[tuple[str, str], _Window] = {}

    def add(self, obs: Observation) -> list[Observation]:
        """Take ``obs`` into its window; return summaries of windows it closed (usually none)."""
        start = obs.ts - obs.ts % self._window_s
        key = (obs.device, obs.category)
        window = self._open.get(key)
        closed: list[Observation] = []
        if window is not None and window.start != start:
            closed.append(self._close(key, window))
            window = None
        if window is None:
            left = min(self._window_s, max(0.0, start + self._window_s - obs.ts))
            window = self._open[key] = _Window(start, self._clock() + left)
        window.add(obs.fields.items())
        return closed

    def due(self, now: float) -> list[Observation]:
        """Close and return every window that ended before ``now`` (on ``clock``'s scale)."""
        ended = [(k, w) for k, w in self._open.items() if w.deadline <= now]
        return [self._close(key, window) for key, window in ended]

    def drop(self, device: str | None = None) -> None:
        """Forget open windows (of ``device``, or all): their readings are no longer allowed."""
        for key in [k for k in self._open if device is None or k[0] == device]:
            del self._open[key]

    def _close(self, key: tuple[str, str], window: _Window) -> Observation:
        del self._open[key]
        return Observation(key[0], key[1], window.start + self._window_s, window.summary())
