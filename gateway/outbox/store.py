"""The durable outbox: sealed records waiting for their PUBACK, in one SQLite table.

A reading counts as committed once its row is in this table; rows leave it only when the
broker acknowledged them (``delete``), when consent is withdrawn (``purge``), when their
retention expires (``expire``) or through the configured overflow policy, which is audited.
Epoch announcements live here too (category ``_epoch``) so they are re-sent after an outage
ahead of the records they key; the latest announcements are also kept in ``epochs`` for
``epoch/resend``.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Final

import aiosqlite

from gateway.audit.log import AuditLog
from gateway.config import OutboxConfig
from gateway.counters import Counters
from gateway.model import EPOCH_CATEGORY, OutboxRow
from gateway.storage.db import get_meta, set_meta, transaction

logger = logging.getLogger(__name__)

SCHEMA: Final = """
CREATE TABLE IF NOT EXISTS outbox (
    -- AUTOINCREMENT: ids are never reused after the table drains, so the publisher's
    -- "everything after the last id I sent" cursor never skips a new row.
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    topic TEXT NOT NULL,
    payload BLOB NOT NULL,
    device TEXT NOT NULL,
    category TEXT NOT NULL,
    epoch INTEGER NOT NULL,
    created REAL NOT NULL,
    expires REAL NOT NULL,
    retain INTEGER NOT NULL DEFAULT 0
);
-- No secondary index: every index costs on each insert and delete of the hot path, while
-- purges (consent withdrawal, erasure, retention) are rare and scan the table instead.
DROP INDEX IF EXISTS outbox_category;
CREATE TABLE IF NOT EXISTS tombstones (
    category TEXT NOT NULL,
    device TEXT NOT NULL,    -- '' for every device
    up_to INTEGER NOT NULL,
    PRIMARY KEY (category, device, up_to)
);
CREATE TABLE IF NOT EXISTS epochs (
    epoch INTEGER PRIMARY KEY,
    announcement BLOB NOT NULL,
    created REAL NOT NULL
);
"""
_INSERT: Final = (
    "INSERT INTO outbox (topic, payload, device, category, epoch, created, expires, retain) "
    "VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
)
EPOCH_KEY: Final = "epoch"
PREV_KEY: Final = "epoch_prev_hash"
KEEP_EPOCHS: Final = 64
RECENT_ROWS: Final = 20_000


@dataclass(frozen=True, slots=True)
class Tombstone:
    """Records of ``category`` (of ``device``, or every device) with id <= ``up_to`` are dead.

    A withdrawal writes one at once; the publisher never sends a row it covers, even if
    consent comes back before the rows are physically purged.
    """

    category: str
    device: str | None
    up_to: int

    def covers(self, row: Pending) -> bool:
        """Return whether ``row`` is one of the records this tombstone killed."""
        return (
            row.id <= self.up_to
            and row.category == self.category
            and (self.device is None or row.device == self.device)
        )


@dataclass(frozen=True, slots=True)
class Pending:
    """A row read back for publishing."""

    id: int
    topic: str
    payload: bytes
    device: str
    category: str
    retain: bool


class Outbox:
    """Batched, bounded, durable storage of sealed rows (one aiosqlite connection)."""

    def __init__(
        self,
        db: aiosqlite.Connection,
        config: OutboxConfig,
        counters: Counters,
        audit: AuditLog,
        clock: Callable[[], float] = time.time,
    ) -> None:
        # Rows committed most recently, in id order with no gaps, so the publisher can take
        # them without reading the payloads back from SQLite; cleared whenever rows vanish
        # by other ways than acknowledgement (purge, overflow, expiry) so it never resurrects
        # a deleted row.
        self._recent: deque[Pending] = deque()
        self._tombstones: list[Tombstone] = []
        self._last_id = 0
        self._db = db
        self._config = config
        self._counters = counters
        self._audit = audit
        self._clock = clock
        self.rows = 0
        self.bytes = 0
        self.appended = asyncio.Event()

    async def load(self) -> None:
        """Create the tables if needed and count what is queued."""
        await self._db.executescript(SCHEMA)
        await self._recount()
        async with self._db.execute("SELECT COALESCE(MAX(id), 0) FROM outbox") as cursor:
            row = await cursor.fetchone()
        self._last_id = int(row[0]) if row else 0
        async with self._db.execute("SELECT category, device, up_to FROM tombstones") as cursor:
            self._tombstones = [Tombstone(c, d or None, int(u)) async for c, d, u in cursor]

    async def last_epoch(self) -> tuple[int, bytes]:
        """Return the highest epoch ever announced and the hash of its announcement."""
        stored = await get_meta(self._db, EPOCH_KEY)
        prev = await get_meta(self._db, PREV_KEY)
        return (int(stored) if stored else 0), (prev or b"")

    async def append(self, rows: Sequence[OutboxRow], prev_hash: bytes | None = None) -> int:
        """Commit ``rows`` in one transaction (overflow policy first); return how many were kept.

        Announcement rows also update the persisted epoch counter (and ``prev_hash``, the hash
        of the newest announcement) in the same transaction, so epochs only go up.
        """
        if not rows:
            return 0
        async with transaction(self._db):
            rows = await self._make_room(rows)
            if not rows:
                return 0
            size = sum(len(r.payload) for r in rows)
            await self._db.executemany(
                _INSERT,
                [
                    (
                        r.topic,
                        r.payload,
                        r.device,
                        r.category,
                        r.epoch,
                        r.created,
                        r.expires,
                        int(r.retain),
                    )
                    for r in rows
                ],
            )
            async with self._db.execute("SELECT last_insert_rowid()") as cursor:
                last = await cursor.fetchone()
            announcements = [r for r in rows if r.category == EPOCH_CATEGORY]
            if announcements:
                await self._record_epochs(announcements, prev_hash)
            self.rows += len(rows)
            self.bytes += size
            self._last_id = int(last[0]) if last else self._last_id
            self._remember(rows, self._last_id)
        self.appended.set()
        return len(rows)

    def _remember(self, rows: Sequence[OutboxRow], last_id: int) -> None:
        # One writer and AUTOINCREMENT: the batch got the ids last_id-len+1 .. last_id.
        first = last_id - len(rows) + 1
        if self._recent and self._recent[-1].id != first - 1:
            self._recent.clear()
        self._recent.extend(
            Pending(first + i, r.topic, r.payload, r.device, r.category, r.retain)
            for i, r in enumerate(rows)
        )
        while len(self._recent) > RECENT_ROWS:
            self._recent.popleft()

    async def _record_epochs(self, rows: Sequence[OutboxRow], prev_hash: bytes | None) -> None:
        await self._db.executemany(
            "INSERT OR REPLACE INTO epochs (epoch, announcement, created) VALUES (?, ?, ?)",
            [(r.epoch, r.payload, r.created) for r in rows],
        )
        newest = max(r.epoch for r in rows)
        await set_meta(self._db, EPOCH_KEY, str(newest).encode())
        if prev_hash is not None:
            await set_meta(self._db, PREV_KEY, prev_hash)
        await self._db.execute("DELETE FROM epochs WHERE epoch <= ?", (newest - KEEP_EPOCHS,))

    def room_for_new(self) -> int | None:
        """Return how many more records a ``reject_new`` outbox takes by its row bound (0 once
        at either bound); None under ``drop_oldest``, which always makes room."""
        limits = self._config
        if limits.overflow != "reject_new":
            return None
        if self.bytes >= limits.max_bytes:
            return 0
        return max(0, limits.max_rows - self.rows)

    async def refuse(self, count: int) -> None:
        """Count and audit ``count`` records refused before sealing (beyond ``room_for_new``)."""
        self._counters.inc("outbox.overflow_rejected", count)
        await self._audit_overflow("reject_new", count)

    async def _make_room(self, rows: Sequence[OutboxRow]) -> Sequence[OutboxRow]:
        incoming = len(rows)
        incoming_bytes = sum(len(r.payload) for r in rows)
        over_rows = self.rows + incoming - self._config.max_rows
        over_bytes = self.bytes + incoming_bytes - self._config.max_bytes
        if over_rows <= 0 and over_bytes <= 0:
            return rows
        if self._config.overflow == "reject_new":
            # keep, in order, what still fits; announcements always (they key kept records)
            room_rows = self._config.max_rows - self.rows
            room_bytes = self._config.max_bytes - self.bytes
            kept = []
            for row in rows:
                size = len(row.payload)
                if row.category == EPOCH_CATEGORY or (room_rows > 0 and room_bytes >= size):
                    kept.append(row)
                    room_rows -= 1
                    room_bytes -= size
            # An announcement kept past the cap displaces the newest records: what stays is
            # still the oldest, and the outbox never holds more than its bounds.
            evicted = await self._evict_newest(kept, -room_rows, -room_bytes)
            dropped = incoming - len(kept) + evicted
            self._counters.inc("outbox.overflow_rejected", dropped)
            await self._audit_overflow("reject_new", dropped)
            return kept
        # drop_oldest: delete the oldest records (never announcements) until the batch fits.
        avg = max(1, (self.bytes + incoming_bytes) // max(1, self.rows + incoming))
        need = max(over_rows, -(-over_bytes // avg) if over_bytes > 0 else 0)
        async with self._db.execute(
            "SELECT id, LENGTH(payload) FROM outbox WHERE category != ? ORDER BY id LIMIT ?",
            (EPOCH_CATEGORY, need),
        ) as cursor:
            victims = [(int(i), int(n)) for i, n in await cursor.fetchall()]
        await self._delete_victims(victims)
        self._counters.inc("outbox.overflow_dropped", len(victims))
        await self._audit_overflow("drop_oldest", len(victims))
        return rows

    async def _evict_newest(self, batch: list[OutboxRow], rows: int, size: int) -> int:
        """Drop records (never announcements) newest first, from ``batch`` (in place) and then
        from the outbox, until ``rows`` rows and ``size`` bytes are freed; return how many."""
        evicted = 0
        for i in range(len(batch) - 1, -1, -1):
            if rows <= 0 and size <= 0:
                return evicted
            if batch[i].category != EPOCH_CATEGORY:
                rows, size, evicted = rows - 1, size - len(batch[i].payload), evicted + 1
                del batch[i]
        victims: list[tuple[int, int]] = []
        if rows > 0 or size > 0:
            async with self._db.execute(
                "SELECT id, LENGTH(payload) FROM outbox WHERE category != ? ORDER BY id DESC",
                (EPOCH_CATEGORY,),
            ) as cursor:
                async for victim_id, victim_size in cursor:
                    if rows <= 0 and size <= 0:
                        break
                    victims.append((int(victim_id), int(victim_size)))
                    rows, size = rows - 1, size - victims[-1][1]
            await self._delete_victims(victims)
        return evicted + len(victims)

    async def _delete_victims(self, victims: list[tuple[int, int]]) -> None:
        """Delete the rows ``victims`` names as (id, payload size); keep the counts right."""
        await self._db.executemany("DELETE FROM outbox WHERE id = ?", [(v[0],) for v in victims])
        self._recent.clear()
        self.rows -= len(victims)
        self.bytes -= sum(v[1] for v in victims)

    async def _audit_overflow(self, policy: str, count: int) -> None:
        # One audit entry per overflowing batch, with the count: the log stays readable.
        logger.warning("outbox full", extra={"policy": policy, "records": count})
        await self._audit.append("outbox.overflow", policy=policy, records=count)

    async def fetch_after(self, last_id: int, limit: int) -> list[Pending]:
        """Return up to ``limit`` rows with id > ``last_id``, oldest first."""
        recent = self._recent
        while recent and recent[0].id <= last_id:
            recent.popleft()
        if recent and recent[0].id == last_id + 1:
            return [recent.popleft() for _ in range(min(limit, len(recent)))]
        async with self._db.execute(
            "SELECT id, topic, payload, device, category, retain FROM outbox "
            "WHERE id > ? ORDER BY id LIMIT ?",
            (last_id, limit),
        ) as cursor:
            rows = await cursor.fetchall()
        return [Pending(int(r[0]), r[1], bytes(r[2]), r[3], r[4], bool(r[5])) for r in rows]

    async def delete(self, ids: Sequence[int], size: int) -> int:
        """Delete acknowledged rows (``size`` payload bytes in all) in one transaction.

        Returns how many rows were deleted; fewer than ``len(ids)`` when some were purged
        meanwhile, in which case the byte count is taken from the table again.
        """
        if not ids:
            return 0
        async with transaction(self._db):
            async with self._db.execute(
                "DELETE FROM outbox WHERE id IN (SELECT value FROM json_each(?))",
                (json.dumps(ids),),
            ) as cursor:
                removed = cursor.rowcount
            self.rows -= removed
            if removed == len(ids):
                self.bytes -= size
            else:
                await self._recount()
        return removed

    async def _recount(self) -> None:
        async with self._db.execute(
            "SELECT COUNT(*), COALESCE(SUM(LENGTH(payload)), 0) FROM outbox"
        ) as cursor:
            row = await cursor.fetchone()
        assert row is not None
        self.rows, self.bytes = int(row[0]), int(row[1])

    async def tombstone(self, category: str, device: str | None = None) -> Tombstone:
        """Kill every record of ``category`` (of ``device``) committed so far, durably.

        The rows stay on disk until ``purge(tombstone)`` deletes them; meanwhile ``is_dead``
        tells the publisher to skip them, across restarts too.
        """
        stone = Tombstone(category, device, self._last_id)
        self._tombstones.append(stone)
        async with transaction(self._db):
            await self._db.execute(
                "INSERT OR IGNORE INTO tombstones (category, device, up_to) VALUES (?, ?, ?)",
                (category, device or "", stone.up_to),
            )
        return stone

    @property
    def tombstones(self) -> tuple[Tombstone, ...]:
        """Return the tombstones whose rows are not purged yet."""
        return tuple(self._tombstones)

    def is_dead(self, row: Pending) -> bool:
        """Return whether a tombstone covers ``row`` (it must never be published)."""
        return any(stone.covers(row) for stone in self._tombstones)

    async def purge(self, stone: Tombstone) -> int:
        """Delete the rows ``stone`` covers, then forget it; return how many were deleted."""
        clauses = ["category = ?", "id <= ?"]
        args: list[object] = [stone.category, stone.up_to]
        if stone.device is not None:
            clauses.append("device = ?")
            args.append(stone.device)
        async with transaction(self._db):
            removed = await self._delete_where(" AND ".join(clauses), tuple(args))
            await self._db.execute(
                "DELETE FROM tombstones WHERE category = ? AND device = ? AND up_to = ?",
                (stone.category, stone.device or "", stone.up_to),
            )
        if stone in self._tombstones:
            self._tombstones.remove(stone)
        return removed

    async def purge_all(self, device: str | None = None) -> int:
        """Delete every queued record (of ``device``, if given), announcements excepted."""
        clauses, args = ["category != ?"], [EPOCH_CATEGORY]
        if device is not None:
            clauses.append("device = ?")
            args.append(device)
        async with transaction(self._db):
            return await self._delete_where(" AND ".join(clauses), tuple(args))

    async def expire(self, now: float | None = None) -> int:
        """Destroy records whose retention ran out; return how many."""
        moment = self._clock() if now is None else now
        async with transaction(self._db):
            return await self._delete_where(
                "expires <= ? AND category != ?", (moment, EPOCH_CATEGORY)
            )

    async def _delete_where(self, where: str, args: tuple[object, ...]) -> int:
        # Called inside the caller's transaction.
        # One statement per call (aiosqlite costs a thread hop per await); RETURNING gives the
        # freed sizes without a second scan (SQLite >= 3.35). ``where`` is a constant of ours.
        async with self._db.execute(
            f"DELETE FROM outbox WHERE {where} RETURNING LENGTH(payload)",  # noqa: S608
            args,
        ) as cursor:
            sizes = list(await cursor.fetchall())
        removed, freed = len(sizes), sum(int(s[0]) for s in sizes)
        if removed:
            self._recent.clear()
        self.rows -= removed
        self.bytes -= freed
        return removed

    async def announcements(self, since_epoch: int = 0) -> list[tuple[int, bytes]]:
        """Return the stored announcements of epochs >= ``since_epoch``, oldest first."""
        async with self._db.execute(
            "SELECT epoch, announcement FROM epochs WHERE epoch >= ? ORDER BY epoch",
            (since_epoch,),
        ) as cursor:
            rows = await cursor.fetchall()
        return [(int(r[0]), bytes(r[1])) for r in rows]

    async def oldest_epoch_queued(self) -> int | None:
        """Return the lowest epoch that still has records queued, or None."""
        async with self._db.execute(
            "SELECT MIN(epoch) FROM outbox WHERE category != ?", (EPOCH_CATEGORY,)
        ) as cursor:
            row = await cursor.fetchone()
        return None if row is None or row[0] is None else int(row[0])
