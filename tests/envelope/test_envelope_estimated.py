"""Epochs announced before the hub's clock was trusted ("est": true): the consumer measures
their acceptance window from when it first saw them, flags their records, and still refuses
them once they are certainly older than its acceptance delay (docs/envelope.md)."""

from __future__ import annotations

import cbor2
import pytest

from gateway.envelope.errors import ExpiredEpochError, MalformedError
from gateway.envelope.format import encode_announcement, encode_body, parse_announcement
from gateway.envelope.inspect import describe
from gateway.envelope.sealer import REASON_COMMAND, REASON_START

from .envelope_helpers import T0, World, obs, split, ttl

DAY = 86400.0
DELAY = 7 * DAY


def _estimated_epoch(world: World, last_epoch: int = 0) -> tuple[bytes, list[tuple[str, bytes]]]:
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
