"""config/nats-acl.sh on a private nats-server: each hub is confined to its own subtree.

The script's output is included in the server's config as shipped. A hub's record reaches the
consumer; the same hub publishing into another hub's subtree reaches nobody; a hub cannot
subscribe to another hub's topics; the consumer cannot publish records; a wrong password is
refused.
"""

from __future__ import annotations

import asyncio
import contextlib
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path

import aiomqtt
import pytest
from paho.mqtt.reasoncodes import ReasonCode

from tests.fleet.brokers import Nats

SCRIPT = Path(__file__).resolve().parents[2] / "config" / "nats-acl.sh"
V311 = aiomqtt.ProtocolVersion.V311


def _acl_block(tmp_path: Path) -> str:
    for name, secret in (("pw.hub-1", "one"), ("pw.hub-2", "two"), ("pw.consumer", "cons")):
        (tmp_path / name).write_text(secret + "\n")
    return subprocess.run(
        ["sh", str(SCRIPT), "hub-1", "hub-2"],
        env={
            "HUB_PASSWORD_FILE": str(tmp_path / "pw"),
            "CONSUMER_PASSWORD_FILE": str(tmp_path / "pw.consumer"),
            "PATH": "/usr/bin:/bin",
        },
        check=True,
        capture_output=True,
        text=True,
    ).stdout


@pytest.fixture
async def nats_with_acl(tmp_path: Path) -> AsyncIterator[Nats]:
    """A private nats-server whose users are written by config/nats-acl.sh for hub-1, hub-2."""
    (tmp_path / "nats").mkdir()
    (tmp_path / "nats" / "consentgate-acl.conf").write_text(_acl_block(tmp_path))
    server = Nats(tmp_path / "nats", "include ./consentgate-acl.conf").start()
    yield server
    server.stop()


def _client(port: int, user: str, password: str) -> aiomqtt.Client:
    return aiomqtt.Client(
        "127.0.0.1", port, username=user, password=password, protocol=V311, identifier=user
    )


async def _received(client: aiomqtt.Client, seconds: float) -> list[str]:
    got: list[str] = []
    try:
        async with asyncio.timeout(seconds):
            async for message in client.messages:
                got.append(message.topic.value)
    except TimeoutError:
        pass
    return got


async def test_each_hub_is_confined_to_its_own_subtree(nats_with_acl: Nats) -> None:
    port = nats_with_acl.port
    async with _client(port, "consentgate-consumer", "cons") as consumer:
        await consumer.subscribe("consentgate/+/data/#", qos=1)
        async with _client(port, "hub-1", "one") as hub:
            await hub.publish("consentgate/hub-1/data/0000000000000000/health", b"own", qos=1)
            # NATS drops a publish the user may not make (and may close the connection).
            with contextlib.suppress(aiomqtt.MqttError):
                await hub.publish("consentgate/hub-2/data/0000000000000000/health", b"x", qos=1)
        assert await _received(consumer, 2.0) == ["consentgate/hub-1/data/0000000000000000/health"]
        await consumer.publish("consentgate/hub-1/data/0000000000000000/health", b"c", qos=1)
        assert await _received(consumer, 1.0) == []  # the consumer may not publish records


async def test_a_hub_cannot_subscribe_to_another_hub(nats_with_acl: Nats) -> None:
    async with _client(nats_with_acl.port, "hub-1", "one") as hub:
        own = await hub.subscribe("consentgate/hub-1/request/#", qos=1)
        other = await hub.subscribe("consentgate/hub-2/#", qos=1)
    assert [_code(c) for c in own] == [1]
    assert [_code(c) for c in other] == [0x80]


def _code(granted: int | ReasonCode) -> int:
    return granted if isinstance(granted, int) else int(granted.value)


async def test_a_wrong_password_is_refused(nats_with_acl: Nats) -> None:
    with pytest.raises(aiomqtt.MqttError):
        async with _client(nats_with_acl.port, "hub-1", "two"):
            pass
