"""Moves outbox rows to the broker: QoS 1, a bounded in-flight window, delete on PUBACK.

One serial batch loop per connection: fetch a window's worth of rows, check each record's
category against the *current* consent just before handing it to paho (paho directly, not
aiomqtt's per-publish bookkeeping), and hand acknowledged rows back to the outbox, which
forgets them in memory or deletes them in its next group commit. PUBACKs arrive in paho's
read callback and only append to a list, so they are never starved. After a reconnect
everything not yet acknowledged is sent again from the start of the outbox; the consumer's
replay check drops the few QoS 1 duplicates this can cause.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from typing import Any, Final, cast

import paho.mqtt.client as paho

from gateway.consent.policy import ConsentPolicy
from gateway.counters import Counters
from gateway.model import EPOCH_CATEGORY
from gateway.mqtt.acks import FAILURE, SUCCESS, take_pubacks
from gateway.mqtt.link import Connection, MqttLink
from gateway.mqtt.paho_private import has_unsent
from gateway.mqtt.writes import BurstWriter, compatible
from gateway.outbox.rows import Pending
from gateway.outbox.store import Outbox

logger = logging.getLogger(__name__)

IDLE_WAIT_S: Final = 0.5
BARRIER_TIMEOUT_S: Final = 1.0
YIELD_EVERY: Final = 64
LINK_POLL_S: Final = 0.01  # while a lost connection is still the link's current one
BACKLOG_WINDOWS: Final = 4


class Publisher:
    """Publishes the outbox over the link's current connection."""

    def __init__(
        self,
        outbox: Outbox,
        link: MqttLink,
        policy: ConsentPolicy,
        counters: Counters,
        window: int = 250,
    ) -> None:
        self._outbox = outbox
        self._link = link
        self._policy = policy
        self._counters = counters
        self._window = window
        self._inflight: dict[int, tuple[int, str, int]] = {}  # mid -> (row id, category, size)
        self._acked: list[int] = []
        self._acked_bytes = 0
        self._wake = asyncio.Event()
        self._unpaused = asyncio.Event()
        self._unpaused.set()
        self._pauses = 0
        self.acked_total = 0
        # Set while ingestion may go on: the broker is away (records go to the outbox), or
        # fewer than BACKLOG_WINDOWS windows of records wait to be sent. Cleared under
        # overload, so the pipeline leaves the CPU to sending and readings are refused at
        # the door (counted) instead of piling up unsent.
        self.room = asyncio.Event()
        self.room.set()

    @property
    def inflight(self) -> int:
        """Return how many records are handed to the broker and not yet acknowledged."""
        return len(self._inflight)

    async def run(self) -> None:
        """Publish forever: wait for a connection, pump the outbox until it is lost."""
        attached: Connection | None = None
        while True:
            await self._link.connected.wait()
            connection = self._link.connection
            if connection is None or not connection.alive:
                # paho has reported the loss and the link's own task has not yet: that task
                # must get to run. (Looping back here without a real wait never yields: the
                # daemon froze, re-wrapping paho's handlers until memory ran out.)
                await asyncio.sleep(LINK_POLL_S)
                continue
            if connection is not attached:
                self._attach(connection)
                attached = connection
            try:
                await self._pump(connection)
            finally:
                self._flush_acks()
                self._inflight.clear()
                self.room.set()  # no broker: records are kept in the outbox
            await asyncio.sleep(0)  # never loop back without letting the link run

    def _attach(self, connection: Connection) -> None:
        client = connection.paho
        previous = client.on_publish

        def on_publish(c: paho.Client, userdata: Any, mid: int, reason: Any, props: Any) -> None:
            # PUBACKs paho decoded itself: aiomqtt's own publishes, or ours with properties
            if mid in self._inflight:
                self._on_ack(mid, getattr(reason, "value", SUCCESS))
            else:
                cast(Any, previous)(c, userdata, mid, reason, props)  # aiomqtt's own

        client.on_publish = on_publish
        take_pubacks(client, self._inflight.__contains__, self._on_ack)

    def _update_room(self, sent_up_to: int) -> None:
        if self._outbox.last_id - sent_up_to > BACKLOG_WINDOWS * self._window:
            self.room.clear()
        else:
            self.room.set()

    def _on_ack(self, mid: int, reason: int) -> None:
        row_id, category, size = self._inflight.pop(mid)
        if reason >= FAILURE:
            # MQTT 5 PUBACK >= 0x80 (e.g. 0x87 not authorised): the broker kept nothing.
            # The row stays queued; it is offered again on the next connection.
            self._counters.inc(f"refused.{category}")
        else:
            self._acked.append(row_id)
            self._acked_bytes += size
            self._counters.inc(f"forwarded.{category}")
        # wake the pump only where it may be waiting on acks: the window has room again, or
        # everything is acknowledged (one wake-up per window, not one per PUBACK)
        if len(self._inflight) in (0, self._window - self._window // 4):
            self._wake.set()

    async def _pump(self, connection: Connection) -> None:
        client = connection.paho
        writer = BurstWriter(client) if compatible(client) else None
        last_id = 0
        withheld: list[int] = []
        while connection.alive:
            await self._unpaused.wait()
            if len(self._acked) >= self._window // 4 or (self._acked and not self._inflight):
                self._flush_acks()
            free = self._window - len(self._inflight)
            if free < self._window // 4:
                await self._sleep_until_woken()
                continue
            # nothing is newer than the newest row appended: no database round trip to find
            # it out (at everyday load, one per burst)
            newer = last_id < self._outbox.last_id
            rows = await self._outbox.fetch_after(last_id, free) if newer else []
            self._update_room(last_id)
            if not rows:
                self._flush_acks()
                await self._sleep_until_woken(self._outbox.appended)
                continue
            for n, row in enumerate(rows, 1):
                if n % YIELD_EVERY == 0:
                    # a control request waits at most this many publishes, and a pause
                    # (a consent change in progress) holds the rest of the batch back
                    if writer is not None and not writer.flush():
                        return
                    await asyncio.sleep(0)
                    await self._unpaused.wait()
                    if connection.lost.is_set():
                        return
                if row.category != EPOCH_CATEGORY and (
                    not self._policy.forwardable(row.device, row.category)
                    or self._outbox.is_dead(row)
                ):
                    withheld.append(row.id)  # consent is off now: the record never leaves
                    continue
                mid = _send(client, writer, row)
                if mid is None:
                    return  # not connected any more; the link reconnects
                self._inflight[mid] = (row.id, row.category, len(row.payload))
            if writer is not None and not writer.flush():
                return  # not connected any more; the link reconnects
            last_id = rows[-1].id
            if withheld:
                dropped = set(withheld)
                size = sum(len(r.payload) for r in rows if r.id in dropped)
                purged = self._outbox.delete(withheld, size)
                self._counters.inc("purged.at_forwarding", purged)
                withheld.clear()

    async def _sleep_until_woken(self, also: asyncio.Event | None = None) -> None:
        self._wake.clear()
        if also is not None:
            also.clear()
        waiters = [asyncio.ensure_future(self._wake.wait())]
        if also is not None:
            waiters.append(asyncio.ensure_future(also.wait()))
        try:
            await asyncio.wait(waiters, timeout=IDLE_WAIT_S, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for waiter in waiters:
                waiter.cancel()

    def _flush_acks(self) -> None:
        if not self._acked:
            return
        ids, size = self._acked, self._acked_bytes
        self._acked, self._acked_bytes = [], 0
        self.acked_total += len(ids)
        self._outbox.delete(ids, size)

    @contextlib.asynccontextmanager
    async def paused(self) -> AsyncIterator[None]:
        """Hold back the publisher's new sends and database work while the block runs.

        A control command's few statements then neither queue behind the publisher's bulk
        fetches and deletes in aiosqlite's single worker thread nor wait for an event loop
        busy with publishing. PUBACKs are still counted. Blocks may nest.
        """
        self._pauses += 1
        self._unpaused.clear()
        try:
            yield
        finally:
            self._pauses -= 1
            if not self._pauses:
                self._unpaused.set()

    async def barrier(self) -> None:
        """Return once nothing handed to paho earlier can still reach the broker.

        Packets paho has not yet written to the socket are waited for; if the socket does not
        drain within ``BARRIER_TIMEOUT_S`` the connection is dropped, which discards them.
        """
        connection = self._link.connection
        if connection is None:
            return
        client = connection.paho
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(BARRIER_TIMEOUT_S):
                while has_unsent(client) and connection.alive:  # noqa: ASYNC110 - paho has no drain event
                    await asyncio.sleep(0)
                return
        logger.warning("socket did not drain; dropping the connection to discard queued packets")
        self._link.drop()
        while self._link.connection is connection:  # noqa: ASYNC110 - the link's own loop
            await asyncio.sleep(0.01)


def _send(client: paho.Client, writer: BurstWriter | None, row: Pending) -> int | None:
    """Encode ``row`` for the burst (or publish it through paho); its packet id, or None."""
    if writer is not None:
        return writer.add(row.topic, row.payload, row.retain)
    info = client.publish(row.topic, row.payload, qos=1, retain=row.retain)
    return info.mid if info.rc == paho.MQTT_ERR_SUCCESS else None
