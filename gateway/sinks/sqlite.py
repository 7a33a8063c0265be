"""The embedded sink: one SQLite file (WAL), the default of a single consumer."""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Self

import aiosqlite

from gateway.envelope.consumer import OpenedRecord
from gateway.sinks.base import (
    ParkedEpoch,
    ParkedRecord,
    SinkError,
    Stored,
    StoredAnnouncement,
    fields_json,
)
from gateway.sinks.schema import SCHEMA_VERSION, SQLITE_MIGRATIONS, check_version

_INSERT_RECORD = (
    "INSERT OR IGNORE INTO consentgate_records "
    "(hub, kid, seq, epoch, device, category, ts, fields, received, ts_estimated) "
    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)
_INSERT_ANNOUNCEMENT = (
    "INSERT OR IGNORE INTO consentgate_announcements (kid, hub, epoch, payload, received) "
    "VALUES (?, ?, ?, ?, ?)"
)
_PARK = "INSERT INTO consentgate_parked (kid, hub, topic, payload, received) VALUES (?, ?, ?, ?, ?)"
_UNPARK = "DELETE FROM consentgate_parked WHERE id IN (SELECT value FROM json_each(?)) RETURNING id"


class SqliteSink:
    """Opened records in a SQLite file; several processes may share it (WAL, busy timeout)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._db: aiosqlite.Connection | None = None

    async def __aenter__(self) -> Self:
        """Open the file (creating it) and migrate its schema."""
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._db = await aiosqlite.connect(self.path, timeout=30.0, isolation_level=None)
            await self._db.execute("PRAGMA journal_mode=WAL")
            # A batch is acknowledged to the broker once COMMIT returns: FULL syncs the WAL at
            # each commit, so a power cut cannot take back a record the broker has forgotten
            # (NORMAL syncs only at checkpoints: an acknowledged batch could vanish).
            await self._db.execute("PRAGMA synchronous=FULL")
            await self._migrate(self._db)
        except SinkError:
            await self.__aexit__()
            raise
        except (OSError, aiosqlite.Error) as exc:
            await self.__aexit__()
            raise SinkError(f"sqlite sink {self.path}: {exc}") from exc
        return self

    async def __aexit__(self, *exc: object) -> None:
        """Close the file."""
        if self._db is not None:
            await self._db.close()
            self._db = None

    async def store(
        self,
        records: Sequence[OpenedRecord],
        announcements: Sequence[StoredAnnouncement],
        *,
        parked: Sequence[ParkedRecord] = (),
        unparked: Sequence[int] = (),
    ) -> Stored:
        """Commit records and announcements, park ``parked`` and delete the parked rows of ids
        ``unparked``, in one transaction; return how many records were new and which rows of
        ``unparked`` it deleted (writers take turns: ``BEGIN IMMEDIATE``)."""
        db = self._connection()
        now = time.time()
        rows = [
            (
                r.hub_id,
                r.kid,
                r.seq,
                r.epoch,
                r.device,
                r.category,
                r.ts,
                fields_json(r),
                now,
                r.ts_estimated,
            )
            for r in records
        ]
        try:
            await db.execute("BEGIN IMMEDIATE")
            await db.executemany(
                _INSERT_ANNOUNCEMENT,
                [(a.kid, a.hub_id, a.epoch, a.payload, now) for a in announcements],
            )
            middle = db.total_changes
            await db.executemany(_INSERT_RECORD, rows)
            added = db.total_changes - middle
            if parked:
                await db.executemany(
                    _PARK, [(p.kid, p.hub_id, p.topic, p.payload, now) for p in parked]
                )
            deleted: frozenset[int] = frozenset()
            if unparked:
                async with db.execute(_UNPARK, (json.dumps(list(unparked)),)) as cursor:
                    deleted = frozenset(row[0] for row in await cursor.fetchall())
            await db.execute("COMMIT")
        except aiosqlite.Error as exc:
            if db.in_transaction:
                await db.execute("ROLLBACK")
            raise SinkError(f"sqlite sink {self.path}: {exc}") from exc
        return Stored(added, deleted)

    async def announcement(self, kid: bytes) -> StoredAnnouncement | None:
        """Return the stored announcement of epoch ``kid``, or None."""
        row = await self._fetchone(
            "SELECT kid, hub, epoch, payload, received FROM consentgate_announcements "
            "WHERE kid = ?",
            (kid,),
        )
        if row is None:
            return None
        return StoredAnnouncement(row[0], row[1], row[2], row[3], received=float(row[4]))

    async def parked(self, kid: bytes, limit: int) -> list[ParkedRecord]:
        """Return at most ``limit`` records parked for epoch ``kid``, oldest first."""
        rows = await self._fetchall(
            "SELECT id, kid, hub, topic, payload FROM consentgate_parked WHERE kid = ? "
            "ORDER BY id LIMIT ?",
            (kid, limit),
        )
        return [ParkedRecord(r[1], r[2], r[3], r[4], id=r[0]) for r in rows]

    async def parked_epochs(self) -> list[ParkedEpoch]:
        """Return every epoch that has parked records, with how many."""
        rows = await self._fetchall(
            "SELECT kid, min(hub), min(topic), count(*) FROM consentgate_parked GROUP BY kid", ()
        )
        return [ParkedEpoch(r[0], r[1], r[2], int(r[3])) for r in rows]

    async def trim_parked(self, keep: int) -> int:
        """Delete the oldest parked records beyond ``keep``; return how many were deleted."""
        db = self._connection()
        try:
            async with db.execute(
                "DELETE FROM consentgate_parked WHERE id IN (SELECT id FROM consentgate_parked "
                "ORDER BY id LIMIT max(0, (SELECT count(*) FROM consentgate_parked) - ?))",
                (keep,),
            ) as cursor:
                deleted = cursor.rowcount
        except aiosqlite.Error as exc:
            raise SinkError(f"sqlite sink {self.path}: {exc}") from exc
        return deleted

    async def count(self) -> int:
        """Return how many records the sink holds."""
        row = await self._fetchone("SELECT count(*) FROM consentgate_records", ())
        return 0 if row is None else int(row[0])

    async def _fetchone(self, query: str, params: tuple[object, ...]) -> aiosqlite.Row | None:
        try:
            async with self._connection().execute(query, params) as cursor:
                return await cursor.fetchone()
        except aiosqlite.Error as exc:
            raise SinkError(f"sqlite sink {self.path}: {exc}") from exc

    async def _fetchall(self, query: str, params: tuple[object, ...]) -> list[aiosqlite.Row]:
        try:
            async with self._connection().execute(query, params) as cursor:
                return list(await cursor.fetchall())
        except aiosqlite.Error as exc:
            raise SinkError(f"sqlite sink {self.path}: {exc}") from exc

    def _connection(self) -> aiosqlite.Connection:
        if self._db is None:
            raise SinkError("the sqlite sink is not open")
        return self._db

    @staticmethod
    async def _migrate(db: aiosqlite.Connection) -> None:
        await db.execute("BEGIN IMMEDIATE")
        await db.execute("CREATE TABLE IF NOT EXISTS consentgate_schema (version INTEGER)")
        async with db.execute("SELECT version FROM consentgate_schema") as cursor:
            row = await cursor.fetchone()
        version = 0 if row is None else int(row[0])
        if version > SCHEMA_VERSION:
            await db.execute("ROLLBACK")
            check_version(version)
        for number, statements in enumerate(SQLITE_MIGRATIONS[version:], start=version + 1):
            for statement in statements:
                await db.execute(statement)
            await db.execute("DELETE FROM consentgate_schema")
            await db.execute("INSERT INTO consentgate_schema (version) VALUES (?)", (number,))
        await db.execute("COMMIT")
