"""The virtual devices: readings spread evenly over ticks, and a refused reading ends its tick
(what the hub cannot take is not built)."""

from __future__ import annotations

import asyncio
import contextlib

from drivers.simulator import Simulator
from gateway.model import Reading


async def _run(simulator: Simulator, seconds: float) -> None:
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(seconds):
            await simulator.run()


async def test_readings_come_at_the_rate_asked_from_every_device_in_turn() -> None:
    taken: list[Reading] = []

    def take(reading: Reading) -> bool:
        taken.append(reading)
        return True

    simulator = Simulator([f"{i:016x}" for i in range(10)], 20.0, take)
    await _run(simulator, 1.0)
    assert 150 <= len(taken) <= 210  # 10 devices x 20/s for 1 s, the first tick late
    assert [r.device for r in taken[:10]] == [f"{i:016x}" for i in range(10)]
    assert simulator.refused == 0


async def test_a_refused_reading_ends_its_tick_and_the_rest_are_counted_not_built() -> None:
    offered: list[Reading] = []

    def full_queue(reading: Reading) -> bool:
        offered.append(reading)
        return False

    not_built: list[int] = []
    simulator = Simulator(
        [f"{i:016x}" for i in range(10)], 1000.0, full_queue, not_built=not_built.append
    )  # 10,000 readings a second
    await _run(simulator, 0.5)
    ticks = len(offered)  # one reading built per tick, refused
    assert 5 <= ticks <= 11  # 0.5 s of 50 ms ticks
    assert simulator.produced == ticks
    assert simulator.refused >= 4000  # every reading owed, built or not
    assert ticks + sum(not_built) == simulator.refused  # each counted once, by one of the two
