"""Lightweight hubs for fleet runs: the real sealer, no daemon, published with paho directly.

A ``SimHub`` seals readings exactly as a hub does (same Sealer, same topics, same epoch
announcements); ``publish_fleet`` sends the rows of many hubs over one QoS 1 connection, each
hub's announcement retained and ahead of its records, as the outbox orders them.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field

import aiomqtt
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PublicKey

from gateway.envelope.sealer import Sealer
from gateway.model import Observation, OutboxRow


@dataclass
class SimHub:
    """One simulated hub: its identity, its sealer and how many records it sealed."""

    hub_id: str
    base: str
    recipient: X25519PublicKey
    key: Ed25519PrivateKey = field(default_factory=Ed25519PrivateKey.generate)
    sent: int = 0
    sealer: Sealer = field(init=False)

    def __post_init__(self) -> None:
        self.sealer = Sealer(
            hub_id=self.hub_id,
            topic_root=f"{self.base}/{self.hub_id}",
            signing_key=self.key,
            recipient=self.recipient,
            alg=1,
        )

    def seal(self, count: int, devices: int = 4) -> list[OutboxRow]:
        """Seal ``count`` environment readings over ``devices`` devices; return all rows."""
        now = time.time()
        batch = [
            Observation(
                device=f"{(self.sent + i) % devices:016x}",
                category="telemetry.environment",
                ts=now,
                fields={"temperature": 21.5, "humidity": 40, "n": self.sent + i},
            )
            for i in range(count)
        ]
        self.sent += count
        return self.sealer.seal_batch(batch, lambda _category: 86400.0)


async def publish_rows(port: int, rows: list[OutboxRow], protocol: int = 5) -> None:
    """Publish ``rows`` at QoS 1 in order over one connection; return once all are PUBACKed."""
    async with aiomqtt.Client(
        "127.0.0.1",
        port,
        protocol=aiomqtt.ProtocolVersion(protocol),
        max_inflight_messages=0,
    ) as client:
        window = 100  # keep the socket busy without aiomqtt's O(pending) slowdown
        for start in range(0, len(rows), window):
            await asyncio.gather(
                *(
                    client.publish(r.topic, r.payload, qos=1, retain=r.retain)
                    for r in rows[start : start + window]
                )
            )
