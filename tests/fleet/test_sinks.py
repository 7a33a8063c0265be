"""The sinks against a real SQLite file and a real PostgreSQL database."""

from __future__ import annotations

from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from bench.fleet_hubs import SimHub
from gateway.envelope.consumer import Consumer, OpenedRecord
from gateway.sinks import SinkError, StoredAnnouncement, open_sink


def _opened(count: int) -> tuple[list[OpenedRecord], StoredAnnouncement]:
    recipient = X25519PrivateKey.generate()
    hub = SimHub("hub-a", "fleet", recipient.public_key())
    rows = hub.seal(count)
    consumer = Consumer(recipient, {hub.hub_id: hub.key.public_key()})
    info = consumer.accept_announcement(rows[0].payload, rows[0].topic)
    announcement = StoredAnnouncement(info.kid, info.hub_id, info.epoch, rows[0].payload)
    return [consumer.open(r.topic, r.payload) for r in rows[1:]], announcement


async def test_sqlite_stores_a_record_once_whoever_delivers_it(tmp_path: Path) -> None:
    await _stored_once(f"sqlite://{tmp_path / 'records.db'}")


async def test_postgresql_stores_a_record_once_whoever_delivers_it(postgres_url: str) -> None:
    await _stored_once(postgres_url)


async def _stored_once(url: str) -> None:
    records, announcement = _opened(10)
    async with open_sink(url) as first, open_sink(url) as second:  # two members, one database
        assert await first.store(records[:6], [announcement]) == 6
        assert await second.store(records[4:], [announcement]) == 4  # 4 and 5 were stored
        assert await second.count() == 10
        stored = await second.announcement(announcement.kid)
        assert stored == announcement
        assert await first.announcement(b"\x00" * 8) is None
    async with open_sink(url) as again:  # the schema is migrated once, data kept
        assert await again.count() == 10
        assert await again.store(records, []) == 0


def test_unknown_sink_urls_are_refused() -> None:
    for url in ("mysql://x", "sqlite://", "records.db"):
        with pytest.raises(SinkError):
            open_sink(url)
