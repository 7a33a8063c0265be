"""Property tests: whatever bytes arrive, the consumer parsers raise only typed EnvelopeErrors."""

from __future__ import annotations

from collections.abc import Callable
from functools import cache

import cbor2
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

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
from gateway.envelope.format import EpochCore, parse_announcement, signed_message
from gateway.envelope.inspect import describe
from gateway.envelope.keys import recipient_kid
from gateway.model import OutboxRow

from .envelope_helpers import HUB_ID, T0, World, obs, split

SETTINGS = settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@cache
def fixture() -> tuple[World, OutboxRow, list[OutboxRow]]:
    """One hub, its first announcement and a few records (built once)."""
    world = World()
    batch = [
        obs("0123456789abcdef", "telemetry.environment", T0, {"t": 21.5}),
        obs("fedcba9876543210", "health", T0, {"w": 72.3, "b": b"\x00", "s": "x"}),
    ]
    announcements, records = split(world.sealer().seal_batch(batch, lambda _c: 60.0))
    return world, announcements[0], records


def _consumer() -> Consumer:
    world, announcement, _ = fixture()
    consumer = world.consumer()
    consumer.accept_announcement(announcement.payload)
    return consumer


TYPED = (
    MalformedError,
    UnknownEpochError,
    ReplayError,
    ForgeryError,
    ExpiredEpochError,
    UntrustedHubError,
    WrongRecipientError,
)


def _typed_only(call: Callable[[], object]) -> object | None:
    """Run ``call``; return its result, or None if it raised a typed refusal (else fail)."""
    try:
        return call()
    except TYPED as exc:
        code = exc.code
    assert code in CODES
    return None


@st.composite
def mutated(draw: st.DrawFn, original: bytes) -> bytes:
    """A copy of ``original`` with a few bytes flipped, cut, inserted or deleted."""
    data = bytearray(original)
    for _ in range(draw(st.integers(1, 4))):
        kind = draw(st.sampled_from(["flip", "set", "insert", "delete", "truncate", "extend"]))
        at = draw(st.integers(0, max(0, len(data) - 1)))
        if kind == "flip" and data:
            data[at] ^= 1 << draw(st.integers(0, 7))
        elif kind == "set" and data:
            data[at] = draw(st.integers(0, 255))
        elif kind == "insert":
            data[at:at] = draw(st.binary(min_size=1, max_size=8))
        elif kind == "delete" and data:
            del data[at : at + draw(st.integers(1, 8))]
        elif kind == "truncate":
            del data[at:]
        else:
            data += draw(st.binary(min_size=1, max_size=8))
    return bytes(data)


CODES = {
    "malformed",
    "unknown_epoch",
    "replay",
    "forgery",
    "expired_epoch",
    "untrusted_hub",
    "wrong_recipient",
}

cbor_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**64), 2**64 - 1)
    | st.floats(allow_nan=True)
    | st.binary(max_size=40)
    | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=5)
        | st.dictionaries(st.integers(-70000, 70000) | st.text(max_size=5), children, max_size=5)
        | st.builds(cbor2.CBORTag, st.sampled_from([16, 1, 0, 2, 28, 29, 258, 55799]), children)
    ),
    max_leaves=20,
)


def _encode(value: object) -> bytes:
    return cbor2.dumps(value)


@SETTINGS
@given(st.binary(max_size=400))
def test_random_bytes_are_refused_with_typed_errors(data: bytes) -> None:
    consumer = _consumer()
    topic = fixture()[2][0].topic
    assert _typed_only(lambda: consumer.open(topic, data)) is None
    assert _typed_only(lambda: consumer.accept_announcement(data)) is None
    _typed_only(lambda: describe(data))


@SETTINGS
@given(cbor_values.map(_encode))
def test_random_cbor_is_refused_with_typed_errors(data: bytes) -> None:
    consumer = _consumer()
    topic = fixture()[2][0].topic
    assert _typed_only(lambda: consumer.open(topic, data)) is None
    assert _typed_only(lambda: consumer.accept_announcement(data)) is None
    _typed_only(lambda: describe(data))


@SETTINGS
@given(st.data())
def test_mutated_records_never_open_as_something_else(data: st.DataObject) -> None:
    _, _, records = fixture()
    record = data.draw(st.sampled_from(records))
    payload = data.draw(mutated(record.payload))
    consumer = _consumer()
    genuine = _consumer().open(record.topic, record.payload)
    opened = _typed_only(lambda: consumer.open(record.topic, payload))
    if opened is not None:
        # Only an encoding variant of the same authenticated record can open, and only once.
        assert opened == genuine
        try:
            consumer.open(record.topic, record.payload)
        except ReplayError:
            pass
        else:
            raise AssertionError("the genuine record opened after its variant: replay not caught")
    _typed_only(lambda: describe(payload))


@SETTINGS
@given(st.data())
def test_mutated_topics_never_open(data: st.DataObject) -> None:
    _, _, records = fixture()
    record = data.draw(st.sampled_from(records))
    topic = data.draw(mutated(record.topic.encode())).decode("utf-8", "replace")
    consumer = _consumer()
    opened = _typed_only(lambda: consumer.open(topic, record.payload))
    assert opened is None or topic == record.topic


@SETTINGS
@given(st.data())
def test_mutated_announcements_are_refused_or_identical(data: st.DataObject) -> None:
    world, announcement, _ = fixture()
    payload = data.draw(mutated(announcement.payload))
    info = _typed_only(lambda: world.consumer().accept_announcement(payload))
    if info is not None:
        assert parse_announcement(payload).body == parse_announcement(announcement.payload).body
    _typed_only(lambda: describe(payload))


@SETTINGS
@given(st.binary(max_size=300) | cbor_values.map(_encode))
def test_signed_garbage_bodies_are_refused_with_typed_errors(body: bytes) -> None:
    """A trusted hub's key signing nonsense (a hub bug) still yields only typed errors."""
    world, _, _ = fixture()
    payload = cbor2.dumps([body, world.hub_key.sign(signed_message(body))])
    assert _typed_only(lambda: world.consumer().accept_announcement(payload)) is None


@SETTINGS
@given(
    wrapped=st.binary(max_size=120),
    epoch=st.integers(0, 2**63 - 1),
    alg=st.sampled_from([1, 24]),
    window=st.tuples(st.integers(0, 2**40), st.integers(0, 2**40)),
)
def test_signed_cores_with_bad_wrapped_secrets_are_refused(
    wrapped: bytes, epoch: int, alg: int, window: tuple[int, int]
) -> None:
    world, _, _ = fixture()
    rkid = recipient_kid(world.recipient.public_key())
    nb, na = sorted(window)
    core = EpochCore(HUB_ID, epoch, rkid, alg, nb, na, b"").encode()
    body = cbor2.dumps([core, wrapped])
    payload = cbor2.dumps([body, world.hub_key.sign(signed_message(body))])
    try:
        world.consumer(accept_delay_s=2.0**62).accept_announcement(payload)
    except (ForgeryError, MalformedError, ExpiredEpochError):
        pass
    else:
        raise AssertionError("a random wrapped secret was accepted")
