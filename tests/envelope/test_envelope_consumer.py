"""Consumer: round trips, ordering, replays, bindings, forgeries, trust, expiry, memory bounds."""

from __future__ import annotations

import random

import cbor2
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from gateway.envelope.consumer import Consumer
from gateway.envelope.errors import (
    ExpiredEpochError,
    ForgeryError,
    MalformedError,
    ReplayError,
    UnknownEpochError,
    UntrustedHubError,
    WrongRecipientError,
)
from gateway.envelope.format import parse_announcement, signed_message
from gateway.envelope.sealer import REASON_COMMAND
from gateway.model import OutboxRow, Value

from .envelope_helpers import (
    DEVICE_A,
    DEVICE_B,
    ENV,
    HEALTH,
    HUB_ID,
    T0,
    World,
    obs,
    seal,
    split,
    ttl,
)

ENV_TOPIC = "telemetry_environment"  # ENV as written in topics


@pytest.mark.parametrize("alg", [1, 24])
def test_round_trip_keeps_every_field_and_header(alg: int) -> None:
    world = World(alg=alg)
    sealer = world.sealer()
    fields: dict[str, Value] = {
        "t": 21.5,
        "n": -7,
        "big": 2**40,
        "ok": False,
        "s": "Zürich",
        "b": b"\xff",
        "z": None,
    }
    rows = sealer.seal_batch(
        [obs(DEVICE_A, ENV, T0 + 0.25, fields), obs(DEVICE_B, HEALTH, T0 + 1, {"weight": 72.3})],
        ttl,
    )
    announcements, records = split(rows)
    consumer = world.consumer()
    info = consumer.accept_announcement(announcements[0].payload, announcements[0].topic)
    assert (info.hub_id, info.epoch, info.alg, info.kid) == (HUB_ID, 1, alg, sealer.kid)
    first = consumer.open(records[0].topic, records[0].payload)
    assert (first.hub_id, first.device, first.category, first.epoch, first.seq) == (
        HUB_ID,
        DEVICE_A,
        ENV,
        1,
        0,
    )
    assert first.ts == T0 + 0.25
    assert first.fields == fields
    assert {k: type(v) for k, v in first.fields.items()} == {k: type(v) for k, v in fields.items()}
    second = consumer.open(records[1].topic, records[1].payload)
    assert (second.device, second.category, second.seq, dict(second.fields)) == (
        DEVICE_B,
        HEALTH,
        1,
        {"weight": 72.3},
    )


def _opened(world: World, count: int) -> tuple[Consumer, list[OutboxRow]]:
    rows = seal(world.sealer(), count)
    announcements, records = split(rows)
    consumer = world.consumer()
    consumer.accept_announcement(announcements[0].payload)
    return consumer, records


def test_records_open_in_any_order_exactly_once() -> None:
    world = World()
    consumer, records = _opened(world, 300)
    shuffled = records[:]
    random.Random(7).shuffle(shuffled)
    seqs = [consumer.open(r.topic, r.payload).seq for r in shuffled]
    assert sorted(seqs) == list(range(300))
    for record in shuffled[:20]:
        with pytest.raises(ReplayError):
            consumer.open(record.topic, record.payload)


def test_reannouncement_never_resets_the_replay_bitmap() -> None:
    world = World()
    sealer = world.sealer()
    rows = seal(sealer, 3)
    announcements, records = split(rows)
    consumer = world.consumer()
    info = consumer.accept_announcement(announcements[0].payload)
    consumer.open(records[0].topic, records[0].payload)
    again = consumer.accept_announcement(announcements[0].payload)
    assert again == info
    assert consumer.epochs() == [info]
    with pytest.raises(ReplayError):
        consumer.open(records[0].topic, records[0].payload)
    assert consumer.open(records[1].topic, records[1].payload).seq == 1


def test_replay_is_checked_only_after_the_tag_verifies() -> None:
    world = World()
    consumer, records = _opened(world, 2)
    forged = bytearray(records[0].payload)
    forged[-1] ^= 1
    with pytest.raises(ForgeryError):
        consumer.open(records[0].topic, bytes(forged))
    # The forgery did not mark seq 0 as seen: the genuine record still opens once.
    assert consumer.open(records[0].topic, records[0].payload).seq == 0


@pytest.mark.parametrize(
    "topic",
    [
        f"consentgate/{HUB_ID}/data/{DEVICE_B}/{ENV_TOPIC}",  # another device
        f"consentgate/{HUB_ID}/data/{DEVICE_A}/{HEALTH}",  # another category
        f"other/{HUB_ID}/data/{DEVICE_A}/{ENV_TOPIC}",  # another base topic (in the AAD)
        f"consentgate/hub-2/data/{DEVICE_A}/{ENV_TOPIC}",  # another hub
        f"consentgate/{HUB_ID}/data/{DEVICE_A}/telemetry-environment",  # not its category
    ],
)
def test_a_record_moved_to_another_topic_is_refused(topic: str) -> None:
    world = World()
    consumer, records = _opened(world, 1)
    with pytest.raises(ForgeryError):
        consumer.open(topic, records[0].payload)
    assert consumer.open(records[0].topic, records[0].payload).seq == 0


def _with_seq(payload: bytes, seq: int) -> bytes:
    tag = cbor2.loads(payload)
    protected, _, ciphertext = tag.value
    piv = seq.to_bytes(max(1, (seq.bit_length() + 7) // 8), "big")
    return cbor2.dumps(cbor2.CBORTag(16, [protected, {6: piv}, ciphertext]))


def test_a_record_with_another_seq_is_refused() -> None:
    world = World()
    consumer, records = _opened(world, 3)
    for seq in (1, 2, 300):
        with pytest.raises(ForgeryError):
            consumer.open(records[0].topic, _with_seq(records[0].payload, seq))
    # Swapping the ciphertexts of two records of the same device and category fails too.
    first, second = cbor2.loads(records[0].payload), cbor2.loads(records[1].payload)
    swapped = cbor2.dumps(cbor2.CBORTag(16, [first.value[0], first.value[1], second.value[2]]))
    with pytest.raises(ForgeryError):
        consumer.open(records[0].topic, swapped)


def test_a_header_rewritten_to_match_another_topic_is_refused() -> None:
    world = World()
    consumer, records = _opened(world, 1)
    tag = cbor2.loads(records[0].payload)
    header = cbor2.loads(tag.value[0])
    header[-65538] = HEALTH
    moved = cbor2.dumps(cbor2.CBORTag(16, [cbor2.dumps(header), tag.value[1], tag.value[2]]))
    with pytest.raises(ForgeryError):
        consumer.open(f"consentgate/{HUB_ID}/data/{DEVICE_A}/{HEALTH}", moved)


def _resigned(announcement: bytes, key: Ed25519PrivateKey, body: bytes | None = None) -> bytes:
    parsed = parse_announcement(announcement)
    new_body = parsed.body if body is None else body
    return cbor2.dumps([new_body, key.sign(signed_message(new_body))])


def test_forged_and_tampered_announcements_are_refused() -> None:
    world = World()
    announcement = split(seal(world.sealer(), 1))[0][0].payload
    consumer = world.consumer()
    # Signed by someone else.
    with pytest.raises(ForgeryError):
        consumer.accept_announcement(_resigned(announcement, Ed25519PrivateKey.generate()))
    # Any bit of the body flipped.
    parsed = parse_announcement(announcement)
    for index in (3, len(parsed.body) // 2, len(parsed.body) - 1):
        body = bytearray(parsed.body)
        body[index] ^= 0x40
        tampered = cbor2.dumps([bytes(body), parsed.signature])
        with pytest.raises((ForgeryError, MalformedError)):
            consumer.accept_announcement(tampered)
    # Signed without the domain-separation context.
    bare = cbor2.dumps([parsed.body, world.hub_key.sign(parsed.body)])
    with pytest.raises(ForgeryError):
        consumer.accept_announcement(bare)
    # The genuine one, on another hub's topic.
    with pytest.raises(ForgeryError):
        consumer.accept_announcement(announcement, "consentgate/hub-2/epoch")
    assert consumer.accept_announcement(announcement, f"consentgate/{HUB_ID}/epoch").epoch == 1


def test_a_validly_signed_announcement_with_a_bad_wrapped_secret_is_refused() -> None:
    world = World()
    announcement = split(seal(world.sealer(), 1))[0][0].payload
    parsed = parse_announcement(announcement)
    wrapped = bytearray(parsed.wrapped)
    wrapped[-1] ^= 1
    body = cbor2.dumps([parsed.core_bytes, bytes(wrapped)])
    with pytest.raises(ForgeryError, match="unwrap"):
        world.consumer().accept_announcement(_resigned(announcement, world.hub_key, body))


def test_untrusted_hub_is_refused() -> None:
    world = World()
    announcement = split(seal(world.sealer(), 1))[0][0].payload
    stranger = Consumer(world.recipient, {"hub-2": world.hub_key.public_key()})
    with pytest.raises(UntrustedHubError) as caught:
        stranger.accept_announcement(announcement)
    assert caught.value.hub_id == HUB_ID
    assert caught.value.code == "untrusted_hub"
    # Trusting the hub id under another key is not trusting this hub.
    impostor = Consumer(world.recipient, {HUB_ID: Ed25519PrivateKey.generate().public_key()})
    with pytest.raises(ForgeryError):
        impostor.accept_announcement(announcement)


def test_wrong_recipient_is_refused() -> None:
    world = World()
    announcement = split(seal(world.sealer(), 1))[0][0].payload
    other = Consumer(
        X25519PrivateKey.generate(), {HUB_ID: world.hub_key.public_key()}, clock=world.clock
    )
    with pytest.raises(WrongRecipientError):
        other.accept_announcement(announcement)


def test_recipient_change_rotates_to_the_new_recipient() -> None:
    world = World()
    sealer = world.sealer()
    seal(sealer, 1)
    new_recipient = X25519PrivateKey.generate()
    row = sealer.rotate(REASON_COMMAND, recipient=new_recipient.public_key())
    with pytest.raises(WrongRecipientError):
        world.consumer().accept_announcement(row.payload)
    moved = Consumer(new_recipient, {HUB_ID: world.hub_key.public_key()}, clock=world.clock)
    assert moved.accept_announcement(row.payload).epoch == 2


def test_unknown_epoch_names_hub_and_kid() -> None:
    world = World()
    sealer = world.sealer()
    records = split(seal(sealer, 1))[1]
    with pytest.raises(UnknownEpochError) as caught:
        world.consumer().open(records[0].topic, records[0].payload)
    assert caught.value.hub_id == HUB_ID
    assert caught.value.kid == sealer.kid
    assert caught.value.code == "unknown_epoch"


def test_expired_epochs_are_refused_and_forgotten() -> None:
    world = World(max_age_s=600)
    announcements, records = split(seal(world.sealer(), 3))
    consumer = world.consumer(accept_delay_s=3600)
    info = consumer.accept_announcement(announcements[0].payload)
    assert info.not_after == info.not_before + 600
    world.clock.now = info.not_after + 3600  # the last moment of the window
    assert consumer.open(records[0].topic, records[0].payload).seq == 0
    world.clock.now += 1
    with pytest.raises(ExpiredEpochError):
        consumer.open(records[1].topic, records[1].payload)
    assert consumer.epochs() == []
    # Its announcement cannot bring it back (that would reset its replay bitmap).
    with pytest.raises(ExpiredEpochError):
        consumer.accept_announcement(announcements[0].payload)
    # A consumer that never saw the epoch refuses the stale announcement too.
    with pytest.raises(ExpiredEpochError):
        world.consumer(accept_delay_s=3600).accept_announcement(announcements[0].payload)


def test_forget_expired_wipes_the_keys() -> None:
    world = World(max_age_s=10)
    announcements, _ = split(seal(world.sealer(), 1))
    consumer = world.consumer(accept_delay_s=10)
    info = consumer.accept_announcement(announcements[0].payload)
    keys = consumer._epochs[info.kid].keys
    key, base_iv = keys.key, keys.base_iv
    assert any(key)
    assert consumer.forget_expired(info.not_after + 11) == 1
    assert not any(key)
    assert not any(base_iv)


def test_epochs_per_hub_are_capped_and_evicted_ones_stay_out() -> None:
    world = World()
    sealer = world.sealer()
    consumer = world.consumer(max_epochs_per_hub=2)
    announcements = [split(seal(sealer, 1))[0][0].payload]
    for _ in range(2):
        announcements.append(sealer.rotate(REASON_COMMAND).payload)
    for announcement in announcements:
        consumer.accept_announcement(announcement)
    assert [info.epoch for info in consumer.epochs()] == [2, 3]
    with pytest.raises(ExpiredEpochError):
        consumer.accept_announcement(announcements[0])
    # A late announcement older than everything kept is refused, not silently dropped.
    late = World(hub_key=world.hub_key, recipient=world.recipient, clock=world.clock)
    old = split(seal(late.sealer(), 1))[0][0].payload
    with pytest.raises(ExpiredEpochError):
        consumer.accept_announcement(old)
    assert [info.epoch for info in consumer.epochs()] == [2, 3]


def test_oversized_inputs_are_malformed() -> None:
    world = World()
    consumer, records = _opened(world, 1)
    huge = b"\x00" * (64 * 1024 + 1)
    with pytest.raises(MalformedError):
        consumer.open(records[0].topic, huge)
    with pytest.raises(MalformedError):
        consumer.accept_announcement(huge)
    with pytest.raises(MalformedError):
        consumer.open("x" * 5000, records[0].payload)


def test_consumer_repr_hides_the_key() -> None:
    world = World()
    consumer = world.consumer()
    raw = world.recipient.private_bytes_raw().hex()
    assert raw not in repr(consumer)
    assert "hidden" in repr(consumer)
