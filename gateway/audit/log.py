"""The audit log tables: append-only, hash-chained entries and signed checkpoints.

See gateway.audit.chain for what the chain and the checkpoints prove. Entries are numbered by
``seq`` (the order that counts) and dated in hub time (docs/clock.md); an entry written while
the wall clock was not trusted says so in its details (``"clock": "unsynced"``), and time
running backwards between entries is a finding of the verification, not a fault.

Verification streams the table (the log only grows), reading the checkpoints first: every
checkpoint read then names an entry that already exists, even while the daemon keeps appending.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import AsyncIterator, Callable, Collection
from dataclasses import dataclass
from typing import Any, Final

import aiosqlite
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from gateway.audit.chain import (
    GENESIS,
    UNTRUSTED,
    UNTRUSTED_KEY,
    ChainFault,
    ChainVerifier,
    Checkpoint,
    Entry,
    canonical_details,
    checkpoint_valid,
    entry_hash,
    sign_checkpoint,
)
from gateway.storage.db import on_rollback, transaction

logger = logging.getLogger(__name__)

SCHEMA: Final = """
CREATE TABLE IF NOT EXISTS audit (
    seq INTEGER PRIMARY KEY,
    ts REAL NOT NULL,
    event TEXT NOT NULL,
    details TEXT NOT NULL,
    prev BLOB NOT NULL,
    hash BLOB NOT NULL
);
-- One row per archive: entries up to ``seq`` (a signed checkpoint) left the database for a
-- file (gateway/audit/archive.py); the newest row is where the remaining chain starts.
CREATE TABLE IF NOT EXISTS audit_archive (
    seq INTEGER PRIMARY KEY,
    hash BLOB NOT NULL,
    entries INTEGER NOT NULL,
    file_sha256 BLOB NOT NULL,
    ts REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS audit_checkpoints (
    seq INTEGER PRIMARY KEY,
    hash BLOB NOT NULL,
    ts REAL NOT NULL,
    signature BLOB NOT NULL
);
"""
_SELECT: Final = "SELECT seq, ts, event, details, prev, hash FROM audit"


@dataclass(frozen=True, slots=True)
class AuditReport:
    """The outcome of verifying the whole log.

    ``entries`` counts the entries checked before the first fault; ``unsigned`` is how many
    entries follow the newest checkpoint (protected by the chain only: cutting them off is
    not detectable until the next checkpoint).
    """

    entries: int
    head: int | None
    checkpoints: int
    last_checkpoint: Checkpoint | None
    fault: ChainFault | None
    findings: tuple[ChainFault, ...] = ()

    @property
    def intact(self) -> bool:
        """Return whether no fault was found."""
        return self.fault is None

    @property
    def unsigned(self) -> int:
        """Return how many entries follow the newest checkpoint."""
        if self.head is None:
            return 0
        signed = -1 if self.last_checkpoint is None else self.last_checkpoint.seq
        return max(0, self.head - signed)

    def to_json(self) -> dict[str, Any]:
        """Return the report as ``audit/verify`` answers it."""
        return {
            "intact": self.intact,
            "entries": self.entries,
            "head": self.head,
            "checkpoints": self.checkpoints,
            "last_checkpoint": None
            if self.last_checkpoint is None
            else self.last_checkpoint.to_json(),
            "unsigned": self.unsigned,
            "fault": None
            if self.fault is None
            else {"seq": self.fault.seq, "problem": self.fault.problem},
            "findings": [{"seq": f.seq, "problem": f.problem} for f in self.findings],
        }


class AuditLog:
    """Appends privacy-relevant events; details hold pseudonyms, counts and codes only."""

    def __init__(
        self,
        db: aiosqlite.Connection,
        clock: Callable[[], float] = time.time,
        trusted: Callable[[], bool] = lambda: True,
    ) -> None:
        self._db = db
        self._clock = clock
        self._trusted = trusted
        self._last_seq = -1
        self._last_hash = GENESIS
        self._checkpointed = -1
        self.appended = asyncio.Event()

    @property
    def head(self) -> int:
        """Return the sequence number of the newest entry (-1 when the log is empty)."""
        return self._last_seq

    @property
    def checkpointed(self) -> int:
        """Return the sequence number the newest checkpoint covers (-1 if none)."""
        return self._checkpointed

    async def load(self) -> None:
        """Create the tables if needed and find the chain's head and newest checkpoint."""
        await self._db.executescript(SCHEMA)
        async with self._db.execute(
            "SELECT seq, hash FROM audit ORDER BY seq DESC LIMIT 1"
        ) as cursor:
            row = await cursor.fetchone()
        if row is None:  # everything archived: the chain goes on from the archive's anchor
            async with self._db.execute(
                "SELECT seq, hash FROM audit_archive ORDER BY seq DESC LIMIT 1"
            ) as cursor:
                row = await cursor.fetchone()
        if row is not None:
            self._last_seq, self._last_hash = int(row[0]), bytes(row[1])
        async with self._db.execute("SELECT MAX(seq) FROM audit_checkpoints") as cursor:
            row = await cursor.fetchone()
        if row is not None and row[0] is not None:
            self._checkpointed = int(row[0])

    async def append(self, event: str, **details: Any) -> int:
        """Append and commit one entry; return its sequence number."""
        async with transaction(self._db):  # also serialises concurrent appends
            seq = self._last_seq + 1
            ts = round(self._clock(), 6)
            if not self._trusted():
                details = {**details, UNTRUSTED_KEY: UNTRUSTED}
            details_json = canonical_details(details)
            digest = entry_hash(self._last_hash, seq, ts, event, details_json)
            await self._db.execute(
                "INSERT INTO audit (seq, ts, event, details, prev, hash) VALUES (?, ?, ?, ?, ?, ?)",
                (seq, ts, event, details_json, self._last_hash, digest),
            )
            head = self._last_seq, self._last_hash
            on_rollback(self._db, lambda: self._restore(*head))
            self._last_seq, self._last_hash = seq, digest
        self.appended.set()
        logger.info("audit", extra={"audit_event": event, "audit_seq": seq})
        return seq

    def _restore(self, seq: int, digest: bytes) -> None:
        # the entry's transaction rolled back: the chain's head is where it was
        self._last_seq, self._last_hash = seq, digest

    async def checkpoint(self, key: Ed25519PrivateKey) -> Checkpoint | None:
        """Sign and store a checkpoint of the current head; None if it is already covered."""
        async with transaction(self._db):
            if self._last_seq <= self._checkpointed:
                return None
            checkpoint = sign_checkpoint(
                key, self._last_seq, self._last_hash, round(self._clock(), 6)
            )
            await self._db.execute(
                "INSERT OR REPLACE INTO audit_checkpoints (seq, hash, ts, signature) "
                "VALUES (?, ?, ?, ?)",
                (checkpoint.seq, checkpoint.hash, checkpoint.ts, checkpoint.signature),
            )
            self._checkpointed = checkpoint.seq
        logger.debug("audit checkpoint", extra={"audit_seq": checkpoint.seq})
        return checkpoint

    async def tail(self, count: int) -> list[Entry]:
        """Return the last ``count`` entries, oldest first."""
        async with self._db.execute(f"{_SELECT} ORDER BY seq DESC LIMIT ?", (count,)) as cursor:
            rows = await cursor.fetchall()
        return [_entry(row) for row in reversed(list(rows))]

    async def events(self, names: Collection[str]) -> AsyncIterator[Entry]:
        """Yield the entries whose event is one of ``names``, oldest first."""
        marks = ", ".join("?" for _ in names)
        async with self._db.execute(
            f"{_SELECT} WHERE event IN ({marks}) ORDER BY seq",
            tuple(names),
        ) as cursor:
            async for row in cursor:
                yield _entry(row)

    async def checkpoints(self) -> list[Checkpoint]:
        """Return every stored checkpoint, oldest first."""
        async with self._db.execute(
            "SELECT seq, hash, ts, signature FROM audit_checkpoints ORDER BY seq"
        ) as cursor:
            rows = await cursor.fetchall()
        return [Checkpoint(int(r[0]), bytes(r[1]), float(r[2]), bytes(r[3])) for r in rows]

    async def report(self, public_key: Ed25519PublicKey | None) -> AuditReport:
        """Verify the chain and the checkpoints (signatures too when ``public_key`` is given)."""
        return await verify_tables(self._db, public_key)

    async def verify(self, public_key: Ed25519PublicKey | None = None) -> ChainFault | None:
        """Check the whole log; return the first fault or None."""
        return (await self.report(public_key)).fault


async def verify_tables(
    db: aiosqlite.Connection, public_key: Ed25519PublicKey | None
) -> AuditReport:
    """Verify the audit tables of ``db``: signatures first, then the chain, streamed."""
    async with db.execute(
        "SELECT seq, hash, ts, signature FROM audit_checkpoints ORDER BY seq"
    ) as cursor:
        rows = await cursor.fetchall()
    checkpoints = [Checkpoint(int(r[0]), bytes(r[1]), float(r[2]), bytes(r[3])) for r in rows]
    last = checkpoints[-1] if checkpoints else None
    if public_key is not None:
        for checkpoint in checkpoints:
            if not checkpoint_valid(checkpoint, public_key):
                forged = ChainFault(
                    checkpoint.seq,
                    "the checkpoint signed at this entry has an invalid signature "
                    "(forged or altered checkpoint, or another hub's key)",
                )
                return AuditReport(0, None, len(checkpoints), last, forged)
    anchor, fault = await _anchor(db, checkpoints)
    if fault is not None:
        return AuditReport(0, None, len(checkpoints), last, fault)
    verifier = ChainVerifier(checkpoints, anchor)
    async with db.execute(f"{_SELECT} ORDER BY rowid") as cursor:
        async for row in cursor:
            entry = _parsed(row)
            fault = verifier.feed(entry) if isinstance(entry, Entry) else entry
            if fault is not None:
                break
    if fault is None:
        fault = verifier.finish()
    return AuditReport(
        verifier.count, verifier.head, len(checkpoints), last, fault, tuple(verifier.findings)
    )


async def _anchor(
    db: aiosqlite.Connection, checkpoints: list[Checkpoint]
) -> tuple[Checkpoint | None, ChainFault | None]:
    """Return the checkpoint the log starts after (its newest archive), or the fault of an
    archive record that no signed checkpoint vouches for (entries removed by hand)."""
    async with db.execute("SELECT seq, hash FROM audit_archive ORDER BY seq DESC LIMIT 1") as cur:
        row = await cur.fetchone()
    if row is None:
        return None, None
    seq, digest = int(row[0]), bytes(row[1])
    signed = next((c for c in checkpoints if c.seq == seq), None)
    if signed is None or signed.hash != digest:
        return None, ChainFault(
            0, f"entries 0-{seq} were removed, but no checkpoint the hub signed marks their end"
        )
    return signed, None


def _parsed(row: Any) -> Entry | ChainFault:
    """Return the entry of ``row``, or the fault of a row whose columns were damaged."""
    try:
        entry = _entry(row)
    except (TypeError, ValueError):
        return ChainFault(int(row[0]), "content was edited (a column is not of its stored type)")
    if not isinstance(entry.details, dict):
        return ChainFault(entry.seq, "content was edited (details are not a JSON object)")
    return entry


def _entry(row: Any) -> Entry:
    return Entry(
        int(row[0]), float(row[1]), str(row[2]), json.loads(row[3]), bytes(row[4]), bytes(row[5])
    )
