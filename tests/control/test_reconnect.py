"""A broker that accepts the hub and drops it right after CONNACK is not hammered: the backoff
starts afresh only after a connection that stayed up, so attempts stay one per capped delay."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from typing import Any

from gateway.backoff import Backoff
from gateway.config import MqttConfig
from gateway.mqtt.link import MqttLink
from gateway.mqtt.topics import Topics

CONNACK_V5 = bytes([0x20, 0x03, 0x00, 0x00, 0x00])  # session present 0, success, no properties
DROP_AFTER_S = 0.05


async def read_packet(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    """Read one MQTT control packet: (first byte, variable header and payload)."""
    first = (await reader.readexactly(1))[0]
    length, shift = 0, 0
    while True:  # MQTT 5 section 1.5.5: variable byte integer
        byte = (await reader.readexactly(1))[0]
        length |= (byte & 0x7F) << shift
        shift += 7
        if not byte & 0x80:
            break
    return first, await reader.readexactly(length)


@contextlib.asynccontextmanager
async def dropping_broker() -> AsyncIterator[tuple[int, list[float]]]:
    """An MQTT 5 server on loopback that accepts the hub (CONNACK, SUBACK, PUBACK for its
    ``online`` status) and drops the connection DROP_AFTER_S later: a broker that refuses
    something of the hub's, as the hub sees it."""
    attempts: list[float] = []
    handlers: set[asyncio.Task[None]] = set()
    loop = asyncio.get_running_loop()

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        attempts.append(loop.time())
        task = asyncio.current_task()
        assert task is not None
        handlers.add(task)
        try:
            with contextlib.suppress(OSError, asyncio.IncompleteReadError, TimeoutError):
                async with asyncio.timeout(DROP_AFTER_S):
                    await read_packet(reader)  # CONNECT
                    writer.write(CONNACK_V5)
                    while True:
                        first, body = await read_packet(reader)
                        if first >> 4 == 8:  # SUBSCRIBE: packet id, then granted QoS 1
                            writer.write(bytes([0x90, 0x04]) + body[:2] + b"\x00\x01")
                        elif first >> 4 == 3 and first & 0x06:  # PUBLISH at QoS 1: PUBACK
                            topic_end = 2 + int.from_bytes(body[:2], "big")
                            writer.write(bytes([0x40, 0x02]) + body[topic_end : topic_end + 2])
        finally:
            # closed here even when cancelled, not by the garbage collector in a later test
            writer.close()
            handlers.discard(task)

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        yield port, attempts
    finally:
        server.close()
        # Handlers end by themselves within DROP_AFTER_S and close their connection. One
        # accepted just now may not have started yet: cancelled before it starts, it would
        # never close its writer, and the garbage collector would warn in a later test.
        waiting = {*handlers, *(t for t in asyncio.all_tasks() if _serving(t, serve))}
        if waiting:
            await asyncio.wait(waiting, timeout=5 * DROP_AFTER_S)
        for task in list(handlers):
            task.cancel()
        await asyncio.gather(*handlers, return_exceptions=True)
        await server.wait_closed()


def _serving(task: asyncio.Task[Any], handler: Callable[..., Any]) -> bool:
    """Return whether ``task`` runs ``handler`` (started or not)."""
    return getattr(task.get_coro(), "__qualname__", None) == handler.__qualname__


async def attempts_in(seconds: float, backoff: Backoff) -> int:
    """Run a link against the dropping broker for ``seconds``; return its connection attempts."""
    async with dropping_broker() as (port, attempts):
        link = MqttLink(
            MqttConfig(port=port, protocol=5), Topics("consentgate/drop-test"), "drop", backoff
        )
        task = asyncio.create_task(link.run())
        await asyncio.sleep(seconds)
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        return len(attempts)


async def test_a_broker_that_drops_after_connack_sees_one_attempt_per_capped_delay() -> None:
    cap = 0.4
    healthy = Backoff(initial=0.05, cap=cap, reset_after_s=30.0)
    seconds = 4.0
    attempts = await attempts_in(seconds, healthy)
    # the ramp (0.05 .. 0.4: at most 4 delays below the cap, < 0.75 s in all), then at most one
    # attempt per cap: never more than 1 + 4 + seconds / cap
    assert 3 <= attempts <= 1 + 4 + seconds / cap
    # the old rule (afresh after every connection) retries at the first delay forever
    eager = await attempts_in(seconds, Backoff(initial=0.05, cap=cap, reset_after_s=0.0))
    assert eager > 2 * attempts
