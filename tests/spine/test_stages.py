"""Each pipeline stage alone: classify, consent gate, desensitise."""

from __future__ import annotations

from gateway.consent.aggregate import Aggregator
from gateway.consent.desensitise import aggregate, coarsen, desensitise, pseudonymise
from gateway.consent.policy import ConsentPolicy
from gateway.counters import Counters
from gateway.model import Observation, Reading
from gateway.pipeline import LAYOUTS_KEPT, ConsentDoor, FieldSets, classify, consent_gate
from gateway.pseudonym import Pseudonymizer

FIELDS = {
    "temperature": "telemetry.environment",
    "heart_rate": "health",
    "latitude": "location.precise",
    "longitude": "location.precise",
}


def lookup(driver: str, field: str) -> str | None:
    return FIELDS.get(field) if driver == "d" else None


def test_classify_splits_fields_by_category_and_counts_unmapped() -> None:
    counters = Counters()
    reading = Reading(
        "a" * 16, "d", 10.0, {"temperature": 21.0, "heart_rate": 70, "latitude": 1.0, "mystery": 5}
    )
    out = classify([reading], FieldSets(lookup), counters)
    assert {o.category: dict(o.fields) for o in out} == {
        "telemetry.environment": {"temperature": 21.0},
        "health": {"heart_rate": 70},
        "location.precise": {"latitude": 1.0},
    }
    assert all(o.ts == 10.0 and o.device == "a" * 16 for o in out)
    assert counters.get("dropped.unmapped_field") == 1


def test_unknown_driver_drops_every_field() -> None:
    counters = Counters()
    assert (
        classify([Reading("b" * 16, "other", 1.0, {"temperature": 1})], FieldSets(lookup), counters)
        == []
    )
    assert counters.get("dropped.unmapped_field") == 1


def test_a_batch_is_classified_reading_by_reading_whatever_fields_they_share() -> None:
    counters = Counters()
    readings = [
        Reading("a" * 16, "d", 1.0, {"temperature": 20.0, "mystery": 1}),
        Reading("b" * 16, "d", 2.0, {"temperature": 21.0, "mystery": 2}),  # the same field set
        Reading("c" * 16, "other", 3.0, {"temperature": 22.0}),  # same names, unknown driver
        Reading("d" * 16, "d", 4.0, {"latitude": 1.0, "longitude": 2.0}),  # one whole category
    ]
    out = classify(readings, FieldSets(lookup), counters)
    assert [(o.device[0], o.category, dict(o.fields)) for o in out] == [
        ("a", "telemetry.environment", {"temperature": 20.0}),
        ("b", "telemetry.environment", {"temperature": 21.0}),
        ("d", "location.precise", {"latitude": 1.0, "longitude": 2.0}),
    ]
    assert counters.get("dropped.unmapped_field") == 3


def observations() -> list[Observation]:
    return [
        Observation("d1", c, 1.0, {"v": 1})
        for c in ("device.basic", "telemetry.environment", "health", "location.precise", "usage")
    ]


def test_default_gate_keeps_basic_and_environment_only() -> None:
    counters = Counters()
    kept = consent_gate(ConsentPolicy(), counters)(observations())
    assert [o.category for o in kept] == ["device.basic", "telemetry.environment"]
    assert counters.get("dropped.health") == 1
    assert counters.get("dropped.location.precise") == 1
    assert counters.get("dropped.usage") == 1


def test_gate_follows_the_policy_at_the_moment_of_collection() -> None:
    policy = ConsentPolicy()
    gate = consent_gate(policy, Counters())
    policy.set_flag("health", "on")
    assert "health" in [o.category for o in gate(observations())]
    policy.set_flag("health", "off", device="d1")  # a per-device override wins
    assert "health" not in [o.category for o in gate(observations())]
    policy.set_try_now(enabled=True)
    assert [o.category for o in gate(observations())] == ["device.basic"]


def test_the_door_drops_a_reading_whose_every_category_is_off_and_counts_it() -> None:
    policy, counters = ConsentPolicy(), Counters()
    door = ConsentDoor(policy, FieldSets(lookup), lambda device: True, counters)
    wearable = Reading("a" * 16, "d", 1.0, {"heart_rate": 70, "latitude": 1.0, "mystery": 3})
    assert door(wearable)  # health and precise location are off by default
    assert counters.get("dropped.health") == 1
    assert counters.get("dropped.location.precise") == 1
    assert counters.get("dropped.unmapped_field") == 1  # as classify would have counted it


def test_the_door_lets_through_a_reading_with_any_category_allowed() -> None:
    policy, counters = ConsentPolicy(), Counters()
    door = ConsentDoor(policy, FieldSets(lookup), lambda device: True, counters)
    assert not door(Reading("a" * 16, "d", 1.0, {"temperature": 20.0, "heart_rate": 70}))
    assert not door(Reading("a" * 16, "d", 1.0, {"mystery": 1}))  # unmapped only: classify's
    assert counters.snapshot() == {}  # the gate counts what it drops of them


def test_the_door_follows_consent_as_each_reading_arrives() -> None:
    policy = ConsentPolicy()
    door = ConsentDoor(policy, FieldSets(lookup), lambda device: True, Counters())
    heart = Reading("a" * 16, "d", 1.0, {"heart_rate": 70})
    assert door(heart)
    policy.set_flag("health", "on")
    assert not door(heart)
    policy.set_flag("health", "off", device="a" * 16)  # a per-device override wins
    assert door(heart)


def test_the_door_leaves_an_unknown_devices_reading_to_be_counted_as_unknown() -> None:
    counters = Counters()
    door = ConsentDoor(ConsentPolicy(), FieldSets(lookup), lambda device: False, counters)
    assert not door(Reading("a" * 16, "d", 1.0, {"heart_rate": 70}))
    assert counters.snapshot() == {}


def test_the_doors_memory_of_field_sets_stays_bounded() -> None:
    door = ConsentDoor(ConsentPolicy(), FieldSets(lookup), lambda device: True, Counters())
    for i in range(3 * LAYOUTS_KEPT):  # a driver inventing field names
        assert not door(Reading("a" * 16, "d", 1.0, {f"f{i}": 1, "temperature": 1.0}))
    assert len(door.field_sets) <= LAYOUTS_KEPT


def test_coarse_location_is_rounded_to_a_tenth_of_a_degree() -> None:
    policy = ConsentPolicy()
    policy.set_flag("location", "coarse")
    precise = Observation(
        "d1", "location.precise", 5.0, {"latitude": 48.856613, "longitude": 2.352222}
    )
    out = desensitise(policy)([precise])
    assert out == [Observation("d1", "location.coarse", 5.0, {"latitude": 48.9, "longitude": 2.4})]
    assert coarsen(precise).category == "location.coarse"


def test_full_location_consent_passes_precise_unchanged() -> None:
    policy = ConsentPolicy()
    policy.set_flag("location", "on")
    precise = Observation("d1", "location.precise", 5.0, {"latitude": 48.856613})
    assert desensitise(policy)([precise]) == [precise]


def test_coarse_network_replaces_identifiers_by_keyed_hashes() -> None:
    policy = ConsentPolicy()
    policy.set_flag("network", "coarse")
    pseudonymizer = Pseudonymizer(bytes(range(32)))
    obs = Observation(
        "d1", "device.network", 1.0, {"mac": "AA:BB:CC:DD:EE:FF", "wifi_ssid": "home", "rssi": -60}
    )
    (out,) = pseudonymise(policy, pseudonymizer.keyed_hash)([obs])
    assert out.fields["rssi"] == -60
    assert out.fields["mac"] == pseudonymizer.keyed_hash(b"field:AA:BB:CC:DD:EE:FF").hex()
    assert "home" not in str(out.fields)
    policy.set_flag("network", "on")
    assert pseudonymise(policy, pseudonymizer.keyed_hash)([obs]) == [obs]


def test_coarse_health_is_forwarded_only_as_window_aggregates() -> None:
    policy = ConsentPolicy()
    policy.set_flag("health", "coarse")
    mono = [1000.0]  # the monotonic clock, unrelated to the readings' wall times
    aggregator = Aggregator(window_s=60.0, clock=lambda: mono[0])
    stage = aggregate(policy, aggregator)
    first = [
        Observation("d1", "health", 120.0 + i, {"heart_rate": 60 + i, "note": "x"})
        for i in range(3)
    ]
    assert stage(first) == []  # held in the open window
    later = Observation("d1", "health", 185.0, {"heart_rate": 90})
    (summary,) = stage([later])  # a reading of the next window closes the previous one
    assert summary == Observation(
        "d1",
        "health",
        180.0,
        {"count": 3, "heart_rate_min": 60.0, "heart_rate_mean": 61.0, "heart_rate_max": 62.0},
    )
    # opened 5 s into its window: due 55 monotonic seconds later, whatever the wall clock says
    assert aggregator.due(now=1000.0 + 54.9) == []
    (last,) = aggregator.due(now=1000.0 + 55.0)
    assert last.fields == {
        "count": 1,
        "heart_rate_min": 90.0,
        "heart_rate_mean": 90.0,
        "heart_rate_max": 90.0,
    }
    env = Observation("d1", "telemetry.environment", 1.0, {"temperature": 20.0})
    assert stage([env]) == [env]  # telemetry consent is "on": raw readings pass


def test_records_are_read_only_to_the_type_checker_and_plain_slots_at_run_time() -> None:
    reading = Reading("a" * 16, "d", 1.0, {"temperature": 20.0})
    # mypy strict reports an unused ignore: if records stopped being read-only to it, this fails
    reading.ts = 2.0  # type: ignore[misc]
    assert reading.ts == 2.0
    assert not hasattr(reading, "__dict__")  # slotted: no per-instance dictionary
