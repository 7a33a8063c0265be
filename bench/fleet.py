"""``python -m bench.fleet [--hubs N] [--records M] [--workers 1,2,4] [--daemons D]``: many hubs,
one cloud.

Hundreds of lightweight hubs (the real sealer, ``bench.fleet_hubs``) and a few real hub daemons
(``python -m gateway run`` with simulated devices, ``bench.fleet_daemons``) -> one private
Mosquitto (MQTT 5) -> 1, 2 and 4 `consentgate consume` workers in one ``--group`` -> one
PostgreSQL database each run. The workers subscribe (durable sessions); the daemons start and
stream; the workers are paused (SIGSTOP) while every lightweight hub's records are published, then
resumed, and the drain is timed until SQL holds every lightweight record:
records/s landed (both kinds), per worker and per CPU-second of the workers (utime + stime
from /proc). Then the daemons stop gracefully and exactly-once is counted in SQL for both kinds
(per hub: rows = distinct (kid, seq) = records sent; a daemon's sent count is the distinct
records the broker accepted from it, seen by an observer subscribed before it started). The
limit of the same run is the sink alone: the same opened records inserted by one process
straight into PostgreSQL in batches of 1000 (no MQTT, no crypto).

Last, the largest worker count runs again with ``--partition i/N`` members instead of a group.
``--before REV`` also runs one worker from the source tree of git revision REV (extracted to a
temporary directory) on the same records: the consumer's CPU per record before and after, in
the same run. Results: bench/results/fleet.json.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import asyncpg

from bench.common import machine, write_results
from bench.fleet_daemons import BASE, RealHubs
from bench.fleet_hubs import SimHub, publish_rows
from gateway.demo.broker import Mosquitto
from gateway.envelope.consumer import Consumer
from gateway.envelope.keys import generate_recipient, load_recipient_private, raw_public
from gateway.sinks.postgres import PostgresSink

ADMIN = os.environ.get(
    "CONSENTGATE_BENCH_POSTGRES", "postgresql://postgres@/postgres?host=/var/run/postgresql"
)
ROOT: Final = Path(__file__).resolve().parents[1]
# Snapshot persistence on every change (the tests' setting) would rewrite the whole queue per
# message: the run keeps the default interval, the broker is never restarted here.
BROKER_CONF = (
    "allow_anonymous true\nmax_inflight_messages 1000\nset_tcp_nodelay true\n"
    "autosave_on_changes false\nautosave_interval 1800\n"
)
SIM_HUBS: Final = "hub-%"  # LIKE pattern of the lightweight hubs' ids


@dataclass(frozen=True, slots=True)
class Sizes:
    """How big a fleet run is."""

    hubs: int = 300
    records: int = 100  # per lightweight hub
    workers: tuple[int, ...] = (1, 2, 4)
    daemons: int = 3
    devices: int = 30  # per daemon; a third of them report environment readings (consented)
    rate_hz: float = 2.0


DEFAULT: Final = Sizes()
MIN_DAEMON_RECORDS: Final = 5
QUICK: Final = Sizes(hubs=40, records=25, workers=(1, 2), daemons=2, devices=9)


def _db_url(name: str) -> str:
    return (
        ADMIN.replace("/postgres?", f"/{name}?", 1)
        if "?" in ADMIN
        else ADMIN.rsplit("/", 1)[0] + f"/{name}"
    )


def _cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def _scalar(url: str, query: str) -> int:
    db = await asyncpg.connect(url)
    try:
        return int(await db.fetchval(query))
    except asyncpg.UndefinedTableError:
        return 0
    finally:
        await db.close()


def _interruptible() -> None:
    # A bench started in the background of a shell has SIGINT ignored, and its children
    # inherit that: the workers are stopped with SIGINT (a clean exit), so restore it.
    signal.signal(signal.SIGINT, signal.SIG_DFL)


async def _workers(argv: list[list[str]], cwd: Path) -> list[asyncio.subprocess.Process]:
    return [
        await asyncio.create_subprocess_exec(
            *a, stdout=asyncio.subprocess.DEVNULL, cwd=cwd, preexec_fn=_interruptible
        )
        for a in argv
    ]


async def _stop(procs: list[asyncio.subprocess.Process]) -> None:
    for p in procs:
        p.send_signal(signal.SIGINT)
    for p in procs:
        try:
            async with asyncio.timeout(20):
                await p.wait()
        except TimeoutError:
            p.kill()
            await p.wait()


async def _until(url: str, query: str, expected: int, within_s: float) -> int:
    deadline = time.monotonic() + within_s
    while (count := await _scalar(url, query)) < expected and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    return count


def _argv(
    port: int, key: Path, url: str, workers: int, trust: list[str], partitioned: bool
) -> list[list[str]]:
    group = f"g{workers}"
    common = ["--port", str(port), "--base", BASE, "--recipient-key", str(key), "--sink", url]
    split = [
        ("--partition", f"{i}/{workers}") if partitioned else ("--group", group)
        for i in range(workers)
    ]
    return [
        [
            *(sys.executable, "-m", "gateway", "consume", *common, *split[i]),
            *("--client-id", f"fleet-{group}-{i}", *trust),
        ]
        for i in range(workers)
    ]


async def run_workers(
    workdir: Path,
    sizes: Sizes,
    workers: int,
    key_dir: Path,
    code: Path = ROOT,
    *,
    partitioned: bool = False,
) -> dict[str, Any]:
    """One run: queue every record for ``workers`` durable members, then time their drain.

    The members form one ``--group`` ($share), or with ``partitioned`` take ``--partition
    i/N`` each (plain per-hub subscriptions).
    """
    recipient = load_recipient_private(key_dir / "recipient.key").public_key()
    hubs = [SimHub(f"hub-{i:05d}", BASE, recipient) for i in range(sizes.hubs)]
    rows = [row for h in hubs for row in h.seal(sizes.records)]
    announcements = [r for r in rows if r.retain]
    records = [r for r in rows if not r.retain]
    name = f"cg_fleet_{uuid.uuid4().hex[:8]}"
    admin = await asyncpg.connect(ADMIN)
    await admin.execute(f'CREATE DATABASE "{name}"')
    url = _db_url(name)
    run_dir = workdir / f"run-{name}"
    broker = Mosquitto(run_dir / "mosquitto", BROKER_CONF).start()
    daemons = RealHubs(run_dir, broker.port, key_dir, sizes.daemons, sizes.devices, sizes.rate_hz)
    trust = [
        arg
        for h in hubs
        for arg in ("--trust", f"{h.hub_id}={raw_public(h.key.public_key()).hex()}")
    ]
    key = key_dir / "recipient.key"
    argv = _argv(broker.port, key, url, workers, trust + daemons.trust(), partitioned)
    try:
        procs = await _workers(argv, code)
        await publish_rows(broker.port, announcements)
        announced = "SELECT count(*) FROM consentgate_announcements"
        await _until(url, announced, len(hubs), 60)  # stored: every member is subscribed
        async with daemons:  # real hubs streaming from here on
            # The workers are paused (SIGSTOP) while the records are published, so the broker
            # queues them; the drain after SIGCONT is timed, without process start-up costs.
            for p in procs:
                p.send_signal(signal.SIGSTOP)
            await publish_rows(broker.port, records)
            cpu_before = sum(_cpu_s(p.pid) for p in procs)
            base = await _scalar(url, "SELECT count(*) FROM consentgate_records")
            started = time.perf_counter()
            for p in procs:
                p.send_signal(signal.SIGCONT)
            sim_rows = f"SELECT count(*) FROM consentgate_records WHERE hub LIKE '{SIM_HUBS}'"
            await _until(url, sim_rows, len(records), 600)
            elapsed = time.perf_counter() - started
            cpu = sum(_cpu_s(p.pid) for p in procs) - cpu_before
            landed = await _scalar(url, "SELECT count(*) FROM consentgate_records") - base
            async with asyncio.timeout(30):  # every real hub has records in the count
                while min(daemons.sent().values(), default=1) < MIN_DAEMON_RECORDS:
                    await asyncio.sleep(0.1)
            exits = await daemons.stop()
            sent = {h.hub_id: h.sent for h in hubs} | daemons.sent()
            await _until(url, "SELECT count(*) FROM consentgate_records", sum(sent.values()), 60)
            await asyncio.sleep(0.5)  # anything redelivered late would show as an extra row
            sent |= daemons.sent()
        await _stop(procs)
        db = await asyncpg.connect(url)
        per_hub = await db.fetch(
            "SELECT hub, count(*), count(DISTINCT (kid, seq)) FROM consentgate_records GROUP BY hub"
        )
        await db.close()
        exact = (
            len(per_hub) == len(sent)
            and all(r[1] == r[2] == sent[r[0]] for r in per_hub)
            and all(code == 0 for code in exits)
            and all(sent[d.spec.hub_id] > 0 for d in daemons.daemons)
        )
        return {
            "workers": workers,
            "split": "partition" if partitioned else "group",
            "code": "current" if code == ROOT else str(code),
            "records_queued": len(records),
            "records_landed": landed,
            "daemon_records": sum(daemons.sent().values()),
            "seconds": round(elapsed, 2),
            "landed_per_s": round(landed / elapsed),
            "per_worker_per_s": round(landed / elapsed / workers),
            "per_cpu_s": round(landed / cpu) if cpu else None,
            "us_per_record": round(cpu / landed * 1e6, 1),
            "worker_cpu_s": round(cpu, 2),
            "exactly_once": exact,
        }
    finally:
        broker.stop()
        await admin.execute(f'DROP DATABASE "{name}" WITH (FORCE)')
        await admin.close()


async def sink_limit(sizes: Sizes, key_dir: Path) -> float:
    """Records/s of the PostgreSQL sink alone, batches of 1000, records like the fleet's."""
    recipient = load_recipient_private(key_dir / "recipient.key")
    hubs = [SimHub(f"hub-{i:05d}", BASE, recipient.public_key()) for i in range(sizes.hubs)]
    consumer = Consumer(recipient, {h.hub_id: h.key.public_key() for h in hubs})
    opened = []
    for r in (row for h in hubs for row in h.seal(sizes.records)):
        if r.retain:
            consumer.accept_announcement(r.payload, r.topic)
        else:
            opened.append(consumer.open(r.topic, r.payload))
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


def extract(rev: str, into: Path) -> Path:
    """Write the packages of git revision ``rev`` of this repository to ``into``; return it."""
    into.mkdir(parents=True, exist_ok=True)
    archive = subprocess.run(
        ["git", "-C", str(ROOT), "archive", rev, "gateway", "drivers"],
        check=True,
        capture_output=True,
    ).stdout
    subprocess.run(["tar", "-x", "-C", str(into)], input=archive, check=True)
    return into


async def measure(sizes: Sizes, before: str | None = None) -> dict[str, Any]:
    """Run every worker count (and the ``before`` revision with one worker); return results."""
    with tempfile.TemporaryDirectory(prefix="cg-fleet-") as tmp:
        workdir = Path(tmp)
        key_dir = generate_recipient(workdir / "keys").private_key.parent
        limit = await sink_limit(sizes, key_dir)
        runs = []
        for workers in sizes.workers:
            run = await run_workers(workdir, sizes, workers, key_dir)
            run["ratio_to_sink_limit"] = round(run["landed_per_s"] / limit, 3)
            runs.append(run)
            print(run, flush=True)
        workers = max(sizes.workers)
        run = await run_workers(workdir, sizes, workers, key_dir, partitioned=True)
        run["ratio_to_sink_limit"] = round(run["landed_per_s"] / limit, 3)
        runs.append(run)
        print(run, flush=True)
        result: dict[str, Any] = {
            "machine": machine(),
            "sizes": _sizes(sizes),
            "sink_limit_per_s": round(limit),
            "runs": runs,
        }
        if before is not None:
            old = await run_workers(workdir, sizes, 1, key_dir, extract(before, workdir / "old"))
            old["code"] = before
            now = next(r for r in runs if r["workers"] == 1 and r["split"] == "group")
            result["before"] = old
            result["cpu_per_record_after_over_before"] = round(
                now["us_per_record"] / old["us_per_record"], 3
            )
            print(old, flush=True)
    result["ok"] = all(r["exactly_once"] for r in runs) and (
        before is None or result["before"]["exactly_once"]
    )
    return result


def _sizes(sizes: Sizes) -> dict[str, Any]:
    return {f: getattr(sizes, f) for f in Sizes.__dataclass_fields__}


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hubs", type=int, default=DEFAULT.hubs)
    parser.add_argument("--records", type=int, default=DEFAULT.records, help="records per hub")
    parser.add_argument("--workers", default="1,2,4")
    parser.add_argument("--daemons", type=int, default=DEFAULT.daemons)
    parser.add_argument("--devices", type=int, default=DEFAULT.devices, help="per daemon")
    parser.add_argument("--before", metavar="REV", help="also run one worker of revision REV")
    parser.add_argument("--quick", action="store_true", help="the CI size")
    args = parser.parse_args()
    logging.getLogger("mqtt").setLevel(logging.ERROR)  # aiomqtt warns per publish past 10
    chosen = (
        QUICK
        if args.quick
        else Sizes(
            args.hubs,
            args.records,
            tuple(int(w) for w in args.workers.split(",")),
            args.daemons,
            args.devices,
        )
    )
    outcome = asyncio.run(measure(chosen, args.before))
    print(f"results: {write_results('fleet', outcome)}")
    sys.exit(0 if outcome["ok"] else 1)
