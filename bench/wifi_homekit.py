"""Wi-Fi figures: discovery-to-candidate time, HomeKit pairing time, memory per paired HomeKit
accessory (real HAP-python accessories, real aiohomekit, real zeroconf on loopback).

Run inside a private network namespace: ``python -m bench.wifi_homekit [--accessories N]``.
Memory is Python heap growth (tracemalloc) from before the first pairing to after the last,
divided by the accessories paired; the first pairing's import of aiohomekit is excluded by a
warm-up pairing.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import statistics
import tempfile
import time
import tracemalloc
from pathlib import Path

from drivers.homekit.simulator import SimulatedAccessory
from gateway.config import MdnsConfig
from gateway.consent.policy import ConsentPolicy
from gateway.counters import Counters
from gateway.devices import DeviceRegistry
from gateway.devices.commands import DeviceExtras
from gateway.discovery.homekit_keys import MemoryPairings
from gateway.discovery.mdns import MdnsDiscovery
from gateway.model import Reading
from gateway.pseudonym import Pseudonymizer
from gateway.storage.db import open_database
from gateway.tasks import running


async def run(accessories: int) -> dict[str, float]:
    """Pair ``1 + accessories`` accessories one by one; return the figures."""
    config = MdnsConfig(interfaces=("127.0.0.1",), poll_interval_s=1.0, offline_after_s=10.0)
    discovered, paired_s, grown = [], [], 0
    with tempfile.TemporaryDirectory() as tmp:
        db = await open_database(Path(tmp) / "state")
        try:
            async with running(
                DeviceRegistry(db, Pseudonymizer(os.urandom(32)), ConsentPolicy())
            ) as reg:
                extras = DeviceExtras()
                readings: list[Reading] = []
                async with (
                    MdnsDiscovery(
                        config, reg, readings.append, Counters(),
                        extras=extras, pairings=MemoryPairings(),
                    ),
                    contextlib.AsyncExitStack() as stack,
                ):  # fmt: skip
                    for n in range(1 + accessories):
                        if n == 1:
                            tracemalloc.start()
                            base = tracemalloc.get_traced_memory()[0]
                        started = time.monotonic()
                        acc = SimulatedAccessory(name=f"Thermo{n}")
                        await stack.enter_async_context(acc)
                        device = reg.pseudonym(acc.device_id)
                        while reg.get(device) is None:
                            await asyncio.sleep(0.005)
                        discovered.append(time.monotonic() - started)
                        extras.offer_code(device, acc.setup_code)
                        started = time.monotonic()
                        await reg.pair(device)
                        paired_s.append(time.monotonic() - started)
                    if accessories:
                        grown = tracemalloc.get_traced_memory()[0] - base
                        tracemalloc.stop()
        finally:
            await db.close()
    return {
        "discovery_to_candidate_ms_median": 1000 * statistics.median(discovered),
        "pairing_ms_median": 1000 * statistics.median(paired_s[1:] or paired_s),
        "pairing_ms_first": 1000 * paired_s[0],
        "kib_per_accessory": grown / 1024 / max(accessories, 1),
    }


def main() -> None:
    """Print the figures, one per line."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--accessories", type=int, default=5)
    figures = asyncio.run(run(parser.parse_args().accessories))
    for name, value in figures.items():
        print(f"{name}: {value:.1f}")


if __name__ == "__main__":
    main()
