"""Persistence of paired devices in the hub database (the ``devices`` table).

Rows are keyed by the pseudonym. The personal columns (stable id, address, MAC, name) are
encrypted at rest with a per-device data key wrapped by the hub's storage key (docs/storage.md,
see gateway.secure.atrest); deleting a device deletes its key too (a crypto-shred). The
storage key is found beside the database file (or in the systemd credential), so every
store of the same state directory uses the same key without being handed it. Rows written
in clear by older versions are read once and rewritten sealed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import sqlite3
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Final

import aiosqlite

from gateway.errors import StorageError
from gateway.secure.atrest import KEY_LENGTH, StorageCipher, load_storage_key
from gateway.storage.db import transaction

logger = logging.getLogger(__name__)

_SCHEMA: Final = """
CREATE TABLE IF NOT EXISTS devices (
    id TEXT PRIMARY KEY,
    transport TEXT NOT NULL,
    driver TEXT NOT NULL,
    stable_id BLOB NOT NULL,
    address BLOB,
    mac BLOB,
    name BLOB,
    model TEXT,
    firmware TEXT,
    update_available INTEGER NOT NULL DEFAULT 0,
    update_version TEXT,
    activated_at REAL NOT NULL,
    last_seen REAL
)
"""
_KEYS_SCHEMA: Final = """
CREATE TABLE IF NOT EXISTS device_keys (
    id TEXT PRIMARY KEY,    -- the device pseudonym
    wrapped BLOB NOT NULL   -- its data key, sealed with the storage key
)
"""
_PERSONAL: Final = ("stable_id", "address", "mac", "name")
_COLUMNS: Final = (
    "id, transport, driver, stable_id, address, mac, name, model, firmware, update_available, "
    "update_version, activated_at, last_seen"
)


@dataclass(frozen=True, slots=True)
class StoredDevice:
    """One paired device as persisted."""

    id: str
    transport: str
    driver: str
    stable_id: str
    address: str | None
    mac: str | None
    name: str | None
    model: str | None
    firmware: str | None
    update_available: bool
    update_version: str | None
    activated_at: float
    last_seen: float | None


class DeviceStore:
    """Reads and writes the ``devices`` table on a shared aiosqlite connection."""

    __slots__ = ("_cipher", "_db", "_keys")

    def __init__(self, db: aiosqlite.Connection, cipher: StorageCipher | None = None) -> None:
        self._db = db
        self._cipher = cipher
        self._keys: dict[str, bytes] = {}  # pseudonym -> data key

    async def create(self) -> None:
        """Create the tables if they do not exist yet and load the storage key."""
        try:
            if self._cipher is None:
                self._cipher = StorageCipher(await self._storage_key())
            async with transaction(self._db):
                await self._db.execute(_SCHEMA)
                await self._db.execute(_KEYS_SCHEMA)
        except sqlite3.Error as exc:
            raise StorageError(f"cannot create the devices table: {exc}") from exc

    async def _storage_key(self) -> bytes:
        async with self._db.execute("PRAGMA database_list") as cursor:
            files = {str(row[1]): str(row[2]) for row in await cursor.fetchall()}
        path = files.get("main", "")
        if not path:  # an in-memory database: its rows die with the process, and so does the key
            return os.urandom(KEY_LENGTH)
        return load_storage_key(Path(path).parent)

    async def load(self) -> list[StoredDevice]:
        """Return every paired device, ordered by pseudonym."""
        try:
            async with self._db.execute(
                f"SELECT {_COLUMNS}, k.wrapped FROM devices d "  # noqa: S608 - constant column list
                "LEFT JOIN device_keys k USING (id) ORDER BY id"
            ) as cur:
                rows = await cur.fetchall()
        except sqlite3.Error as exc:
            raise StorageError(f"cannot read the devices table: {exc}") from exc
        devices: list[StoredDevice] = []
        legacy: list[StoredDevice] = []
        for row in rows:
            if row[13] is None:  # written in clear by an older version
                device = _device(row, lambda v: None if v is None else bytes(v).decode())
                legacy.append(device)
            else:
                key = self._keys[row[0]] = self._sealer().unwrap(row[0], bytes(row[13]))
                device = _opened(self._sealer(), key, row)
            devices.append(device)
        for device in legacy:
            await self.save(device)
        return devices

    async def save(self, device: StoredDevice) -> None:
        """Insert or replace ``device`` (personal columns sealed) and commit."""
        cipher = self._sealer()
        try:
            async with transaction(self._db):
                key = await self._device_key(cipher, device.id)
                sealed = {c: cipher.seal(key, device.id, c, getattr(device, c)) for c in _PERSONAL}
                await self._db.execute(
                    f"INSERT OR REPLACE INTO devices ({_COLUMNS}) "  # noqa: S608 - constant column list
                    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (
                        device.id,
                        device.transport,
                        device.driver,
                        sealed["stable_id"],
                        sealed["address"],
                        sealed["mac"],
                        sealed["name"],
                        device.model,
                        device.firmware,
                        int(device.update_available),
                        device.update_version,
                        device.activated_at,
                        device.last_seen,
                    ),
                )
        except sqlite3.Error as exc:
            raise StorageError(f"cannot store a device: {exc}") from exc

    async def _device_key(self, cipher: StorageCipher, device_id: str) -> bytes:
        key = self._keys.get(device_id)
        if key is None:
            key, wrapped = cipher.new_device_key(device_id)
            await self._db.execute(
                "INSERT OR REPLACE INTO device_keys (id, wrapped) VALUES (?, ?)",
                (device_id, wrapped),
            )
            self._keys[device_id] = key
        return key

    async def delete(self, device_id: str) -> None:
        """Delete the row of ``device_id`` (if any) and its data key, and commit."""
        try:
            async with transaction(self._db):
                await self._db.execute("DELETE FROM devices WHERE id = ?", (device_id,))
                await self._db.execute("DELETE FROM device_keys WHERE id = ?", (device_id,))
            self._keys.pop(device_id, None)
            # Best effort: move the deletion out of the WAL so no page image there still holds
            # the wrapped key; SQLite also checkpoints on its own later if this is busy.
            async with transaction(self._db):
                with contextlib.suppress(sqlite3.Error):
                    await self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        except sqlite3.Error as exc:
            raise StorageError(f"cannot erase a device: {exc}") from exc

    def _sealer(self) -> StorageCipher:
        if self._cipher is None:
            raise StorageError("the devices store is used before create()")
        return self._cipher


def _device(row: Any, text: Callable[[Any], str | None]) -> StoredDevice:
    return StoredDevice(
        id=row[0],
        transport=row[1],
        driver=row[2],
        stable_id=text(row[3]) or "",
        address=text(row[4]),
        mac=text(row[5]),
        name=text(row[6]),
        model=row[7],
        firmware=row[8],
        update_available=bool(row[9]),
        update_version=row[10],
        activated_at=float(row[11]),
        last_seen=None if row[12] is None else float(row[12]),
    )


def _opened(cipher: StorageCipher, key: bytes, row: Any) -> StoredDevice:
    device_id = str(row[0])
    clear = {
        c: cipher.open(key, device_id, c, None if v is None else bytes(v))
        for c, v in zip(_PERSONAL, row[3:7], strict=True)
    }
    return replace(
        _device(row, lambda _: None),
        stable_id=clear["stable_id"] or "",
        address=clear["address"],
        mac=clear["mac"],
        name=clear["name"],
    )


class Writer:
    """Coalesces writes of changed paired devices: ``mark`` is sync, ``run`` writes them.

    ``current(device_id)`` returns the row to write now, or None when the device is not (or
    no longer) paired: marking any device is harmless. Status flaps cost no write each; only
    the latest state is saved.
    """

    __slots__ = ("_current", "_dirty", "_event", "_store")

    def __init__(self, store: DeviceStore, current: Callable[[str], StoredDevice | None]) -> None:
        self._store = store
        self._current = current
        self._dirty: set[str] = set()
        self._event = asyncio.Event()

    def mark(self, device_id: str) -> None:
        """Schedule a write of ``device_id``'s current state."""
        self._dirty.add(device_id)
        self._event.set()

    def discard(self, device_id: str) -> None:
        """Forget a pending write of ``device_id`` (it was erased)."""
        self._dirty.discard(device_id)

    async def flush(self) -> None:
        """Write every pending device now; a storage failure is logged, not raised."""
        batch = [row for i in sorted(self._dirty) if (row := self._current(i)) is not None]
        self._dirty.clear()
        for row in batch:
            try:
                await self._store.save(row)
            except StorageError as exc:
                logger.error(  # noqa: TRY400 - the detail says it all, a traceback is noise
                    "device state not saved", extra={"device": row.id, "detail": str(exc)}
                )

    async def run(self) -> None:
        """Write pending devices whenever some are marked, until cancelled."""
        while True:
            await self._event.wait()
            self._event.clear()
            await self.flush()
