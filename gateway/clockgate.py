"""Sealing in hub time: records read before the wall clock is trusted wait, then are re-based.

``ClockGate`` stands between the pipeline and the sealer (docs/clock.md):

- While hub time is not anchored on a trusted wall clock (``HubClock.anchored``), observations
  are not sealed: they wait in memory with the wall and monotonic times at which they arrived,
  so no epoch announcement with a validity window in an untrusted past carries a record, and
  no record gets a 1970 timestamp. Nothing unsealed is ever written to disk.
- Once anchored, the waiting observations are released (``release``, every pipeline tick, or
  ahead of the next batch) with their ``ts`` re-based: the wall clock's error at the moment
  they arrived is known then (hub time at that monotonic instant minus the wall clock read
  then) and added to ``ts``. An epoch started before the anchor is rotated out first, so
  released records are sealed under an announcement whose window is trusted.
- After the anchor every batch is re-based the same way (by hub time minus the wall clock now)
  whenever the two differ by more than ``REBASE_MIN_S``: readings stamped by a wall clock that
  stepped away are sealed in hub time.
- A released reading's outbox ``created``/``expires`` count from when it arrived (hub time
  at that monotonic instant), so waiting for the clock does not stretch its time to live.
- At most ``max_held`` observations wait; beyond that (the clock never became trusted) the
  oldest are sealed at once with the best estimate of their time (``HubClock.now`` when they
  arrived), counted as ``clock.sealed_unsynced``; so is everything still waiting at a graceful
  stop (``seal_held(force=True)``). They are sealed under an epoch whose announcement is
  marked estimated (``"est": true``, docs/envelope.md): a consumer measures its acceptance
  window from when it first sees it and flags its records ``ts_estimated``. A power cut loses
  what waits, as it loses readings not yet group-committed.
- A rotation asked for before the anchor (``keys/rotate``) is deferred (``defer_rotation``):
  it happens at the first seal after the anchor, which every pipeline tick attempts.
"""

from __future__ import annotations

import dataclasses
from collections import deque
from collections.abc import Callable, Sequence
from typing import Final

from gateway.clock import FOLLOW_S, HubClock
from gateway.counters import Counters
from gateway.envelope.sealer import Sealer
from gateway.model import Observation, OutboxRow

# Below this difference between hub time and the wall clock, readings keep their own ts.
REBASE_MIN_S: Final = 1.0
REASON_CLOCK: Final = "clock_trusted"
DEFAULT_MAX_HELD: Final = 20_000


@dataclasses.dataclass(frozen=True, slots=True)
class _Held:
    """A batch that arrived while the clock was untrusted, with the clocks read then."""

    observations: Sequence[Observation]
    wall: float
    mono: float
    estimate: float


def rebased(observations: Sequence[Observation], error: float) -> Sequence[Observation]:
    """Return ``observations`` with ``error`` seconds added to their ``ts`` (as is below
    ``REBASE_MIN_S``)."""
    if abs(error) < REBASE_MIN_S:
        return observations
    return [dataclasses.replace(obs, ts=obs.ts + error) for obs in observations]


class ClockGate:
    """The pipeline's sealer: holds observations until hub time is trusted, re-bases them."""

    def __init__(
        self,
        sealer: Sealer,
        clock: HubClock,
        counters: Counters,
        *,
        max_held: int = DEFAULT_MAX_HELD,
        wall: Callable[[], float],
        mono: Callable[[], float],
    ) -> None:
        self._sealer = sealer
        self._clock = clock
        self._counters = counters
        self._max_held = max_held
        self._wall = wall
        self._mono = mono
        self._held: deque[_Held] = deque()
        self._deferred: str | None = None  # the reason of a rotation waiting for the anchor
        self.held = 0

    @property
    def last_announcement_hash(self) -> bytes:
        """Hash of the newest announcement (persisted as the next one's ``prev``)."""
        return self._sealer.last_announcement_hash

    @property
    def deferred(self) -> str | None:
        """The reason of a rotation deferred until the anchor (None if there is none)."""
        return self._deferred

    def rotate(self, reason: str) -> OutboxRow:
        """Start a new epoch now; return its announcement row (marked estimated before the
        anchor; callers that can wait use ``defer_rotation``)."""
        return self._sealer.rotate(reason, estimated=not self._clock.anchored)

    def defer_rotation(self, reason: str) -> bool:
        """Defer a rotation for ``reason`` to the first seal after the anchor and return True;
        return False (nothing deferred) if hub time is anchored: rotate now."""
        if self._clock.anchored:
            return False
        self._deferred = reason
        return True

    def due(self, now: float) -> bool:
        """Whether the current epoch is too old at monotonic time ``now`` (never before the
        anchor: nothing is sealed then, and an announcement would carry an untrusted window)."""
        return self._clock.anchored and self._sealer.due(now)

    def seal_batch(
        self, observations: Sequence[Observation], ttl: Callable[[str], float]
    ) -> list[OutboxRow]:
        """Seal ``observations`` in hub time, or hold them while the clock is untrusted."""
        clock = self._clock
        if not clock.anchored:
            if observations:
                self._held.append(_Held(observations, self._wall(), self._mono(), clock.now()))
                self.held += len(observations)
            return self._seal_overflow(ttl)
        rows = self._rotate_untrusted_epoch()
        batch, arrivals = self._release()
        batch.extend(self._in_hub_time(observations, self._wall(), clock.now()))
        rows.extend(self._sealer.seal_batch(batch, ttl, arrived=arrivals))
        return rows

    def _in_hub_time(
        self, observations: Sequence[Observation], wall: float, true: float
    ) -> Sequence[Observation]:
        """Return ``observations``, which arrived when the wall clock read ``wall`` and hub
        time was ``true``, with their ``ts`` in hub time."""
        if all(abs(obs.ts - wall) <= FOLLOW_S for obs in observations):
            return rebased(observations, true - wall)
        # read before a step of the wall clock (e.g. queued when NTP synchronised)
        mono, rebase = self._mono(), self._clock.rebase
        return [dataclasses.replace(obs, ts=rebase(obs.ts, mono)) for obs in observations]

    def release(self) -> list[Observation]:
        """Return the held observations re-based on hub time (none before the anchor)."""
        return self._release()[0]

    def _release(self) -> tuple[list[Observation], list[float]]:
        """Return the held observations re-based on hub time, and the hub time each arrived."""
        out: list[Observation] = []
        arrivals: list[float] = []
        while self._held:
            held = self._held.popleft()
            true = self._clock.true_time_at(held.mono)
            if true is None:  # not anchored: they keep waiting
                self._held.appendleft(held)
                break
            out.extend(self._in_hub_time(held.observations, held.wall, true))
            arrivals.extend([true] * len(held.observations))
        self.held -= len(out)
        return out, arrivals

    def seal_held(self, ttl: Callable[[str], float], *, force: bool = False) -> list[OutboxRow]:
        """Seal what waits, once hub time is anchored (every tick; a deferred rotation happens
        then too); with ``force`` (a graceful stop) seal it on the best estimate of its time
        even if the clock is still untrusted."""
        if self._clock.anchored:
            if not self._held and self._deferred is None:
                return []
            rows = self._rotate_untrusted_epoch()
            batch, arrivals = self._release()
            if batch:
                rows.extend(self._sealer.seal_batch(batch, ttl, arrived=arrivals))
            return rows
        if not force or not self._held:
            return []
        return self._seal_estimated(len(self._held), ttl)

    def _seal_overflow(self, ttl: Callable[[str], float]) -> list[OutboxRow]:
        """Seal the oldest held batches beyond ``max_held`` on their estimated times."""
        over, count = 0, self.held
        for held in self._held:
            if count <= self._max_held:
                break
            over += 1
            count -= len(held.observations)
        return self._seal_estimated(over, ttl) if over else []

    def _seal_estimated(self, batches: int, ttl: Callable[[str], float]) -> list[OutboxRow]:
        """Seal the oldest ``batches`` held batches on their estimated times, under an epoch
        marked estimated (counted as ``clock.sealed_unsynced``)."""
        batch: list[Observation] = []
        arrivals: list[float] = []
        for _ in range(batches):
            held = self._held.popleft()
            batch.extend(rebased(held.observations, held.estimate - held.wall))
            arrivals.extend([held.estimate] * len(held.observations))
        self.held -= len(batch)
        self._counters.inc("clock.sealed_unsynced", len(batch))
        return self._sealer.seal_batch(batch, ttl, estimated=True, arrived=arrivals)

    def _rotate_untrusted_epoch(self) -> list[OutboxRow]:
        """Rotate out an epoch started before the anchor (its window is not trusted), or
        start the epoch a rotation deferred until the anchor asked for."""
        deferred, self._deferred = self._deferred, None
        since = self._clock.anchored_since
        started = self._sealer.started_mono
        if since is None:
            return []
        if started is not None and started < since:
            return [self._sealer.rotate(REASON_CLOCK)]
        # an epoch started since the anchor already has keys newer than the deferred request
        return [self._sealer.rotate(deferred)] if deferred and started is None else []
