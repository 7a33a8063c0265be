"""The fleet sink: PostgreSQL through asyncpg, shared by every member of a consumer group.

A batch is one transaction of two set-based statements (``unnest`` of arrays, ``ON CONFLICT DO
NOTHING``), so a record redelivered to another member is stored once and a batch costs two
round trips whatever its size. Members that start together migrate under an advisory lock.
"""

from __future__ import annotations

from collections.abc import Awaitable, Sequence
from typing import Final, Self, TypeVar

import asyncpg

from gateway.envelope.consumer import OpenedRecord
from gateway.sinks.base import (
    ParkedEpoch,
    ParkedRecord,
    SinkError,
    Stored,
    StoredAnnouncement,
    fields_json,
)
from gateway.sinks.schema import POSTGRES_MIGRATIONS, check_version

T = TypeVar("T")
_MIGRATION_LOCK: Final = 0x636F6E73656E74  # any constant shared by every member
_INSERT_RECORDS: Final = """
    INSERT INTO consentgate_records
        (hub, kid, seq, epoch, device, category, ts, fields, ts_estimated)
    SELECT h, k, s, e, d, c, t, f::jsonb, x
    FROM unnest($1::text[], $2::bytea[], $3::int[], $4::bigint[], $5::text[], $6::text[],
                $7::float8[], $8::text[], $9::bool[]) AS u(h, k, s, e, d, c, t, f, x)
    ON CONFLICT DO NOTHING"""
# What a lost or refused connection raises: asyncpg reports a connection the server ended while
# a query starts as an InternalClientError ("another operation is in progress").
_ERRORS: Final = (
    OSError,
    asyncpg.PostgresError,
    asyncpg.InterfaceError,
    asyncpg.InternalClientError,
)
_INSERT_ANNOUNCEMENTS: Final = """
    INSERT INTO consentgate_announcements (kid, hub, epoch, payload)
    SELECT * FROM unnest($1::bytea[], $2::text[], $3::bigint[], $4::bytea[])
    ON CONFLICT DO NOTHING"""

_PARK: Final = """
    INSERT INTO consentgate_parked (kid, hub, topic, payload)
    SELECT * FROM unnest($1::bytea[], $2::text[], $3::text[], $4::bytea[])"""
_UNPARK: Final = "DELETE FROM consentgate_parked WHERE id = ANY($1::bigint[]) RETURNING id"


async def _guarded(call: Awaitable[T]) -> T:
    """Await ``call``; a lost or refused connection or a refused statement is a SinkError."""
    try:
        return await call
    except _ERRORS as exc:
        raise SinkError(f"postgresql sink: {exc}") from exc


def _columns(rows: Sequence[object], *names: str) -> list[list[object]]:
    """Return one array per attribute in ``names`` of ``rows`` (the arguments of ``unnest``)."""
    return [[getattr(row, name) for row in rows] for name in names]


class PostgresSink:
    """Opened records in PostgreSQL; one connection per consumer process."""

    def __init__(self, url: str) -> None:
        self._url = url
        self._db: asyncpg.Connection | None = None

    async def __aenter__(self) -> Self:
        """Connect and migrate the schema (once, whichever member gets the lock first)."""
        try:
            self._db = await asyncpg.connect(self._url, timeout=10)
            async with self._db.transaction():
                await self._db.execute("SELECT pg_advisory_xact_lock($1)", _MIGRATION_LOCK)
                await self._migrate(self._db)
        except SinkError:
            await self.__aexit__()
            raise
        except _ERRORS as exc:
            await self.__aexit__()
            raise SinkError(f"postgresql sink: {exc}") from exc
        return self

    async def __aexit__(self, *exc: object) -> None:
        """Close the connection."""
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
        ``unparked`` it deleted (a row another member deletes meanwhile waits for its commit,
        then is not there)."""
        db = self._connection()
        deleted: frozenset[int] = frozenset()
        try:
            async with db.transaction():
                if parked:
                    await db.execute(_PARK, *_columns(parked, "kid", "hub_id", "topic", "payload"))
                if unparked:
                    deleted = frozenset(row[0] for row in await db.fetch(_UNPARK, list(unparked)))
                if announcements:
                    columns = _columns(announcements, "kid", "hub_id", "epoch", "payload")
                    await db.execute(_INSERT_ANNOUNCEMENTS, *columns)
                if not records:
                    return Stored(0, deleted)
                status = await db.execute(
                    _INSERT_RECORDS,
                    [r.hub_id for r in records],
                    [r.kid for r in records],
                    [r.seq for r in records],
                    [r.epoch for r in records],
                    [r.device for r in records],
                    [r.category for r in records],
                    [r.ts for r in records],
                    [fields_json(r) for r in records],
                    [r.ts_estimated for r in records],
                )
        except _ERRORS as exc:
            raise SinkError(f"postgresql sink: {exc}") from exc
        return Stored(int(status.rsplit(" ", 1)[-1]), deleted)  # "INSERT 0 <rows>"

    async def announcement(self, kid: bytes) -> StoredAnnouncement | None:
        """Return the stored announcement of epoch ``kid``, or None."""
        row = await _guarded(
            self._connection().fetchrow(
                "SELECT kid, hub, epoch, payload, extract(epoch FROM received)::float8 "
                "FROM consentgate_announcements WHERE kid = $1",
                kid,
            )
        )
        if row is None:
            return None
        return StoredAnnouncement(
            bytes(row[0]), str(row[1]), int(row[2]), bytes(row[3]), received=float(row[4])
        )

    async def parked(self, kid: bytes, limit: int) -> list[ParkedRecord]:
        """Return at most ``limit`` records parked for epoch ``kid``, oldest first."""
        rows = await _guarded(
            self._connection().fetch(
                "SELECT id, kid, hub, topic, payload FROM consentgate_parked WHERE kid = $1 "
                "ORDER BY id LIMIT $2",
                kid,
                limit,
            )
        )
        return [ParkedRecord(bytes(r[1]), r[2], r[3], bytes(r[4]), id=r[0]) for r in rows]

    async def parked_epochs(self) -> list[ParkedEpoch]:
        """Return every epoch that has parked records, with how many."""
        rows = await _guarded(
            self._connection().fetch(
                "SELECT kid, min(hub), min(topic), count(*) FROM consentgate_parked GROUP BY kid"
            )
        )
        return [ParkedEpoch(bytes(r[0]), r[1], r[2], int(r[3])) for r in rows]

    async def trim_parked(self, keep: int) -> int:
        """Delete the oldest parked records beyond ``keep``; return how many were deleted."""
        status = await _guarded(
            self._connection().execute(
                "DELETE FROM consentgate_parked WHERE id IN (SELECT id FROM consentgate_parked "
                "ORDER BY id LIMIT greatest(0, (SELECT count(*) FROM consentgate_parked) - $1))",
                keep,
            )
        )
        return int(status.rsplit(" ", 1)[-1])  # "DELETE <rows>"

    async def count(self) -> int:
        """Return how many records the sink holds."""
        query = "SELECT count(*) FROM consentgate_records"
        return int(await _guarded(self._connection().fetchval(query)))

    def _connection(self) -> asyncpg.Connection:
        if self._db is None:
            raise SinkError("the postgresql sink is not open")
        return self._db

    @staticmethod
    async def _migrate(db: asyncpg.Connection) -> None:
        await db.execute("CREATE TABLE IF NOT EXISTS consentgate_schema (version integer)")
        version = await db.fetchval("SELECT version FROM consentgate_schema") or 0
        check_version(version)
        for number, statements in enumerate(POSTGRES_MIGRATIONS[version:], start=version + 1):
            for statement in statements:
                await db.execute(statement)
            await db.execute("DELETE FROM consentgate_schema")
            await db.execute("INSERT INTO consentgate_schema (version) VALUES ($1)", number)
