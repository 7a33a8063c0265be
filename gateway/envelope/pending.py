"""Records held back until their epoch's announcement arrives, and the resend requests for it.

A consumer that joins late, or loses an announcement, receives records of an epoch it does not
know. Rather than dropping them it holds them here (bounded by count and age, oldest dropped
first) and asks the hub to announce the epoch again on
``<base>/<hub>/request/epoch/resend`` with ``{"transaction": "<uuid>", "kid": "<hex>"}``, at
most once per ``resend_interval_s`` per key id. When the announcement is accepted, ``release``
hands the held records back to be opened. A consumer with a sink parks such records there
instead (``keep_records=False``): the buffer then only paces the resend requests. Pure: the
clock is injected.
"""

from __future__ import annotations

import json
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

from gateway.envelope.errors import UnknownEpochError
from gateway.envelope.topics import parse_data_topic, resend_topic

_MAX_REQUEST_MEMORY: Final = 4096


@dataclass(frozen=True, slots=True)
class HeldRecord:
    """A record waiting for its epoch."""

    topic: str
    payload: bytes
    kid: bytes
    held_at: float


@dataclass(frozen=True, slots=True)
class ResendRequest:
    """A request to publish: ask ``hub_id`` to announce epoch ``kid`` again on ``topic``."""

    hub_id: str
    kid: bytes
    topic: str


def resend_payload(kid: bytes, transaction: str) -> bytes:
    """Return the JSON body of an ``epoch/resend`` request for epoch ``kid``."""
    return json.dumps({"transaction": transaction, "kid": kid.hex()}).encode()


class PendingRecords:
    """A bounded buffer of records whose epoch is unknown, keyed by the epoch's kid."""

    def __init__(
        self,
        *,
        max_records: int = 10_000,
        max_age_s: float = 300.0,
        resend_interval_s: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
        keep_records: bool = True,
    ) -> None:
        if max_records < 1:
            raise ValueError("max_records must be at least 1")
        self._max_records = max_records
        self._max_age_s = max_age_s
        self._resend_interval_s = resend_interval_s
        self._clock = clock
        self.keep_records = keep_records
        self._held: deque[HeldRecord] = deque()
        self._requested: dict[bytes, float] = {}
        self.dropped = 0

    def __len__(self) -> int:
        return len(self._held)

    def hold(self, topic: str, payload: bytes, error: UnknownEpochError) -> ResendRequest | None:
        """Keep a record of an unknown epoch (unless records are parked elsewhere); return a
        resend request unless one is recent."""
        if error.kid is None:
            return None
        if self.keep_records:
            now = self._clock()
            self.expire()
            if len(self._held) >= self._max_records:
                self._held.popleft()
                self.dropped += 1
            self._held.append(HeldRecord(topic, payload, error.kid, now))
        return self.request(topic, error.kid)

    def request(self, topic: str, kid: bytes) -> ResendRequest | None:
        """Return a resend request for epoch ``kid`` of the hub of data ``topic``, unless one
        was made within ``resend_interval_s``."""
        now = self._clock()
        last = self._requested.get(kid)
        if last is not None and now - last < self._resend_interval_s:
            return None
        if len(self._requested) >= _MAX_REQUEST_MEMORY:
            self._requested.clear()
        self._requested[kid] = now
        where = parse_data_topic(topic)
        return ResendRequest(where.hub_id, kid, resend_topic(where.base, where.hub_id))

    def release(self, kid: bytes) -> list[HeldRecord]:
        """Remove and return the records held for epoch ``kid``, oldest first."""
        self._requested.pop(kid, None)
        released = [held for held in self._held if held.kid == kid]
        if released:
            self._held = deque(held for held in self._held if held.kid != kid)
        return released

    def expire(self) -> int:
        """Drop the records held longer than ``max_age_s``; return how many."""
        limit = self._clock() - self._max_age_s
        count = 0
        while self._held and self._held[0].held_at < limit:
            self._held.popleft()
            count += 1
        self.dropped += count
        return count
