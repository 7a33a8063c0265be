"""The sinks against a real SQLite file and a real PostgreSQL database."""

from __future__ import annotations

import contextlib
import json
import math
import sqlite3
import time
from collections.abc import Mapping
from pathlib import Path

import asyncpg
import pytest
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from bench.fleet_hubs import SimHub
from gateway.cli.envelope_cmds import record_json
from gateway.envelope.consumer import Consumer, OpenedRecord
from gateway.model import Observation, Value
from gateway.sinks import (
    ParkedEpoch,
    ParkedRecord,
    SinkError,
    Stored,
    StoredAnnouncement,
    open_sink,
)
from gateway.sinks.schema import POSTGRES_MIGRATIONS, SCHEMA_VERSION, SQLITE_MIGRATIONS

DEVICE = "00000000000000ff"


def _a_day(_category: str) -> float:
    return 86400.0


def _opened(
    count: int, fields: Mapping[str, Value] | None = None, *, estimated: bool = False
) -> tuple[list[OpenedRecord], StoredAnnouncement]:
    recipient = X25519PrivateKey.generate()
    hub = SimHub("hub-est" if estimated else "hub-a", "fleet", recipient.public_key())
    if fields is None and not estimated:
        rows = hub.seal(count)
    else:
        reading = Observation(DEVICE, "telemetry.environment", time.time(), fields or {"n": 1})
        rows = hub.sealer.seal_batch([reading] * count, _a_day, estimated=estimated)
    consumer = Consumer(recipient, {hub.hub_id: hub.key.public_key()})
    info = consumer.accept_announcement(rows[0].payload, rows[0].topic)
    announcement = StoredAnnouncement(info.kid, info.hub_id, info.epoch, rows[0].payload)
    return [consumer.open(r.topic, r.payload) for r in rows[1:]], announcement


async def test_sqlite_stores_a_record_once_whoever_delivers_it(tmp_path: Path) -> None:
    await _stored_once(f"sqlite://{tmp_path / 'records.db'}")


async def test_postgresql_stores_a_record_once_whoever_delivers_it(postgres_url: str) -> None:
    await _stored_once(postgres_url)


async def _stored_once(url: str) -> None:
    records, announcement = _opened(10)
    async with open_sink(url) as first, open_sink(url) as second:  # two members, one database
        assert (await first.store(records[:6], [announcement])).new == 6
        assert (await second.store(records[4:], [announcement])).new == 4  # 4 and 5 were stored
        assert await second.count() == 10
        stored = await second.announcement(announcement.kid)
        assert stored == announcement
        assert await first.announcement(b"\x00" * 8) is None
    async with open_sink(url) as again:  # the schema is migrated once, data kept
        assert await again.count() == 10
        assert (await again.store(records, [])).new == 0


# A hub may seal what a sensor reports: NaN, infinities, a NUL inside a text. PostgreSQL's
# jsonb refuses all of them; stored as they are, the batch would never commit.
AWKWARD: Mapping[str, Value] = {
    "nan": math.nan,
    "up": math.inf,
    "down": -math.inf,
    "label": "a\x00b",
    "nul\x00name": 1,
    "raw": b"\x00\x01",
}
AS_STORED = {
    "nan": "NaN",
    "up": "Infinity",
    "down": "-Infinity",
    "label": "a\\u0000b",
    "nul\\u0000name": 1,
    "raw": "0001",
}


async def test_sqlite_stores_non_finite_numbers_and_nul_as_text(tmp_path: Path) -> None:
    url = f"sqlite://{tmp_path / 'records.db'}"
    await _stores_awkward_fields(url)
    with contextlib.closing(sqlite3.connect(tmp_path / "records.db")) as db:
        stored = db.execute("SELECT fields FROM consentgate_records").fetchall()
    assert [json.loads(row[0]) for row in stored] == [AS_STORED] * 3


async def test_postgresql_stores_non_finite_numbers_and_nul_as_text(postgres_url: str) -> None:
    await _stores_awkward_fields(postgres_url)
    stored = await _sql(postgres_url, "SELECT fields FROM consentgate_records")
    assert [json.loads(str(row[0])) for row in stored] == [AS_STORED] * 3


async def _stores_awkward_fields(url: str) -> None:
    records, announcement = _opened(3, AWKWARD)
    assert records[0].fields["label"] == "a\x00b"  # the record itself is untouched
    async with open_sink(url) as sink:
        assert (await sink.store(records, [announcement])).new == 3


def test_unknown_sink_urls_are_refused() -> None:
    for url in ("mysql://x", "sqlite://", "records.db"):
        with pytest.raises(SinkError):
            open_sink(url)


async def test_records_of_an_estimated_epoch_are_stored_and_printed_flagged(sink_url: str) -> None:
    estimated, estimated_announcement = _opened(3, estimated=True)
    plain, plain_announcement = _opened(2)
    assert {r.ts_estimated for r in estimated} == {True}
    async with open_sink(sink_url) as sink:
        await sink.store([*estimated, *plain], [estimated_announcement, plain_announcement])
    stored = await _sql(sink_url, "SELECT hub, ts_estimated FROM consentgate_records")
    assert sorted((hub, bool(flag)) for hub, flag in stored) == [
        ("hub-a", False),
        ("hub-a", False),
        ("hub-est", True),
        ("hub-est", True),
        ("hub-est", True),
    ]
    assert json.loads(record_json(estimated[0]))["ts_estimated"] is True
    assert "ts_estimated" not in json.loads(record_json(plain[0]))


async def test_parked_records_are_kept_in_order_and_unparked_with_their_opened_records(
    sink_url: str,
) -> None:
    records, announcement = _opened(4)
    parked = [
        ParkedRecord(announcement.kid, "hub-a", f"fleet/hub-a/data/{i:016x}/x", bytes([i]))
        for i in range(4)
    ]
    async with open_sink(sink_url) as first, open_sink(sink_url) as second:  # two members
        await first.store([], [], parked=parked[:3])
        await second.store([], [], parked=parked[3:])
        assert await first.parked(b"\x00" * 8, 10) == []
        rows = await second.parked(announcement.kid, 10)
        assert rows == parked  # oldest first, whichever member parked them
        assert await first.parked_epochs() == [
            ParkedEpoch(announcement.kid, "hub-a", parked[0].topic, 4)
        ]
        # the opened records and the deletion of their parked rows commit together
        stored = await first.store(records[:2], [announcement], unparked=[r.id for r in rows[:2]])
        assert stored == Stored(2, frozenset(r.id for r in rows[:2]))
        assert await second.parked(announcement.kid, 10) == parked[2:]
        assert await first.trim_parked(1) == 1  # the oldest goes first
        assert await second.parked(announcement.kid, 10) == parked[3:]
        assert (await first.count(), await first.trim_parked(1)) == (2, 0)


async def test_a_late_unpark_deletes_only_its_own_rows_never_a_row_parked_since(
    sink_url: str,
) -> None:
    # Two members open the same parked record; one deletes it first, a record of another epoch
    # is parked, then the other member's unpark of the same id commits: a row id is never
    # given again, so that record stays parked.
    records, announcement = _opened(1)
    topic = "fleet/hub-a/data/0000000000000000/x"
    later = ParkedRecord(b"\x01" * 8, "hub-b", topic.replace("hub-a", "hub-b"), b"\x01")
    async with open_sink(sink_url) as first, open_sink(sink_url) as second:
        await first.store([], [], parked=[ParkedRecord(announcement.kid, "hub-a", topic, b"\x00")])
        [seen] = await first.parked(announcement.kid, 10)
        await second.store(records, [announcement], unparked=[seen.id])
        await second.store([], [], parked=[later])
        late = await first.store(records, [announcement], unparked=[seen.id])
        assert late == Stored(0)  # no record new, no row deleted: the other member reported it
        assert await first.parked(later.kid, 10) == [later]
        assert await first.count() == 1


# A database as version 1 of the tool left it: the schema of version 1 and one record.
VERSION_1 = {
    "sqlite": [
        *SQLITE_MIGRATIONS[0],
        "CREATE TABLE consentgate_schema (version INTEGER)",
        "INSERT INTO consentgate_schema VALUES (1)",
        "INSERT INTO consentgate_records VALUES "
        "('hub-old', x'0102030405060708', 0, 1, '00000000000000ff', 'telemetry.environment', "
        "1.5, '{}', 2.5)",
    ],
    "postgresql": [
        *POSTGRES_MIGRATIONS[0],
        "CREATE TABLE consentgate_schema (version integer)",
        "INSERT INTO consentgate_schema VALUES (1)",
        "INSERT INTO consentgate_records (hub, kid, seq, epoch, device, category, ts, fields) "
        "VALUES ('hub-old', '\\x0102030405060708', 0, 1, '00000000000000ff', "
        "'telemetry.environment', 1.5, '{}')",
    ],
}


async def test_a_version_1_database_is_migrated_and_keeps_its_records(sink_url: str) -> None:
    await _sql(sink_url, *VERSION_1[_backend(sink_url)])
    estimated, announcement = _opened(2, estimated=True)
    async with open_sink(sink_url) as sink:
        assert await sink.count() == 1
        assert (await sink.store(estimated, [announcement])).new == 2
    assert await _sql(sink_url, "SELECT version FROM consentgate_schema") == [(SCHEMA_VERSION,)]
    stored = await _sql(sink_url, "SELECT hub, ts_estimated FROM consentgate_records")
    assert sorted((hub, bool(flag)) for hub, flag in stored) == [
        ("hub-est", True),
        ("hub-est", True),
        ("hub-old", False),
    ]


async def test_a_database_of_a_newer_version_is_refused_and_left_alone(sink_url: str) -> None:
    records, announcement = _opened(2)
    async with open_sink(sink_url) as sink:
        await sink.store(records, [announcement])
    newer = SCHEMA_VERSION + 1
    await _sql(sink_url, f"UPDATE consentgate_schema SET version = {newer}")
    with pytest.raises(SinkError, match=f"schema is version {newer}, newer than"):
        async with open_sink(sink_url):
            pass
    assert await _sql(sink_url, "SELECT version FROM consentgate_schema") == [(newer,)]
    assert await _sql(sink_url, "SELECT count(*) FROM consentgate_records") == [(2,)]


async def test_a_lost_postgresql_connection_is_a_sink_error(postgres_url: str) -> None:
    records, announcement = _opened(2)
    async with open_sink(postgres_url) as sink:
        await _sql(
            postgres_url,
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE datname = current_database() AND pid <> pg_backend_pid()",
        )
        with pytest.raises(SinkError, match="postgresql sink"):
            await sink.count()
        with pytest.raises(SinkError, match="postgresql sink"):
            await sink.announcement(announcement.kid)
        with pytest.raises(SinkError, match="postgresql sink"):
            await sink.store(records, [announcement])


def _backend(url: str) -> str:
    return "sqlite" if url.startswith("sqlite://") else "postgresql"


async def _sql(url: str, *statements: str) -> list[tuple[object, ...]]:
    """Run ``statements`` on the sink's database, outside the sink; return the last one's rows."""
    result: list[tuple[object, ...]] = []
    if _backend(url) == "sqlite":
        with contextlib.closing(sqlite3.connect(url.removeprefix("sqlite://"))) as db:
            for statement in statements:
                result = db.execute(statement).fetchall()
            db.commit()
        return result
    db = await asyncpg.connect(url)
    try:
        for statement in statements:
            result = [tuple(row) for row in await db.fetch(statement)]
    finally:
        await db.close()
    return result
