"""WLED JSON API answers (kno.wled.ge/interfaces/json-api), read through python-wled's models.

``GET /json/info`` answers the info object at pairing; ``GET /json/si`` answers
``{"state": ..., "info": ...}`` at every poll. python-wled (``wled.models``, the library Home
Assistant's WLED integration uses) does the parsing; this module picks the fields the hub
emits and assigns each its data category.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import Any, Final

from drivers.base import StatusReport
from drivers.lan.listing import display_name
from drivers.lan.listing import mac as parse_mac
from gateway.consent.catalogue import DEVICE_BASIC, DEVICE_NETWORK, TELEMETRY_ENVIRONMENT, USAGE
from gateway.devices.model import DeviceInfo
from gateway.errors import DeviceError
from gateway.model import Value

INFO_PATH: Final = "/json/info"
STATUS_PATH: Final = "/json/si"
MAX_VERSION: Final = 32
MAX_INT: Final = 2**53  # exact in every JSON implementation; larger is garbage

FIELDS: Final[Mapping[str, str]] = MappingProxyType(
    {
        "on": TELEMETRY_ENVIRONMENT,
        "brightness": TELEMETRY_ENVIRONMENT,  # 0-255
        "led_count": DEVICE_BASIC,
        "power_ma": TELEMETRY_ENVIRONMENT,  # estimated current, mA (brightness limiter)
        "wifi_rssi": DEVICE_NETWORK,  # dBm
        "wifi_signal": DEVICE_NETWORK,  # %
        "uptime_s": USAGE,
        "firmware": DEVICE_BASIC,
    }
)


def _models() -> Any:
    # python-wled pulls in mashumaro/orjson/awesomeversion: imported with the first WLED device.
    from wled import models  # noqa: PLC0415

    return models


def _parse(model: str, body: Any) -> Any:
    if not isinstance(body, dict):
        raise DeviceError("bad_shape", f"the WLED {model} is not a JSON object")
    try:
        return getattr(_models(), model).from_dict(body)
    except (LookupError, ValueError, TypeError, AttributeError, OverflowError) as exc:
        # mashumaro's MissingField is a LookupError, InvalidFieldValue a ValueError.
        raise DeviceError("bad_shape", f"the WLED {model} is not the documented shape") from exc


def parse_info(body: Any, expected_id: str | None = None) -> DeviceInfo:
    """Parse ``/json/info``; DeviceError(bad_shape) if malformed or another device's MAC."""
    info = _parse("Info", body)
    if not info.mac_address:
        raise DeviceError("missing_property", "WLED info: 'mac' is missing")
    address = parse_mac(info.mac_address)
    if expected_id is not None and address.replace(":", "").lower() != expected_id.lower():
        raise DeviceError("bad_shape", "WLED info: the device answered with another MAC")
    version = str(info.version) if info.version is not None else "unknown"
    return DeviceInfo(
        model=f"{info.brand} {info.product}"[:64],
        firmware=version[:MAX_VERSION],
        mac=address,
        name=display_name(info.name),
    )


def parse_status(body: Any) -> StatusReport:
    """Parse ``/json/si`` (state and info) into FIELDS; DeviceError(bad_shape) if malformed."""
    if not isinstance(body, dict):
        raise DeviceError("bad_shape", "the WLED status is not a JSON object")
    state = _parse("State", body.get("state"))
    info = _parse("Info", body.get("info"))
    fields: dict[str, Value] = {
        "on": bool(state.on),
        "brightness": _bounded(state.brightness, "bri"),
        "led_count": _bounded(info.leds.count, "leds.count"),
        "power_ma": _bounded(info.leds.power, "leds.pwr"),
        "uptime_s": _bounded(info.uptime.total_seconds(), "uptime"),
    }
    if info.version is not None:
        fields["firmware"] = str(info.version)[:MAX_VERSION]
    if info.wifi is not None:
        if info.wifi.rssi is not None:
            fields["wifi_rssi"] = _bounded(info.wifi.rssi, "wifi.rssi")
        if info.wifi.signal is not None:
            fields["wifi_signal"] = _bounded(info.wifi.signal, "wifi.signal")
    # WLED answers no upgrade information of its own (python-wled asks GitHub, which the hub
    # does not): upgrade info stays "none available".
    return StatusReport(fields=fields, update_available=False, update_version=None)


def _bounded(value: object, key: str) -> int:
    """Return ``value`` as an int within +-MAX_INT; DeviceError(bad_shape) when it is not one."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise DeviceError("bad_shape", f"WLED status: {key!r} is not a number")
    if not -MAX_INT <= value <= MAX_INT:  # NaN fails too
        raise DeviceError("bad_shape", f"WLED status: {key!r} is out of range")
    return int(value)
