"""Fixtures of the mDNS tests: real multicast on loopback, real HTTP, aiosqlite in tmp_path.

Network rule (docs/testing.md): every zeroconf here is bound to 127.0.0.1 with IPv4 only.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from drivers.shelly.simulator import SimulatedShelly
from gateway.config import MdnsConfig
from gateway.consent.policy import ConsentPolicy
from gateway.counters import Counters
from gateway.devices import DeviceRegistry
from gateway.discovery.mdns import MdnsDiscovery
from gateway.model import Reading
from gateway.pseudonym import Pseudonymizer
from gateway.storage.db import open_database
from gateway.tasks import running
from tests.devices.helpers import EventLog

from .helpers import Hub, MakeDevice

LOOPBACK = ("127.0.0.1",)
_OUR_TASKS = ("mdns-", "pair-", "devices-")


@pytest.fixture(autouse=True)
def no_leaked_tasks() -> Iterator[None]:
    """Fail a test that leaves one of our tasks running after its components closed."""
    yield
    with contextlib.suppress(RuntimeError):  # no loop: a synchronous test
        leaked = [
            t.get_name()
            for t in asyncio.all_tasks()
            if t.get_name().startswith(_OUR_TASKS) and not t.done()
        ]
        assert leaked == [], f"tasks left running: {leaked}"


@pytest.fixture
def mdns_config() -> MdnsConfig:
    """Shrunk timings: poll every 0.2 s, HTTP timeout 0.4 s, offline after 1.5 s."""
    return MdnsConfig(
        interfaces=LOOPBACK, poll_interval_s=0.2, http_timeout_s=0.4, offline_after_s=1.5
    )


@pytest.fixture
async def hub(tmp_path: Path, mdns_config: MdnsConfig) -> AsyncIterator[Hub]:
    """A registry (real database) and the mDNS transport on loopback, readings collected."""
    db = await open_database(tmp_path / "state")
    policy, counters, events = ConsentPolicy(), Counters(), EventLog()
    erased: list[str] = []

    async def on_erase(device: str) -> None:
        erased.append(device)

    try:
        async with running(
            DeviceRegistry(
                db,
                Pseudonymizer(os.urandom(32)),
                policy,
                offline_after={"mdns": mdns_config.offline_after_s},
                on_erase=on_erase,
                pair_retry_s=0.2,
            )
        ) as registry:
            registry.subscribe(events.on_event)
            readings: list[Reading] = []
            async with MdnsDiscovery(mdns_config, registry, readings.append, counters) as disc:
                yield Hub(mdns_config, registry, disc, policy, counters, events, readings, erased)
    finally:
        await db.close()


@pytest.fixture
async def make_device() -> AsyncIterator[MakeDevice]:
    """Start simulated Shelly devices on loopback; all are stopped at the end of the test."""
    async with contextlib.AsyncExitStack() as stack:

        async def make(**options: Any) -> SimulatedShelly:
            device = SimulatedShelly(interfaces=LOOPBACK, probe=False, **options)
            return await stack.enter_async_context(device)

        yield make
