"""Readings held for an untrusted clock: what holding costs and how fast they are released.

``python -m bench.clock [--held N] [--records N]`` starts one default-config Mosquitto, then:

1. a hub booted with an untrusted wall clock: its persisted floor (``clock.floor``, the time the
   true time is known to be past: docs/clock.md) is set ``--untrusted-s`` seconds ahead of the
   wall clock, so the hub does not trust it until the wall clock passes the floor, as when
   NTP sets a clock that was behind. N readings are submitted and held (``[clock]
   hold_max_records`` = N, nothing sealed); RSS is read before and after (``VmRSS``, after a
   garbage collection). Once the clock loop trusts the clock, the held readings are released
   at once (``Pipeline.commit_held``, as the pipeline tick does): timed until every one is
   re-based, sealed and committed to the outbox, then until every one is PUBACKed;
2. P1's pipeline (``bench/pipeline.py``) on the same broker, N readings: the limit of the run.

Prints the release rates as ratios to P1's rates (committed; PUBACKed) and the RSS per held
reading, and writes bench/results/clock.json. No goal: the figures are reported.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench.common import (
    bench_config,
    default_broker,
    known_devices,
    running_hub,
    write_results,
)
from bench.pipeline import pipeline_rate
from drivers.simulator import DRIVER
from gateway.clock import FLOOR_KEY
from gateway.model import Reading
from gateway.storage.db import open_database, set_meta, transaction

FIELDS = {"temperature": 21.5, "humidity": 45.25, "battery": 97}


def vm_rss_kib() -> int:
    """Return this process's resident set size now (``VmRSS``, KiB)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError("no VmRSS in /proc/self/status")


async def _untrusted_for(state: Path, seconds: float) -> float:
    """Persist a clock floor ``seconds`` ahead of the wall clock in ``state``; return it."""
    floor = time.time() + seconds
    db = await open_database(state)
    try:
        async with transaction(db):
            await set_meta(db, FLOOR_KEY, repr(floor).encode())
    finally:
        await db.close()
    return floor


async def _wait(condition: Callable[[], bool], within_s: float, what: str) -> None:
    """Return once ``condition()`` holds; RuntimeError after ``within_s`` seconds."""
    deadline = time.monotonic() + within_s
    while not condition():
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out waiting for {what}")
        await asyncio.sleep(0.001)


async def held_release(port: int, held: int, untrusted_s: float, workdir: Path) -> dict[str, Any]:
    """Hold ``held`` readings while the clock is untrusted, then time their release."""
    config = bench_config(workdir, port, "bench-clock", clock={"hold_max_records": held})
    floor = await _untrusted_for(config.state_dir, untrusted_s)
    async with running_hub(config) as hub:
        if hub.clock.anchored:
            raise RuntimeError("the hub trusted its clock at boot")
        devices = known_devices(hub, 100)
        gc.collect()
        rss_before = vm_rss_kib()
        submitted = 0
        while submitted < held:
            now = time.time()
            for i in range(min(5000, held - submitted)):
                fields = {**FIELDS, "temperature": 20.0 + (submitted % 50) / 10}  # its own
                if not hub.pipeline.submit(Reading(devices[i % 100], DRIVER, now, fields)):
                    break
                submitted += 1
            await asyncio.sleep(0)
        await _wait(lambda: hub.gate.held == held, untrusted_s, "every reading held")
        held_by = time.time()
        if hub.clock.anchored:
            raise RuntimeError("the clock was trusted before every reading was held")
        gc.collect()
        rss_held = vm_rss_kib()
        base_acked = hub.publisher.acked_total
        # the clock loop checks every second: trusted once the wall clock passes the floor
        await _wait(lambda: hub.clock.anchored, untrusted_s + 5, "the clock trusted")
        if hub.gate.held != held:
            raise RuntimeError("the pipeline tick released them first: not timed, run again")
        start = time.perf_counter()
        await hub.pipeline.commit_held()  # what the next pipeline tick does
        sealed = time.perf_counter()
        if hub.gate.held:
            raise RuntimeError(f"{hub.gate.held} readings still held after the release")
        await _wait(lambda: hub.publisher.acked_total - base_acked >= held, 120, "delivery")
        delivered = time.perf_counter()
    return {
        "held": held,
        "hold_margin_s": round(floor - held_by, 2),
        "rss_before_kib": rss_before,
        "rss_held_kib": rss_held,
        "rss_per_held_bytes": (rss_held - rss_before) * 1024 / held,
        "release_commit_s": sealed - start,
        "release_delivered_s": delivered - start,
        "release_commit_readings_s": held / (sealed - start),
        "release_delivered_readings_s": held / (delivered - start),
    }


def measure(held: int, records: int, untrusted_s: float) -> dict[str, Any]:
    """Run the held release then P1 on one default-config broker; return both and ratios."""
    with tempfile.TemporaryDirectory(prefix="cg-bench-clock-") as tmp:
        broker = default_broker(Path(tmp) / "broker")
        try:
            clock = asyncio.run(held_release(broker.port, held, untrusted_s, Path(tmp) / "c"))
            p1 = asyncio.run(pipeline_rate(broker.port, records, Path(tmp) / "p1"))
        finally:
            broker.stop()
    return {
        **clock,
        "p1_records": records,
        "p1_pipeline_readings_s": p1["rate"],
        "p1_commit_readings_s": p1["commit_rate"],
        "ratio_release_commit": clock["release_commit_readings_s"] / p1["commit_rate"],
        "ratio_release_delivered": clock["release_delivered_readings_s"] / p1["rate"],
    }


def main() -> None:
    """Run the clock part and print its table."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--held", type=int, default=20_000, help="readings held (the default cap)")
    parser.add_argument("--records", type=int, default=20_000, help="P1 readings")
    parser.add_argument("--untrusted-s", type=float, default=8.0, help="seconds until trusted")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    m = measure(args.held, args.records, args.untrusted_s)
    print(f"clock: {args.held:,} readings held until the clock is trusted; P1 {args.records:,}")
    print(f"{'measure':52} {'value':>12}")
    print(f"{'RSS per held reading (bytes)':52} {m['rss_per_held_bytes']:12,.0f}")
    print(
        f"{'RSS before / holding (MiB)':52} {m['rss_before_kib'] / 1024:5.1f} / "
        f"{m['rss_held_kib'] / 1024:5.1f}"
    )
    print(
        f"{'release: re-based, sealed, committed (readings/s)':52} "
        f"{m['release_commit_readings_s']:12,.0f}"
    )
    print(f"{'P1 committed to outbox (readings/s)':52} {m['p1_commit_readings_s']:12,.0f}")
    print(f"{'ratio release / P1, committed':52} {m['ratio_release_commit']:12.2f}")
    print(f"{'release: PUBACKed (readings/s)':52} {m['release_delivered_readings_s']:12,.0f}")
    print(f"{'P1 end to end, PUBACKed (readings/s)':52} {m['p1_pipeline_readings_s']:12,.0f}")
    print(f"{'ratio release / P1, PUBACKed':52} {m['ratio_release_delivered']:12.2f}")
    print(f"written {write_results('clock', m, args.out)}")


if __name__ == "__main__":
    main()
