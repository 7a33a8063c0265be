"""The demo's Wi-Fi devices against the hub's mDNS transport on loopback: the inventory families
and WLED are listed, the HomeKit accessory is paired with its setup code as the demo pairs it."""

from __future__ import annotations

import json
from typing import Any

from gateway.demo.wifi import inventory, pair_homekit, wifi_devices
from tests.devices.helpers import wait_for

from .conftest import HomeHub


async def test_demo_devices_listed_and_the_accessory_paired(home: HomeHub) -> None:
    events: list[str] = []

    async def request(command: str, params: dict[str, Any]) -> dict[str, Any]:
        body = json.dumps({"transaction": "demo", **params}).encode()
        return (await home.router.dispatch(command, body)).body

    async with wifi_devices(events) as code:
        assert code is not None  # HAP-python is installed with the test extra
        families = {"googlecast", "esphome", "matter", "hue", "wled", "homekit"}

        def listed() -> set[str]:
            return {v.driver for v in home.registry.views()} & families

        await wait_for(lambda: listed() == families, 15)
        await pair_homekit(request, code, events)
        assert events == [events[0]]
        assert events[0].endswith("with its setup code -> ok"), events
        [paired] = [v for v in home.registry.views() if v.paired]
        assert (paired.driver, paired.model) == ("homekit", "Acme T1000")
        await wait_for(lambda: any("temperature_c" in r.fields for r in home.readings), 5)
        text = inventory(await request("devices", {}))
        for family in families:
            assert f" {family} " in text, text
        await request("unpair", {"device": paired.id})
