"""Online status of BLE devices by advertisement timeout, adapted to each device's interval.

A device is offline once it has been silent for ``max(floor_s, factor * median interval)``:
fast advertisers are declared gone after the configured floor, slow ones (a scale that wakes
every few minutes) only after several of their own intervals were missed.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import Final

DEFAULT_FACTOR: Final = 3.0
INTERVALS_KEPT: Final = 15
# BlueZ reports bursts of property changes for one advertisement; gaps shorter than this are
# not advertising intervals.
MIN_INTERVAL_S: Final = 0.05


@dataclass(slots=True)
class _Device:
    last: float
    online: bool = True
    intervals: deque[float] = field(default_factory=lambda: deque(maxlen=INTERVALS_KEPT))


class OnlineTracker:
    """Tracks when each device was last heard and how often it advertises; no I/O."""

    __slots__ = ("_devices", "_factor", "_floor")

    def __init__(self, floor_s: float, factor: float = DEFAULT_FACTOR) -> None:
        self._floor = floor_s
        self._factor = factor
        self._devices: dict[str, _Device] = {}

    def seen(self, key: str, now: float) -> bool:
        """Record an advertisement of ``key`` at monotonic ``now``; True if it came online."""
        device = self._devices.get(key)
        if device is None:
            self._devices[key] = _Device(now)
            return True
        gap = now - device.last
        if gap >= MIN_INTERVAL_S:
            device.intervals.append(gap)
            device.last = now
        if device.online:
            return False
        device.online = True
        return True

    def timeout(self, key: str) -> float:
        """Return how long ``key`` may stay silent before it counts as offline."""
        device = self._devices.get(key)
        if device is None or not device.intervals:
            return self._floor
        ordered = sorted(device.intervals)
        median = ordered[len(ordered) // 2]
        return max(self._floor, self._factor * median)

    def expire(self, now: float) -> list[str]:
        """Mark devices silent for longer than their timeout offline; return those that went."""
        gone = [
            key
            for key, device in self._devices.items()
            if device.online and now - device.last > self.timeout(key)
        ]
        for key in gone:
            self._devices[key].online = False
        return gone

    def is_online(self, key: str) -> bool:
        """Return whether ``key`` is currently online."""
        device = self._devices.get(key)
        return device is not None and device.online

    def forget(self, key: str) -> None:
        """Stop tracking ``key`` (unpaired)."""
        self._devices.pop(key, None)

    def next_check(self, now: float) -> float:
        """Return the seconds until the earliest online device could expire (floor if none)."""
        deadlines = [
            device.last + self.timeout(key) - now
            for key, device in self._devices.items()
            if device.online
        ]
        return max(0.0, min(deadlines, default=self._floor))
