"""BLE bind keys (BTHome v2 encryption keys), encrypted at rest, held in memory for decoding.

Each key is sealed with a data key of its own, wrapped by the hub's storage key
(gateway.secure.atrest), so forgetting a device deletes the only copy of what opens its key.
Keys are looked up by the device's pseudonym; no key is ever logged or returned.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any, Final

import aiosqlite

from gateway.audit.log import AuditLog
from gateway.commands.router import Router, reject_unknown, require
from gateway.errors import CommandError
from gateway.secure.atrest import StorageCipher
from gateway.storage.db import transaction

SCHEMA: Final = """
CREATE TABLE IF NOT EXISTS bind_keys (
    device TEXT PRIMARY KEY,   -- pseudonym
    wrapped BLOB NOT NULL,     -- the entry's data key, wrapped by the storage key
    sealed BLOB NOT NULL       -- the bind key, sealed with that data key
);
"""
COLUMN: Final = "bind_key"
_KEY_HEX: Final = re.compile(r"^[0-9a-fA-F]{32}$")  # AES-128-CCM, BTHome v2 section "Encryption"
_PSEUDONYM: Final = re.compile(r"^[0-9a-f]{16}$")


class BindKeys:
    """The bind key store the BLE transport reads (``bind_key``) and commands write."""

    def __init__(
        self, db: aiosqlite.Connection, cipher: StorageCipher, pseudonym: Callable[[str], str]
    ) -> None:
        self._db = db
        self._cipher = cipher
        self._pseudonym = pseudonym
        self._keys: dict[str, bytes] = {}

    async def load(self) -> None:
        """Create the table if needed and open every stored key into memory."""
        async with transaction(self._db):
            await self._db.executescript(SCHEMA)
        async with self._db.execute("SELECT device, wrapped, sealed FROM bind_keys") as cursor:
            rows = list(await cursor.fetchall())
        for device, wrapped, sealed in rows:
            data_key = self._cipher.unwrap(device, bytes(wrapped))
            text = StorageCipher.open(data_key, device, COLUMN, bytes(sealed))
            if text is not None:
                self._keys[device] = bytes.fromhex(text)

    def bind_key(self, stable_id: str) -> bytes | None:
        """Return the bind key of the device with ``stable_id``, if one was set."""
        return self._keys.get(self._pseudonym(stable_id)) if self._keys else None

    async def set(self, device: str, key: bytes) -> None:
        """Store ``key`` for ``device`` (a pseudonym), replacing any previous one."""
        data_key, wrapped = self._cipher.new_device_key(device)
        sealed = StorageCipher.seal(data_key, device, COLUMN, key.hex())
        async with transaction(self._db):
            await self._db.execute(
                "INSERT OR REPLACE INTO bind_keys (device, wrapped, sealed) VALUES (?, ?, ?)",
                (device, wrapped, sealed),
            )
        self._keys[device] = key

    async def forget(self, device: str) -> bool:
        """Delete ``device``'s key (data key included); return whether there was one."""
        async with transaction(self._db):
            await self._db.execute("DELETE FROM bind_keys WHERE device = ?", (device,))
        return self._keys.pop(device, None) is not None


def register_bind_key_command(
    router: Router,
    keys: BindKeys,
    known_ble_device: Callable[[str], bool],
    changed: Callable[[str], None],
    audit: AuditLog,
) -> None:
    """Register ``bind_key`` {"device", "key": 32 hex digits | null} on ``router``."""

    async def bind_key(params: Mapping[str, Any]) -> Any:
        reject_unknown(params, frozenset({"device", "key"}))
        device = require(params, "device", str)
        if not _PSEUDONYM.match(device) or not known_ble_device(device):
            raise CommandError("not_found", "no such BLE device; use an id from `devices`")
        if "key" not in params:
            raise CommandError("invalid_request", "missing parameter 'key' (32 hex digits or null)")
        key = params["key"]
        if key is None:
            removed = await keys.forget(device)
            changed(device)
            await audit.append("device.bind_key", device=device, action="cleared")
            return {"device": device, "bind_key": "cleared" if removed else "none"}
        if not isinstance(key, str) or not _KEY_HEX.match(key):
            raise CommandError("invalid_request", "parameter 'key' must be 32 hex digits")
        await keys.set(device, bytes.fromhex(key))
        changed(device)
        await audit.append("device.bind_key", device=device, action="set")
        return {"device": device, "bind_key": "set"}

    router.add("bind_key", bind_key)
