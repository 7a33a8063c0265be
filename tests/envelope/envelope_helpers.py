"""Shared builders for the envelope tests: keys, a settable clock, sealers, consumers."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from gateway.envelope.consumer import Consumer
from gateway.envelope.sealer import Sealer
from gateway.model import Observation, OutboxRow, Value

HUB_ID = "hub-1"
BASE = "consentgate"
TOPIC_ROOT = f"{BASE}/{HUB_ID}"
DEVICE_A = "0123456789abcdef"
DEVICE_B = "fedcba9876543210"
ENV = "telemetry.environment"
HEALTH = "health"
T0 = 1_750_000_000.0


class Clock:
    """A clock the test sets by hand."""

    def __init__(self, now: float = T0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@dataclass
class World:
    """One hub and one consumer that trusts it, sharing a clock."""

    alg: int = 1
    clock: Clock = field(default_factory=Clock)
    hub_key: Ed25519PrivateKey = field(default_factory=Ed25519PrivateKey.generate)
    recipient: X25519PrivateKey = field(default_factory=X25519PrivateKey.generate)
    max_records: int = 65536
    max_age_s: float = 3600.0
    base: str = BASE

    @property
    def topic_root(self) -> str:
        """The hub's topic prefix, ``<base>/<hub_id>``."""
        return f"{self.base}/{HUB_ID}"

    def sealer(
        self, *, alg: int | None = None, last_epoch: int = 0, prev_hash: bytes = b""
    ) -> Sealer:
        """Return a sealer of this hub, continuing from ``last_epoch`` and ``prev_hash``."""
        return Sealer(
            hub_id=HUB_ID,
            topic_root=self.topic_root,
            signing_key=self.hub_key,
            recipient=self.recipient.public_key(),
            alg=self.alg if alg is None else alg,
            max_records=self.max_records,
            max_age_s=self.max_age_s,
            last_epoch=last_epoch,
            prev_hash=prev_hash,
            clock=self.clock,
            monotonic=self.clock,
        )

    def consumer(
        self, *, accept_delay_s: float = 7 * 86400.0, max_epochs_per_hub: int = 512
    ) -> Consumer:
        """Return a consumer that trusts this hub and holds the recipient key."""
        return Consumer(
            self.recipient,
            {HUB_ID: self.hub_key.public_key()},
            clock=self.clock,
            accept_delay_s=accept_delay_s,
            max_epochs_per_hub=max_epochs_per_hub,
        )


def obs(
    device: str = DEVICE_A,
    category: str = ENV,
    ts: float = T0,
    fields: Mapping[str, Value] | None = None,
) -> Observation:
    """Return an observation with a few default fields."""
    return Observation(
        device=device,
        category=category,
        ts=ts,
        fields={"temperature": 21.5, "humidity": 40} if fields is None else fields,
    )


def ttl(_category: str) -> float:
    """A fixed one-day time to live."""
    return 86400.0


def split(rows: list[OutboxRow]) -> tuple[list[OutboxRow], list[OutboxRow]]:
    """Return (announcement rows, record rows) in their original order."""
    return [r for r in rows if r.retain], [r for r in rows if not r.retain]


def seal(
    sealer: Sealer, count: int, device: str = DEVICE_A, category: str = ENV
) -> list[OutboxRow]:
    """Seal ``count`` observations of one device and category (ts = T0 + i); return all rows."""
    batch = [obs(device, category, ts=T0 + i, fields={"i": i}) for i in range(count)]
    return sealer.seal_batch(batch, ttl)
