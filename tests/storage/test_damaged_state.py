"""A damaged state never starts the hub more permissive than what was stored.

A database lost while the hub's identity exists (a zero-length file after an SD-card fault)
and a consent state the hub does not understand both fail closed: the flags are off, the
problem is logged and audited, and ``consentgate doctor`` says what is wrong. Records queued
in ``outbox.db`` do not outlive the database that held their tombstones.
"""

from __future__ import annotations

import contextlib
import sqlite3
import subprocess
import sys
from pathlib import Path

from gateway.config import Config
from gateway.consent.catalogue import FLAGS
from tests.support.hub import eventually, hub_config, running_hub
from tests.support.mosquitto import Mosquitto


def doctor(toml: Path) -> tuple[int, str]:
    """Run ``consentgate doctor`` as an operator would; return its exit code and output."""
    done = subprocess.run(
        [sys.executable, "-m", "gateway", "doctor", "--config", str(toml)],
        capture_output=True,
        text=True,
        check=False,
    )
    return done.returncode, done.stdout


def _toml(config: Config, tmp_path: Path) -> Path:
    path = tmp_path / "hub.toml"
    path.write_text(
        f'hub_id = "{config.hub_id}"\nstate_dir = "{config.state_dir}"\n'
        f'[crypto]\nrecipient_public_key = "{config.crypto.recipient_public_key}"\n'
    )
    return path


async def test_a_lost_database_starts_the_hub_with_every_flag_off_and_says_so(
    broker: Mosquitto, tmp_path: Path
) -> None:
    config = hub_config(tmp_path, broker.port, "lost")
    async with running_hub(config) as hub:
        assert hub.policy.flag("telemetry") == "on"  # the catalogue default
    database = config.state_dir / "consentgate.db"
    database.write_bytes(b"")  # what a torn SD card leaves
    for leftover in ("consentgate.db-wal", "consentgate.db-shm"):
        (config.state_dir / leftover).unlink(missing_ok=True)
    code, out = doctor(_toml(config, tmp_path))
    assert code == 1
    assert "missing or empty" in out
    async with running_hub(config) as hub:
        assert all(hub.policy.flag(flag) == "off" for flag in FLAGS)
        entries = await hub.audit.tail(5)
        assert "state.damaged" in [e.event for e in entries]
    async with running_hub(config) as hub:  # the closed state was persisted, not re-derived
        assert hub.policy.flag("telemetry") == "off"


def _queued_payloads(state: Path) -> set[bytes]:
    with contextlib.closing(sqlite3.connect(state / "outbox.db")) as box:
        return {bytes(r[0]) for r in box.execute("SELECT payload FROM outbox")}


async def test_a_lost_database_takes_the_queued_records_with_it(
    own_broker: Mosquitto, tmp_path: Path
) -> None:
    config = hub_config(
        tmp_path, own_broker.port, "orphan", simulator={"devices": 3, "rate_hz": 20.0}
    )
    async with running_hub(config) as hub:
        own_broker.stop()  # an outage: records queue in outbox.db
        await eventually(lambda: hub.outbox.rows > 50, what="records queued")
        await hub.outbox.commit()
    queued = _queued_payloads(config.state_dir)
    assert queued
    # the main database (with the tombstones of any withdrawal) is lost, outbox.db is not:
    # its records cannot be told withdrawn from not, so none of them may ever be sent
    (config.state_dir / "consentgate.db").write_bytes(b"")
    for leftover in ("consentgate.db-wal", "consentgate.db-shm"):
        (config.state_dir / leftover).unlink(missing_ok=True)
    async with running_hub(config) as hub:
        assert all(hub.policy.flag(flag) == "off" for flag in FLAGS)
        assert not queued & _queued_payloads(config.state_dir)


async def test_doctor_names_a_damaged_outbox_file_and_what_it_costs(
    broker: Mosquitto, tmp_path: Path
) -> None:
    config = hub_config(tmp_path, broker.port, "torn-queue")
    async with running_hub(config):
        pass
    toml = _toml(config, tmp_path)
    code, out = doctor(toml)
    assert (code, "PROBLEM" in out) == (0, False)
    assert "outbox.db integrity_check ok" in out
    (config.state_dir / "outbox.db").write_bytes(b"not a database, after an SD-card fault" * 200)
    code, out = doctor(toml)
    assert code == 1
    assert "queued records are lost" in out
    assert "consent state readable" in out  # the consent state is not in that file


async def test_an_unknown_consent_state_is_taken_as_off(broker: Mosquitto, tmp_path: Path) -> None:
    config = hub_config(tmp_path, broker.port, "flip")
    async with running_hub(config) as hub:
        assert hub.policy.flag("telemetry") == "on"
    with contextlib.closing(sqlite3.connect(config.state_dir / "consentgate.db")) as db:
        # the user had withdrawn telemetry; one flipped bit later the state reads 'Off'
        db.execute("INSERT OR REPLACE INTO consent VALUES ('', 'telemetry', 'Off')")
        db.commit()
    toml = _toml(config, tmp_path)
    code, out = doctor(toml)
    assert code == 1
    assert "telemetry" in out
    async with running_hub(config) as hub:
        assert hub.policy.flag("telemetry") == "off"
        assert hub.policy.flag("bluetooth") == "on"  # only what was damaged closes
    code, out = doctor(toml)  # the closed state is stored cleanly
    assert "PROBLEM" not in out
    assert code == 0
