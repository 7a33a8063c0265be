"""Virtual devices so the whole chain runs with no hardware (demo, tests, benchmarks).

``devices`` virtual devices each report ``rate_hz`` readings per second, spread over three
kinds: an environment sensor, a health wearable and a location tracker (device ``i`` is kind
``i % 3``). Values are smooth and plausible, derived from the device index and time.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Callable
from types import MappingProxyType
from typing import Final

from gateway.model import Reading, Value
from gateway.timers import sleep_until

DRIVER: Final = "simulator"
FIELDS: Final = MappingProxyType(
    {
        "temperature": "telemetry.environment",
        "humidity": "telemetry.environment",
        "battery": "telemetry.environment",
        "heart_rate": "health",
        "steps": "health",
        "weight": "health",
        "latitude": "location.precise",
        "longitude": "location.precise",
    }
)
KINDS: Final = ("environment", "health", "location")
TICK_S: Final = 0.05


def device_ids(pseudonym: Callable[[str], str], count: int) -> list[str]:
    """Return the pseudonyms of ``count`` virtual devices, in index order (device ``i`` is of
    kind ``i % 3``)."""
    return [pseudonym(f"simulator-{i}") for i in range(count)]


def simulated_fields(index: int, now: float) -> dict[str, Value]:
    """Return the fields virtual device ``index`` reports at time ``now``."""
    phase = now / 60.0 + index
    kind = KINDS[index % 3]
    if kind == "environment":
        return {
            "temperature": round(21.0 + 2.0 * math.sin(phase), 2),
            "humidity": round(45.0 + 5.0 * math.cos(phase), 2),
            "battery": 100 - index % 40,
        }
    if kind == "health":
        return {
            "heart_rate": 60 + int(15 * (1 + math.sin(phase * 3))),
            "steps": int(now / 10) % 20000,
            "weight": round(70.0 + index % 15, 1),
        }
    return {
        "latitude": round(48.8566 + 0.01 * math.sin(phase), 6),
        "longitude": round(2.3522 + 0.01 * math.cos(phase), 6),
    }


class Simulator:
    """Produces readings for ``devices`` virtual devices at ``rate_hz`` each."""

    def __init__(
        self,
        devices: list[str],
        rate_hz: float,
        submit: Callable[[Reading], bool],
        clock: Callable[[], float] = time.time,
        not_built: Callable[[int], None] = lambda count: None,
    ) -> None:
        self._devices = devices
        self._rate_hz = rate_hz
        self._submit = submit
        self._clock = clock
        self._not_built = not_built  # told how many readings a refusal spared (to count them)
        self.produced = 0  # readings built and offered
        self.refused = 0  # of those, and of those not built, what the hub refused

    async def run(self) -> None:
        """Emit readings forever, spreading them evenly over ticks of ``TICK_S`` (on the
        daemon's coalescing loop the ticks of one slot of its timer grid share a wake-up: 4 a
        second on the default 0.25 s grid, each with the slot's readings)."""
        per_second = self._rate_hz * len(self._devices)
        if per_second <= 0:
            return
        owed = 0.0
        cursor = 0
        loop = asyncio.get_running_loop()
        last = loop.time()
        slot = math.ceil(last / TICK_S)
        while True:
            # ticks on multiples of TICK_S (the daemon's other timers share their wake-ups);
            # a tick missed while the loop was busy is skipped, its readings owed to the next
            slot = max(slot + 1, math.ceil(loop.time() / TICK_S))
            await sleep_until(slot * TICK_S)
            now_loop = loop.time()
            owed += (now_loop - last) * per_second
            last = now_loop
            now = self._clock()
            while owed >= 1.0:
                index = cursor % len(self._devices)
                cursor += 1
                owed -= 1.0
                self.produced += 1
                if not self._submit(
                    Reading(self._devices[index], DRIVER, now, simulated_fields(index, now))
                ):
                    # the hub refused it (its queue is full): the tick's other readings would
                    # be refused too; they are counted (``not_built``) but not built, so the
                    # load generator does not spend the hub's CPU on readings it cannot take
                    skipped = int(owed)
                    owed -= skipped
                    cursor += skipped
                    self.refused += 1 + skipped
                    if skipped:
                        self._not_built(skipped)
                    break
