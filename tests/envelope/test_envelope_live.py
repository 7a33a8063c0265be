"""The consume loop and CLI against a real Mosquitto on loopback."""

from __future__ import annotations

import asyncio
import contextlib
import json
import sqlite3
import sys
import time
import uuid
from pathlib import Path

import aiomqtt

from gateway.envelope.consumer import OpenedRecord
from gateway.envelope.keys import generate_recipient, load_recipient_private
from gateway.envelope.live import Broker, consume, subscriptions
from gateway.envelope.session import Rejection
from gateway.model import OutboxRow
from tests.support.mosquitto import Mosquitto

from .envelope_helpers import HUB_ID, Clock, World, seal, split


def _world() -> World:
    return World(base=f"envtest-{uuid.uuid4().hex[:8]}")


async def _publish(port: int, rows: list[OutboxRow]) -> None:
    async with aiomqtt.Client("127.0.0.1", port) as client:
        for row in rows:
            await client.publish(row.topic, row.payload, qos=1, retain=row.retain)


def test_subscriptions_share_only_the_data() -> None:
    assert subscriptions("cg") == ("cg/+/epoch", "cg/+/data/#")
    assert subscriptions("cg", "g1") == ("cg/+/epoch", "$share/g1/cg/+/data/#")


async def test_consume_opens_records_after_a_retained_announcement(broker: Mosquitto) -> None:
    world = _world()
    announcements, records = split(seal(world.sealer(), 5))
    await _publish(broker.port, announcements)  # retained: reaches a consumer that comes later
    opened: list[OpenedRecord] = []
    ready = asyncio.Event()
    task = asyncio.create_task(
        consume(
            world.consumer(),
            Broker(port=broker.port),
            world.base,
            on_record=opened.append,
            count=5,
            ready=ready,
        )
    )
    async with asyncio.timeout(10):
        await ready.wait()
        await _publish(broker.port, records + records[:2])  # two duplicates
        stats = await task
    assert sorted(r.seq for r in opened) == [0, 1, 2, 3, 4]
    assert {r.hub_id for r in opened} == {HUB_ID}
    assert stats.opened == 5
    assert stats.announcements == 1


async def test_unknown_epochs_are_requested_and_held_records_opened(broker: Mosquitto) -> None:
    world = _world()
    sealer = world.sealer()
    announcements, records = split(seal(sealer, 3))
    requests: list[dict[str, str]] = []
    opened: list[OpenedRecord] = []
    ready = asyncio.Event()

    async def hub() -> None:
        """Answer epoch/resend requests like the daemon does: announce the epoch again."""
        async with aiomqtt.Client("127.0.0.1", broker.port) as client:
            await client.subscribe(f"{world.base}/{HUB_ID}/request/epoch/resend", qos=1)
            hub_ready.set()
            async for message in client.messages:
                assert isinstance(message.payload, bytes)
                request = json.loads(message.payload)
                requests.append(request)
                announcement = sealer.announcement(bytes.fromhex(request["kid"]))
                assert announcement is not None
                await client.publish(announcements[0].topic, announcement, qos=1)
                return

    hub_ready = asyncio.Event()
    hub_task = asyncio.create_task(hub())
    consumer_task = asyncio.create_task(
        consume(
            world.consumer(),
            Broker(port=broker.port),
            world.base,
            on_record=opened.append,
            count=3,
            ready=ready,
        )
    )
    async with asyncio.timeout(10):
        await asyncio.gather(ready.wait(), hub_ready.wait())
        await _publish(broker.port, records)
        stats = await consumer_task
        await hub_task
    assert len(requests) == 1
    assert requests[0]["kid"] == (sealer.kid or b"").hex()
    uuid.UUID(requests[0]["transaction"])
    assert [r.seq for r in opened] == [0, 1, 2]
    assert (stats.requests, stats.held, stats.dropped) == (1, 0, 0)


async def test_consume_ends_after_seconds_and_reports_rejections(broker: Mosquitto) -> None:
    world = _world()
    _, records = split(seal(world.sealer(), 1))
    rejected: list[Rejection] = []
    ready = asyncio.Event()
    started = time.monotonic()
    task = asyncio.create_task(
        consume(
            world.consumer(),
            Broker(port=broker.port),
            world.base,
            on_record=lambda _r: None,
            on_rejection=rejected.append,
            seconds=1.0,
            ready=ready,
        )
    )
    async with asyncio.timeout(10):
        await ready.wait()
        garbage = OutboxRow(records[0].topic, b"\x00garbage", "", "", 0, 0.0, 0.0)
        await _publish(broker.port, [garbage])
        stats = await task
    assert 1.0 <= time.monotonic() - started < 5.0
    assert [getattr(r.error, "code", None) for r in rejected] == ["malformed"]
    assert stats.rejected == 1
    assert stats.opened == 0


async def test_consume_cli_prints_each_record_once(broker: Mosquitto, tmp_path: Path) -> None:
    keys = generate_recipient(tmp_path / "keys")
    world = World(
        base=f"envtest-{uuid.uuid4().hex[:8]}",
        clock=Clock(time.time()),
        recipient=load_recipient_private(keys.private_key),
    )
    announcements, records = split(seal(world.sealer(), 3))
    await _publish(broker.port, announcements)
    hub_public = world.hub_key.public_key().public_bytes_raw().hex()
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        "import sys; from gateway.cli import main; sys.exit(main())",
        "consume",
        "--port",
        str(broker.port),
        "--base",
        world.base,
        "--recipient-key",
        str(keys.private_key),
        "--trust",
        f"{HUB_ID}={hub_public}",
        "--count",
        "3",
        "--seconds",
        "20",
        "--sink",
        f"sqlite://{tmp_path / 'records.db'}",
        "--client-id",
        f"cli-{world.base}",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    async with asyncio.timeout(30):
        # Records are not retained: publish until the consumer has seen them all (repeats are
        # duplicates, which it counts and does not print).
        while process.returncode is None:
            await _publish(broker.port, records)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(process.wait()), 0.3)
        stdout, stderr = await process.communicate()
    assert process.returncode == 0, stderr.decode()
    lines = [json.loads(line) for line in stdout.decode().splitlines()]
    assert [line["seq"] for line in lines] == [0, 1, 2]
    assert lines[0] == {
        "hub": HUB_ID,
        "device": records[0].device,
        "category": records[0].category,
        "epoch": 1,
        "seq": 0,
        "ts": lines[0]["ts"],
        "fields": {"i": 0},
    }
    summary = json.loads(stderr.decode().strip().splitlines()[-1])
    assert summary["event"] == "consume_done"
    assert summary["opened"] == 3
    assert summary["stored"] == 3
    with sqlite3.connect(tmp_path / "records.db") as db:
        rows = db.execute("SELECT hub, seq, category, fields FROM consentgate_records").fetchall()
    assert sorted(rows) == [(HUB_ID, i, records[i].category, f'{{"i":{i}}}') for i in range(3)]
