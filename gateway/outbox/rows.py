"""What the outbox hands out: queued rows, tombstones and per-device summaries."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Pending:
    """A queued row, as the publisher sends it."""

    id: int
    topic: str
    payload: bytes
    device: str
    category: str
    retain: bool


@dataclass(frozen=True, slots=True)
class Tombstone:
    """Records of ``category`` (of ``device``, or every device) with id <= ``up_to`` are dead.

    A withdrawal writes one at once; the publisher never sends a row it covers, even if
    consent comes back before the rows are physically purged.
    """

    category: str
    device: str | None
    up_to: int

    def covers(self, row: Pending) -> bool:
        """Return whether ``row`` is one of the records this tombstone killed."""
        return (
            row.id <= self.up_to
            and row.category == self.category
            and (self.device is None or row.device == self.device)
        )


@dataclass(frozen=True, slots=True)
class QueuedGroup:
    """What is queued of one device and category (for exports and erasure)."""

    device: str
    category: str
    records: int
    bytes: int
    oldest: float
    newest: float
    expires: float
