"""HomeKit through the whole hub: a real HAP-python accessory on 127.0.0.1, discovered over real
zeroconf multicast, paired through the MQTT ``pair`` request with its setup code, its
characteristic events sealed, forwarded through a real Mosquitto and opened by the consumer
library; the hub restarted reconnects from the stored pairing keys; ``unpair`` frees it.
"""

from __future__ import annotations

import contextlib
from pathlib import Path

from drivers.homekit.simulator import SETUP_CODE, SimulatedAccessory
from gateway.daemon import Hub
from tests.support.hub import (
    RecordSink,
    eventually,
    hub_config,
    make_sink,
    running_hub,
    subscribed,
)
from tests.support.mosquitto import Mosquitto
from tests.support.mqtt_requests import requests

MDNS = {"enabled": True, "poll_interval_s": 0.2, "http_timeout_s": 0.5, "offline_after_s": 2.0}


def temperatures(sink: RecordSink, device: str, value: float) -> int:
    """Return how many opened records of ``device`` carry ``temperature_c == value``."""
    return sum(
        1 for r in sink.opened if r.device == device and r.fields.get("temperature_c") == value
    )


async def candidate_of(hub: Hub, accessory: SimulatedAccessory) -> str:
    """Wait until the accessory is listed, and return its device id."""
    device = hub.registry.pseudonym(accessory.device_id)
    registry = hub.registry
    await eventually(lambda: registry.get(device) is not None, 15, "the accessory listed")
    return device


async def test_homekit_paired_over_mqtt_opened_by_consumer_restart_and_unpair(
    broker: Mosquitto, tmp_path: Path
) -> None:
    config = hub_config(tmp_path, broker.port, "e2e-homekit", discovery={"mdns": MDNS})
    async with SimulatedAccessory() as accessory, contextlib.AsyncExitStack() as stack:
        async with running_hub(config) as hub, requests(config, broker.port, timeout_s=30) as ask:
            # The consumer trusts the hub's key, made at its first start (made before, the
            # hub would take its empty database for a lost one and start with consent off).
            sink = make_sink(config, broker.port, tmp_path)
            await stack.enter_async_context(subscribed(sink))
            device = await candidate_of(hub, accessory)
            # a request sent before the hub subscribed to its request topics is lost
            await eventually(hub.link.connected.is_set, 15, "the hub connected")
            answer = await ask("devices")
            [candidate] = answer["data"]["candidates"]
            assert (candidate["id"], candidate["driver"]) == (device, "homekit")
            wrong = await ask("pair", device=device, setup_code="111-22-333")
            assert wrong["error"]["code"] == "invalid_request", wrong
            assert not accessory.is_paired()

            paired = await ask("pair", device=device, setup_code=SETUP_CODE)
            assert paired["status"] == "ok", paired
            assert paired["data"]["model"] == "Acme T1000"
            assert accessory.is_paired()
            accessory.temperature = 23.5
            await eventually(
                lambda: temperatures(sink, device, 23.5) > 0, 15, "an event opened by the consumer"
            )
            basic = [r for r in sink.opened if r.device == device and r.category == "device.basic"]
            assert basic
            assert basic[0].fields["manufacturer"] == "Acme"
            assert {r.category for r in sink.opened if r.device == device} <= {
                "device.basic",
                "telemetry.environment",
            }  # the serial number (device.network) stays home without the network flag

        # The hub restarted: the stored pairing keys reconnect, no setup code asked for.
        async with running_hub(config) as hub, requests(config, broker.port, timeout_s=30) as ask:
            assert hub.registry.is_paired(device)
            accessory.temperature = 26.0
            await eventually(
                lambda: temperatures(sink, device, 26.0) > 0, 20, "events again after a restart"
            )
            registry = hub.registry
            await eventually(lambda: bool(registry.get(device).online), 5, "online")  # type: ignore[union-attr]
            accessory.temperature = 27.0  # a characteristic event on the restored connection
            await eventually(
                lambda: temperatures(sink, device, 27.0) > 0, 10, "an event after the restart"
            )

            # unpair removes the pairing on the accessory: it accepts a new pairing at once.
            freed = await ask("unpair", device=device)
            assert freed["data"] == {"device": device, "erased": True, "released": True}, freed
            assert not accessory.is_paired()
            await eventually(lambda: registry.get(device) is not None, 15, "listed again")
            again = await ask("pair", device=device, setup_code=SETUP_CODE)
            assert again["status"] == "ok", again
            assert accessory.is_paired()
            await ask("unpair", device=device)
        assert not sink.errors
