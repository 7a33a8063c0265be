"""The driver registry: built-ins, entry-point plug-ins, field categories, matching as data."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import pytest

import drivers
from drivers import SIMULATOR_FIELDS
from drivers.base import DriverSpec, Match, check_driver
from gateway.consent.catalogue import CATEGORIES


@dataclass
class FakeEntryPoint:
    """Just enough of importlib.metadata.EntryPoint for load_drivers."""

    name: str
    target: Any

    def load(self) -> Any:
        """Return the target, or raise it when it is an exception."""
        if isinstance(self.target, BaseException):
            raise self.target
        return self.target


def test_builtins_are_registered() -> None:
    registry = drivers.registry()
    assert {"shelly", "simulator"} <= set(registry)
    for driver in registry.values():
        assert check_driver(driver) == []
        assert set(driver.fields.values()) <= set(CATEGORIES)


def test_simulator_fields() -> None:
    assert dict(SIMULATOR_FIELDS) == {
        "temperature": "telemetry.environment",
        "humidity": "telemetry.environment",
        "battery": "telemetry.environment",
        "heart_rate": "health",
        "steps": "health",
        "weight": "health",
        "latitude": "location.precise",
        "longitude": "location.precise",
    }
    assert drivers.field_category("simulator", "heart_rate") == "health"


def test_field_category() -> None:
    assert drivers.field_category("shelly", "switch0_power") == "telemetry.environment"
    assert drivers.field_category("shelly", "wifi_ssid") == "device.network"
    assert drivers.field_category("shelly", "update_available") == "device.basic"
    assert drivers.field_category("shelly", "nope") is None
    assert drivers.field_category("nope", "switch0_power") is None


def test_mdns_service_types_come_from_driver_declarations() -> None:
    assert set(drivers.mdns_drivers()) == {"_shelly._tcp.local.", "_wled._tcp.local."}
    assert drivers.mdns_drivers()["_shelly._tcp.local."].name == "shelly"
    assert drivers.mdns_drivers()["_wled._tcp.local."].name == "wled"


def test_plugins_are_validated(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.ERROR)
    good = DriverSpec("acme", Match(ble_company_ids=(0x0499,)), {"co2": "telemetry.environment"})
    loaded = drivers.load_drivers(
        [
            FakeEntryPoint("acme", good),
            FakeEntryPoint("broken", ImportError("no module")),
            FakeEntryPoint("bad-category", DriverSpec("bad", Match(), {"x": "secret.stuff"})),
            FakeEntryPoint("clash", DriverSpec("shelly", Match(), {})),
            FakeEntryPoint("not-a-driver", object()),
        ]
    )
    assert loaded["acme"] is good
    assert "bad" not in loaded
    assert loaded["shelly"] is drivers.registry()["shelly"]
    rejected = {r.__dict__.get("plugin") for r in caplog.records}
    assert rejected == {"broken", "bad-category", "clash", "not-a-driver"}


def test_builtin_mistakes_fail_loudly() -> None:
    with pytest.raises(ValueError, match="unknown category"):
        drivers.load_drivers(builtins=[DriverSpec("x", Match(), {"f": "nope"})])
    spec = DriverSpec("x", Match(), {})
    with pytest.raises(ValueError, match="twice"):
        drivers.load_drivers(builtins=[spec, spec])


def test_ble_matching_as_data() -> None:
    match = Match(
        ble_service_uuids=("0000fcd2-0000-1000-8000-00805f9b34fb",),
        ble_company_ids=(0x0969,),
        ble_local_names=("ATC_*",),
    )
    assert match.matches_ble(service_uuids=frozenset({"0000fcd2-0000-1000-8000-00805f9b34fb"}))
    assert match.matches_ble(company_ids=frozenset({0x0969}))
    assert match.matches_ble(local_name="ATC_1234")
    assert not match.matches_ble(local_name="LYWSD03")
    assert not Match().matches_ble(frozenset({"x"}), frozenset({1}), "y")
    assert Match(mdns_types=("_Shelly._tcp.local.",)).matches_mdns("_shelly._TCP.local.")
