"""The accessory database read into a plan, pure: Accessory Information, collected
characteristics (numbered repeats, Eve's vendor types, only those that send events), events
turned into fields; whatever an accessory sends, only DeviceError comes out."""

from __future__ import annotations

import json
import math
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from drivers.homekit import FIELDS
from drivers.homekit.accessories import Plan, plan
from drivers.homekit.chars import MAX_INSTANCES, convert, short_type
from gateway.errors import DeviceError

BASE = "-0000-1000-8000-0026BB765291"
EVE_POWER = "E863F10D-079E-48FF-8F27-9C2605A29F52"
EVE_ENERGY = "e863f10c-079e-48ff-8f27-9c2605a29f52"  # lowercase: types compare uppercase
EVENTS = ["pr", "ev"]


def full(short: str) -> str:
    """Return the full HAP UUID of a short type (``11`` -> ``00000011-0000-...``)."""
    return short.rjust(8, "0") + BASE


def char(iid: int, kind: str, value: object = None, perms: object = EVENTS) -> dict[str, Any]:
    """Return a characteristic object as an accessory serves it (HAP R2 s6.3.3)."""
    return {"iid": iid, "type": kind, "perms": perms, "value": value, "format": "float"}


def information(aid: int = 1) -> dict[str, Any]:
    """Return an Accessory Information service with its readable characteristics."""
    return {"iid": 1, "type": full("3E"), "characteristics": [
        char(2, full("20"), "Acme", ["pr"]), char(3, full("21"), "T1000", ["pr"]),
        char(4, full("23"), f"Thermo {aid}", ["pr"]), char(5, full("30"), "SN42", ["pr"]),
        char(6, full("52"), "1.2.3", ["pr"]), char(7, full("14"), None, ["pw"]),
    ]}  # fmt: skip


def sensor(iid: int, temperature: object) -> dict[str, Any]:
    """Return a Temperature Sensor service (short type forms, as some accessories send)."""
    return {"iid": iid, "type": "8A", "characteristics": [char(iid + 1, "11", temperature)]}


def database(*services: dict[str, Any], aid: int = 1) -> list[dict[str, Any]]:
    """Return a one-accessory database: its information service and ``services``."""
    return [{"aid": aid, "services": [information(aid), *services]}]


def test_accessory_information_and_first_values() -> None:
    found = plan(database(sensor(10, 21.5)))
    assert dict(found.info) == {
        "manufacturer": "Acme", "model": "T1000", "name": "Thermo 1",
        "serial_number": "SN42", "firmware": "1.2.3",
    }  # fmt: skip
    assert (found.model, found.firmware) == ("Acme T1000", "1.2.3")
    assert dict(found.collected) == {(1, 11): found.collected[(1, 11)]}
    assert found.collected[(1, 11)].field == "temperature_c"
    assert dict(found.initial) == {"temperature_c": 21.5}


def test_a_repeated_characteristic_is_numbered_up_to_the_limit() -> None:
    found = plan(database(*(sensor(10 * n, 20.0 + n) for n in range(1, MAX_INSTANCES + 2))))
    names = [spec.field for spec in found.collected.values()]
    assert names == ["temperature_c", "temperature_c_1", "temperature_c_2", "temperature_c_3"]
    assert found.initial["temperature_c_3"] == 24.0
    assert all(name in FIELDS for name in names)


def test_eve_energy_characteristics_by_their_full_vendor_uuid() -> None:
    outlet = {"iid": 20, "type": full("47"), "characteristics": [
        char(21, full("25"), 1), char(22, EVE_POWER, 12.5), char(23, EVE_ENERGY, 3),
    ]}  # fmt: skip
    found = plan(database(outlet))
    assert {s.field: s.kind for s in found.collected.values()} == {
        "on": "bool", "power_w": "float", "energy_kwh": "float"
    }  # fmt: skip
    assert dict(found.initial) == {"on": True, "power_w": 12.5, "energy_kwh": 3.0}


@pytest.mark.parametrize("perms", [["pr"], [], None, 1.0, 1, "ev", "prev", {"ev": True}, [["ev"]]])
def test_a_characteristic_without_the_event_permission_is_not_collected(perms: object) -> None:
    service = {"iid": 10, "type": "8A", "characteristics": [char(11, "11", 21.5, perms)]}
    found = plan(database(service))
    assert dict(found.collected) == {}
    assert dict(found.initial) == {}


def test_information_of_bridged_accessories_is_not_the_bridge_s() -> None:
    bridged = database(sensor(10, 19.0), aid=2)[0]
    found = plan([{"aid": 1, "services": []}, bridged])
    assert dict(found.info) == {}
    assert (found.model, found.firmware) == ("HomeKit accessory", "unknown")
    assert found.collected[(2, 11)].field == "temperature_c"


def test_a_bad_first_value_is_collected_later_but_not_reported() -> None:
    found = plan(database(sensor(10, "warm")))
    assert (1, 11) in found.collected
    assert dict(found.initial) == {}


@pytest.mark.parametrize("body", [
    None, {}, [], "accessories", [1], [{"aid": 1}], [{"aid": 0, "services": []}],
    [{"aid": True, "services": []}], [{"aid": 2**53, "services": []}],
    [{"aid": 1, "services": {}}], [{"aid": 1, "services": [{"type": "8A"}]}],
    [{"aid": 1, "services": [{"type": 5, "characteristics": []}]}],
    [{"aid": 1, "services": [{"type": "", "characteristics": []}]}],
    [{"aid": 1, "services": [{"type": "x" * 37, "characteristics": []}]}],
    [{"aid": 1, "services": [{"type": "8A", "characteristics": [{"iid": "11"}]}]}],
    [{"aid": 1, "services": [{"type": "8A", "characteristics": [{"iid": 11}]}]}],
    [{"aid": 1, "services": [{"type": "8A", "characteristics": ["11"]}]}],
])  # fmt: skip
def test_a_malformed_database_is_bad_shape(body: object) -> None:
    with pytest.raises(DeviceError) as caught:
        plan(body)
    assert caught.value.reason == "bad_shape"


def test_events_become_fields_bad_values_skipped() -> None:
    outlet = {"iid": 20, "type": full("47"), "characteristics": [
        char(21, full("25"), True), char(22, EVE_POWER, 1.0), char(23, full("8"), 50),
    ]}  # fmt: skip
    found = plan(database(sensor(10, 20.0), outlet))
    event: dict[tuple[int, int], Any] = {
        (1, 11): {"value": 22.25},
        (1, 21): {"value": 0},  # HAP's 0/1 for a bool
        (1, 22): {"value": math.nan},  # not finite: skipped
        (1, 23): {"value": 50.5},  # Brightness is an int
        (1, 99): {"value": 1.0},  # not collected
        (1, 2): {"value": "Acme"},  # Accessory Information is read once, not from events
    }
    assert found.fields_of(event) == {"temperature_c": 22.25, "on": False}
    assert found.fields_of({(1, 11): {"status": -70402}}) == {}
    assert found.fields_of({(1, 11): 22.25}) == {}  # type: ignore[dict-item]


@pytest.mark.parametrize(("value", "kind", "expected"), [
    (True, "bool", True), (1, "bool", True), (0, "bool", False), (2, "bool", None),
    ("1", "bool", None), (1.0, "bool", None),
    (3, "int", 3), (True, "int", None), (3.0, "int", None), (2**53 + 1, "int", None),
    (21, "float", 21.0), (21.5, "float", 21.5), (math.inf, "float", None),
    (False, "float", None), (2**60, "float", None), ("21.5", "float", None),
    (" Acme\u0007 ", "str", "Acme"), ("\u0007", "str", None), ("x" * 99, "str", "x" * 64),
    (42, "str", None), (None, "float", None),
])  # fmt: skip
def test_convert(value: object, kind: Any, expected: object) -> None:
    converted = convert(value, kind)
    assert converted == expected
    assert type(converted) is type(expected)


def test_short_types() -> None:
    assert short_type("0000003e-0000-1000-8000-0026bb765291") == "3E"
    assert short_type("00000000-0000-1000-8000-0026BB765291") == "0"
    assert short_type(EVE_ENERGY) == EVE_ENERGY.upper()
    assert short_type("8a") == "8A"


# --- property tests: whatever an accessory sends, plan raises DeviceError or succeeds -------

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=12),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=5)
    ),
    max_leaves=30,
)


# Mostly well-formed databases, so the characteristics' own keys get exercised: one id or
# type in ten is bad, and anything at all may be in perms, value and format.
def mostly(good: st.SearchStrategy[Any], *bad: object) -> st.SearchStrategy[Any]:
    """Return ``good`` nine times in ten, else one of ``bad``."""
    return st.integers(0, 99).flatmap(lambda n: st.sampled_from(bad) if n % 10 == 7 else good)


ids = mostly(st.integers(1, 6), 0, -1, 2**53, True, "1", 1.0, None)
service_types = mostly(st.sampled_from(["3E", "8A", "82", full("47"), full("3E")]), "", 5, None)
char_types = mostly(
    st.sampled_from(["11", "10", "25", "8", "68", "20", "23", "30", "52", full("11"), full("22"),
                     EVE_POWER, EVE_ENERGY, "FFFF"]),
    "", "x" * 40, 5, None,
)  # fmt: skip
chars = st.fixed_dictionaries(
    {"iid": ids, "type": char_types,
     "perms": st.just(EVENTS) | st.sampled_from([["pr"], "ev", 1.0]) | json_values},
    optional={"value": json_values, "format": json_values},
)  # fmt: skip
services = st.fixed_dictionaries(
    {"type": service_types, "characteristics": st.lists(chars, max_size=4)},
    optional={"iid": ids},
)
accessories = st.lists(
    st.fixed_dictionaries({"aid": ids, "services": st.lists(services, max_size=3)}), max_size=3
)


def planned(body: object) -> Plan | str:
    """Return the plan of ``body``, or the reason of the DeviceError it was refused with."""
    try:
        return plan(body)
    except DeviceError as exc:
        return exc.reason


@settings(max_examples=400, deadline=None)
@given(st.one_of(json_values, accessories))
def test_any_json_gives_a_plan_or_bad_shape(body: object) -> None:
    found = planned(body)
    if isinstance(found, str):
        assert found == "bad_shape"
        return
    fields = {*found.info, *found.initial, *(s.field for s in found.collected.values())}
    assert fields <= set(FIELDS)
    json.dumps({**found.info, **found.initial}, allow_nan=False)  # finite, encodable values
    assert found.model
    assert found.firmware


@settings(max_examples=300, deadline=None)
@given(
    st.dictionaries(
        st.tuples(st.integers(0, 3), st.integers(0, 40)),
        st.dictionaries(st.sampled_from(["value", "status", "ev"]), json_values) | json_values,
        max_size=6,
    )
)
def test_any_event_gives_known_fields_only(event: dict[tuple[int, int], Any]) -> None:
    outlet = {"iid": 20, "type": full("47"), "characteristics": [
        char(21, full("25"), True), char(22, EVE_POWER, 1.0), char(23, full("8"), 50),
    ]}  # fmt: skip
    found = plan(database(sensor(10, 20.0), sensor(30, 21.0), outlet))
    fields = found.fields_of(event)
    assert set(fields) <= set(FIELDS)
    json.dumps(fields, allow_nan=False)
