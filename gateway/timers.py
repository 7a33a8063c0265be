"""Timer coalescing: the daemon's timers fire on a shared grid, so they share wake-ups.

Every loop of the hub that sleeps (the simulator's ticks, the pipeline's linger, the group
commit, the epoch and clock checks, paho's keep-alive loops, the publisher's idle wait) would
otherwise wake the process at its own instant. On a Pi, and on the machine the benchmarks ran on,
a wake-up from an idle CPU costs more than the work most of them do (docs/performance.md,
"Timers share wake-ups").
``CoalescingLoop`` rounds the deadline of every timer up to the next multiple of ``slack_s`` on
the loop's monotonic clock: timers due within the same slot run in the same turn of the loop,
after one wake-up, still in the order of their deadlines. It is the kernel's timer slack, applied
where the kernel cannot see it (asyncio keeps its timers in one heap and sleeps until the first).

The price is that a timer fires up to ``slack_s`` late (or up to 100 us early at 0.25 s: a turn
takes a slot's timers together); nothing the hub promises depends on a timer being that precise
(consent changes, acknowledgements and PUBACKs are driven by I/O, not timers, and run as soon as
their packet arrives). The pipeline's linger (0.5 s by default, two slots) counts from the
start of the slot a reading arrived in (``slot_start``), so a batch still leaves at most the
linger after its first reading. A short poll that a peer waits on (a socket draining) sleeps
off the grid: ``sleep_exact``.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Callable
from contextvars import Context
from typing import Final, TypeVarTuple

DEFAULT_SLACK_S: Final = 0.25
_Ts = TypeVarTuple("_Ts")
# loop.call_at or CoalescingLoop.call_at_exact, as _sleep calls it
_Schedule = Callable[
    [float, Callable[[asyncio.Future[None]], None], asyncio.Future[None]], asyncio.TimerHandle
]
GRID_TOLERANCE: Final = 1e-6  # of a slot: 250 ns for 0.25 s
# A slot's deadlines keep their order within the first 50 us of the slot (0.25 s x 2e-4). The
# loop's clock counts seconds since boot: after a year up (3e7 s, float steps of 4 ns) deadlines
# at least 20 us apart still keep their order; closer ones may run in either order.
ORDER_SCALE: Final = 2e-4


class CoalescingLoop(asyncio.SelectorEventLoop):
    """A selector event loop whose timers fire on a grid of ``slack_s`` seconds."""

    def __init__(self, slack_s: float = DEFAULT_SLACK_S) -> None:
        super().__init__()
        self.slack_s = slack_s
        # a turn runs the timers due up to this much after now: all of a slot's, whose
        # deadlines the order offsets spread over its first slack_s x ORDER_SCALE seconds
        resolution: float = time.get_clock_info("monotonic").resolution  # asyncio's own value
        self._clock_resolution = max(resolution, 2 * slack_s * ORDER_SCALE)

    def call_at(
        self,
        when: float,
        callback: Callable[[*_Ts], object],
        *args: *_Ts,
        context: Context | None = None,
    ) -> asyncio.TimerHandle:
        """Schedule ``callback`` at ``when`` rounded up to the next multiple of ``slack_s``."""
        slack = self.slack_s
        if slack > 0:
            # (a deadline on the grid itself stays in its slot despite float rounding)
            slot = math.ceil(when / slack - GRID_TOLERANCE) * slack
            # the order of the timers of one slot stays the order of their deadlines (a timeout
            # never overtakes what it guards): offsets within the slot, shrunk to nanoseconds
            when = slot + (when - slot + slack) * ORDER_SCALE
        return super().call_at(when, callback, *args, context=context)

    def call_at_exact(
        self,
        when: float,
        callback: Callable[[*_Ts], object],
        *args: *_Ts,
        context: Context | None = None,
    ) -> asyncio.TimerHandle:
        """Schedule ``callback`` at ``when`` itself, off the grid (``sleep_exact``)."""
        return super().call_at(when, callback, *args, context=context)


def loop_factory(slack_s: float) -> Callable[[], asyncio.AbstractEventLoop]:
    """Return a factory of event loops whose timers share wake-ups on a ``slack_s`` grid (a
    plain loop when ``slack_s`` is 0), for ``asyncio.Runner(loop_factory=...)``."""
    if slack_s <= 0:
        return asyncio.new_event_loop
    return lambda: CoalescingLoop(slack_s)


async def sleep_until(when: float) -> None:
    """Sleep until the loop's clock reaches ``when``: a deadline, not a delay, so a periodic
    loop that sleeps until multiples of its period keeps that period on a coalescing loop
    (``asyncio.sleep(period)`` from a turn that began just after a slot starts ends a slot late)."""
    await _sleep(asyncio.get_running_loop().call_at, when)


def slot_start() -> float:
    """Return when the running loop's current timer slot began (now, on a plain loop): a wait
    of ``d`` counted from there ends ``d`` after the slot's start, where a wait counted from now
    (a turn begins just after its slot does) would end a slot later."""
    loop = asyncio.get_running_loop()
    now = loop.time()
    if isinstance(loop, CoalescingLoop) and loop.slack_s > 0:
        return math.floor(now / loop.slack_s + GRID_TOLERANCE) * loop.slack_s
    return now


async def sleep_exact(delay: float) -> None:
    """Sleep ``delay`` seconds off the grid: for a short poll that a peer waits on (a socket
    draining while requests are held), which rounding up to a slot would stretch to ``slack_s``.
    Each such sleep may cost a wake-up of its own: not for periodic work."""
    loop = asyncio.get_running_loop()
    schedule = loop.call_at_exact if isinstance(loop, CoalescingLoop) else loop.call_at
    await _sleep(schedule, loop.time() + delay)


async def _sleep(schedule: _Schedule, when: float) -> None:
    """Wait for a timer that ``schedule`` sets at ``when``; cancel it if the wait is."""
    future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    handle = schedule(when, _wake, future)
    try:
        await future
    finally:
        handle.cancel()


def _wake(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)
