"""Epoch key schedule: HPKE wrapping of the epoch secret, HKDF derivation, AEAD nonces.

- The 32-byte epoch secret is wrapped for the recipient with RFC 9180 HPKE base mode,
  ``Suite(KEM.X25519, KDF.HKDF_SHA256, AEAD.AES_128_GCM)``, ``info`` = the announcement core.
- ``key`` (16 bytes for alg 1 = A128GCM, 32 for alg 24 = ChaCha20/Poly1305) and ``base_iv``
  (12 bytes) = HKDF-SHA256(salt=b"consentgate/1", ikm=secret, info=CBOR [hub_id, epoch, alg,
  "Key"|"IV", length]), the OSCORE construction of RFC 8613 section 3.2.1.
- nonce = base_iv XOR seq left-padded to 12 bytes (RFC 9052 section 3.1); seq < 65536, so
  only the last two bytes of the nonce vary within an epoch.

Key material lives in ``bytearray`` buffers that ``EpochKeys.wipe`` overwrites with zeros. That
is as far as Python allows: OpenSSL keeps its own copy inside the AEAD context until the AEAD
object is freed, and the HPKE library returns the unwrapped secret as immutable ``bytes``.
"""

from __future__ import annotations

from typing import Final

import cbor2
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCM, ChaCha20Poly1305
from cryptography.hazmat.primitives.hpke import AEAD, KDF, KEM, Suite
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

ALG_A128GCM: Final = 1
ALG_CHACHA20_POLY1305: Final = 24
KEY_LENGTHS: Final = {ALG_A128GCM: 16, ALG_CHACHA20_POLY1305: 32}
IV_LENGTH: Final = 12
SECRET_LENGTH: Final = 32
SALT: Final = b"consentgate/1"

_HPKE: Final = Suite(KEM.X25519, KDF.HKDF_SHA256, AEAD.AES_128_GCM)


def wrap_secret(secret: bytes | bytearray, recipient: X25519PublicKey, core: bytes) -> bytes:
    """Return the HPKE (RFC 9180 base mode) encryption of ``secret`` to ``recipient``, info=core."""
    return _HPKE.encrypt(secret, recipient, info=core)


def unwrap_secret(wrapped: bytes, recipient: X25519PrivateKey, core: bytes) -> bytes:
    """Return the epoch secret in ``wrapped``; raise InvalidTag if it does not open."""
    return _HPKE.decrypt(wrapped, recipient, info=core)


def derive(
    secret: bytes | bytearray, *, hub_id: str, epoch: int, alg: int, label: str, length: int
) -> bytearray:
    """Return HKDF-SHA256 output ``length`` bytes long for ``label`` ("Key" or "IV") of an epoch."""
    info = cbor2.dumps([hub_id, epoch, alg, label, length], canonical=True)
    out = bytearray(length)
    HKDF(algorithm=hashes.SHA256(), length=length, salt=SALT, info=info).derive_into(secret, out)
    return out


def nonce(base_iv: bytes | bytearray, seq: int) -> bytes:
    """Return base_iv XOR seq, with seq left-padded to the IV length (RFC 9052 section 3.1)."""
    return (int.from_bytes(base_iv, "big") ^ seq).to_bytes(IV_LENGTH, "big")


def partial_iv(seq: int) -> bytes:
    """Return ``seq`` big-endian in the fewest bytes (at least one: seq 0 is b"\\x00")."""
    return seq.to_bytes(max(1, (seq.bit_length() + 7) // 8), "big")


class EpochKeys:
    """The AEAD key and base IV of one epoch; ``wipe`` zeroes them and drops the AEAD context."""

    __slots__ = ("__weakref__", "_aead", "_nonce", "alg", "base_iv", "key")

    def __init__(self, secret: bytes | bytearray, hub_id: str, epoch: int, alg: int) -> None:
        if alg not in KEY_LENGTHS:
            raise ValueError(f"alg {alg} is not 1 (A128GCM) or 24 (ChaCha20/Poly1305)")
        self.alg = alg
        self.key = derive(
            secret, hub_id=hub_id, epoch=epoch, alg=alg, label="Key", length=KEY_LENGTHS[alg]
        )
        self.base_iv = derive(
            secret, hub_id=hub_id, epoch=epoch, alg=alg, label="IV", length=IV_LENGTH
        )
        # The nonce buffer starts as base_iv; only its last two bytes change per record.
        self._nonce = bytearray(self.base_iv)
        self._aead: AESGCM | ChaCha20Poly1305 | None = (
            AESGCM(self.key) if alg == ALG_A128GCM else ChaCha20Poly1305(self.key)
        )

    def _nonce_for(self, seq: int) -> bytearray:
        buf = self._nonce
        buf[10] = self.base_iv[10] ^ (seq >> 8)
        buf[11] = self.base_iv[11] ^ (seq & 0xFF)
        return buf

    def seal(self, seq: int, plaintext: bytes, aad: bytes) -> bytes:
        """Return ciphertext||tag of ``plaintext`` under record number ``seq`` (< 65536)."""
        if self._aead is None:
            raise ValueError("the keys of this epoch have been wiped")
        return self._aead.encrypt(self._nonce_for(seq), plaintext, aad)

    def open(self, seq: int, ciphertext: bytes, aad: bytes) -> bytes:
        """Return the plaintext of record ``seq``; raise InvalidTag if it does not verify."""
        if self._aead is None:
            raise ValueError("the keys of this epoch have been wiped")
        return self._aead.decrypt(self._nonce_for(seq), ciphertext, aad)

    def wipe(self) -> None:
        """Overwrite the key, base IV and nonce buffers with zeros and drop the AEAD context."""
        self._aead = None
        for buf in (self.key, self.base_iv, self._nonce):
            buf[:] = bytes(len(buf))

    def __repr__(self) -> str:
        return f"EpochKeys(alg={self.alg}, <key hidden>)"
