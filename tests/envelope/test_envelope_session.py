"""Consume session without MQTT: holding records of unknown epochs, resend requests, counting."""

from __future__ import annotations

import json

from gateway.envelope.consumer import Consumer
from gateway.envelope.errors import UnknownEpochError
from gateway.envelope.pending import PendingRecords, resend_payload
from gateway.envelope.session import Session

from .envelope_helpers import BASE, HUB_ID, Clock, World, seal, split


def test_records_before_their_announcement_are_held_then_opened() -> None:
    world = World()
    sealer = world.sealer()
    announcements, records = split(seal(sealer, 3))
    session = Session(world.consumer(), PendingRecords(clock=Clock(0.0)))
    first = session.handle(records[0].topic, records[0].payload)
    assert first.opened == ()
    assert [(r.hub_id, r.kid, r.topic) for r in first.requests] == [
        (HUB_ID, sealer.kid, f"{BASE}/{HUB_ID}/request/epoch/resend")
    ]
    second = session.handle(records[1].topic, records[1].payload)
    assert second.requests == ()  # rate-limited per kid
    assert len(session.pending) == 2
    done = session.handle(announcements[0].topic, announcements[0].payload)
    assert [r.seq for r in done.opened] == [0, 1]
    assert len(session.pending) == 0
    late = session.handle(records[2].topic, records[2].payload)
    assert [r.seq for r in late.opened] == [2]
    again = session.handle(records[2].topic, records[2].payload)
    assert (again.opened, again.rejected, again.duplicates) == ((), (), 1)
    stats = session.stats()
    assert (stats.opened, stats.duplicates, stats.announcements, stats.requests) == (3, 1, 1, 1)
    assert (stats.rejected, stats.held, stats.dropped) == (0, 0, 0)


def test_rejections_carry_the_topic_and_a_code() -> None:
    world = World()
    announcements, records = split(seal(world.sealer(), 1))
    session = Session(world.consumer())
    session.handle(announcements[0].topic, announcements[0].payload)
    outcome = session.handle(records[0].topic, records[0].payload[:-1])
    assert [(r.topic, type(r.error).__name__) for r in outcome.rejected] == [
        (records[0].topic, "MalformedError")
    ]
    other = f"{BASE}/{HUB_ID}/data/{'1' * 16}/health"
    moved = session.handle(other, records[0].payload)
    assert [getattr(r.error, "code", None) for r in moved.rejected] == ["forgery"]
    forged = session.handle(announcements[0].topic, b"\x82\x40\x40")
    assert [getattr(r.error, "code", None) for r in forged.rejected] == ["malformed"]
    assert session.stats().rejected == 3


def test_an_empty_retained_epoch_message_is_ignored() -> None:
    session = Session(World().consumer())
    outcome = session.handle(f"{BASE}/{HUB_ID}/epoch", b"")
    assert (outcome.opened, outcome.rejected, outcome.requests) == ((), (), ())


def _unknown(kid: bytes) -> UnknownEpochError:
    return UnknownEpochError("unknown", hub_id=HUB_ID, kid=kid)


TOPIC = f"{BASE}/{HUB_ID}/data/{'0' * 16}/health"


def test_pending_is_bounded_and_ages_out() -> None:
    clock = Clock(100.0)
    pending = PendingRecords(max_records=3, max_age_s=10, resend_interval_s=5, clock=clock)
    for i in range(5):
        pending.hold(TOPIC, bytes([i]), _unknown(b"k" * 8))
    assert len(pending) == 3
    assert pending.dropped == 2
    assert [h.payload for h in pending.release(b"k" * 8)] == [b"\x02", b"\x03", b"\x04"]
    pending.hold(TOPIC, b"a", _unknown(b"a" * 8))
    clock.now += 11
    pending.hold(TOPIC, b"b", _unknown(b"b" * 8))
    assert len(pending) == 1
    assert pending.dropped == 3
    assert pending.release(b"a" * 8) == []


def test_resend_requests_are_rate_limited_per_kid() -> None:
    clock = Clock(0.0)
    pending = PendingRecords(resend_interval_s=5, clock=clock)
    assert pending.hold(TOPIC, b"1", _unknown(b"a" * 8)) is not None
    assert pending.hold(TOPIC, b"2", _unknown(b"a" * 8)) is None
    assert pending.hold(TOPIC, b"3", _unknown(b"b" * 8)) is not None
    clock.now = 5.0
    assert pending.hold(TOPIC, b"4", _unknown(b"a" * 8)) is not None
    assert pending.hold(TOPIC, b"5", UnknownEpochError("no kid")) is None


def test_records_parked_elsewhere_are_not_kept_but_their_requests_are_paced() -> None:
    clock = Clock(0.0)
    pending = PendingRecords(resend_interval_s=5, clock=clock, keep_records=False)
    assert pending.hold(TOPIC, b"1", _unknown(b"a" * 8)) is not None
    assert pending.hold(TOPIC, b"2", _unknown(b"a" * 8)) is None
    assert (len(pending), pending.release(b"a" * 8)) == (0, [])
    assert pending.request(TOPIC, b"b" * 8) is not None  # a parked epoch asked for at a start
    assert pending.request(TOPIC, b"b" * 8) is None


def test_resend_payload_is_the_request_shape() -> None:
    body = json.loads(resend_payload(bytes.fromhex("0011223344556677"), "t-1"))
    assert body == {"transaction": "t-1", "kid": "0011223344556677"}


def test_a_record_of_a_hub_not_trusted_is_refused_not_held_and_no_resend_is_asked() -> None:
    world = World()
    _, records = split(seal(world.sealer(), 2))
    stranger = Consumer(world.recipient, {"hub-2": world.hub_key.public_key()})
    session = Session(stranger, PendingRecords(clock=Clock(0.0)))
    outcome = session.handle(records[0].topic, records[0].payload)
    assert [getattr(r.error, "code", None) for r in outcome.rejected] == ["untrusted_hub"]
    assert (outcome.opened, outcome.requests, outcome.held) == ((), (), None)
    assert len(session.pending) == 0
    assert (session.stats().rejected, session.stats().held) == (1, 0)
