"""A HomeKit accessory database (HAP R2 s6.6, ``GET /accessories``) read into what the hub needs:
the Accessory Information of the primary accessory and which characteristics to collect.

Pure: the JSON (as aiohomekit returns it) in, frozen data out; characteristic events
(``{(aid, iid): {"value": v}}``) are turned into reading fields here too.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, Final

from drivers.homekit.chars import (
    ACCESSORY_INFORMATION,
    INFO,
    MAX_INSTANCES,
    TELEMETRY,
    Kind,
    convert,
    numbered,
    short_type,
)
from gateway.errors import DeviceError
from gateway.model import Value

MAX_ACCESSORIES: Final = 150  # HAP R2 s2.5.3.2: a bridge exposes at most 150 accessories
PRIMARY_AID: Final = 1  # HAP R2 s2.6.1.1: the bridge or the accessory itself


@dataclass(frozen=True, slots=True)
class Collected:
    """A characteristic the hub subscribes to: the field it fills and its value kind."""

    field: str
    kind: Kind


@dataclass(frozen=True, slots=True)
class Plan:
    """What pairing learnt: ``info`` fields (Accessory Information) and what to collect."""

    info: Mapping[str, Value]
    collected: Mapping[tuple[int, int], Collected]
    initial: Mapping[str, Value]

    @property
    def model(self) -> str:
        """Return "<manufacturer> <model>" as far as the accessory says it (never empty)."""
        parts = [self.info.get("manufacturer"), self.info.get("model")]
        text = " ".join(str(p) for p in parts if p)
        return text or "HomeKit accessory"

    @property
    def firmware(self) -> str:
        """Return the firmware revision, or "unknown"."""
        value = self.info.get("firmware")
        return str(value) if value else "unknown"

    def fields_of(self, event: Mapping[tuple[int, int], Mapping[str, Any]]) -> dict[str, Value]:
        """Return the reading fields in a characteristic event; unknown or bad values skipped."""
        fields: dict[str, Value] = {}
        for key, change in event.items():
            spec = self.collected.get(key)
            if spec is None or not isinstance(change, Mapping) or "value" not in change:
                continue
            value = convert(change["value"], spec.kind)
            if value is not None:
                fields[spec.field] = value
        return fields


def plan(accessories: Any) -> Plan:
    """Read an accessory database; raise DeviceError(bad_shape) when it is not one."""
    if not isinstance(accessories, list) or not accessories:
        raise DeviceError("bad_shape", "the accessory database is not a list of accessories")
    info: dict[str, Value] = {}
    collected: dict[tuple[int, int], Collected] = {}
    initial: dict[str, Value] = {}
    seen: dict[str, int] = {}
    for accessory in accessories[:MAX_ACCESSORIES]:
        aid = _int(accessory, "aid")
        for service in _list(accessory, "services"):
            service_type = short_type(_text(service, "type"))
            for char in _list(service, "characteristics"):
                iid = _int(char, "iid")
                char_type = short_type(_text(char, "type"))
                if service_type == ACCESSORY_INFORMATION:
                    spec = INFO.get(char_type)
                    if spec is not None and aid == PRIMARY_AID:
                        value = convert(char.get("value"), spec.kind)
                        if value is not None:
                            info[spec.field] = value
                    continue
                found = TELEMETRY.get(char_type)
                if found is None or not _notifies(char):
                    continue
                index = seen.get(found.field, 0)
                if index >= MAX_INSTANCES:
                    continue
                seen[found.field] = index + 1
                name = numbered(found.field, index)
                collected[(aid, iid)] = Collected(name, found.kind)
                value = convert(char.get("value"), found.kind)
                if value is not None:
                    initial[name] = value
    return Plan(
        info=MappingProxyType(info),
        collected=MappingProxyType(collected),
        initial=MappingProxyType(initial),
    )


def _notifies(char: dict[str, Any]) -> bool:
    """Return whether ``char`` sends events: its ``perms`` is a list that holds "ev"."""
    perms = char.get("perms")
    return isinstance(perms, list) and "ev" in perms


def _list(obj: Any, key: str) -> list[Any]:
    value = obj.get(key) if isinstance(obj, dict) else None
    if not isinstance(value, list):
        raise DeviceError("bad_shape", f"the accessory database has no {key!r} list")
    return value


def _int(obj: Any, key: str) -> int:
    value = obj.get(key) if isinstance(obj, dict) else None
    if type(value) is not int or not 0 < value < 2**53:
        raise DeviceError("bad_shape", f"the accessory database has a bad {key!r}")
    return value


def _text(obj: Any, key: str) -> str:
    value = obj.get(key) if isinstance(obj, dict) else None
    if not isinstance(value, str) or not 0 < len(value) <= 36:
        raise DeviceError("bad_shape", f"the accessory database has a bad {key!r}")
    return value
