"""P3: backlog drain after an outage, against P1's end-to-end pipeline rate of the same run.

``python -m bench.backlog [--records N] [--rounds R]``: the hub starts with no broker on its
port, N readings are committed through the real pipeline (submit -> gate -> seal -> outbox),
then a default-config Mosquitto starts on that port. The drain rate is records PUBACKed (and
deleted) per second from the moment the hub is connected until the outbox holds nothing; the
time from the broker's start to that connection (the hub's reconnect backoff) is reported
apart. Only the first ~20k rows are still in the publisher's memory: the rest are read back
from SQLite, which is what an outage costs. ``python -m bench`` divides the drain rate by P1's
rate (goal >= 0.8). Writes bench/results/backlog.json.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.common import bench_config, default_broker, known_devices, running_hub, write_results
from drivers.simulator import DRIVER
from gateway.demo.broker import free_port
from gateway.model import Reading

FIELDS: dict[str, float | int] = {"temperature": 21.5, "humidity": 45.25, "battery": 97}


async def drain_once(records: int, workdir: Path) -> dict[str, float]:
    """Commit ``records`` readings with no broker, start one, return the drain figures."""
    port = free_port()
    config = bench_config(workdir, port, "bench-backlog")
    broker = None
    try:
        async with running_hub(config) as hub:
            devices = known_devices(hub, 100)
            start = time.perf_counter()
            submitted = 0
            while submitted < records:
                now = time.time()
                for i in range(min(5000, records - submitted)):
                    if not hub.pipeline.submit(Reading(devices[i % 100], DRIVER, now, FIELDS)):
                        break
                    submitted += 1
                await asyncio.sleep(0)
            while hub.pipeline.committed < records:
                await asyncio.sleep(0.005)
            commit_s = time.perf_counter() - start
            backlog = hub.outbox.rows
            if hub.link.connected.is_set():
                raise RuntimeError("the hub is connected although no broker runs")
            base = hub.publisher.acked_total
            broker_started = time.perf_counter()
            broker = default_broker(workdir / "broker", port)
            broker_up = time.perf_counter()
            await hub.link.connected.wait()
            connected = time.perf_counter()
            while hub.outbox.rows > 0:
                await asyncio.sleep(0.002)
            drained = time.perf_counter()
            acked = hub.publisher.acked_total - base
    finally:
        if broker is not None:
            broker.stop()
    return {
        "records": records,
        "backlog_rows": backlog,
        "acked": acked,
        "commit_s": commit_s,
        "broker_start_s": broker_up - broker_started,
        "reconnect_s": connected - broker_up,
        "drain_s": drained - connected,
        "drain_rate": acked / (drained - connected),
        "rate_from_broker_start": acked / (drained - broker_up),
    }


def measure(records: int, rounds: int) -> dict[str, Any]:
    """Return the median drain figures of ``rounds`` fresh outages of ``records`` readings."""
    runs = []
    for n in range(rounds):
        with tempfile.TemporaryDirectory(prefix="cg-bench-") as tmp:
            runs.append(asyncio.run(drain_once(records, Path(tmp) / f"r{n}")))
    keys = ("commit_s", "reconnect_s", "drain_s", "drain_rate", "rate_from_broker_start")
    out: dict[str, Any] = {key: statistics.median(r[key] for r in runs) for key in keys}
    out.update(
        records=records,
        rounds=rounds,
        backlog_rows=runs[0]["backlog_rows"],
        acked=min(r["acked"] for r in runs),
        drain_rounds=[r["drain_rate"] for r in runs],
    )
    return out


def main(argv: list[str] | None = None) -> int:
    """Run P3 alone and print its figures."""
    parser = argparse.ArgumentParser(prog="python -m bench.backlog")
    parser.add_argument("--records", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args(argv)
    result = measure(args.records, args.rounds)
    print(f"P3 backlog drain, median of {args.rounds} outages of {args.records:,} records")
    print(f"{'committed with no broker (s)':40} {result['commit_s']:10.2f}")
    print(f"{'broker start -> hub connected (s)':40} {result['reconnect_s']:10.2f}")
    print(f"{'drain (s)':40} {result['drain_s']:10.2f}")
    print(f"{'drain rate (records PUBACKed/s)':40} {result['drain_rate']:10,.0f}")
    print(f"written {write_results('backlog', result)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
