"""The checked-in envelope v1 vectors: the consumer opens them, the sealer reproduces them;
the estimated epoch (announced before the hub's clock was trusted) opens flagged."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import cbor2
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey

from gateway.envelope.consumer import Consumer
from gateway.envelope.format import announcement_hash, parse_announcement
from gateway.envelope.sealer import REASON_START, Sealer
from gateway.model import Observation, Value

from .envelope_helpers import Clock

VECTORS = Path(__file__).parents[1] / "vectors" / "envelope-v1.json"


@pytest.fixture(scope="module")
def vectors() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(VECTORS.read_text(encoding="utf-8"))
    return data


def _fields(record: dict[str, Any]) -> dict[str, Value]:
    fields: dict[str, Value] = dict(record["expect"]["fields"])
    for name in record["bytes_fields"]:
        fields[name] = bytes.fromhex(str(fields[name]))
    return fields


def test_vectors_cover_both_algorithms(vectors: dict[str, Any]) -> None:
    assert {e["alg"] for e in vectors["epochs"]} == {1, 24}
    assert len(vectors["records"]) >= 10
    recipient = X25519PrivateKey.from_private_bytes(bytes.fromhex(vectors["recipient_private_key"]))
    assert recipient.public_key().public_bytes_raw().hex() == vectors["recipient_public_key"]
    hub = Ed25519PrivateKey.from_private_bytes(bytes.fromhex(vectors["hub_private_key"]))
    assert hub.public_key().public_bytes_raw().hex() == vectors["hub_public_key"]


def test_consumer_opens_every_vector(vectors: dict[str, Any]) -> None:
    recipient = X25519PrivateKey.from_private_bytes(bytes.fromhex(vectors["recipient_private_key"]))
    hub = Ed25519PublicKey.from_public_bytes(bytes.fromhex(vectors["hub_public_key"]))
    announcements = [bytes.fromhex(a) for a in vectors["announcements"]]
    clock_at = parse_announcement(announcements[0]).core.not_before + 10.0
    consumer = Consumer(recipient, {vectors["hub_id"]: hub}, clock=lambda: clock_at)
    infos = [consumer.accept_announcement(a) for a in announcements]
    assert [(i.epoch, i.alg) for i in infos] == [(e["epoch"], e["alg"]) for e in vectors["epochs"]]
    assert infos[1].prev == announcement_hash(announcements[0])
    for record in vectors["records"]:
        opened = consumer.open(record["topic"], bytes.fromhex(record["envelope"]))
        expect = record["expect"]
        assert opened.hub_id == vectors["hub_id"]
        assert (opened.device, opened.category, opened.epoch, opened.seq, opened.ts) == (
            expect["device"],
            expect["category"],
            expect["epoch"],
            expect["seq"],
            expect["ts"],
        )
        assert dict(opened.fields) == _fields(record)


def test_sealer_reproduces_every_vector_byte_for_byte(vectors: dict[str, Any]) -> None:
    hub = Ed25519PrivateKey.from_private_bytes(bytes.fromhex(vectors["hub_private_key"]))
    recipient = X25519PublicKey.from_public_bytes(bytes.fromhex(vectors["recipient_public_key"]))
    prev = b""
    for index, epoch in enumerate(vectors["epochs"]):
        announcement = bytes.fromhex(vectors["announcements"][index])
        parsed = parse_announcement(announcement)
        records = [r for r in vectors["records"] if r["expect"]["epoch"] == epoch["epoch"]]
        topic_root = records[0]["topic"].rsplit("/", 3)[0]
        start = float(parsed.core.not_before)  # the whole second the epoch began in
        sealer = Sealer(
            hub_id=vectors["hub_id"],
            topic_root=topic_root,
            signing_key=hub,
            recipient=recipient,
            alg=epoch["alg"],
            max_age_s=vectors["max_age_s"],
            last_epoch=epoch["epoch"] - 1,
            prev_hash=prev,
            clock=Clock(start),
        )
        row = sealer.rotate(
            REASON_START, secret=bytes.fromhex(epoch["secret"]), wrapped=parsed.wrapped
        )
        assert row.payload == announcement
        assert sealer.kid == parsed.kid
        observations = [
            Observation(
                device=r["expect"]["device"],
                category=r["expect"]["category"],
                ts=r["expect"]["ts"],
                fields=_fields(r),
            )
            for r in sorted(records, key=lambda r: int(r["expect"]["seq"]))
        ]
        rows = sealer.seal_batch(observations, lambda _category: 60.0)
        assert [(r.topic, r.payload.hex()) for r in rows] == [
            (r["topic"], r["envelope"]) for r in records
        ]
        prev = sealer.last_announcement_hash


def test_the_estimated_epoch_opens_long_after_its_stated_window_with_records_flagged(
    vectors: dict[str, Any],
) -> None:
    recipient = X25519PrivateKey.from_private_bytes(bytes.fromhex(vectors["recipient_private_key"]))
    hub = Ed25519PublicKey.from_public_bytes(bytes.fromhex(vectors["hub_public_key"]))
    section = vectors["estimated"]
    announcement = bytes.fromhex(section["announcement"])
    core = parse_announcement(announcement).core
    assert core.estimated
    assert cbor2.loads(parse_announcement(announcement).core_bytes)["est"] is True
    assert core.prev == announcement_hash(bytes.fromhex(vectors["announcements"][-1]))
    # a consumer that first sees it 300 days after its stated nb: a trusted epoch would be
    # past its acceptance window
    seen_at = core.not_before + 300 * 86400.0
    consumer = Consumer(recipient, {vectors["hub_id"]: hub}, clock=lambda: seen_at)
    info = consumer.accept_announcement(announcement)
    assert (info.epoch, info.estimated) == (section["epoch"]["epoch"], True)
    for record in section["records"]:
        opened = consumer.open(record["topic"], bytes.fromhex(record["envelope"]))
        assert (opened.seq, opened.ts, opened.ts_estimated) == (
            record["expect"]["seq"],
            record["expect"]["ts"],
            True,
        )
        assert dict(opened.fields) == _fields(record)


def test_trusted_vectors_carry_no_estimate_marker(vectors: dict[str, Any]) -> None:
    for payload in vectors["announcements"]:
        parsed = parse_announcement(bytes.fromhex(payload))
        assert not parsed.core.estimated
        assert "est" not in cbor2.loads(parsed.core_bytes)


def test_sealer_reproduces_the_estimated_vector_byte_for_byte(vectors: dict[str, Any]) -> None:
    section = vectors["estimated"]
    announcement = bytes.fromhex(section["announcement"])
    parsed = parse_announcement(announcement)
    records = section["records"]
    sealer = Sealer(
        hub_id=vectors["hub_id"],
        topic_root=records[0]["topic"].rsplit("/", 3)[0],
        signing_key=Ed25519PrivateKey.from_private_bytes(bytes.fromhex(vectors["hub_private_key"])),
        recipient=X25519PublicKey.from_public_bytes(bytes.fromhex(vectors["recipient_public_key"])),
        alg=section["epoch"]["alg"],
        max_age_s=vectors["max_age_s"],
        last_epoch=section["epoch"]["epoch"] - 1,
        prev_hash=announcement_hash(bytes.fromhex(vectors["announcements"][-1])),
        clock=Clock(float(parsed.core.not_before)),
    )
    row = sealer.rotate(
        REASON_START,
        secret=bytes.fromhex(section["epoch"]["secret"]),
        wrapped=parsed.wrapped,
        estimated=True,
    )
    assert row.payload == announcement
    observations = [
        Observation(r["expect"]["device"], r["expect"]["category"], r["expect"]["ts"], _fields(r))
        for r in records
    ]
    rows = sealer.seal_batch(observations, lambda _category: 60.0)
    assert [r.payload.hex() for r in rows] == [r["envelope"] for r in records]
