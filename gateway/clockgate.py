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
- At most ``max_held`` observations wait; beyond that (the clock never became trusted) the
  oldest are sealed at once with the best estimate of their time (``HubClock.now`` when they
  arrived), counted as ``clock.sealed_unsynced``; so is everything still waiting at a graceful
  stop (``seal_held(force=True)``). A power cut loses what waits, as it loses readings not
  yet group-committed.
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
        self.held = 0

    @property
    def last_announcement_hash(self) -> bytes:
        """Hash of the newest announcement (persisted as the next one's ``prev``)."""
        return self._sealer.last_announcement_hash

    def rotate(self, reason: str) -> OutboxRow:
        """Start a new epoch now; return its announcement row."""
        return self._sealer.rotate(reason)

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
        batch = self.release()
        batch.extend(self._in_hub_time(observations, self._wall(), clock.now()))
        rows.extend(self._sealer.seal_batch(batch, ttl))
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
        out: list[Observation] = []
        while self._held:
            held = self._held.popleft()
            true = self._clock.true_time_at(held.mono)
            if true is None:  # not anchored: they keep waiting
                self._held.appendleft(held)
                break
            out.extend(self._in_hub_time(held.observations, held.wall, true))
        self.held -= len(out)
        return out

    def seal_held(self, ttl: Callable[[str], float], *, force: bool = False) -> list[OutboxRow]:
        """Seal what waits, once hub time is anchored (every tick); with ``force`` (a graceful
        stop) seal it on the best estimate of its time even if the clock is still untrusted."""
        if not self._held:
            return []
        if self._clock.anchored:
            rows = self._rotate_untrusted_epoch()
            rows.extend(self._sealer.seal_batch(self.release(), ttl))
            return rows
        if not force:
            return []
        batch: list[Observation] = []
        while self._held:
            held = self._held.popleft()
            batch.extend(rebased(held.observations, held.estimate - held.wall))
        self.held = 0
        self._counters.inc("clock.sealed_unsynced", len(batch))
        return self._sealer.seal_batch(batch, ttl)

    def _seal_overflow(self, ttl: Callable[[str], float]) -> list[OutboxRow]:
        """Seal the oldest held batches beyond ``max_held`` on their estimated times."""
        batch: list[Observation] = []
        while self.held > self._max_held and self._held:
            held = self._held.popleft()
            self.held -= len(held.observations)
            batch.extend(rebased(held.observations, held.estimate - held.wall))
        if not batch:
            return []
        self._counters.inc("clock.sealed_unsynced", len(batch))
        return self._sealer.seal_batch(batch, ttl)

    def _rotate_untrusted_epoch(self) -> list[OutboxRow]:
        """Rotate out an epoch started before the anchor (its window is not trusted)."""
        since = self._clock.anchored_since
        started = self._sealer.started_mono
        if since is None or started is None or started >= since:
            return []
        return [self._sealer.rotate(REASON_CLOCK)]
