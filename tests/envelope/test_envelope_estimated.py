"""Epochs announced before the hub's clock was trusted ("est": true): the consumer measures
their acceptance window from when it first saw them, flags their records, and still refuses
them once they are certainly older than its acceptance delay (docs/envelope.md)."""

from __future__ import annotations

import cbor2
import pytest

from gateway.envelope.errors import ExpiredEpochError, ForgeryError, MalformedError
from gateway.envelope.format import encode_announcement, encode_body, parse_announcement
from gateway.envelope.inspect import describe
from gateway.envelope.sealer import REASON_COMMAND, REASON_START

from .envelope_helpers import T0, World, obs, split, ttl

DAY = 86400.0
DELAY = 7 * DAY
RecordRef = tuple[str, bytes]  # (topic, payload) of a sealed record


def _estimated_epoch(world: World, last_epoch: int = 0) -> tuple[bytes, list[RecordRef]]:
    """Seal two records under an epoch the hub started on an estimated clock (at T0)."""
    sealer = world.sealer(last_epoch=last_epoch)
    rows = sealer.seal_batch([obs(ts=T0 - 1), obs(ts=T0)], ttl, estimated=True)
    announcements, records = split(rows)
    return announcements[0].payload, [(r.topic, r.payload) for r in records]


def test_an_estimated_window_runs_from_when_the_consumer_first_saw_it() -> None:
    world = World()
    announcement, records = _estimated_epoch(world)
    world.clock.now = T0 + 100 * DAY  # the hub's estimate was 100 days behind
    consumer = world.consumer()
    info = consumer.accept_announcement(announcement)
    assert info.estimated
    opened = consumer.open(*records[0])
    assert (opened.ts, opened.ts_estimated) == (T0 - 1, True)
    world.clock.now += 3600 + DELAY  # the epoch's length plus the delay, from first sight
    assert consumer.open(*records[1]).ts_estimated
    world.clock.now += 1
    with pytest.raises(ExpiredEpochError):
        consumer.open(*records[0])
    # forgotten for good: its announcement cannot bring it back (nor reset its bitmap)
    with pytest.raises(ExpiredEpochError):
        consumer.accept_announcement(announcement)


def test_records_of_trusted_epochs_are_not_flagged_and_their_window_is_their_own() -> None:
    world = World()
    sealer = world.sealer()
    announcements, records = split(sealer.seal_batch([obs()], ttl))
    consumer = world.consumer()
    assert not consumer.accept_announcement(announcements[0].payload).estimated
    assert not consumer.open(records[0].topic, records[0].payload).ts_estimated
    world.clock.now = T0 + 3600 + DELAY + 1
    with pytest.raises(ExpiredEpochError):
        world.consumer().accept_announcement(announcements[0].payload)


def test_a_later_trusted_epoch_started_over_the_delay_ago_refuses_an_estimated_one() -> None:
    world = World()
    announcement, _ = _estimated_epoch(world)
    trusted = world.sealer(last_epoch=1).rotate(REASON_START).payload  # started at T0
    world.clock.now = T0 + DAY
    early = world.consumer()
    early.accept_announcement(trusted)
    assert early.accept_announcement(announcement).estimated  # a day late: accepted
    world.clock.now = T0 + DELAY + 60  # epoch 2 is still in its window, started > 7 days ago
    late = world.consumer()
    late.accept_announcement(trusted)
    with pytest.raises(ExpiredEpochError, match="estimated epoch 1"):
        late.accept_announcement(announcement)


def test_once_a_later_epoch_expires_earlier_estimated_ones_are_refused() -> None:
    world = World()
    announcement, _ = _estimated_epoch(world)
    later = world.sealer(last_epoch=1).rotate(REASON_COMMAND, estimated=True).payload
    consumer = world.consumer()
    consumer.accept_announcement(later)
    world.clock.now = T0 + 3600 + DELAY + 1
    assert consumer.forget_expired() == 1
    with pytest.raises(ExpiredEpochError):
        consumer.accept_announcement(announcement)


def test_the_marker_is_true_or_absent() -> None:
    world = World()
    announcement, _ = _estimated_epoch(world)
    parsed = parse_announcement(announcement)
    core = cbor2.loads(parsed.core_bytes)
    assert core["est"] is True
    assert describe(announcement)["est"] is True
    for wrong in (False, 1, "yes"):
        forged = cbor2.dumps({**core, "est": wrong}, canonical=True)
        payload = encode_announcement(encode_body(forged, parsed.wrapped), parsed.signature)
        with pytest.raises(MalformedError):
            parse_announcement(payload)
    trusted = world.sealer(last_epoch=1).rotate(REASON_START).payload
    assert "est" not in describe(trusted)


def test_adding_the_marker_to_a_trusted_announcement_is_a_forgery() -> None:
    world = World()
    trusted = parse_announcement(world.sealer().rotate(REASON_START).payload)
    marked = cbor2.dumps({**cbor2.loads(trusted.core_bytes), "est": True}, canonical=True)
    payload = encode_announcement(encode_body(marked, trusted.wrapped), trusted.signature)
    assert parse_announcement(payload).core.estimated
    with pytest.raises(ForgeryError):
        world.consumer().accept_announcement(payload)


def _estimated_then_trusted(world: World, trusted_at: float) -> tuple[bytes, bytes, RecordRef]:
    """An estimated epoch 1 sealed at T0, then a trusted epoch 2 started at ``trusted_at``."""
    estimated, records = _estimated_epoch(world)
    world.clock.now = trusted_at
    trusted = world.sealer(last_epoch=1).rotate(REASON_START).payload
    return estimated, trusted, records[0]


@pytest.mark.parametrize("estimated_first", [True, False], ids=["estimated-first", "trusted-first"])
def test_a_later_trusted_epoch_ends_an_estimated_window_whichever_arrives_first(
    estimated_first: bool,
) -> None:
    world = World()
    estimated, trusted, record = _estimated_then_trusted(world, trusted_at=T0)
    world.clock.now = T0 + DAY
    consumer = world.consumer()
    for payload in (estimated, trusted) if estimated_first else (trusted, estimated):
        consumer.accept_announcement(payload)
    # first sight gave epoch 1 a window to T0 + DAY + 3600 + DELAY; epoch 2 ends it sooner
    world.clock.now = T0 + DELAY
    assert consumer.open(*record).ts_estimated
    world.clock.now += 1
    with pytest.raises(ExpiredEpochError):
        consumer.open(*record)
    with pytest.raises(ExpiredEpochError):
        consumer.accept_announcement(estimated)


@pytest.mark.parametrize("estimated_first", [True, False], ids=["estimated-first", "trusted-first"])
def test_an_estimated_epoch_is_refused_once_a_later_trusted_one_started_over_the_delay_ago(
    estimated_first: bool,
) -> None:
    world = World()
    estimated, trusted, record = _estimated_then_trusted(world, trusted_at=T0)
    world.clock.now = T0 + DELAY + 60  # epoch 2 is still in its own window
    consumer = world.consumer()
    if estimated_first:  # the broker delivered the old announcement first
        assert consumer.accept_announcement(estimated).estimated
        consumer.accept_announcement(trusted)
        assert [info.epoch for info in consumer.epochs()] == [2]
    else:
        consumer.accept_announcement(trusted)
        with pytest.raises(ExpiredEpochError, match="estimated epoch 1"):
            consumer.accept_announcement(estimated)
    with pytest.raises(ExpiredEpochError):
        consumer.open(*record)


def test_an_old_estimated_epoch_replayed_opens_only_within_the_delay_of_the_current_epoch() -> None:
    world = World()
    estimated, current, record = _estimated_then_trusted(world, trusted_at=T0 + 200 * DAY)
    world.clock.now = T0 + 203 * DAY
    consumer = world.consumer()
    consumer.accept_announcement(current)
    # its records are older than epoch 2's start, 3 days ago: no proof yet they are older still
    assert consumer.accept_announcement(estimated).estimated
    assert consumer.open(*record).ts == T0 - 1
    world.clock.now = T0 + 207 * DAY + 1  # epoch 2 started more than the delay ago
    with pytest.raises(ExpiredEpochError):
        consumer.open(*record)
    replayed_late = world.consumer()
    replayed_late.accept_announcement(current)
    with pytest.raises(ExpiredEpochError, match="estimated epoch 1"):
        replayed_late.accept_announcement(estimated)


def test_a_later_expired_trusted_announcement_still_ends_an_estimated_window() -> None:
    world = World()
    estimated, trusted, record = _estimated_then_trusted(world, trusted_at=T0)
    world.clock.now = T0 + 3600 + DELAY + 1  # epoch 2 is past its own window too
    consumer = world.consumer()
    consumer.accept_announcement(estimated)
    with pytest.raises(ExpiredEpochError):
        consumer.accept_announcement(trusted)
    with pytest.raises(ExpiredEpochError):
        consumer.open(*record)


def test_a_later_estimated_epoch_seen_first_ends_an_earlier_ones_window() -> None:
    world = World()
    earlier, records = _estimated_epoch(world)
    later = world.sealer(last_epoch=1).rotate(REASON_COMMAND, estimated=True).payload
    consumer = world.consumer()
    consumer.accept_announcement(later)  # first sight of epoch 2: T0
    world.clock.now = T0 + DAY
    consumer.accept_announcement(earlier)  # first sight of epoch 1: a day later
    world.clock.now = T0 + 3600 + DELAY + 1  # epoch 2's window has ended, so has epoch 1's
    with pytest.raises(ExpiredEpochError):
        consumer.open(*records[0])


def test_first_seen_carries_the_window_across_a_restart() -> None:
    world = World()
    announcement, records = _estimated_epoch(world)
    stored_at = T0 + DAY  # when a sink first stored the announcement
    world.clock.now = stored_at + 3600 + DELAY
    restarted = world.consumer()
    restarted.accept_announcement(announcement, first_seen=stored_at)
    assert restarted.open(*records[0]).ts_estimated
    world.clock.now += 1
    with pytest.raises(ExpiredEpochError):
        restarted.open(*records[1])
    with pytest.raises(ExpiredEpochError, match="first seen"):
        world.consumer().accept_announcement(announcement, first_seen=stored_at)
    # a first sight later than now (another member's clock ahead) counts from now
    ahead = world.consumer()
    ahead.accept_announcement(announcement, first_seen=world.clock.now + 30 * DAY)
    world.clock.now += 3600 + DELAY + 1
    with pytest.raises(ExpiredEpochError):
        ahead.open(*records[1])
