"""The driver contract: what a driver matches and which data category each field belongs to.

A driver declares, as data, what it recognises (mDNS service types, BLE service-data UUIDs,
company ids, local-name patterns; like a Home Assistant ``manifest.json``) and ``FIELDS``: every
field it emits mapped to exactly one category of ``gateway.consent.catalogue.CATEGORIES``.
Decoding is transport specific: ``HttpRpcDriver`` is the extra contract of drivers the mDNS
transport can poll; BLE drivers declare their own decode protocol beside their code.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

from gateway.consent.catalogue import CATEGORIES
from gateway.devices.model import DeviceInfo
from gateway.model import Value


@dataclass(frozen=True, slots=True)
class Announcement:
    """What a DNS-SD announcement says about a device (no personal data leaves the registry).

    ``stable_id`` is the vendor id the device's pseudonym derives from; ``model`` and
    ``firmware`` are the advertised application and firmware version.
    """

    stable_id: str
    model: str
    firmware: str
    generation: int


@dataclass(frozen=True, slots=True)
class StatusReport:
    """A decoded status answer: the reading's fields plus upgrade info for the registry."""

    fields: Mapping[str, Value]
    update_available: bool
    update_version: str | None


@dataclass(frozen=True, slots=True)
class Match:
    """What a driver recognises, as data; an empty tuple never matches.

    ``mdns_types`` are fully qualified DNS-SD service types (RFC 6763 s7), e.g.
    ``"_shelly._tcp.local."``; ``ble_service_uuids`` are lowercase 128-bit UUID strings of
    service data; ``ble_company_ids`` are Bluetooth SIG company identifiers of manufacturer
    data; ``ble_local_names`` are ``fnmatch`` patterns over the advertised local name.
    """

    mdns_types: tuple[str, ...] = ()
    ble_service_uuids: tuple[str, ...] = ()
    ble_company_ids: tuple[int, ...] = ()
    ble_local_names: tuple[str, ...] = ()

    def matches_mdns(self, service_type: str) -> bool:
        """Return whether ``service_type`` is one of ours (DNS names compare case-insensitively)."""
        wanted = service_type.lower()
        return any(t.lower() == wanted for t in self.mdns_types)

    def matches_ble(
        self,
        service_uuids: frozenset[str] = frozenset(),
        company_ids: frozenset[int] = frozenset(),
        local_name: str | None = None,
    ) -> bool:
        """Return whether an advertisement with these service UUIDs, company ids or name is ours."""
        if any(u.lower() in service_uuids for u in self.ble_service_uuids):
            return True
        if any(c in company_ids for c in self.ble_company_ids):
            return True
        return local_name is not None and any(
            fnmatch.fnmatchcase(local_name, p) for p in self.ble_local_names
        )


@runtime_checkable
class Driver(Protocol):
    """Every driver: a unique ``name``, what it ``match``es, and its field catalogue."""

    @property
    def name(self) -> str:
        """Return the driver's unique name, e.g. ``"shelly"`` (also ``Reading.driver``)."""
        ...

    @property
    def match(self) -> Match:
        """Return what the driver recognises."""
        ...

    @property
    def fields(self) -> Mapping[str, str]:
        """Return the field -> data category map (``FIELDS``) of everything it emits."""
        ...


@runtime_checkable
class HttpRpcDriver(Driver, Protocol):
    """A driver for devices found over mDNS and read over HTTP (pure parsing, no I/O)."""

    @property
    def info_path(self) -> str:
        """Return the HTTP path that answers the device info, e.g. ``/rpc/Shelly.GetDeviceInfo``."""
        ...

    @property
    def status_path(self) -> str:
        """Return the HTTP path that answers the telemetry status."""
        ...

    def parse_announcement(
        self, instance: str, properties: Mapping[bytes, bytes | None]
    ) -> Announcement:
        """Parse an instance name and TXT record; raise DeviceError(bad_txt|missing_property)."""
        ...

    def parse_info(self, body: Any, expected_id: str | None = None) -> DeviceInfo:
        """Parse the decoded JSON info answer; raise DeviceError(missing_property|bad_shape)."""
        ...

    def parse_status(self, body: Any) -> StatusReport:
        """Parse the decoded JSON status answer; raise DeviceError(bad_shape)."""
        ...


@dataclass(frozen=True, slots=True)
class DriverSpec:
    """A driver that is only a declaration (matching and fields), e.g. the simulator."""

    name: str
    match: Match
    fields: Mapping[str, str]


def check_driver(driver: object) -> list[str]:
    """Return what is wrong with ``driver`` as a Driver (empty when it is usable)."""
    name: object = getattr(driver, "name", None)
    match: object = getattr(driver, "match", None)
    fields: object = getattr(driver, "fields", None)
    problems: list[str] = []
    if not isinstance(name, str) or not name:
        problems.append("name is not a non-empty string")
    if not isinstance(match, Match):
        problems.append("match is not a drivers.base.Match")
    if not isinstance(fields, Mapping):
        return [*problems, "fields is not a mapping"]
    for field, category in fields.items():
        if not isinstance(field, str) or not field:
            problems.append(f"field {field!r} is not a non-empty string")
        if category not in CATEGORIES:
            problems.append(f"field {field!r} has unknown category {category!r}")
    return problems
