"""HomeKit pairing keys (the controller's long-term Ed25519 key pair and the accessory's public
key, HAP R2 s5.6), sealed at rest like BLE bind keys: each row with a data key of its own,
wrapped by the hub's storage key (gateway.secure.atrest). Never logged, never returned.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Final, Protocol

import aiosqlite

from gateway.secure.atrest import StorageCipher
from gateway.storage.db import transaction

SCHEMA: Final = """
CREATE TABLE IF NOT EXISTS homekit_pairings (
    device TEXT PRIMARY KEY,   -- pseudonym
    wrapped BLOB NOT NULL,     -- the row's data key, wrapped by the storage key
    sealed BLOB NOT NULL       -- the pairing data (JSON), sealed with that data key
);
"""
COLUMN: Final = "homekit_pairing"

PairingData = Mapping[str, object]


class PairingStore(Protocol):
    """Where HomeKit pairing data lives between restarts."""

    async def load(self) -> dict[str, dict[str, object]]:
        """Return device pseudonym -> pairing data of every stored pairing."""
        ...

    async def save(self, device: str, data: PairingData) -> None:
        """Store ``data`` for ``device``, replacing any previous pairing."""
        ...

    async def forget(self, device: str) -> bool:
        """Delete ``device``'s pairing (its data key included); return whether there was one."""
        ...


class SealedPairings:
    """The PairingStore of the daemon: rows sealed in SQLite (``load`` creates the table)."""

    def __init__(self, db: aiosqlite.Connection, cipher: StorageCipher) -> None:
        self._db = db
        self._cipher = cipher

    async def load(self) -> dict[str, dict[str, object]]:
        """Create the table if needed and open every stored pairing."""
        async with transaction(self._db):
            await self._db.executescript(SCHEMA)
        async with self._db.execute("SELECT device, wrapped, sealed FROM homekit_pairings") as cur:
            rows = list(await cur.fetchall())
        found: dict[str, dict[str, object]] = {}
        for device, wrapped, sealed in rows:
            data_key = self._cipher.unwrap(device, bytes(wrapped))
            text = StorageCipher.open(data_key, device, COLUMN, bytes(sealed))
            if text is not None:
                found[device] = dict(json.loads(text))
        return found

    async def save(self, device: str, data: PairingData) -> None:
        """Seal and store ``data`` for ``device`` (a pseudonym)."""
        data_key, wrapped = self._cipher.new_device_key(device)
        sealed = StorageCipher.seal(data_key, device, COLUMN, json.dumps(dict(data)))
        async with transaction(self._db):
            await self._db.execute(
                "INSERT OR REPLACE INTO homekit_pairings (device, wrapped, sealed) "
                "VALUES (?, ?, ?)",
                (device, wrapped, sealed),
            )

    async def forget(self, device: str) -> bool:
        """Delete ``device``'s row; return whether there was one."""
        async with transaction(self._db):
            cursor = await self._db.execute(
                "DELETE FROM homekit_pairings WHERE device = ?", (device,)
            )
        return bool(cursor.rowcount)


class MemoryPairings:
    """A PairingStore that keeps nothing across restarts (tests, the demo)."""

    def __init__(self) -> None:
        self.rows: dict[str, dict[str, object]] = {}

    async def load(self) -> dict[str, dict[str, object]]:
        """Return a copy of the pairings kept."""
        return {k: dict(v) for k, v in self.rows.items()}

    async def save(self, device: str, data: PairingData) -> None:
        """Keep ``data`` for ``device``."""
        self.rows[device] = dict(data)

    async def forget(self, device: str) -> bool:
        """Drop ``device``'s pairing; return whether there was one."""
        return self.rows.pop(device, None) is not None
