"""Audit log: signed checkpoints; edits, deletions, reorderings, rewrites and truncation are
found and located, by the library, the CLI (exit 1) and over MQTT."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from pathlib import Path

import aiosqlite
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from gateway.audit.chain import GENESIS, canonical_details, entry_hash
from gateway.audit.checkpoint import Checkpointer
from gateway.audit.log import AuditLog
from gateway.cli import main
from gateway.config import parse_config
from gateway.envelope.keys import hub_signing_key
from gateway.errors import ConfigError
from gateway.storage.db import open_database
from tests.rights.helpers import mqtt_request
from tests.support.hub import eventually, hub_config, running_hub
from tests.support.mosquitto import Mosquitto


@pytest.fixture
async def db(tmp_path: Path) -> AsyncIterator[aiosqlite.Connection]:
    connection = await open_database(tmp_path)
    yield connection
    await connection.close()


async def filled(db: aiosqlite.Connection, key: Ed25519PrivateKey, n: int = 10) -> AuditLog:
    """A log of ``n`` entries with checkpoints at entries 4 and 9."""
    log = AuditLog(db)
    await log.load()
    for i in range(n):
        await log.append("consent.set", flag="health", state="on" if i % 2 else "off", n=i)
        if i in (4, 9):
            await log.checkpoint(key)
    return log


async def tamper(db: aiosqlite.Connection, *statements: str) -> None:
    for statement in statements:
        await db.execute(statement)
    await db.commit()


async def rechain(db: aiosqlite.Connection) -> None:
    """Recompute every hash as an attacker with write access but no hub key would."""
    prev = GENESIS
    async with db.execute("SELECT seq, ts, event, details FROM audit ORDER BY seq") as cursor:
        rows = list(await cursor.fetchall())
    for seq, ts, event, details in rows:
        digest = entry_hash(prev, seq, ts, event, canonical_details(json.loads(details)))
        await db.execute("UPDATE audit SET prev = ?, hash = ? WHERE seq = ?", (prev, digest, seq))
        prev = digest
    await db.commit()


async def test_intact_log_verifies_with_signed_checkpoints(db: aiosqlite.Connection) -> None:
    key = Ed25519PrivateKey.generate()
    log = await filled(db, key, n=12)
    report = await log.report(key.public_key())
    assert report.intact
    assert (report.entries, report.head, report.checkpoints) == (12, 11, 2)
    assert report.last_checkpoint is not None
    assert report.last_checkpoint.seq == 9
    assert report.unsigned == 2
    assert await log.checkpoint(key) is not None
    assert await log.checkpoint(key) is None  # nothing new to sign


@pytest.mark.parametrize(
    ("statements", "seq", "problem"),
    [
        (
            ['UPDATE audit SET details = \'{"flag":"health","n":3,"state":"off"}\' WHERE seq = 3'],
            3,
            "content was edited",
        ),
        (["UPDATE audit SET ts = ts + 1 WHERE seq = 6"], 6, "content was edited"),
        (["UPDATE audit SET details = 'not json' WHERE seq = 2"], 2, "content was edited"),
        (["DELETE FROM audit WHERE seq = 5"], 6, "entry 5 is missing"),
        (["DELETE FROM audit WHERE seq = 0"], 0, "entries before 1 were deleted"),
        (
            [
                "UPDATE audit SET seq = 100 WHERE seq = 7",
                "UPDATE audit SET seq = 7 WHERE seq = 8",
                "UPDATE audit SET seq = 8 WHERE seq = 100",
            ],
            7,
            "does not follow the previous entry",
        ),
        (["DELETE FROM audit WHERE seq >= 7"], 7, "entries 7-9 are missing"),
    ],
    ids=[
        "edit-details",
        "edit-time",
        "edit-garbage",
        "delete",
        "delete-first",
        "reorder",
        "truncate",
    ],
)
async def test_tampering_is_found_and_located(
    db: aiosqlite.Connection, statements: list[str], seq: int, problem: str
) -> None:
    key = Ed25519PrivateKey.generate()
    log = await filled(db, key)
    await tamper(db, *statements)
    fault = await log.verify(key.public_key())
    assert fault is not None
    assert fault.seq == seq
    assert problem in fault.problem


async def test_rewrite_with_a_recomputed_chain_is_caught_by_the_checkpoint(
    db: aiosqlite.Connection,
) -> None:
    key = Ed25519PrivateKey.generate()
    log = await filled(db, key)
    await tamper(db, "UPDATE audit SET details = '{\"n\":99}' WHERE seq = 7")
    await rechain(db)
    fault = await log.verify(key.public_key())
    assert fault is not None
    assert (fault.seq, "entries 5-9 were rewritten") == (5, fault.problem[:26])


async def test_truncation_with_deleted_checkpoints_needs_the_key(
    db: aiosqlite.Connection,
) -> None:
    key = Ed25519PrivateKey.generate()
    log = await filled(db, key)
    # Forging a checkpoint for the shortened log without the hub key does not verify.
    await tamper(
        db,
        "DELETE FROM audit WHERE seq >= 7",
        "UPDATE audit_checkpoints SET seq = 6, "
        "hash = (SELECT hash FROM audit WHERE seq = 6) WHERE seq = 9",
    )
    fault = await log.verify(key.public_key())
    assert fault is not None
    assert fault.seq == 6
    assert "invalid signature" in fault.problem
    other = Ed25519PrivateKey.generate()
    assert await log.verify(other.public_key()) is not None  # another hub's key: refused


def write_config(tmp_path: Path) -> Path:
    path = tmp_path / "consentgate.toml"
    path.write_text(f'hub_id = "audit-cli"\nstate_dir = "{tmp_path / "state"}"\n')
    return path


async def _fill_state(state: Path) -> None:
    db = await open_database(state)
    try:
        await filled(db, hub_signing_key(state))
    finally:
        await db.close()


async def _tamper_state(state: Path, statement: str) -> None:
    db = await open_database(state)
    try:
        await tamper(db, statement)
    finally:
        await db.close()


def test_cli_verify_and_tail(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = write_config(tmp_path)
    state = tmp_path / "state"
    asyncio.run(_fill_state(state))
    assert main(["audit", "verify", "--config", str(config)]) == 0
    out = capsys.readouterr().out
    assert out.startswith("ok: audit log intact: 10 entries (0-9)")
    assert main(["audit", "tail", "-n", "3", "--config", str(config)]) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [e["seq"] for e in lines] == [7, 8, 9]
    assert lines[0]["event"] == "consent.set"
    assert lines[0]["details"]["n"] == 7
    asyncio.run(_tamper_state(state, "UPDATE audit SET event = 'consent.get' WHERE seq = 4"))
    assert main(["audit", "verify", "--config", str(config)]) == 1
    out = capsys.readouterr().out
    assert out.startswith("TAMPERED: entry 4: content was edited")
    # a key given explicitly (from `identity`) that is not this hub's: signatures refused
    other = Ed25519PrivateKey.generate().public_key().public_bytes_raw().hex()
    assert main(["audit", "verify", "--config", str(config), "--hub-key", other]) == 1
    assert "invalid signature" in capsys.readouterr().out


def test_cli_verify_without_a_database_is_a_usage_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["audit", "verify", "--config", str(write_config(tmp_path))]) == 2
    assert "no database" in capsys.readouterr().err


async def test_audit_over_mqtt(broker: Mosquitto, tmp_path: Path) -> None:
    config = hub_config(tmp_path, broker.port, "audit-mqtt", audit={"checkpoint_every": 2})
    async with running_hub(config) as hub:
        for state in ("on", "off", "on"):
            await hub.router.dispatch(
                "consent/set", json.dumps({"flag": "health", "state": state}).encode()
            )
        await eventually(hub.link.connected.is_set, what="hub connected")
        tail = await mqtt_request(broker.port, config.topic_root, "audit/tail", {"count": 2})
        assert tail["status"] == "ok"
        entries = tail["data"]["entries"]
        assert len(entries) == 2
        assert entries[-1]["seq"] <= hub.audit.head
        assert {e["event"] for e in entries} <= {"consent.set", "outbox.purge"}
        bad = await mqtt_request(broker.port, config.topic_root, "audit/tail", {"count": 0})
        assert bad["error"]["code"] == "invalid_request"
        verified = await mqtt_request(broker.port, config.topic_root, "audit/verify", {})
        assert verified["data"]["intact"] is True
        assert verified["data"]["checkpoints"] >= 1
        await tamper(hub.db, "UPDATE audit SET details = '{}' WHERE seq = 1")
        verified = await mqtt_request(broker.port, config.topic_root, "audit/verify", {})
        assert verified["data"]["intact"] is False
        assert verified["data"]["fault"]["seq"] == 1


async def test_checkpointer_signs_after_every_n_entries_or_the_interval(
    db: aiosqlite.Connection,
) -> None:
    key = Ed25519PrivateKey.generate()
    log = AuditLog(db)
    await log.load()
    await log.append("consent.set", n=0)
    checkpointer = Checkpointer(log, key, every=3, interval_s=0.3)
    task = asyncio.create_task(checkpointer.run(), name="checkpointer")
    try:
        await eventually(lambda: log.checkpointed == 0, timeout=0.25, what="at start-up")
        for i in range(1, 4):
            await log.append("consent.set", n=i)
        await eventually(lambda: log.checkpointed == 3, timeout=0.25, what="after 3 entries")
        await log.append("consent.set", n=4)
        await asyncio.sleep(0.1)
        assert log.checkpointed == 3  # one new entry waits for the interval
        await eventually(lambda: log.checkpointed == 4, timeout=1.0, what="after the interval")
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    report = await log.report(key.public_key())
    assert report.intact
    assert report.checkpoints == 3


def test_audit_and_retention_config(tmp_path: Path) -> None:
    base = {"hub_id": "h", "state_dir": "s"}
    config = parse_config(
        {
            **base,
            "audit": {"checkpoint_every": 10, "checkpoint_interval_s": 5.0},
            "retention": {"default_s": 60.0, "sweep_interval_s": 2.0, "health": 30.0},
        },
        tmp_path,
    )
    assert (config.audit.checkpoint_every, config.audit.checkpoint_interval_s) == (10, 5.0)
    assert config.retention.sweep_interval_s == 2.0
    assert config.retention.ttl("health") == 30.0
    with pytest.raises(ConfigError, match=r"audit\.checkpoint_every: 0 is out of range"):
        parse_config({**base, "audit": {"checkpoint_every": 0}}, tmp_path)
    with pytest.raises(ConfigError, match=r"audit\.signed: unknown key"):
        parse_config({**base, "audit": {"signed": True}}, tmp_path)
