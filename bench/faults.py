"""The fault campaign: one command, bounded in time, everything on loopback.

``python -m bench.faults [--quick] [--only broker,daemon,outage,fuzz] [--seed S]`` runs

(a) ``broker``: 20 broker kill -9 / restart cycles while a hub streams (bench.fault_kills);
(b) ``daemon``: 10 kill -9 / restart cycles of the daemon as a child process (bench.fault_kills);
(c) ``outage``: 24 h at 100 readings/s (8.64M readings) compressed in time into an outbox capped
    at 100k rows with ``drop_oldest``, then the broker appears and the backlog drains; and 1 h
    with ``reject_new`` at a 10k cap (bench.fault_outage);
(d) ``fuzz``: >= 1M inputs over adverts, TXT records, RPC answers, commands and envelopes
    (bench.fuzz_inputs).

``--only broker-shipped`` runs (a) against a broker saving its persistence every 60 s (as
config/mosquitto/consentgate.conf): records the broker acknowledged and then lost at its kill
-9 are counted apart from what the hub lost (which must be 0).

Goals: 0 lost and only QoS 1 redeliveries as duplicates (dropped by the consumer's replay
check); outbox rows never above the cap, every overflow audited, no crash, the surviving
backlog delivered; 0 fuzz crashes and every bad command answered with a stable error code.
``--quick`` runs a short version of each (about a minute). Prints one summary table and writes
bench/results/faults.json; exits 1 if any goal is missed.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from bench.common import machine, write_results
from bench.fault_kills import broker_kills, daemon_kills
from bench.fault_outage import compressed_outage
from bench.fuzz_inputs import FULL, QUICK, print_findings, run_campaign

PARTS: Final = ("broker", "daemon", "outage", "fuzz")
# Run only when named: (a) against the broker persistence the project ships (saved every 60 s).
EXTRA_PARTS: Final = ("broker-shipped",)


@dataclass(frozen=True, slots=True)
class Plan:
    """How big each part of the campaign is."""

    broker_cycles: int
    daemon_cycles: int
    outage_hours: float
    outage_max_rows: int
    reject_hours: float
    reject_max_rows: int
    fuzz: dict[str, int]


FULL_PLAN: Final = Plan(20, 10, 24.0, 100_000, 1.0, 10_000, dict(FULL))
QUICK_PLAN: Final = Plan(3, 2, 0.25, 5_000, 0.05, 2_000, dict(QUICK))


def run_part(part: str, plan: Plan, seed: int) -> dict[str, Any]:
    """Run one part of the campaign in a fresh temporary directory; return its results."""
    with tempfile.TemporaryDirectory(prefix=f"cg-fault-{part}-") as tmp:
        workdir = Path(tmp)
        if part == "broker":
            return asyncio.run(broker_kills(workdir, plan.broker_cycles, seed=seed))
        if part == "broker-shipped":
            result = asyncio.run(
                broker_kills(workdir, plan.broker_cycles, seed=seed, save_every_change=False)
            )
            # The hub is judged on what it lost; what the broker acknowledged and then lost
            # at its kill -9 is the broker configuration's, reported beside it.
            hub_lost = result["lost"] - result["lost_after_puback"]
            return {**result, "ok": hub_lost == 0 and result["outbox_left"] == 0}
        if part == "daemon":
            return asyncio.run(daemon_kills(workdir, plan.daemon_cycles, seed=seed + 1))
        if part == "outage":
            drop = asyncio.run(
                compressed_outage(
                    workdir / "drop", hours=plan.outage_hours, max_rows=plan.outage_max_rows
                )
            )
            reject = asyncio.run(
                compressed_outage(
                    workdir / "reject",
                    hours=plan.reject_hours,
                    max_rows=plan.reject_max_rows,
                    policy="reject_new",
                )
            )
            return {"drop_oldest": drop, "reject_new": reject, "ok": drop["ok"] and reject["ok"]}
        if part == "fuzz":
            result = run_campaign(plan.fuzz, seed, print_findings)
            return {**result, "ok": result["crashes"] == 0}
    raise ValueError(f"unknown part {part!r}; one of {', '.join(PARTS + EXTRA_PARTS)}")


def rows(part: str, r: dict[str, Any]) -> list[tuple[str, str, str, str]]:
    """Return the table rows (measure, value, goal, verdict) of one part's results."""

    def verdict(ok: bool) -> str:
        """Return the verdict word for ``ok``."""
        return "ok" if ok else "FAILED"

    if part == "broker-shipped":
        return [
            (
                f"(a') broker kill -9 x{r['cycles']}, broker saving every 60 s",
                f"{r['opened']:,} opened, {r['seconds']:.0f} s",
                "",
                "",
            ),
            (
                "    lost: acknowledged by the broker / not",
                f"{r['lost_after_puback']} / {r['lost'] - r['lost_after_puback']}",
                "- / 0",
                verdict(r["ok"]),
            ),
        ]
    if part in ("broker", "daemon"):
        name = "(a) broker kill -9" if part == "broker" else "(b) daemon kill -9"
        extra = (
            f", reconnect median {r['reconnect_s_median']:.1f} s, max {r['reconnect_s_max']:.1f} s"
            if part == "broker"
            else f", READY median {r['ready_s_median']:.2f} s"
        )
        return [
            (
                f"{name} x{r['cycles']}: records opened",
                f"{r['opened']:,} in {r['epochs']} epochs, {r['seconds']:.0f} s{extra}",
                "",
                "",
            ),
            ("    lost (missing, not in the outbox)", f"{r['lost']}", "0", verdict(r["lost"] == 0)),
            (
                "    duplicates (dropped by replay check)",
                f"{r['duplicates_dropped']:,}",
                "QoS 1 redelivery only",
                verdict(r["rejected"] == 0),
            ),
            (
                "    refused / unopened / left in outbox",
                f"{r['rejected']} / {r['held_unopened'] + r['held_dropped']} / {r['outbox_left']}",
                "0 / 0 / 0",
                verdict(r["ok"]),
            ),
        ]
    if part == "outage":
        out = []
        for policy in ("drop_oldest", "reject_new"):
            o = r[policy]
            out += [
                (
                    f"(c) {o['hours']:g} h x {o['rate_hz']:g}/s outage, {policy}",
                    f"{o['readings']:,} readings in {o['ingest_s']:.0f} s "
                    f"({o['ingest_readings_s']:,.0f}/s)",
                    "",
                    "",
                ),
                (
                    "    outbox rows, max seen / on disk",
                    f"{o['max_rows_seen']:,} / {o['rows_on_disk']:,}",
                    f"<= {o['max_rows']:,}",
                    verdict(
                        o["max_rows_seen"] <= o["max_rows"] and o["rows_on_disk"] <= o["max_rows"]
                    ),
                ),
                (
                    "    overflow audited (entries, records)",
                    f"{o['audit_entries']:,}, {o['audited_records']:,}",
                    f"= dropped {o['overflow_dropped'] + o['overflow_rejected']:,}",
                    verdict(
                        o["audited_records"] == o["overflow_dropped"] + o["overflow_rejected"]
                        and o["audit_entries"] > 0
                        and o["audit_chain_ok"]
                    ),
                ),
                (
                    "    hub RSS start / max (MiB)",
                    f"{o['rss_start_mib']:.0f} / {o['rss_max_mib']:.0f}",
                    "no crash",
                    verdict(o["health_ok"]),
                ),
                (
                    "    backlog delivered after the outage",
                    f"{o['opened']:,} of "
                    f"{o['backlog_records']:,}, reconnect {o['reconnect_s']:.1f} s, drain "
                    f"{o['drain_s']:.1f} s",
                    "all, no hole",
                    verdict(o["ok"]),
                ),
            ]
        return out
    out = [
        (
            f"(d) fuzz {t['target']}",
            f"{t['inputs']:,} inputs, {t['seconds']:.0f} s",
            "0 crashes",
            verdict(t["crashes"] == 0) + ("" if not t["crashes"] else f" ({t['crashes']})"),
        )
        for t in r["targets"]
    ]
    out.append(("(d) fuzz total", f"{r['inputs']:,} inputs", ">= 1M full", verdict(r["ok"])))
    return out


def print_table(table: list[tuple[str, str, str, str]]) -> None:
    """Print the summary table."""
    print(f"\n{'measure':<44} {'value':<58} {'goal':<22} verdict")
    for measure, value, goal, verdict in table:
        print(f"{measure:<44} {value:<58} {goal:<22} {verdict}")


def main(argv: list[str] | None = None) -> int:
    """Run the campaign, print the summary table, write faults.json; 1 if a goal is missed."""
    parser = argparse.ArgumentParser(prog="python -m bench.faults")
    parser.add_argument("--quick", action="store_true", help="a short run for CI")
    parser.add_argument("--only", help="comma-separated parts: " + ",".join(PARTS + EXTRA_PARTS))
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--out", type=Path, help="write the JSON here instead")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.CRITICAL)  # expected faults log loudly; the table reports
    logging.getLogger("mqtt").setLevel(logging.CRITICAL)
    plan = QUICK_PLAN if args.quick else FULL_PLAN
    parts = args.only.split(",") if args.only else list(PARTS)
    info = machine()
    print(
        f"fault campaign ({'quick' if args.quick else 'full'}) on {info['cpu']}, "
        f"{info['cpus']} CPUs, Python {info['python']}, Mosquitto {info['mosquitto']}, "
        f"{info['date']}",
        flush=True,
    )
    results: dict[str, Any] = {}
    table: list[tuple[str, str, str, str]] = []
    started = time.perf_counter()
    for part in parts:
        begun = time.perf_counter()
        print(f"-- {part} ...", flush=True)
        results[part] = run_part(part, plan, args.seed)
        print(
            f"-- {part}: {'ok' if results[part]['ok'] else 'FAILED'} in "
            f"{time.perf_counter() - begun:.0f} s",
            flush=True,
        )
        table += rows(part, results[part])
    print_table(table)
    ok = all(r["ok"] for r in results.values())
    elapsed = time.perf_counter() - started
    print(f"\n{'all goals met' if ok else 'GOALS MISSED'} in {elapsed:.0f} s")
    payload = {"quick": args.quick, "seed": args.seed, "seconds": elapsed, "ok": ok, **results}
    print(f"written {write_results('faults', payload, args.out)}")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
