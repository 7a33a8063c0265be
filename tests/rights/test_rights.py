"""export, erase, restrict and rename: validated, applied, audited; the export opens with the
consumer library; over the router on an offline hub and end to end over a real Mosquitto."""

from __future__ import annotations

import asyncio
import base64
import json
import time
from pathlib import Path
from typing import Any

import pytest

from gateway.daemon import Hub
from gateway.envelope.consumer import Consumer
from gateway.envelope.keys import hub_signing_key, load_recipient_private
from gateway.outbox.table import OF_DEVICE, RECORDS
from gateway.rights.document import EXPORT_CATEGORY, read_export
from gateway.rights.export import hub_subject
from tests.rights.helpers import mqtt_request
from tests.support.hub import eventually, hub_config, make_sink, running_hub, subscribed
from tests.support.mosquitto import Mosquitto, free_port


async def call(hub: Hub, command: str, **params: Any) -> dict[str, Any]:
    response = await hub.router.dispatch(command, json.dumps(params).encode())
    return response.body


async def queued(hub: Hub, device: str | None = None) -> int:
    query = f"SELECT COUNT(*) FROM outbox WHERE {RECORDS}"
    args: tuple[str, ...] = ()
    if device is not None:
        query, args = f"{query} AND {OF_DEVICE}", (device,)
    async with hub.outbox.box.execute(query, args) as cursor:
        row = await cursor.fetchone()
    assert row is not None
    return int(row[0])


async def open_export(hub: Hub, tmp_path: Path, data: dict[str, Any]) -> dict[str, Any]:
    """Open an export response's records as the consumer would, given the announcements."""
    consumer = Consumer(
        load_recipient_private(tmp_path / "recipient" / "recipient.key"),
        {hub.config.hub_id: hub_signing_key(hub.config.state_dir).public_key()},
    )
    for _, announcement in await hub.outbox.announcements():
        consumer.accept_announcement(announcement)
    opened = [consumer.open(r["topic"], base64.b64decode(r["envelope"])) for r in data["records"]]
    assert {(r.category, r.device) for r in opened} == {(EXPORT_CATEGORY, data["subject"])}
    return read_export(r.fields for r in opened)


async def events(hub: Hub, name: str) -> list[dict[str, Any]]:
    return [dict(e.details) for e in await hub.audit.tail(200) if e.event == name]


@pytest.fixture
def offline(tmp_path: Path) -> Any:
    """A hub whose broker is down: records stay queued, commands go through the router."""
    return hub_config(
        tmp_path, free_port(), "rights-offline", simulator={"devices": 3, "rate_hz": 20.0}
    )


@pytest.mark.parametrize(
    ("command", "params", "code"),
    [
        ("export", {}, "invalid_request"),
        ("export", {"scope": "everything"}, "invalid_request"),
        ("export", {"scope": "device"}, "invalid_request"),
        ("export", {"scope": "device", "device": "AA:BB:CC:DD:EE:FF"}, "invalid_request"),
        ("export", {"scope": "device", "device": "0123456789abcdef"}, "not_found"),
        ("export", {"scope": "all", "device": "0123456789abcdef"}, "invalid_request"),
        ("erase", {"scope": "device", "device": "0123456789abcdef"}, "not_found"),
        ("erase", {"scope": "all", "extra": 1}, "invalid_request"),
        ("restrict", {"enabled": "yes"}, "invalid_request"),
        ("restrict", {}, "invalid_request"),
    ],
)
async def test_bad_requests_change_nothing_and_are_audited(
    offline: Any, command: str, params: dict[str, Any], code: str
) -> None:
    async with running_hub(offline) as hub:
        before = (hub.policy.snapshot(), set(hub.simulated))
        body = await call(hub, command, **params)
        assert body["status"] == "error"
        assert body["error"]["code"] == code
        assert (hub.policy.snapshot(), set(hub.simulated)) == before
        async with asyncio.timeout(5):  # refusals are audited in aggregate, within a second
            while not (rejected := await events(hub, "command.rejected")):
                await asyncio.sleep(0.05)
        assert rejected == [{"command": command, "code": code}]


async def test_export_and_erase_of_one_device(offline: Any, tmp_path: Path) -> None:
    async with running_hub(offline) as hub:
        environment, wearable, tracker = sorted(hub.simulated, key=_kind_order(hub))
        assert (await call(hub, "consent/set", flag="health", state="on", device=wearable))[
            "status"
        ] == "ok"
        await eventually(lambda: hub.outbox.rows > 50, what="records queued while offline")
        body = await call(hub, "export", scope="device", device=wearable)
        assert body["status"] == "ok", body
        document = await open_export(hub, tmp_path, body["data"])
        assert document["scope"] == "device"
        assert [d["id"] for d in document["devices"]] == [wearable]
        assert document["consent"]["effective"]["health"] == "on"
        assert document["consent"]["overrides"] == {"health": "on"}
        assert any(
            h["event"] == "consent.set" and h["device"] == wearable for h in document["history"]
        )
        assert {q["device"] for q in document["queued"]} == {wearable}
        assert [q["category"] for q in document["queued"]] == ["health"]
        assert document["queued"][0]["records"] > 0
        assert (await events(hub, "rights.export"))[0]["device"] == wearable

        body = await call(hub, "erase", scope="device", device=wearable)
        assert body["status"] == "ok", body
        assert body["data"]["erased"] == [wearable]
        assert body["data"]["records"] > 0
        assert await queued(hub, wearable) == 0
        assert wearable not in hub.simulated
        assert wearable not in hub.policy.overrides
        assert hub.outbox.tombstones == ()
        await hub.pipeline.flush()
        assert await queued(hub, wearable) == 0  # collection ended with the erasure
        assert await queued(hub, environment) > 0  # the other devices are untouched
        assert (await events(hub, "rights.erase"))[0]["device"] == wearable
        missing = await call(hub, "export", scope="device", device=wearable)
        assert missing["error"]["code"] == "not_found"
        assert tracker in hub.simulated


async def test_export_all_then_erase_all(offline: Any, tmp_path: Path) -> None:
    async with running_hub(offline) as hub:
        await eventually(lambda: hub.outbox.rows > 20, what="records queued while offline")
        body = await call(hub, "export", scope="all")
        assert body["status"] == "ok", body
        assert body["data"]["subject"] == hub_subject(hub)
        document = await open_export(hub, tmp_path, body["data"])
        assert document["scope"] == "all"
        assert {d["id"] for d in document["devices"]} == set(hub.simulated)
        assert document["consent"]["flags"]["health"] == "off"
        assert document["queued"]
        erased = await call(hub, "erase", scope="all")
        assert erased["status"] == "ok", erased
        assert len(erased["data"]["erased"]) == 3
        assert await queued(hub) == 0
        assert hub.simulated == set()
        await hub.pipeline.flush()
        assert await queued(hub) == 0


async def test_a_large_export_is_split_into_parts(offline: Any, tmp_path: Path) -> None:
    async with running_hub(offline) as hub:
        device = sorted(hub.simulated)[0]
        for i in range(400):  # a long consent history
            state = "on" if i % 2 else "off"
            await call(hub, "consent/set", flag="location", state=state, device=device)
        body = await call(hub, "export", scope="device", device=device)
        assert body["data"]["parts"] > 1
        document = await open_export(hub, tmp_path, body["data"])
        assert sum(h["event"] == "consent.set" for h in document["history"]) == 400


async def test_restrict_stops_personal_data_and_keeps_device_basic(
    offline: Any,
) -> None:
    async with running_hub(offline) as hub:
        await eventually(lambda: hub.outbox.rows > 20, what="records queued while offline")
        body = await call(hub, "restrict", enabled=True)
        assert body["status"] == "ok", body
        assert body["data"]["restricted"] is True
        assert hub.policy.snapshot()["restricted"] is True
        await hub.purger.settled()
        await hub.pipeline.flush()
        assert await queued(hub) == 0  # the simulator reports nothing but personal categories
        assert hub.policy.decide(sorted(hub.simulated)[0], "device.basic") == "on"
        assert (await events(hub, "rights.restrict"))[0]["enabled"] is True
        assert (await call(hub, "restrict", enabled=False))["status"] == "ok"
        await eventually(lambda: hub.outbox.rows > 0, what="collection resumed")
    async with running_hub(offline) as hub:  # persisted
        assert hub.policy.restricted is False


def _kind_order(hub: Hub) -> Any:
    """Sort simulated devices by kind: environment, health, location (index % 3)."""
    index = {hub.pseudonyms.device(f"simulator-{i}"): i for i in range(3)}
    return lambda device: index[device] % 3


async def test_rights_end_to_end_over_mqtt(broker: Mosquitto, tmp_path: Path) -> None:
    config = hub_config(
        tmp_path,
        broker.port,
        "rights-e2e",
        discovery={"ble": {"enabled": True}},
        simulator={"ble_devices": 2, "rate_hz": 5.0},
    )
    sink = make_sink(config, broker.port, tmp_path)
    root = config.topic_root
    async with subscribed(sink), running_hub(config) as hub:
        registry = hub.registry
        await eventually(lambda: len(registry.devices()["candidates"]) == 2, timeout=15)
        await eventually(hub.link.connected.is_set, what="hub connected")
        assert (await mqtt_request(broker.port, root, "permit_join", {"duration": 30}))[
            "status"
        ] == "ok"
        await eventually(lambda: len(registry.paired_ids()) == 2, timeout=15, what="paired")
        await mqtt_request(broker.port, root, "permit_join", {"duration": 0})
        gone, kept = sorted(registry.paired_ids())
        await eventually(lambda: len({r.device for r in sink.opened}) == 2, timeout=15)

        renamed = await mqtt_request(
            broker.port, root, "rename", {"device": kept, "name": "Kitchen"}
        )
        assert renamed["data"]["name"] == "Kitchen"
        exported = await mqtt_request(
            broker.port, root, "export", {"scope": "device", "device": kept}
        )
        assert exported["status"] == "ok", exported
        records = [
            sink.consumer.open(r["topic"], base64.b64decode(r["envelope"]))
            for r in exported["data"]["records"]
        ]
        document = read_export(r.fields for r in records)
        assert document["devices"][0]["name"] == "Kitchen"
        assert "mac" not in document["devices"][0]  # the network flag is off
        assert [h["event"] for h in document["history"]][:2] == ["device.paired", "device.renamed"]

        erased = await mqtt_request(broker.port, root, "erase", {"scope": "device", "device": gone})
        assert erased["data"]["erased"] == [gone]
        erased_at = time.time()
        assert not registry.is_paired(gone)
        kept_before = sum(1 for r in sink.opened if r.device == kept)
        await eventually(lambda: sum(1 for r in sink.opened if r.device == kept) > kept_before + 3)
        assert not [r for r in sink.opened if r.device == gone and r.ts > erased_at]

        restricted = await mqtt_request(broker.port, root, "restrict", {"enabled": True})
        assert restricted["data"]["restricted"] is True
        restricted_at = time.time()
        retained = await mqtt_request(broker.port, root, "consent/get", {})
        assert retained["data"]["restricted"] is True
        await eventually(lambda: hub.counters.get("dropped.telemetry.environment") > 3)
        late = [r for r in sink.opened if r.ts > restricted_at]
        assert {r.category for r in late} <= {"device.basic"}
        audit = [e.event for e in await hub.audit.tail(100)]
        for event in (
            "device.paired",
            "device.renamed",
            "rights.export",
            "device.erase",
            "rights.erase",
            "rights.restrict",
        ):
            assert event in audit
    assert not sink.errors
