"""Shelly Gen2 parsing, pure: TXT records, GetDeviceInfo and GetStatus answers, property tests."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from drivers.lan.listing import decode_txt
from drivers.shelly import DRIVER, FIELDS
from drivers.shelly.rpc import parse_info, parse_status
from drivers.shelly.simulator import SimulatedShelly
from drivers.shelly.txt import parse_announcement
from gateway.consent.catalogue import CATEGORIES
from gateway.errors import DeviceError

INSTANCE = "shellyplus1pm-a8032ab12345"

# An answer as documented for a Plus 1PM (Shelly Gen2 API docs, Shelly.GetDeviceInfo example).
INFO: dict[str, Any] = {
    "name": None, "id": "shellyplus1pm-a8032ab12345", "mac": "A8032AB12345", "slot": 0,
    "model": "SNSW-001P16EU", "gen": 2, "fw_id": "20230912-082616/1.0.3-g6176478",
    "ver": "1.0.3", "app": "Plus1PM", "auth_en": False, "auth_domain": None,
}  # fmt: skip


def status_sample() -> dict[str, Any]:
    """Return a realistic Shelly.GetStatus result (the simulator's, independently checked)."""
    shelly = SimulatedShelly()
    shelly.set_update("1.0.4", beta="1.1.0-beta2")
    return shelly.status()


@pytest.mark.parametrize(("properties", "expected"), [
    ({b"gen": b"2", b"app": b"Plus1PM", b"ver": b"1.0.3"},
     (INSTANCE, "Plus1PM", "1.0.3", 2)),
    ({b"GEN": b"3", b"App": b"Mini1G3", b"ver": b"1.4.4-beta1", b"id": b"ShellyMini-ABC"},
     ("shellymini-abc", "Mini1G3", "1.4.4-beta1", 3)),
    ({b"gen": b"2", b"app": b"Plus1PM", b"ver": b"1.0.3", b"extra": None},
     (INSTANCE, "Plus1PM", "1.0.3", 2)),
])  # fmt: skip
def test_txt_records(properties: dict[bytes, bytes | None], expected: tuple[object, ...]) -> None:
    announced = parse_announcement(INSTANCE, properties)
    assert (announced.stable_id, announced.model, announced.firmware, announced.generation) == (
        expected
    )


@pytest.mark.parametrize(("instance", "properties", "reason"), [
    (INSTANCE, {b"app": b"Plus1PM", b"ver": b"1.0.3"}, "missing_property"),
    (INSTANCE, {b"gen": b"2", b"ver": b"1.0.3"}, "missing_property"),
    (INSTANCE, {b"gen": b"2", b"app": b"Plus1PM"}, "missing_property"),
    (INSTANCE, {b"gen": None, b"app": b"Plus1PM", b"ver": b"1"}, "bad_txt"),
    (INSTANCE, {b"gen": b"1", b"app": b"Plus1PM", b"ver": b"1"}, "bad_txt"),
    (INSTANCE, {b"gen": b"\xd9\xa3", b"app": b"Plus1PM", b"ver": b"1"}, "bad_txt"),
    (INSTANCE, {b"gen": b"2", b"app": b"\xff\xfe", b"ver": b"1"}, "bad_txt"),
    (INSTANCE, {b"gen": b"2", b"app": b"Plus1PM", b"ver": b"1 0"}, "bad_txt"),
    (INSTANCE, {b"gen": b"2", b"app": b"Plus1PM", b"ver": b"1", b"id": b""}, "bad_txt"),
    (INSTANCE, {b"gen": b"2", b"app": b"Plus1PM", b"ver": b"1", b"id": b"a b"}, "bad_txt"),
    ("Living Room", {b"gen": b"2", b"app": b"Plus1PM", b"ver": b"1"}, "missing_property"),
])  # fmt: skip
def test_bad_txt_records(instance: str, properties: dict[bytes, bytes | None], reason: str) -> None:
    with pytest.raises(DeviceError) as caught:
        parse_announcement(instance, properties)
    assert caught.value.reason == reason


def test_txt_keys_are_case_insensitive_first_wins() -> None:
    assert decode_txt({b"Gen": b"2", b"gen": b"3", b"flag": None}) == {"gen": "2", "flag": None}


def test_device_info() -> None:
    info = parse_info(INFO, expected_id=INSTANCE)
    assert (info.model, info.firmware, info.mac, info.name) == (
        "SNSW-001P16EU", "1.0.3", "A8:03:2A:B1:23:45", None)  # fmt: skip
    named = parse_info({**INFO, "name": " Hall\u0007 light "})
    assert named.name == "Hall light"


@pytest.mark.parametrize(("change", "reason"), [
    ({"mac": None}, "missing_property"),
    ({"id": None}, "missing_property"),
    ({"gen": None}, "missing_property"),
    ({"ver": None}, "missing_property"),
    ({"model": None}, "missing_property"),
    ({"mac": "A8:03:2A:B1:23:45"}, "bad_shape"),
    ({"mac": 42}, "bad_shape"),
    ({"gen": 1}, "bad_shape"),
    ({"gen": "2"}, "bad_shape"),
    ({"gen": True}, "bad_shape"),
    ({"ver": "1.0.3 (beta)"}, "bad_shape"),
    ({"name": 7}, "bad_shape"),
    ({"id": "shellyplus1pm-000000000000"}, "bad_shape"),  # not the announced device
])  # fmt: skip
def test_bad_device_info(change: dict[str, Any], reason: str) -> None:
    body = {k: v for k, v in {**INFO, **change}.items() if v is not None or k == "name"}
    with pytest.raises(DeviceError) as caught:
        parse_info(body, expected_id=INSTANCE)
    assert caught.value.reason == reason


def test_status_fields_and_categories() -> None:
    report = parse_status(status_sample())
    assert report.fields == {
        "switch0_output": True, "switch0_power": 12.5, "switch0_voltage": 230.1,
        "switch0_current": 0.054, "switch0_energy": 1234.5, "switch0_temperature": 41.2,
        "input0_state": False, "sys_uptime": report.fields["sys_uptime"],
        "sys_restart_required": False, "wifi_ip": "127.0.0.1", "wifi_ssid": "HomeNet",
        "wifi_rssi": -58, "update_available": True, "update_version": "1.0.4",
        "update_beta_version": "1.1.0-beta2",
    }  # fmt: skip
    assert (report.update_available, report.update_version) == (True, "1.0.4")
    assert {FIELDS[f] for f in report.fields} == {
        "telemetry.environment", "device.basic", "device.network", "usage"}  # fmt: skip


def test_status_of_other_components() -> None:
    report = parse_status({
        "temperature:0": {"id": 0, "tC": 22.5, "tF": 72.5},
        "humidity:0": {"id": 0, "rh": 48},
        "devicepower:0": {"id": 0, "battery": {"V": 5.9, "percent": 98}, "external": {}},
        "pm1:0": {"id": 0, "apower": 3.1, "aenergy": {"total": 10}},
        "switch:7": {"apower": 1.0},  # beyond the catalogue: not collected
        "script:1": {"running": True}, "ble": {}, "cloud": {"connected": True},
        "switch:1": {"apower": None, "temperature": {"tC": None}},  # unavailable values
        "sys": {"available_updates": {}},
    })  # fmt: skip
    assert report.fields == {
        "temperature0_celsius": 22.5, "humidity0_percent": 48.0,
        "devicepower0_battery_voltage": 5.9, "devicepower0_battery_percent": 98.0,
        "pm0_power": 3.1, "pm0_energy": 10.0, "update_available": False,
    }  # fmt: skip
    assert not report.update_available


@pytest.mark.parametrize("body", [
    [], "status", 1, None,
    {"switch:0": "on"},
    {"switch:0": {"apower": "12.5"}},
    {"switch:0": {"apower": float("nan")}},
    {"switch:0": {"output": 1}},
    {"switch:0": {"aenergy": [1, 2]}},
    {"wifi": {"rssi": -58.5}},
    {"wifi": {"ssid": "x" * 300}},
    {"sys": {"available_updates": []}},
    {"sys": {"available_updates": {"stable": {}}}},
    {"sys": {"available_updates": {"stable": "1.0.4"}}},
])  # fmt: skip
def test_bad_status(body: Any) -> None:
    with pytest.raises(DeviceError) as caught:
        parse_status(body)
    assert caught.value.reason == "bad_shape"


def test_every_field_has_exactly_one_known_category() -> None:
    assert set(FIELDS.values()) <= set(CATEGORIES)
    assert DRIVER.fields is FIELDS


# --- property tests: whatever a device sends, parsing raises DeviceError or succeeds ---------

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=5)
    ),
    max_leaves=30,
)
component_keys = st.sampled_from(["switch:0", "switch:3", "switch:4", "pm1:1", "input:2",
                                  "temperature:0", "humidity:1", "devicepower:0", "sys", "wifi",
                                  "switch:x", "cloud"])  # fmt: skip
field_names = st.sampled_from(["apower", "voltage", "current", "aenergy", "total", "temperature",
                               "tC", "output", "state", "rh", "battery", "percent", "V", "uptime",
                               "restart_required", "sta_ip", "ssid", "rssi",
                               "available_updates", "stable", "beta", "version"])  # fmt: skip
shelly_like = st.recursive(
    json_values,
    lambda children: st.dictionaries(field_names, children, max_size=6),
    max_leaves=40,
)
statuses = st.dictionaries(component_keys, shelly_like, max_size=6)


def reason_of(parse: Callable[[], object]) -> str | None:
    """Return the DeviceError reason ``parse()`` raised, None if it succeeded."""
    try:
        parse()
    except DeviceError as exc:
        return exc.reason
    return None


@given(
    st.dictionaries(st.binary(max_size=12), st.none() | st.binary(max_size=40), max_size=8),
    st.text(max_size=70),
)
def test_txt_parsing_raises_only_device_errors(
    properties: dict[bytes, bytes | None], instance: str
) -> None:
    assert reason_of(lambda: parse_announcement(instance, properties)) in {
        None, "bad_txt", "missing_property"}  # fmt: skip


@given(st.one_of(json_values, st.dictionaries(st.sampled_from(list(INFO)), json_values)))
def test_info_parsing_raises_only_device_errors(body: Any) -> None:
    assert reason_of(lambda: parse_info(body, expected_id=INSTANCE)) in {
        None, "bad_shape", "missing_property"}  # fmt: skip


@given(st.one_of(json_values, statuses))
def test_status_parsing_raises_only_device_errors(body: Any) -> None:
    reason = reason_of(lambda: parse_status(body))
    assert reason in {None, "bad_shape"}
    if reason is None:
        report = parse_status(body)
        assert set(report.fields) <= set(FIELDS)
        json.dumps(report.fields, allow_nan=False)  # finite, encodable values only


@given(st.binary(max_size=200))
def test_garbage_bytes_never_escape_as_other_errors(raw: bytes) -> None:
    try:
        body = json.loads(raw)
    except ValueError:
        return
    for parse in (parse_status, parse_info):
        with contextlib.suppress(DeviceError):
            parse(body)
