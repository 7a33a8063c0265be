"""Consent flags persisted in SQLite: hub-wide flags, per-device overrides, switches, version."""

from __future__ import annotations

from typing import Final

import aiosqlite

from gateway.consent.catalogue import FLAGS, STATES
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


async def load_policy(db: aiosqlite.Connection) -> ConsentPolicy:
    """Return the persisted consent state (catalogue defaults where nothing was set)."""
    await db.executescript(SCHEMA)
    flags: dict[str, str] = {}
    devices: dict[str, dict[str, str]] = {}
    async with db.execute("SELECT scope, flag, state FROM consent") as cursor:
        async for scope, flag, state in cursor:
            if flag not in FLAGS or state not in STATES:
                continue  # a flag from a newer or older catalogue: defaults apply
            if scope == HUB_SCOPE:
                flags[flag] = state
            else:
                devices.setdefault(scope, {})[flag] = state
    return ConsentPolicy(
        flags,
        devices,
        try_now=await get_meta(db, "try_now") == b"1",
        restricted=await get_meta(db, "restricted") == b"1",
        version=int(await get_meta(db, "consent_version") or b"0"),
    )


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
