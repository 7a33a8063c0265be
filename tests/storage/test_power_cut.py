"""An acknowledged change survives a power cut at the moment of its acknowledgement, and a cut
between the commits of the two database files (outbox.db, then the main one) is safe.

The hub's state directory lives on a file system that keeps every unsynced write in memory
(tests.support.lazyfs); at the instant the test receives an answer (or at the chosen commit)
it takes the image a power cut would leave, then boots a new hub on that image and asks it
what holds.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import sqlite3
from pathlib import Path
from typing import Any

import aiosqlite
import pytest

from gateway.config import Config
from gateway.daemon import Hub
from gateway.model import EPOCH_CATEGORY
from gateway.outbox import table
from gateway.outbox.memory import Batch
from gateway.outbox.rows import Tombstone
from gateway.outbox.table import OF_CATEGORY, RECORDS
from gateway.storage.db import on_commit
from tests.storage.conftest import power_cut
from tests.support.hub import eventually, hub_config, running_hub
from tests.support.mosquitto import Mosquitto
from tests.support.mqtt_requests import requests


def _config(tmp_path: Path, port: int, state: Path) -> Config:
    config = hub_config(
        tmp_path,
        port,
        "cut",
        simulator={"devices": 3, "rate_hz": 20.0},
    )
    return dataclasses.replace(config, state_dir=state)


async def _booted(config: Config, image: Path, port: int) -> dict[str, Any]:
    """Boot a hub on ``image``; return what it says of its consent and audit log."""
    booted = dataclasses.replace(config, state_dir=image / "state")
    async with running_hub(booted) as hub, requests(booted, port) as ask:
        await eventually(hub.link.connected.is_set, what="booted hub connected")
        await asyncio.sleep(0.3)  # its request subscription is made right after CONNACK
        consent = await ask("consent/get")
        verify = await ask("audit/verify")
        tail = await ask("audit/tail", count=50)
    return {"consent": consent["data"], "verify": verify["data"], "tail": tail["data"]}


def _events(tail: Any) -> list[str]:
    entries = tail["entries"] if isinstance(tail, dict) else tail
    return [entry["event"] for entry in entries]


async def test_every_acknowledged_change_survives_a_power_cut_at_its_answer(
    broker: Mosquitto, tmp_path: Path, lazy_mount: Path
) -> None:
    config = _config(tmp_path, broker.port, lazy_mount / "state")
    images: dict[str, Path] = {}
    async with running_hub(config) as hub, requests(config, broker.port) as ask:
        await eventually(lambda: hub.pipeline.committed > 50, what="records sealed")
        steps: list[tuple[str, str, dict[str, Any]]] = [
            ("telemetry_off", "consent/set", {"flag": "telemetry", "state": "off"}),
            ("health_on", "consent/set", {"flag": "health", "state": "on"}),
            ("try_now_on", "try_now", {"enabled": True}),
            ("try_now_off", "try_now", {"enabled": False}),
            ("restricted", "restrict", {"enabled": True}),
        ]
        for name, command, params in steps:
            answer = await ask(command, **params)
            images[name] = power_cut(lazy_mount, tmp_path / f"image-{name}")  # at the answer
            assert answer["status"] == "ok", answer
            assert answer["data"]["durable"] is True

    telemetry_off = await _booted(config, images["telemetry_off"], broker.port)
    assert telemetry_off["consent"]["flags"]["telemetry"] == "off"
    assert "consent.set" in _events(telemetry_off["tail"])
    assert telemetry_off["verify"]["intact"] is True

    health_on = await _booted(config, images["health_on"], broker.port)
    assert health_on["consent"]["flags"]["health"] == "on"

    try_now = await _booted(config, images["try_now_on"], broker.port)
    assert try_now["consent"]["try_now"] is True
    assert (await _booted(config, images["try_now_off"], broker.port))["consent"][
        "try_now"
    ] is False

    restricted = await _booted(config, images["restricted"], broker.port)
    assert restricted["consent"]["restricted"] is True
    assert "rights.restrict" in _events(restricted["tail"])
    assert restricted["verify"]["intact"] is True


async def test_a_withdrawals_tombstones_survive_a_power_cut_with_its_records_queued(
    own_broker: Mosquitto, tmp_path: Path, lazy_mount: Path
) -> None:
    config = _config(tmp_path, own_broker.port, lazy_mount / "state")
    async with running_hub(config) as hub:
        own_broker.stop()  # an outage: records queue and reach the disk in group commits
        await eventually(lambda: hub.outbox.rows > 100, what="records queued")
        own_broker.start()
        async with requests(config, own_broker.port) as ask:
            await eventually(hub.link.connected.is_set, what="reconnected")
            hub_paused = hub.publisher.paused()
            async with hub_paused:  # keep the queue from draining before the withdrawal
                answer = await ask("consent/set", flag="telemetry", state="off")
                image = power_cut(lazy_mount, tmp_path / "image")
            assert answer["data"]["durable"] is True
    stones, queued = _withdrawn(image)
    # either the rows are still there and a tombstone kills them, or the purge already ran
    assert "telemetry.environment" in stones or queued == 0


def _withdrawn(image: Path) -> tuple[list[str], int]:
    """Return the image's tombstoned categories and how many telemetry.environment records
    its outbox holds (both files pass their integrity check)."""
    state = image / "state"
    with contextlib.closing(sqlite3.connect(state / "consentgate.db")) as db:
        stones = [str(r[0]) for r in db.execute("SELECT category FROM tombstones")]
        assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    with contextlib.closing(sqlite3.connect(state / "outbox.db")) as box:
        queued = box.execute(
            f"SELECT COUNT(*) FROM outbox WHERE {OF_CATEGORY}", ("telemetry.environment",)
        ).fetchone()[0]
        assert box.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    return stones, int(queued)


async def _dispatch(hub: Hub, command: str, **params: Any) -> dict[str, Any]:
    response = await hub.router.dispatch(command, json.dumps(params).encode())
    body: dict[str, Any] = response.body
    return body


async def test_a_cut_between_a_purges_two_commits_leaves_no_record_without_its_tombstone(
    own_broker: Mosquitto, tmp_path: Path, lazy_mount: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = _config(tmp_path, own_broker.port, lazy_mount / "state")
    cut = asyncio.Event()
    image = tmp_path / "image"
    delete_tombstone = table.delete_tombstone

    def at_box_commit() -> None:
        # the rows' deletion has committed (outbox.db); the tombstone's removal has not
        power_cut(lazy_mount, image)
        cut.set()

    async def cut_first(db: aiosqlite.Connection, stone: Tombstone) -> None:
        if not cut.is_set():  # the purger deletes the rows of every waiting tombstone first
            on_commit(box, at_box_commit)
        await delete_tombstone(db, stone)

    async with running_hub(config) as hub:
        own_broker.stop()  # an outage: records queue and reach the disk in group commits
        await eventually(lambda: hub.outbox.rows > 100, what="records queued")
        await hub.outbox.commit()
        box = hub.outbox.box
        monkeypatch.setattr(table, "delete_tombstone", cut_first)
        answer = await _dispatch(hub, "consent/set", flag="telemetry", state="off")
        assert answer["data"]["durable"] is True
        await asyncio.wait_for(cut.wait(), 10)
    monkeypatch.undo()
    stones, queued = _withdrawn(image)
    assert (stones, queued) == (["telemetry.environment"], 0)  # the cut fell between the two
    async with running_hub(dataclasses.replace(config, state_dir=image / "state")) as booted:
        # the left-over tombstone is purged again, finds nothing, and goes
        await eventually(lambda: booted.outbox.tombstones == (), what="tombstone purged")
        assert booted.policy.flag("telemetry") == "off"
        assert await booted.audit.verify() is None


async def test_a_cut_between_an_announcements_two_commits_never_reuses_its_epoch(
    own_broker: Mosquitto, tmp_path: Path, lazy_mount: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = _config(tmp_path, own_broker.port, lazy_mount / "state")
    cut = asyncio.Event()
    image = tmp_path / "image"
    write_rows = table.write_rows

    def at_box_commit() -> None:
        # the announcement's row has committed (outbox.db); the epoch counter has not
        power_cut(lazy_mount, image)

    async def cut_after(box: aiosqlite.Connection, batch: Batch, routes: dict[int, int]) -> bool:
        done = await write_rows(box, batch, routes)
        if not cut.is_set() and any(r.category == EPOCH_CATEGORY for r in batch.rows.values()):
            on_commit(box, at_box_commit)
            cut.set()
        return done

    async with running_hub(config) as hub:
        own_broker.stop()
        await eventually(lambda: hub.pipeline.committed > 50, what="records sealed")
        monkeypatch.setattr(table, "write_rows", cut_after)
        assert (await _dispatch(hub, "keys/rotate"))["status"] == "ok"
        await asyncio.wait_for(cut.wait(), 10)
    monkeypatch.undo()
    state = image / "state"
    with contextlib.closing(sqlite3.connect(state / "consentgate.db")) as db:
        counter = int(db.execute("SELECT value FROM meta WHERE key = 'epoch'").fetchone()[0])
    with contextlib.closing(sqlite3.connect(state / "outbox.db")) as box:
        queued = box.execute(f"SELECT MAX(epoch) FROM outbox WHERE NOT ({RECORDS})").fetchone()[0]
    assert queued == counter + 1  # the announcement is queued, the counter is one behind
    async with running_hub(dataclasses.replace(config, state_dir=state)) as booted:
        assert booted.sealer.epoch > queued  # a new epoch, never the queued one again


async def test_the_image_of_a_power_cut_under_load_opens_and_its_audit_chain_verifies(
    broker: Mosquitto, tmp_path: Path, lazy_mount: Path
) -> None:
    config = _config(tmp_path, broker.port, lazy_mount / "state")
    async with running_hub(config) as hub, requests(config, broker.port) as ask:
        await eventually(lambda: hub.pipeline.committed > 100, timeout=20, what="records sealed")
        await ask("consent/set", flag="health", state="on")
        await ask("keys/rotate")
        image = power_cut(lazy_mount, tmp_path / "image")  # mid-stream, no answer awaited
    booted = await _booted(config, image, broker.port)
    assert booted["verify"]["intact"] is True
    assert booted["consent"]["flags"]["health"] == "on"
