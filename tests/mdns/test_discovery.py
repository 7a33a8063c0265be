"""Wi-Fi devices end to end: real multicast on loopback, a simulated Shelly over real HTTP."""

from __future__ import annotations

import asyncio
import json
import logging
import time

import pytest

import drivers
from gateway.commands.router import Router
from gateway.config import MdnsConfig
from gateway.devices import register_commands
from gateway.discovery.mdns import MdnsDiscovery
from gateway.errors import ConfigError
from gateway.logs import JsonFormatter
from tests.devices.helpers import wait_for

from .helpers import Hub, MakeDevice, view


async def test_discover_pair_collect_disappear_return(hub: Hub, make_device: MakeDevice) -> None:
    shelly = await make_device()
    device = hub.registry.pseudonym(shelly.device_id)

    # Discovered: a candidate with what the announcement says, never contacted.
    await wait_for(lambda: hub.registry.get(device) is not None)
    [candidate] = hub.registry.devices()["candidates"]
    assert candidate["id"] == device
    assert (candidate["transport"], candidate["model"], candidate["firmware"]) == (
        "mdns",
        "Plus1PM",
        "1.0.0",
    )
    assert candidate["online"] is True
    await asyncio.sleep(3 * hub.config.poll_interval_s)
    assert hub.readings == []
    assert shelly.requests == 0

    # permit_join: paired with the device info read over HTTP.
    hub.registry.permit_join(30, "mdns")
    await wait_for(lambda: hub.registry.is_paired(device))
    paired = view(hub, device)
    assert (paired.model, paired.firmware) == ("SNSW-001P16EU", "1.0.0")
    assert paired.activated_at is not None
    [entry] = hub.registry.devices()["paired"]
    assert "mac" not in entry
    hub.policy.set_flag("network", "on", device)
    colon_mac = ":".join(shelly.mac[i : i + 2] for i in range(0, 12, 2))
    assert hub.registry.devices()["paired"][0]["mac"] == colon_mac

    # Telemetry: readings classified by the driver's field catalogue.
    await wait_for(lambda: len(hub.readings) >= 2)
    reading = hub.readings[-1]
    assert (reading.device, reading.driver) == (device, "shelly")
    assert abs(reading.ts - time.time()) < 5
    categories = {f: drivers.field_category("shelly", f) for f in reading.fields}
    assert None not in categories.values()
    assert categories["switch0_power"] == "telemetry.environment"
    assert categories["wifi_ssid"] == "device.network"
    assert categories["update_available"] == "device.basic"
    assert reading.fields["switch0_power"] == 12.5
    shelly.set_telemetry(apower=99.5, output=False)
    await wait_for(lambda: hub.readings[-1].fields.get("switch0_power") == 99.5)
    assert hub.readings[-1].fields["switch0_output"] is False

    # Upgrade info from the status, firmware change from the TXT record, both stored.
    shelly.set_update("1.1.0", beta="1.2.0-beta1")
    await wait_for(lambda: view(hub, device).update_available)
    assert view(hub, device).update_version == "1.1.0"
    await shelly.set_firmware("1.1.0")
    await wait_for(lambda: view(hub, device).firmware == "1.1.0")

    # Gone (goodbye): offline within offline_after_s; no more readings.
    started = time.monotonic()
    await shelly.disappear()
    await wait_for(lambda: not view(hub, device).online, within=hub.config.offline_after_s)
    assert time.monotonic() - started <= hub.config.offline_after_s
    count = len(hub.readings)
    await asyncio.sleep(3 * hub.config.poll_interval_s)
    assert len(hub.readings) == count

    # Back: online again and collecting, still paired, firmware as announced.
    await shelly.appear()
    await wait_for(lambda: view(hub, device).online)
    await wait_for(lambda: len(hub.readings) > count)
    assert view(hub, device).paired
    assert view(hub, device).firmware == "1.1.0"
    assert hub.events.kinds(device)[:2] == ["candidate", "paired"]
    assert "offline" in hub.events.kinds(device)


async def test_firmware_change_is_stored(hub: Hub, make_device: MakeDevice) -> None:
    shelly = await make_device(firmware="1.0.0")
    device = hub.registry.pseudonym(shelly.device_id)
    await wait_for(lambda: hub.registry.get(device) is not None)
    await hub.registry.pair(device)
    await shelly.set_firmware("1.0.5")
    await wait_for(lambda: view(hub, device).firmware == "1.0.5")
    assert "updated" in hub.events.kinds(device)


async def test_a_paired_device_that_loses_power_goes_offline(
    hub: Hub, make_device: MakeDevice
) -> None:
    shelly = await make_device()
    device = hub.registry.pseudonym(shelly.device_id)
    await wait_for(lambda: hub.registry.get(device) is not None)
    await hub.registry.pair(device)
    await wait_for(lambda: len(hub.readings) >= 1)
    await shelly.disappear(goodbye=False)  # no goodbye: only failed polls tell
    await wait_for(lambda: not view(hub, device).online, within=hub.config.offline_after_s)
    assert view(hub, device).error == "unreachable"
    assert hub.counters.get("mdns.errors.unreachable") >= 1


async def test_a_silent_candidate_is_dropped_within_offline_after(
    hub: Hub, make_device: MakeDevice
) -> None:
    shelly = await make_device()
    device = hub.registry.pseudonym(shelly.device_id)
    await wait_for(lambda: hub.registry.get(device) is not None)
    # Alive while it answers the liveness queries, for longer than offline_after_s.
    await asyncio.sleep(hub.config.offline_after_s * 1.5)
    assert view(hub, device).online
    await shelly.disappear(goodbye=False)  # still in every cache, but silent
    started = time.monotonic()
    await wait_for(lambda: hub.registry.get(device) is None, within=hub.config.offline_after_s + 1)
    assert time.monotonic() - started <= hub.config.offline_after_s + 0.5
    assert hub.events.kinds(device)[-2:] == ["offline", "lost"]
    await shelly.appear()  # answers again: a candidate again
    await wait_for(lambda: hub.registry.get(device) is not None, within=3)


async def test_unpair_stops_collection_and_erases(hub: Hub, make_device: MakeDevice) -> None:
    shelly = await make_device()
    device = hub.registry.pseudonym(shelly.device_id)
    router = Router()
    register_commands(router, hub.registry)
    await wait_for(lambda: hub.registry.get(device) is not None)
    response = await router.dispatch("pair", f'{{"device": "{device}"}}'.encode())
    assert response.body["status"] == "ok", response.body
    await wait_for(lambda: len(hub.readings) >= 1)
    response = await router.dispatch("unpair", f'{{"device": "{device}"}}'.encode())
    assert response.body["status"] == "ok", response.body
    assert hub.erased == [device]
    count = len(hub.readings)
    requests = shelly.requests
    await asyncio.sleep(4 * hub.config.poll_interval_s)
    assert len(hub.readings) == count
    assert shelly.requests == requests  # not even polled any more
    # Still on the network: listed again as a candidate (no stored info).
    await wait_for(lambda: hub.registry.get(device) is not None)
    again = view(hub, device)
    assert not again.paired
    assert again.activated_at is None


async def test_many_devices_are_independent(hub: Hub, make_device: MakeDevice) -> None:
    shellies = [await make_device() for _ in range(3)]
    ids = [hub.registry.pseudonym(s.device_id) for s in shellies]
    await wait_for(lambda: all(hub.registry.get(i) is not None for i in ids))
    hub.registry.permit_join(10)
    await wait_for(lambda: hub.registry.paired_ids("mdns") == frozenset(ids))
    await wait_for(lambda: all(hub.readings_of(i) for i in ids))
    assert len(set(ids)) == 3


async def test_logs_carry_pseudonyms_only(
    hub: Hub, make_device: MakeDevice, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    shelly = await make_device(name="Anna's bedroom")
    device = hub.registry.pseudonym(shelly.device_id)
    await wait_for(lambda: hub.registry.get(device) is not None)
    hub.registry.permit_join(10)
    await wait_for(lambda: len(hub.readings) >= 1)
    await shelly.set_firmware("2.0.0")
    await wait_for(lambda: view(hub, device).firmware == "2.0.0")
    await shelly.disappear(goodbye=False)
    await wait_for(lambda: not view(hub, device).online)
    ours = [r for r in caplog.records if r.name.startswith(("gateway", "drivers"))]
    # Every field but the timestamp, whose digits could match anything.
    lines = [
        json.dumps({k: v for k, v in json.loads(JsonFormatter().format(r)).items() if k != "ts"})
        for r in ours
    ]
    assert any(device in line for line in lines)
    secrets = (
        shelly.device_id,
        shelly.mac,
        shelly.mac.lower(),
        "127.0.0.1",
        "Anna",
        "HomeNet",
        "2.0.0",
        "12.5",
        "230.1",
    )
    for line in lines:
        for secret in secrets:
            assert secret not in line, (secret, line)


async def test_an_unusable_interface_is_a_config_error(hub: Hub) -> None:
    config = MdnsConfig(interfaces=("203.0.113.77",))  # TEST-NET-3: not on this host
    with pytest.raises(ConfigError) as caught:
        async with MdnsDiscovery(config, hub.registry, hub.readings.append, hub.counters):
            pass
    assert caught.value.key == "discovery.mdns.interfaces"
