"""config/rabbitmq-acl.sh on a private RabbitMQ node: a hub works in its own subtree, only there.

The script (rabbitmqctl against the node) creates two hubs and the consumer. Under it a real
hub daemon, connecting as its hub id, subscribes to its requests and publishes its records;
`consume`, connecting as the consumer, opens them, and its epoch resend request is answered.
A hub publishing into another hub's subtree is refused (RabbitMQ closes the connection: MQTT
3.1.1 has no negative PUBACK) and reaches nobody; its subscription to another hub is refused;
the consumer cannot publish records; a wrong password is refused.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import subprocess
from dataclasses import dataclass
from pathlib import Path

import aiomqtt
import pytest

from gateway.envelope.consumer import Consumer, OpenedRecord
from gateway.envelope.keys import hub_signing_key, load_recipient_private
from gateway.envelope.live import Broker, consume
from tests.fleet.brokers import RabbitMQ
from tests.support.hub import hub_config, running_hub

SCRIPT = Path(__file__).resolve().parents[2] / "config" / "rabbitmq-acl.sh"
RABBITMQCTL_DIR = "/usr/lib/rabbitmq/bin"  # the node's own tools, not Debian's su wrapper
BASE = "consentgate"
CONSUMER = "consentgate-consumer"
V311 = aiomqtt.ProtocolVersion.V311
REFUSED_S = 2.0  # the node closes a refused client's connection; aiomqtt notices by timeout


@dataclass(frozen=True)
class Users:
    """The passwords the script was given, and where the hubs' password files are."""

    port: int
    files: Path
    hubs: tuple[str, str]
    log: Path

    def refusals(self, user: str) -> list[str]:
        """Return the routing keys the node logged as refused to ``user``."""
        refused = re.compile(
            rf"access to topic '([^']+)' in exchange 'amq.topic' in vhost "
            rf"'/' refused for user '{re.escape(user)}'"
        )
        return refused.findall(self.log.read_text(errors="replace"))

    def password(self, user: str) -> str:
        """Return ``user``'s password."""
        return f"pw-{user}"

    def client(self, user: str, identifier: str, password: str | None = None) -> aiomqtt.Client:
        """Return an MQTT 3.1.1 client logged in as ``user``."""
        return aiomqtt.Client(
            "127.0.0.1",
            self.port,
            username=user,
            password=self.password(user) if password is None else password,
            protocol=V311,
            identifier=identifier,
            timeout=10,
        )


@pytest.fixture(scope="module")
def users(rabbitmq: RabbitMQ, tmp_path_factory: pytest.TempPathFactory) -> Users:
    """Run config/rabbitmq-acl.sh on the shared node for two hubs of this module."""
    files = tmp_path_factory.mktemp("rabbitmq-acl")
    acl = Users(
        rabbitmq.port, files, ("acl-hub-1", "acl-hub-2"), rabbitmq.workdir / "log" / "node.log"
    )
    for user in acl.hubs:
        (files / f"pw.{user}").write_text(acl.password(user) + "\n")
    (files / "pw.consumer").write_text(acl.password(CONSUMER))
    env = {
        **rabbitmq.env(),  # the node's name, Erlang cookie and ports
        "PATH": f"{RABBITMQCTL_DIR}:{os.environ['PATH']}",
        "HUB_PASSWORD_FILE": str(files / "pw"),
        "CONSUMER_PASSWORD_FILE": str(files / "pw.consumer"),
    }
    done = subprocess.run(
        ["sh", str(SCRIPT), *acl.hubs], env=env, capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stderr
    return acl


async def test_a_hub_under_the_script_is_served_end_to_end(users: Users, tmp_path: Path) -> None:
    hub_id = users.hubs[0]
    config = hub_config(
        tmp_path,
        users.port,
        hub_id,
        simulator={"devices": 2, "rate_hz": 20.0},
        mqtt={
            "protocol": 4,
            "base_topic": BASE,
            "username": hub_id,
            "password_file": str(users.files / f"pw.{hub_id}"),
        },
    )
    opened: list[OpenedRecord] = []
    async with running_hub(config):
        consumer = Consumer(
            load_recipient_private(tmp_path / "recipient" / "recipient.key"),
            {hub_id: hub_signing_key(config.state_dir).public_key()},
        )
        stats = await consume(
            consumer,
            Broker(port=users.port, username=CONSUMER, password=users.password(CONSUMER)),
            BASE,
            on_record=opened.append,
            count=5,
            seconds=30,
            protocol=4,
            client_id="acl-consumer",
        )
        assert (stats.opened >= 5, stats.rejected) == (True, 0)
        # The consumer's one request: the hub (subscribed to its requests) answers it.
        root = config.topic_root
        async with users.client(CONSUMER, "acl-consumer-request") as client:
            await client.subscribe(f"{root}/response/epoch/resend", qos=1)
            request = {"transaction": "r1", "kid": opened[0].kid.hex()}
            await client.publish(f"{root}/request/epoch/resend", json.dumps(request), qos=1)
            async with asyncio.timeout(15):
                async for message in client.messages:
                    assert isinstance(message.payload, bytes)
                    answer = json.loads(message.payload)
                    break
    assert (answer["transaction"], answer["status"]) == ("r1", "ok")


async def test_a_hub_cannot_publish_into_another_hubs_subtree(users: Users) -> None:
    own, other = users.hubs
    record = f"{BASE}/{own}/data/00000000000000ff/telemetry_environment"
    forged = f"{BASE}/{other}/data/00000000000000ff/telemetry_environment"
    async with users.client(CONSUMER, "acl-watcher") as watcher:
        await watcher.subscribe(f"{BASE}/+/data/#", qos=1)
        async with users.client(own, "acl-own") as hub:
            await hub.publish(record, b"own", qos=1)
        # Refused: the node logs it and drops the connection without a PUBACK.
        with pytest.raises(aiomqtt.MqttError):
            async with users.client(own, "acl-forger") as hub:
                await hub.publish(forged, b"forged", qos=1, timeout=REFUSED_S)
        with pytest.raises(aiomqtt.MqttError):
            async with users.client(CONSUMER, "acl-consumer-forger") as consumer:
                await consumer.publish(record, b"by-the-consumer", qos=1, timeout=REFUSED_S)
        assert await _received(watcher, 1.0) == [(record, b"own")]
    assert _routing_key(forged) in users.refusals(own)
    assert _routing_key(record) in users.refusals(CONSUMER)


async def test_a_hub_cannot_subscribe_to_another_hub(users: Users) -> None:
    own, other = users.hubs
    async with users.client(own, "acl-own-requests") as hub:
        granted = await hub.subscribe(f"{BASE}/{own}/request/#", qos=1)
    assert [_code(g) for g in granted] == [1]
    with pytest.raises(aiomqtt.MqttError):
        async with users.client(own, "acl-snooper") as hub:
            await hub.subscribe(f"{BASE}/{other}/#", qos=1, timeout=REFUSED_S)
    assert _routing_key(f"{BASE}/{other}/#") in users.refusals(own)


async def test_a_wrong_password_is_refused(users: Users) -> None:
    with pytest.raises(aiomqtt.MqttError):
        async with users.client(users.hubs[0], "acl-wrong", password="pw-acl-hub-2"):
            pass


async def _received(client: aiomqtt.Client, seconds: float) -> list[tuple[str, bytes]]:
    got: list[tuple[str, bytes]] = []
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(seconds):
            async for message in client.messages:
                assert isinstance(message.payload, bytes)
                got.append((message.topic.value, message.payload))
    return got


def _routing_key(topic: str) -> str:
    return topic.replace("/", ".").replace("+", "*")


def _code(granted: object) -> int:
    value = getattr(granted, "value", granted)
    assert isinstance(value, int)
    return value
