"""A client of the hub's MQTT request API, as a user's app would be: a request on
``<root>/request/<command>``, its answer on ``<root>/response/<command>`` by transaction."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
from collections.abc import AsyncIterator
from typing import Any

import aiomqtt

from gateway.config import Config


class Requests:
    """Sends requests on ``<root>/request/<command>`` and returns their responses."""

    def __init__(self, client: aiomqtt.Client, root: str, timeout_s: float = 10.0) -> None:
        self._client, self._root = client, root
        self._timeout_s = timeout_s
        self._ids = itertools.count()
        self._waiting: dict[str, asyncio.Future[dict[str, Any]]] = {}

    async def pump(self) -> None:
        """Route responses to the requests waiting for them."""
        async for message in self._client.messages:
            assert isinstance(message.payload, bytes)
            body = json.loads(message.payload)
            future = self._waiting.pop(str(body.get("transaction")), None)
            if future is not None and not future.done():
                future.set_result(body)

    async def __call__(self, command: str, **params: Any) -> dict[str, Any]:
        """Send ``command`` with ``params``; return the response (``timeout_s`` at most)."""
        transaction = f"t{next(self._ids)}"
        future = asyncio.get_running_loop().create_future()
        self._waiting[transaction] = future
        payload = json.dumps({"transaction": transaction, **params})
        await self._client.publish(f"{self._root}/request/{command}", payload, qos=1)
        async with asyncio.timeout(self._timeout_s):
            body: dict[str, Any] = await future
        return body


@contextlib.asynccontextmanager
async def requests(config: Config, port: int, timeout_s: float = 10.0) -> AsyncIterator[Requests]:
    """Yield a request client for the hub of ``config``; each answer waits ``timeout_s``."""
    async with aiomqtt.Client("127.0.0.1", port) as client:
        await client.subscribe(f"{config.topic_root}/response/#", qos=1)
        ask = Requests(client, config.topic_root, timeout_s)
        task = asyncio.create_task(ask.pump(), name="responses")
        try:
            yield ask
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
