"""MQTT clients of the consumer and operator roles, with their credentials."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import aiomqtt

from tests.security.conftest import PASSWORDS
from tests.support.hub import RecordSink


def credentials(user: str) -> dict[str, Any]:
    """Return the aiomqtt client arguments that log ``user`` in with its test password."""
    return {"username": user, "password": PASSWORDS[user]}


@contextlib.asynccontextmanager
async def consuming(sink: RecordSink, port: int, **client: Any) -> AsyncIterator[None]:
    """Feed ``sink`` from a shared subscription of the consumer role."""
    root = sink.config.topic_root

    async def pump() -> None:
        while True:
            try:
                async with aiomqtt.Client(
                    "127.0.0.1", port, protocol=aiomqtt.ProtocolVersion.V5, **client
                ) as mqtt:
                    await mqtt.subscribe(f"{root}/epoch", qos=1)
                    await mqtt.subscribe(f"$share/cloud/{root}/data/#", qos=1)
                    async for message in mqtt.messages:
                        assert isinstance(message.payload, bytes)
                        sink.handle(str(message.topic), message.payload)
            except aiomqtt.MqttError:
                await asyncio.sleep(0.1)

    task = asyncio.create_task(pump(), name="secure-consumer")
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
