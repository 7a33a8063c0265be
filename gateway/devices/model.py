"""Data exchanged between the device registry, the transports and their pairers.

Raw identifiers (``stable_id``, ``address``, ``mac``) travel only between a transport and the
registry; everything that leaves the hub names a device by its pseudonym (``id``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final, Protocol

MDNS: Final = "mdns"
BLE: Final = "ble"
TRANSPORTS: Final = (MDNS, BLE)

# Kinds of DeviceEvent, in the order a device usually meets them.
CANDIDATE: Final = "candidate"  # first seen, not paired
PAIRED: Final = "paired"
ONLINE: Final = "online"
OFFLINE: Final = "offline"  # includes errored (the event's ``error`` says why)
UPDATED: Final = "updated"  # stored info changed: firmware, upgrade info, name
UNPAIRED: Final = "unpaired"  # collection ended, stored data erased
LOST: Final = "lost"  # a candidate went away and was forgotten
EVENT_KINDS: Final = (CANDIDATE, PAIRED, ONLINE, OFFLINE, UPDATED, UNPAIRED, LOST)


@dataclass(frozen=True, slots=True)
class Sighting:
    """A transport saw a device alive: an announcement, an advertisement or a good poll.

    ``address`` locates the device for its transport (``host:port`` for mDNS, the BLE address
    for BLE); ``name``, ``model`` and ``firmware`` are what the sighting advertises, if anything.
    """

    transport: str
    stable_id: str
    driver: str
    address: str
    name: str | None = None
    model: str | None = None
    firmware: str | None = None


@dataclass(frozen=True, slots=True)
class Candidate:
    """A discovered, unpaired device as handed to its transport's Pairer."""

    id: str
    transport: str
    driver: str
    stable_id: str
    address: str
    model: str | None
    firmware: str | None


@dataclass(frozen=True, slots=True)
class DeviceInfo:
    """What pairing reads from a device: basic and upgrade info (docs/data-categories.md)."""

    model: str
    firmware: str
    mac: str | None = None
    name: str | None = None
    update_available: bool = False
    update_version: str | None = None


@dataclass(frozen=True, slots=True)
class DeviceView:
    """A snapshot of one device for commands and the retained devices topic."""

    id: str
    transport: str
    driver: str
    paired: bool
    name: str | None
    model: str | None
    firmware: str | None
    update_available: bool
    update_version: str | None
    online: bool
    last_seen: float | None
    activated_at: float | None
    error: str | None
    mac: str | None

    def to_json(self, *, show_mac: bool) -> dict[str, object]:
        """Return the JSON entry of the ``devices`` list; ``mac`` only when ``show_mac``."""
        entry: dict[str, object] = {
            "id": self.id,
            "transport": self.transport,
            "driver": self.driver,
            "paired": self.paired,
            "name": self.name,
            "model": self.model,
            "firmware": self.firmware,
            "update_available": self.update_available,
            "update_version": self.update_version,
            "online": self.online,
            "last_seen": self.last_seen,
            "activated_at": self.activated_at,
            "error": self.error,
        }
        if show_mac and self.mac is not None:
            entry["mac"] = self.mac
        return entry


@dataclass(frozen=True, slots=True)
class DeviceEvent:
    """A change listeners hear about: ``kind`` is one of EVENT_KINDS."""

    kind: str
    device: str
    transport: str
    error: str | None = None


class Pairer(Protocol):
    """Reads a candidate's info over its transport; one per transport, added to the registry."""

    async def read_info(self, candidate: Candidate) -> DeviceInfo:
        """Return the candidate's device info; raise DeviceError(reason) if it cannot be read."""
        ...
