"""Records whose epoch is not yet known are parked in the sink, acknowledged, and opened later.

A broker delivers at most a window of unacknowledged QoS 1 messages to a client (RabbitMQ's
``mqtt.prefetch``, 10 by default). A consumer that held the acknowledgements of records
waiting for their announcement filled it, and the announcement queued behind them never came:
on RabbitMQ, which sends no retained message to a wildcard subscription, a fresh consumer of a
busy hub opened nothing. Parked records are acknowledged with their batch, survive a restart,
and are opened by whichever member accepts the announcement (gateway/envelope/parking.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from pathlib import Path

import aiomqtt

from bench.fleet_hubs import SimHub, publish_rows
from gateway.envelope.batch import Batch, Tally, reported
from gateway.envelope.consumer import Consumer, OpenedRecord
from gateway.envelope.keys import generate_recipient, load_recipient_private
from gateway.envelope.live import DEFAULT_MAX_PARKED, Broker, consume
from gateway.envelope.parking import Parking
from gateway.envelope.session import ConsumeStats, Session
from gateway.model import OutboxRow
from gateway.sinks import ParkedRecord, Sink, Stored, open_sink
from tests.fleet.brokers import RabbitMQ
from tests.support.mosquitto import Mosquitto


class _Hub:
    """A simulated hub: sealed rows, and (when asked) an answer to every epoch/resend."""

    def __init__(self, tmp_path: Path, base: str, records: int) -> None:
        keys = generate_recipient(tmp_path / "keys")
        self.recipient = load_recipient_private(keys.private_key)
        self.sim = SimHub(f"hub-{tmp_path.name[-8:]}", base, self.recipient.public_key())
        rows = self.sim.seal(records)
        self.announcement = next(r for r in rows if r.retain)
        self.records: list[OutboxRow] = [r for r in rows if not r.retain]
        self.requests = 0

    def consumer(self) -> Consumer:
        """A consumer process that trusts this hub and knows none of its epochs."""
        return Consumer(self.recipient, {self.sim.hub_id: self.sim.key.public_key()})

    @contextlib.asynccontextmanager
    async def answering(self, port: int, protocol: int = 5) -> AsyncIterator[None]:
        """Answer resend requests, as the daemon does, until the block ends."""
        subscribed = asyncio.Event()

        async def answer() -> None:
            async with aiomqtt.Client(
                "127.0.0.1", port, protocol=aiomqtt.ProtocolVersion(protocol)
            ) as client:
                topic = f"{self.sim.base}/{self.sim.hub_id}/request/epoch/resend"
                await client.subscribe(topic, qos=1)
                subscribed.set()
                async for message in client.messages:
                    assert isinstance(message.payload, bytes)
                    assert json.loads(message.payload)["kid"] == (self.sim.sealer.kid or b"").hex()
                    self.requests += 1
                    await client.publish(self.announcement.topic, self.announcement.payload, qos=1)

        task = asyncio.create_task(answer())
        try:
            async with asyncio.timeout(10):
                await subscribed.wait()
            yield
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task


async def _consume(
    hub: _Hub,
    port: int,
    sink: Sink | None,
    client_id: str,
    *,
    publish: list[OutboxRow] | None = None,
    protocol: int = 5,
    count: int | None = None,
    seconds: float | None = None,
    max_parked: int = DEFAULT_MAX_PARKED,
) -> tuple[ConsumeStats, list[OpenedRecord]]:
    """Consume ``hub``'s base (publishing ``publish`` once subscribed); return stats, records."""
    opened: list[OpenedRecord] = []
    ready = asyncio.Event()
    task = asyncio.create_task(
        consume(
            hub.consumer(),
            Broker(port=port),
            hub.sim.base,
            on_record=opened.append,
            protocol=protocol,
            client_id=client_id,
            sink=sink,
            ready=ready,
            count=count,
            seconds=seconds,
            max_parked=max_parked,
        )
    )
    async with asyncio.timeout(10):
        await ready.wait()
    if publish:
        await publish_rows(port, publish, protocol)
    return await task, opened


async def test_records_waiting_for_their_epoch_never_fill_the_brokers_window(
    rabbitmq: RabbitMQ, tmp_path: Path, sink_url: str
) -> None:
    hub = _Hub(tmp_path, "parking-window", 50)
    async with hub.answering(rabbitmq.port, 4), open_sink(sink_url) as sink:
        stats, opened = await _consume(
            hub, rabbitmq.port, sink, "parking-window", publish=hub.records, protocol=4,
            count=50, seconds=30,
        )  # fmt: skip
        assert sorted(r.seq for r in opened) == list(range(50))
        assert (stats.stored, stats.held, stats.duplicates) == (50, 0, 0)
        assert (await sink.count(), await sink.parked_epochs()) == (50, [])
    assert hub.requests >= 1


async def test_without_a_sink_waiting_records_are_held_in_memory_and_acknowledged(
    rabbitmq: RabbitMQ, tmp_path: Path
) -> None:
    hub = _Hub(tmp_path, "parking-memory", 50)
    async with hub.answering(rabbitmq.port, 4):
        stats, opened = await _consume(
            hub, rabbitmq.port, None, "parking-memory", publish=hub.records, protocol=4,
            count=50, seconds=30,
        )  # fmt: skip
    assert sorted(r.seq for r in opened) == list(range(50))
    assert (stats.held, stats.dropped) == (0, 0)


async def test_parked_records_survive_a_restart_and_open_when_the_hub_answers(
    broker: Mosquitto, tmp_path: Path, sink_url: str
) -> None:
    hub = _Hub(tmp_path, "parking-restart", 30)
    async with open_sink(sink_url) as sink:  # the hub is away: nothing answers
        stats, opened = await _consume(
            hub, broker.port, sink, "parking-restart", publish=hub.records, seconds=2
        )
        assert (opened, stats.held, stats.stored, stats.requests) == ([], 30, 0, 1)
        [parked] = await sink.parked_epochs()
        assert (parked.kid, parked.hub_id, parked.count) == (hub.sim.sealer.kid, hub.sim.hub_id, 30)
    async with hub.answering(broker.port), open_sink(sink_url) as sink:  # a new process
        stats, opened = await _consume(hub, broker.port, sink, "parking-restart", count=30)
        assert sorted(r.seq for r in opened) == list(range(30))
        # acknowledged when parked: the broker sent none of them again
        assert (stats.stored, stats.held, stats.duplicates) == (30, 0, 0)
        assert (await sink.count(), await sink.parked_epochs()) == (30, [])
    assert hub.requests == 1  # asked by the restarted process's start


async def test_a_member_opens_the_records_another_member_parked(
    broker: Mosquitto, tmp_path: Path, sink_url: str
) -> None:
    hub = _Hub(tmp_path, "parking-members", 20)
    async with open_sink(sink_url) as sink_a:
        stats_a, _ = await _consume(
            hub, broker.port, sink_a, "parking-member-a", publish=hub.records, seconds=2
        )
    assert stats_a.held == 20
    async with open_sink(sink_url) as sink_b:
        try:
            stats_b, opened = await _consume(
                hub, broker.port, sink_b, "parking-member-b", publish=[hub.announcement], count=20,
                seconds=20,
            )  # fmt: skip
        finally:  # the broker is shared: leave no retained announcement behind
            async with aiomqtt.Client("127.0.0.1", broker.port) as client:
                await client.publish(hub.announcement.topic, b"", qos=1, retain=True)
        assert sorted(r.seq for r in opened) == list(range(20))
        assert (stats_b.stored, stats_b.held, await sink_b.count()) == (20, 0, 20)


class _Member:
    """One consumer process's parking over a shared sink; reports what ``consume`` would."""

    def __init__(self, hub: _Hub, sink: Sink) -> None:
        self.sink = sink
        self.reported: list[OpenedRecord] = []
        self.tally = Tally()
        self.session = Session(hub.consumer())
        self.session.handle(hub.announcement.topic, hub.announcement.payload)  # accepted
        self.parking = Parking(self.session, sink, hub.sim.base, self, DEFAULT_MAX_PARKED)

    async def __call__(self, work: Batch) -> Stored:
        stored = await self.sink.store(
            work.records, work.announcements, parked=work.parked, unparked=work.unparked
        )
        self.reported += reported(work, stored)
        return stored


async def test_two_members_unparking_the_same_records_report_each_once(
    tmp_path: Path, sink_url: str
) -> None:
    hub = _Hub(tmp_path, "parking-race", 20)
    kid = hub.sim.sealer.kid or b""
    async with open_sink(sink_url) as sink_a, open_sink(sink_url) as sink_b:
        parked = [ParkedRecord(kid, hub.sim.hub_id, r.topic, r.payload) for r in hub.records]
        await sink_a.store([], [], parked=parked)
        a, b = _Member(hub, sink_a), _Member(hub, sink_b)
        # Both accepted the announcement and read the same parked rows before either commits.
        await asyncio.gather(
            a.parking.after_commit(Batch(released=[kid]), a.tally),
            b.parking.after_commit(Batch(released=[kid]), b.tally),
        )
        assert sorted([len(a.reported), len(b.reported)]) == [0, 20]  # one commit took them
        assert sorted(r.seq for r in a.reported + b.reported) == list(range(20))
        assert a.tally.opened + b.tally.opened == 20
        assert (await sink_a.count(), await sink_a.parked(kid, 100)) == (20, [])


async def test_the_parking_keeps_the_newest_records_within_its_bound(
    broker: Mosquitto, tmp_path: Path, sink_url: str
) -> None:
    limit = 5
    hub = _Hub(tmp_path, "parking-bound", 20)
    async with open_sink(sink_url) as sink:
        stats, _ = await _consume(
            hub, broker.port, sink, "parking-bound", publish=hub.records, seconds=2,
            max_parked=limit,
        )  # fmt: skip
        assert (stats.held, stats.dropped) == (limit, 20 - limit)
    async with hub.answering(broker.port), open_sink(sink_url) as sink:
        _, opened = await _consume(hub, broker.port, sink, "parking-bound", count=limit)
    assert sorted(r.seq for r in opened) == list(range(20 - limit, 20))
