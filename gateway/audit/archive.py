"""Archiving old audit entries without breaking verification.

The audit log only grows. To keep it within its budget (``[audit] max_entries``), the oldest
entries up to a signed checkpoint move to a file, ``audit-<first>-<last>.jsonl`` in
``[audit] archive_dir``, and are then deleted from the database in one transaction that also
records the archive (``audit_archive``: the checkpoint's seq and hash) and appends an
``audit.archived`` entry. Verification of the database then starts after that checkpoint
(``ChainVerifier(anchor=...)``); an archive record that no signed checkpoint vouches for is
reported as entries removed. Each file verifies on its own (``verify_file``): its entries
chain from the hash it starts after, and end at a checkpoint the hub signed.

File format (JSON lines): a header ``{"format", "hub", "first", "last", "prev"}`` (``prev``:
hex hash the first entry follows), one ``{"entry": ...}`` per entry (as ``audit tail`` shows
them plus ``prev``), then ``{"checkpoint": ...}`` for each signed checkpoint in the range.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import aiosqlite
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from gateway.audit.chain import (
    ChainFault,
    ChainVerifier,
    Checkpoint,
    Entry,
    checkpoint_valid,
)
from gateway.audit.log import AuditLog, AuditReport
from gateway.errors import StorageUnavailableError
from gateway.storage.db import transaction

FORMAT: Final = "consentgate-audit-archive/1"
MAX_PER_FILE: Final = 20_000


@dataclass(frozen=True, slots=True)
class Archived:
    """One archive written: its file, the entries it holds and the file's SHA-256."""

    path: Path
    first: int
    last: int
    entries: int
    sha256: str


async def anchor_seq(db: aiosqlite.Connection) -> int:
    """Return the seq of the newest archived entry (-1 when nothing was archived)."""
    async with db.execute("SELECT MAX(seq) FROM audit_archive") as cursor:
        row = await cursor.fetchone()
    return -1 if row is None or row[0] is None else int(row[0])


async def entries_kept(db: aiosqlite.Connection) -> int:
    """Return how many entries the database holds."""
    async with db.execute("SELECT COUNT(*) FROM audit") as cursor:
        row = await cursor.fetchone()
    return 0 if row is None else int(row[0])


async def archive(
    log: AuditLog, db: aiosqlite.Connection, directory: Path, hub_id: str, upto: int | None
) -> Archived | None:
    """Move the oldest entries, up to the newest signed checkpoint <= ``upto`` (and at most
    ``MAX_PER_FILE``), into a file in ``directory``; None when no checkpoint allows it."""
    start = await anchor_seq(db) + 1
    ceiling = start - 1 + MAX_PER_FILE if upto is None else min(upto, start - 1 + MAX_PER_FILE)
    checkpoints = [c for c in await log.checkpoints() if start <= c.seq <= ceiling]
    if not checkpoints:
        return None
    end = checkpoints[-1]
    async with db.execute(
        "SELECT seq, ts, event, details, prev, hash FROM audit WHERE seq >= ? AND seq <= ? "
        "ORDER BY seq",
        (start, end.seq),
    ) as cursor:
        rows = list(await cursor.fetchall())
    if not rows or int(rows[-1][0]) != end.seq:
        return None
    lines: list[dict[str, Any]] = [
        {
            "format": FORMAT,
            "hub": hub_id,
            "first": start,
            "last": end.seq,
            "prev": bytes(rows[0][4]).hex(),
        },
        *(
            {
                "entry": {
                    "seq": int(r[0]),
                    "ts": float(r[1]),
                    "event": str(r[2]),
                    "details": json.loads(r[3]),
                    "prev": bytes(r[4]).hex(),
                    "hash": bytes(r[5]).hex(),
                }
            }
            for r in rows
        ),
        *({"checkpoint": c.to_json()} for c in checkpoints),
    ]
    path = directory / f"audit-{start}-{end.seq}.jsonl"
    digest = await asyncio.to_thread(_write_durably, path, lines)
    async with transaction(db):
        await db.execute("DELETE FROM audit WHERE seq <= ?", (end.seq,))
        await db.execute(
            "INSERT OR REPLACE INTO audit_archive (seq, hash, entries, file_sha256, ts) "
            "VALUES (?, ?, ?, ?, ?)",
            (end.seq, end.hash, len(rows), bytes.fromhex(digest), end.ts),
        )
        await log.append(
            "audit.archived", first=start, last=end.seq, entries=len(rows), file_sha256=digest
        )
    return Archived(path, start, end.seq, len(rows), digest)


def _write_durably(path: Path, lines: Iterable[dict[str, Any]]) -> str:
    """Write ``lines`` to ``path`` (temp file, fsync, rename, fsync dir); return its SHA-256."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    body = "".join(json.dumps(line, separators=(",", ":")) + "\n" for line in lines).encode()
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.write(fd, body)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)
    directory = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)
    return hashlib.sha256(body).hexdigest()


def verify_file(path: Path, public_key: Ed25519PublicKey | None) -> AuditReport:
    """Verify one archive file: its chain, and that it ends at a checkpoint the hub signed."""
    try:
        header, entries, checkpoints = _read_file(path)
    except (OSError, ValueError, KeyError, TypeError) as exc:
        return AuditReport(0, None, 0, None, ChainFault(0, f"unreadable archive: {exc}"))
    first, last = int(header["first"]), int(header["last"])
    newest = checkpoints[-1] if checkpoints else None
    for checkpoint in checkpoints:
        if public_key is not None and not checkpoint_valid(checkpoint, public_key):
            forged = ChainFault(
                checkpoint.seq, "the checkpoint signed here has an invalid signature"
            )
            return AuditReport(0, None, len(checkpoints), newest, forged)
    start = Checkpoint(first - 1, bytes.fromhex(header["prev"]), 0.0, b"")
    verifier = ChainVerifier(checkpoints, start if first > 0 else None)
    faults = (verifier.feed(entry) for entry in entries)
    fault = next((f for f in faults if f is not None), None) or verifier.finish()
    if fault is None and (newest is None or newest.seq != last or verifier.head != last):
        fault = ChainFault(last, "the archive does not end at a checkpoint the hub signed")
    return AuditReport(
        verifier.count, verifier.head, len(checkpoints), newest, fault, tuple(verifier.findings)
    )


def _read_file(path: Path) -> tuple[dict[str, Any], list[Entry], list[Checkpoint]]:
    lines = [json.loads(text) for text in path.read_text().splitlines()]
    if not lines or lines[0].get("format") != FORMAT:
        raise ValueError("not an audit archive")
    entries = [
        Entry(
            int(e["seq"]),
            float(e["ts"]),
            str(e["event"]),
            dict(e["details"]),
            bytes.fromhex(e["prev"]),
            bytes.fromhex(e["hash"]),
        )
        for e in (line["entry"] for line in lines[1:] if "entry" in line)
    ]
    checkpoints = [
        Checkpoint(
            int(c["seq"]), bytes.fromhex(c["hash"]), float(c["ts"]), bytes.fromhex(c["signature"])
        )
        for c in (line["checkpoint"] for line in lines[1:] if "checkpoint" in line)
    ]
    return lines[0], entries, checkpoints


class Archiver:
    """Keeps the database's audit entries within ``max_entries``: when over, the oldest move to
    archive files, down to half the budget (so archiving is rare and batched)."""

    def __init__(
        self,
        log: AuditLog,
        db: aiosqlite.Connection,
        directory: Path,
        hub_id: str,
        *,
        max_entries: int,
        interval_s: float,
    ) -> None:
        self._log = log
        self._db = db
        self._directory = directory
        self._hub_id = hub_id
        self._max = max_entries
        self._interval = interval_s
        self.archived: list[Archived] = []

    async def enforce(self) -> list[Archived]:
        """Archive until the database holds at most ``max_entries`` entries (as far as signed
        checkpoints allow); return the archives written."""
        written: list[Archived] = []
        while await entries_kept(self._db) > self._max:
            upto = self._log.head - self._max // 2
            done = await archive(self._log, self._db, self._directory, self._hub_id, upto)
            if done is None:
                break
            written.append(done)
        self.archived += written
        return written

    async def run(self) -> None:
        """Enforce the budget every ``interval_s``, forever (storage faults: the next round)."""
        while True:
            await asyncio.sleep(self._interval)
            with contextlib.suppress(StorageUnavailableError, OSError):
                await self.enforce()
