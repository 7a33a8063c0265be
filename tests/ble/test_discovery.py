"""BLE discovery end to end: bleak's real BlueZ backend against a mocked bluetoothd."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from gateway.commands.router import Router
from gateway.consent.policy import ConsentPolicy
from gateway.counters import Counters
from gateway.devices import DeviceRegistry, register_commands
from gateway.errors import DeviceError
from gateway.model import Reading
from tests.support.hub import eventually

from .conftest import FakeBlueZ
from .helpers import BTHOME, BTHOME_GOLDEN, bthome, make_discovery

ADDRESS = "A4:C1:38:00:00:01"
DIS = {
    0x2A29: b"Xiaomi",
    0x2A24: b"LYWSD03MMC",
    0x2A25: b"SN-0001",
    0x2A26: b"2.1.1\x00",
    0x2A28: b"pvvx",
}


def candidate_ids(registry: DeviceRegistry) -> list[str]:
    """Return the ids of the registry's candidates."""
    return [str(c["id"]) for c in registry.devices()["candidates"]]


async def advertise_until(bluez: FakeBlueZ, path: str, condition: Callable[[], bool]) -> None:
    """Advertise the golden BTHome message until ``condition`` holds (a restarting scanner
    may miss one advertisement; real devices repeat theirs too)."""

    def heard() -> bool:
        bluez.advertise(path, service_data={BTHOME: BTHOME_GOLDEN})
        return condition()

    await eventually(heard)


async def test_candidate_then_pair_then_readings(
    bluez: FakeBlueZ, registry: DeviceRegistry, policy: ConsentPolicy
) -> None:
    readings: list[Reading] = []
    counters = Counters()
    path = bluez.add_device(ADDRESS, "ATC_000001", -60)
    bluez.add_device_information(path, DIS)
    async with make_discovery(registry, policy, readings, counters=counters) as ble:
        assert ble.scanning_mode == "passive"
        await eventually(lambda: bluez.monitors() == 1)
        bluez.advertise(path, service_data={BTHOME: BTHOME_GOLDEN})
        await eventually(lambda: bool(candidate_ids(registry)))
        device_id = registry.pseudonym(ADDRESS)
        candidate = registry.get(device_id)
        assert candidate is not None
        assert (candidate.transport, candidate.driver) == ("ble", "bthome")
        assert candidate.model == "Temperature/Humidity sensor"
        assert candidate.name == "ATC"  # "ATC_000001" ends with the MAC's last bytes: cut
        assert readings == []  # nothing is collected from a candidate

        view = await registry.pair(device_id)
        assert view.paired
        assert (view.model, view.firmware, view.mac) == ("Xiaomi LYWSD03MMC", "2.1.1", ADDRESS)
        assert bluez.calls(path)["Pair"] == 0  # BTHome sensors need no bond

        bluez.advertise(path, service_data={BTHOME: bthome(165, 21.0)})
        await eventually(lambda: bool(readings))
    reading = readings[0]
    assert (reading.device, reading.driver) == (device_id, "bthome")
    assert reading.fields == {"battery": 100, "temperature": 21.0, "humidity": 50.55, "rssi": -60}
    assert counters.get("ble.sightings") >= 1


async def test_permit_join_pairs_and_duplicates_are_dropped(
    bluez: FakeBlueZ, registry: DeviceRegistry, policy: ConsentPolicy
) -> None:
    readings: list[Reading] = []
    counters = Counters()
    path = bluez.add_device(ADDRESS, "ATC_000001", -60)
    bluez.add_device_information(path, {0x2A26: b"1.0"})
    async with make_discovery(registry, policy, readings, counters=counters):
        await eventually(lambda: bluez.monitors() == 1)
        registry.permit_join(30.0, "ble")
        bluez.advertise(path, service_data={BTHOME: bthome(1)})
        await eventually(lambda: bool(registry.devices()["paired"]))
        for rssi in (-61, -62, -63):  # BlueZ re-reports the cached message on RSSI changes
            bluez.advertise(path, rssi=rssi, service_data={BTHOME: bthome(2)})
        bluez.advertise(path, service_data={BTHOME: bthome(2, 30.0)})  # same packet id
        bluez.advertise(path, service_data={BTHOME: bthome(3)})
        await eventually(lambda: len(readings) == 2)
        await eventually(lambda: counters.get("ble.duplicates") >= 3)
    assert [r.fields["temperature"] for r in readings] == [22.5, 22.5]
    assert counters.get("ble.decoded") == 2


async def test_watchdog_restarts_a_silent_scanner(
    bluez: FakeBlueZ, registry: DeviceRegistry, policy: ConsentPolicy
) -> None:
    counters = Counters()
    readings: list[Reading] = []
    async with make_discovery(registry, policy, readings, counters=counters, watchdog_s=0.3):
        # a restart is counted when it begins, the scanner's start once it has started
        await eventually(
            lambda: (
                counters.get("ble.watchdog_restarts") >= 2
                and counters.get("ble.scanner_starts") >= 3
            )
        )
        path = bluez.add_device(ADDRESS, "ATC_000001")
        await advertise_until(bluez, path, lambda: bool(candidate_ids(registry)))
    assert bluez.monitors() == 0  # stopped cleanly on exit


async def test_connect_failure_is_retried_then_reported(
    bluez: FakeBlueZ, registry: DeviceRegistry, policy: ConsentPolicy
) -> None:
    path = bluez.add_device(ADDRESS, "ATC_000001")
    bluez.fail_connect(path, "Page Timeout")
    router = Router()
    register_commands(router, registry)
    counters = Counters()
    async with make_discovery(registry, policy, [], counters=counters, connect_attempts=3):
        await eventually(lambda: bluez.monitors() == 1)
        bluez.advertise(path, service_data={BTHOME: BTHOME_GOLDEN})
        await eventually(lambda: bool(candidate_ids(registry)))
        device_id = registry.pseudonym(ADDRESS)
        with pytest.raises(DeviceError) as raised:
            await registry.pair(device_id)
        assert raised.value.reason == "connect_failed"
        assert ADDRESS not in str(raised.value)
        assert bluez.calls(path)["Connect"] == 3
        assert counters.get("ble.pair_errors.connect_failed") == 1
        response = await router.dispatch(
            "pair", f'{{"transaction": "t1", "device": "{device_id}"}}'.encode()
        )
    assert response.body["status"] == "error"
    assert "connect_failed" in response.body["error"]["message"]
    view = registry.get(device_id)
    assert view is not None
    assert not view.paired


async def test_refused_device_information_read_is_skipped(
    bluez: FakeBlueZ, registry: DeviceRegistry, policy: ConsentPolicy
) -> None:
    path = bluez.add_device(ADDRESS, "ATC_000001")
    chars = bluez.add_device_information(path, DIS)
    bluez.read_error(chars[0x2A26], "org.bluez.Error.NotPermitted", "Read not permitted")
    bluez.read_error(chars[0x2A25], "org.bluez.Error.NotPermitted", "Read not permitted")
    async with make_discovery(registry, policy, []):
        await eventually(lambda: bluez.monitors() == 1)
        bluez.advertise(path, service_data={BTHOME: BTHOME_GOLDEN})
        await eventually(lambda: bool(candidate_ids(registry)))
        view = await registry.pair(registry.pseudonym(ADDRESS))
    assert view.paired
    assert (view.model, view.firmware) == ("Xiaomi LYWSD03MMC", "pvvx")  # software revision
    assert bluez.calls(path)["Pair"] == 0  # NotPermitted is a refusal, bonding would not help


async def test_insufficient_authentication_bonds_and_reads_again(
    bluez: FakeBlueZ, registry: DeviceRegistry, policy: ConsentPolicy
) -> None:
    path = bluez.add_device(ADDRESS, "ATC_000001")
    chars = bluez.add_device_information(path, {0x2A24: b"LYWSD03MMC", 0x2A26: b"2.0"})
    # bluetoothd's answer when the device demands an authenticated link (ATT error 0x05)
    bluez.read_error(
        chars[0x2A26],
        "org.bluez.Error.Failed",
        "Operation failed with ATT error: 0x05",
        until_bonded=True,
    )
    async with make_discovery(registry, policy, []):
        await eventually(lambda: bluez.monitors() == 1)
        bluez.advertise(path, service_data={BTHOME: BTHOME_GOLDEN})
        await eventually(lambda: bool(candidate_ids(registry)))
        view = await registry.pair(registry.pseudonym(ADDRESS))
    assert view.paired
    assert bluez.calls(path)["Pair"] == 1
    assert view.firmware == "2.0"  # read again once bonded


async def test_bluetooth_flag_stops_and_restarts_scanning(
    bluez: FakeBlueZ, registry: DeviceRegistry, policy: ConsentPolicy
) -> None:
    first = bluez.add_device(ADDRESS, "ATC_000001")
    second = bluez.add_device("A4:C1:38:00:00:02", "ATC_000002")
    async with make_discovery(registry, policy, []) as ble:
        await eventually(lambda: bluez.monitors() == 1)
        bluez.advertise(first, service_data={BTHOME: BTHOME_GOLDEN})
        await eventually(lambda: len(candidate_ids(registry)) == 1)

        policy.set_flag("bluetooth", "off")
        assert not ble.active  # at once, before the scanner has even stopped
        bluez.advertise(second, service_data={BTHOME: BTHOME_GOLDEN})
        await eventually(lambda: bluez.monitors() == 0)
        with pytest.raises(DeviceError) as raised:
            await registry.pair(registry.pseudonym(ADDRESS))
        assert raised.value.reason == "bluetooth_off"
        assert len(candidate_ids(registry)) == 1

        policy.set_flag("bluetooth", "on")
        await eventually(lambda: bluez.monitors() == 1)
        bluez.advertise(second, rssi=-59, service_data={BTHOME: bthome(9)})
        await eventually(lambda: len(candidate_ids(registry)) == 2)


async def test_allow_deny_and_minimum_rssi(
    bluez: FakeBlueZ, registry: DeviceRegistry, policy: ConsentPolicy
) -> None:
    counters = Counters()
    denied, weak, fine = "A4:C1:38:00:00:0D", "A4:C1:38:00:00:0E", "A4:C1:38:00:00:0F"
    paths = {a: bluez.add_device(a, "ATC") for a in (denied, weak, fine)}
    async with make_discovery(
        registry, policy, [], counters=counters, deny=frozenset({denied}), min_rssi=-80
    ):
        await eventually(lambda: bluez.monitors() == 1)
        bluez.advertise(paths[denied], rssi=-40, service_data={BTHOME: BTHOME_GOLDEN})
        bluez.advertise(paths[weak], rssi=-90, service_data={BTHOME: BTHOME_GOLDEN})
        bluez.advertise(paths[fine], rssi=-70, service_data={BTHOME: BTHOME_GOLDEN})
        await eventually(lambda: bool(candidate_ids(registry)))
        await eventually(lambda: counters.get("ble.filtered") >= 2)
    assert candidate_ids(registry) == [registry.pseudonym(fine)]


async def test_allow_list_admits_only_its_devices(
    bluez: FakeBlueZ, registry: DeviceRegistry, policy: ConsentPolicy
) -> None:
    allowed, other = "A4:C1:38:00:00:0A", "A4:C1:38:00:00:0B"
    paths = {a: bluez.add_device(a, "ATC") for a in (allowed, other)}
    counters = Counters()
    async with make_discovery(registry, policy, [], counters=counters, allow=frozenset({allowed})):
        await eventually(lambda: bluez.monitors() == 1)
        bluez.advertise(paths[other], service_data={BTHOME: BTHOME_GOLDEN})
        bluez.advertise(paths[allowed], service_data={BTHOME: BTHOME_GOLDEN})
        await eventually(lambda: bool(candidate_ids(registry)))
        await eventually(lambda: counters.get("ble.filtered") >= 1)
    assert candidate_ids(registry) == [registry.pseudonym(allowed)]


async def test_active_scanning_where_bluez_cannot_scan_passively(
    old_bluez: FakeBlueZ, registry: DeviceRegistry, policy: ConsentPolicy
) -> None:
    counters = Counters()
    async with make_discovery(registry, policy, [], counters=counters) as ble:
        await eventually(old_bluez.discovering)
        assert ble.scanning_mode == "active"
        assert counters.get("ble.scanner_errors") == 0
        path = old_bluez.add_device(ADDRESS, "ATC_000001")
        old_bluez.advertise(path, service_data={BTHOME: BTHOME_GOLDEN})
        await eventually(lambda: bool(candidate_ids(registry)))
        # BlueZ re-announces cached data every 200 ms: repeats, dropped before decoding
        await eventually(lambda: counters.get("ble.duplicates") >= 2)
    assert not old_bluez.discovering()


async def test_adapter_gone_and_back(
    bluez: FakeBlueZ, registry: DeviceRegistry, policy: ConsentPolicy
) -> None:
    counters = Counters()
    async with make_discovery(registry, policy, [], counters=counters, watchdog_s=0.3):
        await eventually(lambda: bluez.monitors() == 1)
        bluez.remove_adapter()
        await eventually(lambda: counters.get("ble.scanner_errors") >= 2)
        bluez.add_adapter()
        await eventually(lambda: bluez.monitors() >= 1)
        path = bluez.add_device(ADDRESS, "ATC_000001")
        await advertise_until(bluez, path, lambda: bool(candidate_ids(registry)))


async def test_online_status_follows_advertisements(
    bluez: FakeBlueZ, registry: DeviceRegistry, policy: ConsentPolicy
) -> None:
    path = bluez.add_device(ADDRESS, "ATC_000001")
    bluez.add_device_information(path, {0x2A26: b"1.0"})
    async with make_discovery(registry, policy, [], offline_after_s=0.4):
        await eventually(lambda: bluez.monitors() == 1)
        bluez.advertise(path, service_data={BTHOME: bthome(1)})
        await eventually(lambda: bool(candidate_ids(registry)))
        device_id = registry.pseudonym(ADDRESS)
        await registry.pair(device_id)

        def online() -> bool:
            view = registry.get(device_id)
            return view is not None and view.online

        await eventually(lambda: not online())  # silent for longer than its timeout
        bluez.advertise(path, service_data={BTHOME: bthome(2)})
        await eventually(online)
        await eventually(lambda: not online())
