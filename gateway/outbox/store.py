"""The outbox: sealed records waiting for their PUBACK, group-committed to one SQLite table.

A record is queued once ``append`` returned: the publisher can send it from memory at once. It
reaches the disk in the next group commit (``commit``, run every ``[outbox] commit_interval_s``
by ``run``); a record the broker acknowledged before that is never written at all, and the
deletes of acknowledged records are batched into the same commits. With the broker up, the
disk sees a fraction of the records; with the broker down or slow, every record is written
once. Rows leave the outbox when the broker acknowledged them (``delete``), when consent is
withdrawn (``tombstone`` then ``purge``), when their retention expires (``expire``) or through
the configured overflow policy, which is audited. Epoch announcements live here too (category
``_epoch``) and are committed at once, so epoch numbers only go up across power cuts.

Storage faults: a commit that fails keeps everything in memory (``StorageUnavailableError`` is
raised to ``commit``'s caller) and is retried by the next commit; meanwhile at most
``memory_rows`` records wait in memory, the publisher keeps sending them, and more are refused
with the counter ``dropped.storage_unavailable``.
"""

from __future__ import annotations

import asyncio
import contextlib
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
from gateway.errors import StorageUnavailableError
from gateway.model import EPOCH_CATEGORY, OutboxRow
from gateway.storage.db import get_meta, on_rollback, set_meta, storage_health, transaction

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
    "INSERT INTO outbox (id, topic, payload, device, category, epoch, created, expires, retain) "
    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"
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
class QueuedGroup:
    """What is queued of one device and category (for exports and erasure)."""

    device: str
    category: str
    records: int
    bytes: int
    oldest: float
    newest: float
    expires: float


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
    """Batched, bounded, group-committed storage of sealed rows (one aiosqlite connection)."""

    def __init__(
        self,
        db: aiosqlite.Connection,
        config: OutboxConfig,
        counters: Counters,
        audit: AuditLog,
        clock: Callable[[], float] = time.time,
    ) -> None:
        # Rows queued most recently, in id order with no gaps, so the publisher can take
        # them without reading the payloads back from SQLite; cleared whenever rows vanish
        # by other ways than acknowledgement (purge, overflow, expiry) so it never resurrects
        # a deleted row.
        self._recent: deque[Pending] = deque()
        # Not on disk yet: rows (all newer than any row on disk), deletes of acknowledged rows
        # that are on disk (id -> size), tombstones, and the epoch counter.
        self._staged: dict[int, OutboxRow] = {}
        self._deletes: dict[int, int] = {}
        self._unsaved_stones: list[Tombstone] = []
        self._epoch_meta: dict[str, bytes] = {}
        self._tombstones: list[Tombstone] = []
        self._last_id = 0
        self._db = db
        self._config = config
        self._counters = counters
        self._audit = audit
        self._clock = clock
        self.health = storage_health(db)
        self.rows = 0
        self.bytes = 0
        self.commits = 0
        self.appended = asyncio.Event()

    async def load(self) -> None:
        """Create the tables if needed and count what is queued."""
        await self._db.executescript(SCHEMA)
        await self._recount()
        async with self._db.execute(
            "SELECT MAX(COALESCE((SELECT MAX(id) FROM outbox), 0), "
            "COALESCE((SELECT seq FROM sqlite_sequence WHERE name = 'outbox'), 0))"
        ) as cursor:
            row = await cursor.fetchone()
        self._last_id = int(row[0]) if row else 0
        async with self._db.execute("SELECT category, device, up_to FROM tombstones") as cursor:
            self._tombstones = [Tombstone(c, d or None, int(u)) async for c, d, u in cursor]

    async def last_epoch(self) -> tuple[int, bytes]:
        """Return the highest epoch ever announced and the hash of its announcement."""
        stored = await get_meta(self._db, EPOCH_KEY)
        prev = await get_meta(self._db, PREV_KEY)
        return (int(stored) if stored else 0), (prev or b"")

    @property
    def last_id(self) -> int:
        """Return the id of the newest queued row."""
        return self._last_id

    @property
    def staged(self) -> int:
        """Return how many queued records are not on disk yet."""
        return len(self._staged)

    async def append(self, rows: Sequence[OutboxRow], prev_hash: bytes | None = None) -> int:
        """Queue ``rows`` (overflow policy first); return how many were kept.

        Records wait for the next group commit; announcement rows are committed at once with
        the persisted epoch counter (and ``prev_hash``, the hash of the newest announcement),
        so epochs only go up.
        """
        if not rows:
            return 0
        rows = self._within_memory(rows)
        incoming_bytes = sum(len(r.payload) for r in rows)
        over = (
            self.rows + len(rows) > self._config.max_rows
            or self.bytes + incoming_bytes > self._config.max_bytes
        )
        if over and self.health.fault is None:
            with contextlib.suppress(StorageUnavailableError):  # then the memory bound holds
                async with transaction(self._db):
                    await self.write_pending()
                    rows = list(await self._make_room(rows))
        if not rows:
            return 0
        first = self._last_id + 1
        for i, row in enumerate(rows):
            self._staged[first + i] = row
        self._last_id = first + len(rows) - 1
        self.rows += len(rows)
        self.bytes += sum(len(r.payload) for r in rows)
        self._remember(rows, self._last_id)
        announcements = [r for r in rows if r.category == EPOCH_CATEGORY]
        if announcements:
            self._epoch_meta[EPOCH_KEY] = str(max(r.epoch for r in announcements)).encode()
            if prev_hash is not None:
                self._epoch_meta[PREV_KEY] = prev_hash
        if announcements or self._config.commit_interval_s == 0:
            with contextlib.suppress(StorageUnavailableError):  # kept in memory, retried
                await self.commit()
        self.appended.set()
        return len(rows)

    def _within_memory(self, rows: Sequence[OutboxRow]) -> Sequence[OutboxRow]:
        """While storage is faulty, refuse (count) records beyond ``memory_rows`` in memory."""
        if self.health.fault is None:
            return rows
        room = self._config.memory_rows - len(self._staged)
        kept = [r for r in rows if r.category == EPOCH_CATEGORY]
        records = [r for r in rows if r.category != EPOCH_CATEGORY]
        if len(records) <= room:
            return rows
        self._counters.inc("dropped.storage_unavailable", len(records) - max(0, room))
        return kept + records[: max(0, room)]

    async def commit(self) -> int:
        """Write what is queued in memory in one durable transaction; return rows written.

        Raises ``StorageUnavailableError`` (everything stays in memory) when storage is faulty.
        """
        if not (self._staged or self._deletes or self._unsaved_stones or self._epoch_meta):
            return 0
        async with transaction(self._db):
            written = await self.write_pending()
        self.commits += 1
        return written

    async def run(self) -> None:
        """Group-commit every ``commit_interval_s`` forever; a storage fault is retried."""
        interval = max(self._config.commit_interval_s, 0.05)
        while True:
            await asyncio.sleep(interval)
            with contextlib.suppress(StorageUnavailableError):  # reported on health, retried
                await self.commit()

    async def write_pending(self) -> int:
        """Write the staged rows, deletes, tombstones and epoch counter inside the caller's
        transaction; return rows written. A rollback puts them back in memory."""
        staged, deletes = self._staged, self._deletes
        stones, meta = self._unsaved_stones, self._epoch_meta
        if not (staged or deletes or stones or meta):
            return 0
        self._staged, self._deletes, self._unsaved_stones, self._epoch_meta = {}, {}, [], {}
        on_rollback(self._db, lambda: self._unwrite(staged, deletes, stones, meta))
        if staged:
            await self._db.executemany(
                _INSERT,
                [
                    (
                        i,
                        r.topic,
                        r.payload,
                        r.device,
                        r.category,
                        r.epoch,
                        r.created,
                        r.expires,
                        int(r.retain),
                    )
                    for i, r in staged.items()
                ],
            )
            announcements = [r for r in staged.values() if r.category == EPOCH_CATEGORY]
            if announcements:
                await self._db.executemany(
                    "INSERT OR REPLACE INTO epochs (epoch, announcement, created) VALUES (?, ?, ?)",
                    [(r.epoch, r.payload, r.created) for r in announcements],
                )
                newest = max(r.epoch for r in announcements)
                await self._db.execute(
                    "DELETE FROM epochs WHERE epoch <= ?", (newest - KEEP_EPOCHS,)
                )
        if meta:
            for key, value in meta.items():
                await set_meta(self._db, key, value)
        if stones:
            await self._db.executemany(
                "INSERT OR IGNORE INTO tombstones (category, device, up_to) VALUES (?, ?, ?)",
                [(s.category, s.device or "", s.up_to) for s in stones],
            )
        if deletes:
            async with self._db.execute(
                "DELETE FROM outbox WHERE id IN (SELECT value FROM json_each(?))",
                (json.dumps(list(deletes)),),
            ) as cursor:
                removed = cursor.rowcount
            if removed != len(deletes):  # some were purged meanwhile: count again
                await self._recount()
        return len(staged)

    def _unwrite(
        self,
        staged: dict[int, OutboxRow],
        deletes: dict[int, int],
        stones: list[Tombstone],
        meta: dict[str, bytes],
    ) -> None:
        # the older staged rows come first again; acknowledgements that arrived meanwhile
        # were recorded as deletes and are applied after the rows are written
        self._staged = {**staged, **self._staged}
        self._deletes = {**deletes, **self._deletes}
        self._unsaved_stones = stones + self._unsaved_stones
        self._epoch_meta = {**meta, **self._epoch_meta}

    def _remember(self, rows: Sequence[OutboxRow], last_id: int) -> None:
        # The batch got the ids last_id-len+1 .. last_id.
        first = last_id - len(rows) + 1
        if self._recent and self._recent[-1].id != first - 1:
            self._recent.clear()
        self._recent.extend(
            Pending(first + i, r.topic, r.payload, r.device, r.category, r.retain)
            for i, r in enumerate(rows)
        )
        while len(self._recent) > RECENT_ROWS:
            self._recent.popleft()

    def room_for_new(self) -> int | None:
        """Return how many more records the outbox takes now: by ``memory_rows`` while
        storage is faulty, by the row bound under ``reject_new`` (0 once at either bound);
        None under ``drop_oldest`` with healthy storage, which always makes room."""
        limits = self._config
        if self.health.fault is not None:
            return max(0, limits.memory_rows - len(self._staged))
        if limits.overflow != "reject_new":
            return None
        if self.bytes >= limits.max_bytes:
            return 0
        return max(0, limits.max_rows - self.rows)

    async def refuse(self, count: int) -> None:
        """Count (and audit, when storage can take it) ``count`` records refused before sealing
        (beyond ``room_for_new``)."""
        if self.health.fault is not None:
            self._counters.inc("dropped.storage_unavailable", count)
            return
        self._counters.inc("outbox.overflow_rejected", count)
        with contextlib.suppress(StorageUnavailableError):
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
        """Return up to ``limit`` queued rows with id > ``last_id``, oldest first."""
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
            found = await cursor.fetchall()
        rows = [
            Pending(int(r[0]), r[1], bytes(r[2]), r[3], r[4], bool(r[5]))
            for r in found
            if int(r[0]) not in self._deletes
        ]
        # then the staged rows, newer than anything on disk; ids were given in order, so walk
        # them from the cursor (gaps are rows acknowledged or purged before being written)
        i = max(rows[-1].id if rows else last_id, self._first_staged() - 1) + 1
        staged = self._staged
        while len(rows) < limit and i <= self._last_id:
            row = staged.get(i)
            if row is not None:
                rows.append(
                    Pending(i, row.topic, row.payload, row.device, row.category, row.retain)
                )
            i += 1
        return rows

    def _first_staged(self) -> int:
        """Return the lowest staged id (the dict keeps ids in the order they were given)."""
        return next(iter(self._staged), self._last_id + 1)

    def delete(self, ids: Sequence[int], size: int) -> int:
        """Forget acknowledged rows (``size`` payload bytes in all); return how many.

        A row not on disk yet is dropped from memory and never written; the deletes of rows
        on disk are written with the next group commit.
        """
        for i in ids:
            if self._staged.pop(i, None) is None:
                self._deletes[i] = 0
        self.rows -= len(ids)
        self.bytes -= size
        return len(ids)

    async def _recount(self) -> None:
        async with self._db.execute(
            "SELECT COUNT(*), COALESCE(SUM(LENGTH(payload)), 0) FROM outbox"
        ) as cursor:
            row = await cursor.fetchone()
        assert row is not None
        self.rows = int(row[0]) + len(self._staged) - len(self._deletes)
        self.bytes = int(row[1]) + sum(len(r.payload) for r in self._staged.values())

    async def tombstone(self, category: str, device: str | None = None) -> Tombstone:
        """Kill every record of ``category`` (of ``device``) queued so far.

        It holds in memory at once (``is_dead``) and is written in the caller's transaction;
        if that rolls back it is kept and written by the next successful commit. The rows
        stay until ``purge(tombstone)`` deletes them; meanwhile ``is_dead`` tells the publisher
        to skip them, across restarts too.
        """
        stone = Tombstone(category, device, self._last_id)
        self._tombstones.append(stone)
        async with transaction(self._db):
            on_rollback(self._db, lambda: self._unsaved_stones.append(stone))
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

    def _drop_staged(self, dead: Callable[[int, OutboxRow], bool]) -> int:
        """Forget staged rows for which ``dead(id, row)`` holds (never written); return how many."""
        victims = [i for i, row in self._staged.items() if dead(i, row)]
        for i in victims:
            row = self._staged.pop(i)
            self.rows -= 1
            self.bytes -= len(row.payload)
        if victims:
            self._recent.clear()
        return len(victims)

    async def purge(self, stone: Tombstone) -> int:
        """Delete the rows ``stone`` covers, then forget it; return how many were deleted."""
        removed = self._drop_staged(
            lambda i, r: (
                i <= stone.up_to
                and r.category == stone.category
                and (stone.device is None or r.device == stone.device)
            )
        )
        clauses = ["category = ?", "id <= ?"]
        args: list[object] = [stone.category, stone.up_to]
        if stone.device is not None:
            clauses.append("device = ?")
            args.append(stone.device)
        async with transaction(self._db):
            await self.write_pending()
            removed += await self._delete_where(" AND ".join(clauses), tuple(args))
            await self._db.execute(
                "DELETE FROM tombstones WHERE category = ? AND device = ? AND up_to = ?",
                (stone.category, stone.device or "", stone.up_to),
            )
            if stone in self._tombstones:  # a rollback puts it back: its rows stay dead
                self._tombstones.remove(stone)
                on_rollback(self._db, lambda: self._tombstones.append(stone))
        return removed

    async def purge_all(self, device: str | None = None) -> int:
        """Delete every queued record (of ``device``, if given), announcements excepted."""
        removed = self._drop_staged(
            lambda _, r: r.category != EPOCH_CATEGORY and (device is None or r.device == device)
        )
        clauses, args = ["category != ?"], [EPOCH_CATEGORY]
        if device is not None:
            clauses.append("device = ?")
            args.append(device)
        async with transaction(self._db):
            await self.write_pending()
            return removed + await self._delete_where(" AND ".join(clauses), tuple(args))

    async def expire(self, now: float | None = None) -> int:
        """Destroy records whose retention ran out; return how many."""
        moment = self._clock() if now is None else now
        removed = self._drop_staged(
            lambda _, r: r.expires <= moment and r.category != EPOCH_CATEGORY
        )
        async with transaction(self._db):
            await self.write_pending()
            return removed + await self._delete_where(
                "expires <= ? AND category != ?", (moment, EPOCH_CATEGORY)
            )

    async def _delete_where(self, where: str, args: tuple[object, ...]) -> int:
        # Called inside the caller's transaction, after _write_pending (nothing acknowledged
        # is left on disk, so every row deleted here is counted once).
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

    async def queued(self, device: str | None = None) -> list[QueuedGroup]:
        """Return what is queued (of ``device``) per device and category, announcements
        excepted, in (device, category) order."""
        with contextlib.suppress(StorageUnavailableError):  # then the disk is a moment behind
            await self.commit()
        where, args = "category != ?", [EPOCH_CATEGORY]
        if device is not None:
            where, args = where + " AND device = ?", [*args, device]
        async with self._db.execute(
            "SELECT device, category, COUNT(*), SUM(LENGTH(payload)), MIN(created), "  # noqa: S608 - constant clauses, values bound
            f"MAX(created), MIN(expires) FROM outbox WHERE {where} GROUP BY device, category",
            tuple(args),
        ) as cursor:
            groups = {
                (r[0], r[1]): QueuedGroup(
                    r[0], r[1], int(r[2]), int(r[3]), float(r[4]), float(r[5]), float(r[6])
                )
                for r in await cursor.fetchall()
            }
        for row in self._staged.values():
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
