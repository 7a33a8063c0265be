"""The demo session behind ``consentgate demo``: everything on this machine, nothing leaves it.

A private broker on a free loopback port (Mosquitto when installed, else the embedded amqtt),
a fresh recipient key pair, two simulated Shelly plugs announcing themselves over mDNS on
127.0.0.1 and speaking Shelly's HTTP RPC, a HomeKit accessory (HAP-python) paired with its
setup code, a WLED strip and the LAN inventory (Cast, ESPHome, Matter, Hue announcements),
simulated BLE sensors advertising real BTHome and
Mi Scale bytes, virtual wearables, the hub, and the consumer opening what the hub forwards,
shown in a live table. The demo opens a pairing window first (nothing is collected from a
device before it is paired) and grants ``health`` consent half-way, so sensitive records
start flowing only once the user said yes.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import tempfile
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

import aiomqtt

from drivers.shelly.simulator import SimulatedShelly
from gateway import daemon
from gateway.config import Config, parse_config
from gateway.demo.broker import EmbeddedBroker, Mosquitto, mosquitto_available
from gateway.demo.wifi import inventory, pair_homekit, wifi_devices
from gateway.envelope.consumer import Consumer, OpenedRecord
from gateway.envelope.keys import generate_recipient, hub_signing_key, load_recipient_private
from gateway.envelope.live import Broker, consume

HUB_ID = "demo-hub"
SHELLYS = 2
BLE_DEVICES = 3


@dataclass
class Table:
    """What the consumer opened, per device and category, rendered as a terminal table."""

    started: float = field(default_factory=time.monotonic)
    rows: dict[tuple[str, str], tuple[int, OpenedRecord]] = field(default_factory=dict)
    events: list[str] = field(default_factory=list)

    def add(self, record: OpenedRecord) -> None:
        """Count ``record`` and keep it as the latest of its device and category."""
        key = (record.device, record.category)
        count = self.rows.get(key, (0, record))[0]
        self.rows[key] = (count + 1, record)

    def render(self) -> str:
        """Return the table as text."""
        lines = [
            f"consentgate demo — {time.monotonic() - self.started:5.1f} s — records opened "
            "by the consumer (device pseudonyms, never raw ids)",
            f"{'device':16}  {'category':22} {'count':>6}  {'epoch':>5}  latest fields",
        ]
        for (device, category), (count, record) in sorted(self.rows.items()):
            fields = json.dumps(record.fields, default=str)[:60]
            lines.append(f"{device:16}  {category:22} {count:6}  {record.epoch:5}  {fields}")
        lines.extend(f"* {event}" for event in self.events[-4:])
        return "\n".join(lines)

    def summary(self) -> str:
        """Return the final counts per category."""
        totals: dict[str, int] = {}
        for (_, category), (count, _) in self.rows.items():
            totals[category] = totals.get(category, 0) + count
        return "opened per category: " + json.dumps(totals, sort_keys=True)


@contextlib.asynccontextmanager
async def private_broker(workdir: Path) -> AsyncIterator[tuple[int, int]]:
    """Yield (port, MQTT protocol) of a broker on loopback, stopped when the block ends."""
    if mosquitto_available():
        mosquitto = Mosquitto(workdir / "broker", "allow_anonymous true\nset_tcp_nodelay true")
        mosquitto.start()
        try:
            yield mosquitto.port, 5
        finally:
            mosquitto.stop()
    else:
        embedded = await EmbeddedBroker().start()
        try:
            yield embedded.port, 4
        finally:
            await embedded.stop()


def demo_config(workdir: Path, port: int, protocol: int, devices: int, rate: float) -> Config:
    """Return the demo hub's configuration (loopback only)."""
    return parse_config(
        {
            "hub_id": HUB_ID,
            "state_dir": str(workdir / "state"),
            "log_level": "WARNING",
            "mqtt": {"port": port, "protocol": protocol, "health_interval_s": 2.0},
            "crypto": {
                "recipient_public_key": str(workdir / "keys" / "recipient.pub"),
                "epoch_max_age_s": 10.0,
            },
            "simulator": {"devices": devices, "rate_hz": rate, "ble_devices": BLE_DEVICES},
            "discovery": {
                "mdns": {"interfaces": ["127.0.0.1"], "poll_interval_s": max(0.2, 1.0 / rate)},
                "ble": {"enabled": True},
            },
        },
        workdir,
    )


async def run_demo(seconds: float, devices: int, rate: float, out: TextIO) -> Table:
    """Run broker, devices, hub and consumer for ``seconds``; return the consumer's table."""
    table = Table()
    with tempfile.TemporaryDirectory(prefix="consentgate-demo-") as tmp:
        workdir = Path(tmp)
        generate_recipient(workdir / "keys")
        async with (
            private_broker(workdir) as (port, protocol),
            contextlib.AsyncExitStack() as plugs,
        ):
            for _ in range(SHELLYS):
                await plugs.enter_async_context(SimulatedShelly())
            code = await plugs.enter_async_context(wifi_devices(table.events))
            config = demo_config(workdir, port, protocol, devices, rate)
            await _run_hub(
                config, workdir, port=port, protocol=protocol, seconds=seconds, out=out,
                table=table, setup_code=code,
            )  # fmt: skip
    return table


async def _run_hub(
    config: Config,
    workdir: Path,
    *,
    port: int,
    protocol: int,
    seconds: float,
    out: TextIO,
    table: Table,
    setup_code: str | None = None,
) -> None:
    """Run the hub and an in-process consumer for ``seconds``, driving the demo script."""
    stop = asyncio.Event()
    ready: asyncio.Future[daemon.Hub] = asyncio.get_running_loop().create_future()
    hub_task = asyncio.create_task(
        daemon.run(config, stop, on_ready=ready.set_result), name="demo-hub"
    )
    hub = await ready
    # Requests sent before the hub subscribed would be lost: wait for it to be online, as an
    # operator's tool waits for the retained status ``online``.
    async with asyncio.timeout(15):
        await hub.link.connected.wait()
    consumer = Consumer(
        load_recipient_private(workdir / "keys" / "recipient.key"),
        {HUB_ID: hub_signing_key(config.state_dir).public_key()},
    )
    consume_task = asyncio.create_task(
        consume(
            consumer,
            Broker(port=port),
            config.mqtt.base_topic,
            on_record=table.add,
            seconds=seconds + 5,
            protocol=protocol,
        ),
        name="demo-consumer",
    )
    try:
        await _script(
            table, config, port=port, protocol=protocol, seconds=seconds, out=out, code=setup_code
        )
    finally:
        stop.set()
        await hub_task
        consume_task.cancel()
        with contextlib.suppress(asyncio.CancelledError, aiomqtt.MqttError):
            await consume_task


async def _script(
    table: Table,
    config: Config,
    *,
    port: int,
    protocol: int,
    seconds: float,
    out: TextIO,
    code: str | None = None,
) -> None:
    """Refresh the table; pair the HomeKit accessory; grant health consent half-way through."""
    granted = False
    deadline = time.monotonic() + seconds

    async def request(command: str, params: dict[str, Any]) -> dict[str, Any]:
        return await _request(config, port, protocol, command, params)

    reply = await request("permit_join", {"duration": seconds})
    table.events.append(f"permit_join {seconds:g} s -> {reply.get('status')}")
    homekit = (
        None if code is None else asyncio.create_task(pair_homekit(request, code, table.events))
    )
    interactive = out.isatty()
    while time.monotonic() < deadline:
        if not granted and time.monotonic() > deadline - seconds / 2:
            granted = True
            reply = await _request(
                config, port, protocol, "consent/set", {"flag": "health", "state": "on"}
            )
            table.events.append(f"consent/set health on -> {reply.get('status')}")
        if interactive:
            out.write("\x1b[2J\x1b[H" + table.render() + "\n")
            out.flush()
        await asyncio.sleep(0.5)
    if homekit is not None:
        homekit.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await homekit
    out.write(table.render() + "\n" + inventory(await request("devices", {})) + "\n")


async def _request(
    config: Config, port: int, protocol: int, command: str, params: dict[str, Any]
) -> dict[str, Any]:
    """Send one control request and return its response (as an operator tool would)."""
    version = aiomqtt.ProtocolVersion.V5 if protocol == 5 else aiomqtt.ProtocolVersion.V311
    root = config.topic_root
    async with aiomqtt.Client("127.0.0.1", port, protocol=version) as client:
        await client.subscribe(f"{root}/response/{command}", qos=1)
        body = json.dumps({"transaction": "demo", **params}).encode()
        await client.publish(f"{root}/request/{command}", body, qos=1)
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(5):
                async for message in client.messages:
                    reply = _response(message, f"{root}/response/{command}")
                    if reply is not None:
                        return reply
    return {"status": "no response"}


def _response(message: aiomqtt.Message, topic: str) -> dict[str, Any] | None:
    """Return the demo's response in ``message``, or None for anything else the broker sent."""
    if str(message.topic) != topic or not isinstance(message.payload, bytes):
        return None  # the embedded broker may deliver more than was subscribed to
    try:
        reply = json.loads(message.payload)
    except (UnicodeDecodeError, json.JSONDecodeError):
        return None
    if not isinstance(reply, dict) or reply.get("transaction") != "demo":
        return None
    return reply
