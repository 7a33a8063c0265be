"""What ``consentgate doctor`` checks in a state directory, without changing anything.

Each check returns findings: ``ok`` lines and ``problem`` lines that say what to do. The
databases (``consentgate.db`` and the queue's ``outbox.db``) are opened read-only, so the checks
are safe beside a running daemon.
"""

from __future__ import annotations

import contextlib
import shutil
import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from gateway.consent.catalogue import FLAGS, STATES
from gateway.envelope.keys import HUB_KEY_FILE
from gateway.pseudonym import KEY_FILE as PSEUDONYM_KEY_FILE
from gateway.secure.atrest import KEY_LENGTH, storage_key_source
from gateway.storage.db import DB_FILE, OUTBOX_FILE, state_lost

LOW_SPACE_BYTES: Final = 16 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class Finding:
    """One result: ``ok`` or a problem, in words an operator acts on."""

    ok: bool
    text: str

    def line(self) -> str:
        """Return the finding as one printed line."""
        return f"{'ok' if self.ok else 'PROBLEM'}: {self.text}"


def examine(state_dir: Path) -> list[Finding]:
    """Return every finding on ``state_dir`` (keys, space, database, consent, audit chain)."""
    findings = [*_keys(state_dir), *_space(state_dir)]
    if state_lost(state_dir):
        findings.append(
            Finding(
                False,
                f"{DB_FILE} is missing or empty although the hub's identity exists: the hub "
                "starts with every consent flag off; restore a backup (`consentgate restore`) "
                "or set consent again",
            )
        )
        return findings
    database = state_dir / DB_FILE
    if not database.is_file():
        return [*findings, Finding(True, "no database yet (the hub has not run here)")]
    try:
        with _read_only(database) as db:
            findings += _integrity(db)
            findings += _consent(db)
            findings += _queues(db)
    except sqlite3.DatabaseError as exc:
        findings.append(Finding(False, f"{database} cannot be read ({exc}); restore a backup"))
    return findings + _outbox(state_dir / OUTBOX_FILE)


def _outbox(path: Path) -> list[Finding]:
    """The queued records' file: a damaged one loses records, never consent (the tombstones
    are in the main database)."""
    if not path.is_file():
        return [Finding(True, f"no {OUTBOX_FILE} (nothing queued)")]
    try:
        with _read_only(path) as db:
            result = [str(r[0]) for r in db.execute("PRAGMA integrity_check(20)")]
            queued = db.execute("SELECT COUNT(*) FROM outbox").fetchone()[0]
    except sqlite3.DatabaseError as exc:
        result, queued = [str(exc)], None
    if result != ["ok"]:
        return [
            Finding(
                False,
                f"{path} damaged ({'; '.join(result)}): its queued records are lost; stop the "
                "hub and move the file aside (the hub starts a new, empty outbox)",
            )
        ]
    return [Finding(True, f"{OUTBOX_FILE} integrity_check ok, {queued} rows queued")]


@contextlib.contextmanager
def _read_only(path: Path) -> Iterator[sqlite3.Connection]:
    db = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)
    try:
        yield db
    finally:
        db.close()


def _keys(state_dir: Path) -> list[Finding]:
    findings = []
    hub_key = state_dir / HUB_KEY_FILE
    try:
        Ed25519PrivateKey.from_private_bytes(hub_key.read_bytes())
        findings.append(Finding(True, f"hub identity key {hub_key}"))
    except FileNotFoundError:
        findings.append(Finding(True, "no hub identity yet (created at the first start)"))
    except (OSError, ValueError) as exc:
        findings.append(
            Finding(False, f"hub identity key {hub_key} unusable ({exc}); restore a backup")
        )
    for path, length in (
        (state_dir / PSEUDONYM_KEY_FILE, None),
        (storage_key_source(state_dir), KEY_LENGTH),
    ):
        try:
            raw = path.read_bytes()
        except FileNotFoundError:
            findings.append(Finding(True, f"{path.name} not created yet"))
            continue
        except OSError as exc:
            findings.append(Finding(False, f"{path} unreadable ({exc.strerror})"))
            continue
        if length is not None and len(raw) not in (length, 2 * length, 2 * length + 1):
            findings.append(Finding(False, f"{path} has the wrong length; restore a backup"))
        else:
            findings.append(Finding(True, f"key {path}"))
    return findings


def _space(state_dir: Path) -> list[Finding]:
    try:
        free = shutil.disk_usage(state_dir).free
    except OSError as exc:
        return [Finding(False, f"{state_dir} unusable ({exc.strerror})")]
    if free < LOW_SPACE_BYTES:
        return [Finding(False, f"only {free // 1024} KiB free under {state_dir}; free space")]
    return [Finding(True, f"{free // (1024 * 1024)} MiB free")]


def _integrity(db: sqlite3.Connection) -> list[Finding]:
    result = [str(r[0]) for r in db.execute("PRAGMA integrity_check(20)")]
    if result == ["ok"]:
        return [Finding(True, "database integrity_check ok")]
    return [Finding(False, f"database damaged: {'; '.join(result)}; restore a backup")]


def _consent(db: sqlite3.Connection) -> list[Finding]:
    try:
        rows = db.execute("SELECT flag, state FROM consent").fetchall()
    except sqlite3.OperationalError:
        return [Finding(True, "no consent stored yet (catalogue defaults)")]
    bad = sorted({str(f) for f, s in rows if f in FLAGS and s not in STATES})
    if bad:
        return [
            Finding(
                False,
                "consent state not understood for " + ", ".join(bad) + ": the hub takes "
                "these as off; set them again with consent/set",
            )
        ]
    return [Finding(True, f"consent state readable ({len(rows)} rows)")]


def _queues(db: sqlite3.Connection) -> list[Finding]:
    try:
        stones = db.execute("SELECT COUNT(*) FROM tombstones").fetchone()[0]
        audit = db.execute("SELECT COUNT(*) FROM audit").fetchone()[0]
    except sqlite3.OperationalError:
        return []
    return [Finding(True, f"{stones} withdrawals waiting to be purged, {audit} audit entries")]
