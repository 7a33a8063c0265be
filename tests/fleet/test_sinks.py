"""The sinks against a real SQLite file and a real PostgreSQL database."""

from __future__ import annotations

import contextlib
import json
import math
import sqlite3
import time
from collections.abc import Mapping
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from bench.fleet_hubs import SimHub
from gateway.envelope.consumer import Consumer, OpenedRecord
from gateway.model import Observation, Value
from gateway.sinks import SinkError, StoredAnnouncement, open_sink
from tests.fleet.consumers import rows as pg_rows


def _opened(
    count: int, fields: Mapping[str, Value] | None = None
) -> tuple[list[OpenedRecord], StoredAnnouncement]:
    recipient = X25519PrivateKey.generate()
    hub = SimHub("hub-a", "fleet", recipient.public_key())
    if fields is None:
        rows = hub.seal(count)
    else:
        reading = Observation("00000000000000ff", "telemetry.environment", time.time(), fields)
        rows = hub.sealer.seal_batch([reading] * count, lambda _category: 86400.0)
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


# A hub may seal what a sensor reports: NaN, infinities, a NUL inside a text. PostgreSQL's
# jsonb refuses all of them; stored as they are, the batch would never commit.
AWKWARD: Mapping[str, Value] = {
    "nan": math.nan,
    "up": math.inf,
    "down": -math.inf,
    "label": "a\x00b",
    "nul\x00name": 1,
    "raw": b"\x00\x01",
}
AS_STORED = {
    "nan": "NaN",
    "up": "Infinity",
    "down": "-Infinity",
    "label": "a\\u0000b",
    "nul\\u0000name": 1,
    "raw": "0001",
}


async def test_sqlite_stores_non_finite_numbers_and_nul_as_text(tmp_path: Path) -> None:
    url = f"sqlite://{tmp_path / 'records.db'}"
    await _stores_awkward_fields(url)
    with contextlib.closing(sqlite3.connect(tmp_path / "records.db")) as db:
        stored = db.execute("SELECT fields FROM consentgate_records").fetchall()
    assert [json.loads(row[0]) for row in stored] == [AS_STORED] * 3


async def test_postgresql_stores_non_finite_numbers_and_nul_as_text(postgres_url: str) -> None:
    await _stores_awkward_fields(postgres_url)
    stored = await pg_rows(postgres_url, "SELECT fields FROM consentgate_records")
    assert [json.loads(row[0]) for row in stored] == [AS_STORED] * 3


async def _stores_awkward_fields(url: str) -> None:
    records, announcement = _opened(3, AWKWARD)
    assert records[0].fields["label"] == "a\x00b"  # the record itself is untouched
    async with open_sink(url) as sink:
        assert await sink.store(records, [announcement]) == 3


def test_unknown_sink_urls_are_refused() -> None:
    for url in ("mysql://x", "sqlite://", "records.db"):
        with pytest.raises(SinkError):
            open_sink(url)
