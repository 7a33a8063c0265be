"""The data path, top to bottom: reading -> consent door -> known device -> classify -> consent
gate -> desensitise (gateway/consent/desensitise.py) -> seal -> outbox.

The door judges each reading as it arrives: one whose every category is off is dropped there.
Every stage after it has one signature (a batch of observations in, a batch out) and is a plain
function of its inputs, so each is tested alone; ``Pipeline`` only orders them, batches
readings from a bounded queue and commits the sealed rows to the outbox in one transaction.
A reading counts as committed once ``Outbox.append`` returned.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Callable, Sequence
from typing import Final, Protocol, TypeVar

from gateway.consent.aggregate import Aggregator
from gateway.consent.catalogue import OFF
from gateway.consent.desensitise import aggregate, desensitise, pseudonymise
from gateway.consent.policy import ConsentPolicy
from gateway.counters import Counters
from gateway.model import Observation, OutboxRow, Reading
from gateway.outbox.store import Outbox
from gateway.timers import sleep_until, slot_start

logger = logging.getLogger(__name__)

Stage = Callable[[list[Observation]], list[Observation]]
FieldCategory = Callable[[str, str], str | None]
QUEUE_SIZE: Final = 100_000


class Sealing(Protocol):
    """What the pipeline needs of the sealer (gateway.envelope.sealer.Sealer)."""

    @property
    def last_announcement_hash(self) -> bytes:
        """Hash of the newest announcement (persisted as the next one's ``prev``)."""
        ...

    def rotate(self, reason: str) -> OutboxRow:
        """Start a new epoch; return its announcement row."""
        ...

    def due(self, now: float) -> bool:
        """Whether the current epoch is too old at monotonic time ``now``."""
        ...

    def seal_batch(
        self, observations: Sequence[Observation], ttl: Callable[[str], float]
    ) -> list[OutboxRow]:
        """Seal observations, rotating (announcement row first) when needed."""
        ...

    def seal_held(self, ttl: Callable[[str], float], *, force: bool = False) -> list[OutboxRow]:
        """Seal the observations held while the wall clock was untrusted (docs/clock.md)."""
        ...


# --- stages ----------------------------------------------------------------------------------
class _OfDevice(Protocol):
    @property
    def device(self) -> str:
        """The device's pseudonym."""
        ...


_D = TypeVar("_D", bound=_OfDevice)


def from_known_devices(
    items: Sequence[_D], known: Callable[[str], bool], counters: Counters
) -> list[_D]:
    """Drop readings (or observations) of devices that are not paired (any more); count them."""
    kept = [r for r in items if known(r.device)]
    if len(kept) != len(items):
        counters.inc("dropped.unknown_device", len(items) - len(kept))
    return kept


_Layout = tuple[tuple[tuple[str, tuple[str, ...]], ...], int]
"""((category, its field names), ...) of one field set, and how many of its fields are unmapped."""
LAYOUTS_KEPT: Final = 256  # field sets remembered (a driver reports a few)


class FieldSets:
    """The layout of each field set a driver reports, worked out once (``field_category`` asked
    per name) and kept, at most LAYOUTS_KEPT whatever field names arrive."""

    def __init__(self, field_category: FieldCategory) -> None:
        self._field_category = field_category
        self._kept: dict[tuple[str, tuple[str, ...]], _Layout] = {}

    def __len__(self) -> int:
        """Return how many field sets are kept."""
        return len(self._kept)

    def layout(self, reading: Reading) -> _Layout:
        """Return ``reading``'s field names grouped by category, and how many are unmapped."""
        key = (reading.driver, tuple(reading.fields))
        layout = self._kept.get(key)
        if layout is None:
            if len(self._kept) >= LAYOUTS_KEPT:
                self._kept.clear()
            layout = self._kept[key] = _layout(reading.driver, key[1], self._field_category)
        return layout


def _layout(driver: str, names: tuple[str, ...], field_category: FieldCategory) -> _Layout:
    groups: dict[str, list[str]] = {}
    unmapped = 0
    for name in names:
        category = field_category(driver, name)
        if category is None:
            unmapped += 1
        else:
            groups.setdefault(category, []).append(name)
    return tuple((category, tuple(group)) for category, group in groups.items()), unmapped


def classify(
    readings: Sequence[Reading], field_sets: FieldSets, counters: Counters
) -> list[Observation]:
    """Split each reading's fields by data category; unmapped fields are dropped and counted."""
    out: list[Observation] = []
    unmapped = 0
    layout = field_sets.layout
    for reading in readings:
        fields = reading.fields
        groups, dropped = layout(reading)
        unmapped += dropped
        for category, names in groups:
            values = fields if len(names) == len(fields) else {n: fields[n] for n in names}
            out.append(Observation(reading.device, category, reading.ts, values))
    if unmapped:
        counters.inc("dropped.unmapped_field", unmapped)
    return out


class ConsentDoor:
    """The check a reading meets on arrival (``door(reading)``): True when its device is paired
    and every category its fields map to is off now; it is then dropped there, counted as the
    gate counts, and costs no queue slot, batch or seal (a home's many readings nobody
    consented to)."""

    def __init__(
        self,
        policy: ConsentPolicy,
        field_sets: FieldSets,
        known: Callable[[str], bool],
        counters: Counters,
    ) -> None:
        self._decide = policy.decide
        self.field_sets = field_sets
        self._known = known
        self._counters = counters

    def __call__(self, reading: Reading) -> bool:
        """Return True (dropped, counted) when all of ``reading`` is refused by consent now."""
        groups, unmapped = self.field_sets.layout(reading)
        device, decide = reading.device, self._decide
        if not groups or not self._known(device):  # unknown: counted as such in the pipeline
            return False
        if any(decide(device, category) != OFF for category, _ in groups):
            return False
        for category, _ in groups:
            self._counters.inc(f"dropped.{category}")
        if unmapped:
            self._counters.inc("dropped.unmapped_field", unmapped)
        return True


def consent_gate(policy: ConsentPolicy, counters: Counters) -> Stage:
    """Return the collection gate: observations whose category is off now are dropped, counted."""

    def gate(observations: list[Observation]) -> list[Observation]:
        kept = []
        dropped: dict[str, int] = {}
        decide = policy.decide
        for obs in observations:
            if decide(obs.device, obs.category) == OFF:
                dropped[obs.category] = dropped.get(obs.category, 0) + 1
            else:
                kept.append(obs)
        for category, count in dropped.items():  # one count per category and batch
            counters.inc(f"dropped.{category}", count)
        return kept

    return gate


def _always() -> asyncio.Event:
    event = asyncio.Event()
    event.set()
    return event


# --- the pipeline ----------------------------------------------------------------------------
class Pipeline:
    """Batches readings through the stages into the outbox."""

    def __init__(
        self,
        *,
        policy: ConsentPolicy,
        sealer: Sealing,
        outbox: Outbox,
        counters: Counters,
        field_category: FieldCategory,
        ttl: Callable[[str], float],
        keyed_hash: Callable[[bytes], bytes],
        known_device: Callable[[str], bool],
        aggregate_window_s: float = 300.0,
        batch_size: int = 1000,
        queue_size: int = QUEUE_SIZE,
        linger_s: float = 0.0,
        room: asyncio.Event | None = None,
    ) -> None:
        self._known_device = known_device  # which devices may report (paired, simulated)
        self._sealer = sealer
        self._outbox = outbox
        self._counters = counters
        self._field_sets = FieldSets(field_category)  # the door's and classify's
        self._ttl = ttl
        self._batch_size = batch_size
        self._linger_s = linger_s
        self._room = room if room is not None else _always()
        self._queue: asyncio.Queue[Reading] = asyncio.Queue(queue_size)
        self._first: list[Reading] = []  # taken from the queue, waiting for its batch
        self._aggregator = Aggregator(aggregate_window_s)
        self._stages: tuple[Stage, ...] = (
            consent_gate(policy, counters),
            desensitise(policy),
            pseudonymise(policy, keyed_hash),
            aggregate(policy, self._aggregator),
        )
        self._refused_at_door = ConsentDoor(policy, self._field_sets, known_device, counters)
        self._commit_lock = asyncio.Lock()
        self.committed = 0

    def exclusive(self) -> asyncio.Lock:
        """Return the lock held while a batch goes from the gate to the outbox.

        Holding it (``async with pipeline.exclusive():``) guarantees no batch gated under the
        old consent is still on its way to the outbox when a flag changes.
        """
        return self._commit_lock

    def submit(self, reading: Reading) -> bool:
        """Take ``reading`` without waiting: dropped at once (counted, True) when all its data is
        refused by consent now (``ConsentDoor``), else queued; False (counted) if the queue is
        full."""
        if self._queue.full():  # first: refusing costs least when readings come fastest
            self._counters.inc("dropped.queue_full")
            return False
        if not self._refused_at_door(reading):
            self._queue.put_nowait(reading)
        return True

    @property
    def queued(self) -> int:
        """Return how many readings wait to be processed."""
        return self._queue.qsize()

    async def run(self) -> None:
        """Process readings forever, in batches of whatever is queued (up to batch_size).

        A reading that finds the queue short of a batch waits up to ``linger_s`` for others
        (at everyday load one batch, one seal and one publish burst per interval instead of
        one per reading), counted from the start of the timer slot it arrived in
        (``gateway.timers.slot_start``: the batch leaves on the slot boundary ``linger_s`` on,
        not one slot later); while egress has no room (``room`` clear: records wait unsent) no
        batch is taken, so the CPU goes to sending and new readings are refused by the full queue.
        """
        while True:
            reading = await self._queue.get()  # (then ``_first``: a ``settle`` may replace it)
            self._first.append(reading)  # where ``settle`` finds it while the batch lingers
            if self._linger_s and self._queue.qsize() < self._batch_size - 1:
                await sleep_until(slot_start() + self._linger_s)
            await self._room.wait()
            batch, self._first = self._first, []
            await self.process(self._take(batch))

    async def flush(self) -> None:
        """Commit everything received now (the reading a lingering batch holds included), and
        the open aggregate windows (used at shutdown)."""
        async with self._commit_lock:
            await self.settle()
        await self.commit_aggregates(math.inf)

    def _take(self, batch: list[Reading]) -> list[Reading]:
        while len(batch) < self._batch_size and not self._queue.empty():
            batch.append(self._queue.get_nowait())
        return batch

    async def process(self, readings: Sequence[Reading]) -> int:
        """Run ``readings`` through every stage and commit them; return rows committed."""
        async with self._commit_lock:
            return await self._process(readings)

    async def settle(self) -> int:
        """Commit every reading received so far under the consent in force now; return rows
        committed. The caller holds ``exclusive()``: a change that may grant calls it first, so
        no reading received while consent was off is judged by the grant that follows. Under
        overload (up to ``queue_size`` readings queued) a grant waits for all of them."""
        committed = 0
        batch, self._first = self._first, []
        while batch or not self._queue.empty():
            committed += await self._process(self._take(batch))
            batch = []
        return committed

    async def _process(self, readings: Sequence[Reading]) -> int:
        observations = classify(
            from_known_devices(readings, self._known_device, self._counters),
            self._field_sets,
            self._counters,
        )
        for stage in self._stages:
            observations = stage(observations)
        return await self._commit(observations)

    async def _commit(self, observations: list[Observation]) -> int:
        """Seal ``observations`` and append them to the outbox (commit lock held)."""
        if not observations:
            return 0
        room = self._outbox.room_for_new()
        if room is not None and len(observations) > room:
            # A full reject_new outbox keeps its oldest records: what does not fit is refused
            # before sealing, so no sequence number or epoch is spent on records never kept.
            await self._outbox.refuse(len(observations) - room)
            observations = observations[:room]
            if not observations:
                return 0
        rows = self._sealer.seal_batch(observations, self._ttl)
        kept = await self._outbox.append(rows, self._sealer.last_announcement_hash)
        self.committed += kept
        return kept

    async def rotate(self, reason: str) -> int:
        """Start a new epoch now and commit its announcement; return the new epoch number."""
        async with self._commit_lock:
            row = self._sealer.rotate(reason)
            await self._outbox.append([row], self._sealer.last_announcement_hash)
        logger.info("epoch started", extra={"epoch": row.epoch, "reason": reason})
        return row.epoch

    async def tick_forever(self, period_s: float = 1.0) -> None:
        """Every ``period_s``: rotate the epoch at its maximum age (monotonic, so a wall-clock
        jump neither stops nor hastens it), seal what waited for a trusted clock, commit closed
        aggregates (windows end on the monotonic clock)."""
        while True:
            await asyncio.sleep(period_s)
            if self._sealer.due(time.monotonic()):
                await self.rotate("max_age")
            await self.commit_held()
            await self.commit_aggregates(time.monotonic())

    async def commit_held(self, *, force: bool = False) -> int:
        """Seal and commit what waited for a trusted clock (all of it with ``force``)."""
        async with self._commit_lock:
            rows = self._sealer.seal_held(self._ttl, force=force)
            if not rows:
                return 0
            kept = await self._outbox.append(rows, self._sealer.last_announcement_hash)
            self.committed += kept
            return kept

    async def commit_aggregates(self, now: float) -> int:
        """Seal and commit the aggregate windows that ended before ``now`` (monotonic)."""
        async with self._commit_lock:
            # a window of a device unpaired (or erased) meanwhile is dropped, never sealed
            due = self._aggregator.due(now)
            return await self._commit(from_known_devices(due, self._known_device, self._counters))

    def forget_aggregates(self, device: str | None = None) -> None:
        """Drop open aggregate windows (of ``device``): consent for them was withdrawn."""
        self._aggregator.drop(device)
