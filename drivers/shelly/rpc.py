"""Shelly Gen2+ RPC answers: ``Shelly.GetDeviceInfo`` and ``Shelly.GetStatus``, table driven.

Over HTTP, ``GET /rpc/<Method>`` answers the bare result object (Shelly Gen2 API docs, "RPC
Protocol" / "HTTP"). ``Shelly.GetStatus`` holds one status object per component, keyed
``<type>:<id>`` (``switch:0``) or ``<type>`` for singletons (``sys``, ``wifi``); each field we
emit is described once in ``COMPONENTS`` / ``SINGLETONS`` with its JSON path and data category.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, Final, Literal

from drivers.base import StatusReport
from drivers.shelly.txt import DEVICE_ID, MIN_GENERATION, VERSION
from gateway.consent.catalogue import DEVICE_BASIC, DEVICE_NETWORK, TELEMETRY_ENVIRONMENT, USAGE
from gateway.devices.model import DeviceInfo
from gateway.errors import DeviceError
from gateway.model import Value

INFO_PATH: Final = "/rpc/Shelly.GetDeviceInfo"
STATUS_PATH: Final = "/rpc/Shelly.GetStatus"
MAX_INSTANCES: Final = 4  # component ids 0-3 (Pro 4PM); higher ids are not collected
MAX_TEXT: Final = 255
MAX_INT: Final = 2**63 - 1  # what a device can mean by a number; larger is garbage
MAX_NAME: Final = 64
_MAC: Final = re.compile(r"^[0-9A-Fa-f]{12}$")
_KEY: Final = re.compile(r"^([a-z0-9_]{1,32}):([0-9]{1,2})$")

Kind = Literal["float", "int", "bool", "str"]


@dataclass(frozen=True, slots=True)
class FieldSpec:
    """One emitted field: its name suffix, JSON path inside the component, type and category."""

    name: str
    path: tuple[str, ...]
    kind: Kind
    category: str


_T, _B, _N, _U = TELEMETRY_ENVIRONMENT, DEVICE_BASIC, DEVICE_NETWORK, USAGE

# Components with ids (Shelly Gen2 API docs: Switch, Input, PM1, Temperature, Humidity,
# DevicePower status objects). Field names are "<prefix><id>_<name>", e.g. "switch0_power".
COMPONENTS: Final[Mapping[str, tuple[FieldSpec, ...]]] = MappingProxyType(
    {
        "switch": (
            FieldSpec("output", ("output",), "bool", _T),
            FieldSpec("power", ("apower",), "float", _T),  # W, active power
            FieldSpec("voltage", ("voltage",), "float", _T),  # V
            FieldSpec("current", ("current",), "float", _T),  # A
            FieldSpec("energy", ("aenergy", "total"), "float", _T),  # Wh, total active energy
            FieldSpec("temperature", ("temperature", "tC"), "float", _T),  # deg C, internal
        ),
        "pm1": (
            FieldSpec("power", ("apower",), "float", _T),
            FieldSpec("voltage", ("voltage",), "float", _T),
            FieldSpec("current", ("current",), "float", _T),
            FieldSpec("energy", ("aenergy", "total"), "float", _T),
        ),
        "input": (FieldSpec("state", ("state",), "bool", _T),),
        "temperature": (FieldSpec("celsius", ("tC",), "float", _T),),
        "humidity": (FieldSpec("percent", ("rh",), "float", _T),),
        "devicepower": (
            FieldSpec("battery_percent", ("battery", "percent"), "float", _T),
            FieldSpec("battery_voltage", ("battery", "V"), "float", _T),
        ),
    }
)

# Field-name prefix of a component type where its type name would read badly ("pm10_power").
_PREFIX: Final[Mapping[str, str]] = MappingProxyType({"pm1": "pm"})


def _prefix(kind: str, instance: int) -> str:
    return f"{_PREFIX.get(kind, kind)}{instance}_"


# Singleton components (Sys, WiFi status objects). Field names are "<type>_<name>".
SINGLETONS: Final[Mapping[str, tuple[FieldSpec, ...]]] = MappingProxyType(
    {
        "sys": (
            FieldSpec("uptime", ("uptime",), "int", _U),  # s since boot: usage statistics
            FieldSpec("restart_required", ("restart_required",), "bool", _B),
        ),
        "wifi": (
            FieldSpec("ip", ("sta_ip",), "str", _N),
            FieldSpec("ssid", ("ssid",), "str", _N),
            FieldSpec("rssi", ("rssi",), "int", _N),  # dBm
        ),
    }
)

# Upgrade info from sys.available_updates (Sys status: {"stable"|"beta": {"version": ...}}).
UPDATE_FIELDS: Final[Mapping[str, str]] = MappingProxyType(
    {
        "update_available": _B,
        "update_version": _B,
        "update_beta_version": _B,
    }
)

FIELDS: Final[Mapping[str, str]] = MappingProxyType(
    {
        **{
            _prefix(kind, n) + spec.name: spec.category
            for kind, specs in COMPONENTS.items()
            for n in range(MAX_INSTANCES)
            for spec in specs
        },
        **{
            f"{kind}_{spec.name}": spec.category
            for kind, specs in SINGLETONS.items()
            for spec in specs
        },
        **UPDATE_FIELDS,
    }
)


def parse_info(body: Any, expected_id: str | None = None) -> DeviceInfo:
    """Parse a ``Shelly.GetDeviceInfo`` result (id, mac, model, gen, ver, name ...).

    Raise DeviceError(missing_property) when a required key is absent, DeviceError(bad_shape)
    when the answer is not the documented shape or names another device than ``expected_id``.
    """
    info = _object(body, "the device info")
    device_id = _text(info, "id").lower()
    if not DEVICE_ID.match(device_id):
        raise DeviceError("bad_shape", "device info: id is not a Shelly device id")
    if expected_id is not None and device_id != expected_id.lower():
        raise DeviceError("bad_shape", "device info: the device answered with another id")
    mac = _text(info, "mac")
    if not _MAC.match(mac):
        raise DeviceError("bad_shape", "device info: mac is not 12 hex digits")
    generation = info.get("gen")
    if generation is None:
        raise DeviceError("missing_property", "device info: 'gen' is missing")
    if type(generation) is not int or generation < MIN_GENERATION:
        raise DeviceError("bad_shape", "device info: gen is not a Gen2+ generation")
    version = _text(info, "ver")
    if not VERSION.match(version):
        raise DeviceError("bad_shape", "device info: ver is not a firmware version")
    model = _text(info, "model")
    name = info.get("name")
    if name is not None and not isinstance(name, str):
        raise DeviceError("bad_shape", "device info: name is not text")
    return DeviceInfo(model=model, firmware=version, mac=_colon_mac(mac), name=_clean_name(name))


def parse_status(body: Any) -> StatusReport:
    """Parse a ``Shelly.GetStatus`` result into fields named in ``FIELDS`` plus upgrade info.

    Absent or null values are skipped; a known component or value of the wrong type raises
    DeviceError(bad_shape). Unknown components are ignored.
    """
    status = _object(body, "the status")
    fields: dict[str, Value] = {}
    for key, component in status.items():
        if key in SINGLETONS:
            _collect(fields, key, f"{key}_", SINGLETONS[key], component)
            continue
        match = _KEY.match(key)
        if match is None or match[1] not in COMPONENTS or int(match[2]) >= MAX_INSTANCES:
            continue
        _collect(fields, key, _prefix(match[1], int(match[2])), COMPONENTS[match[1]], component)
    stable, beta = _available_updates(status.get("sys"))
    fields["update_available"] = stable is not None
    if stable is not None:
        fields["update_version"] = stable
    if beta is not None:
        fields["update_beta_version"] = beta
    return StatusReport(fields=fields, update_available=stable is not None, update_version=stable)


def _collect(
    fields: dict[str, Value], key: str, prefix: str, specs: tuple[FieldSpec, ...], component: Any
) -> None:
    if component is None:
        return
    obj = _object(component, f"status {key!r}")
    for spec in specs:
        value: Any = obj
        for step in spec.path:
            if not isinstance(value, dict):
                raise _shape_error(key, spec)
            value = value.get(step)
            if value is None:
                break
        if value is not None:
            fields[prefix + spec.name] = _convert(value, spec, key)


def _convert(value: Any, spec: FieldSpec, key: str) -> Value:
    kind = spec.kind
    if kind == "bool" and isinstance(value, bool):
        return value
    if kind == "int" and type(value) is int and abs(value) <= MAX_INT:
        return value
    if kind == "float" and (
        (isinstance(value, float) and math.isfinite(value))
        or (type(value) is int and abs(value) <= MAX_INT)  # float(2**2000) overflows
    ):
        return float(value)
    if kind == "str" and isinstance(value, str) and len(value) <= MAX_TEXT:
        return value
    raise _shape_error(key, spec)


def _shape_error(key: str, spec: FieldSpec) -> DeviceError:
    return DeviceError("bad_shape", f"status {key!r}: {'.'.join(spec.path)} is not a {spec.kind}")


def _available_updates(sys_status: Any) -> tuple[str | None, str | None]:
    if not isinstance(sys_status, dict):
        return None, None
    updates = sys_status.get("available_updates")
    if updates is None:
        return None, None
    if not isinstance(updates, dict):
        raise DeviceError("bad_shape", "status 'sys': available_updates is not an object")
    return _update_version(updates, "stable"), _update_version(updates, "beta")


def _update_version(updates: dict[str, Any], channel: str) -> str | None:
    entry = updates.get(channel)
    if entry is None:
        return None
    version = entry.get("version") if isinstance(entry, dict) else None
    if not isinstance(version, str) or not VERSION.match(version):
        raise DeviceError("bad_shape", f"status 'sys': available_updates.{channel} has no version")
    return version


def _object(value: Any, what: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise DeviceError("bad_shape", f"{what} is not a JSON object")
    return value


def _text(obj: Mapping[str, Any], key: str) -> str:
    if key not in obj or obj[key] is None:
        raise DeviceError("missing_property", f"device info: {key!r} is missing")
    value = obj[key]
    if not isinstance(value, str) or not value or len(value) > MAX_TEXT:
        raise DeviceError("bad_shape", f"device info: {key!r} is not text")
    return value


def _colon_mac(mac: str) -> str:
    mac = mac.upper()
    return ":".join(mac[i : i + 2] for i in range(0, 12, 2))


def _clean_name(name: str | None) -> str | None:
    if name is None:
        return None
    cleaned = "".join(c for c in name if c.isprintable()).strip()[:MAX_NAME]
    return cleaned or None
