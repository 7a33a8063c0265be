"""Sealer: rotation rules, the announcement chain, row metadata, wiping, refusals."""

from __future__ import annotations

import gc
import hashlib
import weakref

import cbor2
import pytest

from gateway.envelope.errors import SealError
from gateway.envelope.format import parse_announcement
from gateway.envelope.sealer import (
    REASON_COMMAND,
    REASON_MAX_AGE,
    REASON_MAX_RECORDS,
    REASON_START,
)
from gateway.model import EPOCH_CATEGORY

from .envelope_helpers import (
    DEVICE_A,
    ENV,
    HEALTH,
    HUB_ID,
    T0,
    TOPIC_ROOT,
    World,
    obs,
    seal,
    split,
    ttl,
)


def test_first_seal_announces_epoch_one_before_its_records() -> None:
    world = World()
    sealer = world.sealer()
    assert sealer.due(T0)
    assert sealer.kid is None
    rows = sealer.seal_batch([obs(), obs(category=HEALTH)], lambda c: 60.0 if c == ENV else 90.0)
    assert [r.retain for r in rows] == [True, False, False]
    announcement = rows[0]
    assert announcement.topic == f"{TOPIC_ROOT}/epoch"
    assert (announcement.device, announcement.category, announcement.epoch) == (
        "",
        EPOCH_CATEGORY,
        1,
    )
    assert announcement.created == T0
    assert announcement.expires > T0 + 366 * 86400
    assert sealer.last_rotation is not None
    assert sealer.last_rotation.reason == REASON_START
    assert sealer.epoch == 1
    assert sealer.last_announcement_hash == hashlib.sha256(announcement.payload).digest()
    assert sealer.announcement() == announcement.payload
    env, health = rows[1], rows[2]
    assert env.topic == f"{TOPIC_ROOT}/data/{DEVICE_A}/telemetry_environment"
    assert health.topic == f"{TOPIC_ROOT}/data/{DEVICE_A}/{HEALTH}"
    assert (env.device, env.category, env.epoch, env.retain) == (DEVICE_A, ENV, 1, False)
    assert (env.created, env.expires, health.expires) == (T0, T0 + 60.0, T0 + 90.0)
    assert not sealer.due(T0)


def test_rotation_at_max_records_chains_the_announcements() -> None:
    world = World(max_records=3)
    sealer = world.sealer()
    rows = seal(sealer, 7)
    assert [r.retain for r in rows] == [True, False, False, False] * 2 + [True, False]
    assert [r.epoch for r in rows if not r.retain] == [1, 1, 1, 2, 2, 2, 3]
    assert sealer.last_rotation is not None
    assert sealer.last_rotation.reason == REASON_MAX_RECORDS
    announcements = [r.payload for r in rows if r.retain]
    cores = [parse_announcement(a).core for a in announcements]
    assert [c.epoch for c in cores] == [1, 2, 3]
    assert cores[0].prev == b""
    assert cores[1].prev == hashlib.sha256(announcements[0]).digest()
    assert cores[2].prev == hashlib.sha256(announcements[1]).digest()
    consumer = world.consumer()
    opened = []
    for row in rows:
        if row.retain:
            consumer.accept_announcement(row.payload)
        else:
            record = consumer.open(row.topic, row.payload)
            opened.append((record.epoch, record.seq))
    assert opened == [(1, 0), (1, 1), (1, 2), (2, 0), (2, 1), (2, 2), (3, 0)]


def test_rotation_at_max_age_and_due() -> None:
    world = World(max_age_s=60)
    sealer = world.sealer()
    seal(sealer, 1)
    core = parse_announcement(sealer.announcement() or b"").core
    assert (core.not_before, core.not_after) == (int(T0), int(T0) + 60)
    assert not sealer.due(T0 + 59.9)
    assert sealer.due(T0 + 60)
    world.clock.now = T0 + 60
    rows = seal(sealer, 1)
    assert [r.retain for r in rows] == [True, False]
    assert sealer.epoch == 2
    assert sealer.last_rotation is not None
    assert sealer.last_rotation.reason == REASON_MAX_AGE


def test_epoch_never_exceeds_65536_records() -> None:
    world = World(max_records=65536)
    sealer = world.sealer()
    rows = seal(sealer, 65537)
    announcements, records = split(rows)
    assert len(announcements) == 2
    assert records[-2].epoch == 1
    assert records[-1].epoch == 2
    last_of_first = cbor2.loads(records[-2].payload).value[1][6]
    assert last_of_first == b"\xff\xff"


def test_restart_continues_the_epoch_numbers_and_chain() -> None:
    world = World()
    first = world.sealer()
    seal(first, 1)
    before = first.announcement() or b""
    second = world.sealer(last_epoch=first.epoch, prev_hash=first.last_announcement_hash)
    assert second.epoch == 1
    row = seal(second, 1)[0]
    core = parse_announcement(row.payload).core
    assert core.epoch == 2
    assert core.prev == hashlib.sha256(before).digest()


def test_explicit_rotation_and_announcement_history() -> None:
    world = World()
    sealer = world.sealer()
    first = sealer.rotate(REASON_COMMAND)
    first_kid = sealer.kid
    second = sealer.rotate(REASON_COMMAND)
    assert (first.epoch, second.epoch) == (1, 2)
    assert first_kid is not None
    assert sealer.announcement(first_kid) == first.payload
    assert sealer.announcement() == second.payload
    assert sealer.announcement(b"\x00" * 8) is None
    for _ in range(20):
        sealer.rotate(REASON_COMMAND)
    assert sealer.announcement(first_kid) is None  # history is bounded


def test_old_epoch_key_material_is_wiped_and_released() -> None:
    world = World()
    sealer = world.sealer()
    seal(sealer, 2)
    state = sealer._current
    assert state is not None
    buffers = [state.keys.key, state.keys.base_iv, state.keys._nonce]
    assert all(any(buf) for buf in buffers)
    alive = weakref.ref(state)
    keys_alive = weakref.ref(state.keys)
    del state
    sealer.rotate(REASON_COMMAND)
    gc.collect()
    assert alive() is None
    assert keys_alive() is None
    assert all(len(buf) > 0 and not any(buf) for buf in buffers)
    # The new epoch still seals.
    assert split(seal(sealer, 1))[1][0].epoch == 2


def test_deterministic_rotation_reproduces_the_announcement() -> None:
    world = World()
    secret = bytes(range(32))
    a = world.sealer().rotate(REASON_START, secret=secret)
    wrapped = parse_announcement(a.payload).wrapped
    b = world.sealer().rotate(REASON_START, secret=secret, wrapped=wrapped)
    assert a.payload == b.payload
    with pytest.raises(ValueError, match="secret"):
        world.sealer().rotate(REASON_START, wrapped=wrapped)


@pytest.mark.parametrize(
    "bad",
    [
        obs(device="0123456789ABCDEF"),
        obs(device="0123"),
        obs(category="telemetry/environment"),
        obs(category=""),
        obs(fields={"x": object()}),  # type: ignore[dict-item]
        obs(fields={"blob": b"\x00" * 70_000}),
    ],
)
def test_bad_observations_are_refused_before_anything_is_sealed(bad: object) -> None:
    world = World()
    sealer = world.sealer()
    seal(sealer, 1)
    with pytest.raises(SealError) as caught:
        sealer.seal_batch([obs(), bad], ttl)  # type: ignore[list-item]
    assert caught.value.code == "seal"
    assert sealer.seq == 1  # the good observation before it was not sealed either
    assert split(seal(sealer, 1))[1][0].epoch == 1


def test_largest_allowed_reading_opens() -> None:
    world = World()
    sealer = world.sealer()
    category = "c" * 64
    blob = b"\x01" * (64 * 1024 - 256 - 40)
    rows = sealer.seal_batch([obs(category=category, fields={"blob": blob})], ttl)
    assert len(rows[1].payload) <= 64 * 1024
    consumer = world.consumer()
    consumer.accept_announcement(rows[0].payload)
    assert consumer.open(rows[1].topic, rows[1].payload).fields == {"blob": blob}


def test_constructor_refuses_bad_settings() -> None:
    world = World()
    with pytest.raises(ValueError, match="alg"):
        world.sealer(alg=2)
    with pytest.raises(ValueError, match="last_epoch"):
        world.sealer(last_epoch=-1)
    with pytest.raises(ValueError, match="prev_hash"):
        world.sealer(prev_hash=b"\x00")
    with pytest.raises(ValueError, match="max_records"):
        World(max_records=65537).sealer()
    with pytest.raises(ValueError, match="max_age_s"):
        World(max_age_s=0).sealer()


def test_sealer_repr_hides_keys() -> None:
    world = World()
    sealer = world.sealer()
    seal(sealer, 1)
    text = repr(sealer)
    assert HUB_ID in text
    assert world.hub_key.private_bytes_raw().hex() not in text
    assert "hidden" in text
