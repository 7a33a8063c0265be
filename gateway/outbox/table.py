"""The SQL of the outbox's tables: sealed rows and their routes in ``outbox.db``; tombstones
and epoch announcements in the main database.

Called by ``gateway.outbox.store`` inside its transactions; nothing else runs SQL on these
tables. A row holds what differs per record (its id, route, epoch, creation second and the
sealed payload: about 20 bytes beside the payload); what many rows share (topic, device,
category, retain, time to live) is a route, written once. No secondary index on ``outbox``:
every index costs on each insert and delete of the hot path, while purges (consent
withdrawal, erasure, retention) are rare and scan the table.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable
from typing import Final, NamedTuple

import aiosqlite

from gateway.model import EPOCH_CATEGORY, OutboxRow
from gateway.outbox.memory import Batch
from gateway.outbox.rows import Pending, QueuedGroup, Tombstone
from gateway.storage.db import set_metas

# In the main database (WAL): small, written with the changes they belong to.
MAIN_SCHEMA: Final = """
-- the queue lives in outbox.db (its own file, rollback journal); an older format's table goes
DROP TABLE IF EXISTS outbox;
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
# In outbox.db. Row ids are given by the outbox (never reused while a tombstone names them:
# gateway.outbox.store.Outbox.load), so no AUTOINCREMENT and its per-commit sqlite_sequence
# write. Times are whole seconds: a row expires at created + its route's ttl, created rounded
# down and ttl up by a second more (never destroyed early, at most two seconds late).
BOX_SCHEMA: Final = """
CREATE TABLE IF NOT EXISTS routes (
    id INTEGER PRIMARY KEY,
    topic TEXT NOT NULL,
    device TEXT NOT NULL,
    category TEXT NOT NULL,
    retain INTEGER NOT NULL,
    ttl INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS outbox (
    id INTEGER PRIMARY KEY,
    route INTEGER NOT NULL,
    epoch INTEGER NOT NULL,
    created INTEGER NOT NULL,
    payload BLOB NOT NULL
);
"""
KEEP_EPOCHS: Final = 64
# WHERE clauses on outbox rows by what their route says (constants: values are bound)
RECORDS: Final = "route NOT IN (SELECT id FROM routes WHERE category = '_epoch')"
assert EPOCH_CATEGORY == "_epoch"  # the constant above spells it
OF_DEVICE: Final = "route IN (SELECT id FROM routes WHERE device = ?)"
OF_CATEGORY: Final = "route IN (SELECT id FROM routes WHERE category = ?)"
OF_CATEGORY_DEVICE: Final = "route IN (SELECT id FROM routes WHERE category = ? AND device = ?)"
EXPIRED: Final = "created + (SELECT ttl FROM routes WHERE routes.id = outbox.route) <= ?"


class Route(NamedTuple):
    """What rows share: where they are published, whose they are, what they hold, how long
    they live (whole seconds)."""

    topic: str
    device: str
    category: str
    retain: bool
    ttl: int


def route_of(row: OutboxRow) -> Route:
    """Return the route of ``row``: its time to live rounded up so that the stored creation
    second (rounded down) plus it is never before ``row.expires``."""
    ttl = max(0, math.ceil(row.expires - row.created)) + 1
    return Route(row.topic, row.device, row.category, row.retain, ttl)


async def write_main(db: aiosqlite.Connection, batch: Batch) -> None:
    """Write ``batch``'s announcements, epoch counter and tombstones to the main database
    (inside the caller's transaction)."""
    if batch.epochs:
        await db.executemany(
            "INSERT OR REPLACE INTO epochs (epoch, announcement, created) VALUES (?, ?, ?)",
            [(n, payload, created) for n, (payload, created) in batch.epochs.items()],
        )
        await db.execute("DELETE FROM epochs WHERE epoch <= ?", (max(batch.epochs) - KEEP_EPOCHS,))
    if batch.meta:
        await set_metas(db, batch.meta)
    if batch.stones:
        await db.executemany(
            "INSERT OR IGNORE INTO tombstones (category, device, up_to) VALUES (?, ?, ?)",
            [(s.category, s.device or "", s.up_to) for s in batch.stones],
        )


async def write_routes(box: aiosqlite.Connection, routes: Iterable[tuple[int, Route]]) -> None:
    """Write new routes (inside the caller's transaction on ``box``)."""
    await _executemany(
        box,
        "INSERT OR REPLACE INTO routes (id, topic, device, category, retain, ttl) "
        "VALUES (?, ?, ?, ?, ?, ?)",
        [(i, r.topic, r.device, r.category, int(r.retain), r.ttl) for i, r in routes],
    )


async def _executemany(db: aiosqlite.Connection, sql: str, rows: list[tuple[object, ...]]) -> None:
    """Run ``sql`` for each of ``rows`` (nothing when there are none)."""
    if rows:
        await db.executemany(sql, rows)


async def write_rows(box: aiosqlite.Connection, batch: Batch, routes: dict[int, int]) -> bool:
    """Write ``batch``'s rows (``routes`` maps a row id to its route id) and deletes (inside
    the caller's transaction on ``box``); False if some deleted rows were gone already
    (purged meanwhile: the caller counts again)."""
    await _executemany(
        box,
        "INSERT INTO outbox (id, route, epoch, created, payload) VALUES (?, ?, ?, ?, ?)",
        [(i, routes[i], r.epoch, math.floor(r.created), r.payload) for i, r in batch.rows.items()],
    )
    if not batch.deletes:
        return True
    async with box.execute(
        "DELETE FROM outbox WHERE id IN (SELECT value FROM json_each(?))",
        (json.dumps(list(batch.deletes)),),
    ) as cursor:
        return bool(cursor.rowcount == len(batch.deletes))


async def routes(box: aiosqlite.Connection) -> dict[Route, int]:
    """Return every stored route and its id."""
    async with box.execute("SELECT id, topic, device, category, retain, ttl FROM routes") as cursor:
        return {Route(t, d, c, bool(r), int(ttl)): int(i) async for i, t, d, c, r, ttl in cursor}


async def delete_routes(box: aiosqlite.Connection, device: str | None) -> list[int]:
    """Delete the routes of ``device`` (None: of every device; announcements' excepted) that
    no row uses any more; return their ids."""
    which, args = (
        ("category != ?", (EPOCH_CATEGORY,)) if device is None else ("device = ?", (device,))
    )
    async with box.execute(
        f"DELETE FROM routes WHERE {which} "  # noqa: S608 - constant clauses, values bound
        "AND id NOT IN (SELECT route FROM outbox) RETURNING id",
        args,
    ) as cursor:
        return [int(r[0]) for r in await cursor.fetchall()]


async def counts(box: aiosqlite.Connection) -> tuple[int, int]:
    """Return how many rows are on disk and their payload bytes."""
    async with box.execute(
        "SELECT COUNT(*), COALESCE(SUM(LENGTH(payload)), 0) FROM outbox"
    ) as cursor:
        row = await cursor.fetchone()
    assert row is not None
    return int(row[0]), int(row[1])


async def highest_id(box: aiosqlite.Connection, db: aiosqlite.Connection) -> int:
    """Return the highest row id a row or a tombstone holds (new ids go above it)."""
    async with box.execute("SELECT COALESCE(MAX(id), 0) FROM outbox") as cursor:
        row = await cursor.fetchone()
    async with db.execute("SELECT COALESCE(MAX(up_to), 0) FROM tombstones") as cursor:
        stone = await cursor.fetchone()
    return max(int(row[0]) if row else 0, int(stone[0]) if stone else 0)


async def tombstones(db: aiosqlite.Connection) -> list[Tombstone]:
    """Return the tombstones whose rows are not purged yet."""
    async with db.execute("SELECT category, device, up_to FROM tombstones") as cursor:
        return [Tombstone(c, d or None, int(u)) async for c, d, u in cursor]


async def delete_tombstone(db: aiosqlite.Connection, stone: Tombstone) -> None:
    """Delete ``stone`` (inside the caller's transaction on the main database)."""
    await db.execute(
        "DELETE FROM tombstones WHERE category = ? AND device = ? AND up_to = ?",
        (stone.category, stone.device or "", stone.up_to),
    )


async def after(box: aiosqlite.Connection, last_id: int, limit: int) -> list[Pending]:
    """Return up to ``limit`` rows on disk with id > ``last_id``, oldest first."""
    async with box.execute(
        "SELECT o.id, r.topic, o.payload, r.device, r.category, r.retain "
        "FROM outbox o JOIN routes r ON r.id = o.route "
        "WHERE o.id > ? ORDER BY o.id LIMIT ?",
        (last_id, limit),
    ) as cursor:
        found = await cursor.fetchall()
    return [Pending(int(r[0]), r[1], bytes(r[2]), r[3], r[4], bool(r[5])) for r in found]


async def delete_where(
    box: aiosqlite.Connection, where: str, args: tuple[object, ...]
) -> tuple[int, int]:
    """Delete the rows ``where`` selects; return (rows, payload bytes) freed.

    One statement (aiosqlite costs a thread hop per await); RETURNING gives the freed sizes
    without a second scan (SQLite >= 3.35). ``where`` is a constant of the caller's.
    """
    async with box.execute(
        f"DELETE FROM outbox WHERE {where} RETURNING LENGTH(payload)",  # noqa: S608
        args,
    ) as cursor:
        sizes = list(await cursor.fetchall())
    return len(sizes), sum(int(s[0]) for s in sizes)


async def oldest_records(box: aiosqlite.Connection, limit: int) -> list[tuple[int, int]]:
    """Return (id, payload size) of the ``limit`` oldest records (announcements excepted)."""
    async with box.execute(
        f"SELECT id, LENGTH(payload) FROM outbox WHERE {RECORDS} ORDER BY id LIMIT ?",  # noqa: S608
        (limit,),
    ) as cursor:
        return [(int(i), int(n)) for i, n in await cursor.fetchall()]


async def newest_records(box: aiosqlite.Connection, rows: int, size: int) -> list[tuple[int, int]]:
    """Return (id, payload size) of records (announcements excepted), newest first, until
    ``rows`` rows and ``size`` bytes are covered."""
    victims: list[tuple[int, int]] = []
    async with box.execute(
        f"SELECT id, LENGTH(payload) FROM outbox WHERE {RECORDS} ORDER BY id DESC"  # noqa: S608
    ) as cursor:
        async for victim_id, victim_size in cursor:
            if rows <= 0 and size <= 0:
                break
            victims.append((int(victim_id), int(victim_size)))
            rows, size = rows - 1, size - victims[-1][1]
    return victims


async def delete_ids(box: aiosqlite.Connection, ids: list[int]) -> None:
    """Delete the rows ``ids`` names (inside the caller's transaction on ``box``)."""
    await _executemany(box, "DELETE FROM outbox WHERE id = ?", [(i,) for i in ids])


async def groups(
    box: aiosqlite.Connection, device: str | None
) -> dict[tuple[str, str], QueuedGroup]:
    """Return what is on disk (of ``device``) per device and category, announcements excepted."""
    where, args = "r.category != ?", [EPOCH_CATEGORY]
    if device is not None:
        where, args = where + " AND r.device = ?", [*args, device]
    async with box.execute(
        "SELECT r.device, r.category, COUNT(*), SUM(LENGTH(o.payload)), MIN(o.created), "  # noqa: S608 - constant clauses, values bound
        "MAX(o.created), MIN(o.created + r.ttl) FROM outbox o JOIN routes r ON r.id = o.route "
        f"WHERE {where} GROUP BY r.device, r.category",
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


async def newest_announcement(box: aiosqlite.Connection) -> tuple[int, bytes, float] | None:
    """Return the epoch, bytes and creation time of the newest announcement queued in
    ``box``, or None."""
    async with box.execute(
        f"SELECT epoch, payload, created FROM outbox WHERE NOT ({RECORDS}) "  # noqa: S608
        "ORDER BY epoch DESC LIMIT 1"
    ) as cursor:
        row = await cursor.fetchone()
    return None if row is None else (int(row[0]), bytes(row[1]), float(row[2]))


async def oldest_epoch(box: aiosqlite.Connection) -> int | None:
    """Return the lowest epoch that still has records on disk, or None."""
    async with box.execute(f"SELECT MIN(epoch) FROM outbox WHERE {RECORDS}") as cursor:  # noqa: S608
        row = await cursor.fetchone()
    return None if row is None or row[0] is None else int(row[0])
