"""The LAN inventory table: well-known DNS-SD service types, each with a pure TXT parser.

``INVENTORY`` is the declared table (service type -> family and parser). Families with a
telemetry driver (Shelly, HomeKit, WLED) are read by it once paired; the others are
``InventoryDriver``s: once paired they report device.basic (model, firmware, name, online
status) and, under the ``network`` flag only, their MAC. Nothing here does I/O.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Final

from drivers.base import Driver, Match
from drivers.homekit import txt as homekit_txt
from drivers.lan import families
from drivers.lan.listing import Listing, Txt, decode_txt
from drivers.shelly import txt as shelly_txt
from drivers.wled import txt as wled_txt
from gateway.consent.catalogue import DEVICE_BASIC, DEVICE_NETWORK
from gateway.devices.model import OFFLINE, ONLINE, PAIRED, DeviceView
from gateway.errors import DeviceError
from gateway.model import Value

Properties = Mapping[bytes, bytes | None]
Parser = Callable[[str, Txt], Listing]

# What a paired device without a telemetry driver reports (one reading per status change).
BASIC_FIELDS: Final[Mapping[str, str]] = MappingProxyType(
    {
        "online": DEVICE_BASIC,
        "model": DEVICE_BASIC,
        "firmware": DEVICE_BASIC,
        "name": DEVICE_BASIC,
        "mac": DEVICE_NETWORK,
    }
)


def _shelly(instance: str, txt: Txt) -> Listing:
    # The Shelly parser decodes raw properties itself; give it back its input form.
    raw = {k.encode(): None if v is None else v.encode() for k, v in txt.items()}
    found = shelly_txt.parse_announcement(instance, raw)
    return Listing(
        family="shelly",
        stable_id=found.stable_id,
        model=found.model,
        firmware=found.firmware,
        details=(("generation", str(found.generation)),),
    )


@dataclass(frozen=True, slots=True)
class ServiceKind:
    """One row of the inventory: a service type, its family, parser and telemetry driver."""

    service_type: str
    family: str
    parse: Parser
    telemetry: bool


INVENTORY: Final[tuple[ServiceKind, ...]] = (
    ServiceKind("_googlecast._tcp.local.", "googlecast", families.parse_googlecast, False),
    ServiceKind("_esphomelib._tcp.local.", "esphome", families.parse_esphome, False),
    ServiceKind("_matterc._udp.local.", "matter", families.parse_matter_commissionable, False),
    ServiceKind("_matter._tcp.local.", "matter", families.parse_matter_operational, False),
    ServiceKind("_hue._tcp.local.", "hue", families.parse_hue, False),
    ServiceKind(wled_txt.SERVICE_TYPE, "wled", wled_txt.parse, True),
    ServiceKind(shelly_txt.SERVICE_TYPE, "shelly", _shelly, True),
    *(ServiceKind(t, "homekit", homekit_txt.parse, True) for t in homekit_txt.SERVICE_TYPES),
)
BY_TYPE: Final[Mapping[str, ServiceKind]] = MappingProxyType(
    {kind.service_type.lower(): kind for kind in INVENTORY}
)


def parse_listing(service_type: str, instance: str, properties: Properties) -> Listing:
    """Parse an instance of ``service_type`` by the table; raise DeviceError (bad_txt,
    missing_property, or unsupported for a type not in the table).
    """
    kind = BY_TYPE.get(service_type.lower())
    if kind is None:
        raise DeviceError("unsupported", "not a service type of the LAN inventory")
    return kind.parse(instance, decode_txt(properties))


def listing_of(driver: Driver, service_type: str, instance: str, props: Properties) -> Listing:
    """Parse an announcement with ``driver``: its own ``parse_listing`` when it has one, else
    its ``parse_announcement`` (HTTP RPC drivers such as Shelly); raise DeviceError.
    """
    parse = getattr(driver, "parse_listing", None)
    if callable(parse):
        found = parse(service_type, instance, props)
        assert isinstance(found, Listing)
        return found
    announced = driver.parse_announcement(instance, props)  # type: ignore[attr-defined]
    return Listing(
        family=driver.name,
        stable_id=announced.stable_id,
        model=announced.model,
        firmware=announced.firmware or None,
    )


def basic_fields(kind: str, view: DeviceView) -> dict[str, Value]:
    """Return the BASIC_FIELDS reading of a paired inventory device for a registry event of
    ``kind``: everything at pairing, the online status when it changes, nothing otherwise.
    """
    if kind == PAIRED:
        fields: dict[str, Value] = {
            "online": view.online,
            "model": view.model,
            "firmware": view.firmware,
            "name": view.name,
            "mac": view.mac,
        }
        return {k: v for k, v in fields.items() if v is not None}
    if kind in (ONLINE, OFFLINE):
        return {"online": kind == ONLINE}
    return {}


@dataclass(frozen=True, slots=True)
class InventoryDriver:
    """A family listed and paired for its basic info and online status only."""

    name: str
    match: Match
    fields: Mapping[str, str] = field(default_factory=lambda: BASIC_FIELDS, repr=False)

    def parse_listing(self, service_type: str, instance: str, properties: Properties) -> Listing:
        """Parse one announcement of this family (see ``parse_listing``)."""
        return parse_listing(service_type, instance, properties)


def _inventory_drivers() -> tuple[InventoryDriver, ...]:
    names = sorted({k.family for k in INVENTORY if not k.telemetry})
    return tuple(
        InventoryDriver(
            name=name,
            match=Match(
                mdns_types=tuple(
                    k.service_type for k in INVENTORY if k.family == name and not k.telemetry
                )
            ),
        )
        for name in names
    )


DRIVERS: Final = _inventory_drivers()

__all__ = [
    "BASIC_FIELDS",
    "BY_TYPE",
    "DRIVERS",
    "INVENTORY",
    "InventoryDriver",
    "Listing",
    "ServiceKind",
    "parse_listing",
]
