"""Shelly Gen2+ Wi-Fi devices: discovered over mDNS (``_shelly._tcp``), read over HTTP RPC.

Implemented from Shelly's public Gen2 API documentation (shelly-api-docs.shelly.cloud/gen2):
"mDNS", "Shelly" service (GetDeviceInfo, GetStatus), and the Switch, Input, PM1, Temperature,
Humidity, DevicePower, Sys and WiFi component status objects. Pure parsing; the mDNS transport
(gateway.discovery.mdns) does the I/O.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from drivers.base import Announcement, Match, StatusReport
from drivers.shelly import rpc, txt
from drivers.shelly.rpc import FIELDS, INFO_PATH, STATUS_PATH
from drivers.shelly.txt import SERVICE_TYPE
from gateway.devices.model import DeviceInfo

NAME: Final = "shelly"
MATCH: Final = Match(mdns_types=(SERVICE_TYPE,))


@dataclass(frozen=True, slots=True)
class ShellyDriver:
    """The Shelly Gen2+ driver (an ``HttpRpcDriver``)."""

    name: str = NAME
    match: Match = MATCH
    fields: Mapping[str, str] = field(default_factory=lambda: FIELDS, repr=False)
    info_path: str = INFO_PATH
    status_path: str = STATUS_PATH

    def parse_announcement(
        self, instance: str, properties: Mapping[bytes, bytes | None]
    ) -> Announcement:
        """Parse a ``_shelly._tcp`` instance name and TXT record (see drivers.shelly.txt)."""
        return txt.parse_announcement(instance, properties)

    def parse_info(self, body: Any, expected_id: str | None = None) -> DeviceInfo:
        """Parse a ``Shelly.GetDeviceInfo`` result (see drivers.shelly.rpc)."""
        return rpc.parse_info(body, expected_id)

    def parse_status(self, body: Any) -> StatusReport:
        """Parse a ``Shelly.GetStatus`` result (see drivers.shelly.rpc)."""
        return rpc.parse_status(body)


DRIVER: Final = ShellyDriver()

__all__ = ["DRIVER", "FIELDS", "MATCH", "NAME", "SERVICE_TYPE", "ShellyDriver"]
