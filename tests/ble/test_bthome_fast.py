"""The BTHome fast path agrees with bthome-ble's parser on every plain numeric message."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from drivers.ble import Advert, Decoded, DecodeError
from drivers.ble.bthome import BTHomeDriver, _BTHomeDecoder, plain_numeric
from drivers.ble.bthome_fast import numeric_kinds
from drivers.ble.simulator import bthome_v2, thermometer_objects

from .helpers import BTHOME, BTHOME_GOLDEN

KINDS = numeric_kinds()


@st.composite
def numeric_messages(draw: st.DrawFn) -> bytes:
    """A plain BTHome v2 message of 1-6 numeric objects (any order, repeats allowed)."""
    ids = draw(st.lists(st.sampled_from(sorted(KINDS)), min_size=1, max_size=6))
    if draw(st.booleans()):
        ids.sort()
    body = b"".join(
        bytes([i]) + draw(st.binary(min_size=KINDS[i].length, max_size=KINDS[i].length))
        for i in ids
    )
    info = draw(st.sampled_from([0x40, 0x44]))  # version 2, optionally trigger based
    return bytes([info]) + body


def reference(payload: bytes) -> tuple[dict[str, object], int]:
    """What bthome-ble's own parser yields for ``payload`` (fresh device state)."""
    advert = Advert("A4:C1:38:00:00:01", -60, None, {BTHOME: payload})
    decoded = _BTHomeDecoder(None).full(advert, payload, 1.0)
    return dict(decoded.fields), decoded.unmapped


@settings(max_examples=600, deadline=None)
@given(numeric_messages())
def test_fast_path_equals_bthome_ble(payload: bytes) -> None:
    fast = plain_numeric(payload)
    assert fast is not None
    assert (fast[0], fast[2]) == reference(payload)


def test_golden_message_takes_the_fast_path() -> None:
    assert plain_numeric(BTHOME_GOLDEN) == (
        {"battery": 100, "temperature": 22.5, "humidity": 50.55},
        None,
        0,
    )


def test_other_messages_are_left_to_bthome_ble() -> None:
    assert plain_numeric(bytes([0x41]) + BTHOME_GOLDEN[1:]) is None  # encrypted
    assert plain_numeric(bytes([0x42]) + bytes(6) + BTHOME_GOLDEN[1:]) is None  # MAC included
    assert plain_numeric(bytes([0x20]) + BTHOME_GOLDEN[1:]) is None  # version 1
    assert plain_numeric(bytes([0x40, 0x3A, 0x01])) is None  # a button event
    assert plain_numeric(BTHOME_GOLDEN[:-1]) is None  # truncated object
    assert plain_numeric(bytes([0x40])) is None  # no object at all


ADDRESS = "54:48:E6:8F:80:A5"


@st.composite
def encrypted_messages(draw: st.DrawFn) -> tuple[bytes, bytes, int]:
    """(bind key, objects, counter) of an encrypted numeric BTHome v2 message."""
    key = draw(st.binary(min_size=16, max_size=16))
    ids = draw(st.lists(st.sampled_from(sorted(KINDS)), min_size=1, max_size=5))
    body = b"".join(
        bytes([i]) + draw(st.binary(min_size=KINDS[i].length, max_size=KINDS[i].length))
        for i in ids
    )
    return key, body, draw(st.integers(0, 2**32 - 1))


@settings(max_examples=300, deadline=None)
@given(encrypted_messages())
def test_encrypted_fast_path_equals_bthome_ble(message: tuple[bytes, bytes, int]) -> None:
    key, body, counter = message
    payload = bthome_v2(body, address=ADDRESS, bind_key=key, counter=counter)
    advert = Advert(ADDRESS, -60, None, {BTHOME: payload})
    fast = BTHomeDriver().decoder(key).decode(advert, payload, 1.0)
    full = _BTHomeDecoder(key).full(advert, payload, 1.0)
    assert (fast.fields, fast.unmapped) == (full.fields, full.unmapped)


def test_replayed_counter_is_refused_and_a_restart_accepted() -> None:
    key = bytes(range(16))
    decoder = BTHomeDriver().decoder(key)

    def message(counter: int, temperature: float) -> Decoded:
        body = thermometer_objects(counter & 0xFF, 90, temperature, 40.0)
        payload = bthome_v2(body, address=ADDRESS, bind_key=key, counter=counter)
        return decoder.decode(Advert(ADDRESS, -60, None, {BTHOME: payload}), payload, 1.0)

    assert message(500, 20.0).fields["temperature"] == 20.0
    with pytest.raises(DecodeError, match="replayed"):
        message(400, 30.0)
    assert message(3, 21.0).fields["temperature"] == 21.0  # counting restarted (battery)
    with pytest.raises(DecodeError, match="bind key"):
        BTHomeDriver().decoder(bytes(16)).decode(
            Advert(ADDRESS, -60, None, {BTHOME: b""}),
            bthome_v2(thermometer_objects(1, 90, 20.0, 40.0), address=ADDRESS, bind_key=key),
            1.0,
        )
