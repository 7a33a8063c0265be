"""Encryption at rest of personal columns: a storage key, per-device data keys, AES-256-GCM.

- The storage key (32 bytes) comes from the systemd credential ``consentgate-storage.key``
  (``LoadCredential=``, found in ``$CREDENTIALS_DIRECTORY``) or else from ``storage.key`` in
  the state directory, created with mode 0600 on first start. Either holds the raw 32 bytes
  or 64 hex digits.
- Each device gets its own random data key, stored wrapped by the storage key (AES-256-GCM,
  AAD = context + device pseudonym). Erasing a device deletes its wrapped key with its row:
  any copy of its columns left in free pages or the WAL can no longer be decrypted.
- A column value is sealed as ``0x01 || nonce(12) || AES-256-GCM(data key, value, AAD =
  context + column name + device pseudonym)``: a value cannot be moved to another column or
  another device's row without failing to open.
- Rows are found by the pseudonym (a keyed hash of the stable id), never by a clear value.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Final

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from gateway.errors import ConfigError, StorageError
from gateway.secretfile import read_or_create

CREDENTIAL: Final = "consentgate-storage.key"
KEY_FILE: Final = "storage.key"
KEY_LENGTH: Final = 32
VERSION: Final = b"\x01"
NONCE_LENGTH: Final = 12
_DEK_CONTEXT: Final = b"consentgate-device-key/1\x00"
_COLUMN_CONTEXT: Final = b"consentgate-column/1\x00"


def storage_key_source(state_dir: Path) -> Path:
    """Return the file the storage key is read from: the systemd credential if present."""
    credentials = os.environ.get("CREDENTIALS_DIRECTORY")
    if credentials:
        candidate = Path(credentials) / CREDENTIAL
        if candidate.is_file():
            return candidate
    return state_dir / KEY_FILE


def load_storage_key(state_dir: Path) -> bytes:
    """Return the 32-byte storage key (credential, else state_dir file created 0600)."""
    path = storage_key_source(state_dir)
    raw = read_or_create(path, lambda: os.urandom(KEY_LENGTH))
    return parse_key(raw, str(path))


def parse_key(raw: bytes, where: str) -> bytes:
    """Return a storage key given as raw 32 bytes or 64 hex digits; ConfigError otherwise."""
    if len(raw) == KEY_LENGTH:
        return raw
    text = raw.strip()
    if len(text) == 2 * KEY_LENGTH:
        try:
            return bytes.fromhex(text.decode("ascii"))
        except (UnicodeDecodeError, ValueError):
            pass
    raise ConfigError(where, "is not a storage key: give 32 random bytes or 64 hex digits")


class StorageCipher:
    """Wraps per-device data keys and seals column values (see the module docstring)."""

    __slots__ = ("_wrap",)

    def __init__(self, storage_key: bytes) -> None:
        if len(storage_key) != KEY_LENGTH:
            raise ValueError("the storage key must be 32 bytes")
        self._wrap = AESGCM(storage_key)

    def new_device_key(self, device: str) -> tuple[bytes, bytes]:
        """Return a fresh data key for ``device`` and its wrapped form to store."""
        key = AESGCM.generate_key(bit_length=256)
        return key, _seal(self._wrap, key, _DEK_CONTEXT + device.encode())

    def unwrap(self, device: str, wrapped: bytes) -> bytes:
        """Return the data key of ``device``; StorageError if the storage key does not open it."""
        return _open(self._wrap, wrapped, _DEK_CONTEXT + device.encode(), "a device key")

    @staticmethod
    def seal(key: bytes, device: str, column: str, value: str | None) -> bytes | None:
        """Return ``value`` of ``column`` in ``device``'s row sealed with its data ``key``."""
        if value is None:
            return None
        return _seal(AESGCM(key), value.encode(), _aad(device, column))

    @staticmethod
    def open(key: bytes, device: str, column: str, sealed: bytes | None) -> str | None:
        """Return the clear value of a sealed column; StorageError if it does not open."""
        if sealed is None:
            return None
        return _open(AESGCM(key), bytes(sealed), _aad(device, column), column).decode()


def _aad(device: str, column: str) -> bytes:
    return _COLUMN_CONTEXT + column.encode() + b"\x00" + device.encode()


def _seal(aead: AESGCM, plaintext: bytes, aad: bytes) -> bytes:
    nonce = os.urandom(NONCE_LENGTH)
    return VERSION + nonce + aead.encrypt(nonce, plaintext, aad)


def _open(aead: AESGCM, sealed: bytes, aad: bytes, what: str) -> bytes:
    if not sealed.startswith(VERSION) or len(sealed) < 1 + NONCE_LENGTH + 16:
        raise StorageError(f"{what} in the database is not sealed (damaged row)")
    try:
        return aead.decrypt(sealed[1 : 1 + NONCE_LENGTH], sealed[1 + NONCE_LENGTH :], aad)
    except InvalidTag:
        raise StorageError(
            f"{what} in the database does not open with this hub's storage key; restore the "
            "key (credential consentgate-storage.key or state_dir/storage.key) from a backup"
        ) from None
