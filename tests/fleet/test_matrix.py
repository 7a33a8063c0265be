"""The hub and the consumer against every broker of the matrix, on portable topics.

Mosquitto 2 (MQTT 5 and 3.1.1), a private RabbitMQ node (rabbitmq_mqtt, MQTT 3.1.1), a private
nats-server (MQTT gateway + JetStream, MQTT 3.1.1) and amqtt (MQTT 3.1.1): a real hub daemon
seals simulated readings, `consume` opens them into a SQLite sink, a request is answered, and
the hub's last will turns its status `offline` when the process is killed with SIGKILL.
`consume` left at MQTT 5 against a broker without it exits 2 and says to use 3.1.1.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import aiomqtt
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from gateway.config import Config
from gateway.demo.broker import EmbeddedBroker
from gateway.envelope.consumer import Consumer, OpenedRecord
from gateway.envelope.keys import (
    generate_recipient,
    hub_signing_key,
    load_recipient_private,
    raw_public,
)
from gateway.envelope.live import Broker, consume
from gateway.sinks import open_sink
from tests.fleet.brokers import Nats, RabbitMQ
from tests.support.hub import hub_config, running_hub
from tests.support.mosquitto import Mosquitto


async def _records_and_request(config: Config, tmp_path: Path, protocol: int) -> None:
    port = config.mqtt.port
    root = config.topic_root
    opened: list[OpenedRecord] = []
    async with running_hub(config):
        consumer = Consumer(
            load_recipient_private(tmp_path / "recipient" / "recipient.key"),
            {config.hub_id: hub_signing_key(config.state_dir).public_key()},
        )
        async with open_sink(f"sqlite://{tmp_path / 'records.db'}") as sink:
            stats = await consume(
                consumer,
                Broker(port=port),
                config.mqtt.base_topic,
                on_record=opened.append,
                count=10,
                seconds=30,
                protocol=protocol,
                client_id=f"matrix-{config.hub_id}",
                sink=sink,
            )
            assert await sink.count() >= 10
        assert stats.opened >= 10
        assert stats.rejected == 0
        assert {r.category for r in opened} == {"telemetry.environment"}
        async with aiomqtt.Client(
            "127.0.0.1", port, protocol=aiomqtt.ProtocolVersion(protocol)
        ) as client:
            await client.subscribe(f"{root}/response/health", qos=1)
            await client.publish(f"{root}/request/health", b'{"transaction": "m1"}', qos=1)
            async with asyncio.timeout(15):
                async for message in client.messages:
                    assert isinstance(message.payload, bytes)
                    if str(message.topic) != f"{root}/response/health":
                        continue  # amqtt may send other topics' retained messages
                    response = json.loads(message.payload)
                    if response.get("transaction") == "m1":
                        break
    assert response["status"] == "ok"


def _toml(config: Config, tmp_path: Path) -> Path:
    path = tmp_path / "hub.toml"
    path.write_text(
        f'hub_id = "{config.hub_id}"\nstate_dir = "{config.state_dir}"\n'
        f"[mqtt]\nport = {config.mqtt.port}\nprotocol = {config.mqtt.protocol}\n"
        f'base_topic = "{config.mqtt.base_topic}"\n'
        f'[crypto]\nrecipient_public_key = "{config.crypto.recipient_public_key}"\n'
        "[discovery.mdns]\nenabled = false\n[discovery.ble]\nenabled = false\n"
    )
    return path


async def _last_will(config: Config, tmp_path: Path, protocol: int) -> None:
    status = f"{config.topic_root}/status"
    with (tmp_path / "daemon.log").open("ab") as log:
        daemon = subprocess.Popen(  # noqa: ASYNC220 - killed below, waited for briefly
            [sys.executable, "-m", "gateway", "run", "--config", str(_toml(config, tmp_path))],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        async with aiomqtt.Client(
            "127.0.0.1", config.mqtt.port, protocol=aiomqtt.ProtocolVersion(protocol)
        ) as client:
            await client.subscribe(status, qos=1)
            seen = []
            async with asyncio.timeout(30):
                async for message in client.messages:
                    if str(message.topic) != status:  # amqtt may send other retained topics
                        continue
                    seen.append(message.payload)
                    if message.payload == b"online":
                        os.kill(daemon.pid, signal.SIGKILL)
                    elif message.payload == b"offline" and b"online" in seen:
                        break
    finally:
        daemon.kill()
        daemon.wait()


async def _matrix(tmp_path: Path, port: int, protocol: int, hub_id: str) -> None:
    config = hub_config(
        tmp_path,
        port,
        hub_id,
        simulator={"devices": 2, "rate_hz": 20.0},
        mqtt={"protocol": protocol, "base_topic": f"matrix/{hub_id}"},  # one hub per base
    )
    await _records_and_request(config, tmp_path, protocol)
    await _last_will(config, tmp_path, protocol)


@pytest.mark.parametrize("protocol", [5, 4], ids=["mqtt5", "mqtt311"])
async def test_mosquitto(broker: Mosquitto, tmp_path: Path, protocol: int) -> None:
    await _matrix(tmp_path, broker.port, protocol, f"mx-mosquitto-{protocol}")


async def test_rabbitmq(rabbitmq: RabbitMQ, tmp_path: Path) -> None:
    await _matrix(tmp_path, rabbitmq.port, 4, "mx-rabbitmq")


async def test_nats(nats: Nats, tmp_path: Path) -> None:
    await _matrix(tmp_path, nats.port, 4, "mx-nats")


async def test_amqtt(amqtt_broker: EmbeddedBroker, tmp_path: Path) -> None:
    await _matrix(tmp_path, amqtt_broker.port, 4, "mx-amqtt")


async def test_consume_says_which_version_a_broker_without_mqtt5_needs(
    nats: Nats, tmp_path: Path
) -> None:
    keys = generate_recipient(tmp_path / "keys")
    hub = raw_public(Ed25519PrivateKey.generate().public_key()).hex()
    argv = [sys.executable, "-c", "import sys; from gateway.cli import main; sys.exit(main())"]
    argv += ["consume", "--port", str(nats.port), "--recipient-key", str(keys.private_key)]
    argv += ["--trust", f"mx-version={hub}", "--sink", "none", "--seconds", "5"]
    done = await asyncio.to_thread(subprocess.run, argv, capture_output=True, text=True)
    assert done.returncode == 2  # the default, MQTT 5: NATS answers 0x84
    assert "refused MQTT 5" in done.stderr
    assert "needs --protocol 3.1.1" in done.stderr
    assert "Traceback" not in done.stderr
