"""HomeKit accessories over IP (HAP): discovered over ``_hap._tcp``, paired with their setup
code, read through characteristic events (aiohomekit in gateway.discovery.homekit does the I/O).

Pure data and parsing: the TXT record (``txt``), the collected characteristics and their
categories (``chars``), the accessory database (``accessories``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Final

from drivers.base import Match
from drivers.homekit import txt
from drivers.homekit.chars import FIELDS
from drivers.lan.listing import Listing, decode_txt

NAME: Final = "homekit"
MATCH: Final = Match(mdns_types=txt.SERVICE_TYPES)


@dataclass(frozen=True, slots=True)
class HomeKitDriver:
    """The HomeKit driver: what it matches, its field catalogue and its TXT parser."""

    name: str = NAME
    match: Match = MATCH
    fields: Mapping[str, str] = field(default_factory=lambda: FIELDS, repr=False)

    def parse_listing(
        self, service_type: str, instance: str, properties: Mapping[bytes, bytes | None]
    ) -> Listing:
        """Parse a ``_hap._tcp``/``_hap._udp`` announcement (see drivers.homekit.txt)."""
        return txt.parse(instance, decode_txt(properties))


DRIVER: Final = HomeKitDriver()

__all__ = ["DRIVER", "FIELDS", "MATCH", "NAME", "HomeKitDriver"]
