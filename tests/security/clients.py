"""MQTT clients of the consumer and operator roles, with their credentials."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any

import aiomqtt

from tests.security.conftest import PASSWORDS
from tests.support.hub import RecordSink
from tests.support.pump import pumping


def credentials(user: str) -> dict[str, Any]:
    """Return the aiomqtt client arguments that log ``user`` in with its test password."""
    return {"username": user, "password": PASSWORDS[user]}


@contextlib.asynccontextmanager
async def consuming(sink: RecordSink, port: int, **client: Any) -> AsyncIterator[None]:
    """Feed ``sink`` from a shared subscription of the consumer role."""
    root = sink.config.topic_root

    def mqtt() -> aiomqtt.Client:
        return aiomqtt.Client("127.0.0.1", port, protocol=aiomqtt.ProtocolVersion.V5, **client)

    topics = (f"{root}/epoch", f"$share/cloud/{root}/data/#")
    async with pumping(mqtt, topics, sink.handle, name="secure-consumer"):
        yield
