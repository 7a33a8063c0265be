"""The backup archive format: files sealed with AES-256-GCM under a passphrase or a public key.

    MAGIC || u32 header length || header (JSON) || AES-256-GCM(key, nonce, CBOR files, AAD)

AAD is MAGIC and the header, so no header field can be changed without failing to open. The
key comes from either

- a passphrase through scrypt (RFC 7914), memory-hard: N = 2**16, r = 8, p = 1 (64 MiB;
  0.17-0.26 s per derivation measured on a 2-core x86-64 Xeon, several times that on a
  Raspberry Pi, where it was not measured) by default, the parameters and a random 16-byte salt
  in the header; or
- a recipient's X25519 public key (``consentgate keygen`` makes a pair): an ephemeral X25519
  key agreement, then HKDF-SHA256 over the shared secret with both public keys as salt.

The plaintext is a CBOR map ``{"format": 1, "hub_id", "created", "files": {name: bytes}}``.
"""

from __future__ import annotations

import json
import os
import struct
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

import cbor2
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from cryptography.hazmat.primitives.kdf.scrypt import Scrypt

from gateway.errors import ConsentgateError

MAGIC: Final = b"consentgate-backup/1\n"
SCRYPT_N: Final = 2**16
SCRYPT_R: Final = 8
SCRYPT_P: Final = 1
MAX_SCRYPT_N: Final = 2**20  # an archive may not make restore allocate more than 1 GiB
_INFO: Final = b"consentgate-backup/1 x25519"
_MAX_HEADER: Final = 4096


class BackupError(ConsentgateError):
    """A backup cannot be written, opened or restored; the message says why and what to do."""


@dataclass(frozen=True, slots=True)
class Contents:
    """What an archive holds: the hub id, when it was made, and the files by name."""

    hub_id: str
    created: float
    files: Mapping[str, bytes]


def seal_with_passphrase(contents: Contents, passphrase: bytes, n: int = SCRYPT_N) -> bytes:
    """Return ``contents`` sealed under ``passphrase`` (scrypt, then AES-256-GCM)."""
    if not passphrase:
        raise BackupError("the passphrase is empty")
    salt = os.urandom(16)
    header = {"mode": "passphrase", "kdf": "scrypt", "n": n, "r": SCRYPT_R, "p": SCRYPT_P}
    header["salt"] = salt.hex()
    return _seal(contents, _scrypt(passphrase, salt, n, SCRYPT_R, SCRYPT_P), header)


def seal_for_recipient(contents: Contents, recipient: X25519PublicKey) -> bytes:
    """Return ``contents`` sealed for the holder of ``recipient``'s private key."""
    ephemeral = X25519PrivateKey.generate()
    eph_pub = ephemeral.public_key().public_bytes_raw()
    rec_pub = recipient.public_bytes_raw()
    key = _hkdf(ephemeral.exchange(recipient), eph_pub + rec_pub)
    header = {"mode": "recipient", "ephemeral": eph_pub.hex(), "recipient": rec_pub.hex()}
    return _seal(contents, key, header)


def open_archive(
    data: bytes,
    *,
    passphrase: bytes | None = None,
    identity: X25519PrivateKey | None = None,
) -> Contents:
    """Return the contents of an archive; BackupError if it is damaged or the secret is wrong."""
    header, aad, body = _split(data)
    mode = header.get("mode")
    if mode == "passphrase":
        if passphrase is None:
            raise BackupError("this backup is sealed with a passphrase; give --passphrase-file")
        n, r, p = (header.get(k) for k in ("n", "r", "p"))
        if not (
            isinstance(n, int)
            and isinstance(r, int)
            and isinstance(p, int)
            and 2 <= n <= MAX_SCRYPT_N
            and 1 <= r <= 32
            and 1 <= p <= 16
        ):
            raise BackupError("the backup's scrypt parameters are out of range")
        key = _scrypt(passphrase, _hex(header.get("salt")), n, r, p)
    elif mode == "recipient":
        if identity is None:
            raise BackupError("this backup is sealed to a public key; give --identity KEYFILE")
        eph_pub = _hex(header.get("ephemeral"))
        if len(eph_pub) != 32:
            raise BackupError("the backup's header is damaged")
        rec_pub = identity.public_key().public_bytes_raw()
        if rec_pub.hex() != header.get("recipient"):
            raise BackupError("this backup was sealed to another key than --identity")
        key = _hkdf(
            identity.exchange(X25519PublicKey.from_public_bytes(eph_pub)), eph_pub + rec_pub
        )
    else:
        raise BackupError("not a consentgate backup (unknown mode)")
    nonce = _hex(header.get("nonce"))
    if len(nonce) != 12:
        raise BackupError("the backup's header is damaged")
    try:
        plain = AESGCM(key).decrypt(nonce, body, aad)
    except (InvalidTag, ValueError):
        raise BackupError(
            "the backup does not open: wrong passphrase or key, or the file is damaged"
        ) from None
    return _contents(cbor2.loads(plain))


def _seal(contents: Contents, key: bytes, header: dict[str, Any]) -> bytes:
    nonce = os.urandom(12)
    header = {**header, "nonce": nonce.hex(), "hub_id": contents.hub_id}
    encoded = json.dumps(header, sort_keys=True, separators=(",", ":")).encode()
    aad = MAGIC + struct.pack(">I", len(encoded)) + encoded
    plain = cbor2.dumps(
        {
            "format": 1,
            "hub_id": contents.hub_id,
            "created": contents.created or time.time(),
            "files": dict(contents.files),
        }
    )
    return aad + AESGCM(key).encrypt(nonce, plain, aad)


def _split(data: bytes) -> tuple[dict[str, Any], bytes, bytes]:
    if not data.startswith(MAGIC) or len(data) < len(MAGIC) + 4:
        raise BackupError("not a consentgate backup (no consentgate-backup/1 header)")
    (length,) = struct.unpack(">I", data[len(MAGIC) : len(MAGIC) + 4])
    end = len(MAGIC) + 4 + length
    if length > _MAX_HEADER or end > len(data):
        raise BackupError("the backup's header is damaged")
    try:
        header = json.loads(data[len(MAGIC) + 4 : end])
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise BackupError("the backup's header is damaged") from None
    if not isinstance(header, dict):
        raise BackupError("the backup's header is damaged")
    return header, data[:end], data[end:]


def _contents(value: object) -> Contents:
    if not isinstance(value, dict) or value.get("format") != 1:
        raise BackupError("the backup's contents are of an unknown format")
    files = value.get("files")
    if not isinstance(files, dict) or not all(
        isinstance(k, str) and isinstance(v, bytes) for k, v in files.items()
    ):
        raise BackupError("the backup's file list is damaged")
    return Contents(str(value.get("hub_id")), float(value.get("created", 0.0)), files)


def _hex(value: object) -> bytes:
    try:
        return bytes.fromhex(value) if isinstance(value, str) else b""
    except ValueError:
        return b""


def _scrypt(passphrase: bytes, salt: bytes, n: int, r: int, p: int) -> bytes:
    try:
        return Scrypt(salt=salt, length=32, n=n, r=r, p=p).derive(passphrase)
    except (ValueError, MemoryError) as exc:
        raise BackupError(f"scrypt failed: {exc}") from exc


def _hkdf(shared: bytes, salt: bytes) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=salt, info=_INFO).derive(shared)
