"""Consent over MQTT on a real broker: a withdrawal holds from the moment it is acknowledged."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Any

import aiomqtt

from tests.support.hub import eventually, hub_config, make_sink, running_hub, subscribed
from tests.support.mosquitto import Mosquitto


class Observer:
    """One subscriber to records, epochs and responses: it sees them in broker order."""

    def __init__(self, client: aiomqtt.Client, sink: Any, root: str) -> None:
        self.client, self.sink, self.root = client, sink, root
        self.log: list[tuple[str, Any]] = []  # ("record", OpenedRecord) | ("response", body)

    async def run(self) -> None:
        async for message in self.client.messages:
            topic = str(message.topic)
            assert isinstance(message.payload, bytes)
            if "/response/" in topic:
                self.log.append(("response", json.loads(message.payload)))
                continue
            before = len(self.sink.opened)
            self.sink.handle(topic, message.payload)
            self.log.extend(("record", r) for r in self.sink.opened[before:])

    async def request(self, command: str, **params: Any) -> dict[str, Any]:
        transaction = f"t{len(self.log)}"
        await self.client.publish(
            f"{self.root}/request/{command}",
            json.dumps({"transaction": transaction, **params}),
            qos=1,
        )
        async with asyncio.timeout(10):
            while True:
                for kind, body in self.log:
                    if kind == "response" and body.get("transaction") == transaction:
                        return dict(body)
                await asyncio.sleep(0.01)

    def records_after(self, transaction: str) -> list[Any]:
        index = next(
            i
            for i, (kind, body) in enumerate(self.log)
            if kind == "response" and body.get("transaction") == transaction
        )
        return [body for kind, body in self.log[index:] if kind == "record"]

    async def until(self, category: str, count: int) -> None:
        async with asyncio.timeout(10):
            while (
                sum(1 for kind, r in self.log if kind == "record" and r.category == category)
                < count
            ):
                await asyncio.sleep(0.02)


async def test_withdrawal_is_total_from_the_ack_and_regrant_resumes_new_readings(
    broker: Mosquitto, tmp_path: Path
) -> None:
    config = hub_config(
        tmp_path,
        broker.port,
        "consent-e2e",
        simulator={"devices": 6, "rate_hz": 40.0},
        outbox={"batch_size": 50},
    )
    sink = make_sink(config, broker.port, tmp_path)
    root = config.topic_root
    async with (
        running_hub(config) as hub,
        aiomqtt.Client("127.0.0.1", broker.port, protocol=aiomqtt.ProtocolVersion.V5) as client,
    ):
        for suffix in ("epoch", "data/#", "response/#"):
            await client.subscribe(f"{root}/{suffix}", qos=1)
        observer = Observer(client, sink, root)
        task = asyncio.create_task(observer.run())
        try:
            await observer.until("telemetry.environment", 20)
            assert not any(
                kind == "record" and r.category == "health" for kind, r in observer.log
            )  # sensitive: off by default
            granted = await observer.request("consent/set", flag="health", state="on")
            assert granted["status"] == "ok"
            await observer.until("health", 20)
            withdrawn = await observer.request("consent/set", flag="health", state="off")
            assert withdrawn["status"] == "ok"
            await asyncio.sleep(1.0)
            after = observer.records_after(withdrawn["transaction"])
            assert [r for r in after if r.category == "health"] == []
            assert sum(1 for r in after if r.category == "telemetry.environment") > 10
            withdrawn_at = time.time()
            await asyncio.sleep(1.0)
            regrant_at = time.time()
            regranted = await observer.request("consent/set", flag="health", state="on")
            assert regranted["status"] == "ok"

            def regranted_health() -> bool:
                return any(
                    kind == "record" and r.category == "health" and r.ts > regrant_at
                    for kind, r in observer.log
                )

            await eventually(regranted_health, what="health readings after the regrant")
            health = [r for kind, r in observer.log if kind == "record" and r.category == "health"]
            # readings taken while consent was off were never collected, so none is sent later
            # (not even those still waiting for their batch when the grant came)
            assert not [r for r in health if withdrawn_at < r.ts < regrant_at]
            assert [r for r in health if r.ts > regrant_at]
            entries = await hub.audit.tail(10)
            assert [e.event for e in entries].count("consent.set") == 3
            assert hub.counters.get("dropped.health") > 0
        finally:
            task.cancel()
    assert hub.policy.flag("health") == "on"


async def test_coarse_health_arrives_only_as_aggregates(broker: Mosquitto, tmp_path: Path) -> None:
    config = hub_config(
        tmp_path,
        broker.port,
        "consent-coarse",
        simulator={"devices": 3, "rate_hz": 20.0},
        consent={"aggregate_window_s": 1.0},
    )
    sink = make_sink(config, broker.port, tmp_path)
    async with subscribed(sink), running_hub(config) as hub:
        body = (
            await hub.router.dispatch("consent/set", b'{"flag": "health", "state": "coarse"}')
        ).body
        assert body["status"] == "ok"
        await eventually(
            lambda: any(r.category == "health" for r in sink.opened),
            timeout=10,
            what="a health aggregate",
        )
    health = [r for r in sink.opened if r.category == "health"]
    assert all(
        set(r.fields)
        == {
            "count",
            "heart_rate_min",
            "heart_rate_mean",
            "heart_rate_max",
            "steps_min",
            "steps_mean",
            "steps_max",
            "weight_min",
            "weight_mean",
            "weight_max",
        }
        for r in health
    )
    assert all(r.fields["count"] >= 1 for r in health)
