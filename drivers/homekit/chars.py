"""HomeKit characteristics the hub collects, table driven: HAP type -> field, kind, category.

Types are HAP R2 chapter 9 (and Eve's published energy characteristics, used by many
power-metering accessories); a type is identified by its short form (``11`` for
``00000011-0000-1000-8000-0026BB765291``) or, for vendor types, its full UUID, uppercase.
A field a device exposes more than once is numbered: ``temperature_c``, ``temperature_c_1``...
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Final, Literal

from gateway.consent.catalogue import DEVICE_BASIC, DEVICE_NETWORK, TELEMETRY_ENVIRONMENT
from gateway.model import Value

Kind = Literal["float", "int", "bool", "str"]
BASE_UUID: Final = "-0000-1000-8000-0026BB765291"
MAX_INSTANCES: Final = 4
MAX_INT: Final = 2**53
MAX_TEXT: Final = 64


@dataclass(frozen=True, slots=True)
class CharSpec:
    """One collected characteristic: its field name, value kind and data category."""

    field: str
    kind: Kind
    category: str


_T = TELEMETRY_ENVIRONMENT

TELEMETRY: Final[Mapping[str, CharSpec]] = MappingProxyType(
    {
        "11": CharSpec("temperature_c", "float", _T),  # CurrentTemperature
        "10": CharSpec("humidity_percent", "float", _T),  # CurrentRelativeHumidity
        "6A": CharSpec("contact_state", "int", _T),  # ContactSensorState: 0 detected
        "22": CharSpec("motion", "bool", _T),  # MotionDetected
        "71": CharSpec("occupancy", "int", _T),  # OccupancyDetected
        "68": CharSpec("battery_percent", "float", _T),  # BatteryLevel
        "79": CharSpec("battery_low", "int", _T),  # StatusLowBattery
        "95": CharSpec("air_quality", "int", _T),  # AirQuality 0-5
        "C6": CharSpec("pm25", "float", _T),  # PM2.5Density, ug/m3
        "C7": CharSpec("pm10", "float", _T),  # PM10Density
        "C8": CharSpec("voc", "float", _T),  # VOCDensity
        "93": CharSpec("co2_ppm", "float", _T),  # CarbonDioxideLevel
        "90": CharSpec("co_ppm", "float", _T),  # CarbonMonoxideLevel
        "6B": CharSpec("light_lux", "float", _T),  # CurrentAmbientLightLevel
        "76": CharSpec("smoke", "int", _T),  # SmokeDetected
        "70": CharSpec("leak", "int", _T),  # LeakDetected
        "25": CharSpec("on", "bool", _T),  # On (outlet, switch, light)
        "26": CharSpec("outlet_in_use", "bool", _T),  # OutletInUse
        "8": CharSpec("brightness", "int", _T),  # Brightness, %
        "E863F10D-079E-48FF-8F27-9C2605A29F52": CharSpec("power_w", "float", _T),  # Eve watts
        "E863F10C-079E-48FF-8F27-9C2605A29F52": CharSpec("energy_kwh", "float", _T),  # Eve kWh
        "E863F10A-079E-48FF-8F27-9C2605A29F52": CharSpec("voltage_v", "float", _T),  # Eve V
        "E863F126-079E-48FF-8F27-9C2605A29F52": CharSpec("current_a", "float", _T),  # Eve A
    }
)

ACCESSORY_INFORMATION: Final = "3E"
# Accessory Information service (HAP R2 s8.1): read once at pairing.
INFO: Final[Mapping[str, CharSpec]] = MappingProxyType(
    {
        "20": CharSpec("manufacturer", "str", DEVICE_BASIC),
        "21": CharSpec("model", "str", DEVICE_BASIC),
        "23": CharSpec("name", "str", DEVICE_BASIC),
        "52": CharSpec("firmware", "str", DEVICE_BASIC),
        "53": CharSpec("hardware", "str", DEVICE_BASIC),
        "30": CharSpec("serial_number", "str", DEVICE_NETWORK),  # a persistent identifier
    }
)


def numbered(name: str, index: int) -> str:
    """Return the field name of the ``index``-th occurrence (0 is the bare name)."""
    return name if index == 0 else f"{name}_{index}"


FIELDS: Final[Mapping[str, str]] = MappingProxyType(
    {
        **{
            numbered(spec.field, n): spec.category
            for spec in TELEMETRY.values()
            for n in range(MAX_INSTANCES)
        },
        **{spec.field: spec.category for spec in INFO.values()},
        "online": DEVICE_BASIC,
    }
)


def short_type(uuid: str) -> str:
    """Return a characteristic/service type in its short form (HAP R2 s6.6.1), uppercase."""
    upper = uuid.upper()
    if upper.endswith(BASE_UUID) and len(upper) == 36:
        return upper[:8].lstrip("0") or "0"
    return upper


def convert(value: object, kind: Kind) -> Value:
    """Return ``value`` as ``kind`` or None when it is not one (a bad value is not collected)."""
    if kind == "bool":
        if isinstance(value, bool):
            return value
        if type(value) is int and value in (0, 1):  # HAP sends bools as 0/1 too
            return bool(value)
        return None
    if isinstance(value, bool):
        return None
    if kind == "int" and type(value) is int and abs(value) <= MAX_INT:
        return value
    if kind == "float" and (
        (isinstance(value, float) and math.isfinite(value))
        or (type(value) is int and abs(value) <= MAX_INT)
    ):
        return float(value)
    if kind == "str" and isinstance(value, str):
        cleaned = "".join(c for c in value if c.isprintable()).strip()[:MAX_TEXT]
        return cleaned or None
    return None
