"""WLED LED controllers: discovered over ``_wled._tcp``, read over WLED's JSON API with
python-wled's models (pure parsing; the mDNS transport does the HTTP I/O).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from drivers.base import Announcement, Match, StatusReport
from drivers.lan.listing import Listing, decode_txt
from drivers.wled import json_api, txt
from drivers.wled.json_api import FIELDS, INFO_PATH, STATUS_PATH
from gateway.devices.model import DeviceInfo

NAME: Final = "wled"
MATCH: Final = Match(mdns_types=(txt.SERVICE_TYPE,))


@dataclass(frozen=True, slots=True)
class WledDriver:
    """The WLED driver (an ``HttpRpcDriver`` whose announcements are Listings)."""

    name: str = NAME
    match: Match = MATCH
    fields: Mapping[str, str] = field(default_factory=lambda: FIELDS, repr=False)
    info_path: str = INFO_PATH
    status_path: str = STATUS_PATH

    def parse_listing(
        self, service_type: str, instance: str, properties: Mapping[bytes, bytes | None]
    ) -> Listing:
        """Parse a ``_wled._tcp`` announcement (see drivers.wled.txt)."""
        return txt.parse(instance, decode_txt(properties))

    def parse_announcement(
        self, instance: str, properties: Mapping[bytes, bytes | None]
    ) -> Announcement:
        """Parse a ``_wled._tcp`` announcement as an Announcement (the HttpRpcDriver form)."""
        found = self.parse_listing(txt.SERVICE_TYPE, instance, properties)
        return Announcement(
            stable_id=found.stable_id, model=found.model or "WLED", firmware="", generation=0
        )

    def parse_info(self, body: Any, expected_id: str | None = None) -> DeviceInfo:
        """Parse ``/json/info`` (see drivers.wled.json_api)."""
        return json_api.parse_info(body, expected_id)

    def parse_status(self, body: Any) -> StatusReport:
        """Parse ``/json/si`` (see drivers.wled.json_api)."""
        return json_api.parse_status(body)


DRIVER: Final = WledDriver()

__all__ = ["DRIVER", "FIELDS", "MATCH", "NAME", "WledDriver"]
