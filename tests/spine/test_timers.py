"""Timer coalescing: the daemon's timers fire on a shared grid, in one turn of the loop per slot."""

from __future__ import annotations

import asyncio
import math

from gateway.timers import (
    DEFAULT_SLACK_S,
    ORDER_SCALE,
    CoalescingLoop,
    loop_factory,
    sleep_exact,
    sleep_until,
    slot_start,
)

SLACK = 0.05


def test_timers_due_in_one_slot_fire_on_its_boundary_in_one_turn_in_order() -> None:
    loop = CoalescingLoop(SLACK)
    events: list[tuple[str, float]] = []

    def record(name: str) -> None:
        if not events:  # runs after every timer of this turn: those were taken together
            loop.call_soon(events.append, ("next turn", loop.time()))
        events.append((name, loop.time()))

    try:
        start = math.ceil(loop.time() / SLACK) * SLACK  # the slot (start, start + SLACK]
        for name, delay in (("c", 0.049), ("a", 0.003), ("b", 0.021)):
            loop.call_at(start + delay, record, name)
        loop.run_until_complete(asyncio.sleep(0.3))  # the loop sleeps until the slot's end
    finally:
        loop.close()
    names = [name for name, _ in events]
    assert names == ["a", "b", "c", "next turn"], "in order, in one turn, after one wake-up"
    when = events[0][1]
    assert when >= start + 0.049 - 2 * SLACK * ORDER_SCALE  # not early (but for the order spread)
    assert when < start + SLACK + 0.02  # at most one slot late (and a little scheduling)


def test_a_timer_is_never_early_and_at_most_one_slot_late() -> None:
    async def measure() -> float:
        loop = asyncio.get_running_loop()
        start = loop.time()
        await asyncio.sleep(0.013)
        return loop.time() - start

    with asyncio.Runner(loop_factory=loop_factory(SLACK)) as runner:
        waits = [runner.run(measure()) for _ in range(5)]
    assert all(0.013 <= w < 0.013 + SLACK + 0.02 for w in waits), waits


def test_no_slack_gives_the_plain_loop() -> None:
    loop = loop_factory(0.0)()
    try:
        assert not isinstance(loop, CoalescingLoop)
    finally:
        loop.close()


def test_a_timeout_never_overtakes_what_it_guards_in_the_same_slot() -> None:
    async def guarded() -> None:
        await asyncio.wait_for(asyncio.sleep(0.01), timeout=0.02)

    with asyncio.Runner(loop_factory=loop_factory(SLACK)) as runner:
        for _ in range(20):
            runner.run(guarded())  # would raise TimeoutError if the slot's order were lost


def test_a_loop_sleeping_until_grid_deadlines_keeps_its_period() -> None:
    async def ticks(until_deadline: bool) -> int:
        loop = asyncio.get_running_loop()
        end = loop.time() + 1.0
        slot, count = math.ceil(loop.time() / SLACK), 0
        while loop.time() < end:
            if until_deadline:
                slot += 1
                await sleep_until(slot * SLACK)
            else:
                await asyncio.sleep(SLACK)  # ends a slot late: the turn began after the slot
            count += 1
        return count

    with asyncio.Runner(loop_factory=loop_factory(SLACK)) as runner:
        assert runner.run(ticks(until_deadline=True)) >= 19  # 20 a second
        assert runner.run(ticks(until_deadline=False)) <= 12  # why sleep_until exists


def test_an_exact_sleep_is_not_stretched_to_the_grid() -> None:
    async def waits() -> tuple[float, float]:
        loop = asyncio.get_running_loop()
        await sleep_until(math.ceil(loop.time() / DEFAULT_SLACK_S + 1) * DEFAULT_SLACK_S)
        start = loop.time()  # a slot has just begun: a grid timer would wait for its end
        await sleep_exact(0.005)
        exact = loop.time() - start
        start = loop.time()
        await asyncio.sleep(0.005)
        return exact, loop.time() - start

    with asyncio.Runner(loop_factory=loop_factory(DEFAULT_SLACK_S)) as runner:
        exact, on_grid = runner.run(waits())
    assert 0.005 - 2 * DEFAULT_SLACK_S * ORDER_SCALE <= exact < 0.1
    assert on_grid > 0.1  # what a drain poll would wait on the grid


def test_an_exact_sleep_on_a_plain_loop_is_a_plain_sleep() -> None:
    async def wait() -> float:
        loop = asyncio.get_running_loop()
        start = loop.time()
        await sleep_exact(0.005)
        return loop.time() - start

    assert 0.005 <= asyncio.run(wait()) < 0.1


def test_a_wait_counted_from_the_slot_start_ends_on_the_next_boundary_not_one_later() -> None:
    async def waits() -> tuple[float, float, float]:
        loop = asyncio.get_running_loop()
        await sleep_until(math.ceil(loop.time() / DEFAULT_SLACK_S + 1) * DEFAULT_SLACK_S)
        await asyncio.sleep(0)  # work in the turn: now is past the slot's start
        started = slot_start()
        await sleep_until(started + DEFAULT_SLACK_S)
        from_slot = loop.time() - started
        started = loop.time()
        await asyncio.sleep(DEFAULT_SLACK_S)
        return started % DEFAULT_SLACK_S, from_slot, loop.time() - started

    with asyncio.Runner(loop_factory=loop_factory(DEFAULT_SLACK_S)) as runner:
        offset, from_slot, from_now = runner.run(waits())
    assert offset < DEFAULT_SLACK_S / 2  # the turn ran just after its slot began
    assert DEFAULT_SLACK_S - 0.001 <= from_slot < DEFAULT_SLACK_S + 0.05
    assert from_now > 1.5 * DEFAULT_SLACK_S  # what a linger counted from now would wait


def test_on_a_plain_loop_the_slot_starts_now() -> None:
    async def difference() -> float:
        return abs(slot_start() - asyncio.get_running_loop().time())

    assert asyncio.run(difference()) < 0.001
