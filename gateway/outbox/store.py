"""The outbox: sealed records waiting for their PUBACK, group-committed to ``outbox.db``.

A record is queued once ``append`` returned: the publisher can send it from memory at once. It
reaches the disk in the next group commit (``commit``, run every ``[outbox] commit_interval_s``
by ``run``); a record the broker acknowledged before that is never written at all, and the
deletes of acknowledged records are batched into the same commits. With the broker up, the
disk sees a fraction of the records; with the broker down or slow, every record is written
once. Rows leave the outbox when the broker acknowledged them (``delete``), when consent is
withdrawn (``tombstone`` then ``purge``), when their retention expires (``expire``) or through
the configured overflow policy, which is audited. Epoch announcements live here too (category
``_epoch``) and are committed at once, so epoch numbers only go up across power cuts.

The files (gateway/storage/db.py, docs/storage.md): rows and their routes are in ``outbox.db``
(rollback journal: a row is written about once); tombstones, announcements and the epoch
counter in the main database. Order between the two: rows are deleted (and that commit is
durable) before the tombstone that killed them goes; a tombstone is written with the consent
change it belongs to, in the main database, before any row it covers is deleted.

Storage faults: a commit that fails keeps everything in memory (``StorageUnavailableError`` is
raised to ``commit``'s caller) and is retried by the next commit; meanwhile at most
``memory_rows`` records wait in memory, the publisher keeps sending them, and more are refused
with the counter ``dropped.storage_unavailable``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Sequence
from typing import Final

import aiosqlite

from gateway.audit.log import AuditLog
from gateway.config import OutboxConfig
from gateway.counters import Counters
from gateway.errors import StorageUnavailableError
from gateway.model import EPOCH_CATEGORY, OutboxRow
from gateway.outbox import overflow, table
from gateway.outbox.announcements import EPOCH_KEY, PREV_KEY, Announcements
from gateway.outbox.capacity import Capacity
from gateway.outbox.memory import Batch, Unwritten
from gateway.outbox.rows import Pending, QueuedGroup, Tombstone
from gateway.storage.db import (
    OUTBOX_FORMAT,
    in_transaction,
    on_commit,
    on_rollback,
    open_outbox,
    storage_health,
    transaction,
)

logger = logging.getLogger(__name__)

COMMIT_CHUNK: Final = 1000  # rows per group-commit transaction


class Outbox(Capacity, Announcements):
    """Batched, bounded, group-committed storage of sealed rows (``outbox.db`` beside the main
    database ``db``, whose connection holds tombstones and announcements)."""

    def __init__(
        self,
        db: aiosqlite.Connection,
        config: OutboxConfig,
        counters: Counters,
        audit: AuditLog,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._memory = Unwritten()  # what the next group commit writes, and the recent cache
        self._tombstones: list[Tombstone] = []
        self._last_id = 0
        self._db = db
        self._box = db  # outbox.db's connection, from ``load`` on
        self._routes: dict[table.Route, int] = {}
        self._next_route = 1
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
        """Open ``outbox.db``, create the tables if needed and count what is queued."""
        self._box = box = await open_outbox(self._db)
        await self._db.executescript(table.MAIN_SCHEMA)
        async with box.execute("PRAGMA user_version") as cursor:
            found = await cursor.fetchone()
        if found is not None and int(found[0]) not in (0, OUTBOX_FORMAT):  # an older format
            await box.executescript("DROP TABLE IF EXISTS outbox; DROP TABLE IF EXISTS routes;")
        await box.executescript(f"{table.BOX_SCHEMA}PRAGMA user_version = {OUTBOX_FORMAT};")
        self._routes = await table.routes(box)
        self._next_route = max(self._routes.values(), default=0) + 1
        await self._recount()
        self._last_id = await table.highest_id(box, self._db)
        self._tombstones = await table.tombstones(self._db)
        await self.catch_up_epoch()

    @property
    def box(self) -> aiosqlite.Connection:
        """Return the connection to ``outbox.db``."""
        return self._box

    @property
    def last_id(self) -> int:
        """Return the id of the newest queued row."""
        return self._last_id

    @property
    def staged(self) -> int:
        """Return how many queued records are not on disk yet."""
        return len(self._memory.rows)

    async def append(self, rows: Sequence[OutboxRow], prev_hash: bytes | None = None) -> int:
        """Queue ``rows`` (overflow policy first); return how many were kept.

        Records wait for the next group commit; announcement rows are committed at once with
        the persisted epoch counter (and ``prev_hash``, the hash of the newest announcement),
        so epochs only go up.
        """
        if not rows:
            return 0
        rows = self._within_memory(rows)
        size = sum(len(r.payload) for r in rows)
        over = not overflow.fits(self._config, self.rows, self.bytes, len(rows), size)
        if over and self.health.fault is None:
            with contextlib.suppress(StorageUnavailableError):  # then the memory bound holds
                async with transaction(self._db), transaction(self._box):
                    await self.write_pending()
                    rows = list(await self.make_room(rows))
                    size = sum(len(r.payload) for r in rows)
        if not rows:
            return 0
        self._memory.stage(self._last_id + 1, rows)
        self._last_id += len(rows)
        self.rows += len(rows)
        self.bytes += size
        announcements = [r for r in rows if r.category == EPOCH_CATEGORY]
        if announcements:
            staged = self._memory.batch
            staged.meta[EPOCH_KEY] = str(max(r.epoch for r in announcements)).encode()
            if prev_hash is not None:
                staged.meta[PREV_KEY] = prev_hash
            staged.epochs.update({r.epoch: (r.payload, r.created) for r in announcements})
        if announcements or self._config.commit_interval_s == 0:
            with contextlib.suppress(StorageUnavailableError):  # kept in memory, retried
                await self.commit()
        self.appended.set()
        return len(rows)

    def _within_memory(self, rows: Sequence[OutboxRow]) -> Sequence[OutboxRow]:
        """While storage is faulty, refuse (count) records beyond ``memory_rows`` in memory."""
        if self.health.fault is None:
            return rows
        room = self._config.memory_rows - len(self._memory.rows)
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
        written = 0
        # in chunks: an acknowledged change waiting for the database lock (a withdrawal) waits
        # for one chunk, not for a whole second's worth of an outage's records; what arrives
        # meanwhile waits for the next commit
        for _ in range(len(self._memory.rows) // COMMIT_CHUNK + 1):
            if not self._memory.batch:
                break
            if self._memory.batch.main:  # main first, then outbox.db: the lock order
                async with transaction(self._db), transaction(self._box):
                    written += await self.write_pending(COMMIT_CHUNK)
            else:  # records only: the main database stays free for acknowledged changes
                async with transaction(self._box):
                    written += await self.write_pending(COMMIT_CHUNK)
            self.commits += 1
        return written

    async def run(self) -> None:
        """Group-commit every ``commit_interval_s`` forever; a storage fault is retried."""
        interval = max(self._config.commit_interval_s, 0.05)
        while True:
            await asyncio.sleep(interval)
            with contextlib.suppress(StorageUnavailableError):  # reported on health, retried
                await self.commit()

    async def write_pending(self, limit: int | None = None) -> int:
        """Write the staged rows (the ``limit`` oldest) and deletes to outbox.db (in the
        caller's transaction on it, else in one of their own, committed on return), and, if
        the caller has a transaction open on the main database, the tombstones,
        announcements and epoch counter in it; return rows written. A rollback of either
        puts its part back."""
        main = in_transaction(self._db)
        # taken under outbox.db's lock: one batch is being written at a time, and the publisher
        # finds its rows in memory (``writing``) until they are committed
        async with transaction(self._box):
            batch = self._memory.take(limit, main=main)
            if batch.main:
                part = batch.main_part()
                on_rollback(self._db, lambda: self._memory.put_back(part))
                await table.write_main(self._db, part)
            rows = batch.rows_part()
            if not rows:
                self._memory.written()
                return 0
            on_rollback(self._box, lambda: self._memory.put_back(rows))
            on_commit(self._box, self._memory.written)
            if not await table.write_rows(self._box, rows, await self._route_ids(rows)):
                await self._recount()  # some deleted rows were purged meanwhile
        return len(rows.rows)

    async def _route_ids(self, batch: Batch) -> dict[int, int]:
        """Return the route id of each row of ``batch``; write the routes new in it (inside
        the open transaction on outbox.db)."""
        known, ids = self._routes, {}
        new: list[tuple[int, table.Route]] = []
        for i, row in batch.rows.items():
            route = table.route_of(row)
            route_id = known.get(route)
            if route_id is None:
                route_id = known[route] = self._next_route
                self._next_route += 1
                new.append((route_id, route))
            ids[i] = route_id
        if new:

            def forget() -> None:
                for _, route in new:
                    known.pop(route, None)

            on_rollback(self._box, forget)
            await table.write_routes(self._box, new)
        return ids

    async def fetch_after(self, last_id: int, limit: int) -> list[Pending]:
        """Return up to ``limit`` queued rows with id > ``last_id``, oldest first."""
        cached = self._memory.from_recent(last_id, limit)
        if cached is not None:
            return cached
        written = -1
        while written != self._memory.written_batches:  # a commit that ended meanwhile moved
            written = self._memory.written_batches  # staged rows behind the read: read again
            rows, after, more = await self._on_disk_after(last_id, limit)
        # with nothing more on disk, the staged rows are all newer
        return rows if more else rows + self._memory.walk(after, self._last_id, limit - len(rows))

    async def _on_disk_after(self, last_id: int, limit: int) -> tuple[list[Pending], int, bool]:
        """Return up to ``limit`` rows on disk after ``last_id`` (not the acknowledged ones),
        the id read up to, and whether the disk may hold more."""
        deletes = self._memory.batch.deletes
        rows: list[Pending] = []
        after = last_id
        while len(rows) < limit:
            wanted = limit - len(rows)
            found = await table.after(self._box, after, wanted)
            rows += [row for row in found if row.id not in deletes]
            if found:
                after = found[-1].id
            if len(found) < wanted:
                return rows, after, False
        return rows, after, True

    def delete(self, ids: Sequence[int], size: int) -> int:
        """Forget acknowledged rows (``size`` payload bytes in all); return how many.

        A row not on disk yet is dropped from memory and never written; the deletes of rows
        on disk are written with the next group commit.
        """
        self._memory.forget(ids)
        self.rows -= len(ids)
        self.bytes -= size
        return len(ids)

    async def _recount(self) -> None:
        on_disk, size = await table.counts(self._box)
        staged = self._memory.rows
        self.rows = on_disk + len(staged) - len(self._memory.batch.deletes)
        self.bytes = size + sum(len(r.payload) for r in staged.values())

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
            on_rollback(self._db, lambda: self._memory.batch.stones.append(stone))
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
        rows, size = self._memory.drop(dead)
        self.rows -= rows
        self.bytes -= size
        return rows

    async def purge(self, stone: Tombstone) -> int:
        """Delete the rows ``stone`` covers, then forget it; return how many were deleted.

        The deletion commits (outbox.db) before the tombstone's removal (main database, in
        the caller's transaction if one is open): a power cut between them leaves the
        tombstone with nothing or less to cover, never rows without their tombstone."""
        removed = self._drop_staged(
            lambda i, r: (
                i <= stone.up_to
                and r.category == stone.category
                and (stone.device is None or r.device == stone.device)
            )
        )
        where = f"id <= ? AND {table.OF_CATEGORY}"
        args: tuple[object, ...] = (stone.up_to, stone.category)
        if stone.device is not None:
            where, args = f"id <= ? AND {table.OF_CATEGORY_DEVICE}", (*args, stone.device)
        async with transaction(self._db):
            async with transaction(self._box):
                await self.write_pending()
                removed += await self._delete_where(where, args)
            await table.delete_tombstone(self._db, stone)
            if stone in self._tombstones:  # a rollback puts it back: its rows stay dead
                self._tombstones.remove(stone)
                on_rollback(self._db, lambda: self._tombstones.append(stone))
        return removed

    async def purge_all(self, device: str | None = None) -> int:
        """Delete every queued record (of ``device``, if given), announcements excepted, and
        the routes that named it; committed on return (before the caller's transaction on the
        main database, such as an erasure's, commits)."""
        removed = self._drop_staged(
            lambda _, r: r.category != EPOCH_CATEGORY and (device is None or r.device == device)
        )
        where, args = (table.RECORDS, ()) if device is None else (table.OF_DEVICE, (device,))
        async with transaction(self._box):
            await self.write_pending()
            removed += await self._delete_where(where, args)
            gone = set(await table.delete_routes(self._box, device))
            for route in [r for r, i in self._routes.items() if i in gone]:
                del self._routes[route]
        return removed

    async def expire(self, now: float | None = None) -> int:
        """Destroy records whose retention ran out; return how many."""
        moment = self._clock() if now is None else now
        removed = self._drop_staged(
            lambda _, r: r.expires <= moment and r.category != EPOCH_CATEGORY
        )
        async with transaction(self._box):
            await self.write_pending()
            return removed + await self._delete_where(
                f"{table.EXPIRED} AND {table.RECORDS}", (moment,)
            )

    async def _delete_where(self, where: str, args: tuple[object, ...]) -> int:
        # Called inside the caller's transaction, after _write_pending (nothing acknowledged
        # is left on disk, so every row deleted here is counted once).
        # One statement per call (aiosqlite costs a thread hop per await); RETURNING gives the
        # freed sizes without a second scan (SQLite >= 3.35). ``where`` is a constant of ours.
        removed, freed = await table.delete_where(self._box, where, args)
        if removed:
            self._memory.recent.clear()
        self.rows -= removed
        self.bytes -= freed
        return removed

    async def queued(self, device: str | None = None) -> list[QueuedGroup]:
        """Return what is queued (of ``device``) per device and category, announcements
        excepted, in (device, category) order."""
        with contextlib.suppress(StorageUnavailableError):  # then the disk is a moment behind
            await self.commit()
        groups = await table.groups(self._box, device)
        return self._memory.add_to(groups, device)
