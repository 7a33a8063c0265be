"""The fuzz campaign: every target with its budget, the report, the results file."""

from __future__ import annotations

import argparse
import asyncio
import logging
import time
from collections.abc import Callable, Mapping
from typing import Any, Final

from bench.common import write_results
from bench.fuzz.ble import fuzz_ble
from bench.fuzz.commands import fuzz_commands
from bench.fuzz.findings import Findings
from bench.fuzz.rpc import fuzz_rpc
from bench.fuzz.txt import fuzz_txt
from bench.fuzz_envelope import run as fuzz_envelopes

TARGETS: Final = ("ble", "txt", "rpc", "commands", "envelopes")
FULL: Final = {
    "ble": 300_000,
    "txt": 150_000,
    "rpc": 150_000,
    "commands": 60_000,
    "envelopes": 400_000,
}
QUICK: Final = {"ble": 6_000, "txt": 3_000, "rpc": 3_000, "commands": 4_000, "envelopes": 4_000}
PROJECT_DIRS: Final = ("/gateway/", "/drivers/")


def run_target(target: str, inputs: int, seed: int) -> Findings:
    """Fuzz one target with ``inputs`` inputs; return its findings."""
    started = time.perf_counter()
    if target == "ble":
        findings = fuzz_ble(inputs, seed)
    elif target == "txt":
        findings = fuzz_txt(inputs, seed)
    elif target == "rpc":
        findings = fuzz_rpc(inputs, seed)
    elif target == "commands":
        findings = asyncio.run(fuzz_commands(inputs, seed))
    elif target == "envelopes":
        findings = Findings("envelopes", inputs)
        try:
            findings.outcomes.update(fuzz_envelopes(inputs, seed))
        except Exception as exc:  # noqa: BLE001 - the envelope fuzzer stops at its first crash
            findings.crash(exc, "see the input bench.fuzz_envelope printed")
    else:
        raise ValueError(f"unknown target {target!r}; one of {', '.join(TARGETS)}")
    findings.seconds = time.perf_counter() - started
    return findings


def run_campaign(
    budget: Mapping[str, int], seed: int, report: Callable[[Findings], None] | None = None
) -> dict[str, Any]:
    """Fuzz every target in ``budget`` (target -> inputs); return the JSON-ready results."""
    results = []
    for target, inputs in budget.items():
        findings = run_target(target, inputs, seed)
        if report is not None:
            report(findings)
        results.append(findings.summary())
    return {
        "seed": seed,
        "inputs": sum(r["inputs"] for r in results),
        "crashes": sum(r["crashes"] for r in results),
        "targets": results,
    }


def print_findings(findings: Findings) -> None:
    """Print one line per target, then each crash kind with an input that causes it."""
    print(
        f"{findings.target:<10} {findings.inputs:>9,} inputs {findings.seconds:7.1f} s "
        f"{findings.crash_count:>7,} crashes",
        flush=True,
    )
    for signature, crash in findings.crashes.items():
        print(
            f"    CRASH x{crash['count']}: {signature}\n      {crash['error']}\n"
            f"      input: {crash['example']}",
            flush=True,
        )


def main(argv: list[str] | None = None) -> int:
    """Run the fuzz campaign; exit 1 if anything crashed."""
    parser = argparse.ArgumentParser(prog="python -m bench.fuzz_inputs")
    parser.add_argument("--quick", action="store_true", help="20k inputs in all (CI)")
    parser.add_argument("--scale", type=float, default=1.0, help="multiply every budget")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--only", choices=TARGETS, action="append")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.CRITICAL)
    base = QUICK if args.quick else FULL
    budget = {
        t: max(1, round(n * args.scale)) for t, n in base.items() if not args.only or t in args.only
    }
    result = run_campaign(budget, args.seed, print_findings)
    print(f"{result['inputs']:,} inputs, {result['crashes']:,} crashes")
    print(f"written {write_results('fuzz_inputs', result)}")
    return 1 if result["crashes"] else 0


if __name__ == "__main__":
    raise SystemExit(main())
