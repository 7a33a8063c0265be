"""Long-lived keys: the hub's Ed25519 identity and the recipient's X25519 key pair.

- The hub identity key signs epoch announcements. It is created on first start at
  ``<state_dir>/hub.key`` (the raw 32-byte Ed25519 private key, mode 0600) and never logged:
  operators share only its public half (``consentgate identity``) with consumers.
- The recipient key pair belongs to the consumer side. ``consentgate keygen --out DIR`` writes
  ``DIR/recipient.key`` (raw 32-byte X25519 private key, mode 0600) and ``DIR/recipient.pub``
  (raw 32-byte public key) that the hub's configuration names as ``recipient_public_key``.
- ``rkid`` = sha256(raw recipient public key)[:8] tells a consumer whether an announcement
  was wrapped for its key.

Loaders raise ``ConfigError`` naming the file and what was expected.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey

from gateway.errors import ConfigError, StorageError
from gateway.secretfile import read_or_create, write_secret

HUB_KEY_FILE: Final = "hub.key"
RECIPIENT_KEY_FILE: Final = "recipient.key"
RECIPIENT_PUB_FILE: Final = "recipient.pub"
RAW_KEY_LENGTH: Final = 32


@dataclass(frozen=True, slots=True)
class RecipientFiles:
    """Where ``generate_recipient`` wrote a key pair, and the pair's recipient key id."""

    private_key: Path
    public_key: Path
    rkid: bytes


def raw_public(key: Ed25519PublicKey | X25519PublicKey) -> bytes:
    """Return the raw 32-byte encoding of a public key."""
    return key.public_bytes_raw()


def recipient_kid(public_key: X25519PublicKey) -> bytes:
    """Return the recipient key id: the first 8 bytes of sha256(raw public key)."""
    return hashlib.sha256(public_key.public_bytes_raw()).digest()[:8]


def hub_signing_key(state_dir: Path) -> Ed25519PrivateKey:
    """Return the hub's identity key from ``state_dir``, creating it (mode 0600) if absent."""
    path = state_dir / HUB_KEY_FILE
    raw = read_or_create(path, lambda: Ed25519PrivateKey.generate().private_bytes_raw())
    if len(raw) != RAW_KEY_LENGTH:
        raise ConfigError(
            str(path),
            f"holds {len(raw)} bytes, not a raw 32-byte Ed25519 key; restore it from a backup "
            "(removing it gives the hub a new identity that consumers must trust again)",
        )
    return Ed25519PrivateKey.from_private_bytes(raw)


def generate_recipient(out_dir: Path, *, overwrite: bool = False) -> RecipientFiles:
    """Write a new X25519 key pair to ``out_dir``; refuse to replace one unless ``overwrite``."""
    private_path, public_path = out_dir / RECIPIENT_KEY_FILE, out_dir / RECIPIENT_PUB_FILE
    if not overwrite and (private_path.exists() or public_path.exists()):
        raise ConfigError(
            str(private_path), "a recipient key already exists here; choose another directory"
        )
    key = X25519PrivateKey.generate()
    public = key.public_key()
    try:
        write_secret(private_path, key.private_bytes_raw())
        tmp = public_path.with_name(public_path.name + ".tmp")
        tmp.write_bytes(public.public_bytes_raw())
        os.chmod(tmp, 0o644)
        os.replace(tmp, public_path)
    except OSError as exc:
        raise StorageError(f"cannot write the recipient key to {out_dir}: {exc.strerror}") from exc
    return RecipientFiles(private_path, public_path, recipient_kid(public))


def load_recipient_private(path: Path) -> X25519PrivateKey:
    """Return the X25519 private key in ``path`` (raw 32 bytes); ConfigError if unusable."""
    return X25519PrivateKey.from_private_bytes(_read_raw(path, "X25519 private key"))


def load_recipient_public(path: Path) -> X25519PublicKey:
    """Return the X25519 public key in ``path`` (raw 32 bytes); ConfigError if unusable."""
    return X25519PublicKey.from_public_bytes(_read_raw(path, "X25519 public key"))


def parse_hub_public(text: str, *, where: str) -> Ed25519PublicKey:
    """Return the Ed25519 public key written as 64 hex digits in ``text``; ConfigError if not."""
    try:
        raw = bytes.fromhex(text.strip())
    except ValueError:
        raw = b""
    if len(raw) != RAW_KEY_LENGTH:
        raise ConfigError(where, "is not a hub public key (64 hex digits, from `identity`)")
    return Ed25519PublicKey.from_public_bytes(raw)


def _read_raw(path: Path, what: str) -> bytes:
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise ConfigError(str(path), f"does not exist; expected a raw 32-byte {what}") from None
    except OSError as exc:
        raise ConfigError(str(path), f"cannot be read: {exc.strerror}") from exc
    if len(raw) != RAW_KEY_LENGTH:
        raise ConfigError(
            str(path),
            f"holds {len(raw)} bytes; expected a raw 32-byte {what} (as written by keygen)",
        )
    return raw
