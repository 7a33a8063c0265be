"""What a backup takes from the state directory, and how a restore puts it back.

Taken: the hub's identity key (``hub.key``), pseudonym key, storage key (from the systemd
credential if the hub reads it there), every other file of the state directory (e.g. keys of
device families), and a copy of the database with its tombstones and epoch announcements
removed and the file vacuumed (so no deleted record survives in free pages). The queued
records' file (``outbox.db``) is never taken: a restored hub starts with an empty queue.
What stays in the database: devices and their wrapped data keys, bind keys, consent state,
signed-command counters, the epoch counter (so the restored hub starts a new, higher epoch)
and the audit log with its checkpoints. Epoch secrets are never on disk, so never in a backup.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import tempfile
import time
from pathlib import Path
from typing import Final

from gateway.backup.archive import BackupError, Contents
from gateway.config import Config
from gateway.envelope.keys import HUB_KEY_FILE
from gateway.pseudonym import KEY_FILE as PSEUDONYM_KEY_FILE
from gateway.secretfile import write_secret
from gateway.secure.atrest import KEY_FILE as STORAGE_KEY_FILE
from gateway.secure.atrest import storage_key_source
from gateway.storage.db import DB_FILE, OUTBOX_FILE

# Tables whose rows are queued records or describe them: never in a backup (``outbox`` only in
# databases of the format before outbox.db).
QUEUE_TABLES: Final = ("outbox", "tombstones", "epochs")
_REQUIRED: Final = (HUB_KEY_FILE, PSEUDONYM_KEY_FILE, STORAGE_KEY_FILE, DB_FILE)
_SKIP_SUFFIXES: Final = ("-wal", "-shm", "-journal", ".tmp")


def collect(config: Config) -> Contents:
    """Return the backup contents of ``config``'s hub (safe while the daemon runs)."""
    state = config.state_dir
    if not (state / DB_FILE).is_file() or not (state / HUB_KEY_FILE).is_file():
        raise BackupError(f"no hub state in {state}; has the daemon run with this config?")
    files: dict[str, bytes] = {}
    try:
        for path in sorted(state.iterdir()):
            if (
                path.is_file()
                and path.name not in (DB_FILE, OUTBOX_FILE)
                and not path.name.endswith(_SKIP_SUFFIXES)
            ):
                files[path.name] = path.read_bytes()
        files[STORAGE_KEY_FILE] = storage_key_source(state).read_bytes()
    except OSError as exc:
        raise BackupError(
            f"cannot read {exc.filename}: {exc.strerror}; run as the daemon's user"
        ) from exc
    files[DB_FILE] = _database_copy(state / DB_FILE)
    return Contents(config.hub_id, time.time(), files)


def _database_copy(path: Path) -> bytes:
    """Return a consistent copy of the database without queued records, vacuumed."""
    with tempfile.TemporaryDirectory(prefix="consentgate-backup-") as tmp:
        copy = Path(tmp) / DB_FILE
        try:
            source = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)
            target = sqlite3.connect(copy)
            try:
                source.backup(target)  # SQLite's online backup: one consistent snapshot
                tables = {r[0] for r in target.execute("SELECT name FROM sqlite_master")}
                for table in QUEUE_TABLES:
                    if table in tables:
                        target.execute(f"DELETE FROM {table}")  # noqa: S608 - constant names
                target.commit()
                target.execute("VACUUM")
            finally:
                target.close()
                source.close()
        except sqlite3.Error as exc:
            raise BackupError(f"cannot copy the database {path}: {exc}") from exc
        return copy.read_bytes()


def restore(config: Config, contents: Contents, *, force_hub_id: bool = False) -> list[str]:
    """Write ``contents`` into ``config``'s empty state dir; return the file names written.

    Refuses a state directory that holds anything (a live hub's state is never overwritten)
    and a backup of another hub id unless ``force_hub_id``.
    """
    missing = [name for name in _REQUIRED if name not in contents.files]
    if missing:
        raise BackupError(f"the backup lacks {', '.join(missing)}; it cannot restore a hub")
    if contents.hub_id != config.hub_id and not force_hub_id:
        raise BackupError(
            f"the backup is of hub {contents.hub_id!r} but the config names {config.hub_id!r}; "
            "set hub_id to the backup's (the same hub keeps the same topics)"
        )
    state = config.state_dir
    if state.exists() and any(state.iterdir()):
        raise BackupError(
            f"{state} is not empty: refusing to restore over a hub's state; stop the daemon "
            "and restore into an empty directory (move the old one aside)"
        )
    names = sorted(contents.files)
    for name in names:
        if name != Path(name).name or name.startswith("."):
            raise BackupError(f"the backup holds a bad file name {name!r}")
    try:
        state.mkdir(parents=True, exist_ok=True, mode=0o700)
        for name in names:
            write_secret(state / name, contents.files[name])  # 0600, atomically
        _check_database(state / DB_FILE)
    except OSError as exc:
        raise BackupError(f"cannot write {exc.filename}: {exc.strerror}") from exc
    except BackupError:
        for name in names:
            with contextlib.suppress(OSError):
                os.unlink(state / name)
        raise
    return names


def _check_database(path: Path) -> None:
    try:
        db = sqlite3.connect(path)
        try:
            (result,) = db.execute("PRAGMA integrity_check").fetchone()
        finally:
            db.close()
    except sqlite3.Error as exc:
        raise BackupError(f"the restored database does not open: {exc}") from exc
    if result != "ok":
        raise BackupError(f"the restored database is damaged: {result}")
