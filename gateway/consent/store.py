"""Consent flags persisted in SQLite: hub-wide flags, per-device overrides, switches, version.

Loading fails closed: a stored state it does not understand (a flipped bit: ``Off``), a
consent table it cannot read, or a database lost while the hub's identity exists never falls
back to the catalogue defaults, which may be more permissive than what the user chose. Each
such flag is taken as ``off`` and reported as a problem for the daemon to log and audit.
"""

from __future__ import annotations

import logging
import sqlite3
from typing import Final

import aiosqlite

from gateway.audit.log import AuditLog
from gateway.consent.catalogue import FLAGS, OFF, STATES
from gateway.consent.policy import ConsentPolicy
from gateway.storage.db import get_meta, set_metas, transaction

SCHEMA: Final = """
CREATE TABLE IF NOT EXISTS consent (
    scope TEXT NOT NULL,     -- '' for hub-wide, else a device pseudonym
    flag TEXT NOT NULL,
    state TEXT NOT NULL,
    PRIMARY KEY (scope, flag)
);
"""
HUB_SCOPE: Final = ""

logger = logging.getLogger(__name__)


async def load_policy(db: aiosqlite.Connection) -> ConsentPolicy:
    """Return the persisted consent state (catalogue defaults where nothing was set)."""
    policy, _ = await load_policy_checked(db)
    return policy


async def load_policy_checked(
    db: aiosqlite.Connection, *, state_lost: bool = False
) -> tuple[ConsentPolicy, list[str]]:
    """Return the persisted consent state and the problems found loading it.

    Flags never set keep their catalogue defaults, unless ``state_lost`` (the database was
    lost while the hub's identity exists): then every flag is ``off``. A row whose state is
    not understood makes that flag ``off``; an unreadable table makes every flag ``off``.
    """
    await db.executescript(SCHEMA)
    flags: dict[str, str] = dict.fromkeys(FLAGS, OFF) if state_lost else {}
    devices: dict[str, dict[str, str]] = {}
    problems = ["the consent state was lost; every flag is off"] if state_lost else []
    try:
        async with db.execute("SELECT scope, flag, state FROM consent") as cursor:
            async for scope, flag, stored in cursor:
                if flag not in FLAGS:
                    continue  # a flag of another catalogue version: nothing it governs here
                state = stored if stored in STATES else OFF
                if state != stored:
                    problems.append(f"consent flag {flag!r} has an unknown state; taken as off")
                if scope == HUB_SCOPE:
                    flags[flag] = state
                else:
                    devices.setdefault(scope, {})[flag] = state
    except sqlite3.DatabaseError:
        flags, devices = dict.fromkeys(FLAGS, OFF), {}
        problems.append("the consent table cannot be read; every flag is off")
    policy = ConsentPolicy(
        flags,
        devices,
        try_now=await get_meta(db, "try_now") == b"1",
        restricted=await get_meta(db, "restricted") == b"1",
        version=int(await get_meta(db, "consent_version") or b"0"),
    )
    return policy, problems


async def save_policy(db: aiosqlite.Connection, policy: ConsentPolicy) -> None:
    """Persist the whole consent state of ``policy`` in one transaction."""
    rows = [(HUB_SCOPE, flag, state) for flag, state in policy.flags.items()]
    rows += [
        (device, flag, state)
        for device, overrides in policy.overrides.items()
        for flag, state in overrides.items()
    ]
    # Three statements: each is a round trip to the database thread, and a consent change is
    # acknowledged only once this is committed.
    async with transaction(db):
        await db.execute("DELETE FROM consent")
        await db.executemany("INSERT INTO consent (scope, flag, state) VALUES (?, ?, ?)", rows)
        await set_metas(
            db,
            {
                "try_now": b"1" if policy.try_now else b"0",
                "restricted": b"1" if policy.restricted else b"0",
                "consent_version": str(policy.version).encode(),
            },
        )


async def persist_closed(
    db: aiosqlite.Connection, audit: AuditLog, policy: ConsentPolicy, problems: list[str]
) -> None:
    """Persist the closed consent state a damaged one was replaced by; log and audit it."""
    for problem in problems:
        logger.error(
            "damaged state: %s; run `consentgate doctor --config FILE`, then restore a backup "
            "or set consent again with consent/set",
            problem,
        )
    async with transaction(db):
        await save_policy(db, policy)
        await audit.append("state.damaged", problems=problems)
