"""P2: consent withdrawal latency with 100k records queued, and what leaks after the ack.

``python -m bench.consent_withdrawal [--queued N] [--rounds R]``: a hub on a private Mosquitto
(default config) keeps ~N records queued (half health, half environment, sealed through the
real pipeline) and drains them at full speed. Each round waits for the previous round's
leftovers to drain, grants ``health``, tops the outbox up to N (health and environment
interleaved, so health records are in flight at the withdrawal), then withdraws it and times
request -> acknowledgement at the requesting tool, which runs in its own process as an
operator's tool or the cloud backend would (a client in the hub's own event loop would slow the
hub it measures). A watcher, a process of its own too, subscribes to the answers and the
health records and counts records arriving after each acknowledgement (goal: 0), as the broker
orders them. Goal: p99 <= 50 ms. Writes bench/results/consent_withdrawal.json.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import json
import multiprocessing
import socket
import statistics
import tempfile
import threading
import time
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion

from bench.common import bench_config, default_broker, known_devices, write_results
from drivers.simulator import DRIVER
from gateway import daemon
from gateway.model import Reading

REQUEST_TIMEOUT_S = 30.0
NO_ANSWER = "no answer"
WATCH_IDLE_S = 0.5
DRAINED_ROWS = 2_000  # a round starts once the previous round's leftovers are (almost) sent
IN_FLIGHT_AT_WITHDRAWAL = 100  # records the hub has sent and the broker not yet acknowledged


def _client(name: str, port: int, on_message: Any) -> paho.Client:
    client = paho.Client(
        CallbackAPIVersion.VERSION2, client_id=name, protocol=MQTTProtocolVersion.MQTTv5
    )
    client.on_message = on_message
    client.connect("127.0.0.1", port)
    # An interactive tool sends its few small packets at once: without this, Nagle holds a
    # request back until the broker acknowledges the previous answer's PUBACK (up to 40 ms of
    # delayed ACK), and that is the tool's latency, not the hub's.
    sock = client.socket()
    assert isinstance(sock, socket.socket)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return client


ARMED = "-armed"  # the suffix of a transaction whose answer starts a leak count


def requester(pipe: Connection, port: int, root: str) -> None:
    """Serve the benchmark's requests from a process of its own, as an operator's tool: time each.

    Receives ``(command, params, arm)`` and answers the round trip in seconds (or NO_ANSWER);
    ``arm`` marks the transaction (``ARMED``) so the watcher counts health records from its
    answer on. ``None`` ends the process and answers the last transaction id.
    """
    answered: dict[str, float] = {}
    cond = threading.Condition()

    def on_answer(client: paho.Client, userdata: Any, message: paho.MQTTMessage) -> None:
        arrived = time.perf_counter()
        with cond:
            answered[str(json.loads(message.payload)["transaction"])] = arrived
            cond.notify_all()

    tool = _client("bench-p2-tool", port, on_answer)
    tool.subscribe(f"{root}/response/#", 1)
    tool.loop_start()
    try:
        n = 0
        transaction = ""
        while (order := pipe.recv()) is not None:
            command, params, arm = order
            n += 1
            transaction = f"{command}-{n}{ARMED if arm else ''}"
            body = json.dumps({"transaction": transaction, **params})
            sent = time.perf_counter()
            tool.publish(f"{root}/request/{command}", body, qos=0)
            with cond:
                if not cond.wait_for(
                    functools.partial(answered.__contains__, transaction), REQUEST_TIMEOUT_S
                ):
                    pipe.send(NO_ANSWER)
                    continue
            pipe.send(answered[transaction] - sent)
        pipe.send(transaction)
    finally:
        tool.disconnect()
        tool.loop_stop()


def watcher(pipe: Connection, port: int, root: str) -> None:
    """Count, from a process of its own, the health records the broker delivers after an armed
    answer (a leak), and per armed answer the health records seen since the previous answer.

    Subscribed to the answers and to the health records on one connection, it sees both in
    the order the broker delivered them. It runs apart from the timed tool, as a separate
    program would (measured: no change in the tool's times either way). It receives the last
    transaction id, waits until it has seen that answer and then been idle for a while,
    and answers ``(leaked, in_flight)``.
    """
    watched: set[str] = set()
    leaked = 0
    flowing = 0  # health records the watcher saw since the last answer
    withdrawn = False  # the last answer the watcher saw was an armed one
    in_flight: dict[str, int] = {}  # armed transaction -> health records seen before its answer
    last_message = [time.monotonic()]

    def on_watch(client: paho.Client, userdata: Any, message: paho.MQTTMessage) -> None:
        # Everything here is in the watcher's own order, the broker's: a health record after
        # an armed answer and before the next answer (the next round's grant) is a leak.
        nonlocal leaked, flowing, withdrawn
        last_message[0] = time.monotonic()
        if "/response/" in message.topic:
            transaction = str(json.loads(message.payload)["transaction"])
            watched.add(transaction)
            withdrawn = transaction.endswith(ARMED)
            if withdrawn:
                in_flight[transaction] = flowing
            flowing = 0
        elif withdrawn:
            leaked += 1
        else:
            flowing += 1

    client = _client("bench-p2-watch", port, on_watch)
    client.subscribe([(f"{root}/response/#", 1), (f"{root}/data/+/health", 0)])
    client.loop_start()
    try:
        pipe.send("subscribed")
        last = pipe.recv()
        deadline = time.monotonic() + REQUEST_TIMEOUT_S
        while time.monotonic() < deadline and (
            last not in watched or time.monotonic() - last_message[0] < WATCH_IDLE_S
        ):
            time.sleep(0.05)
        pipe.send((leaked, in_flight))
    finally:
        client.disconnect()
        client.loop_stop()


async def ask(pipe: Connection, command: str, params: dict[str, Any], arm: bool = False) -> float:
    """Have the requester process send one request; return its round trip in seconds."""
    pipe.send((command, params, arm))
    reply = await asyncio.to_thread(pipe.recv)
    if reply == NO_ANSWER:
        raise TimeoutError(f"no answer to {command} within {REQUEST_TIMEOUT_S:g} s")
    return float(reply)


async def run(queued: int, rounds: int, workdir: Path) -> dict[str, Any]:
    """Measure ``rounds`` withdrawals with about ``queued`` records in the outbox."""
    broker = default_broker(workdir / "broker")
    config = bench_config(workdir, broker.port, "bench-consent")
    stop = asyncio.Event()
    ready: asyncio.Future[daemon.Hub] = asyncio.get_running_loop().create_future()
    hub_task = asyncio.create_task(daemon.run(config, stop, on_ready=ready.set_result))
    hub = await ready
    await hub.link.connected.wait()
    devices = known_devices(hub, 50)
    latencies: list[float] = []
    floors: list[float] = []  # a `health` request just before: the round trip under load
    spawn = multiprocessing.get_context("spawn")
    ours, theirs = spawn.Pipe()
    watch_ours, watch_theirs = spawn.Pipe()
    processes = [
        spawn.Process(target=target, args=(pipe, broker.port, config.topic_root), daemon=True)
        for target, pipe in ((requester, theirs), (watcher, watch_theirs))
    ]
    for process in processes:
        process.start()
    try:
        await asyncio.to_thread(watch_ours.recv)  # subscribed
        for n in range(rounds):
            # The queue's head must hold health records when consent is withdrawn, so the
            # leak check meets records in flight: the last round's leftovers (environment only,
            # its health records died with the withdrawal) drain first.
            while hub.outbox.rows > DRAINED_ROWS:
                await asyncio.sleep(0.05)
            await ask(ours, "consent/set", {"flag": "health", "state": "on"})
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
            floors.append(await ask(ours, "health", {}))
            # the leak check means something only with records on their way: the publisher
            # stalls now and then (a group commit of the top-up holds the database), so the
            # withdrawal waits until records are in flight again
            for _ in range(200):
                if hub.publisher.inflight >= IN_FLIGHT_AT_WITHDRAWAL:
                    break
                await asyncio.sleep(0.01)
            latencies.append(
                await ask(ours, "consent/set", {"flag": "health", "state": "off"}, arm=True)
            )
            await asyncio.sleep(0.3)
            print(f"round {n}: {depth:,} queued, ack {latencies[-1] * 1000:.1f} ms")
        ours.send(None)
        watch_ours.send(await asyncio.to_thread(ours.recv))  # the last transaction
        leaked, in_flight = await asyncio.to_thread(watch_ours.recv)
    finally:
        for process in processes:
            process.join(5)
            if process.is_alive():
                process.kill()
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
        # health records still arriving while the withdrawal was on its way, fewest of any
        # round: above 0, every round's leak check met records in flight
        "health_in_flight_min": min(in_flight.values(), default=0)
        if len(in_flight) == rounds
        else 0,
        "health_request_p50_ms": statistics.median(floors) * 1000,
        "health_in_flight_per_round": sorted(in_flight.values()),
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
    print(
        f"{'health records in flight, fewest of a round':40} {result['health_in_flight_min']:10d}"
    )
    print(f"written {write_results('consent_withdrawal', result)}")


if __name__ == "__main__":
    main()
