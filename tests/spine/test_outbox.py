"""The outbox: durable, bounded with an audited overflow policy, purges never resurrect rows."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiosqlite
import pytest

from gateway.audit.log import AuditLog
from gateway.config import OutboxConfig
from gateway.counters import Counters
from gateway.model import EPOCH_CATEGORY, OutboxRow
from gateway.outbox import table
from gateway.outbox.store import Outbox
from gateway.storage.db import open_database


def row(i: int, category: str = "telemetry.environment", expires: float = 1e12) -> OutboxRow:
    return OutboxRow(
        f"cg/h/data/{i:016x}/{category}", bytes(100), f"{i:016x}", category, 1, float(i), expires
    )


@pytest.fixture
async def db(tmp_path: Path) -> AsyncIterator[aiosqlite.Connection]:
    connection = await open_database(tmp_path)
    yield connection
    await connection.close()


async def make(db: aiosqlite.Connection, **limits: object) -> tuple[Outbox, AuditLog, Counters]:
    audit, counters = AuditLog(db), Counters()
    await audit.load()
    outbox = Outbox(db, OutboxConfig(**limits), counters, audit)  # type: ignore[arg-type]
    await outbox.load()
    return outbox, audit, counters


async def test_rows_survive_a_reopen_in_order(db: aiosqlite.Connection, tmp_path: Path) -> None:
    outbox, _, _ = await make(db)
    await outbox.append([row(i) for i in range(5)])
    await outbox.commit()  # the group commit
    again = await open_database(tmp_path)
    try:
        reopened, _, _ = await make(again)
        assert reopened.rows == 5
        assert reopened.bytes == 500
        pending = await reopened.fetch_after(0, 10)
        assert [p.device for p in pending] == [f"{i:016x}" for i in range(5)]
    finally:
        await again.close()


async def test_drop_oldest_keeps_announcements_and_is_audited(db: aiosqlite.Connection) -> None:
    outbox, audit, counters = await make(db, max_rows=100, overflow="drop_oldest")
    announcement = OutboxRow("cg/h/epoch", b"a" * 50, "", EPOCH_CATEGORY, 1, 0.0, 1e12, True)
    await outbox.append([announcement, *[row(i) for i in range(99)]])
    await outbox.append([row(i) for i in range(100, 130)])
    assert outbox.rows == 100
    pending = await outbox.fetch_after(0, 200)
    assert pending[0].category == EPOCH_CATEGORY
    assert pending[1].device == f"{30:016x}"  # the 30 oldest records went
    assert counters.get("outbox.overflow_dropped") == 30
    entries = await audit.tail(5)
    assert entries[-1].event == "outbox.overflow"
    assert entries[-1].details == {"policy": "drop_oldest", "records": 30}


async def test_reject_new_refuses_the_batch_and_is_audited(db: aiosqlite.Connection) -> None:
    outbox, audit, counters = await make(db, max_rows=100, overflow="reject_new")
    await outbox.append([row(i) for i in range(100)])
    assert await outbox.append([row(500)]) == 0
    assert outbox.rows == 100
    assert counters.get("outbox.overflow_rejected") == 1
    assert (await audit.tail(1))[0].details == {"policy": "reject_new", "records": 1}


async def test_tombstone_kills_at_once_and_purge_deletes(
    db: aiosqlite.Connection, tmp_path: Path
) -> None:
    outbox, _, _ = await make(db)
    await outbox.append([row(i, "health" if i % 2 else "telemetry.environment") for i in range(10)])
    stone = await outbox.tombstone("health")
    await outbox.append([row(11, "health")])  # collected after the withdrawal: alive
    pending = await outbox.fetch_after(0, 100)
    assert [p.device for p in pending if outbox.is_dead(p)] == [
        f"{i:016x}" for i in (1, 3, 5, 7, 9)
    ]
    again = await open_database(tmp_path)  # the tombstone is durable: a restart keeps it
    try:
        reopened, _, _ = await make(again)
        assert reopened.tombstones == (stone,)
    finally:
        await again.close()
    assert await outbox.purge(stone) == 5
    assert outbox.tombstones == ()
    pending = await outbox.fetch_after(0, 100)  # from memory before the purge, from disk now
    assert [p.category for p in pending].count("health") == 1
    assert outbox.rows == 6


async def test_acknowledged_rows_are_deleted_and_accounted(db: aiosqlite.Connection) -> None:
    outbox, _, _ = await make(db)
    await outbox.append([row(i) for i in range(10)])
    pending = await outbox.fetch_after(0, 4)
    assert outbox.delete([p.id for p in pending], 400) == 4
    assert (outbox.rows, outbox.bytes) == (6, 600)
    await outbox.purge_all()
    outbox.delete([pending[0].id], 100)  # acknowledged after its purge: already gone
    await outbox.commit()  # the delete finds nothing and the outbox counts again
    assert (outbox.rows, outbox.bytes) == (0, 0)


async def test_expired_records_are_destroyed(db: aiosqlite.Connection) -> None:
    outbox, _, _ = await make(db)
    await outbox.append([row(1, expires=10.0), row(2, expires=1e12)])
    assert await outbox.expire(now=100.0) == 1
    assert [p.device for p in await outbox.fetch_after(0, 10)] == [f"{2:016x}"]


async def test_reject_new_keeps_what_still_fits(db: aiosqlite.Connection) -> None:
    outbox, audit, counters = await make(db, max_rows=100, overflow="reject_new")
    await outbox.append([row(i) for i in range(90)])
    assert await outbox.append([row(i) for i in range(100, 120)]) == 10
    assert outbox.rows == 100
    assert counters.get("outbox.overflow_rejected") == 10
    assert (await audit.tail(1))[0].details == {"policy": "reject_new", "records": 10}


async def test_reject_new_keeps_an_announcement_within_the_bounds_by_evicting_the_newest(
    db: aiosqlite.Connection,
) -> None:
    outbox, audit, counters = await make(db, max_rows=100, overflow="reject_new")
    await outbox.append([row(i) for i in range(100)])
    # full: a new epoch's announcement still goes in (it keys any record kept later) ...
    assert await outbox.append([row(200, EPOCH_CATEGORY), row(201)]) == 1
    assert outbox.rows == 100  # ... and the newest queued record made way for it
    pending = await outbox.fetch_after(0, 200)
    assert [p.category for p in pending].count(EPOCH_CATEGORY) == 1
    assert [p.device for p in pending if p.category != EPOCH_CATEGORY] == [
        f"{i:016x}"
        for i in range(99)  # the oldest stay
    ]
    assert counters.get("outbox.overflow_rejected") == 2  # row 201 and row 99
    assert (await audit.tail(1))[0].details == {"policy": "reject_new", "records": 2}


async def test_a_reader_meets_every_queued_row_once_when_acknowledged_rows_await_deletion(
    db: aiosqlite.Connection,
) -> None:
    """After a reconnect the publisher reads from the start again, while rows acknowledged on
    the last connection still wait for their deletion to be written: reading on from each
    read's last row meets every row still queued once, in order (a read once skipped from its
    window on disk to the rows staged in memory, and the rows between stayed queued, unsent,
    until the next reconnect)."""
    outbox, _, _ = await make(db)
    await outbox.append([row(i) for i in range(1, 601)])
    await outbox.commit()  # ids 1-600 on disk
    await outbox.append([row(i) for i in range(601, 701)])  # ids 601-700 staged

    async def read_all() -> list[int]:
        seen: list[int] = []
        last = 0
        while batch := await outbox.fetch_after(last, 250):
            seen += [p.id for p in batch]
            last = batch[-1].id
        return seen

    assert await read_all() == list(range(1, 701))  # the first connection sends everything
    acked = [i for i in range(1, 601) if i % 3 == 0]  # and some PUBACKs came back
    outbox.delete(acked, 100 * len(acked))  # their deletion waits for the next commit
    assert await read_all() == [i for i in range(1, 701) if i % 3 or i > 600]


async def test_a_group_commit_ending_during_a_read_hides_no_row(
    db: aiosqlite.Connection, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The read of the disk and a group commit interleave: the commit moves the staged rows to
    the disk after the read looked there and before it looks in memory. The read is made
    again, so those rows are found on disk instead of being skipped (they stayed queued,
    unsent, until the next reconnect)."""
    outbox, _, _ = await make(db)
    await outbox.append([row(i) for i in range(1, 11)])
    assert [p.id for p in await outbox.fetch_after(0, 10)] == list(range(1, 11))
    await outbox.append([row(i) for i in range(11, 21)])  # staged, not contiguous with a read
    real_after = table.after
    interleaved = False

    async def after_then_commit(box: aiosqlite.Connection, last_id: int, limit: int) -> Any:
        nonlocal interleaved
        found = await real_after(box, last_id, limit)
        if not interleaved:
            interleaved = True
            await outbox.commit()  # ends between the read of the disk and the walk of memory
        return found

    monkeypatch.setattr(table, "after", after_then_commit)
    assert [p.id for p in await outbox.fetch_after(5, 100)] == list(range(6, 21))
    assert interleaved
