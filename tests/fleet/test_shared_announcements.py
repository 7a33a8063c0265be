"""A member opens records whose announcement only another member saw, from the shared sink.

Member A accepts a hub's epoch announcement and stores it in the sink; member B, with a
session of its own, never receives that announcement over MQTT (here it is not published at
all, as when the retained copy has been replaced by a newer epoch's). B holds the records,
finds the announcement in the sink, opens and stores every record, and never asks the hub to
resend it. Both sinks.

An epoch announced with ``"est": true`` has an acceptance window counted from its first sight;
the sink remembers when it first stored the announcement, so a restarted process or another
member counts from then, not from its own first sight (docs/envelope.md).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from pathlib import Path

import aiomqtt
import pytest

from bench.fleet_hubs import SimHub, publish_rows
from gateway.envelope.consumer import DEFAULT_ACCEPT_DELAY_S, Consumer, OpenedRecord
from gateway.envelope.errors import ExpiredEpochError
from gateway.envelope.keys import generate_recipient, load_recipient_private
from gateway.envelope.live import Broker, consume
from gateway.envelope.session import Rejection
from gateway.model import Observation
from gateway.sinks import StoredAnnouncement, open_sink
from tests.support.mosquitto import Mosquitto

BASE = "shared-ann"
EST_BASE = "shared-est"  # retained announcements of its own: none reach the test above
EPOCH_S = 3600.0  # the sealer's default epoch length: an estimated window is this + the delay


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


@pytest.mark.parametrize("retained", [False, True], ids=["held-records", "retained-announcement"])
async def test_an_estimated_window_counts_from_when_the_sink_first_stored_the_epoch(
    broker: Mosquitto, tmp_path: Path, sink_url: str, retained: bool
) -> None:
    keys = generate_recipient(tmp_path / "keys")
    recipient = load_recipient_private(keys.private_key)
    hub = SimHub(f"hub-est-{tmp_path.name[-8:]}", EST_BASE, recipient.public_key())
    now = time.time()
    readings = [Observation(f"{i:016x}", "telemetry.environment", now, {"n": i}) for i in range(5)]
    rows = hub.sealer.seal_batch(readings, lambda _category: 86400.0, estimated=True)
    announcement = next(r for r in rows if r.retain)
    trust = {hub.hub_id: hub.key.public_key()}
    info = Consumer(recipient, trust).accept_announcement(announcement.payload)
    async with open_sink(sink_url) as sink:  # a member stored the epoch: first sight is now
        stored = StoredAnnouncement(info.kid, info.hub_id, info.epoch, announcement.payload)
        await sink.store([], [stored])

    def later(seconds: float) -> Consumer:
        """A member (or this one restarted) running ``seconds`` after the first sight."""
        return Consumer(recipient, trust, clock=lambda: time.time() + seconds)

    window = EPOCH_S + DEFAULT_ACCEPT_DELAY_S
    within, past = later(window - 600), later(window + 600)
    opened: list[OpenedRecord] = []
    refused: list[Rejection] = []
    async with open_sink(sink_url) as sink_a, open_sink(sink_url) as sink_b:
        ready_a, ready_b = asyncio.Event(), asyncio.Event()
        opening = asyncio.create_task(
            consume(
                within,
                Broker(port=broker.port),
                EST_BASE,
                on_record=opened.append,
                count=5,
                seconds=20,
                client_id=f"within-{hub.hub_id}",
                sink=sink_a,
                ready=ready_a,
            )
        )
        refusing = asyncio.create_task(
            consume(
                past,
                Broker(port=broker.port),
                EST_BASE,
                on_record=opened.append,
                on_rejection=refused.append,
                seconds=3,
                client_id=f"past-{hub.hub_id}",
                sink=sink_b,
                ready=ready_b,
            )
        )
        await asyncio.gather(ready_a.wait(), ready_b.wait())
        try:
            await publish_rows(broker.port, rows if retained else rows[1:])
            within_stats, past_stats = await asyncio.gather(opening, refusing)
        finally:  # the broker is shared: leave no retained announcement behind
            async with aiomqtt.Client("127.0.0.1", broker.port) as client:
                await client.publish(announcement.topic, b"", qos=1, retain=True)
    assert (within_stats.opened, within_stats.rejected, past_stats.opened) == (5, 0, 0)
    assert sorted(r.device for r in opened) == [f"{i:016x}" for i in range(5)]
    assert refused  # the announcement, and in the retained case the records too
    assert all(isinstance(r.error, ExpiredEpochError) for r in refused)


async def _requests(spy: aiomqtt.Client, seconds: float) -> list[str]:
    seen: list[str] = []
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(seconds):
            async for message in spy.messages:
                seen.append(str(message.topic))
    return seen
