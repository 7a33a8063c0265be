"""consent/set, consent/get and try_now: validation, persistence, purge, audit."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Any

import pytest

from gateway.consent.commands import withdrawn_categories
from gateway.daemon import Hub
from gateway.model import OutboxRow, Reading
from tests.support.hub import hub_config, running_hub
from tests.support.mosquitto import Mosquitto, free_port


async def call(hub: Hub, command: str, **params: Any) -> dict[str, Any]:
    response = await hub.router.dispatch(command, json.dumps(params).encode())
    return response.body


@pytest.mark.parametrize(
    ("params", "code"),
    [
        ({"flag": "telepathy", "state": "on"}, "unknown_flag"),
        ({"flag": "health", "state": "maybe"}, "invalid_request"),
        ({"flag": "camera", "state": "coarse"}, "invalid_request"),
        ({"flag": "health"}, "invalid_request"),
        ({"flag": "health", "state": "on", "device": "0123456789abcdef"}, "not_found"),
        ({"flag": "health", "state": "on", "device": "AA:BB:CC:DD:EE:FF"}, "not_found"),
        ({"flag": "health", "state": "on", "colour": "red"}, "invalid_request"),
    ],
)
async def test_bad_consent_requests_change_nothing(
    broker: Mosquitto, tmp_path: Path, params: dict[str, Any], code: str
) -> None:
    config = hub_config(tmp_path, broker.port, "consent-bad")
    async with running_hub(config) as hub:
        before = hub.policy.snapshot()
        body = await call(hub, "consent/set", **params)
        assert body["status"] == "error"
        assert body["error"]["code"] == code
        assert hub.policy.snapshot() == before


async def test_flags_persist_across_restarts(broker: Mosquitto, tmp_path: Path) -> None:
    config = hub_config(
        tmp_path, broker.port, "consent-persist", simulator={"devices": 3, "rate_hz": 0.001}
    )
    async with running_hub(config) as hub:
        device = sorted(hub.simulated)[0]
        assert (await call(hub, "consent/set", flag="location", state="coarse"))["status"] == "ok"
        body = await call(hub, "consent/set", flag="health", state="on", device=device)
        assert body["status"] == "ok"
        version = hub.policy.version
    async with running_hub(config) as hub:
        state = (await call(hub, "consent/get"))["data"]
        assert state["flags"]["location"] == "coarse"
        assert state["devices"] == {device: {"health": "on"}}
        assert state["version"] == version


async def test_withdrawal_purges_queued_records_and_try_now_keeps_only_basic(
    tmp_path: Path,
) -> None:
    config = hub_config(tmp_path, free_port(), "consent-purge")  # no broker: records queue
    async with running_hub(config) as hub:
        await call(hub, "consent/set", flag="health", state="on")
        await call(hub, "consent/set", flag="location", state="on")
        rows = [
            OutboxRow(f"r/data/{i:016x}/{c}", b"x" * 10, f"{i:016x}", c, 1, 0.0, 1e12)
            for i in range(30)
            for c in ("health", "location.precise", "device.basic", "location.coarse")
        ]
        await hub.outbox.append(rows)
        body = await call(hub, "consent/set", flag="location", state="coarse")
        assert body["data"]["purging"] == ["location.precise"]  # coarse ones stay
        body = await call(hub, "consent/set", flag="health", state="off")
        assert body["data"]["purging"] == ["health"]
        # a re-grant before the rows are deleted does not bring them back
        await call(hub, "consent/set", flag="health", state="on")
        old = [p for p in await hub.outbox.fetch_after(0, 1000) if p.category == "health"]
        assert all(hub.outbox.is_dead(p) for p in old)  # dead, or already deleted
        await hub.purger.settled()
        categories = [p.category for p in await hub.outbox.fetch_after(0, 1000)]
        assert categories.count("health") == 0
        assert categories.count("location.precise") == 0
        assert categories.count("location.coarse") == 30
        body = await call(hub, "try_now", enabled=True)
        await hub.purger.settled()
        left = {p.category for p in await hub.outbox.fetch_after(0, 1000)}
        assert left <= {"device.basic", "_epoch"}
        assert hub.policy.decide("0" * 16, "telemetry.environment") == "off"
        assert hub.counters.get("purged.health") == 30
        purges = [e for e in await hub.audit.tail(30) if e.event == "outbox.purge"]
        assert {
            e.details["category"]: e.details["records"] for e in purges if e.details["records"]
        } == {"location.precise": 30, "health": 30, "location.coarse": 30}
        assert "consent.try_now" in [e.event for e in await hub.audit.tail(30)]


def test_withdrawn_categories_follow_the_catalogue() -> None:
    assert withdrawn_categories("location", "on", "coarse") == ["location.precise"]
    assert withdrawn_categories("health", "on", "coarse") == ["health"]  # raw ones go
    assert withdrawn_categories("location", "coarse", "off") == [
        "location.precise",
        "location.coarse",
    ]
    assert withdrawn_categories("health", "off", "on") == []
    assert withdrawn_categories("telemetry", "on", "off") == ["telemetry.environment"]


async def test_the_first_reading_after_a_grant_is_collected(
    broker: Mosquitto, tmp_path: Path
) -> None:
    """A grant settles the queue while the pipeline waits for a reading; the reading that then
    arrives is the pipeline's to process, not left in the batch the grant already ran."""
    config = hub_config(
        tmp_path, broker.port, "consent-first", simulator={"devices": 1, "rate_hz": 0.001}
    )
    async with running_hub(config) as hub:
        device = sorted(hub.simulated)[0]
        await asyncio.sleep(0.1)  # the pipeline now waits on its empty queue
        assert (await call(hub, "consent/set", flag="health", state="on"))["status"] == "ok"
        before = hub.pipeline.committed
        assert hub.pipeline.submit(Reading(device, "simulator", time.time(), {"temperature": 21.5}))
        for _ in range(100):
            if hub.pipeline.committed > before:
                break
            await asyncio.sleep(0.05)
        assert hub.pipeline.committed == before + 1
