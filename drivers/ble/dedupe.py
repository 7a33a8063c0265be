"""Duplicate suppression before decoding: one dict lookup and one comparison per advertisement.

BlueZ re-reports a device's cached service data with every RSSI change, and devices repeat each
message several times (BTHome recommends it; MiBeacon resends a frame counter), so most
advertisements a hub receives repeat one it has already decoded. Decoding costs 20-120 us, the
check here well under 1 us.
"""

from __future__ import annotations

from typing import Final

DEFAULT_WINDOW_S: Final = 10.0
DEFAULT_CAPACITY: Final = 4096


class Deduper:
    """Drops repeats of an address's last accepted message within ``window_s`` seconds.

    A repeat is the same payload bytes, or the same packet id (BTHome object 0x00, MiBeacon frame
    counter) when the format carries one. Memory is bounded: at most ``capacity`` addresses are
    remembered, the least recently accepted forgotten first.
    """

    __slots__ = ("_capacity", "_last", "_window")

    def __init__(
        self, window_s: float = DEFAULT_WINDOW_S, capacity: int = DEFAULT_CAPACITY
    ) -> None:
        if window_s < 0 or capacity < 1:
            raise ValueError("window_s must be >= 0 and capacity >= 1")
        self._window = window_s
        self._capacity = capacity
        self._last: dict[str, tuple[bytes, int | None, float]] = {}

    def is_duplicate(self, address: str, payload: bytes, packet_id: int | None, now: float) -> bool:
        """Return True if this message repeats the last one accepted from ``address``.

        A message that is not a repeat becomes the address's last accepted one. ``now`` is a
        monotonic time in seconds.
        """
        last = self._last.pop(address, None)
        if (
            last is not None
            and now - last[2] < self._window
            and (payload == last[0] or (packet_id is not None and packet_id == last[1]))
        ):
            self._last[address] = last  # keep the window anchored at the accepted message
            return True
        if last is None and len(self._last) >= self._capacity:
            del self._last[next(iter(self._last))]
        self._last[address] = (payload, packet_id, now)
        return False

    def forget(self, address: str) -> None:
        """Drop what is remembered of ``address`` (after unpairing, or a new bind key)."""
        self._last.pop(address, None)

    def __len__(self) -> int:
        return len(self._last)
