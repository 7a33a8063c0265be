"""The quiet outbox: records reach the disk in group commits, and a record the broker
acknowledged before its group commit is never written."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import aiosqlite
import pytest

from gateway.audit.log import AuditLog
from gateway.config import OutboxConfig
from gateway.counters import Counters
from gateway.model import OutboxRow
from gateway.outbox.memory import Unwritten
from gateway.outbox.store import Outbox
from gateway.storage.db import open_database, open_outbox, storage_health, transaction


def row(i: int, category: str = "telemetry.environment") -> OutboxRow:
    return OutboxRow(f"cg/h/data/{i:016x}/t", bytes(100), f"{i:016x}", category, 1, float(i), 1e12)


@pytest.fixture
async def db(tmp_path: Path) -> AsyncIterator[aiosqlite.Connection]:
    connection = await open_database(tmp_path)
    yield connection
    await connection.close()


async def make(db: aiosqlite.Connection, **limits: object) -> Outbox:
    audit = AuditLog(db)
    await audit.load()
    outbox = Outbox(db, OutboxConfig(**limits), Counters(), audit)  # type: ignore[arg-type]
    await outbox.load()
    return outbox


async def on_disk(db: aiosqlite.Connection) -> int:
    box = await open_outbox(db)  # outbox.db beside the main database
    async with box.execute("SELECT COUNT(*) FROM outbox") as cursor:
        found = await cursor.fetchone()
    assert found is not None
    return int(found[0])


async def test_a_record_acknowledged_before_its_group_commit_is_never_written(
    db: aiosqlite.Connection,
) -> None:
    outbox = await make(db)
    await outbox.append([row(i) for i in range(10)])
    assert await on_disk(db) == 0  # queued in memory, sendable at once
    sent = await outbox.fetch_after(0, 10)
    outbox.delete([p.id for p in sent[:7]], 700)
    assert await outbox.commit() == 3  # only the three still unacknowledged
    assert await on_disk(db) == 3
    outbox.delete([p.id for p in sent[7:]], 300)
    assert await on_disk(db) == 3  # deletes wait for the next group commit too
    await outbox.commit()
    assert await on_disk(db) == 0
    assert (outbox.rows, outbox.bytes) == (0, 0)


async def test_the_publisher_sees_records_on_disk_and_in_memory_in_id_order(
    db: aiosqlite.Connection,
) -> None:
    outbox = await make(db)
    await outbox.append([row(i) for i in range(3)])
    await outbox.commit()
    await outbox.append([row(i) for i in range(3, 6)])
    await outbox.purge_all(device=f"{4:016x}")  # clears the in-memory cache of recent rows
    devices = [p.device for p in await outbox.fetch_after(0, 10)]
    assert devices == [f"{i:016x}" for i in (0, 1, 2, 3, 5)]


async def test_a_failed_group_commit_keeps_every_record_in_memory(
    db: aiosqlite.Connection,
) -> None:
    outbox = await make(db)
    await outbox.append([row(i) for i in range(4)])

    async def interrupted() -> None:
        async with transaction(db), transaction(outbox.box):
            await outbox.write_pending()
            raise RuntimeError("the disk went away mid-commit")

    with pytest.raises(RuntimeError):
        await interrupted()
    assert outbox.staged == 4
    assert await on_disk(db) == 0
    assert await outbox.commit() == 4
    assert await on_disk(db) == 4


async def test_a_zero_interval_commits_every_batch(db: aiosqlite.Connection) -> None:
    outbox = await make(db, commit_interval_s=0.0)
    await outbox.append([row(i) for i in range(4)])
    assert await on_disk(db) == 4
    assert storage_health(db).fault is None


def test_rows_being_written_stay_visible_to_the_publisher_until_they_are_committed() -> None:
    memory = Unwritten()
    memory.stage(1, [row(i) for i in range(1, 6)])
    writing = memory.take()  # a group commit took them; the table may not show them yet
    memory.stage(6, [row(6)])
    assert [p.id for p in memory.walk(0, 6, 10)] == [1, 2, 3, 4, 5, 6]
    memory.forget([2])  # acknowledged meanwhile: not offered again
    assert [p.id for p in memory.walk(0, 6, 10)] == [1, 3, 4, 5, 6]
    memory.written()  # committed: from now on the table has them
    assert [p.id for p in memory.walk(0, 6, 10)] == [6]
    memory.put_back(writing)  # had it rolled back instead, they would be queued again
    assert [p.id for p in memory.walk(0, 6, 10)] == [1, 3, 4, 5, 6]


async def test_a_large_group_commit_is_written_in_chunks(db: aiosqlite.Connection) -> None:
    outbox = await make(db)
    await outbox.append([row(i) for i in range(2500)])
    before = outbox.commits
    assert await outbox.commit() == 2500
    assert outbox.commits - before == 3  # a waiting withdrawal waits for one chunk at most
    assert await on_disk(db) == 2500


async def test_a_record_on_disk_expires_never_before_its_time_and_at_most_two_seconds_after(
    db: aiosqlite.Connection,
) -> None:
    outbox = await make(db)
    created, expires = 1_000.7, 1_010.2  # whole seconds on disk: created 1000, ttl 11
    record = OutboxRow(
        "cg/h/data/x/t", bytes(100), "x", "telemetry.environment", 1, created, expires
    )
    await outbox.append([record])
    await outbox.commit()
    assert await outbox.expire(now=expires - 0.01) == 0
    assert await outbox.expire(now=expires + 2.0) == 1
    assert await on_disk(db) == 0


async def test_rows_on_disk_name_their_topic_device_and_category_once_in_a_route(
    db: aiosqlite.Connection,
) -> None:
    outbox = await make(db)
    await outbox.append([row(i % 3) for i in range(30)])  # three devices, one category
    await outbox.commit()
    async with outbox.box.execute("SELECT COUNT(*) FROM routes") as cursor:
        assert await cursor.fetchone() == (3,)
    again = await make(db)  # as after a restart: what it sends comes from the disk
    sent = await again.fetch_after(0, 100)
    assert len(sent) == 30
    assert [(p.topic, p.device) for p in sent[:3]] == [
        (f"cg/h/data/{i:016x}/t", f"{i:016x}") for i in range(3)
    ]
