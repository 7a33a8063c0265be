"""``python -m bench.fleet [--hubs N] [--records M] [--workers 1,2,4]``: many hubs, one cloud.

Hundreds of lightweight hubs (the real sealer, ``bench.fleet_hubs``) -> one private Mosquitto
(MQTT 5) -> 1, 2 and 4 `consentgate consume` workers in one ``--group`` -> one PostgreSQL
database each run. The workers subscribe (durable sessions), go away, every hub's records are
published and queued for them, then the workers come back and the drain is timed until SQL
holds every record: records/s landed, per worker and per CPU-second of the workers (utime +
stime from /proc). Exactly-once is counted in SQL (per hub: rows = distinct (kid, seq) =
records sealed). The limit of the same run is the sink alone: the same opened records inserted
by one process straight into PostgreSQL in batches of 1000 (no MQTT, no crypto).
Results: bench/results/fleet.json.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import asyncpg

from bench.common import machine, write_results
from bench.fleet_hubs import SimHub, publish_rows
from gateway.demo.broker import Mosquitto
from gateway.envelope.consumer import Consumer
from gateway.envelope.keys import generate_recipient, load_recipient_private, raw_public
from gateway.sinks.postgres import PostgresSink

ADMIN = os.environ.get(
    "CONSENTGATE_BENCH_POSTGRES", "postgresql://postgres@/postgres?host=/var/run/postgresql"
)
BASE = "fleet"
# Snapshot persistence on every change (the tests' setting) would rewrite the whole queue per
# message: the run keeps the default interval, the broker is never restarted here.
BROKER_CONF = (
    "allow_anonymous true\nmax_inflight_messages 1000\nset_tcp_nodelay true\n"
    "autosave_on_changes false\nautosave_interval 1800\n"
)


def _db_url(name: str) -> str:
    return (
        ADMIN.replace("/postgres?", f"/{name}?", 1)
        if "?" in ADMIN
        else ADMIN.rsplit("/", 1)[0] + f"/{name}"
    )


def _cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def _count(url: str) -> int:
    db = await asyncpg.connect(url)
    try:
        return int(await db.fetchval("SELECT count(*) FROM consentgate_records"))
    except asyncpg.UndefinedTableError:
        return 0
    finally:
        await db.close()


async def _workers(argv: list[list[str]]) -> list[asyncio.subprocess.Process]:
    return [
        await asyncio.create_subprocess_exec(*a, stdout=asyncio.subprocess.DEVNULL) for a in argv
    ]


async def run_workers(
    workdir: Path, hubs: list[SimHub], rows: list[Any], key: Path, workers: int
) -> dict[str, Any]:
    """One run: queue every record for ``workers`` durable members, then time their drain."""
    name = f"cg_fleet_{uuid.uuid4().hex[:8]}"
    admin = await asyncpg.connect(ADMIN)
    await admin.execute(f'CREATE DATABASE "{name}"')
    url = _db_url(name)
    broker = Mosquitto(workdir / f"mosquitto-{workers}", BROKER_CONF).start()
    group = f"g{workers}"
    trust = [
        arg
        for h in hubs
        for arg in ("--trust", f"{h.hub_id}={raw_public(h.key.public_key()).hex()}")
    ]
    argv = [
        [
            sys.executable,
            "-m",
            "gateway",
            "consume",
            "--port",
            str(broker.port),
            "--base",
            BASE,
            "--recipient-key",
            str(key),
            "--sink",
            url,
            "--group",
            group,
            "--client-id",
            f"fleet-{group}-{i}",
            *trust,
        ]
        for i in range(workers)
    ]
    try:
        announcements = [r for r in rows if r.retain]
        records = [r for r in rows if not r.retain]
        procs = await _workers(argv)  # subscribe once: the durable sessions now exist
        await publish_rows(broker.port, announcements)
        while await _announced(url) < len(hubs):
            await asyncio.sleep(0.2)
        for p in procs:
            p.send_signal(signal.SIGINT)
            await p.wait()
        await publish_rows(broker.port, records)  # queued for the absent members
        started = time.perf_counter()
        procs = await _workers(argv)
        while await _count(url) < len(records):
            await asyncio.sleep(0.05)
        elapsed = time.perf_counter() - started
        cpu = sum(_cpu_s(p.pid) for p in procs)
        for p in procs:
            p.send_signal(signal.SIGINT)
            await p.wait()
        db = await asyncpg.connect(url)
        per_hub = await db.fetch(
            "SELECT hub, count(*), count(DISTINCT (kid, seq)) FROM consentgate_records GROUP BY hub"
        )
        await db.close()
        sent = {h.hub_id: h.sent for h in hubs}
        exact = len(per_hub) == len(hubs) and all(r[1] == r[2] == sent[r[0]] for r in per_hub)
        return {
            "workers": workers,
            "records": len(records),
            "seconds": round(elapsed, 2),
            "landed_per_s": round(len(records) / elapsed),
            "per_worker_per_s": round(len(records) / elapsed / workers),
            "per_cpu_s": round(len(records) / cpu) if cpu else None,
            "worker_cpu_s": round(cpu, 2),
            "exactly_once": exact,
        }
    finally:
        broker.stop()
        await admin.execute(f'DROP DATABASE "{name}" WITH (FORCE)')
        await admin.close()


async def _announced(url: str) -> int:
    db = await asyncpg.connect(url)
    try:
        return int(await db.fetchval("SELECT count(*) FROM consentgate_announcements"))
    except asyncpg.UndefinedTableError:
        return 0
    finally:
        await db.close()


async def sink_limit(hubs: list[SimHub], rows: list[Any], recipient: Any) -> float:
    """Records/s of the PostgreSQL sink alone, batches of 1000, same records."""
    opened = []
    consumers = {h.hub_id: Consumer(recipient, {h.hub_id: h.key.public_key()}) for h in hubs}
    for r in rows:
        hub_id = r.topic.split("/")[1]
        if r.retain:
            consumers[hub_id].accept_announcement(r.payload, r.topic)
        else:
            opened.append(consumers[hub_id].open(r.topic, r.payload))
    name = f"cg_fleet_{uuid.uuid4().hex[:8]}"
    admin = await asyncpg.connect(ADMIN)
    await admin.execute(f'CREATE DATABASE "{name}"')
    try:
        async with PostgresSink(_db_url(name)) as sink:
            started = time.perf_counter()
            for i in range(0, len(opened), 1000):
                await sink.store(opened[i : i + 1000], [])
            return len(opened) / (time.perf_counter() - started)
    finally:
        await admin.execute(f'DROP DATABASE "{name}" WITH (FORCE)')
        await admin.close()


async def main(hub_count: int, per_hub: int, worker_counts: list[int]) -> dict[str, Any]:
    """Run every worker count; return the results."""
    with tempfile.TemporaryDirectory(prefix="cg-fleet-") as tmp:
        workdir = Path(tmp)
        keys = generate_recipient(workdir / "keys")
        recipient = load_recipient_private(keys.private_key)
        runs = []
        limit = 0.0
        for workers in worker_counts:
            hubs = [SimHub(f"hub-{i:05d}", BASE, recipient.public_key()) for i in range(hub_count)]
            rows = [row for h in hubs for row in h.seal(per_hub)]
            if not limit:
                limit = await sink_limit(hubs, rows, recipient)
            run = await run_workers(workdir, hubs, rows, keys.private_key, workers)
            run["ratio_to_sink_limit"] = round(run["landed_per_s"] / limit, 2)
            runs.append(run)
            print(run, flush=True)
    return {
        "machine": machine(),
        "hubs": hub_count,
        "records_per_hub": per_hub,
        "sink_limit_per_s": round(limit),
        "runs": runs,
    }


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hubs", type=int, default=200)
    parser.add_argument("--records", type=int, default=100, help="records per hub")
    parser.add_argument("--workers", default="1,2,4")
    args = parser.parse_args()
    result = asyncio.run(main(args.hubs, args.records, [int(w) for w in args.workers.split(",")]))
    print(f"results: {write_results('fleet', result)}")
    sys.exit(0 if all(r["exactly_once"] for r in result["runs"]) else 1)
