"""The whole BLE chain through bleak's unmodified BlueZ backend (BlueZ mocked on a private
system bus): advertisement -> candidate -> permit_join -> connect and Device Information read
-> telemetry sealed, forwarded over a real Mosquitto and opened by the consumer."""

from __future__ import annotations

import json
from pathlib import Path

from drivers.ble.simulator import bthome_v2, thermometer_objects
from tests.support.hub import eventually, hub_config, make_sink, running_hub, subscribed
from tests.support.mosquitto import Mosquitto

from .conftest import FakeBlueZ
from .helpers import BTHOME, bthome

ADDRESS = "A4:C1:38:5E:00:01"


async def test_advert_to_consumer_through_the_bluez_backend(
    bluez: FakeBlueZ, broker: Mosquitto, tmp_path: Path
) -> None:
    path = bluez.add_device(ADDRESS, "ATC_5E0001")
    bluez.add_device_information(path, {0x2A29: b"pvvx", 0x2A24: b"LYWSD03MMC", 0x2A26: b"4.8"})
    config = hub_config(
        tmp_path, broker.port, "ble-chain", discovery={"ble": {"enabled": True, "watchdog_s": 5.0}}
    )
    sink = make_sink(config, broker.port, tmp_path)
    packet = 0

    def advertising(condition: object) -> bool:
        nonlocal packet
        packet = (packet + 1) % 256
        bluez.advertise(path, service_data={BTHOME: bthome(packet, 21.0 + packet / 100)})
        return bool(condition)

    async with subscribed(sink), running_hub(config) as hub:
        registry = hub.registry
        assert registry is not None
        await eventually(
            lambda: advertising(registry.devices()["candidates"]), what="a BLE candidate"
        )
        assert sink.opened == []  # candidates are never collected from
        reply = await hub.router.dispatch(
            "permit_join", json.dumps({"duration": 30, "transport": "ble"}).encode()
        )
        assert reply.body["status"] == "ok"
        await eventually(
            lambda: advertising(any(r.category == "telemetry.environment" for r in sink.opened)),
            timeout=20,
            what="the paired sensor's telemetry opened by the consumer",
        )
        (device,) = registry.devices()["paired"]
        assert (device["transport"], device["model"], device["firmware"]) == (
            "ble",
            "pvvx LYWSD03MMC",  # manufacturer and model characteristics, as read at pairing
            "4.8",
        )
        record = next(r for r in sink.opened if r.category == "telemetry.environment")
        assert record.device == device["id"]
        assert {"temperature", "humidity", "battery"} <= set(record.fields)
    assert bluez.calls(path)["Connect"] >= 1
    assert not sink.errors


async def test_encrypted_sensor_decodes_once_its_bind_key_is_entered(
    bluez: FakeBlueZ, broker: Mosquitto, tmp_path: Path
) -> None:
    key = bytes.fromhex("231d39c1d7cc1ab1aee224cd096db932")
    address = "54:48:E6:8F:80:A5"
    path = bluez.add_device(address, "ATC_8F80A5")
    bluez.add_device_information(path, {0x2A24: b"LYWSD03MMC", 0x2A26: b"4.8"})
    config = hub_config(
        tmp_path, broker.port, "ble-keys", discovery={"ble": {"enabled": True, "watchdog_s": 5.0}}
    )
    sink = make_sink(config, broker.port, tmp_path)
    counter = 0

    def advertising(condition: object) -> bool:
        nonlocal counter
        counter += 1
        message = bthome_v2(
            thermometer_objects(counter, 90, 20.5, 40.0),
            address=address,
            bind_key=key,
            counter=counter,
        )
        bluez.advertise(path, service_data={BTHOME: message})
        return bool(condition)

    async def call(command: str, **params: object) -> dict[str, object]:
        body: dict[str, object] = (
            await hub.router.dispatch(command, json.dumps(params).encode())
        ).body
        return body

    async with subscribed(sink), running_hub(config) as hub:
        registry = hub.registry
        assert registry is not None
        await eventually(lambda: advertising(registry.devices()["candidates"]), what="candidate")
        device = registry.devices()["candidates"][0]["id"]
        assert (await call("pair", device=device))["status"] == "ok"
        await eventually(
            lambda: advertising(hub.counters.get("ble.decode_errors") >= 2),
            what="encrypted adverts refused without a key",
        )
        assert sink.opened == []
        bad = await call("bind_key", device=device, key="not hex")
        assert bad["error"] == {
            "code": "invalid_request",
            "message": "parameter 'key' must be 32 hex digits",
        }
        unknown = await call("bind_key", device="0" * 16, key=key.hex())
        assert unknown["error"]["code"] == "not_found"  # type: ignore[index]
        assert (await call("bind_key", device=device, key=key.hex()))["status"] == "ok"
        await eventually(
            lambda: advertising(any(r.category == "telemetry.environment" for r in sink.opened)),
            timeout=20,
            what="decrypted telemetry opened by the consumer",
        )
        events = [e.event for e in await hub.audit.tail(10)]
        assert "device.bind_key" in events
    database = (config.state_dir / "consentgate.db").read_bytes()
    wal = config.state_dir / "consentgate.db-wal"
    stored = database + (wal.read_bytes() if wal.exists() else b"")
    assert key not in stored  # sealed at rest
    assert key.hex().encode() not in stored
    assert not sink.errors
