"""Which driver handles an advertisement: declared as data (``drivers.base.Match``), decided
by a pure function, cached by the advertisement's shape.

The first driver in registry order whose ``Match`` accepts an advertisement's service-data
UUIDs, company ids or local name wins. The same declarations become the BlueZ
``AdvertisementMonitor1`` or-patterns of passive scanning.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Final, Generic, TypeVar

from drivers.base import Driver
from drivers.ble.advert import Advert, short_uuid

# Generic Access Profile AD types (Bluetooth Assigned Numbers 2.3, "Common Data Types").
AD_SHORTENED_LOCAL_NAME: Final = 0x08
AD_COMPLETE_LOCAL_NAME: Final = 0x09
AD_SERVICE_DATA_UUID16: Final = 0x16
AD_MANUFACTURER_DATA: Final = 0xFF
_CACHE_LIMIT: Final = 4096

AdPattern = tuple[int, int, bytes]
"""A BlueZ or-pattern: (start position, AD type, content), see org.bluez.AdvertisementMonitor."""

D = TypeVar("D", bound=Driver)


class Matcher(Generic[D]):
    """Maps advertisements to drivers; results are cached by the advertisement's shape.

    The shape (local name, service-data UUIDs, company ids) is all a ``Match`` looks at, so the
    cache is exact; it holds at most a few thousand shapes.
    """

    __slots__ = ("_cache", "_drivers")

    def __init__(self, drivers: Sequence[D]) -> None:
        names = [d.name for d in drivers]
        if len(set(names)) != len(names):
            raise ValueError(f"duplicate driver names in {names}")
        self._drivers = tuple(drivers)
        self._cache: dict[tuple[object, ...], D | None] = {}

    def match(self, advert: Advert) -> D | None:
        """Return the first driver whose ``Match`` accepts ``advert``, or None."""
        shape = (advert.name, tuple(advert.service_data), tuple(advert.manufacturer_data))
        try:
            return self._cache[shape]
        except KeyError:
            pass
        uuids = frozenset(advert.service_data)
        companies = frozenset(advert.manufacturer_data)
        found = next(
            (d for d in self._drivers if d.match.matches_ble(uuids, companies, advert.name)), None
        )
        if len(self._cache) >= _CACHE_LIMIT:
            self._cache.clear()
        self._cache[shape] = found
        return found

    def or_patterns(self) -> list[AdPattern] | None:
        """Return BlueZ or-patterns admitting every advertisement some driver matches.

        None when a declaration cannot be expressed as a pattern (a 128-bit service-data UUID,
        a name pattern starting with a wildcard): passive scanning would miss those devices,
        so the caller scans actively.
        """
        patterns: list[AdPattern] = []
        for driver in self._drivers:
            match = driver.match
            for uuid in match.ble_service_uuids:
                short = short_uuid(uuid.lower())
                if short is None:
                    return None
                # Core Specification Supplement, Part A, 1.11: service data starts with the
                # UUID, little endian.
                patterns.append((0, AD_SERVICE_DATA_UUID16, short.to_bytes(2, "little")))
            for company in match.ble_company_ids:
                # Supplement Part A, 1.4: manufacturer data starts with the company id (LE).
                patterns.append((0, AD_MANUFACTURER_DATA, company.to_bytes(2, "little")))
            for name in match.ble_local_names:
                prefix = re.split(r"[*?\[]", name, maxsplit=1)[0].encode()
                if not prefix:
                    return None
                patterns.append((0, AD_COMPLETE_LOCAL_NAME, prefix))
                patterns.append((0, AD_SHORTENED_LOCAL_NAME, prefix))
        return list(dict.fromkeys(patterns))
