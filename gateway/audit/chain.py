"""Hash chaining and signed checkpoints of audit entries: pure functions, no I/O.

entry hash = SHA-256(prev hash || canonical JSON [seq, ts, event, details]); the first entry's
prev hash is 32 zero bytes. Editing, deleting or reordering any entry breaks the chain at that
point, which ``ChainVerifier`` reports by sequence number.

The chain alone is unkeyed: whoever can write the table can rewrite an entry and recompute
every later hash, or cut the tail off. A checkpoint (seq, hash of the entry at seq, time) is
signed with the hub's Ed25519 key, so such a rewrite no longer matches the signed hash, and a
log cut below a checkpoint's seq is missing entries the hub signed. Entries after the newest
checkpoint are covered by the chain only (``AuditReport.unsigned``).

Time is not part of the proof: a hub without a real-time clock may date an entry earlier than
the one before it (docs/clock.md). ``ChainVerifier`` reports such a step back as a *finding*
(``findings``), never as a fault; ``seq`` alone orders the log.
"""

from __future__ import annotations

import hashlib
import json
import struct
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Final

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

GENESIS: Final = bytes(32)
# An entry written while the hub's wall clock was not trusted carries this in its details.
UNTRUSTED_KEY: Final = "clock"
UNTRUSTED: Final = "unsynced"
# Steps back smaller than this are clock noise, not findings.
BACKWARDS_TOLERANCE_S: Final = 1.0
MAX_FINDINGS: Final = 100
CHECKPOINT_CONTEXT: Final = b"consentgate-audit-checkpoint/1"


@dataclass(frozen=True, slots=True)
class Entry:
    """One audit entry as stored."""

    seq: int
    ts: float
    event: str
    details: Mapping[str, Any]
    prev: bytes
    hash: bytes

    def to_json(self) -> dict[str, Any]:
        """Return the entry as shown by ``audit tail``: hashes as hex."""
        return {
            "seq": self.seq,
            "ts": self.ts,
            "event": self.event,
            "details": dict(self.details),
            "hash": self.hash.hex(),
        }


@dataclass(frozen=True, slots=True)
class Checkpoint:
    """A signed statement by the hub: the entry numbered ``seq`` has chain hash ``hash``."""

    seq: int
    hash: bytes
    ts: float
    signature: bytes

    def to_json(self) -> dict[str, Any]:
        """Return the checkpoint with bytes as hex."""
        return {
            "seq": self.seq,
            "hash": self.hash.hex(),
            "ts": self.ts,
            "signature": self.signature.hex(),
        }


def canonical_details(details: Mapping[str, Any]) -> str:
    """Return the canonical JSON text of ``details`` (sorted keys, no spaces)."""
    return json.dumps(details, sort_keys=True, separators=(",", ":"), default=str)


def entry_hash(prev: bytes, seq: int, ts: float, event: str, details_json: str) -> bytes:
    """Return the chain hash of an entry given its predecessor's hash."""
    body = json.dumps([seq, ts, event], separators=(",", ":")) + details_json
    return hashlib.sha256(prev + body.encode()).digest()


def checkpoint_message(seq: int, digest: bytes, ts: float) -> bytes:
    """Return the bytes a checkpoint signature covers (context, seq, hash, time)."""
    return CHECKPOINT_CONTEXT + struct.pack(">Q", seq) + digest + struct.pack(">d", ts)


def sign_checkpoint(key: Ed25519PrivateKey, seq: int, digest: bytes, ts: float) -> Checkpoint:
    """Return the checkpoint of entry ``seq`` (chain hash ``digest``) signed with ``key``."""
    return Checkpoint(seq, digest, ts, key.sign(checkpoint_message(seq, digest, ts)))


def checkpoint_valid(checkpoint: Checkpoint, public_key: Ed25519PublicKey) -> bool:
    """Return whether ``checkpoint`` carries a valid signature by ``public_key``."""
    try:
        public_key.verify(
            checkpoint.signature,
            checkpoint_message(checkpoint.seq, checkpoint.hash, checkpoint.ts),
        )
    except InvalidSignature:
        return False
    return True


@dataclass(frozen=True, slots=True)
class ChainFault:
    """Where and how a chain is broken: ``seq`` is the first entry found wrong."""

    seq: int
    problem: str

    def __str__(self) -> str:
        return f"entry {self.seq}: {self.problem}"


class ChainVerifier:
    """Checks entries fed in stored order against the chain and the signed checkpoints.

    ``checkpoints`` must already be known to carry valid signatures (see ``checkpoint_valid``).
    ``anchor``, one of them, is where the log starts after older entries were archived: the
    first entry must follow it, and the signed checkpoints up to it are not missing entries.
    """

    def __init__(
        self, checkpoints: Iterable[Checkpoint] = (), anchor: Checkpoint | None = None
    ) -> None:
        self._checkpoints = {c.seq: c for c in checkpoints}
        self._prev = GENESIS if anchor is None else anchor.hash
        self._expected: int | None = None if anchor is None else anchor.seq + 1
        self._anchor = -1 if anchor is None else anchor.seq
        self._last_matched = self._anchor  # seq of the newest checkpoint the chain matched
        self._last_ts: float | None = None
        self.count = 0
        self.head: int | None = None
        self.findings: list[ChainFault] = []

    def feed(self, entry: Entry) -> ChainFault | None:
        """Check the next entry; return the fault it reveals, or None."""
        if self._expected is not None and entry.seq != self._expected:
            return ChainFault(entry.seq, f"entry {self._expected} is missing or out of order")
        if entry.prev != self._prev:
            if self._expected is None and entry.seq != 0:
                return ChainFault(0, f"entries before {entry.seq} were deleted")
            return ChainFault(entry.seq, "does not follow the previous entry (deleted or moved)")
        details_json = canonical_details(entry.details)
        if entry_hash(self._prev, entry.seq, entry.ts, entry.event, details_json) != entry.hash:
            return ChainFault(entry.seq, "content was edited")
        checkpoint = self._checkpoints.get(entry.seq)
        if checkpoint is not None:
            if checkpoint.hash != entry.hash:
                first = self._last_matched + 1
                return ChainFault(
                    first,
                    f"entries {first}-{entry.seq} were rewritten: the chain does not match the "
                    f"checkpoint the hub signed at entry {entry.seq}",
                )
            self._last_matched = entry.seq
        self._note_time(entry)
        self._prev = entry.hash
        self._expected = entry.seq + 1
        self.count += 1
        self.head = entry.seq
        return None

    def _note_time(self, entry: Entry) -> None:
        """Record a finding when ``entry`` is dated before the entry preceding it."""
        last, self._last_ts = self._last_ts, entry.ts
        if last is None or entry.ts >= last - BACKWARDS_TOLERANCE_S:
            return
        if len(self.findings) < MAX_FINDINGS:
            untrusted = entry.details.get(UNTRUSTED_KEY) == UNTRUSTED
            self.findings.append(
                ChainFault(
                    entry.seq,
                    f"time runs backwards by {last - entry.ts:.0f} s"
                    + (" (written while the clock was not trusted)" if untrusted else "")
                    + ": the hub's clock was set back; not tampering, the chain is intact",
                )
            )

    def finish(self) -> ChainFault | None:
        """Return the fault of a log cut short below a signed checkpoint, or None."""
        beyond = [
            seq
            for seq in self._checkpoints
            if seq > self._anchor and (self.head is None or seq > self.head)
        ]
        if not beyond:
            return None
        first = self._anchor + 1 if self.head is None else self.head + 1
        return ChainFault(
            first,
            f"entries {first}-{max(beyond)} are missing: the log was truncated after the "
            f"checkpoint the hub signed at entry {max(beyond)}",
        )


def verify_chain(
    entries: Iterable[Entry], checkpoints: Iterable[Checkpoint] = ()
) -> ChainFault | None:
    """Return the first fault of a chain given in stored order, or None if it is intact."""
    verifier = ChainVerifier(checkpoints)
    for entry in entries:
        fault = verifier.feed(entry)
        if fault is not None:
            return fault
    return verifier.finish()
