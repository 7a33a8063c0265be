"""An inventory device's MAC through the whole hub: an ESPHome node announced over real
zeroconf multicast on loopback, paired through the MQTT ``pair`` request, its readings sealed,
forwarded through a real Mosquitto and opened by the consumer library. The MAC
(``device.network``) reaches the consumer only while the ``network`` flag is on."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from drivers.lan.simulator import Announcer, sample_txt
from gateway.daemon import Hub
from tests.support.hub import RecordSink, eventually, hub_config, make_sink, running_hub
from tests.support.hub import subscribed as consumer_of
from tests.support.mosquitto import Mosquitto
from tests.support.mqtt_requests import Requests, requests

MDNS = {"enabled": True, "poll_interval_s": 0.2, "http_timeout_s": 0.5, "offline_after_s": 2.0}
NODE, MAC = "a4cf12b3c4d5", "A4:CF:12:B3:C4:D5"  # the sample ESPHome node's (drivers/lan)
BASIC = {"model": "esp32dev", "firmware": "2024.6.1", "name": "Kitchen sensor", "online": True}


def opened(sink: RecordSink, device: str, category: str) -> list[dict[str, Any]]:
    """Return the fields of the records of ``device`` in ``category`` the consumer opened."""
    return [dict(r.fields) for r in sink.opened if r.device == device and r.category == category]


@contextlib.asynccontextmanager
async def esphome_hub(
    broker: Mosquitto, tmp_path: Path, hub_id: str
) -> AsyncIterator[tuple[Hub, Requests, RecordSink, str]]:
    """Run a hub with mDNS on loopback, its consumer and the announced node (listed)."""
    config = hub_config(tmp_path, broker.port, hub_id, discovery={"mdns": MDNS})
    async with (
        Announcer(*sample_txt()["esphome"]),
        contextlib.AsyncExitStack() as stack,
        running_hub(config) as hub,
        requests(config, broker.port, timeout_s=20) as ask,
    ):
        # The consumer trusts the hub's key, made at its first start.
        sink = make_sink(config, broker.port, tmp_path)
        await stack.enter_async_context(consumer_of(sink))
        device, registry = hub.registry.pseudonym(NODE), hub.registry
        await eventually(lambda: registry.get(device) is not None, 15, "the node listed")
        yield hub, ask, sink, device
        assert not sink.errors


async def test_with_the_network_flag_off_the_mac_stays_home(
    broker: Mosquitto, tmp_path: Path
) -> None:
    async with esphome_hub(broker, tmp_path, "e2e-esphome-mac-off") as (hub, ask, sink, device):
        paired = await ask("pair", device=device)
        assert paired["status"] == "ok", paired
        assert "mac" not in paired["data"]
        await eventually(lambda: bool(opened(sink, device, "device.basic")), 15, "basic info")
        assert opened(sink, device, "device.basic") == [BASIC]
        assert opened(sink, device, "device.network") == []
        assert hub.counters.get("dropped.device.network") == 1  # the MAC, at the gate


async def test_with_the_network_flag_on_the_mac_reaches_the_consumer(
    broker: Mosquitto, tmp_path: Path
) -> None:
    async with esphome_hub(broker, tmp_path, "e2e-esphome-mac-on") as (_, ask, sink, device):
        answer = await ask("consent/set", flag="network", state="on")
        assert answer["status"] == "ok", answer
        paired = await ask("pair", device=device)
        assert paired["status"] == "ok", paired
        assert paired["data"]["mac"] == MAC
        await eventually(lambda: bool(opened(sink, device, "device.network")), 15, "the MAC")
        assert opened(sink, device, "device.network") == [{"mac": MAC}]
        assert opened(sink, device, "device.basic") == [BASIC]
