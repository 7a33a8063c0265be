"""Opening the hub database: aiosqlite on one file, WAL journal, durable across process crashes."""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import weakref
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Final

import aiosqlite

from gateway.errors import StorageError

DB_FILE: Final = "consentgate.db"

# synchronous=NORMAL in WAL mode: a committed transaction survives a crash of the process
# (kill -9); only an OS crash or power loss may lose the last transactions (SQLite docs, "WAL").
_PRAGMAS: Final = (
    "PRAGMA journal_mode=WAL",
    "PRAGMA synchronous=NORMAL",
    "PRAGMA foreign_keys=ON",
    "PRAGMA busy_timeout=5000",
    "PRAGMA secure_delete=FAST",  # erased rows are overwritten where it costs no extra I/O
)


async def open_database(state_dir: Path) -> aiosqlite.Connection:
    """Open (creating if needed) the hub database in ``state_dir``: WAL, secure delete (FAST)."""
    try:
        state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)  # noqa: ASYNC240 - start-up
        db = await aiosqlite.connect(state_dir / DB_FILE)
    except (OSError, sqlite3.Error) as exc:
        raise StorageError(f"cannot open the database in {state_dir}: {exc}") from exc
    try:
        for pragma in _PRAGMAS:
            await db.execute(pragma)
        await db.execute(
            "CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value BLOB NOT NULL)"
        )
        await db.commit()
    except sqlite3.Error as exc:
        await db.close()
        raise StorageError(f"the database in {state_dir} is unusable: {exc}") from exc
    return db


_WRITE_LOCKS: weakref.WeakKeyDictionary[aiosqlite.Connection, asyncio.Lock] = (
    weakref.WeakKeyDictionary()
)
_Owner = asyncio.Task[object] | None
_OWNERS: weakref.WeakKeyDictionary[aiosqlite.Connection, _Owner] = weakref.WeakKeyDictionary()


@contextlib.asynccontextmanager
async def transaction(db: aiosqlite.Connection) -> AsyncIterator[aiosqlite.Connection]:
    """Run the block's statements as one transaction: committed at the end, rolled back on error.

    The hub shares one connection between its stores, and SQLite transactions belong to the
    connection: without this lock one store's ``commit`` would commit another store's
    half-written change. Every write goes through here. A transaction opened inside another
    one by the same task joins it (one commit at the end of the outer block).
    """
    task = asyncio.current_task()
    if _OWNERS.get(db) is task:  # nested: part of the enclosing transaction
        yield db
        return
    lock = _WRITE_LOCKS.setdefault(db, asyncio.Lock())
    async with lock:
        _OWNERS[db] = task
        try:
            yield db
        except BaseException:
            await db.rollback()
            raise
        else:
            await db.commit()
        finally:
            _OWNERS.pop(db, None)


async def get_meta(db: aiosqlite.Connection, key: str) -> bytes | None:
    """Return the value stored under ``key`` in the meta table, or None."""
    async with db.execute("SELECT value FROM meta WHERE key = ?", (key,)) as cursor:
        row = await cursor.fetchone()
    return None if row is None else bytes(row[0])


async def set_meta(db: aiosqlite.Connection, key: str, value: bytes) -> None:
    """Store ``value`` under ``key`` in the meta table (inside the caller's transaction)."""
    await set_metas(db, {key: value})


async def set_metas(db: aiosqlite.Connection, values: dict[str, bytes]) -> None:
    """Store every key and value of ``values`` in the meta table in one statement."""
    await db.executemany(
        "INSERT INTO meta (key, value) VALUES (?, ?) "
        "ON CONFLICT(key) DO UPDATE SET value = excluded.value",
        values.items(),
    )
