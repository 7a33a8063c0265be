"""Wi-Fi part of ``python -m bench`` (P6): HomeKit discovery, pairing and memory, each against
a limit measured in the same run, on 127.0.0.1 with real zeroconf multicast, real HAP-python
accessories (in a process of their own, bench.wifi_accessories) and real aiohomekit.

- discovery to candidate: from just before an accessory registers its mDNS service until the
  hub's registry holds it as a candidate (stamped by a registry listener), against a bare
  zeroconf browser in this process resolving the same service (stamped when it resolves; the
  limit: the first moment anything could know). Each side is stamped when it finds the
  accessory, whichever finds it first.
- pairing: the hub's ``pair`` with the setup code (pair-setup, accessory database, sealed keys,
  event subscription), against a bare aiohomekit pair-setup plus accessory database read of
  the same accessory, released with remove-pairing just before the hub pairs it. Both time
  from an accessory aiohomekit already found (its browser takes ~0.5 s after an announcement).
- memory: this process's RSS growth per accessory paired by the hub, against the hub's baseline
  RSS (registry, mDNS transport, aiohomekit loaded and one accessory paired as a warm-up).

``python -m bench.wifi [--accessories N]`` runs it alone and writes bench/results/wifi.json.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import statistics
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from zeroconf import IPVersion, ServiceStateChange, Zeroconf
from zeroconf.asyncio import AsyncServiceBrowser, AsyncServiceInfo, AsyncZeroconf

from bench.common import write_results
from gateway.config import MdnsConfig
from gateway.consent.policy import ConsentPolicy
from gateway.counters import Counters
from gateway.devices import DeviceRegistry
from gateway.devices.commands import DeviceExtras
from gateway.devices.model import CANDIDATE, DeviceEvent
from gateway.discovery.homekit_keys import SealedPairings
from gateway.discovery.mdns import MdnsDiscovery
from gateway.model import Reading
from gateway.pseudonym import Pseudonymizer
from gateway.secure.atrest import StorageCipher
from gateway.storage.db import open_database
from gateway.tasks import running

HAP = "_hap._tcp.local."
HAP_UDP = "_hap._udp.local."  # aiohomekit wants a browser for both before it starts
LOOPBACK = ["127.0.0.1"]


def rss_kib() -> int:
    """Return this process's resident set size (VmRSS, KiB)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


class Accessories:
    """The accessory process: ``start()`` one more accessory, get its id, code and start time."""

    def __init__(self, process: asyncio.subprocess.Process) -> None:
        self._process = process

    async def start(self) -> dict[str, Any]:
        """Start one accessory; return ``{"id", "code", "announced"}``."""
        assert self._process.stdin is not None
        assert self._process.stdout is not None
        self._process.stdin.write(b"start\n")
        await self._process.stdin.drain()
        async with asyncio.timeout(30):
            line = await self._process.stdout.readline()
        found: dict[str, Any] = json.loads(line)
        return found


@contextlib.asynccontextmanager
async def accessory_process() -> AsyncIterator[Accessories]:
    """Run bench.wifi_accessories while the block runs."""
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bench.wifi_accessories",
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
    )  # fmt: skip
    try:
        yield Accessories(process)
    finally:
        assert process.stdin is not None
        process.stdin.close()
        try:
            async with asyncio.timeout(20):
                await process.wait()
        except TimeoutError:
            process.kill()
            await process.wait()


class BareSide:
    """The limits: a bare zeroconf browser and a bare aiohomekit controller of their own."""

    def __init__(self) -> None:
        self.azc = AsyncZeroconf(interfaces=LOOPBACK, ip_version=IPVersion.V4Only)
        self.resolved: dict[str, float] = {}  # lowercase HAP id -> monotonic time resolved
        self._tasks: set[asyncio.Task[None]] = set()
        self.browser = AsyncServiceBrowser(
            self.azc.zeroconf, [HAP, HAP_UDP], handlers=[self._on_change]
        )
        self.controller: Any = None
        self.refused = 0  # bare pairings of a right code refused by the accessory, retried

    def _on_change(
        self, zeroconf: Zeroconf, service_type: str, name: str, state_change: ServiceStateChange
    ) -> None:
        if state_change is ServiceStateChange.Added and service_type == HAP:
            task = asyncio.create_task(self._resolve(name))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _resolve(self, name: str) -> None:
        info = AsyncServiceInfo(HAP, name)
        if await info.async_request(self.azc.zeroconf, 3000):
            hap_id = info.properties.get(b"id")
            if hap_id is not None:
                self.resolved.setdefault(hap_id.decode().lower(), time.monotonic())

    async def pair_and_release(self, hap_id: str, code: str) -> float:
        """Pair ``hap_id`` with aiohomekit, read its database, time it; then remove the pairing."""
        if self.controller is None:
            from aiohomekit.characteristic_cache import CharacteristicCacheMemory  # noqa: PLC0415
            from aiohomekit.controller import Controller  # noqa: PLC0415

            self.controller = Controller(
                async_zeroconf_instance=self.azc, char_cache=CharacteristicCacheMemory()
            )
            await self.controller.async_start()
        from aiohomekit.exceptions import AuthenticationError  # noqa: PLC0415

        found = await self.controller.async_find(hap_id, 10)  # aiohomekit's own discovery
        for attempt in range(3):  # HAP-python now and then refuses a right code (step M4)
            started = time.monotonic()
            try:
                finish = await found.async_start_pairing(f"bare-{hap_id}")
                pairing = await finish(code)
                break
            except AuthenticationError:
                self.refused += 1
                if attempt == 2:
                    raise
        await pairing.list_accessories_and_characteristics()
        elapsed = time.monotonic() - started
        await pairing.remove_pairing(pairing.pairing_data["iOSPairingId"])
        await pairing.close()
        self.controller.aliases.pop(f"bare-{hap_id}", None)
        return elapsed

    async def close(self) -> None:
        """Stop the controller, the browser and the zeroconf instance."""
        if self.controller is not None:
            await self.controller.async_stop()
        await self.browser.async_cancel()
        await self.azc.async_close()


async def run(accessories: int) -> dict[str, Any]:
    """Pair ``1 + accessories`` accessories (the first a warm-up); return the figures."""
    config = MdnsConfig(interfaces=tuple(LOOPBACK), poll_interval_s=1.0, offline_after_s=10.0)
    hub_found, bare_found, hub_pair, bare_pair = [], [], [], []
    base = grown = 0
    with tempfile.TemporaryDirectory(prefix="cg-bench-wifi-") as tmp:
        db = await open_database(Path(tmp) / "state")
        bare = BareSide()
        try:
            async with (
                running(
                    DeviceRegistry(db, Pseudonymizer(os.urandom(32)), ConsentPolicy())
                ) as registry,
                accessory_process() as process,
            ):
                extras, readings = DeviceExtras(), list[Reading]()
                listed: dict[str, float] = {}  # pseudonym -> monotonic time it became a candidate

                def on_event(event: DeviceEvent) -> None:
                    if event.kind == CANDIDATE:
                        listed.setdefault(event.device, time.monotonic())

                registry.subscribe(on_event)
                pairings = SealedPairings(db, StorageCipher(os.urandom(32)))
                async with MdnsDiscovery(
                    config, registry, readings.append, Counters(), extras=extras, pairings=pairings
                ):
                    for n in range(1 + accessories):
                        if n == 1:
                            base = rss_kib()
                        acc = await process.start()
                        device = registry.pseudonym(acc["id"])
                        async with asyncio.timeout(20):  # each side stamped on its own
                            while device not in listed or acc["id"] not in bare.resolved:
                                await asyncio.sleep(0.002)
                        hub_found.append(listed[device] - acc["announced"])
                        bare_found.append(bare.resolved[acc["id"]] - acc["announced"])
                        bare_pair.append(await bare.pair_and_release(acc["id"], acc["code"]))
                        extras.offer_code(device, acc["code"])
                        started = time.monotonic()
                        await registry.pair(device)
                        hub_pair.append(time.monotonic() - started)
                        extras.drop_code(device)
                    grown = rss_kib() - base
        finally:
            await bare.close()
            await db.close()
    found = figures(hub_found, bare_found, hub_pair, bare_pair, base, grown, accessories)
    return {**found, "bare_refused_and_retried": bare.refused}


def figures(
    hub_found: list[float],
    bare_found: list[float],
    hub_pair: list[float],
    bare_pair: list[float],
    base_kib: int,
    grown_kib: int,
    accessories: int,
) -> dict[str, Any]:
    """Return the medians (warm-up excluded where there are more) and the ratios."""

    def median_ms(values: list[float]) -> float:
        return 1000 * statistics.median(values[1:] or values)

    per_kib = grown_kib / max(accessories, 1)
    found_ms, found_limit = median_ms(hub_found), median_ms(bare_found)
    pair_ms, pair_limit = median_ms(hub_pair), median_ms(bare_pair)
    return {
        "accessories": accessories,
        "discovery_ms": found_ms,
        "discovery_bare_ms": found_limit,
        "discovery_ratio": found_ms / found_limit,
        "pairing_ms": pair_ms,
        "pairing_bare_ms": pair_limit,
        "pairing_ratio": pair_ms / pair_limit,
        "pairing_first_ms": 1000 * hub_pair[0],
        "baseline_rss_kib": base_kib,
        "kib_per_accessory": per_kib,
        "memory_ratio": per_kib / base_kib if base_kib else None,
    }


def main() -> None:
    """Run the part alone; print the figures and write bench/results/wifi.json."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--accessories", type=int, default=5)
    found = asyncio.run(run(parser.parse_args().accessories))
    for name, value in found.items():
        print(f"{name}: {value:.3f}" if isinstance(value, float) else f"{name}: {value}")
    print(f"written {write_results('wifi', found)}")


if __name__ == "__main__":
    main()
