"""The outbox's memory: rows queued but not yet on disk, and the cache the publisher reads.

Pure bookkeeping, no I/O: ``gateway.outbox.store`` decides when to write. ``Unwritten`` holds
the rows not on disk yet (all newer than any row on disk, in id order), the deletes of
acknowledged rows that are on disk, tombstones and the epoch counter not yet written, and the
most recent rows in id order with no gaps (``recent``), so the publisher takes new rows
without reading payloads back from SQLite.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Final

from gateway.model import EPOCH_CATEGORY, OutboxRow
from gateway.outbox.rows import Pending, QueuedGroup, Tombstone

RECENT_ROWS: Final = 20_000


@dataclass(slots=True)
class Batch:
    """What one group commit writes (taken out of memory; put back if it rolls back)."""

    # for outbox.db
    rows: dict[int, OutboxRow] = field(default_factory=dict)
    deletes: dict[int, int] = field(default_factory=dict)  # id -> payload size
    # for the main database
    stones: list[Tombstone] = field(default_factory=list)
    meta: dict[str, bytes] = field(default_factory=dict)
    epochs: dict[int, tuple[bytes, float]] = field(default_factory=dict)  # announcements

    def __bool__(self) -> bool:
        return bool(self.rows or self.deletes or self.main)

    @property
    def main(self) -> bool:
        """Return whether the batch holds something for the main database."""
        return bool(self.stones or self.meta or self.epochs)

    def main_part(self) -> Batch:
        """Return what of the batch goes to the main database."""
        return Batch(stones=self.stones, meta=self.meta, epochs=self.epochs)

    def rows_part(self) -> Batch:
        """Return what of the batch goes to outbox.db."""
        return Batch(self.rows, self.deletes)


def pending(row_id: int, row: OutboxRow) -> Pending:
    """Return ``row`` as the publisher sees it."""
    return Pending(row_id, row.topic, row.payload, row.device, row.category, row.retain)


class Unwritten:
    """Rows and changes queued in memory until the next group commit."""

    def __init__(self) -> None:
        self.batch = Batch()
        # the batch a group commit is writing: until it has committed, a reader of the table
        # may not see its rows yet, so the publisher still finds them here
        self.writing = Batch()
        self.recent: deque[Pending] = deque()
        self.written_batches = 0  # how many batches have left memory for the disk

    @property
    def rows(self) -> dict[int, OutboxRow]:
        """Return the rows not on disk yet, by id, oldest first."""
        return self.batch.rows

    def stage(self, first: int, rows: Sequence[OutboxRow]) -> None:
        """Queue ``rows``, which got the ids ``first`` on."""
        for i, row in enumerate(rows):
            self.batch.rows[first + i] = row
        if self.recent and self.recent[-1].id != first - 1:
            self.recent.clear()
        self.recent.extend(pending(first + i, row) for i, row in enumerate(rows))
        while len(self.recent) > RECENT_ROWS:
            self.recent.popleft()

    def forget(self, ids: Sequence[int]) -> None:
        """Acknowledged: drop rows not written yet; delete the others at the next commit."""
        rows, deletes = self.batch.rows, self.batch.deletes
        for i in ids:
            if rows.pop(i, None) is None:
                deletes[i] = 0

    def drop(self, dead: Callable[[int, OutboxRow], bool]) -> tuple[int, int]:
        """Forget the staged rows ``dead`` names (never written); return (rows, bytes)."""
        victims = [i for i, row in self.batch.rows.items() if dead(i, row)]
        size = sum(len(self.batch.rows.pop(i).payload) for i in victims)
        if victims:
            self.recent.clear()
        return len(victims), size

    def take(self, limit: int | None = None, *, main: bool = True) -> Batch:
        """Return what is queued, at most the ``limit`` oldest rows (kept as ``writing`` until
        ``written``), and the main database's part only if ``main``; what is left stays
        queued."""
        batch = self.batch
        if limit is None or len(batch.rows) <= limit:
            self.batch = Batch()
        else:
            ids = list(batch.rows)
            self.batch = Batch({i: batch.rows.pop(i) for i in ids[limit:]})
        if not main:
            self.batch.stones, self.batch.meta, self.batch.epochs = (
                batch.stones + self.batch.stones,
                {**batch.meta, **self.batch.meta},
                {**batch.epochs, **self.batch.epochs},
            )
            batch = batch.rows_part()
        self.writing = batch
        return batch

    def written(self) -> None:
        """The batch being written has committed: its rows are on disk."""
        self.writing = Batch()
        self.written_batches += 1

    def put_back(self, batch: Batch) -> None:
        """Queue ``batch`` again ahead of what came since (its commit rolled back)."""
        if batch.rows or batch.deletes:
            self.writing = Batch()
        now = self.batch
        self.batch = Batch(
            {**batch.rows, **now.rows},
            {**batch.deletes, **now.deletes},
            batch.stones + now.stones,
            {**batch.meta, **now.meta},
            {**batch.epochs, **now.epochs},
        )

    def from_recent(self, last_id: int, limit: int) -> list[Pending] | None:
        """Return up to ``limit`` rows after ``last_id`` from the cache, or None on a miss."""
        recent = self.recent
        while recent and recent[0].id <= last_id:
            recent.popleft()
        if recent and recent[0].id == last_id + 1:
            return [recent.popleft() for _ in range(min(limit, len(recent)))]
        return None

    def walk(self, after: int, newest: int, limit: int) -> list[Pending]:
        """Return up to ``limit`` staged rows with id > ``after``, in order (ids were given in
        order; gaps are rows acknowledged or purged before being written)."""
        rows, writing, acked = self.batch.rows, self.writing.rows, self.batch.deletes
        first = min(next(iter(writing), newest + 1), next(iter(rows), newest + 1))
        i = max(after, first - 1) + 1
        out: list[Pending] = []
        while len(out) < limit and i <= newest:
            row = rows.get(i) or writing.get(i)
            if row is not None and i not in acked:
                out.append(pending(i, row))
            i += 1
        return out

    def add_to(
        self, groups: dict[tuple[str, str], QueuedGroup], device: str | None
    ) -> list[QueuedGroup]:
        """Return ``groups`` (what is on disk) with the staged records (of ``device``) added,
        in (device, category) order."""
        for row in self.batch.rows.values():
            if row.category == EPOCH_CATEGORY or (device is not None and row.device != device):
                continue
            key = (row.device, row.category)
            seen = groups.get(key)
            groups[key] = QueuedGroup(
                row.device,
                row.category,
                (seen.records if seen else 0) + 1,
                (seen.bytes if seen else 0) + len(row.payload),
                min(seen.oldest, row.created) if seen else row.created,
                max(seen.newest, row.created) if seen else row.created,
                min(seen.expires, row.expires) if seen else row.expires,
            )
        return [groups[key] for key in sorted(groups)]
