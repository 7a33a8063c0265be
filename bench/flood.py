"""``python -m bench.flood``: the control plane under a flood, against a private Mosquitto.

- Withdrawal acknowledgement p50/p99 (ms): ``rounds`` consent withdrawals (``consent/set``
  telemetry off, then back on, alternately), each sent in the middle of a 10,000-request flood
  of mixed bad requests (bench.flood_requests); goal p99 <= 50 ms (P2's). The same rounds
  without a flood first, in the same run: the machine's own floor (the fsync of the ack).
- RSS of the hub's process before and after the floods (the clients run in others).
- Connection attempts per minute against a broker that drops the hub right after it is
  accepted (the link's own backoff, cap 10 s), for ``drop_seconds``; goal: <= 60 / 10 + the
  ramp.

Every figure with a limit is also printed as a ratio to it (``ratios_to_limits``: <= 1 meets
it). The flooder and the user run in processes of their own; the latency is from the user's
publish to the arrival of its answer.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import socket
import statistics
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, Final

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from bench.flood_requests import flood, send_flood
from gateway.backoff import Backoff
from gateway.config import MqttConfig
from gateway.mqtt.link import LINK_BACKOFF, MqttLink
from gateway.mqtt.topics import Topics
from tests.control.test_reconnect import dropping_broker
from tests.support.hub import hub_config, running_hub
from tests.support.mosquitto import Mosquitto

ACK_GOAL_MS: Final = 50.0  # P2's goal, the fsync of the durable ack included
MEMORY_HIGH_MIB: Final = 128.0  # the unit's MemoryHigh
BROKER_CONFIG: Final = "allow_anonymous true\nmax_queued_messages 0\nset_tcp_nodelay true\n"


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


def _flooder(port: int, root: str, rounds: int, size: int, cues: tuple[Any, Any, Any]) -> None:
    """Send ``rounds`` floods of ``size`` requests; cue the user at each flood's middle."""
    go, half, done = cues
    requests = flood(root, size)
    client = _client(port, "bench-flooder")
    middle = size // 2
    for _ in range(rounds):
        go.wait()
        go.clear()
        send_flood(client, root, requests[:middle])
        half.set()
        send_flood(client, root, requests[middle:])
        done.set()
    client.disconnect()
    client.loop_stop()


def _user(port: int, root: str, rounds: int, cues: tuple[Any, Any, Any], out: Any) -> None:
    """Send one withdrawal (or its undoing) in the middle of each flood; put the ack latencies
    (ms, from the publish to the answer's arrival) on ``out``."""
    go, half, done = cues
    answered = threading.Event()
    arrived = [0.0]

    def on_message(_c: paho.Client, _u: Any, _m: paho.MQTTMessage) -> None:
        arrived[0] = time.perf_counter()
        answered.set()

    user = _client(port, "bench-user")
    # as P2's requester (bench.consent_withdrawal): without it, Nagle holds the request until
    # the broker's delayed ACK of the previous answer (up to 40 ms): the tool's latency
    sock = user.socket()
    if isinstance(sock, socket.socket):
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    user.on_message = on_message
    user.subscribe("bench-user/reply", qos=1)
    time.sleep(0.3)
    props = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
    props.ResponseTopic = "bench-user/reply"
    latencies = []
    for n in range(rounds):
        state = "off" if n % 2 == 0 else "on"
        body = json.dumps({"transaction": f"w{n}", "flag": "telemetry", "state": state})
        answered.clear()
        go.set()
        half.wait()
        half.clear()
        start = time.perf_counter()
        user.publish(f"{root}/request/consent/set", body, qos=1, properties=props)
        if not answered.wait(30):
            out.put(RuntimeError("a withdrawal was not answered within 30 s"))
            return
        latencies.append((arrived[0] - start) * 1000)
        done.wait()
        done.clear()
        time.sleep(0.5)  # the hub works off this flood's answers before the next
    user.disconnect()
    user.loop_stop()
    out.put(latencies)


def _withdraw_rounds(port: int, root: str, rounds: int, size: int) -> list[float]:
    """Run the flooder and the user, each in a process of its own (in one, the flooder's loop
    would hold the GIL the user's network thread needs to read its answer)."""
    spawn = multiprocessing.get_context("spawn")
    cues = (spawn.Event(), spawn.Event(), spawn.Event())
    out = spawn.Queue()
    flooder = spawn.Process(target=_flooder, args=(port, root, rounds, size, cues))
    user = spawn.Process(target=_user, args=(port, root, rounds, cues, out))
    flooder.start()
    user.start()
    try:
        result = out.get(timeout=60 + rounds * 35)
    finally:
        for process in (user, flooder):
            process.join(10)
            if process.is_alive():
                process.kill()
    if isinstance(result, Exception):
        raise result
    return list(result)


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
    # set_tcp_nodelay as in config/mosquitto/consentgate.conf: without it Mosquitto holds the
    # answer behind the delayed ACK of its own PUBACK to the user (40 ms on Linux)
    broker = Mosquitto(workdir / "mosquitto", BROKER_CONFIG)
    broker.start()
    try:
        config = hub_config(workdir, broker.port, "bench-flood")
        async with running_hub(config) as hub:
            await hub.link.connected.wait()
            before = rss_mib()
            control = hub.loops["mqtt-control"].__self__  # type: ignore[attr-defined]
            await control.connected.wait()
            # the clients run in processes of their own: in this one they would take the GIL
            # from the hub they measure
            quiet = await asyncio.to_thread(
                _withdraw_rounds, broker.port, config.topic_root, rounds, 0
            )
            latencies = await asyncio.to_thread(
                _withdraw_rounds, broker.port, config.topic_root, rounds, size
            )
            after = rss_mib()
            counters = hub.counters.snapshot()
    finally:
        broker.stop()
    ordered = sorted(latencies)
    per_minute = await _attempts_per_minute(drop_seconds)
    p99 = _p99(ordered)
    calm = sorted(quiet)
    attempts_limit = 60 / LINK_BACKOFF.cap + _ramp(LINK_BACKOFF)
    return {
        "ratios_to_limits": {
            "withdrawal_ack_p99 / 50 ms": round(p99 / ACK_GOAL_MS, 2),
            "flood p50 / no-flood p50": round(
                statistics.median(ordered) / statistics.median(calm), 2
            ),
            "flood p99 / no-flood p99": round(p99 / _p99(calm), 2),
            "rss_after / MemoryHigh 128 MiB": round(after / MEMORY_HIGH_MIB, 2),
            "attempts_per_minute / (6 + ramp)": round(per_minute / attempts_limit, 2),
        },
        "flood_size": size,
        "rounds": rounds,
        "withdrawal_ack_ms_p50": round(statistics.median(ordered), 1),
        "withdrawal_ack_ms_p99": round(p99, 1),
        "withdrawal_ack_ms_max": round(ordered[-1], 1),
        "no_flood_ack_ms_p50": round(statistics.median(calm), 1),
        "no_flood_ack_ms_p99": round(_p99(calm), 1),
        "rss_mib_before": round(before, 1),
        "rss_mib_after": round(after, 1),
        "requests": {k: v for k, v in counters.items() if k.startswith(("requests.", "commands."))},
        "drop_after_accept_attempts_per_minute": round(per_minute, 1),
        "drop_after_accept_limit_per_minute": round(60 / LINK_BACKOFF.cap, 1),
        "drop_seconds": drop_seconds,
    }


def _p99(ordered: list[float]) -> float:
    return ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]


def _ramp(backoff: Backoff) -> int:
    """Return how many attempts the backoff makes before it reaches its cap."""
    count, ceiling = 0, backoff.initial
    while ceiling < backoff.cap:
        count += 1
        ceiling *= backoff.factor
    return count


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
