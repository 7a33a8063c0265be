"""A member opens records whose announcement only another member saw, from the shared sink.

Member A accepts a hub's epoch announcement and stores it in the sink; member B, with a
session of its own, never receives that announcement over MQTT (here it is not published at
all, as when the retained copy has been replaced by a newer epoch's). B holds the records,
finds the announcement in the sink, opens and stores every record, and never asks the hub to
resend it. Both sinks.
"""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path

import aiomqtt

from bench.fleet_hubs import SimHub, publish_rows
from gateway.envelope.consumer import Consumer, OpenedRecord
from gateway.envelope.keys import generate_recipient, load_recipient_private
from gateway.envelope.live import Broker, consume
from gateway.sinks import StoredAnnouncement, open_sink
from tests.support.mosquitto import Mosquitto

BASE = "shared-ann"


async def test_records_open_from_an_announcement_another_member_stored(
    broker: Mosquitto, tmp_path: Path, sink_url: str
) -> None:
    keys = generate_recipient(tmp_path / "keys")
    recipient = load_recipient_private(keys.private_key)
    hub = SimHub(f"hub-{tmp_path.name[-8:]}", BASE, recipient.public_key())
    rows = hub.seal(50)
    announcement = next(r for r in rows if r.retain)
    records = [r for r in rows if not r.retain]
    trust = {hub.hub_id: hub.key.public_key()}

    member_a = Consumer(recipient, trust)
    info = member_a.accept_announcement(announcement.payload, announcement.topic)
    async with open_sink(sink_url) as sink:
        stored = StoredAnnouncement(info.kid, info.hub_id, info.epoch, announcement.payload)
        await sink.store([], [stored])

    member_b = Consumer(recipient, trust)
    opened: list[OpenedRecord] = []
    async with aiomqtt.Client("127.0.0.1", broker.port) as spy, open_sink(sink_url) as sink:
        await spy.subscribe(f"{BASE}/+/request/#", qos=1)
        ready = asyncio.Event()
        consuming = asyncio.create_task(
            consume(
                member_b,
                Broker(port=broker.port),
                BASE,
                on_record=opened.append,
                count=50,
                seconds=20,
                client_id=f"member-b-{hub.hub_id}",
                sink=sink,
                ready=ready,
            )
        )
        await ready.wait()
        await publish_rows(broker.port, records)
        stats = await consuming
        assert (stats.opened, stats.rejected, await sink.count()) == (50, 0, 50)
        assert sorted(r.seq for r in opened) == list(range(50))
        assert await _requests(spy, 0.5) == []  # no epoch/resend reached the hub


async def _requests(spy: aiomqtt.Client, seconds: float) -> list[str]:
    seen: list[str] = []
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(seconds):
            async for message in spy.messages:
                seen.append(str(message.topic))
    return seen
