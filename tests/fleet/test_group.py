"""A consumer group of real `consume` processes landing records in PostgreSQL exactly once.

Hubs (the real sealer) -> a private Mosquitto (MQTT 5, shared subscription) -> two durable
members -> one PostgreSQL database. A member killed with SIGKILL mid-stream and the broker
killed with SIGKILL mid-stream lose nothing and store nothing twice: the SQL counts per hub and
epoch equal what each hub sealed, with no gap in the sequence numbers.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import asyncpg
import pytest

from bench.fleet_hubs import SimHub, publish_rows
from gateway.envelope.keys import generate_recipient, load_recipient_private
from tests.fleet.consumers import Member
from tests.support.mosquitto import Mosquitto

BASE = "fleet"


async def _rows(url: str, query: str) -> list[asyncpg.Record]:
    db = await asyncpg.connect(url)
    try:
        return list(await db.fetch(query))
    finally:
        await db.close()


async def _wait_rows(url: str, query: str, expected: int, timeout: float = 60.0) -> int:
    """Poll ``query`` (one count) until it reaches ``expected``; return the last count."""
    count = -1
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while count < expected:
        if loop.time() > deadline:
            detail = await _rows(
                url,
                "SELECT hub, epoch, count(*), min(seq), max(seq) FROM consentgate_records "
                "GROUP BY hub, epoch ORDER BY hub, epoch",
            )
            raise AssertionError(
                f"{query}: {count} rows, {expected} expected, after {timeout} s: "
                f"{[tuple(r) for r in detail]}"
            )
        if True:
            try:
                rows = await _rows(url, query)
            except asyncpg.UndefinedTableError:  # no member has migrated the schema yet
                rows = []
            count = int(rows[0][0]) if rows else 0
            if count < expected:
                await asyncio.sleep(0.2)
    return count


async def _members_back(mosquitto: Mosquitto, members: list[Member], before: list[int]) -> None:
    async with asyncio.timeout(30):
        while any(
            mosquitto.log().count(f" as {m.client_id} ") <= n
            for m, n in zip(members, before, strict=True)
        ):
            await asyncio.sleep(0.1)
    await asyncio.sleep(0.5)  # CONNACK -> SUBSCRIBE


async def _exactly_once(url: str, hubs: list[SimHub]) -> None:
    per_hub = await _rows(
        url,
        "SELECT hub, count(*), count(DISTINCT (kid, seq)), max(seq) "
        "FROM consentgate_records GROUP BY hub ORDER BY hub",
    )
    assert [(r[0], r[1], r[2], r[3] + 1) for r in per_hub] == [
        (h.hub_id, h.sent, h.sent, h.sent) for h in sorted(hubs, key=lambda h: h.hub_id)
    ]


@pytest.mark.parametrize("kill_broker", [False, True], ids=["member", "member-and-broker"])
async def test_killing_a_member_or_the_broker_loses_and_duplicates_nothing(
    tmp_path: Path, postgres_url: str, kill_broker: bool
) -> None:
    mosquitto = Mosquitto(tmp_path / "mosquitto", "allow_anonymous true").start()
    keys = generate_recipient(tmp_path / "keys")
    recipient = load_recipient_private(keys.private_key).public_key()
    hubs = [SimHub(f"hub-{i}", BASE, recipient) for i in range(3)]
    members = [
        Member(
            mosquitto.port,
            BASE,
            keys.private_key,
            {h.hub_id: h.key for h in hubs},
            postgres_url,
            f"worker-{i}",
            tmp_path / f"worker-{i}.log",
        )
        for i in range(2)
    ]
    try:
        for member in members:
            await member.start()
        # Announcements are retained: once both members stored them, both are subscribed.
        first = [row for h in hubs for row in h.seal(200)]
        await publish_rows(mosquitto.port, [r for r in first if r.retain])
        await _wait_rows(postgres_url, "SELECT count(*) FROM consentgate_announcements", 3)
        await publish_rows(mosquitto.port, [r for r in first if not r.retain])

        await members[0].kill9()  # mid-stream: some of its records are not acknowledged yet
        await publish_rows(mosquitto.port, [row for h in hubs for row in h.seal(200)])
        await members[0].start()  # same client id: its session and queue are waiting

        await publish_rows(mosquitto.port, [row for h in hubs for row in h.seal(200)])
        if kill_broker:
            mosquitto.kill9()  # the broker too: persistence keeps the sessions and queues
            before = [mosquitto.log().count(f" as {m.client_id} ") for m in members]
            mosquitto.start()
            # Mosquitto 2.0.11 restores sessions but not their shared subscriptions: what is
            # published before the members subscribe again has no subscriber (docs/brokers.md).
            await _members_back(mosquitto, members, before)
            await publish_rows(mosquitto.port, [row for h in hubs for row in h.seal(200)])

        total = sum(h.sent for h in hubs)
        await _wait_rows(postgres_url, "SELECT count(*) FROM consentgate_records", total)
        await asyncio.sleep(1.0)  # anything redelivered late would show as an extra row
        await _exactly_once(postgres_url, hubs)
        assert all(m.process is not None and m.process.returncode is None for m in members)
    finally:
        for member in members:
            await member.stop()
        mosquitto.stop()
    logs = "".join(m.log.read_text() for m in members)
    assert "Traceback" not in logs
