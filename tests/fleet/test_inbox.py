"""The consume loop's own receive path against a real Mosquitto.

Records decoded straight from the packets and records whose properties send them through
paho's decoder (an MQTT 5 user property) both open and land in the sink; the batched PUBACKs
reach the broker: the same durable session, connected again, is not sent anything twice.
"""

from __future__ import annotations

from pathlib import Path

import aiomqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from bench.fleet_hubs import SimHub
from gateway.envelope.consumer import Consumer, OpenedRecord
from gateway.envelope.keys import generate_recipient, load_recipient_private
from gateway.envelope.live import Broker, consume
from gateway.envelope.session import ConsumeStats
from gateway.sinks import open_sink
from tests.support.mosquitto import Mosquitto

BASE = "fleet"


async def test_both_decoders_deliver_and_every_record_is_acknowledged_once(
    tmp_path: Path,
) -> None:
    mosquitto = Mosquitto(tmp_path / "mosquitto", "allow_anonymous true").start()
    keys = generate_recipient(tmp_path / "keys")
    recipient = load_recipient_private(keys.private_key)
    hub = SimHub("hub-1", BASE, recipient.public_key())
    consumer = Consumer(recipient, {hub.hub_id: hub.key.public_key()})
    broker = Broker(port=mosquitto.port)
    opened: list[OpenedRecord] = []
    try:
        async with open_sink(f"sqlite://{tmp_path / 'records.db'}") as sink:

            async def run(count: int, seconds: float | None = None) -> ConsumeStats:
                return await consume(
                    consumer,
                    broker,
                    BASE,
                    on_record=opened.append,
                    count=count,
                    seconds=seconds,
                    client_id="inbox-test",
                    sink=sink,
                )

            await run(0)  # the durable session and its subscriptions exist
            rows = hub.seal(40)
            tagged = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
            tagged.UserProperty = ("via", "paho")
            async with aiomqtt.Client(
                "127.0.0.1", mosquitto.port, protocol=aiomqtt.ProtocolVersion.V5
            ) as client:
                for i, row in enumerate(rows):
                    properties = tagged if i % 2 else None
                    await client.publish(
                        row.topic, row.payload, qos=1, retain=row.retain, properties=properties
                    )
            assert (await run(40, seconds=20)).opened == 40
            assert sorted(r.seq for r in opened) == list(range(40))
            assert await sink.count() == 40
            # Everything was acknowledged: the session has nothing left to send again.
            again = await run(1, seconds=1.5)
            assert (again.opened, again.duplicates) == (0, 0)
    finally:
        mosquitto.stop()
