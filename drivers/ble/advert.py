"""One received BLE advertisement, as the pure core sees it (no bleak types past the scanner)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Final

# Bluetooth Core Specification v5.4, Vol 3, Part B, 2.5.1: 16-bit UUIDs are aliases inside the
# Bluetooth Base UUID 0000xxxx-0000-1000-8000-00805F9B34FB (bleak reports the 128-bit form).
_BASE_UUID_SUFFIX: Final = "-0000-1000-8000-00805f9b34fb"
_EMPTY_SD: Final[Mapping[str, bytes]] = MappingProxyType({})
_EMPTY_MD: Final[Mapping[int, bytes]] = MappingProxyType({})


def uuid16(short: int) -> str:
    """Return the 128-bit string form (lower case, as bleak reports it) of 16-bit UUID ``short``."""
    return f"0000{short:04x}{_BASE_UUID_SUFFIX}"


def short_uuid(uuid: str) -> int | None:
    """Return the 16-bit alias of ``uuid`` if it lies in the Bluetooth Base UUID, else None."""
    if len(uuid) == 36 and uuid.startswith("0000") and uuid.endswith(_BASE_UUID_SUFFIX):
        try:
            return int(uuid[4:8], 16)
        except ValueError:
            return None
    return None


@dataclass(frozen=True, slots=True)
class Advert:
    """What one advertisement (or BlueZ property update) carried.

    ``address`` is the upper-case MAC as BlueZ reports it: a raw identifier that stays inside the
    BLE layer and the registry (logs and readings carry the pseudonym). ``service_data`` is keyed
    by 128-bit UUID strings, ``manufacturer_data`` by Bluetooth SIG company identifiers.
    """

    address: str
    rssi: int
    name: str | None = None
    service_data: Mapping[str, bytes] = field(default_factory=lambda: _EMPTY_SD)
    manufacturer_data: Mapping[int, bytes] = field(default_factory=lambda: _EMPTY_MD)
    service_uuids: tuple[str, ...] = ()
