"""The daemon spine end to end on a real Mosquitto: simulator -> hub -> broker -> consumer."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import aiomqtt

from tests.support.hub import eventually, hub_config, make_sink, running_hub, subscribed
from tests.support.mosquitto import Mosquitto


async def test_every_committed_reading_reaches_the_consumer(
    broker: Mosquitto, tmp_path: Path
) -> None:
    config = hub_config(
        tmp_path, broker.port, "e2e-basic", simulator={"devices": 6, "rate_hz": 20.0}
    )
    sink = make_sink(config, broker.port, tmp_path)
    async with subscribed(sink):
        async with running_hub(config) as hub:
            await eventually(lambda: len(sink.opened) >= 100, what="100 records opened")
        # graceful stop drained the outbox: everything committed was delivered
        assert hub.outbox.rows == 0
        await eventually(
            lambda: len(sink.opened) >= hub.pipeline.committed - 1,
            what="all committed records opened",
        )
    assert not sink.errors
    # default consent: environment on, health and location off (sensitive)
    categories = {r.category for r in sink.opened}
    assert categories == {"telemetry.environment"}
    assert hub.counters.get("dropped.health") > 0
    assert hub.counters.get("dropped.location.precise") > 0
    record = sink.opened[0]
    assert set(record.fields) == {"temperature", "humidity", "battery"}
    assert len(record.device) == 16


async def test_status_health_and_requests(broker: Mosquitto, tmp_path: Path) -> None:
    config = hub_config(tmp_path, broker.port, "e2e-api")
    root = config.topic_root
    async with (
        running_hub(config),
        aiomqtt.Client("127.0.0.1", broker.port, protocol=aiomqtt.ProtocolVersion.V5) as client,
    ):
        await client.subscribe(f"{root}/status", qos=1)
        await client.subscribe(f"{root}/health", qos=1)
        await client.subscribe(f"{root}/response/#", qos=1)
        await client.publish(f"{root}/request/health", b'{"transaction": "h1"}', qos=1)
        await client.publish(f"{root}/request/health", b"{oops", qos=1)
        await client.publish(f"{root}/request/frobnicate", b"{}", qos=1)
        seen: dict[str, list[object]] = {}
        async with asyncio.timeout(10):
            async for message in client.messages:
                assert isinstance(message.payload, bytes)
                key = str(message.topic).removeprefix(root + "/")
                value = message.payload.decode() if key == "status" else json.loads(message.payload)
                seen.setdefault(key, []).append(value)
                if (
                    len(seen.get("response/health", [])) >= 2
                    and "response/frobnicate" in seen
                    and "health" in seen
                    and "status" in seen
                ):
                    break
    assert seen["status"][0] == "online"
    ok, bad = seen["response/health"]
    assert isinstance(ok, dict)
    assert ok["transaction"] == "h1"
    assert ok["status"] == "ok"
    assert ok["data"]["epoch"] >= 1
    assert isinstance(bad, dict)
    assert bad["error"]["code"] == "invalid_json"
    unknown = seen["response/frobnicate"][0]
    assert isinstance(unknown, dict)
    assert unknown["error"]["code"] == "unknown_command"
    # after a graceful stop the retained status says offline
    async with aiomqtt.Client("127.0.0.1", broker.port) as client:
        await client.subscribe(f"{root}/status", qos=1)
        async with asyncio.timeout(5):
            async for message in client.messages:
                assert message.payload == b"offline"
                break
