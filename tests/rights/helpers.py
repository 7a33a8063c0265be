"""Control requests over real MQTT, as an operator's client sends them."""

from __future__ import annotations

import asyncio
import json
import uuid
from typing import Any

import aiomqtt


async def mqtt_request(
    port: int,
    root: str,
    command: str,
    params: dict[str, Any],
    *,
    timeout: float = 10.0,
    **client: Any,
) -> dict[str, Any]:
    """Publish a request to ``<root>/request/<command>``; return the JSON response body."""
    transaction = uuid.uuid4().hex
    async with aiomqtt.Client("127.0.0.1", port, **client) as mqtt:
        await mqtt.subscribe(f"{root}/response/{command}", qos=1)
        body = json.dumps({"transaction": transaction, **params}).encode()
        await mqtt.publish(f"{root}/request/{command}", body, qos=1)
        async with asyncio.timeout(timeout):
            async for message in mqtt.messages:
                assert isinstance(message.payload, bytes)
                response: dict[str, Any] = json.loads(message.payload)
                if response.get("transaction") == transaction:
                    return response
    raise AssertionError("unreachable")
