"""Opening the hub database and writing to it: aiosqlite on two files, every commit on stable
storage, storage faults turned into one typed error and a visible state.

The files: ``consentgate.db`` (WAL journal: consent, devices, audit, tombstones, epochs; a reader
such as ``audit verify`` or a backup never blocks the daemon) and ``outbox.db`` (the queued
records only, rollback journal: a row appended to the table is written once, not once to the
WAL and again at the checkpoint). Each has its own connection; the outbox's is opened by
``open_outbox`` and closed with the main one. Both share one ``StorageHealth`` (one disk).

Ordering between the files: a transaction on the outbox file opened inside one on the main
file commits first (at the end of its own block), the main file's after. Locks are always
taken main first, then outbox, never the other way round (no deadlock).

Durability: ``synchronous=FULL`` makes SQLite fsync the WAL at every commit, so a transaction
whose ``commit`` returned survives a power cut (SQLite docs, "PRAGMA synchronous", WAL mode).
That is what an acknowledged change needs; readings do not pay for it one by one because the
outbox commits them in groups (``[outbox] commit_interval_s``, see gateway/outbox/store.py).

Faults: a write that fails because the disk is full, the file system went read-only or the
device reports I/O errors raises ``StorageUnavailableError`` (rolled back, nothing half-written) and
marks the connection's ``StorageHealth`` faulty until a later commit succeeds. The daemon keeps
running on that state (docs/storage.md).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import sqlite3
import time
import weakref
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final, TypeVar

import aiosqlite

from gateway.errors import StorageError, StorageUnavailableError

logger = logging.getLogger(__name__)

DB_FILE: Final = "consentgate.db"
OUTBOX_FILE: Final = "outbox.db"
OUTBOX_FORMAT: Final = 3  # PRAGMA user_version of outbox.db: its row format
# Beside the database once it was created: its absence tells a first start from a lost file.
CREATED_MARK: Final = "consentgate.db.created"
RETRY_S: Final = 1.0
T = TypeVar("T")

# synchronous=FULL in WAL mode: the WAL is fsynced at every commit, so a committed transaction
# survives a power cut, not only a crash of the process (SQLite docs, "PRAGMA synchronous").
_PRAGMAS: Final = (
    "PRAGMA journal_mode=WAL",
    "PRAGMA synchronous=FULL",
    "PRAGMA foreign_keys=ON",
    "PRAGMA busy_timeout=5000",
    "PRAGMA secure_delete=FAST",  # erased rows are overwritten where it costs no extra I/O
)
# The outbox file: a rollback journal (TRUNCATE: emptied and fsynced at each commit) holds only
# the pages a commit changes that existed before it, so rows appended at the end of the table
# are written once; synchronous=FULL syncs the journal, the file and the journal's truncation.
_OUTBOX_PRAGMAS: Final = (
    "PRAGMA page_size=4096",  # only takes effect on a new file (docs/storage.md: measured)
    "PRAGMA journal_mode=TRUNCATE",
    "PRAGMA synchronous=FULL",
    "PRAGMA busy_timeout=5000",
    "PRAGMA secure_delete=FAST",
)


def state_lost(state_dir: Path) -> bool:
    """Return whether the database is missing or empty although it had been created here
    (an SD card that lost a file): its state must not start again from defaults."""
    if not (state_dir / CREATED_MARK).exists():
        return False
    database = state_dir / DB_FILE
    try:
        return database.stat().st_size == 0
    except FileNotFoundError:
        return True


def _mark_created(state_dir: Path) -> None:
    """Record, durably and once, that this state directory holds a database."""
    mark = state_dir / CREATED_MARK
    if mark.exists():
        return
    fd = os.open(mark, os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
    directory = os.open(state_dir, os.O_RDONLY)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)


class Database(aiosqlite.Connection):
    """The main database's connection; closing it closes the outbox file's connection too."""

    async def close(self) -> None:
        """Close the outbox file's connection (if opened), then this one."""
        state = _WRITES.get(self)
        if state is not None and state.outbox is not None:
            outbox, state.outbox = state.outbox, None
            await outbox.close()
        await super().close()


def _connect(path: Path) -> Database:
    return Database(lambda: sqlite3.connect(path), 64)


def _discard_orphan_outbox(state_dir: Path) -> None:
    """The main database was lost: the queue's tombstones went with it, so its records go too
    (a withdrawn record must never be sent because its tombstone was lost)."""
    found = False
    for name in (OUTBOX_FILE, OUTBOX_FILE + "-journal"):
        with contextlib.suppress(FileNotFoundError):
            (state_dir / name).unlink()
            found = True
    if found:
        logger.error("queued records discarded: the main database was lost with their tombstones")


async def open_database(state_dir: Path) -> aiosqlite.Connection:
    """Open (creating if needed) the hub database in ``state_dir``: WAL, secure delete (FAST)."""
    try:
        state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)  # noqa: ASYNC240 - start-up
        if state_lost(state_dir):
            _discard_orphan_outbox(state_dir)
        db: aiosqlite.Connection = await _connect(state_dir / DB_FILE)
    except (OSError, sqlite3.Error) as exc:
        raise StorageError(f"cannot open the database in {state_dir}: {exc}") from exc
    try:
        for pragma in _PRAGMAS:
            await db.execute(pragma)
        await db.execute(
            "CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value BLOB NOT NULL)"
        )
        await db.commit()
        with contextlib.suppress(OSError):  # a full disk: marked at a later start
            _mark_created(state_dir)
    except sqlite3.Error as exc:
        await db.close()
        raise StorageError(f"the database in {state_dir} is unusable: {exc}") from exc
    return db


async def open_outbox(db: aiosqlite.Connection) -> aiosqlite.Connection:
    """Return the connection to ``outbox.db`` beside ``db``'s file (opened once, closed with
    ``db``; it shares ``db``'s storage health). Its tables are the outbox's to create."""
    state = _writes(db)
    if state.outbox is not None:
        return state.outbox
    async with db.execute("PRAGMA database_list") as cursor:
        files = {str(r[1]): str(r[2]) for r in await cursor.fetchall()}
    path = Path(files["main"]).parent / OUTBOX_FILE
    try:
        box: aiosqlite.Connection = await _connect(path)
    except (OSError, sqlite3.Error) as exc:
        raise StorageError(f"cannot open {path}: {exc}") from exc
    try:
        for pragma in _OUTBOX_PRAGMAS:
            await box.execute(pragma)
    except sqlite3.Error as exc:
        await box.close()
        raise StorageError(f"{path} is unusable: {exc}") from exc
    _WRITES[box] = _Writes(health=state.health)
    state.outbox = box
    return box


# Primary result codes (extended code & 0xff) that mean the storage itself failed, not the SQL.
_FAULTS: Final = {
    8: "read_only",  # SQLITE_READONLY (EROFS: ext4 errors=remount-ro)
    10: "io_error",  # SQLITE_IOERR (EIO, and ENOSPC met while writing the WAL or a temp file)
    13: "full",  # SQLITE_FULL
    14: "io_error",  # SQLITE_CANTOPEN (the WAL or its index could not be created)
}


def storage_fault(exc: BaseException) -> str | None:
    """Return ``full``, ``read_only`` or ``io_error`` if ``exc`` is a storage fault, else None."""
    if isinstance(exc, StorageUnavailableError):
        return exc.reason
    if isinstance(exc, sqlite3.Error):
        code = getattr(exc, "sqlite_errorcode", None)
        if isinstance(code, int):
            return _FAULTS.get(code & 0xFF)
        text = str(exc).lower()
        if "disk is full" in text:
            return "full"
        if "readonly" in text or "read-only" in text:
            return "read_only"
        if "disk i/o error" in text:
            return "io_error"
    if isinstance(exc, OSError):
        return "full" if exc.errno == 28 else "io_error"  # ENOSPC
    return None


@dataclass(slots=True)
class StorageHealth:
    """Whether the database can be written now: ``fault`` is None when it can.

    ``recovered`` is set while storage is healthy; loops that wait for storage to come back
    wait on it. The fault is logged once when it starts and once when it ends.
    """

    fault: str | None = None
    since: float = 0.0  # monotonic time the fault started
    faults: int = 0  # how many separate faults since start-up
    recovered: asyncio.Event = field(default_factory=asyncio.Event)

    def __post_init__(self) -> None:
        self.recovered.set()

    def failed(self, reason: str) -> None:
        """Record that a write failed with ``reason`` (logged at the first failure only)."""
        if self.fault is None:
            self.faults += 1
            self.since = time.monotonic()
            self.recovered.clear()
            logger.error(
                "storage unavailable; running from memory until it returns",
                extra={"reason": reason},
            )
        self.fault = reason

    def succeeded(self) -> None:
        """Record that a commit reached stable storage (logged when it ends a fault)."""
        if self.fault is not None:
            logger.warning(
                "storage recovered",
                extra={"reason": self.fault, "after_s": round(time.monotonic() - self.since, 1)},
            )
            self.fault = None
            self.recovered.set()

    def report(self) -> dict[str, object]:
        """Return the ``storage`` part of the health report."""
        if self.fault is None:
            return {"state": "ok", "faults": self.faults}
        return {
            "state": self.fault,
            "faults": self.faults,
            "for_s": round(time.monotonic() - self.since, 1),
        }


@dataclass(slots=True)
class _Writes:
    """One connection's write state: the lock every transaction takes, the task holding it,
    the hooks of the open transaction, and the storage's fault state."""

    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    owner: asyncio.Task[object] | None = None
    rollback: list[Callable[[], None]] = field(default_factory=list)
    commit: list[Callable[[], None]] = field(default_factory=list)
    health: StorageHealth = field(default_factory=StorageHealth)
    outbox: aiosqlite.Connection | None = None  # the outbox file's connection, if opened


_WRITES: weakref.WeakKeyDictionary[aiosqlite.Connection, _Writes] = weakref.WeakKeyDictionary()


def _writes(db: aiosqlite.Connection) -> _Writes:
    state = _WRITES.get(db)
    if state is None:
        state = _WRITES[db] = _Writes()
    return state


def storage_health(db: aiosqlite.Connection) -> StorageHealth:
    """Return the (one) fault state of ``db``'s storage."""
    return _writes(db).health


def in_transaction(db: aiosqlite.Connection) -> bool:
    """Return whether the running task has a transaction open on ``db``."""
    return _writes(db).owner is asyncio.current_task()


def on_commit(db: aiosqlite.Connection, done: Callable[[], None]) -> None:
    """Call ``done`` once the transaction open on ``db`` has committed."""
    _writes(db).commit.append(done)


def on_rollback(db: aiosqlite.Connection, undo: Callable[[], None]) -> None:
    """Call ``undo`` if the transaction open on ``db`` rolls back (keeps memory in step)."""
    _writes(db).rollback.append(undo)


@contextlib.asynccontextmanager
async def transaction(db: aiosqlite.Connection) -> AsyncIterator[aiosqlite.Connection]:
    """Run the block's statements as one transaction: committed at the end, rolled back on error.

    The hub shares one connection to the main database between its stores (the outbox has its
    own to outbox.db, with its own lock), and SQLite transactions belong to the connection:
    without this lock one store's ``commit`` would commit another store's half-written change.
    Every write goes through here. A transaction opened inside another one on the same
    connection by the same task joins it (one commit at the end of the outer block); one on
    the other file's connection commits at the end of its own block.

    The commit is on stable storage when the block exits (``synchronous=FULL``). A storage
    fault rolls the transaction back, runs the ``on_rollback`` hooks and raises
    ``StorageUnavailableError``; any other error rolls back and propagates as it is.
    """
    state = _writes(db)
    task = asyncio.current_task()
    if state.owner is task:  # nested: part of the enclosing transaction
        yield db
        return
    async with state.lock:
        state.owner, state.rollback, state.commit = task, [], []
        try:
            yield db
            await db.commit()
        except BaseException as exc:
            with contextlib.suppress(sqlite3.Error):
                await db.rollback()
            for undo in reversed(state.rollback):
                undo()
            reason = storage_fault(exc)
            if reason is None:
                raise
            state.health.failed(reason)
            raise StorageUnavailableError(reason, f"storage unavailable ({reason})") from exc
        else:
            state.health.succeeded()
            for done in state.commit:
                done()
        finally:
            state.owner, state.rollback, state.commit = None, [], []


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


async def until_stored(write: Callable[[], Awaitable[T]]) -> T:
    """Return ``await write()``, retried every ``RETRY_S`` while storage is unavailable (for
    background writers: purges, checkpoints, audit entries of device events)."""
    while True:
        try:
            return await write()
        except StorageUnavailableError:
            await asyncio.sleep(RETRY_S)
