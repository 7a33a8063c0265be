"""One batch of a consume loop: what its messages produced, before it is committed and acked."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

from gateway.envelope.consumer import OpenedRecord
from gateway.envelope.pending import ResendRequest
from gateway.envelope.session import Outcome, Rejection
from gateway.sinks.base import ParkedRecord, Stored, StoredAnnouncement


@dataclass(slots=True)
class Batch:
    """What one batch of messages produced, before it is committed and acknowledged."""

    records: list[OpenedRecord] = field(default_factory=list)
    announcements: list[StoredAnnouncement] = field(default_factory=list)
    rejections: list[Rejection] = field(default_factory=list)
    requests: list[ResendRequest] = field(default_factory=list)
    acks: list[int] = field(default_factory=list)
    parked: list[ParkedRecord] = field(default_factory=list)  # to park in the sink
    unparked: list[int] = field(default_factory=list)  # ids of parked rows now opened
    sources: list[int] = field(default_factory=list)  # the parked row of each record, if any
    released: list[bytes] = field(default_factory=list)  # key ids of the epochs it accepted


@dataclass(slots=True)
class Tally:
    """Records opened, records new to the sink and resend requests sent, over a consume loop."""

    opened: int = 0
    stored: int = 0
    requests: int = 0


class Deliver(Protocol):
    """Commits a batch, then acknowledges, reports and sends what it produced."""

    async def __call__(self, work: Batch) -> Stored:
        """Deliver ``work``; return what the sink committed of it."""
        ...


def collect(work: Batch, outcome: Outcome, payload: object) -> None:
    """Add a session's ``outcome`` for a message carrying ``payload`` to ``work`` (an accepted
    announcement is kept for the sink only when ``payload`` holds its bytes)."""
    work.records.extend(outcome.opened)
    work.rejections.extend(outcome.rejected)
    work.requests.extend(outcome.requests)
    info = outcome.announced
    if info is not None:
        if isinstance(payload, bytes) and payload:
            work.announcements.append(
                StoredAnnouncement(info.kid, info.hub_id, info.epoch, payload)
            )
        work.released.append(info.kid)


def reported(work: Batch, stored: Stored) -> list[OpenedRecord]:
    """Return the records of ``work`` to report once committed: all, except a record opened
    from a parked row this commit did not delete (another member unparked it first and
    reported it), so each unparked record is reported once across the members."""
    if not work.sources:
        return work.records
    rows = stored.unparked
    return [r for r, row in zip(work.records, work.sources, strict=True) if row in rows]
