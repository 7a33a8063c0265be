"""The pure parts of BLE discovery: matching, duplicate suppression, online status, filters."""

from __future__ import annotations

import pytest

from drivers.base import Match
from drivers.ble import DRIVERS, Advert, match
from drivers.ble.dedupe import Deduper
from drivers.ble.matching import AD_SERVICE_DATA_UUID16, Matcher
from drivers.ble.simulator import BleSimulator
from gateway.config import BleConfig
from gateway.counters import Counters
from gateway.discovery.ble import _display_name
from gateway.discovery.ble_ingest import BleIngest
from gateway.discovery.ble_online import OnlineTracker
from gateway.discovery.ble_pairing import dis_string

from .helpers import BTHOME, BTHOME_GOLDEN, MIBEACON, MIBEACON_GOLDEN, WEIGHT_SCALE, bthome

A1, A2 = "A4:C1:38:00:00:01", "A4:C1:38:00:00:02"


def test_match_by_service_data_uuid() -> None:
    assert [
        match(Advert(A1, -60, None, {uuid: b"\x00"})).name  # type: ignore[union-attr]
        for uuid in (BTHOME, MIBEACON, WEIGHT_SCALE)
    ] == ["bthome", "mibeacon", "miscale"]
    assert match(Advert(A1, -60, "phone", {}, {0x004C: b"\x02\x15"})) is None


class _Named:
    """A declaration-only driver for matcher tests."""

    def __init__(self, name: str, declared: Match) -> None:
        self.name, self.match = name, declared
        self.fields: dict[str, str] = {}


def test_matcher_by_company_and_name_pattern_first_driver_wins() -> None:
    by_company = _Named("company", Match(ble_company_ids=(0x0969,)))
    by_name = _Named("name", Match(ble_local_names=("ATC_*",)))
    matcher = Matcher([by_company, by_name])
    assert matcher.match(Advert(A1, -60, "ATC_1", {}, {0x0969: b""})) is by_company
    assert matcher.match(Advert(A1, -60, "ATC_1")) is by_name
    assert matcher.match(Advert(A1, -60, "LYWSD")) is None
    assert matcher.or_patterns() == [(0, 0xFF, b"\x69\x09"), (0, 0x09, b"ATC_"), (0, 0x08, b"ATC_")]


def test_or_patterns_of_the_built_in_drivers() -> None:
    patterns = Matcher(DRIVERS).or_patterns()
    assert patterns is not None
    assert (0, AD_SERVICE_DATA_UUID16, b"\xd2\xfc") in patterns  # BTHome 0xFCD2, little endian
    assert len(patterns) == 4


def test_a_name_pattern_starting_with_a_wildcard_forces_active_scanning() -> None:
    assert Matcher([_Named("any", Match(ble_local_names=("*sensor",)))]).or_patterns() is None


def test_dedupe_identical_payload_within_the_window() -> None:
    dedupe = Deduper(window_s=10.0)
    assert not dedupe.is_duplicate(A1, b"abc", None, 0.0)
    assert dedupe.is_duplicate(A1, b"abc", None, 5.0)
    assert dedupe.is_duplicate(A1, b"abc", None, 9.9)  # window anchored at the accepted one
    assert not dedupe.is_duplicate(A2, b"abc", None, 9.9)  # per address
    assert not dedupe.is_duplicate(A1, b"abc", None, 10.5)  # window over: a new reading
    assert not dedupe.is_duplicate(A1, b"abd", None, 10.6)


def test_dedupe_repeated_packet_id() -> None:
    dedupe = Deduper(window_s=10.0)
    assert not dedupe.is_duplicate(A1, bthome(7, 20.0), 7, 0.0)
    assert dedupe.is_duplicate(A1, bthome(7, 21.0), 7, 1.0)
    assert not dedupe.is_duplicate(A1, bthome(8, 21.0), 8, 2.0)


def test_dedupe_memory_is_bounded() -> None:
    dedupe = Deduper(capacity=100)
    for i in range(1000):
        dedupe.is_duplicate(f"addr{i}", b"x", None, float(i))
    assert len(dedupe) == 100
    assert dedupe.is_duplicate("addr999", b"x", None, 999.5)


def test_online_timeout_adapts_to_the_advertising_interval() -> None:
    online = OnlineTracker(floor_s=5.0, factor=3.0)
    assert online.seen("fast", 0.0)  # first sight: came online
    for t in range(1, 10):
        assert not online.seen("fast", float(t))
    assert online.timeout("fast") == 5.0  # 1 s interval: the floor applies
    for t in range(0, 1000, 100):
        online.seen("slow", float(t))
    assert online.timeout("slow") == 300.0  # 100 s interval: three missed intervals
    assert online.expire(20.0) == ["fast"]
    assert online.expire(1199.0) == []
    assert online.expire(1201.0) == ["slow"]
    assert not online.is_online("fast")
    assert online.seen("fast", 1202.0)  # back online


def test_ingest_filters_and_counts() -> None:
    counters = Counters()
    config = BleConfig(deny=frozenset({A2}), min_rssi=-80)
    ingest = BleIngest(config, counters)
    assert ingest.classify(Advert(A2, -50, None, {BTHOME: BTHOME_GOLDEN})) is None
    assert ingest.classify(Advert(A1, -81, None, {BTHOME: BTHOME_GOLDEN})) is None
    assert (
        ingest.classify(Advert(A1, -60, None, {"0000feaa-0000-1000-8000-00805f9b34fb": b""}))
        is None
    )
    hit = ingest.classify(Advert(A1, -60, None, {MIBEACON: MIBEACON_GOLDEN}))
    assert hit is not None
    assert counters.snapshot() == {"ble.adverts": 4, "ble.filtered": 2, "ble.unmatched": 1}


def test_ingest_drops_repeats_before_decoding() -> None:
    counters = Counters()
    sim = BleSimulator(30, repeats=5)
    ingest = BleIngest(BleConfig(), counters, bind_keys=sim.bind_key)
    now = 0.0
    for index in range(30):
        for device, data in sim.burst(index, 1_700_000_000.0):
            now += 0.01
            advert = Advert(device.address, data.rssi, data.local_name, data.service_data)
            hit = ingest.classify(advert)
            assert hit is not None
            driver, payload = hit
            if not ingest.is_duplicate(advert.address, driver, payload, now):
                decoded = ingest.decode(advert, driver, payload, now)
                assert decoded is not None
                assert decoded.fields
    assert counters.get("ble.decoded") == 30  # encrypted ones included, with their keys
    assert counters.get("ble.duplicates") == 120
    assert counters.get("ble.decode_errors") == 0


@pytest.mark.parametrize(
    ("raw", "text"),
    [
        (b"2.1.1\x00\x00", "2.1.1"),
        (b"  Xiaomi ", "Xiaomi"),
        (b"", None),
        (b"\xff\xfe", "\ufffd\ufffd"),
        (b"x" * 200, "x" * 64),
    ],
)
def test_device_information_strings(raw: bytes, text: str | None) -> None:
    assert dis_string(raw) == text


@pytest.mark.parametrize(
    ("name", "shown"),
    [
        ("ATC_8F80A5", "ATC"),
        ("atc_8f80a5", "atc"),
        ("LYWSD03MMC", "LYWSD03MMC"),
        ("8F80A5", None),
        ("", None),
        (None, None),
        ("Sensor 8F80A5", "Sensor"),
    ],
)
def test_names_lose_the_address_digits_firmwares_append(
    name: str | None, shown: str | None
) -> None:
    assert _display_name(name, "54:48:E6:8F:80:A5") == shown
