"""Retention: records whose TTL ran out while the broker was away are destroyed, counted and
audited, and never published when it comes back."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

from gateway.envelope.consumer import OpenedRecord
from tests.support.hub import eventually, hub_config, make_sink, running_hub, subscribed
from tests.support.mosquitto import Mosquitto

TTL_S = 1.0


async def test_expired_records_are_destroyed_and_never_published(
    own_broker: Mosquitto, tmp_path: Path
) -> None:
    config = hub_config(
        tmp_path,
        own_broker.port,
        "retention",
        simulator={"devices": 1, "rate_hz": 20.0},  # device 0: environment, consent on
        retention={"default_s": TTL_S, "sweep_interval_s": 0.2},
    )
    sink = make_sink(config, own_broker.port, tmp_path)
    async with subscribed(sink):  # a persistent session the broker keeps queuing for
        await eventually(lambda: "test-consumer-" in own_broker.log(), what="consumer connected")
        await asyncio.sleep(0.3)  # its SUBSCRIBE follows the CONNECT
        own_broker.stop()
        async with running_hub(config) as hub:
            await eventually(
                lambda: hub.counters.get("retention.expired") > 20,
                what="expired records destroyed while the broker is down",
            )
            assert hub.outbox.rows < 20 * 2 * TTL_S + 25  # only what is younger than its TTL
            assert any(e.event == "retention.expire" for e in await hub.audit.tail(20))
            back_at = time.time()
            own_broker.start()
            await eventually(hub.link.connected.is_set, timeout=15, what="hub reconnected")
            connected_at = time.time()

            def backlog() -> list[OpenedRecord]:
                # read within TTL of the reconnection: still alive, so queued and then sent
                return [
                    r
                    for r in sink.opened
                    if connected_at - TTL_S + 0.3 < r.ts < connected_at - 0.05
                ]

            await eventually(lambda: bool(backlog()), what="the unexpired backlog delivered")
            assert hub.health()["counters"]["retention.expired"] > 20
        # Everything read more than TTL (plus sealing slack) before the broker came back had
        # expired before the hub could send it: the sweep on connect destroyed it first.
        assert [r for r in sink.opened if r.ts < back_at - TTL_S - 0.5] == []
    assert not sink.errors
