"""P2: consent withdrawal latency with 100k records queued, and what leaks after the ack.

``python -m bench.consent_withdrawal [--queued N] [--rounds R]``: a hub on a private Mosquitto
(default config) keeps ~N records queued (half health, half environment, sealed through the
real pipeline). Each round grants ``health``, tops the outbox up to N, then withdraws it and
times request -> acknowledgement at the requesting MQTT client. One subscriber on the same
connection as the requests counts health records arriving after each acknowledgement (goal:
0), as the broker orders them. Goal: p99 <= 50 ms. Writes bench/results/consent_withdrawal.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import aiomqtt

from bench.common import bench_config, default_broker, known_devices, write_results
from drivers.simulator import DRIVER
from gateway import daemon
from gateway.model import Reading


async def run(queued: int, rounds: int, workdir: Path) -> dict[str, Any]:
    """Measure ``rounds`` withdrawals with about ``queued`` records in the outbox."""
    broker = default_broker(workdir / "broker")
    config = bench_config(workdir, broker.port, "bench-consent")
    root = config.topic_root
    stop = asyncio.Event()
    ready: asyncio.Future[daemon.Hub] = asyncio.get_running_loop().create_future()
    hub_task = asyncio.create_task(daemon.run(config, stop, on_ready=ready.set_result))
    hub = await ready
    await hub.link.connected.wait()
    devices = known_devices(hub, 50)
    latencies: list[float] = []
    floors: list[float] = []  # a `health` request just before: the round trip under load
    leaked = 0
    after_ack = False
    responses: dict[str, asyncio.Future[float]] = {}
    try:
        async with aiomqtt.Client(
            "127.0.0.1",
            broker.port,
            max_queued_incoming_messages=0,
            protocol=aiomqtt.ProtocolVersion.V5,
        ) as client:
            await client.subscribe(f"{root}/response/#", qos=1)
            await client.subscribe(f"{root}/data/+/health", qos=0)

            async def listen() -> None:
                nonlocal leaked
                async for message in client.messages:
                    topic = str(message.topic)
                    if "/response/" in topic:
                        assert isinstance(message.payload, bytes)
                        body = json.loads(message.payload)
                        future = responses.pop(str(body["transaction"]), None)
                        if future is not None and not future.done():
                            future.set_result(time.perf_counter())
                    elif after_ack:
                        leaked += 1

            listener = asyncio.create_task(listen())

            async def request(state: str, n: int, command: str = "consent/set") -> float:
                transaction = f"{command}-{state}-{n}"
                responses[transaction] = asyncio.get_running_loop().create_future()
                params = {"flag": "health", "state": state} if command == "consent/set" else {}
                sent = time.perf_counter()
                await client.publish(
                    f"{root}/request/{command}",
                    json.dumps({"transaction": transaction, **params}),
                    qos=0,
                )
                return await asyncio.wait_for(responses[transaction], 30) - sent

            for n in range(rounds):
                after_ack = False
                await request("on", n)
                while hub.outbox.rows < queued:
                    now = time.time()
                    batch = [
                        Reading(
                            devices[i % 50],
                            DRIVER,
                            now,
                            {"heart_rate": 70, "steps": 100}
                            if i % 2
                            else {"temperature": 21.0, "humidity": 40.0},
                        )
                        for i in range(2000)
                    ]
                    await hub.pipeline.process(batch)
                depth = hub.outbox.rows
                floors.append(await request("", n, "health"))
                latencies.append(await request("off", n))
                after_ack = True
                await asyncio.sleep(0.3)
                print(
                    f"round {n}: {depth:,} queued, ack {latencies[-1] * 1000:.1f} ms, "
                    f"health after ack {leaked}"
                )
            listener.cancel()
    finally:
        stop.set()
        await hub_task
        broker.stop()
    ordered = sorted(latencies)
    return {
        "queued": queued,
        "rounds": rounds,
        "ack_p50_ms": statistics.median(ordered) * 1000,
        "ack_p99_ms": ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))] * 1000,
        "ack_max_ms": ordered[-1] * 1000,
        "withdrawn_seen_after_ack": leaked,
        "health_request_p50_ms": statistics.median(floors) * 1000,
    }


def main() -> None:
    """Run P2 and print the table."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--queued", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=20)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="cg-bench-") as tmp:
        result = asyncio.run(run(args.queued, args.rounds, Path(tmp)))
    print(f"P2 consent withdrawal, {args.rounds} rounds, ~{args.queued:,} queued")
    print(f"{'ack p50 (ms)':40} {result['ack_p50_ms']:10.1f}")
    print(f"{'ack p99 (ms, goal <= 50)':40} {result['ack_p99_ms']:10.1f}")
    print(
        f"{'a health request under the same load, p50':40} {result['health_request_p50_ms']:10.1f}"
    )
    print(
        f"{'withdrawn records seen after ack (goal 0)':40} {result['withdrawn_seen_after_ack']:10d}"
    )
    print(f"written {write_results('consent_withdrawal', result)}")


if __name__ == "__main__":
    main()
