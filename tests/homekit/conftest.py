"""Fixtures of the HomeKit tests: a real HAP-python accessory and real aiohomekit on loopback,
discovered over real zeroconf multicast, the registry on a real database.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from drivers.homekit.simulator import SimulatedAccessory
from gateway.commands.router import Router
from gateway.config import MdnsConfig
from gateway.consent.policy import ConsentPolicy
from gateway.counters import Counters
from gateway.devices import DeviceRegistry
from gateway.devices.commands import DeviceExtras, register_commands
from gateway.discovery.homekit_keys import SealedPairings
from gateway.discovery.mdns import MdnsDiscovery
from gateway.model import Reading
from gateway.pseudonym import Pseudonymizer
from gateway.secure.atrest import StorageCipher
from gateway.storage.db import open_database
from gateway.tasks import running
from tests.devices.helpers import wait_for
from tests.mdns.conftest import no_leaked_tasks

__all__ = ["no_leaked_tasks"]

LOOPBACK = ("127.0.0.1",)


@dataclass
class HomeHub:
    """The hub pieces a HomeKit accessory meets, wired as the daemon wires them."""

    registry: DeviceRegistry
    router: Router
    counters: Counters
    policy: ConsentPolicy
    pairings: SealedPairings
    readings: list[Reading] = field(default_factory=list)


@pytest.fixture
def mdns_config() -> MdnsConfig:
    """Shrunk timings: poll every 0.2 s, HTTP timeout 0.5 s, offline after 2 s."""
    return MdnsConfig(
        interfaces=LOOPBACK, poll_interval_s=0.2, http_timeout_s=0.5, offline_after_s=2.0
    )


async def listed(hub: HomeHub, accessory: SimulatedAccessory) -> str:
    """Wait until ``hub`` lists ``accessory`` (10 s at most); return its pseudonymous id."""
    device = hub.registry.pseudonym(accessory.device_id)
    await wait_for(lambda: hub.registry.get(device) is not None, 10)
    return device


@contextlib.asynccontextmanager
async def open_hub(
    state: Path, config: MdnsConfig, key: bytes, secret: bytes, *, pair_retry_s: float = 5.0
) -> AsyncIterator[HomeHub]:
    """Open a hub on ``state`` (same key and pseudonym secret: the same hub after a restart)."""
    db = await open_database(state)
    try:
        policy, counters = ConsentPolicy(), Counters()
        pairings = SealedPairings(db, StorageCipher(key))
        async with running(
            DeviceRegistry(
                db,
                Pseudonymizer(secret),
                policy,
                offline_after={"mdns": config.offline_after_s},
                pair_retry_s=pair_retry_s,
            )
        ) as registry:
            router, extras = Router(), DeviceExtras()
            register_commands(router, registry, extras)
            hub = HomeHub(registry, router, counters, policy, pairings)
            async with MdnsDiscovery(
                config, registry, hub.readings.append, counters, extras=extras, pairings=pairings
            ):
                yield hub
    finally:
        await db.close()


@pytest.fixture
async def home(tmp_path: Path, mdns_config: MdnsConfig) -> AsyncIterator[HomeHub]:
    """A hub with the mDNS transport (and so HomeKit) on loopback."""
    async with open_hub(tmp_path / "state", mdns_config, os.urandom(32), os.urandom(32)) as hub:
        yield hub


@pytest.fixture
async def accessory() -> AsyncIterator[SimulatedAccessory]:
    """A HAP-python temperature/humidity sensor on 127.0.0.1."""
    async with SimulatedAccessory() as found:
        yield found
