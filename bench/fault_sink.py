"""The consumer side of the fault campaign: a persistent, reconnecting subscriber that opens
every record with the consumer library and keeps the (epoch, seq) pairs it opened.

The subscription is a persistent session (MQTT 3.1.1 ``clean_session`` false, fixed client id)
so the broker queues records published while the consumer is away (a broker restart). Messages
go through ``gateway.envelope.session.Session`` exactly as ``consentgate consume`` handles
them: announcements accepted, records opened, held while their epoch is unknown (with a resend
request to the hub), QoS 1 redeliveries dropped by the replay check and counted.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiomqtt

from gateway.envelope.consumer import Consumer
from gateway.envelope.keys import hub_signing_key, load_recipient_private
from gateway.envelope.pending import resend_payload
from gateway.envelope.session import Session

RECONNECT_S = 0.1


class RecordCounter:
    """Counts what a hub delivered: opened (epoch, seq) pairs, duplicates, refusals."""

    def __init__(self, consumer: Consumer, port: int, root: str, client_id: str) -> None:
        self.session = Session(consumer)
        self.port = port
        self.root = root
        self.client_id = client_id
        self.seqs: dict[int, set[int]] = {}
        self.duplicates = 0
        self.rejected: list[str] = []
        self.connects = 0
        self.messages = 0
        self.last_message = time.monotonic()
        self._requests: list[tuple[str, bytes]] = []
        self.subscribed = asyncio.Event()

    @classmethod
    def for_hub(
        cls, state_dir: Path, recipient_key: Path, hub_id: str, port: int, root: str
    ) -> RecordCounter:
        """Return a counter trusting the hub key in ``state_dir``, holding ``recipient_key``."""
        hub_key = hub_signing_key(state_dir).public_key()
        consumer = Consumer(load_recipient_private(recipient_key), {hub_id: hub_key})
        return cls(consumer, port, root, f"fault-consumer-{hub_id}")

    @property
    def opened(self) -> int:
        """Return how many distinct records were opened."""
        return sum(len(s) for s in self.seqs.values())

    def handle(self, topic: str, payload: bytes) -> None:
        """Feed one received message to the consumer session and record the outcome."""
        self.messages += 1
        self.last_message = time.monotonic()
        outcome = self.session.handle(topic, payload)
        for record in outcome.opened:
            self.seqs.setdefault(record.epoch, set()).add(record.seq)
        self.duplicates += outcome.duplicates
        self.rejected += [
            f"{r.topic}: {type(r.error).__name__}: {r.error}" for r in outcome.rejected
        ]
        self._requests += [
            (r.topic, resend_payload(r.kid, str(uuid.uuid4()))) for r in outcome.requests
        ]

    def gaps(self) -> list[tuple[int, int]]:
        """Return (epoch, seq) pairs missing below the highest seq opened in each epoch."""
        return [
            (epoch, seq)
            for epoch, seqs in sorted(self.seqs.items())
            for seq in range(max(seqs) + 1)
            if seq not in seqs
        ]

    def summary(self) -> dict[str, Any]:
        """Return the counts the campaign reports."""
        stats = self.session.stats()
        return {
            "opened": self.opened,
            "epochs": len(self.seqs),
            "lost": len(self.gaps()),
            "duplicates_dropped": self.duplicates,
            "rejected": len(self.rejected),
            "held_unopened": stats.held,
            "held_dropped": stats.dropped,
            "consumer_connects": self.connects,
            "resend_requests": stats.requests,
        }

    async def run(self) -> None:
        """Subscribe and consume until cancelled, reconnecting whenever the broker goes away."""
        while True:
            client = aiomqtt.Client(
                "127.0.0.1", self.port, identifier=self.client_id, clean_session=False, keepalive=10
            )
            try:
                async with client:
                    self.connects += 1
                    await client.subscribe(f"{self.root}/epoch", qos=1)
                    await client.subscribe(f"{self.root}/data/#", qos=1)
                    self.subscribed.set()
                    async for message in client.messages:
                        assert isinstance(message.payload, bytes)
                        self.handle(str(message.topic), message.payload)
                        while self._requests:
                            topic, body = self._requests.pop(0)
                            await client.publish(topic, body, qos=1)
            except aiomqtt.MqttError:
                await asyncio.sleep(RECONNECT_S)

    async def quiet(self, idle_s: float) -> None:
        """Return once no message arrived for ``idle_s`` seconds (callers bound the wait)."""
        while (idle := time.monotonic() - self.last_message) < idle_s:
            await asyncio.sleep(max(0.02, idle_s - idle))

    async def wait_opened(self, count: int) -> None:
        """Return once at least ``count`` records were opened (callers bound the wait)."""
        while self.opened < count:
            await asyncio.sleep(0.02)


@contextlib.asynccontextmanager
async def consuming(counter: RecordCounter) -> AsyncIterator[RecordCounter]:
    """Run ``counter`` in a task for the block."""
    task = asyncio.create_task(counter.run(), name="fault-consumer")
    try:
        yield counter
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def request(port: int, root: str, command: str, params: dict[str, Any]) -> dict[str, Any]:
    """Send one control request to a hub over MQTT and return its response body.

    Repeats the request every second while the hub does not answer (it may not have subscribed
    yet), so it suits idempotent commands; callers bound the wait.
    """
    transaction = f"fault-{uuid.uuid4().hex[:12]}"
    body = json.dumps({"transaction": transaction, **params})
    async with aiomqtt.Client(
        "127.0.0.1", port, identifier=f"fault-requester-{transaction}"
    ) as client:
        await client.subscribe(f"{root}/response/{command}", qos=1)
        while True:
            await client.publish(f"{root}/request/{command}", body, qos=1)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(1.0):
                    async for message in client.messages:
                        assert isinstance(message.payload, bytes)
                        answer: dict[str, Any] = json.loads(message.payload)
                        if answer.get("transaction") == transaction:
                            return answer
