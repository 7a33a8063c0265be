"""What a consumer does with each MQTT message, without MQTT (the consume loop's pure core).

Messages on ``<base>/<hub>/epoch`` are announcements: accepted, then the records held for that
epoch are opened. Anything else is a record: opened, or held (with a resend request) when its
epoch is unknown. Duplicates (``ReplayError``) are counted, not reported; other refusals are
returned with the topic they came on. An empty payload on an epoch topic is the deletion of a
retained message, not an announcement, and is ignored. An outcome names the epoch a held record
waits for and the epoch an announcement installed, so the consume loop can park the one in its
sink (``gateway.envelope.parking``) and open what was parked for the other.
"""

from __future__ import annotations

from dataclasses import dataclass

from gateway.envelope.consumer import Consumer, EpochInfo, OpenedRecord
from gateway.envelope.errors import ReplayError, UnknownEpochError
from gateway.envelope.pending import PendingRecords, ResendRequest
from gateway.errors import EnvelopeError


@dataclass(frozen=True, slots=True)
class Rejection:
    """A message the consumer refused, and why."""

    topic: str
    error: EnvelopeError


@dataclass(frozen=True, slots=True)
class Outcome:
    """The results of handling one message."""

    opened: tuple[OpenedRecord, ...] = ()
    rejected: tuple[Rejection, ...] = ()
    requests: tuple[ResendRequest, ...] = ()
    duplicates: int = 0
    held: bytes | None = None  # the key id of the epoch the message's record waits for
    announced: EpochInfo | None = None  # the epoch the message's announcement installed


@dataclass(frozen=True, slots=True)
class ConsumeStats:
    """Counts over a consume session."""

    opened: int
    duplicates: int
    rejected: int
    held: int
    dropped: int
    announcements: int
    requests: int
    stored: int = 0  # records new to the sink (not redelivered to another member before)


class Session:
    """Routes messages to a Consumer and a PendingRecords buffer, counting what happens."""

    def __init__(self, consumer: Consumer, pending: PendingRecords | None = None) -> None:
        self.consumer = consumer
        self.pending = pending if pending is not None else PendingRecords()
        self._opened = self._duplicates = self._rejected = 0
        self._announcements = self._requests = 0

    def handle(self, topic: str, payload: bytes) -> Outcome:
        """Process one message received on ``topic`` and return what came of it."""
        if topic.endswith("/epoch"):
            return self._announcement(topic, payload)
        opened: list[OpenedRecord] = []
        rejected: list[Rejection] = []
        requests: list[ResendRequest] = []
        held: list[bytes] = []
        duplicates = self._open(topic, payload, opened, rejected, requests=requests, held=held)
        outcome = Outcome(tuple(opened), tuple(rejected), tuple(requests), duplicates)
        if held:
            outcome = Outcome(outcome.opened, outcome.rejected, outcome.requests, 0, held[0])
        return self._count(outcome)

    def stats(self) -> ConsumeStats:
        """Return the counts so far."""
        return ConsumeStats(
            opened=self._opened,
            duplicates=self._duplicates,
            rejected=self._rejected,
            held=len(self.pending),
            dropped=self.pending.dropped,
            announcements=self._announcements,
            requests=self._requests,
        )

    def _announcement(self, topic: str, payload: bytes) -> Outcome:
        if not payload:
            return Outcome()
        try:
            info = self.consumer.accept_announcement(payload, topic)
        except EnvelopeError as exc:
            return self._count(Outcome(rejected=(Rejection(topic, exc),)))
        self._announcements += 1
        opened: list[OpenedRecord] = []
        rejected: list[Rejection] = []
        duplicates = 0
        for held in self.pending.release(info.kid):
            duplicates += self._open(held.topic, held.payload, opened, rejected)
        return self._count(Outcome(tuple(opened), tuple(rejected), (), duplicates, announced=info))

    def _open(
        self,
        topic: str,
        payload: bytes,
        opened: list[OpenedRecord],
        rejected: list[Rejection],
        *,
        requests: list[ResendRequest] | None = None,
        held: list[bytes] | None = None,
    ) -> int:
        """Open one record into the lists given; return 1 if it was a duplicate, else 0."""
        try:
            opened.append(self.consumer.open(topic, payload))
        except ReplayError:
            return 1
        except UnknownEpochError as exc:
            request = self.pending.hold(topic, payload, exc)
            if exc.kid is not None and held is not None:
                held.append(exc.kid)
            if request is not None and requests is not None:
                requests.append(request)
        except EnvelopeError as exc:
            rejected.append(Rejection(topic, exc))
        return 0

    def _count(self, outcome: Outcome) -> Outcome:
        self._opened += len(outcome.opened)
        self._duplicates += outcome.duplicates
        self._rejected += len(outcome.rejected)
        self._requests += len(outcome.requests)
        return outcome
