"""Incoming control requests: two lanes, bounded queues, per-client rates, checked reply topics.

Requests arrive from paho's network callback (``offer``, synchronous and cheap: no JSON is
decoded there) and wait in one of two lanes, each served one request at a time by its own
worker (``run``):

- the **critical lane** takes the privacy-critical commands (``CRITICAL``: consent/set,
  try_now, restrict, erase, unpair, signed or not), so a withdrawal never waits behind other
  requests, whatever a flood holds;
- the **normal lane** takes everything else; when it is full, the oldest waiting request is
  dropped and answered ``busy`` (counted as ``requests.dropped``).

Each client (its MQTT 5 response topic; the requests without one share one client) has a token
bucket per lane; a request over its client's rate is answered ``busy`` at once
(``requests.limited``). Memory is bounded by construction: at most ``Limits.queue`` +
``Limits.critical_queue`` requests of at most ``MAX_REQUEST_BYTES`` each wait, larger ones are
refused on arrival, and at most ``Limits.clients`` buckets are kept.

A response topic inside the hub's own topic tree (or with a wildcard, or a ``$`` topic) is
refused: the request is not run and is answered ``invalid_request`` on the default response
topic. Every refusal here also reaches the router's refusal listeners (counted and audited in
aggregate). Every request whose transaction can be read gets it echoed, busy or not.
"""

from __future__ import annotations

import asyncio
import collections
import time
from dataclasses import dataclass
from typing import Final, Protocol

from gateway.commands.router import (
    MAX_REQUEST_BYTES,
    Router,
    error_response,
    recover_transaction,
)
from gateway.counters import Counters
from gateway.errors import CommandError
from gateway.mqtt.link import Request
from gateway.mqtt.topics import Topics

REFUSALS_MAX: Final = 1024
CRITICAL: Final = frozenset({"consent/set", "try_now", "restrict", "erase", "unpair"})
MAX_TOPIC_BYTES: Final = 65535  # MQTT 5 section 1.5.4: a UTF-8 string's length is 2 bytes


class Send(Protocol):
    """Queues one answer on the broker connection."""

    def __call__(
        self, topic: str, payload: bytes, correlation: bytes | None, *, qos: int = 1
    ) -> None:
        """Queue ``payload`` on ``topic`` echoing ``correlation``, at ``qos``."""


_Kind = tuple[str, str, str, str | None]
"""(command, or "" if unknown; code; message; client) of a refusal."""


@dataclass(frozen=True, slots=True)
class Limits:
    """Bounds of the request intake (defaults sized for a Raspberry Pi)."""

    queue: int = 128
    critical_queue: int = 32
    rate_per_s: float = 20.0
    burst: int = 40
    critical_rate_per_s: float = 5.0
    critical_burst: int = 10
    clients: int = 256


@dataclass(frozen=True, slots=True)
class _Item:
    request: Request
    client: str | None
    topic: str


class _Bucket:
    """A token bucket: ``burst`` requests at once, refilled at ``rate`` per second."""

    __slots__ = ("_last", "_tokens")

    def __init__(self, burst: float) -> None:
        self._tokens = burst
        self._last = time.monotonic()

    def take(self, rate: float, burst: float, now: float) -> bool:
        self._tokens = min(burst, self._tokens + (now - self._last) * rate)
        self._last = now
        if self._tokens < 1.0:
            return False
        self._tokens -= 1.0
        return True


class Intake:
    """Takes requests from the broker connection and runs them in two bounded lanes."""

    def __init__(
        self,
        router: Router,
        topics: Topics,
        counters: Counters,
        send: Send,
        limits: Limits | None = None,
    ) -> None:
        self._router = router
        self._topics = topics
        self._counters = counters
        self._send = send
        self.limits = limits or Limits()
        self._critical: collections.deque[_Item] = collections.deque()
        self._normal: collections.deque[_Item] = collections.deque()
        self._critical_ready = asyncio.Event()
        self._normal_ready = asyncio.Event()
        self._buckets: collections.OrderedDict[tuple[bool, str | None], _Bucket] = (
            collections.OrderedDict()
        )
        # refusals waiting for the router's listeners (count, audit), the same kind coalesced;
        # past REFUSALS_MAX kinds, counted as requests.refusals_unaudited only
        self._refusals: dict[_Kind, tuple[CommandError, int]] = {}
        self._refusals_ready = asyncio.Event()

    @property
    def waiting(self) -> int:
        """Return how many requests wait in both lanes."""
        return len(self._critical) + len(self._normal)

    def offer(self, request: Request) -> None:
        """Queue ``request`` in its lane, or answer it ``busy``/``invalid_request`` at once."""
        self._counters.inc("requests.received")
        topic, client, error = self._reply_topic(request)
        item = _Item(request, client, topic)
        if error is not None:
            self._refuse(item, error, "requests.bad_response_topic")
            return
        if len(request.payload) > MAX_REQUEST_BYTES:  # answered now: never held in a queue
            error = CommandError(
                "invalid_request", f"request larger than {MAX_REQUEST_BYTES} bytes"
            )
            self._refuse(item, error, "requests.oversized")
            return
        critical = request.command in CRITICAL
        if not self._take(critical, client):
            self._refuse(
                item, CommandError("busy", "too many requests; retry later"), "requests.limited"
            )
            return
        if critical:
            if len(self._critical) >= self.limits.critical_queue:
                self._refuse(
                    item, CommandError("busy", "too many requests waiting"), "requests.dropped"
                )
                return
            self._critical.append(item)
            self._critical_ready.set()
            return
        if len(self._normal) >= self.limits.queue:  # the oldest waiting request gives way
            oldest = self._normal.popleft()
            self._refuse(
                oldest, CommandError("busy", "too many requests waiting"), "requests.dropped"
            )
        self._normal.append(item)
        self._normal_ready.set()

    async def run(self) -> None:
        """Serve both lanes until cancelled, one request at a time in each."""
        async with asyncio.TaskGroup() as group:
            group.create_task(
                self._serve(self._critical, self._critical_ready), name="requests-critical"
            )
            group.create_task(self._serve(self._normal, self._normal_ready), name="requests")
            group.create_task(self._report_refusals(), name="requests-refused")

    async def _serve(self, lane: collections.deque[_Item], ready: asyncio.Event) -> None:
        while True:
            if not lane:
                ready.clear()
                await ready.wait()
                continue
            item = lane.popleft()
            request = item.request
            response = await self._router.dispatch(request.command, request.payload, item.client)
            self._send(item.topic, response.encode(), request.correlation)

    def _take(self, critical: bool, client: str | None) -> bool:
        key = (critical, client)
        bucket = self._buckets.get(key)
        limits = self.limits
        burst = limits.critical_burst if critical else limits.burst
        if bucket is None:
            bucket = _Bucket(burst)
            self._buckets[key] = bucket
            if len(self._buckets) > limits.clients:
                self._buckets.popitem(last=False)  # the least recently seen client
        else:
            self._buckets.move_to_end(key)
        rate = limits.critical_rate_per_s if critical else limits.rate_per_s
        return bucket.take(rate, burst, time.monotonic())

    def _reply_topic(self, request: Request) -> tuple[str, str | None, CommandError | None]:
        default = self._topics.response(request.command)
        wanted = request.response_topic
        if wanted is None:
            return default, None, None
        if not reply_topic_allowed(self._topics, wanted):
            error = CommandError(
                "invalid_request",
                "response_topic must be a topic outside the hub's own tree, without wildcards",
            )
            return default, None, error
        return wanted, wanted, None

    def _refuse(self, item: _Item, error: CommandError, counter: str) -> None:
        self._counters.inc(counter)
        request = item.request
        transaction = recover_transaction(request.payload)
        response = error_response(request.command, transaction, error)
        # at QoS 0: a refusal made on arrival costs no PUBACK to read back, which matters
        # under a flood (the requester asks again if it is lost; it changed nothing)
        self._send(item.topic, response.encode(), request.correlation, qos=0)
        command = request.command if self._router.knows(request.command) else ""
        kind = (command, error.code, error.message, item.client)
        pending = self._refusals.get(kind)
        if pending is not None:
            self._refusals[kind] = (pending[0], pending[1] + 1)
        elif len(self._refusals) >= REFUSALS_MAX:
            self._counters.inc("requests.refusals_unaudited")
        else:
            self._refusals[kind] = (error, 1)
            self._refusals_ready.set()

    async def _report_refusals(self) -> None:
        while True:
            if not self._refusals:
                self._refusals_ready.clear()
                await self._refusals_ready.wait()
                continue
            kind = next(iter(self._refusals))
            error, count = self._refusals.pop(kind)
            await self._router.refused(kind[0], error, kind[3], count)


def reply_topic_allowed(topics: Topics, topic: str) -> bool:
    """Return whether the hub may answer on ``topic``: outside its own tree, publishable."""
    root = topics.root
    return not (
        not topic
        or topic == root
        or topic.startswith((root + "/", "$"))
        or "+" in topic
        or "#" in topic
        or "\x00" in topic
        or len(topic.encode("utf-8", "surrogatepass")) > MAX_TOPIC_BYTES
    )
