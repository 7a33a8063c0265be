"""What a sink adds to a consume loop: announcements the fleet saw first, and parked records.

A record whose epoch is unknown opens at once when the sink holds the announcement (another
member of the group, or an earlier run, stored it). Otherwise it is parked in the sink, sealed,
in its batch's transaction, and acknowledged with the batch; the hub is asked to resend the
announcement. Holding the acknowledgement instead stalls the consumer: a broker delivers at
most a window of unacknowledged QoS 1 messages to a client (RabbitMQ's ``mqtt.prefetch``, 10 by
default; Mosquitto's ``max_inflight_messages``, 20; MQTT 5 Receive Maximum), and held records
filled it, so the announcement queued behind them never came.

Whichever member accepts the announcement opens the parked records, a batch at a time, each
batch stored and deleted from the parking in one transaction. After a batch that parked
records commits, the sink is looked at again for their announcements: a member that stored
one between this batch's first look and its commit unparked only after its own commit, so
either it saw the new rows or this look sees its announcement. At its start a loop opens what
the sink can open and asks the hubs of the other parked epochs to resend. The parking is
bounded: beyond ``max_parked`` rows the oldest are deleted and counted as dropped.

An announcement marked ``"est": true`` that the sink already holds is accepted as first seen when
the sink stored it, so its acceptance window does not start afresh in a restarted process or
another member (docs/envelope.md).
"""

from __future__ import annotations

import contextlib
from dataclasses import replace

from gateway.envelope.batch import Batch, Deliver, Tally, collect, reported
from gateway.envelope.consumer import Consumer
from gateway.envelope.format import parse_announcement
from gateway.envelope.session import Session
from gateway.envelope.topics import epoch_topic, parse_data_topic
from gateway.errors import EnvelopeError
from gateway.sinks.base import ParkedRecord, Sink

UNPARK_BATCH = 1000  # parked records opened and stored per transaction


class Parking:
    """The sink's side of one consume loop of ``base``: first sights, parking, unparking."""

    def __init__(
        self, session: Session, sink: Sink, base: str, deliver: Deliver, max_parked: int
    ) -> None:
        self._session = session
        self._sink = sink
        self._base = base
        self._deliver = deliver
        self._max_parked = max_parked
        self.dropped = 0

    async def first_seen(self, topic: str, payload: bytes) -> None:
        """Before an announcement on ``topic`` is handled: install a new estimated epoch the
        sink already holds as first seen when the sink stored it."""
        try:
            announcement = parse_announcement(payload)
        except EnvelopeError:
            return  # the session refuses it with its reason
        consumer = self._session.consumer
        if announcement.core.estimated and not consumer.knows(announcement.kid):
            stored = await self._sink.announcement(announcement.kid)
            if stored is not None:
                _accept_as_first_seen(consumer, topic, payload, stored.received)

    def park(self, work: Batch, kid: bytes, topic: str, payload: bytes) -> None:
        """Add the record ``payload`` of unknown epoch ``kid`` to the batch's parked records."""
        hub_id = parse_data_topic(topic).hub_id  # the consumer parsed the topic already
        work.parked.append(ParkedRecord(kid, hub_id, topic, payload))

    async def settle(self, work: Batch) -> None:
        """Before the commit: accept from the sink the epochs of the batch's parked records it
        holds, and open, rather than park, the records of every epoch the batch accepted."""
        for kid in dict.fromkeys(p.kid for p in work.parked):
            if kid not in work.released:
                await self._announce_from_sink(kid, work)
        released = set(work.released)
        if not released or not work.parked:
            return
        waiting = work.parked
        work.parked = [p for p in waiting if p.kid not in released]
        for record in waiting:
            if record.kid in released:
                collect(work, self._session.handle(record.topic, record.payload), b"")
        work.requests = [r for r in work.requests if r.kid not in released]

    async def after_commit(self, work: Batch, tally: Tally) -> None:
        """After the commit: unpark the epochs the batch accepted, and those of its parked
        records the sink now holds an announcement of; keep the parking bounded."""
        kids = list(work.released)
        for kid in dict.fromkeys(p.kid for p in work.parked):
            if await self._announce_from_sink(kid, Batch()):
                kids.append(kid)
        for kid in dict.fromkeys(kids):
            await self._unpark(kid, tally)
        if work.parked:
            self.dropped += await self._sink.trim_parked(self._max_parked)

    async def sweep(self, tally: Tally) -> None:
        """At the start: open the parked records the sink can open now, and ask the hubs of the
        other parked epochs of this base to resend their announcements."""
        requests = Batch()
        for epoch in await self._sink.parked_epochs():
            try:
                if parse_data_topic(epoch.topic).base != self._base:
                    continue  # parked by a consumer of another base
            except EnvelopeError:
                continue
            work = Batch()
            if await self._announce_from_sink(epoch.kid, work):
                tally.stored += (await self._deliver(work)).new  # reports a refusal, if any
                await self._unpark(epoch.kid, tally)
            elif not work.rejections:
                request = self._session.pending.request(epoch.topic, epoch.kid)
                if request is not None:
                    requests.requests.append(request)
        await self._deliver(requests)

    async def held(self) -> int:
        """Return how many records the sink holds parked (whichever member parked them)."""
        return sum(e.count for e in await self._sink.parked_epochs())

    async def _announce_from_sink(self, kid: bytes, work: Batch) -> bool:
        """Accept epoch ``kid`` into ``work`` when the sink holds its announcement; say so."""
        stored = await self._sink.announcement(kid)
        if stored is None:
            return False
        topic = epoch_topic(f"{self._base}/{stored.hub_id}")
        _accept_as_first_seen(self._session.consumer, topic, stored.payload, stored.received)
        collect(work, self._session.handle(topic, stored.payload), b"")
        return kid in work.released

    async def _unpark(self, kid: bytes, tally: Tally) -> None:
        """Open every record parked for the accepted epoch ``kid``, a batch at a time."""
        while rows := await self._sink.parked(kid, UNPARK_BATCH):
            work = Batch(unparked=[r.id for r in rows])
            for row in rows:
                outcome = self._session.handle(row.topic, row.payload)
                collect(work, outcome, b"")
                work.sources += [row.id] * len(outcome.opened)
                if outcome.held is not None:  # forgotten meanwhile: parked again, never lost
                    work.parked.append(replace(row, id=0))
            work.requests = []  # a request went out when the record was first parked
            stored = await self._deliver(work)
            tally.stored += stored.new
            tally.opened += len(reported(work, stored))
            if len(rows) < UNPARK_BATCH or work.parked:
                return


def _accept_as_first_seen(
    consumer: Consumer, topic: str, payload: bytes, first_seen: float | None
) -> None:
    """Accept an announcement a sink stored at ``first_seen``; the session then finds it known
    (and opens what waits for it), or refuses it again and reports why."""
    with contextlib.suppress(EnvelopeError):
        consumer.accept_announcement(payload, topic, first_seen=first_seen)
