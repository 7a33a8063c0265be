"""``consentgate audit verify`` and ``consentgate audit tail``: read the hub's audit log.

Both open the database read-only, so they are safe beside a running daemon (WAL readers do not
block its writer). ``verify`` exits 0 when the log is intact and 1 when it was tampered with,
printing the first entry found wrong and how.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sqlite3
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path

import aiosqlite
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from gateway.audit.archive import verify_file
from gateway.audit.log import AuditLog, AuditReport, verify_tables
from gateway.cli import EXIT_CHECK_FAILED, EXIT_OK, EXIT_USAGE
from gateway.cli.daemon_cmds import load_or_exit
from gateway.envelope.keys import HUB_KEY_FILE, parse_hub_public
from gateway.errors import ConfigError
from gateway.storage.db import DB_FILE


class _UnusableError(Exception):
    """The database or key cannot be read; the message says why."""


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the ``audit verify`` and ``audit tail`` subcommands."""
    audit = subparsers.add_parser("audit", help="check or show the tamper-evident audit log")
    sub = audit.add_subparsers(dest="audit_command", required=True, metavar="ACTION")
    verify = sub.add_parser("verify", help="check the hash chain and the signed checkpoints")
    verify.add_argument("--config", help="TOML file (default as for run)")
    verify.add_argument(
        "--hub-key",
        metavar="HEX",
        help="the hub's public key (from `consentgate identity`); default: the key in state_dir",
    )
    verify.add_argument(
        "--archive",
        metavar="FILE",
        help="verify an archive file (audit-<first>-<last>.jsonl) instead of the database",
    )
    verify.set_defaults(func=cmd_verify)
    tail = sub.add_parser("tail", help="print the newest entries as JSON lines")
    tail.add_argument("-n", type=int, default=20, metavar="N", help="how many (default 20)")
    tail.add_argument("--config", help="TOML file (default as for run)")
    tail.set_defaults(func=cmd_tail)


def cmd_verify(args: argparse.Namespace) -> int:
    """Verify the audit log: exit 0 intact, 1 tampered (printing where and how), 2 unusable."""
    config = load_or_exit(args.config)
    if config is None:
        return EXIT_USAGE
    try:
        if args.archive:
            key = (
                parse_hub_public(args.hub_key, where="--hub-key")
                if args.hub_key
                else _hub_public(config.state_dir)
            )
            report = verify_file(Path(args.archive), key)
        else:
            report = asyncio.run(_verify(config.state_dir, args.hub_key))
    except (ConfigError, _UnusableError) as exc:
        print(f"consentgate: {exc}", file=sys.stderr)
        return EXIT_USAGE
    print(describe(report))
    return EXIT_OK if report.intact else EXIT_CHECK_FAILED


def cmd_tail(args: argparse.Namespace) -> int:
    """Print the newest ``-n`` entries, oldest first, one JSON object per line."""
    config = load_or_exit(args.config)
    if config is None:
        return EXIT_USAGE
    if not 1 <= args.n <= 1_000_000:
        print("consentgate: -n must be in 1-1000000", file=sys.stderr)
        return EXIT_USAGE
    try:
        lines = asyncio.run(_tail(config.state_dir, args.n))
    except _UnusableError as exc:
        print(f"consentgate: {exc}", file=sys.stderr)
        return EXIT_USAGE
    for line in lines:
        print(line)
    return EXIT_OK


def describe(report: AuditReport) -> str:
    """Return the operator's summary of ``report`` (first line: verdict, then the detail)."""
    signed = report.last_checkpoint
    coverage = (
        "no signed checkpoint yet"
        if signed is None
        else f"{report.checkpoints} signed checkpoints, the newest at entry {signed.seq} "
        f"({_when(signed.ts)})"
    )
    if report.fault is not None:
        return (
            f"TAMPERED: {report.fault}\n"
            f"{report.entries} entries verified before the fault; {coverage}"
        )
    if report.head is None:
        return f"ok: the audit log is empty; {coverage}"
    findings = "".join(f"\nfinding: entry {f.seq}: {f.problem}" for f in report.findings)
    return (
        f"ok: audit log intact: {report.entries} entries (0-{report.head}); {coverage}; "
        f"{report.unsigned} newer entries are covered by the hash chain only{findings}"
    )


def _when(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def _hub_public(state_dir: Path) -> Ed25519PublicKey:
    path = state_dir / HUB_KEY_FILE
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise _UnusableError(
            f"cannot read the hub key {path} ({exc.strerror}); run as the daemon's user "
            "or pass --hub-key from `consentgate identity`"
        ) from exc
    try:
        return Ed25519PrivateKey.from_private_bytes(raw).public_key()
    except ValueError as exc:
        raise _UnusableError(f"{path} is not a raw 32-byte Ed25519 key") from exc


@asynccontextmanager
async def _read_only(state_dir: Path) -> AsyncIterator[aiosqlite.Connection]:
    path = state_dir / DB_FILE
    if not path.is_file():
        raise _UnusableError(f"no database at {path}; has the daemon run with this config?")
    try:
        db = await aiosqlite.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)
    except sqlite3.Error as exc:
        raise _UnusableError(f"cannot open {path} read-only: {exc}") from exc
    try:
        yield db
    except sqlite3.Error as exc:
        raise _UnusableError(f"cannot read the audit log in {path}: {exc}") from exc
    finally:
        await db.close()


async def audit_report(state_dir: Path) -> AuditReport:
    """Verify the audit log in ``state_dir`` with the hub's own key (read-only)."""
    return await _verify(state_dir, None)


async def _verify(state_dir: Path, hub_key: str | None) -> AuditReport:
    async with _read_only(state_dir) as db:
        key = parse_hub_public(hub_key, where="--hub-key") if hub_key else _hub_public(state_dir)
        return await verify_tables(db, key)


async def _tail(state_dir: Path, count: int) -> list[str]:
    async with _read_only(state_dir) as db:
        entries = await AuditLog(db).tail(count)
    return [json.dumps(e.to_json(), separators=(",", ":")) for e in entries]
