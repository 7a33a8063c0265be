"""Fault campaign (c): a long broker outage compressed in time, against the outbox caps.

A hub runs in this process with no broker. ``hours`` x 3600 x ``rate_hz`` readings (24 h at
100 readings/s: 8.64M) with simulated timestamps spaced 1 / ``rate_hz`` apart are submitted as
fast as the real pipeline takes them (submit -> gate -> seal -> outbox commit), into an outbox
capped at ``max_rows`` rows with the overflow policy ``policy``. Checked: the outbox never
holds more than the cap (sampled after every batch, and counted on disk), every overflow is in
the audit log with its policy and record count (and the counts add up to what was dropped),
the audit chain verifies, the hub still answers ``health``. Then the broker appears: the
consumer's persistent session (created before the outage, restored from the broker's
persistence) receives the surviving backlog, which must be exactly the newest records, each
opened once, with no hole; the durations of ingest, reconnection and drain are reported.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
import time
from pathlib import Path
from typing import Any, Final

from bench.common import bench_config, known_devices, running_hub
from bench.fault_kills import IDLE_S, fault_broker, outbox_left
from bench.fault_sink import RecordCounter, consuming
from drivers.simulator import DRIVER, simulated_fields
from gateway.demo.broker import free_port
from gateway.model import Reading
from gateway.storage.db import DB_FILE, OUTBOX_FILE

DEVICES: Final = 100
GRANTS: Final = (b'{"flag": "health", "state": "on"}', b'{"flag": "location", "state": "on"}')
CHUNK: Final = 5000


def _rss_kib() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def overflow_audit(state_dir: Path) -> tuple[int, int, set[str]]:
    """Return (entries, records, policies) of the ``outbox.overflow`` audit entries."""
    with sqlite3.connect(state_dir / DB_FILE) as db:
        rows = db.execute("SELECT details FROM audit WHERE event = 'outbox.overflow'").fetchall()
    details = [json.loads(row[0]) for row in rows]
    return len(details), sum(int(d["records"]) for d in details), {d["policy"] for d in details}


async def _pre_subscribe(counter: RecordCounter, workdir: Path, port: int) -> None:
    # The consumer's persistent session exists before the outage, as a real consumer's would:
    # the broker restores it from its persistence file and queues records for it at once.
    broker = fault_broker(workdir, port).start()
    try:
        async with consuming(counter), asyncio.timeout(10):
            await counter.subscribed.wait()
    finally:
        broker.stop()


async def compressed_outage(
    workdir: Path,
    *,
    hours: float = 24.0,
    rate_hz: float = 100.0,
    max_rows: int = 100_000,
    policy: str = "drop_oldest",
    drain_timeout_s: float = 300.0,
) -> dict[str, Any]:
    """Run campaign (c) and return its figures (``ok`` False when a check fails)."""
    readings = round(hours * 3600 * rate_hz)
    port = free_port()
    config = bench_config(
        workdir / "hub", port, "fault-outage", outbox={"max_rows": max_rows, "overflow": policy}
    )
    config.state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    counter = RecordCounter.for_hub(
        config.state_dir,
        workdir / "hub" / "keys" / "recipient.key",
        config.hub_id,
        port,
        config.topic_root,
    )
    await _pre_subscribe(counter, workdir / "broker", port)
    counter.subscribed.clear()
    rss_start = _rss_kib()
    broker = None
    try:
        async with running_hub(config) as hub:
            for grant in GRANTS:
                answer = await hub.router.dispatch("consent/set", grant)
                if answer.body["status"] != "ok":
                    raise RuntimeError(f"consent/set refused: {answer.body}")
            devices = known_devices(hub, DEVICES, "outage")
            t0 = time.time() - hours * 3600
            step = 1.0 / rate_hz
            max_seen = 0
            started = time.perf_counter()
            submitted = 0
            rss_samples = [rss_start]
            while submitted < readings:
                if hub.pipeline.queued > CHUNK:  # a shallow queue: memory is the hub's own
                    await asyncio.sleep(0.001)
                    max_seen = max(max_seen, hub.outbox.rows)
                    continue
                if submitted % (readings // 20 or 1) < CHUNK:
                    rss_samples.append(_rss_kib())
                for i in range(submitted, min(readings, submitted + CHUNK)):
                    ts = t0 + i * step
                    index = i % DEVICES
                    reading = Reading(devices[index], DRIVER, ts, simulated_fields(index, ts))
                    if not hub.pipeline.submit(reading):
                        break
                    submitted += 1
                await asyncio.sleep(0)
                max_seen = max(max_seen, hub.outbox.rows)
            while hub.pipeline.queued:
                await asyncio.sleep(0.01)
                max_seen = max(max_seen, hub.outbox.rows)
            async with hub.pipeline.exclusive():
                pass  # the batch the pipeline took last is in the outbox
            await hub.outbox.commit()  # and on disk (group commits)
            ingest_s = time.perf_counter() - started
            max_seen = max(max_seen, hub.outbox.rows)
            health = await hub.router.dispatch("health", b"{}")
            rss_end = _rss_kib()
            backlog_rows = hub.outbox.rows
            committed = hub.pipeline.committed
            dropped = hub.counters.get("outbox.overflow_dropped")
            rejected = hub.counters.get("outbox.overflow_rejected")
            audit_fault = await hub.audit.verify()
            with sqlite3.connect(config.state_dir / OUTBOX_FILE) as db:
                on_disk = int(db.execute("SELECT COUNT(*) FROM outbox").fetchone()[0])
            backlog_records = outbox_left(config.state_dir)
            last_epoch, last_seq = hub.sealer.epoch, hub.sealer.seq
            # the broker appears
            async with consuming(counter):
                broker = fault_broker(workdir / "broker", port, save_every_change=False).start()
                appeared = time.perf_counter()
                while not hub.link.connected.is_set():
                    await asyncio.sleep(0.01)
                connected = time.perf_counter()
                async with asyncio.timeout(drain_timeout_s):
                    while hub.outbox.rows > 0:
                        await asyncio.sleep(0.01)
                drained = time.perf_counter()
                async with asyncio.timeout(drain_timeout_s):
                    await counter.wait_opened(backlog_records)
                    await counter.quiet(IDLE_S)
                delivered = time.perf_counter()
    finally:
        if broker is not None:
            broker.stop()
    entries, audited, policies = overflow_audit(config.state_dir)
    summary = counter.summary()
    del summary["lost"]  # gaps below the oldest survivor are the policy's drops: see holes
    holes, survivors_ok = (
        _suffix_check(counter.seqs, last_epoch, last_seq, config.crypto.epoch_max_records)
        if policy == "drop_oldest"
        else _prefix_check(counter.seqs)
    )
    # reject_new refuses readings before sealing once full: the sealer's counter ends right
    # after the newest record kept (a record sealed but refused would leave a gap there).
    newest_epoch = max(counter.seqs, default=last_epoch)
    sealed_not_kept = (
        last_seq - (max(counter.seqs[newest_epoch], default=-1) + 1)
        if newest_epoch == last_epoch and counter.seqs
        else last_seq
    )
    result = {
        "hours": hours,
        "rate_hz": rate_hz,
        "readings": readings,
        "max_rows": max_rows,
        "policy": policy,
        "committed_rows": committed,
        "ingest_s": ingest_s,
        "ingest_readings_s": readings / ingest_s,
        "max_rows_seen": max_seen,
        "rows_on_disk": on_disk,
        "backlog_records": backlog_records,
        "overflow_dropped": dropped,
        "overflow_rejected": rejected,
        "audit_entries": entries,
        "audited_records": audited,
        "audit_policies": sorted(policies),
        "audit_chain_ok": audit_fault is None,
        "health_ok": health.body["status"] == "ok",
        "rss_start_mib": rss_start / 1024,
        "rss_end_mib": rss_end / 1024,
        "rss_max_mib": max([*rss_samples, rss_end]) / 1024,
        "reconnect_s": connected - appeared,
        "drain_s": drained - connected,
        "delivered_s": delivered - appeared,
        "drain_records_s": backlog_records / max(1e-9, drained - connected),
        **summary,
        "holes": holes,
        "survivors_as_policy": survivors_ok,
        "sealed_not_kept": sealed_not_kept if policy == "reject_new" else None,
    }
    result["ok"] = (
        max_seen <= max_rows
        and on_disk <= max_rows
        and backlog_rows <= max_rows
        and entries > 0
        and audited == dropped + rejected
        and policies == {policy}
        and audit_fault is None
        and result["health_ok"]
        and summary["opened"] == backlog_records
        and holes == 0
        and survivors_ok
        and summary["rejected"] == 0
        and summary["held_unopened"] == 0
        and (policy != "reject_new" or sealed_not_kept == 0)
    )
    return result


def _suffix_check(
    seqs: dict[int, set[int]], last_epoch: int, last_seq: int, per_epoch: int
) -> tuple[int, bool]:
    """Return (holes, is_suffix): holes between each epoch's lowest and highest opened seq,
    and whether what arrived is exactly the newest records: every epoch but the last ends at
    its ``per_epoch`` records, every epoch but the first starts at seq 0, and the last ends at
    the sealer's counter."""
    if not seqs:
        return 0, False
    holes = sum(max(s) - min(s) + 1 - len(s) for s in seqs.values())
    epochs = sorted(seqs)
    later_complete = all(min(seqs[e]) == 0 for e in epochs[1:]) and all(
        max(seqs[e]) == per_epoch - 1 for e in epochs[:-1]
    )
    ends = epochs[-1] == last_epoch and max(seqs[last_epoch]) == last_seq - 1
    return holes, later_complete and ends


def _prefix_check(seqs: dict[int, set[int]]) -> tuple[int, bool]:
    """Return (holes, is_prefix) for ``reject_new``: what arrived is the oldest records, from
    seq 0 of the first epoch, with no hole (later readings were refused whole batches)."""
    if not seqs:
        return 0, False
    holes = sum(max(s) - min(s) + 1 - len(s) for s in seqs.values())
    return holes, min(seqs[min(seqs)]) == 0
