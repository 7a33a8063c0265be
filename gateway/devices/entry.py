"""The registry's mutable record of one device (private to gateway.devices)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Final

from gateway.devices.model import Candidate, DeviceInfo, DeviceView, Sighting
from gateway.devices.store import StoredDevice

# A candidate unseen for this many offline periods is forgotten, even if it was errored.
FORGET_FACTOR: Final = 2.0


class Entry:
    """One candidate or paired device as the registry tracks it."""

    __slots__ = (
        "activated_at",
        "address",
        "driver",
        "error",
        "firmware",
        "id",
        "last_seen",
        "mac",
        "model",
        "mono_seen",
        "name",
        "online",
        "paired",
        "retry_at",
        "stable_id",
        "transport",
        "update_available",
        "update_version",
        "user_named",
    )

    def __init__(self, device_id: str, transport: str, driver: str, stable_id: str) -> None:
        self.id = device_id
        self.transport = transport
        self.driver = driver
        self.stable_id = stable_id
        self.address = ""
        self.name: str | None = None
        self.user_named = False
        self.model: str | None = None
        self.firmware: str | None = None
        self.mac: str | None = None
        self.update_available = False
        self.update_version: str | None = None
        self.paired = False
        self.online = False
        self.error: str | None = None
        self.last_seen: float | None = None
        self.mono_seen = 0.0
        self.activated_at: float | None = None
        self.retry_at = 0.0

    @classmethod
    def from_sighting(cls, device_id: str, s: Sighting, now: float, mono: float) -> Entry:
        """Return a new, online candidate built from its first sighting."""
        entry = cls(device_id, s.transport, s.driver, s.stable_id)
        entry.address, entry.name, entry.model, entry.firmware = (
            s.address,
            s.name,
            s.model,
            s.firmware,
        )
        entry.online, entry.last_seen, entry.mono_seen = True, now, mono
        return entry

    @classmethod
    def from_stored(cls, stored: StoredDevice) -> Entry:
        """Return a paired device loaded from the database (offline until seen)."""
        entry = cls(stored.id, stored.transport, stored.driver, stored.stable_id)
        entry.address = stored.address or ""
        entry.mac, entry.name, entry.model = stored.mac, stored.name, stored.model
        entry.firmware = stored.firmware
        entry.update_available, entry.update_version = (
            stored.update_available,
            stored.update_version,
        )
        entry.paired, entry.user_named = True, stored.name is not None
        entry.activated_at, entry.last_seen = stored.activated_at, stored.last_seen
        return entry

    def apply_sighting(self, s: Sighting) -> str:
        """Take what a sighting advertises; return the changed field names (comma separated)."""
        changed: list[str] = []
        if s.firmware is not None and s.firmware != self.firmware:
            self.firmware = s.firmware
            changed.append("firmware")
        if not self.paired:
            # A paired device's model and name come from pairing and the user, not adverts.
            if s.model is not None and s.model != self.model:
                self.model = s.model
                changed.append("model")
            if s.name is not None and s.name != self.name and not self.user_named:
                self.name = s.name
                changed.append("name")
        return ",".join(changed)

    def apply_update(
        self, firmware: str | None, update_available: bool | None, update_version: str | None
    ) -> str:
        """Take changed firmware / upgrade info; return the changed field names."""
        changed: list[str] = []
        if firmware is not None and firmware != self.firmware:
            self.firmware = firmware
            changed.append("firmware")
        if update_available is not None and (
            update_available != self.update_available or update_version != self.update_version
        ):
            self.update_available, self.update_version = update_available, update_version
            changed.append("update")
        return ",".join(changed)

    def pair(self, info: DeviceInfo, now: float, mono: float) -> None:
        """Become paired with ``info`` read from the device, which just answered (online)."""
        self.paired = True
        self.model, self.firmware, self.mac = info.model, info.firmware, info.mac
        if not self.user_named:
            self.name = info.name
        self.update_available, self.update_version = info.update_available, info.update_version
        self.activated_at = now
        self.online, self.error, self.last_seen, self.mono_seen = True, None, now, mono

    def candidate(self) -> Candidate:
        """Return what this device's transport Pairer needs to read its info."""
        return Candidate(
            id=self.id, transport=self.transport, driver=self.driver, stable_id=self.stable_id,
            address=self.address, model=self.model, firmware=self.firmware,
        )  # fmt: skip

    def stored(self) -> StoredDevice:
        """Return the row persisted for this (paired) device."""
        return StoredDevice(
            id=self.id,
            transport=self.transport,
            driver=self.driver,
            stable_id=self.stable_id,
            address=self.address or None,
            mac=self.mac,
            name=self.name,
            model=self.model,
            firmware=self.firmware,
            update_available=self.update_available,
            update_version=self.update_version,
            activated_at=self.activated_at or 0.0,
            last_seen=self.last_seen,
        )

    def view(self) -> DeviceView:
        """Return an immutable snapshot."""
        return DeviceView(
            id=self.id,
            transport=self.transport,
            driver=self.driver,
            paired=self.paired,
            name=self.name,
            model=self.model,
            firmware=self.firmware,
            update_available=self.update_available,
            update_version=self.update_version,
            online=self.online,
            last_seen=self.last_seen,
            activated_at=self.activated_at,
            error=self.error,
            mac=self.mac,
        )


def stale(
    entries: Iterable[Entry], offline_after: Mapping[str, float], mono: float
) -> tuple[list[Entry], list[Entry]]:
    """Return (online entries unseen for their transport's limit, candidates to forget)."""
    silent: list[Entry] = []
    forgotten: list[Entry] = []
    for entry in entries:
        limit = offline_after.get(entry.transport)
        if limit is None:
            continue
        age = mono - entry.mono_seen
        if entry.online and age > limit:
            silent.append(entry)
        elif not entry.paired and age > limit * FORGET_FACTOR:
            forgotten.append(entry)
    return silent, forgotten
