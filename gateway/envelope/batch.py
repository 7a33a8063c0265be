"""One batch of a consume loop: what its messages produced, before it is committed and acked."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

from gateway.envelope.consumer import OpenedRecord
from gateway.envelope.pending import ResendRequest
from gateway.envelope.session import Outcome, Rejection
from gateway.sinks.base import ParkedRecord, StoredAnnouncement


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
    released: list[bytes] = field(default_factory=list)  # key ids of the epochs it accepted


@dataclass(slots=True)
class Tally:
    """Records opened, records new to the sink and resend requests sent, over a consume loop."""

    opened: int = 0
    stored: int = 0
    requests: int = 0


class Deliver(Protocol):
    """Commits a batch, then acknowledges, reports and sends what it produced."""

    async def __call__(self, work: Batch) -> int:
        """Deliver ``work``; return how many of its records were new to the sink."""
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
