"""One way for tests to follow a broker: every message on some topics to a handler, across
broker restarts."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable, Sequence

import aiomqtt


@contextlib.asynccontextmanager
async def pumping(
    client: Callable[[], aiomqtt.Client],
    topics: Sequence[str],
    handle: Callable[[str, bytes], None],
    *,
    name: str,
    retry_s: float = 0.1,
) -> AsyncIterator[asyncio.Task[None]]:
    """Hand every message on ``topics`` (QoS 1) to ``handle(topic, payload)`` while the block
    runs; a fresh ``client()`` connects again whenever the broker goes away."""

    async def pump() -> None:
        while True:
            try:
                async with client() as mqtt:
                    for topic in topics:
                        await mqtt.subscribe(topic, qos=1)
                    async for message in mqtt.messages:
                        assert isinstance(message.payload, bytes)
                        handle(str(message.topic), message.payload)
            except aiomqtt.MqttError:
                await asyncio.sleep(retry_s)

    task = asyncio.create_task(pump(), name=name)
    try:
        yield task
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
