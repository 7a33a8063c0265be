"""Fixtures of the device registry tests: a real aiosqlite database in tmp_path."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from pathlib import Path

import aiosqlite
import pytest

from gateway.consent.policy import ConsentPolicy
from gateway.devices import DeviceRegistry
from gateway.pseudonym import Pseudonymizer
from gateway.storage.db import open_database
from gateway.tasks import running

from .helpers import EventLog, FakePairer


@pytest.fixture
async def db(tmp_path: Path) -> AsyncIterator[aiosqlite.Connection]:
    """The hub database (WAL) in a fresh state directory."""
    connection = await open_database(tmp_path / "state")
    yield connection
    await connection.close()


@pytest.fixture
def pseudonyms() -> Pseudonymizer:
    """A pseudonymizer with a random key."""
    return Pseudonymizer(os.urandom(32))


@pytest.fixture
def policy() -> ConsentPolicy:
    """Default consent (network off)."""
    return ConsentPolicy()


@pytest.fixture
def erased() -> list[str]:
    """Device ids the registry's erase hook was called with."""
    return []


@pytest.fixture
def pairer() -> FakePairer:
    """A scripted mDNS pairer."""
    return FakePairer()


@pytest.fixture
def events() -> EventLog:
    """The registry's recorded events."""
    return EventLog()


@pytest.fixture
async def registry(
    db: aiosqlite.Connection,
    pseudonyms: Pseudonymizer,
    policy: ConsentPolicy,
    erased: list[str],
    pairer: FakePairer,
    events: EventLog,
) -> AsyncIterator[DeviceRegistry]:
    """A running registry with the fake pairer for mdns and 0.3 s offline detection."""

    async def on_erase(device: str) -> None:
        erased.append(device)

    async with running(
        DeviceRegistry(
            db,
            pseudonyms,
            policy,
            offline_after={"mdns": 0.3, "ble": 0.3},
            on_erase=on_erase,
            pair_retry_s=0.2,
        )
    ) as reg:
        reg.add_pairer("mdns", pairer)
        reg.subscribe(events.on_event)
        yield reg
