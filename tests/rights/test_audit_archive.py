"""The audit log keeps to its size budget: old entries move to archive files up to a signed
checkpoint, the database still verifies, each file verifies on its own, and removing entries
without such an archive is still found."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import aiosqlite
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from gateway.audit.archive import Archiver, archive, entries_kept, verify_file
from gateway.audit.log import AuditLog, verify_tables
from gateway.cli import main
from gateway.envelope.keys import hub_signing_key
from gateway.storage.db import open_database


@pytest.fixture
async def db(tmp_path: Path) -> AsyncIterator[aiosqlite.Connection]:
    connection = await open_database(tmp_path)
    yield connection
    await connection.close()


async def grown(db: aiosqlite.Connection, key: Ed25519PrivateKey, n: int) -> AuditLog:
    """A log of ``n`` refusal entries, signed every 10."""
    log = AuditLog(db)
    await log.load()
    for i in range(n):
        await log.append("command.rejected", command="consent/set", code="invalid_request", n=i)
        if i % 10 == 9:
            await log.checkpoint(key)
    return log


async def test_archiving_moves_old_entries_to_a_file_and_everything_still_verifies(
    db: aiosqlite.Connection, tmp_path: Path
) -> None:
    key = Ed25519PrivateKey.generate()
    log = await grown(db, key, 35)
    done = await archive(log, db, tmp_path / "archive", "hub-1", upto=25)
    assert done is not None
    assert (done.first, done.last, done.entries) == (0, 19, 20)  # up to a signed checkpoint
    assert await entries_kept(db) == 35 - 20 + 1  # and the audit.archived entry
    report = await verify_tables(db, key.public_key())
    assert report.intact, report.fault
    assert report.head == 35
    in_file = verify_file(done.path, key.public_key())
    assert in_file.intact, in_file.fault
    assert (in_file.entries, in_file.head) == (20, 19)
    # the next archive continues the chain where the first ended
    await log.checkpoint(key)
    second = await archive(log, db, tmp_path / "archive", "hub-1", upto=None)
    assert second is not None
    assert second.first == 20
    assert verify_file(second.path, key.public_key()).intact
    assert (await verify_tables(db, key.public_key())).intact
    again = AuditLog(db)  # a restart finds the head though older entries are gone
    await again.load()
    assert again.head == log.head


async def test_removing_entries_without_a_signed_archive_is_tampering(
    db: aiosqlite.Connection,
) -> None:
    key = Ed25519PrivateKey.generate()
    await grown(db, key, 30)
    await db.execute("DELETE FROM audit WHERE seq <= 14")  # 14 is no checkpoint
    await db.execute("INSERT INTO audit_archive VALUES (14, zeroblob(32), 15, zeroblob(32), 0)")
    await db.commit()
    report = await verify_tables(db, key.public_key())
    assert not report.intact
    assert report.fault is not None
    assert "no checkpoint the hub signed" in report.fault.problem


async def test_an_edited_archive_file_fails_its_own_verification(
    db: aiosqlite.Connection, tmp_path: Path
) -> None:
    key = Ed25519PrivateKey.generate()
    log = await grown(db, key, 20)
    done = await archive(log, db, tmp_path, "hub-1", upto=None)
    assert done is not None
    text = done.path.read_text()
    done.path.write_text(text.replace('"n":3', '"n":4', 1))
    report = verify_file(done.path, key.public_key())
    assert not report.intact
    assert report.fault is not None
    assert report.fault.seq == 3


async def test_the_archiver_keeps_the_database_within_its_budget(
    db: aiosqlite.Connection, tmp_path: Path
) -> None:
    key = Ed25519PrivateKey.generate()
    log = await grown(db, key, 120)
    archiver = Archiver(log, db, tmp_path, "hub-1", max_entries=50, interval_s=1.0)
    written = await archiver.enforce()
    assert written
    assert await entries_kept(db) <= 50
    assert (await verify_tables(db, key.public_key())).intact
    assert all(verify_file(a.path, key.public_key()).intact for a in written)


def test_cli_verifies_an_archive_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    state = tmp_path / "state"
    config = tmp_path / "consentgate.toml"
    config.write_text(f'hub_id = "audit-cli"\nstate_dir = "{state}"\n')

    async def fill() -> Path:
        db = await open_database(state)
        try:
            log = await grown(db, hub_signing_key(state), 20)
            done = await archive(log, db, tmp_path / "archive", "audit-cli", upto=None)
            assert done is not None
            return done.path
        finally:
            await db.close()

    path = asyncio.run(fill())
    assert main(["audit", "verify", "--config", str(config), "--archive", str(path)]) == 0
    assert capsys.readouterr().out.startswith("ok: audit log intact: 20 entries (0-19)")
    assert main(["audit", "verify", "--config", str(config)]) == 0  # the database too
    path.write_text(path.read_text().replace('"n":7', '"n":8', 1))
    assert main(["audit", "verify", "--config", str(config), "--archive", str(path)]) == 1
    assert "entry 7" in capsys.readouterr().out
