"""Keyed-hash pseudonyms for devices (docs/data-categories.md, docs/mqtt-api.md).

A device's pseudonym is the first 8 bytes of HMAC-SHA256(hub pseudonym key, b"device:" + its
stable id). It is what topics, logs, the devices list and envelope headers carry; the stable id
(MAC or vendor id) never leaves the registry.
"""

from __future__ import annotations

import hashlib
import hmac
import os
from pathlib import Path
from typing import Final

from gateway.secretfile import read_or_create

KEY_FILE: Final = "pseudonym.key"


class Pseudonymizer:
    """Turns stable identifiers into this hub's pseudonyms."""

    __slots__ = ("_key",)

    def __init__(self, key: bytes) -> None:
        if len(key) != 32:
            raise ValueError("the pseudonym key must be 32 bytes")
        self._key = key

    @classmethod
    def from_state_dir(cls, state_dir: Path) -> Pseudonymizer:
        """Load the hub's pseudonym key from ``state_dir``, creating a random one on first use."""
        return cls(read_or_create(state_dir / KEY_FILE, lambda: os.urandom(32)))

    def device(self, stable_id: str) -> str:
        """Return the 16-hex-digit pseudonym of the device whose stable id is ``stable_id``."""
        return self.keyed_hash(b"device:" + stable_id.strip().lower().encode()).hex()

    def keyed_hash(self, data: bytes) -> bytes:
        """Return the first 8 bytes of HMAC-SHA256 of ``data`` under the pseudonym key."""
        return hmac.new(self._key, data, hashlib.sha256).digest()[:8]

    def __repr__(self) -> str:
        return "Pseudonymizer(<key hidden>)"
