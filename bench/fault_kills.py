"""Fault campaigns (a) and (b): kill -9 the broker, then the daemon, while readings stream.

(a) ``broker_kills``: a hub runs in this process with the simulator streaming; the broker
(Mosquitto with persistence saved after every change, as the tests' launcher writes it) is
killed with SIGKILL ``cycles`` times, each 0.5-2 s after the consumer saw new records, down for
a random 0.2-1.5 s, and restarted on the same port. (b) ``daemon_kills``: the daemon runs as a
child process (``python -m gateway run`` with ``[simulator]``) and is killed with SIGKILL
``cycles`` times, each a random 0.5-3 s after the consumer opened records of its new epoch,
then restarted on the same state directory.

Both end with a graceful stop (in (a) once the hub caught up with its backlog) and wait until
the consumer has been idle for a while. Missing are (epoch, seq) pairs absent below the highest
seq opened in each epoch, and in (a) the last epoch's tail against the sealer's counter; a
missing record still in the outbox is undelivered, not lost, and is counted as left in the
outbox. In (a) every lost record is also classed by whether the broker had acknowledged it
(then the broker lost it: QoS 1 ends at the PUBACK). Duplicates are QoS 1 redeliveries the
consumer's replay check dropped; any other refusal of the consumer, a record held for an
epoch that never came, or a row left in the outbox counts as a failure.
"""

from __future__ import annotations

import asyncio
import random
import sqlite3
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Final

from bench.common import bench_config, running_hub
from bench.fault_proc import DaemonProcess, DaemonSpec
from bench.fault_sink import RecordCounter, consuming, request
from gateway.daemon import Hub
from gateway.demo.broker import Mosquitto
from gateway.envelope.format import parse_record
from gateway.model import EPOCH_CATEGORY, OutboxRow
from gateway.outbox.rows import Pending
from gateway.outbox.table import RECORDS
from gateway.storage.db import OUTBOX_FILE

GRANTS: Final = (("health", "on"), ("location", "on"))
IDLE_S: Final = 2.0
SETTLE_TIMEOUT_S: Final = 60.0
FLOW_TIMEOUT_S: Final = 30.0
# A broker that saves its persistence after every change forwards ~2k msg/s to a persistent
# consumer, so the backlog of 20 outages takes a while to drain before the graceful stop.
CATCH_UP_TIMEOUT_S: Final = 240.0


def outbox_left(state_dir: Path) -> int:
    """Return how many records (announcements aside) the stopped hub's outbox still holds."""
    with sqlite3.connect(state_dir / OUTBOX_FILE) as db:
        row = db.execute(f"SELECT COUNT(*) FROM outbox WHERE {RECORDS}").fetchone()
    return int(row[0])


def queued_records(state_dir: Path) -> set[tuple[int, int]]:
    """Return the (epoch, seq) of every record the stopped hub's outbox still holds."""
    with sqlite3.connect(state_dir / OUTBOX_FILE) as db:
        rows = db.execute(f"SELECT epoch, payload FROM outbox WHERE {RECORDS}").fetchall()
    return {(int(epoch), parse_record(bytes(payload)).seq) for epoch, payload in rows}


def fault_broker(
    workdir: Path, port: int | None = None, *, save_every_change: bool = True
) -> Mosquitto:
    """Return (not started) a persistent Mosquitto that queues enough for a slow consumer.

    The launcher's config saves the persistence file after every change, so a kill -9 loses
    nothing the broker acknowledged, at the price of rewriting the file for every message queued
    for a consumer. ``save_every_change`` False saves every 60 s and at a clean stop, as
    config/mosquitto/consentgate.conf does.
    """
    # The per-client queue is large enough that counting deliveries is not counting the
    # broker's drops (docs/performance.md).
    extra = "" if save_every_change else "autosave_on_changes false\nautosave_interval 60\n"
    return Mosquitto(workdir, "allow_anonymous true\n" + extra, port)


def _verdict(summary: dict[str, Any], lost: int, left: int) -> bool:
    return (
        lost == 0
        and summary["rejected"] == 0
        and summary["held_unopened"] == 0
        and summary["held_dropped"] == 0
        and left == 0
    )


class AckTracker:
    """Records which (epoch, seq) records the broker acknowledged to an in-process hub.

    Wraps three methods of the hub's outbox on the instance (no change to the hub's code):
    ``append`` (the epoch of each record's kid), ``fetch_after`` (row id -> kid and seq) and
    ``delete`` (the rows acknowledged). A record the consumer lacks but the broker acknowledged
    was lost by the broker, not the hub.
    """

    def __init__(self, hub: Hub) -> None:
        self.acked: set[tuple[int, int]] = set()
        self._epoch_of: dict[bytes, int] = {}
        self._rows: dict[int, tuple[bytes, int]] = {}
        outbox = hub.outbox
        append, fetch_after, delete = outbox.append, outbox.fetch_after, outbox.delete

        async def tracked_append(rows: Sequence[OutboxRow], prev_hash: bytes | None = None) -> int:
            """Note each record's epoch by its kid, then append."""
            for row in rows:
                if row.category != EPOCH_CATEGORY:
                    self._epoch_of[parse_record(row.payload).header.kid] = row.epoch
            return await append(rows, prev_hash)

        async def tracked_fetch(last_id: int, limit: int) -> list[Pending]:
            """Fetch, noting each record row's kid and seq."""
            rows = await fetch_after(last_id, limit)
            for row in rows:
                if row.category != EPOCH_CATEGORY:
                    parsed = parse_record(row.payload)
                    self._rows[row.id] = (parsed.header.kid, parsed.seq)
            return rows

        def tracked_delete(ids: Sequence[int], size: int) -> int:
            """Note the acknowledged records, then delete them."""
            for row_id in ids:
                entry = self._rows.pop(row_id, None)
                if entry is not None and entry[0] in self._epoch_of:
                    self.acked.add((self._epoch_of[entry[0]], entry[1]))
            return delete(ids, size)

        outbox.append = tracked_append  # type: ignore[method-assign]
        outbox.fetch_after = tracked_fetch  # type: ignore[method-assign]
        outbox.delete = tracked_delete  # type: ignore[method-assign]


def _counter(state_dir: Path, recipient_key: Path, hub_id: str, port: int) -> RecordCounter:
    # The hub key is created here, as the hub would at its first start, so the consumer can
    # subscribe before the first record exists.
    state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    return RecordCounter.for_hub(state_dir, recipient_key, hub_id, port, f"consentgate/{hub_id}")


async def broker_kills(
    workdir: Path,
    cycles: int,
    *,
    devices: int = 30,
    rate_hz: float = 20.0,
    seed: int = 1,
    save_every_change: bool = True,
) -> dict[str, Any]:
    """Run campaign (a) and return its figures (``ok`` False on any loss or refusal)."""
    rng = random.Random(seed)
    broker = fault_broker(workdir / "broker", save_every_change=save_every_change).start()
    config = bench_config(
        workdir / "hub",
        broker.port,
        "fault-broker",
        simulator={"devices": devices, "rate_hz": rate_hz},
    )
    counter = _counter(
        config.state_dir, workdir / "hub" / "keys" / "recipient.key", config.hub_id, broker.port
    )
    downtimes: list[float] = []
    reconnects: list[float] = []
    backlog: list[int] = []  # outbox rows at each kill
    started = time.perf_counter()
    try:
        async with consuming(counter):
            async with running_hub(config) as hub:
                tracker = AckTracker(hub)
                for flag, state in GRANTS:
                    response = await hub.router.dispatch(
                        "consent/set", f'{{"flag": "{flag}", "state": "{state}"}}'.encode()
                    )
                    if response.body["status"] != "ok":
                        raise RuntimeError(f"consent/set refused: {response.body}")
                for _ in range(cycles):
                    await _flowing(counter)
                    await asyncio.sleep(rng.uniform(0.5, 2.0))  # streaming, then the crash
                    backlog.append(hub.outbox.rows)
                    broker.kill9()
                    down = rng.uniform(0.2, 1.5)
                    await asyncio.sleep(down)
                    downtimes.append(down)
                    before = hub.link.connects
                    broker.start()
                    back = time.perf_counter()
                    while hub.link.connects == before:
                        await asyncio.sleep(0.01)
                    reconnects.append(time.perf_counter() - back)
                await _flowing(counter)
                caught_up = await _caught_up(hub, devices * rate_hz)
            # the block's end stopped the hub gracefully: simulator off, outbox drained
            last_epoch, last_seq = hub.sealer.epoch, hub.sealer.seq
            settled = await _settled(counter)
    finally:
        broker.stop()
    summary = counter.summary()
    opened_last = counter.seqs.get(last_epoch, set())
    tail = {(last_epoch, seq) for seq in range(last_seq)} - {(last_epoch, s) for s in opened_last}
    missing = set(counter.gaps()) | tail
    queued = queued_records(config.state_dir)
    lost = sorted(missing - queued)
    lost_after_puback = len([m for m in lost if m in tracker.acked])
    left = len(queued)
    return {
        "cycles": cycles,
        "broker_saves_every_change": save_every_change,
        "seconds": time.perf_counter() - started,
        **summary,
        "lost": len(lost),  # gaps and the last epoch's tail, less what is still queued
        "lost_sample": lost[:20],
        # a lost record the broker had acknowledged was lost by the broker (QoS 1 ends there)
        "lost_after_puback": lost_after_puback,
        "outbox_left": left,
        "caught_up_before_stop": caught_up,
        "settled": settled,
        "hub_connects": hub.link.connects,
        "downtime_s_median": _median(downtimes),
        "reconnect_s_median": _median(reconnects),
        "reconnect_s_max": max(reconnects, default=0),
        "reconnect_s": [round(r, 2) for r in reconnects],
        "outbox_rows_at_kill": backlog,
        # the hub's verdict: nothing lost that the broker had not acknowledged (a broker killed
        # between its PUBACK and its next save loses what it acknowledged: QoS 1 ends there)
        "ok": _verdict(summary, len(lost) - lost_after_puback, left) and settled,
    }


async def daemon_kills(
    workdir: Path, cycles: int, *, devices: int = 30, rate_hz: float = 20.0, seed: int = 2
) -> dict[str, Any]:
    """Run campaign (b) and return its figures (``ok`` False on any loss or refusal)."""
    rng = random.Random(seed)
    broker = fault_broker(workdir / "broker").start()
    spec = DaemonSpec(
        "fault-daemon", workdir / "hub", broker.port, devices=devices, rate_hz=rate_hz
    )
    spec.workdir.mkdir(parents=True, exist_ok=True)
    spec.write()
    counter = _counter(
        spec.state_dir, spec.recipient_dir / "recipient.key", spec.hub_id, broker.port
    )
    ready: list[float] = []
    left_at_kill: list[int] = []
    started = time.perf_counter()
    root = f"consentgate/{spec.hub_id}"
    try:
        async with consuming(counter):
            for cycle in range(cycles + 1):
                epochs = set(counter.seqs)
                daemon = DaemonProcess(spec)
                daemon.start()
                try:
                    ready.append(await asyncio.to_thread(daemon.wait_ready))
                    if cycle == 0:
                        for flag, state in GRANTS:
                            async with asyncio.timeout(FLOW_TIMEOUT_S):
                                answer = await request(
                                    broker.port, root, "consent/set", {"flag": flag, "state": state}
                                )
                            if answer.get("status") != "ok":
                                raise RuntimeError(f"consent/set refused: {answer}")
                    deadline = time.monotonic() + FLOW_TIMEOUT_S
                    while not set(counter.seqs) - epochs:  # records of the new epoch arrive
                        if time.monotonic() > deadline:
                            raise RuntimeError("no records of the restarted daemon's epoch")
                        await asyncio.sleep(0.02)
                    await asyncio.sleep(rng.uniform(0.5, 3.0))
                    if cycle < cycles:
                        daemon.kill9()
                        left_at_kill.append(outbox_left(spec.state_dir))
                        continue
                    code = await asyncio.to_thread(daemon.stop)
                    if code != 0:
                        raise RuntimeError(f"daemon exited with {code}; see {daemon.log_path}")
                finally:
                    daemon.kill9()
            settled = await _settled(counter)
    finally:
        broker.stop()
    summary = counter.summary()
    queued = queued_records(spec.state_dir)
    lost = sorted(set(counter.gaps()) - queued)
    left = len(queued)
    return {
        "cycles": cycles,
        "seconds": time.perf_counter() - started,
        **summary,
        "lost": len(lost),
        "lost_sample": lost[:20],
        "outbox_left": left,
        "settled": settled,
        "ready_s_median": _median(ready),
        "outbox_rows_at_kill_median": _median([float(n) for n in left_at_kill]),
        "ok": _verdict(summary, len(lost), left) and settled,
    }


async def _caught_up(hub: Hub, rate: float) -> bool:
    """Wait until the outbox holds at most a second of readings; False after the timeout."""
    try:
        async with asyncio.timeout(CATCH_UP_TIMEOUT_S):
            while hub.outbox.rows > max(100.0, rate):
                await asyncio.sleep(0.05)
    except TimeoutError:
        return False
    return True


async def _flowing(counter: RecordCounter, records: int = 100) -> None:
    try:
        async with asyncio.timeout(FLOW_TIMEOUT_S):
            await counter.wait_opened(counter.opened + records)
    except TimeoutError:
        raise RuntimeError(f"no new records within {FLOW_TIMEOUT_S} s") from None


async def _settled(counter: RecordCounter) -> bool:
    """Return True once the consumer idled for IDLE_S; False if it never did in time."""
    try:
        async with asyncio.timeout(SETTLE_TIMEOUT_S):
            await counter.quiet(IDLE_S)
    except TimeoutError:
        return False
    return True


def _median(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[len(ordered) // 2] if ordered else 0.0
