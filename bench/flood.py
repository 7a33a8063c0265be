"""``python -m bench.flood``: the control plane under a flood, against a private Mosquitto.

- Withdrawal acknowledgement p50/p99 (ms): ``rounds`` consent withdrawals (``consent/set``
  telemetry off, then back on, alternately), each sent in the middle of a 10,000-request flood
  of mixed bad requests (bench.flood_requests); goal p99 <= 50 ms (P2's).
- RSS of the hub's process before and after the floods (the clients run in another one).
- Connection attempts per minute against a broker that drops the hub right after it is
  accepted (the link's own backoff, cap 10 s), for ``drop_seconds``; goal: <= 60 / 10 + the
  ramp.
"""

from __future__ import annotations

import argparse
import asyncio
import concurrent.futures
import json
import multiprocessing
import statistics
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from bench.flood_requests import flood, send_flood
from gateway.config import MqttConfig
from gateway.mqtt.link import LINK_BACKOFF, MqttLink
from gateway.mqtt.topics import Topics
from tests.control.test_reconnect import dropping_broker
from tests.support.hub import hub_config, running_hub
from tests.support.mosquitto import Mosquitto


def rss_mib() -> float:
    """Return this process's resident set size (VmRSS) in MiB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def _client(port: int, name: str) -> paho.Client:
    client = paho.Client(CallbackAPIVersion.VERSION2, client_id=name, protocol=paho.MQTTv5)
    client.max_queued_messages_set(0)
    client.connect("127.0.0.1", port)
    client.loop_start()
    return client


def _withdraw_rounds(port: int, root: str, rounds: int, size: int) -> list[float]:
    requests = flood(root, size)
    answered = threading.Event()
    flooder = _client(port, "bench-flooder")
    user = _client(port, "bench-user")
    user.on_message = lambda _c, _u, _m: answered.set()
    user.subscribe("bench-user/reply", qos=1)
    time.sleep(0.3)
    props = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
    props.ResponseTopic = "bench-user/reply"
    latencies = []
    half = size // 2
    for n in range(rounds):
        state = "off" if n % 2 == 0 else "on"
        body = json.dumps({"transaction": f"w{n}", "flag": "telemetry", "state": state})
        send_flood(flooder, root, requests[:half])
        answered.clear()
        start = time.perf_counter()
        user.publish(f"{root}/request/consent/set", body, qos=1, properties=props)
        send_flood(flooder, root, requests[half:])
        if not answered.wait(30):
            raise RuntimeError("a withdrawal was not answered within 30 s")
        latencies.append((time.perf_counter() - start) * 1000)
        time.sleep(0.5)  # the hub works off this flood's answers before the next
    for client in (flooder, user):
        client.disconnect()
        client.loop_stop()
    return latencies


async def _attempts_per_minute(seconds: float) -> float:
    async with dropping_broker() as (port, attempts):
        link = MqttLink(MqttConfig(port=port, protocol=5), Topics("bench/drop"), "drop")
        task = asyncio.create_task(link.run())
        await asyncio.sleep(seconds)
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    return len(attempts) * 60 / seconds


async def run(rounds: int, size: int, drop_seconds: float, workdir: Path) -> dict[str, Any]:
    """Run the flood and the dropping-broker parts; return their figures."""
    broker = Mosquitto(workdir / "mosquitto", "allow_anonymous true\nmax_queued_messages 0\n")
    broker.start()
    try:
        config = hub_config(workdir, broker.port, "bench-flood")
        async with running_hub(config) as hub:
            await hub.link.connected.wait()
            before = rss_mib()
            # the clients run in a process of their own: in this one they would take the GIL
            # from the hub they measure
            spawn = multiprocessing.get_context("spawn")
            with concurrent.futures.ProcessPoolExecutor(1, mp_context=spawn) as pool:
                latencies = await asyncio.get_running_loop().run_in_executor(
                    pool, _withdraw_rounds, broker.port, config.topic_root, rounds, size
                )
            after = rss_mib()
            counters = hub.counters.snapshot()
    finally:
        broker.stop()
    ordered = sorted(latencies)
    per_minute = await _attempts_per_minute(drop_seconds)
    return {
        "flood_size": size,
        "rounds": rounds,
        "withdrawal_ack_ms_p50": round(statistics.median(ordered), 1),
        "withdrawal_ack_ms_p99": round(ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))], 1),
        "withdrawal_ack_ms_max": round(ordered[-1], 1),
        "rss_mib_before": round(before, 1),
        "rss_mib_after": round(after, 1),
        "requests": {k: v for k, v in counters.items() if k.startswith(("requests.", "commands."))},
        "drop_after_accept_attempts_per_minute": round(per_minute, 1),
        "drop_after_accept_limit_per_minute": round(60 / LINK_BACKOFF.cap, 1),
        "drop_seconds": drop_seconds,
    }


def main() -> None:
    """Run the part alone and print its figures as JSON."""
    parser = argparse.ArgumentParser(prog="python -m bench.flood")
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--size", type=int, default=10_000)
    parser.add_argument("--drop-seconds", type=float, default=60.0)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="cg-bench-flood-") as workdir:
        result = asyncio.run(run(args.rounds, args.size, args.drop_seconds, Path(workdir)))
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
