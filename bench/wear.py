"""W: storage written per record (SD-card wear) and fsyncs per acknowledged change.

``python -m bench.wear [--devices N] [--rate-hz R] [--seconds S] [--acks K]`` runs the daemon as
a child process (500 simulated devices at 2 readings/s: the load a hub is sized for; the
default consent forwards a third of them) against a private Mosquitto, and reads the bytes the
kernel wrote to storage for it (``/proc/<pid>/io`` ``write_bytes``) over three windows:

1. steady, broker up, ``commit_interval_s = 1`` (the default): bytes per record forwarded;
   goal <= 100 B.
2. the same, ``commit_interval_s = 0`` (every batch committed, as before group commits): the
   baseline measured in the same run, so the table shows how much the group commit saves.
3. outage (broker stopped): bytes per record queued, against the limit of 2 x the mean sealed
   record size measured in this run.

The outbox file's layout is then measured on its own (no daemon): the bytes written per row
for each page size and journal mode (and ``auto_vacuum=FULL``, and a cache of 10 pages) when
the rows of the outage's rate are committed once a second, with the row format of
gateway/outbox/table.py.

Then, on a hub with no devices (nothing else to write), 10 acknowledged changes (``try_now``
on/off) are sent while ``strace -c`` counts the daemon's fsync/fdatasync calls; the same window
without requests is subtracted, so the figure is fsyncs per acknowledgement, everything it
causes included (its commit, the purge of its tombstones, WAL checkpoints).
Writes bench/results/wear.json.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import shutil
import sqlite3
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any, Final

from bench.common import default_broker, write_results
from bench.fault_proc import DaemonProcess, DaemonSpec
from bench.startup import Counter
from gateway.demo.broker import Mosquitto
from gateway.outbox.table import BOX_SCHEMA
from gateway.storage.db import OUTBOX_FILE

HUB_ID: Final = "bench-wear"
STEADY_GOAL_B: Final = 100.0
ACK_GAP_S: Final = 0.3
CARD_BYTES: Final = 32e9
# Consumer TLC SD cards are rated for a few hundred full writes; 300 is a cautious middle.
CARD_FULL_WRITES: Final = 300


def _write_bytes(pid: int) -> int:
    text = Path(f"/proc/{pid}/io").read_text()
    found = re.search(r"^write_bytes:\s+(\d+)", text, re.MULTILINE)
    assert found is not None
    return int(found.group(1))


def _pid(daemon: DaemonProcess) -> int:
    assert daemon.proc is not None
    return daemon.proc.pid


def _queued_rows(state: Path) -> int:
    uri = f"{(state / OUTBOX_FILE).resolve().as_uri()}?mode=ro"
    with contextlib.closing(sqlite3.connect(uri, uri=True)) as db:
        return int(db.execute("SELECT COUNT(*) FROM outbox").fetchone()[0])


def _steady(
    workdir: Path, broker: Mosquitto, devices: int, rate: float, seconds: float, interval: float
) -> dict[str, Any]:
    spec = DaemonSpec(
        HUB_ID,
        workdir,
        broker.port,
        devices=devices,
        rate_hz=rate,
        extra_toml=f"[outbox]\ncommit_interval_s = {interval}\n",
    )
    workdir.mkdir()
    daemon = DaemonProcess(spec)
    daemon.start()
    counter = Counter(broker.port, f"consentgate/{HUB_ID}")
    try:
        daemon.wait_ready()
        counter.request("try_now", {"enabled": False})  # waits until the hub is online
        time.sleep(3.0)  # start-up writes (keys, schema, first epoch) are not the steady state
        pid = _pid(daemon)
        bytes0, count0, size0, t0 = _write_bytes(pid), counter.count, counter.bytes, time.time()
        time.sleep(seconds)
        written = _write_bytes(pid) - bytes0
        forwarded = counter.count - count0
        record_size = (counter.bytes - size0) / max(1, forwarded)
        elapsed = time.time() - t0
        outage: dict[str, Any] = {}
        if interval > 0:
            outage = _outage(daemon, broker, spec.state_dir, seconds, record_size)
    finally:
        counter.close()
        if broker.proc is None or broker.proc.poll() is not None:
            broker.start()
        daemon.stop()
    return {
        "commit_interval_s": interval,
        "forwarded_per_s": forwarded / elapsed,
        "bytes_written_per_s": written / elapsed,
        "bytes_per_record": written / max(1, forwarded),
        "record_size_b": record_size,
        **outage,
    }


def _outage(
    daemon: DaemonProcess, broker: Mosquitto, state: Path, seconds: float, record_size: float
) -> dict[str, Any]:
    broker.stop()
    time.sleep(2.0)  # the hub notices; what it had in memory reaches the disk
    pid = _pid(daemon)
    rows0, bytes0 = _queued_rows(state), _write_bytes(pid)
    time.sleep(seconds)
    written = _write_bytes(pid) - bytes0
    queued = _queued_rows(state) - rows0
    broker.start()
    return {
        "outage_records_queued": queued,
        "outage_bytes_per_record": written / max(1, queued),
        "outage_limit_b": 2 * record_size,
    }


# (page size, journal mode, auto_vacuum, cache_size in pages or 0 for the default): the layout
# the outbox uses first
LAYOUTS: Final[tuple[tuple[int, str, str, int], ...]] = (
    (4096, "TRUNCATE", "NONE", 0),
    (4096, "PERSIST", "NONE", 0),
    (4096, "DELETE", "NONE", 0),
    (4096, "TRUNCATE", "FULL", 0),
    (4096, "TRUNCATE", "NONE", 10),
    (1024, "TRUNCATE", "NONE", 0),
    (2048, "TRUNCATE", "NONE", 0),
    (8192, "TRUNCATE", "NONE", 0),
)
LAYOUT_COMMITS: Final = 40


def _layout(workdir: Path, layout: tuple[int, str, str, int], per_commit: int, size: int) -> float:
    """Return bytes written per row to an outbox file of ``layout`` (page size, journal mode,
    auto_vacuum, cache_size), ``per_commit`` rows of ``size`` payload bytes per commit."""
    page_size, journal, vacuum, cache = layout
    path = workdir / f"outbox-{page_size}-{journal}-{vacuum}-{cache}.db"
    db = sqlite3.connect(path, isolation_level=None)
    try:
        for pragma in (
            f"PRAGMA page_size={page_size}",
            f"PRAGMA auto_vacuum={vacuum}",
            f"PRAGMA journal_mode={journal}",
            "PRAGMA synchronous=FULL",
            "PRAGMA secure_delete=FAST",
            *([f"PRAGMA cache_size={cache}"] if cache else []),
        ):
            db.execute(pragma)
        db.executescript(BOX_SCHEMA)
        db.executemany(
            "INSERT INTO routes VALUES (?, ?, ?, 'telemetry.environment', 0, 86401)",
            [
                (i, f"consentgate/{HUB_ID}/data/{i:016x}/telemetry.environment", f"{i:016x}")
                for i in range(500)
            ],
        )
        now, next_id = int(time.time()), 1

        def commit() -> None:
            nonlocal next_id
            db.execute("BEGIN")
            db.executemany(
                "INSERT INTO outbox (id, route, epoch, created, payload) VALUES (?, ?, 3, ?, ?)",
                [(next_id + k, k % 500, now, os.urandom(size)) for k in range(per_commit)],
            )
            db.execute("COMMIT")
            next_id += per_commit

        for _ in range(5):  # the table has interior pages, as after a few seconds of outage
            commit()
        before = _write_bytes(os.getpid())
        for _ in range(LAYOUT_COMMITS):
            commit()
        return (_write_bytes(os.getpid()) - before) / (per_commit * LAYOUT_COMMITS)
    finally:
        db.close()


def _layouts(workdir: Path, per_commit: int, size: int) -> dict[str, float]:
    """Return bytes written per row for every layout of ``LAYOUTS``."""
    workdir.mkdir()
    names = {
        layout: f"{layout[0]} B pages, {layout[1].lower()}"
        + (", auto_vacuum" if layout[2] == "FULL" else "")
        + (f", cache {layout[3]} pages" if layout[3] else "")
        for layout in LAYOUTS
    }
    return {names[layout]: _layout(workdir, layout, per_commit, size) for layout in LAYOUTS}


def fsync_calls(report: str) -> int:
    """Return the fsync and fdatasync calls an ``strace -c`` summary counts.

    Its rows are ``% time, seconds, usecs/call, calls, [errors,] syscall``: the calls are the
    fourth column whether or not the errors column is filled.
    """
    calls = 0
    for line in report.splitlines():
        cells = line.split()
        if len(cells) >= 5 and cells[-1] in ("fsync", "fdatasync"):
            calls += int(cells[3])
    return calls


def _fsyncs_per_ack(daemon: DaemonProcess, counter: Counter, acks: int = 10) -> dict[str, Any]:
    if shutil.which("strace") is None:
        return {"fsyncs_per_ack": None}

    reports: list[str] = []

    def traced(action: Any) -> int:
        trace = subprocess.Popen(  # -p PID -f attaches every thread of PID, once each
            ["strace", "-f", "-c", "-e", "trace=fsync,fdatasync", f"-p{_pid(daemon)}"],
            stderr=subprocess.PIPE,
            text=True,
        )
        time.sleep(0.5)
        began = time.monotonic()
        action()
        spent = time.monotonic() - began
        trace.send_signal(2)
        _, report = trace.communicate(timeout=30)
        reports.append(report)
        return fsync_calls(report) if spent > 0 else 0

    def toggles() -> None:
        for n in range(acks):
            counter.request("try_now", {"enabled": n % 2 == 0})
            time.sleep(ACK_GAP_S)  # under the per-client rate limit

    started = time.monotonic()
    with_acks = traced(toggles)
    window = time.monotonic() - started
    idle = traced(lambda: time.sleep(max(0.1, window - 1.0)))
    return {
        "fsyncs_per_ack": (with_acks - idle) / acks,
        "fsyncs_idle_window": idle,
        "strace": reports,
    }


def _acks_alone(workdir: Path, broker: Mosquitto) -> dict[str, Any]:
    """fsyncs per acknowledged change on a hub with nothing else to write (no devices)."""
    spec = DaemonSpec(HUB_ID, workdir, broker.port)
    workdir.mkdir()
    daemon = DaemonProcess(spec)
    daemon.start()
    counter = Counter(broker.port, f"consentgate/{HUB_ID}")
    try:
        daemon.wait_ready()
        counter.request("try_now", {"enabled": False})
        time.sleep(1.0)
        return _fsyncs_per_ack(daemon, counter)
    finally:
        counter.close()
        daemon.stop()


def measure(devices: int, rate: float, seconds: float) -> dict[str, Any]:
    """Return the steady figures (group commit and baseline) and the outage figure."""
    with tempfile.TemporaryDirectory(prefix="cg-wear-") as tmp:
        workdir = Path(tmp)
        broker = default_broker(workdir / "broker")
        try:
            grouped = _steady(workdir / "grouped", broker, devices, rate, seconds, 1.0)
            each = _steady(workdir / "each", broker, devices, rate, seconds, 0.0)
            grouped |= _acks_alone(workdir / "acks", broker)
        finally:
            broker.stop()
        per_commit = max(1, round(grouped["outage_records_queued"] / seconds))
        layouts = _layouts(workdir / "layouts", per_commit, round(grouped["record_size_b"]))
    per_day = grouped["bytes_written_per_s"] * 86400
    return {
        "devices": devices,
        "rate_hz": rate,
        "seconds": seconds,
        "group_commit": grouped,
        "every_batch": each,
        "saving": (  # None: the group commit wrote nothing in the window
            each["bytes_per_record"] / grouped["bytes_per_record"]
            if grouped["bytes_per_record"]
            else None
        ),
        "outbox_layouts_bytes_per_record": layouts,
        "gb_written_per_day": per_day / 1e9,
        "card_years_32gb": CARD_BYTES * CARD_FULL_WRITES / per_day / 365 if per_day else None,
    }


def main(argv: list[str] | None = None) -> int:
    """Run the wear benchmark and print its table."""
    parser = argparse.ArgumentParser(prog="python -m bench.wear")
    parser.add_argument("--devices", type=int, default=500)
    parser.add_argument("--rate-hz", type=float, default=2.0)
    parser.add_argument("--seconds", type=float, default=30.0)
    args = parser.parse_args(argv)
    r = measure(args.devices, args.rate_hz, args.seconds)
    g, e = r["group_commit"], r["every_batch"]
    print(
        f"W storage writes, {args.devices} devices x {args.rate_hz:g}/s, {args.seconds:g} s windows"
    )
    print(f"{'forwarded (records/s)':46} {g['forwarded_per_s']:10.0f}")
    print(f"{'mean sealed record (B)':46} {g['record_size_b']:10.0f}")
    print(
        f"{'bytes written per record, every batch (B)':46} {e['bytes_per_record']:10.0f}  baseline"
    )
    ok = g["bytes_per_record"] <= STEADY_GOAL_B
    saving = "nothing written" if r["saving"] is None else f"{r['saving']:.0f}x less"
    print(
        f"{'bytes written per record, group commit (B)':46} {g['bytes_per_record']:10.1f}  "
        f"goal <= {STEADY_GOAL_B:.0f}: {'ok' if ok else 'MISSED'} ({saving})"
    )
    limit = g["outage_limit_b"]
    ratio = g["outage_bytes_per_record"] / limit
    print(
        f"{'bytes written per record queued, outage (B)':46} {g['outage_bytes_per_record']:10.0f}  "
        f"{ratio:.2f} x limit (2 x record = {limit:.0f} B): {'ok' if ratio <= 1 else 'MISSED'}"
    )
    for name, per_row in r["outbox_layouts_bytes_per_record"].items():
        print(f"  outbox file alone, {name:38} {per_row:6.0f}  {per_row / limit:.2f} x limit")
    if g.get("fsyncs_per_ack") is not None:
        print(f"{'fsyncs per acknowledged change, all its work':46} {g['fsyncs_per_ack']:10.1f}")
    years = r["card_years_32gb"]
    wear = (
        "the hub wrote nothing: no wear at this load"
        if years is None
        else f"a 32 GB card rated {CARD_FULL_WRITES} full writes lasts {years:,.0f} years"
    )
    print(f"{'written per day (GB)':46} {r['gb_written_per_day']:10.3f}  {wear}")
    print(f"written {write_results('wear', r)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
