"""The LAN inventory end to end: families announced over real zeroconf multicast on loopback,
listed as candidates, paired for device.basic and online status; WLED read through python-wled
from a simulated device serving WLED's documented JSON API over real HTTP."""

from __future__ import annotations

import drivers
from drivers.lan.simulator import Announcer, sample_txt
from drivers.wled.simulator import SimulatedWled
from tests.devices.helpers import wait_for
from tests.mdns.helpers import Hub, view


async def test_inventory_family_basic_info_and_online(hub: Hub) -> None:
    service_type, instance, txt = sample_txt()["esphome"]
    async with Announcer(service_type, instance, txt):
        device = hub.registry.pseudonym("a4cf12b3c4d5")
        await wait_for(lambda: hub.registry.get(device) is not None, 10)
        candidate = view(hub, device)
        assert (candidate.driver, candidate.model, candidate.firmware) == (
            "esphome", "esp32dev", "2024.6.1"
        )  # fmt: skip
        assert hub.readings == []
        paired = await hub.registry.pair(device)
        assert paired.mac == "A4:CF:12:B3:C4:D5"
        assert paired.name == "Kitchen sensor"
        await wait_for(lambda: len(hub.readings_of(device)) >= 1)
        first = hub.readings_of(device)[0]
        assert first.driver == "esphome"
        assert first.fields["online"] is True
        categories = {f: drivers.field_category("esphome", f) for f in first.fields}
        assert categories["mac"] == "device.network"  # forwarded only with the network flag
        assert categories["model"] == categories["online"] == "device.basic"
        assert [k for k in hub.registry.devices()["paired"][0] if k == "mac"] == []
    # Gone from the network: offline, reported as a device.basic status reading.
    await wait_for(lambda: not view(hub, device).online, 10)
    await wait_for(lambda: hub.readings_of(device)[-1].fields == {"online": False}, 5)


async def test_every_family_listed(hub: Hub) -> None:
    samples = sample_txt()
    async with (
        Announcer(*samples["googlecast"]),
        Announcer(*samples["hue"]),
        Announcer(*samples["matter"]),
    ):
        await wait_for(lambda: len(hub.registry.devices()["candidates"]) == 3, 10)
        drivers_seen = {c["driver"] for c in hub.registry.devices()["candidates"]}
    assert drivers_seen == {"googlecast", "hue", "matter"}


async def test_wled_through_python_wled(hub: Hub) -> None:
    async with SimulatedWled() as strip:
        device = hub.registry.pseudonym(strip.mac)
        await wait_for(lambda: hub.registry.get(device) is not None, 10)
        assert strip.requests == 0  # a candidate is never contacted
        paired = await hub.registry.pair(device)
        assert (paired.model, paired.firmware) == ("WLED FOSS", "0.14.4")
        assert paired.update_available is False  # read at pairing
        strip.brightness = 200
        await wait_for(lambda: any(r.fields.get("brightness") == 200 for r in hub.readings), 5)
        reading = hub.readings_of(device)[-1]
        assert reading.driver == "wled"
        categories = {f: drivers.field_category("wled", f) for f in reading.fields}
        assert categories["on"] == "telemetry.environment"
        assert categories["wifi_rssi"] == "device.network"
        assert None not in categories.values()
        # A malformed answer marks the device errored; nothing else breaks.
        strip.broken = True
        await wait_for(lambda: view(hub, device).error == "bad_shape", 5)
        assert hub.counters.get("mdns.errors.bad_shape") >= 1
