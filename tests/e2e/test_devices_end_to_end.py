"""Real devices end to end: discovered, paired on command, telemetry opened by the consumer."""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from drivers.shelly.simulator import SimulatedShelly
from gateway.daemon import Hub
from tests.support.hub import eventually, hub_config, make_sink, running_hub, subscribed
from tests.support.mosquitto import Mosquitto


async def call(hub: Hub, command: str, **params: Any) -> Mapping[str, Any]:
    response = await hub.router.dispatch(command, json.dumps(params).encode())
    assert response.body["status"] == "ok", response.body
    data: Mapping[str, Any] = response.body["data"]
    return data


async def test_shelly_over_mdns_is_paired_on_command_and_its_telemetry_opened(
    broker: Mosquitto, tmp_path: Path
) -> None:
    config = hub_config(
        tmp_path,
        broker.port,
        "e2e-shelly",
        discovery={"mdns": {"enabled": True, "poll_interval_s": 0.2, "offline_after_s": 2.0}},
    )
    sink = make_sink(config, broker.port, tmp_path)
    async with SimulatedShelly() as device, subscribed(sink), running_hub(config) as hub:
        await eventually(
            lambda: len(hub.registry.devices()["candidates"]) == 1 if hub.registry else False,
            timeout=15,
            what="the Shelly listed as a candidate",
        )
        assert sink.opened == []  # a candidate is never collected from
        await call(hub, "permit_join", duration=30, transport="mdns")
        await eventually(
            lambda: any(r.category == "telemetry.environment" for r in sink.opened),
            timeout=15,
            what="the paired Shelly's telemetry opened by the consumer",
        )
        paired = (await call(hub, "devices"))["paired"]
        assert [(d["transport"], d["model"], d["firmware"]) for d in paired] == [
            ("mdns", device.model, device.firmware)
        ]
        assert "mac" not in paired[0]  # the network flag is off
        record = next(r for r in sink.opened if r.category == "telemetry.environment")
        assert record.device == paired[0]["id"]
        assert record.fields["switch0_power"] == 12.5
    assert not sink.errors


async def test_ble_sensor_is_paired_on_command_and_its_telemetry_opened(
    broker: Mosquitto, tmp_path: Path
) -> None:
    config = hub_config(
        tmp_path,
        broker.port,
        "e2e-ble",
        discovery={"ble": {"enabled": True}},
        simulator={"ble_devices": 2, "rate_hz": 5.0},
    )
    sink = make_sink(config, broker.port, tmp_path)
    async with subscribed(sink), running_hub(config) as hub:
        await eventually(
            lambda: len(hub.registry.devices()["candidates"]) == 2 if hub.registry else False,
            timeout=15,
            what="two BLE candidates",
        )
        assert sink.opened == []
        await call(hub, "permit_join", duration=30, transport="ble")
        await eventually(
            lambda: len({r.device for r in sink.opened}) == 2,
            timeout=15,
            what="both sensors' telemetry opened",
        )
        paired = (await call(hub, "devices"))["paired"]
        assert {d["transport"] for d in paired} == {"ble"}
        assert {r.category for r in sink.opened} <= {"telemetry.environment", "device.basic"}
        gone, kept = paired[0]["id"], paired[1]["id"]
        await call(hub, "permit_join", duration=0)  # close the window: no automatic re-pairing
        unpaired_at = time.time()
        await call(hub, "unpair", device=gone)
        kept_before = sum(1 for r in sink.opened if r.device == kept)
        await eventually(
            lambda: sum(1 for r in sink.opened if r.device == kept) >= kept_before + 5,
            timeout=10,
            what="the other sensor keeps reporting",
        )
        assert not [r for r in sink.opened if r.device == gone and r.ts > unpaired_at]
        candidates = (await call(hub, "devices"))["candidates"]
        assert gone in [c["id"] for c in candidates]  # seen again, but only as a candidate
    assert not sink.errors
