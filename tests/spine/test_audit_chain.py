"""The audit log: append-only, hash-chained; any edit, deletion or reordering is found."""

from __future__ import annotations

from pathlib import Path

import aiosqlite

from gateway.audit.log import AuditLog
from gateway.storage.db import open_database


async def filled_log(tmp_path: Path) -> tuple[aiosqlite.Connection, AuditLog]:
    db = await open_database(tmp_path)
    log = AuditLog(db)
    await log.load()
    for i in range(5):
        await log.append("consent.set", flag="health", state="on" if i % 2 else "off", n=i)
    return db, log


async def test_intact_chain_verifies_and_survives_reload(tmp_path: Path) -> None:
    db, log = await filled_log(tmp_path)
    assert await log.verify() is None
    reloaded = AuditLog(db)
    await reloaded.load()
    assert await reloaded.append("purge", records=3) == 5
    assert await reloaded.verify() is None
    assert [e.seq for e in await reloaded.tail(2)] == [4, 5]
    await db.close()


async def test_edit_is_found(tmp_path: Path) -> None:
    db, log = await filled_log(tmp_path)
    await db.execute(
        """UPDATE audit SET details = '{"flag":"health","n":2,"state":"on"}' """
        "WHERE seq = 2"
    )
    await db.commit()
    fault = await log.verify()
    assert fault is not None
    assert (fault.seq, fault.problem) == (2, "content was edited")
    await db.close()


async def test_deletion_is_found(tmp_path: Path) -> None:
    db, log = await filled_log(tmp_path)
    await db.execute("DELETE FROM audit WHERE seq = 1")
    await db.commit()
    fault = await log.verify()
    assert fault is not None
    assert fault.seq == 2
    await db.close()


async def test_reordering_is_found(tmp_path: Path) -> None:
    db, log = await filled_log(tmp_path)
    await db.execute("UPDATE audit SET seq = 100 WHERE seq = 3")
    await db.execute("UPDATE audit SET seq = 3 WHERE seq = 4")
    await db.execute("UPDATE audit SET seq = 4 WHERE seq = 100")
    await db.commit()
    fault = await log.verify()
    assert fault is not None
    assert fault.seq == 3
    await db.close()
