"""B3: BLE advertisements per second through match + dedupe + decode, one core, against the
same advertisements decoded one by one with the reference libraries alone, same run.

``python -m bench.ble_adverts [--count N] [--runs R]``: advertisements from the BLE simulator
(BTHome v2 thermometers, every third encrypted with its bind key, and Mi Scales) are taken the
way bleak's detection callback hands them over (``BLEDevice`` + ``AdvertisementData``) and pushed
through exactly what ``gateway.discovery.ble`` runs for a paired device: ``BleIngest.classify``
(allow/deny/RSSI filters, cached match), ``is_duplicate``, then the device's own decoder.

The limit is each advertisement decoded by the reference library alone (bthome-ble's
``update()``, theengsdecoder's ``decodeBLE``), without match or duplicate suppression.
Scenarios: every message sent 10 times (90 % duplicates; goal >= 100k/s) and every
advertisement new (goal >= 30k/s), plus one row per kind. Prints a table, writes
bench/results/ble_adverts.json.
"""

from __future__ import annotations

import argparse
import gc
import importlib
import json
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final

from bleak.backends.device import BLEDevice
from bleak.backends.scanner import AdvertisementData

from bench.common import peak_rss_mib, write_results
from drivers.ble import Advert
from drivers.ble.bthome import BTHOME_V2_UUID
from drivers.ble.simulator import SCALE, THERMOMETER, BleSimulator
from gateway.config import BleConfig
from gateway.counters import Counters
from gateway.discovery.ble_ingest import BleIngest

Stream = list[tuple[BLEDevice, AdvertisementData]]
GOALS: Final = {"90% duplicates": 100_000.0, "all new": 30_000.0}
STEP_S: Final = 0.0005  # simulated seconds between advertisements (a busy neighbourhood)


@dataclass(frozen=True, slots=True)
class Scenario:
    """One case: which simulated devices, how often each message is sent."""

    name: str
    repeats: int
    kinds: tuple[str, ...] = (THERMOMETER, SCALE)
    encrypt_every: int = 3
    devices: int = 200


SCENARIOS: Final = (
    Scenario("90% duplicates", repeats=10),
    Scenario("all new", repeats=1),
    Scenario("all new, BTHome plain", repeats=1, kinds=(THERMOMETER,), encrypt_every=0),
    Scenario("all new, BTHome encrypted", repeats=1, kinds=(THERMOMETER,), encrypt_every=1),
    Scenario("all new, Mi Scale", repeats=1, kinds=(SCALE,)),
)


def stream(scenario: Scenario, count: int) -> tuple[BleSimulator, Stream]:
    """Return the simulator and ``count`` advertisements of ``scenario``, round-robin."""
    sim = BleSimulator(
        scenario.devices, repeats=scenario.repeats, encrypt_every=scenario.encrypt_every
    )
    indexes = [i for i, d in enumerate(sim.devices) if d.kind in scenario.kinds]
    out: Stream = []
    now = 1_700_000_000.0
    while len(out) < count:
        for index in indexes:
            out.extend(sim.burst(index, now))
        now += 1.0
    return sim, out[:count]


def ours(sim: BleSimulator, adverts: Stream) -> tuple[float, Counters]:
    """Return adverts/s through classify + dedupe + decode, and the counters."""
    counters = Counters()
    ingest = BleIngest(BleConfig(), counters, bind_keys=sim.bind_key)
    classify, is_duplicate, decode = ingest.classify, ingest.is_duplicate, ingest.decode
    now = 0.0
    started = time.perf_counter()
    for device, data in adverts:
        now += STEP_S
        advert = Advert(
            device.address,
            data.rssi,
            data.local_name,
            data.service_data,
            data.manufacturer_data,
            tuple(data.service_uuids),
        )
        hit = classify(advert)
        if hit is None:
            continue
        driver, payload = hit
        if not is_duplicate(advert.address, driver, payload, now):
            decode(advert, driver, payload, now)
    return len(adverts) / (time.perf_counter() - started), counters


def libraries_alone(sim: BleSimulator, adverts: Stream) -> float:
    """Return adverts/s decoding every advertisement with bthome-ble / theengsdecoder only."""
    from bthome_ble import BTHomeBluetoothDeviceData  # noqa: PLC0415
    from habluetooth import BluetoothServiceInfoBleak  # noqa: PLC0415

    devices: dict[str, BTHomeBluetoothDeviceData] = {}
    decode_ble: Callable[[str], Any] = importlib.import_module("TheengsDecoder").decodeBLE
    no_device: Any = None  # bthome-ble never reads the BLEDevice
    now = 0.0
    started = time.perf_counter()
    for device, data in adverts:
        now += STEP_S
        payload = data.service_data.get(BTHOME_V2_UUID)
        if payload is None:  # a scale: theengsdecoder takes JSON
            ((uuid, raw),) = data.service_data.items()
            decode_ble(json.dumps({"servicedata": raw.hex(), "servicedatauuid": f"0x{uuid[4:8]}"}))
            continue
        state = devices.get(device.address)
        if state is None:
            state = devices[device.address] = BTHomeBluetoothDeviceData(
                sim.bind_key(device.address)
            )
        state.update(
            BluetoothServiceInfoBleak(
                data.local_name or device.address,
                device.address,
                data.rssi,
                {},
                data.service_data,
                [],
                "bench",
                no_device,
                None,
                False,
                now,
                None,
            )
        )
    return len(adverts) / (time.perf_counter() - started)


def measure(scenario: Scenario, count: int, runs: int) -> dict[str, Any]:
    """Return the medians of ``runs`` fresh passes of both paths over one scenario."""
    rates, limits, counters = [], [], Counters()
    for _ in range(runs):
        sim, adverts = stream(scenario, count)
        gc.collect()
        gc.freeze()  # the pre-built input is not what the collector should be timed scanning
        try:
            rate, counters = ours(sim, adverts)
            sim, adverts = stream(scenario, count)
            limits.append(libraries_alone(sim, adverts))
        finally:
            gc.unfreeze()
        rates.append(rate)
    rate, limit = statistics.median(rates), statistics.median(limits)
    adverts_seen = counters.get("ble.adverts") or 1
    return {
        "scenario": scenario.name,
        "adverts_per_s": round(rate),
        "runs": [round(r) for r in rates],
        "libraries_alone_per_s": round(limit),
        "ratio": round(rate / limit, 2),
        "goal": GOALS.get(scenario.name),
        "duplicates_pct": round(100 * counters.get("ble.duplicates") / adverts_seen, 1),
        "decoded": counters.get("ble.decoded"),
        "decode_errors": counters.get("ble.decode_errors"),
    }


def main(argv: list[str] | None = None) -> int:
    """Run every scenario; print the table; write bench/results/ble_adverts.json."""
    parser = argparse.ArgumentParser(description="BLE adverts/s through match + dedupe + decode")
    parser.add_argument("--count", type=int, default=60_000, help="advertisements per run")
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args(argv)
    rows = [measure(s, args.count, args.runs) for s in SCENARIOS]
    print(f"{'scenario':<27} {'adverts/s':>10} {'libs alone':>10} {'ratio':>6} {'goal':>8}  dup %")
    for row in rows:
        goal = row["goal"]
        verdict = "" if goal is None else ("  ok" if row["adverts_per_s"] >= goal else "  MISSED")
        print(
            f"{row['scenario']:<27} {row['adverts_per_s']:>10,} "
            f"{row['libraries_alone_per_s']:>10,} {row['ratio']:>6} "
            f"{'' if goal is None else f'{goal:,.0f}':>8}  {row['duplicates_pct']}{verdict}"
        )
    path = write_results(
        "ble_adverts",
        {
            "count": args.count,
            "runs": args.runs,
            "rows": rows,
            "peak_rss_mib": round(peak_rss_mib(), 1),
        },
    )
    print(f"written to {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
