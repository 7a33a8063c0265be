"""The SQL of the outbox's tables: sealed rows, tombstones, epoch announcements.

Called by ``gateway.outbox.store`` inside its transactions; nothing else runs SQL on these
tables. No secondary index on ``outbox``: every index costs on each insert and delete of the
hot path, while purges (consent withdrawal, erasure, retention) are rare and scan the table.
"""

from __future__ import annotations

import json
from typing import Final

import aiosqlite

from gateway.model import EPOCH_CATEGORY
from gateway.outbox.memory import Batch
from gateway.outbox.rows import Pending, QueuedGroup, Tombstone
from gateway.storage.db import set_meta

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
KEEP_EPOCHS: Final = 64


async def write_batch(db: aiosqlite.Connection, batch: Batch) -> bool:
    """Write ``batch`` (inside the caller's transaction); False if some deleted rows were gone
    already (purged meanwhile: the caller counts again)."""
    if batch.rows:
        await db.executemany(
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
                for i, r in batch.rows.items()
            ],
        )
        announcements = [r for r in batch.rows.values() if r.category == EPOCH_CATEGORY]
        if announcements:
            await db.executemany(
                "INSERT OR REPLACE INTO epochs (epoch, announcement, created) VALUES (?, ?, ?)",
                [(r.epoch, r.payload, r.created) for r in announcements],
            )
            newest = max(r.epoch for r in announcements)
            await db.execute("DELETE FROM epochs WHERE epoch <= ?", (newest - KEEP_EPOCHS,))
    for key, value in batch.meta.items():
        await set_meta(db, key, value)
    if batch.stones:
        await db.executemany(
            "INSERT OR IGNORE INTO tombstones (category, device, up_to) VALUES (?, ?, ?)",
            [(s.category, s.device or "", s.up_to) for s in batch.stones],
        )
    if not batch.deletes:
        return True
    async with db.execute(
        "DELETE FROM outbox WHERE id IN (SELECT value FROM json_each(?))",
        (json.dumps(list(batch.deletes)),),
    ) as cursor:
        return bool(cursor.rowcount == len(batch.deletes))


async def counts(db: aiosqlite.Connection) -> tuple[int, int]:
    """Return how many rows are on disk and their payload bytes."""
    async with db.execute(
        "SELECT COUNT(*), COALESCE(SUM(LENGTH(payload)), 0) FROM outbox"
    ) as cursor:
        row = await cursor.fetchone()
    assert row is not None
    return int(row[0]), int(row[1])


async def highest_id(db: aiosqlite.Connection) -> int:
    """Return the highest row id ever given (AUTOINCREMENT's, so ids are never reused)."""
    async with db.execute(
        "SELECT MAX(COALESCE((SELECT MAX(id) FROM outbox), 0), "
        "COALESCE((SELECT seq FROM sqlite_sequence WHERE name = 'outbox'), 0))"
    ) as cursor:
        row = await cursor.fetchone()
    return int(row[0]) if row else 0


async def tombstones(db: aiosqlite.Connection) -> list[Tombstone]:
    """Return the tombstones whose rows are not purged yet."""
    async with db.execute("SELECT category, device, up_to FROM tombstones") as cursor:
        return [Tombstone(c, d or None, int(u)) async for c, d, u in cursor]


async def after(db: aiosqlite.Connection, last_id: int, limit: int) -> list[Pending]:
    """Return up to ``limit`` rows on disk with id > ``last_id``, oldest first."""
    async with db.execute(
        "SELECT id, topic, payload, device, category, retain FROM outbox "
        "WHERE id > ? ORDER BY id LIMIT ?",
        (last_id, limit),
    ) as cursor:
        found = await cursor.fetchall()
    return [Pending(int(r[0]), r[1], bytes(r[2]), r[3], r[4], bool(r[5])) for r in found]


async def delete_where(
    db: aiosqlite.Connection, where: str, args: tuple[object, ...]
) -> tuple[int, int]:
    """Delete the rows ``where`` selects; return (rows, payload bytes) freed.

    One statement (aiosqlite costs a thread hop per await); RETURNING gives the freed sizes
    without a second scan (SQLite >= 3.35). ``where`` is a constant of the caller's.
    """
    async with db.execute(
        f"DELETE FROM outbox WHERE {where} RETURNING LENGTH(payload)",  # noqa: S608
        args,
    ) as cursor:
        sizes = list(await cursor.fetchall())
    return len(sizes), sum(int(s[0]) for s in sizes)


async def groups(
    db: aiosqlite.Connection, device: str | None
) -> dict[tuple[str, str], QueuedGroup]:
    """Return what is on disk (of ``device``) per device and category, announcements excepted."""
    where, args = "category != ?", [EPOCH_CATEGORY]
    if device is not None:
        where, args = where + " AND device = ?", [*args, device]
    async with db.execute(
        "SELECT device, category, COUNT(*), SUM(LENGTH(payload)), MIN(created), "  # noqa: S608 - constant clauses, values bound
        f"MAX(created), MIN(expires) FROM outbox WHERE {where} GROUP BY device, category",
        tuple(args),
    ) as cursor:
        return {
            (r[0], r[1]): QueuedGroup(
                r[0], r[1], int(r[2]), int(r[3]), float(r[4]), float(r[5]), float(r[6])
            )
            for r in await cursor.fetchall()
        }


async def announcements(db: aiosqlite.Connection, since_epoch: int) -> list[tuple[int, bytes]]:
    """Return the stored announcements of epochs >= ``since_epoch``, oldest first."""
    async with db.execute(
        "SELECT epoch, announcement FROM epochs WHERE epoch >= ? ORDER BY epoch",
        (since_epoch,),
    ) as cursor:
        rows = await cursor.fetchall()
    return [(int(r[0]), bytes(r[1])) for r in rows]


async def oldest_epoch(db: aiosqlite.Connection) -> int | None:
    """Return the lowest epoch that still has records on disk, or None."""
    async with db.execute(
        "SELECT MIN(epoch) FROM outbox WHERE category != ?", (EPOCH_CATEGORY,)
    ) as cursor:
        row = await cursor.fetchone()
    return None if row is None or row[0] is None else int(row[0])
