"""Random bytes through match, dedupe and decode: only typed errors or None, never a crash."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from drivers.ble import DRIVERS, Advert, BleDriver, Decoded, DecodeError, match
from drivers.ble.dedupe import Deduper
from gateway.config import BleConfig
from gateway.counters import Counters
from gateway.discovery.ble_ingest import BleIngest

from .helpers import BODY_COMPOSITION, BTHOME, MIBEACON, WEIGHT_SCALE

UUIDS = st.sampled_from(
    [
        BTHOME,
        MIBEACON,
        WEIGHT_SCALE,
        BODY_COMPOSITION,
        "0000feaa-0000-1000-8000-00805f9b34fb",
        "not-a-uuid",
    ]
)
ADDRESSES = st.sampled_from(["A4:C1:38:00:00:01", "AA:BB:CC:DD:EE:FF", "00:00:00:00:00:00"])
adverts = st.builds(
    Advert,
    address=ADDRESSES,
    rssi=st.integers(-127, 20),
    name=st.none() | st.text(max_size=30),
    service_data=st.dictionaries(UUIDS, st.binary(max_size=40), max_size=3),
    manufacturer_data=st.dictionaries(st.integers(0, 0xFFFF), st.binary(max_size=30), max_size=2),
)


def _decode(driver: BleDriver, advert: Advert, key: bytes | None) -> Decoded | None:
    payload = driver.payload(advert)
    if payload is None:
        return None
    driver.packet_id(payload)
    try:
        decoded = driver.decoder(key).decode(advert, payload, 1.0)
    except DecodeError as exc:  # the one error a decoder may raise; it names no address
        error = exc
    else:
        assert set(decoded.fields) <= set(driver.fields)
        return decoded
    assert error.reason == "decode_failed"
    assert advert.address not in str(error)
    return None


@settings(max_examples=400, deadline=None)
@given(adverts, st.none() | st.binary(min_size=16, max_size=16))
def test_match_and_decode_random_adverts(advert: Advert, key: bytes | None) -> None:
    driver = match(advert)
    if driver is not None:
        _decode(driver, advert, key)


@settings(max_examples=300, deadline=None)
@given(
    st.sampled_from(DRIVERS),
    st.binary(max_size=64),
    st.none() | st.binary(min_size=16, max_size=16),
)
def test_every_driver_takes_arbitrary_payloads(
    driver: BleDriver, payload: bytes, key: bytes | None
) -> None:
    uuid = next(iter(driver.match.ble_service_uuids))
    _decode(driver, Advert("A4:C1:38:00:00:01", -60, None, {uuid: payload}), key)


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(DRIVERS), st.integers(0, 255), st.binary(max_size=40))
def test_bthome_like_payloads_with_valid_header(driver: BleDriver, info: int, rest: bytes) -> None:
    """Headers that pass the first checks reach the deeper parsers."""
    uuid = next(iter(driver.match.ble_service_uuids))
    payload = bytes([info & 0xE7 | 0x40]) + rest
    _decode(driver, Advert("A4:C1:38:00:00:01", -60, None, {uuid: payload}), None)


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.tuples(
            ADDRESSES,
            st.binary(max_size=8),
            st.none() | st.integers(0, 255),
            st.floats(0, 1e6, allow_nan=False),
        ),
        max_size=60,
    )
)
def test_dedupe_random_sequences(events: list[tuple[str, bytes, int | None, float]]) -> None:
    dedupe = Deduper(window_s=5.0, capacity=2)
    for address, payload, packet_id, now in events:
        assert isinstance(dedupe.is_duplicate(address, payload, packet_id, now), bool)
        assert len(dedupe) <= 2


@settings(max_examples=300, deadline=None)
@given(st.lists(adverts, max_size=20))
def test_ingest_random_stream(stream: list[Advert]) -> None:
    ingest = BleIngest(BleConfig(), Counters())
    for now, advert in enumerate(stream):
        hit = ingest.classify(advert)
        if hit is None:
            continue
        driver, payload = hit
        if not ingest.is_duplicate(advert.address, driver, payload, float(now)):
            ingest.decode(advert, driver, payload, float(now))
