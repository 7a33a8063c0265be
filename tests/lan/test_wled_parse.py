"""WLED's JSON API answers read through python-wled, pure: ``/json/info`` at pairing,
``/json/si`` at every poll; whatever a device sends, only DeviceError comes out."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from drivers.wled import DRIVER
from drivers.wled.json_api import FIELDS, MAX_INT, parse_info, parse_status
from drivers.wled.simulator import SimulatedWled
from gateway.consent.catalogue import CATEGORIES
from gateway.errors import DeviceError

MAC = "a4cf12b3c4d5"


def info() -> dict[str, Any]:
    """Return a ``/json/info`` answer as WLED 0.14 documents it (the simulator's)."""
    return SimulatedWled(mac=MAC).info()


def state() -> dict[str, Any]:
    """Return a ``/json/state`` answer as WLED 0.14 documents it (the simulator's)."""
    return SimulatedWled(mac=MAC).state()


def test_device_info() -> None:
    found = parse_info(info(), expected_id=MAC)
    assert (found.model, found.firmware, found.mac, found.name) == (
        "WLED FOSS", "0.14.4", "A4:CF:12:B3:C4:D5", "WLED Desk"
    )  # fmt: skip


def test_status_fields_and_categories() -> None:
    report = parse_status({"state": state(), "info": info()})
    assert report.fields == {
        "on": True, "brightness": 128, "led_count": 30, "power_ma": 420,
        "uptime_s": report.fields["uptime_s"], "firmware": "0.14.4",
        "wifi_rssi": -61, "wifi_signal": 78,
    }  # fmt: skip
    assert (report.update_available, report.update_version) == (False, None)
    assert set(FIELDS.values()) <= set(CATEGORIES)
    assert DRIVER.fields is FIELDS


@pytest.mark.parametrize(("change", "reason"), [
    ({"mac": ""}, "missing_property"),
    ({"mac": "zz"}, "bad_txt"),
    ({"mac": "001122334455"}, "bad_shape"),  # not the announced device
    ({"leds": "not an object"}, "bad_shape"),
    ({"leds": {"count": None}}, "bad_shape"),
    ({"uptime": float("nan")}, "bad_shape"),
    ({"wifi": {"rssi": float("inf")}}, "bad_shape"),
])  # fmt: skip
def test_bad_device_info(change: dict[str, Any], reason: str) -> None:
    with pytest.raises(DeviceError) as caught:
        parse_info({**info(), **change}, expected_id=MAC)
    assert caught.value.reason == reason


@pytest.mark.parametrize(("body", "where"), [
    ([], None), (None, None), ({"state": [], "info": None}, None),
    ({"info": {}}, None),
    ({"bri": None}, "state"), ({"bri": float("nan")}, "state"), ({"bri": 1e300}, "state"),
    ({"bri": 2**70}, "state"), ({"leds": {"count": 2**60}}, "info"),
    ({"uptime": 2**60}, "info"), ({"wifi": {"rssi": -(2**60)}}, "info"),
])  # fmt: skip
def test_bad_status(body: Any, where: str | None) -> None:
    if where == "state":
        body = {"state": {**state(), **body}, "info": info()}
    elif where == "info":
        body = {"state": state(), "info": {**info(), **body}}
    with pytest.raises(DeviceError) as caught:
        parse_status(body)
    assert caught.value.reason == "bad_shape"


# --- property tests: whatever a device sends, parsing raises DeviceError or succeeds --------

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=5)
    ),
    max_leaves=30,
)
info_keys = st.sampled_from(sorted(info()))
state_keys = st.sampled_from(sorted(state()))
nested_keys = st.sampled_from(["count", "pwr", "fps", "maxpwr", "rssi", "signal", "channel",
                               "bssid", "u", "t", "on", "dur", "send", "recv", "id", "start",
                               "stop", "len", "col", "fx", "bri"])  # fmt: skip
wled_like = st.recursive(
    json_values, lambda children: st.dictionaries(nested_keys, children, max_size=5), max_leaves=30
)


@st.composite
def mutated(draw: st.DrawFn, sample: Callable[[], dict[str, Any]], keys: Any) -> Any:
    """Return ``sample()`` with some of its keys replaced by, or dropped for, anything."""
    body = sample()
    for key in draw(st.lists(keys, max_size=4)):
        value = draw(st.none() | st.integers() | st.floats() | wled_like)
        if value is None and draw(st.booleans()):
            body.pop(key, None)
        else:
            body[key] = value
    return body


def reason_of(parse: Callable[[], object]) -> str | None:
    """Return the DeviceError reason ``parse()`` raised, None if it succeeded."""
    try:
        parse()
    except DeviceError as exc:
        return exc.reason
    return None


@settings(max_examples=300, deadline=None)
@given(st.one_of(json_values, mutated(info, info_keys)))
def test_info_parsing_raises_only_device_errors(body: Any) -> None:
    assert reason_of(lambda: parse_info(body, expected_id=MAC)) in {
        None, "bad_shape", "missing_property", "bad_txt"}  # fmt: skip


@settings(max_examples=300, deadline=None)
@given(
    st.one_of(
        json_values,
        st.fixed_dictionaries({"state": mutated(state, state_keys), "info": st.just(info())}),
        st.fixed_dictionaries({"state": st.just(state()), "info": mutated(info, info_keys)}),
    )
)
def test_status_parsing_raises_only_device_errors(body: Any) -> None:
    reason = reason_of(lambda: parse_status(body))
    assert reason in {None, "bad_shape"}
    if reason is None:
        report = parse_status(body)
        assert set(report.fields) <= set(FIELDS)
        json.dumps(report.fields, allow_nan=False)  # finite, encodable values only
        numbers = [v for v in report.fields.values() if isinstance(v, int | float)]
        assert all(abs(v) <= MAX_INT for v in numbers)


@given(st.binary(max_size=200))
def test_garbage_bytes_never_escape_as_other_errors(raw: bytes) -> None:
    try:
        body = json.loads(raw)
    except ValueError:
        return
    for parse in (parse_status, parse_info):
        with contextlib.suppress(DeviceError):
            parse(body)
