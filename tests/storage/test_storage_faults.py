"""Storage faults degrade the hub, never stop it: a full disk, a read-only remount, I/O errors.

While storage refuses writes the hub stays connected, answers every request, and a withdrawal
takes effect at once in memory (answered ``durable: false``); when storage comes back the held
change is written and audited without a restart.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from gateway.config import Config
from gateway.daemon import Hub
from tests.storage.conftest import fill, inject_fault
from tests.support.hub import eventually, hub_config, make_sink, running_hub, subscribed
from tests.support.mosquitto import Mosquitto
from tests.support.mqtt_requests import Requests, requests


def _config(tmp_path: Path, port: int, state: Path) -> Config:
    config = hub_config(tmp_path, port, "disk", simulator={"devices": 4, "rate_hz": 20.0})
    return dataclasses.replace(config, state_dir=state)


def _stored_flag(state: Path, flag: str) -> str | None:
    with contextlib.closing(sqlite3.connect(state / "consentgate.db")) as db:
        found = db.execute("SELECT state FROM consent WHERE scope = '' AND flag = ?", (flag,))
        row = found.fetchone()
    return None if row is None else str(row[0])


def _audited(state: Path, event: str) -> list[str]:
    with contextlib.closing(sqlite3.connect(state / "consentgate.db")) as db:
        rows = db.execute("SELECT details FROM audit WHERE event = ?", (event,)).fetchall()
    return [str(r[0]) for r in rows]


async def _storage_faulted(hub: Hub, ask: Requests) -> dict[str, Any]:
    """Make the hub write (a consent change that narrows nothing) until it sees the fault."""
    await eventually(lambda: hub.outbox.health.fault is not None, timeout=15, what="fault seen")
    health = await ask("health")
    assert health["status"] == "ok"
    return dict(health["data"])


async def _withdrawal_holds_while_storage_is_down(
    hub: Hub, ask: Requests, sink: Any, state: Path
) -> None:
    answer = await ask("consent/set", flag="telemetry", state="off")
    assert answer["status"] == "ok", answer
    assert answer["data"]["durable"] is False  # taken in memory, said plainly
    opened = len(sink.opened)
    await asyncio.sleep(1.0)
    late = [r for r in sink.opened[opened:] if r.category == "telemetry.environment"]
    assert late == []  # nothing of the withdrawn category leaves after the answer
    assert (await ask("consent/get"))["data"]["flags"]["telemetry"] == "off"
    refused = await ask("keys/rotate")  # a change that needs the disk is refused clearly
    assert refused["status"] in ("ok", "error")
    if refused["status"] == "error":
        assert refused["error"]["code"] == "storage_unavailable"
    assert _stored_flag(state, "telemetry") != "off"  # not on disk yet


async def _recovered(hub: Hub, ask: Requests, state: Path) -> None:
    await eventually(lambda: hub.outbox.health.fault is None, timeout=15, what="recovered")
    await eventually(lambda: hub.changes.pending == 0, timeout=15, what="held change written")
    assert _stored_flag(state, "telemetry") == "off"
    assert any('"deferred":true' in d for d in _audited(state, "consent.set"))
    health = (await ask("health"))["data"]
    assert health["storage"]["state"] == "ok"
    assert health["storage"]["faults"] >= 1
    verify = await ask("audit/verify")
    assert verify["data"]["intact"] is True


@dataclasses.dataclass
class _Running:
    hub: Hub
    ask: Requests
    sink: Any
    state: Path


@contextlib.asynccontextmanager
async def _flowing(tmp_path: Path, port: int, state: Path) -> AsyncIterator[_Running]:
    """Run a hub with its state in ``state`` until its records reach the consumer."""
    config = _config(tmp_path, port, state)
    sink = make_sink(config, port, tmp_path)
    async with subscribed(sink), running_hub(config) as hub, requests(config, port) as ask:
        await eventually(lambda: len(sink.opened) > 20, timeout=15, what="records flowing")
        yield _Running(hub, ask, sink, state)


async def test_a_full_disk_degrades_the_hub_and_it_recovers_without_a_restart(
    broker: Mosquitto, tmp_path: Path, small_disk: Path
) -> None:
    async with _flowing(tmp_path, broker.port, small_disk / "state") as run:
        filler = fill(small_disk)
        await run.ask("consent/set", flag="network", state="off")  # a write: finds it full
        health = await _storage_faulted(run.hub, run.ask)
        assert health["storage"]["state"] in ("full", "io_error")
        assert health["connected"] is True
        await _withdrawal_holds_while_storage_is_down(run.hub, run.ask, run.sink, run.state)
        filler.unlink()
        await _recovered(run.hub, run.ask, run.state)


@pytest.mark.parametrize(
    ("fault", "states"), [("eio", {"io_error"}), ("read_only", {"read_only", "io_error"})]
)
async def test_io_errors_and_a_read_only_file_system_degrade_the_hub_and_it_recovers(
    broker: Mosquitto, tmp_path: Path, lazy_mount: Path, fault: str, states: set[str]
) -> None:
    async with _flowing(tmp_path, broker.port, lazy_mount / "state") as run:
        inject_fault(lazy_mount, fault)
        try:
            await run.ask("consent/set", flag="network", state="off")
            health = await _storage_faulted(run.hub, run.ask)
            assert health["storage"]["state"] in states
            await _withdrawal_holds_while_storage_is_down(run.hub, run.ask, run.sink, run.state)
        finally:
            inject_fault(lazy_mount, "none")
        await _recovered(run.hub, run.ask, run.state)
