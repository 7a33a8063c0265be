"""P1: end-to-end pipeline rate against the raw paho-mqtt QoS 1 publish rate, same run.

``python -m bench.pipeline [--records N]`` starts one Mosquitto with its default configuration,
measures (1) paho-mqtt publishing N 200-byte QoS 1 messages with unlimited in-flight and its own
network loop, counting PUBACKs, then (2) the full hub: N readings submitted -> classified ->
gated -> sealed -> committed to the SQLite outbox -> published -> PUBACKed -> deleted. Prints
both rates, their ratio (goal >= 0.8) and peak RSS, and writes bench/results/pipeline.json.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion

from bench.common import bench_config, default_broker, known_devices, peak_rss_mib, write_results
from drivers.simulator import DRIVER
from gateway import daemon
from gateway.model import Reading

PAYLOAD = bytes(200)


def raw_paho_rate(port: int, count: int) -> float:
    """Return QoS 1 messages/s for paho with its own network thread and unlimited in-flight."""
    done = threading.Event()
    acked = 0

    def on_publish(client: paho.Client, userdata: Any, mid: int, rc: Any, props: Any) -> None:
        nonlocal acked
        acked += 1
        if acked == count:
            done.set()

    client = paho.Client(CallbackAPIVersion.VERSION2, client_id="bench-raw")
    client.max_inflight_messages_set(0)
    client.on_publish = on_publish
    client.connect("127.0.0.1", port)
    client.loop_start()
    time.sleep(0.2)
    start = time.perf_counter()
    for _ in range(count):
        client.publish("bench/raw", PAYLOAD, qos=1)
    done.wait(120)
    elapsed = time.perf_counter() - start
    client.loop_stop()
    client.disconnect()
    return count / elapsed


def outbox_rows(hub: daemon.Hub) -> int:
    """Return how many rows the hub's outbox holds now."""
    return hub.outbox.rows


async def pipeline_rate(port: int, count: int, workdir: Path) -> dict[str, float]:
    """Return the hub's end-to-end rate: reading submitted -> record PUBACKed and deleted."""
    workdir.mkdir(parents=True, exist_ok=True)
    config = bench_config(workdir, port, "bench-hub")
    stop = asyncio.Event()
    ready: asyncio.Future[daemon.Hub] = asyncio.get_running_loop().create_future()
    task = asyncio.create_task(daemon.run(config, stop, on_ready=ready.set_result))
    hub = await ready
    await hub.link.connected.wait()
    while hub.outbox.rows:  # the start-up announcement
        await asyncio.sleep(0.01)
    devices = known_devices(hub, 100)
    base_acked = hub.publisher.acked_total
    fields = {"temperature": 21.5, "humidity": 45.25, "battery": 97}
    start = time.perf_counter()
    submitted = 0
    while submitted < count:
        room = min(5000, count - submitted)
        now = time.time()
        for i in range(room):
            if not hub.pipeline.submit(Reading(devices[i % 100], DRIVER, now, fields)):
                break
            submitted += 1
        await asyncio.sleep(0)
    commit_done = None
    while hub.publisher.acked_total - base_acked < count:
        if commit_done is None and hub.pipeline.committed >= count:
            commit_done = time.perf_counter()
        await asyncio.sleep(0.001)
    elapsed = time.perf_counter() - start
    while outbox_rows(hub):
        await asyncio.sleep(0.001)
    stop.set()
    await task
    return {
        "rate": count / elapsed,
        "commit_rate": count / ((commit_done or time.perf_counter()) - start),
    }


def measure(records: int, rounds: int) -> dict[str, Any]:
    """Return the medians of ``rounds`` rounds of raw paho and the pipeline, each on a fresh
    default-config broker: rates, their ratio (median of per-round ratios) and every round."""
    raws, rates, commits = [], [], []
    for round_no in range(rounds):
        with tempfile.TemporaryDirectory(prefix="cg-bench-") as tmp:
            broker = default_broker(Path(tmp) / "broker")
            try:
                raws.append(raw_paho_rate(broker.port, records))
                result = asyncio.run(
                    pipeline_rate(broker.port, records, Path(tmp) / f"r{round_no}")
                )
            finally:
                broker.stop()
        rates.append(result["rate"])
        commits.append(result["commit_rate"])
    return {
        "records": records,
        "rounds": rounds,
        "raw_paho_msg_s": statistics.median(raws),
        "pipeline_readings_s": statistics.median(rates),
        "commit_readings_s": statistics.median(commits),
        "ratio": statistics.median(r / w for r, w in zip(rates, raws, strict=True)),
        "raw_rounds": raws,
        "pipeline_rounds": rates,
    }


def main() -> None:
    """Run P1 and print the table."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--records", type=int, default=50_000)
    parser.add_argument("--rounds", type=int, default=3, help="median of this many rounds")
    args = parser.parse_args()
    measured = measure(args.records, args.rounds)
    raw = measured["raw_paho_msg_s"]
    result = {"rate": measured["pipeline_readings_s"], "commit_rate": measured["commit_readings_s"]}
    ratio = measured["ratio"]
    rss = peak_rss_mib()
    print(f"P1 pipeline, median of {args.rounds} rounds of {args.records:,} records")
    print(f"{'measure':44} {'value':>12}")
    print(f"{'raw paho QoS 1 publish (msg/s)':44} {raw:12,.0f}")
    print(f"{'pipeline end to end, PUBACKed (readings/s)':44} {result['rate']:12,.0f}")
    print(f"{'pipeline committed to outbox (readings/s)':44} {result['commit_rate']:12,.0f}")
    print(f"{'ratio pipeline / raw (goal >= 0.8)':44} {ratio:12.2f}")
    print(f"{'peak RSS (MiB)':44} {rss:12.1f}")
    path = write_results(
        "pipeline",
        {
            "records": args.records,
            "raw_paho_msg_s": raw,
            "pipeline_readings_s": result["rate"],
            "commit_readings_s": result["commit_rate"],
            "ratio": ratio,
            "peak_rss_mib": rss,
        },
    )
    print(f"written {path}")


if __name__ == "__main__":
    main()
