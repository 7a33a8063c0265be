"""A consumer group of real `consume` processes landing records in PostgreSQL exactly once.

Hubs (the real sealer) -> a private Mosquitto (MQTT 5, shared subscription) -> two durable
members -> one PostgreSQL database. Each kill happens mid-stream, about a quarter of the way in:
the database holds fewer records than were sealed when it happens, so a member has records in
flight, opened and not yet committed, or committed and not yet acknowledged. A member killed
with SIGKILL while the hubs publish, and the broker killed with SIGKILL while the members drain
their queues, lose nothing and store nothing twice: the SQL counts per hub equal what each hub
sealed, with no gap in the sequence numbers.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from bench.fleet_hubs import publish_rows
from tests.fleet.consumers import RECORDS, Fleet, count, wait_rows

HUBS = 3
PER_HUB = 3000
TOTAL = HUBS * PER_HUB
# Queued for paused members, records cost the test broker more: it saves its whole store at
# each change (autosave_on_changes, so nothing acknowledged is lost to a SIGKILL), and a queue
# of n records takes time in n squared to build (9,000: 25 s; 4,500: 6 s).
QUEUED_PER_HUB = 1500
QUEUED = HUBS * QUEUED_PER_HUB


async def test_a_member_killed_mid_stream_loses_and_duplicates_nothing(
    tmp_path: Path, postgres_url: str
) -> None:
    fleet = Fleet.create(tmp_path, postgres_url, hubs=HUBS)
    try:
        records = await fleet.begin(PER_HUB)
        publishing = asyncio.create_task(publish_rows(fleet.mosquitto.port, records))
        await wait_rows(postgres_url, RECORDS, TOTAL // 4, timeout=30, poll=0.02)
        killed = fleet.members[0]
        await killed.kill9()
        assert await count(postgres_url) < TOTAL  # mid-stream
        await publishing  # the survivor takes the group's share; the dead member's queue waits
        await killed.start()  # same client id: its session, in-flight records and queue wait

        await wait_rows(postgres_url, RECORDS, TOTAL)
        await asyncio.sleep(1.0)  # anything redelivered late would show as an extra row
        await fleet.assert_exactly_once()
        assert all(m.process is not None and m.process.returncode is None for m in fleet.members)
    finally:
        logs = await fleet.close()
    assert "Traceback" not in logs


async def test_the_broker_killed_mid_stream_loses_and_duplicates_nothing(
    tmp_path: Path, postgres_url: str
) -> None:
    fleet = Fleet.create(tmp_path, postgres_url, hubs=HUBS)
    try:
        records = await fleet.begin(QUEUED_PER_HUB)
        # Every record is acknowledged to the hubs (and persisted) before the broker dies:
        # the members, paused, let their session queues fill.
        for member in fleet.members:
            member.pause()
        await publish_rows(fleet.mosquitto.port, records)
        for member in fleet.members:
            member.resume()
        await wait_rows(postgres_url, RECORDS, QUEUED // 4, timeout=30, poll=0.02)
        fleet.mosquitto.kill9()
        assert await count(postgres_url) < QUEUED  # mid-stream
        before = fleet.connections()
        fleet.mosquitto.start()  # persistence restores the sessions and their queues
        await fleet.members_back(before)

        await wait_rows(postgres_url, RECORDS, QUEUED)
        await asyncio.sleep(1.0)
        await fleet.assert_exactly_once()
        assert all(m.process is not None and m.process.returncode is None for m in fleet.members)
    finally:
        logs = await fleet.close()
    assert "Traceback" not in logs
