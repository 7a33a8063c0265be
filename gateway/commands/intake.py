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

The critical commands reach the hub twice when its control link is up: on the control link
(``Request.control``, a connection of their own that no flood delays) and on the main link,
which subscribes to every request. Each is run once: the first copy to arrive is run and
answered on the link it came by, and the copy from the other link, when it arrives within
``COPY_WINDOW_S``, is dropped unanswered (``requests.copies``). Copies are told apart by a
hash (Python's, keyed per process) of (command, body, response topic, correlation data);
at most ``COPIES_MAX`` are remembered. Identical requests on the same link are separate
requests and each is run.
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
from gateway.config import Config
from gateway.counters import Counters
from gateway.errors import CommandError
from gateway.mqtt.link import MqttLink, Request, control_link
from gateway.mqtt.topics import Topics
from gateway.tasks import Loop

REFUSALS_MAX: Final = 1024
COPY_WINDOW_S: Final = 120.0
COPIES_MAX: Final = 1024
CRITICAL: Final = frozenset({"consent/set", "try_now", "restrict", "erase", "unpair"})
MAX_TOPIC_BYTES: Final = 65535  # MQTT 5 section 1.5.4: a UTF-8 string's length is 2 bytes


class Send(Protocol):
    """Queues one answer on the broker connection."""

    def __call__(
        self, topic: str, payload: bytes, correlation: bytes | None, *, qos: int = 1
    ) -> bool | None:
        """Queue ``payload`` on ``topic`` echoing ``correlation``, at ``qos``; return True
        once queued (False: no connection; None: the sender does not say)."""


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


class _Copies:
    """The critical requests seen on one link whose copy from the other is still due."""

    __slots__ = ("at", "control", "due")

    def __init__(self, control: bool, at: float) -> None:
        self.control = control
        self.at = at
        self.due = 1


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
        *,
        control_send: Send | None = None,
    ) -> None:
        self._router = router
        self._topics = topics
        self._counters = counters
        self._send = send
        self._control_send = control_send
        self._copies: collections.OrderedDict[int, _Copies] = collections.OrderedDict()
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
        """Queue ``request`` in its lane, or answer it ``busy``/``invalid_request`` at once
        (or drop it: the other link's copy of a critical request already taken)."""
        if request.command in CRITICAL and self._copy_of_taken(request):
            self._counters.inc("requests.copies")
            return
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
            self._router.quiet.clear()
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
        critical = lane is self._critical
        while True:
            if not lane:
                if critical:
                    self._router.quiet.set()
                ready.clear()
                await ready.wait()
                continue
            if not critical:  # the normal lane waits while a privacy-critical request runs
                await self._router.quiet.wait()
            item = lane.popleft()
            request = item.request
            response = await self._router.dispatch(request.command, request.payload, item.client)
            self._answer(item, response.encode())
            # a refusal's dispatch never suspends: without this, a full lane would hold the
            # event loop (and the critical lane) for its whole length
            await asyncio.sleep(0)

    def _answer(self, item: _Item, payload: bytes, qos: int = 1) -> None:
        request = item.request
        control = self._control_send
        if qos == 1 and request.command in CRITICAL:
            # The answer to a privacy-critical request goes on the main link while it is up,
            # behind the records handed to it before: the broker takes one connection's
            # packets in order, so no record sent before a withdrawal reaches the broker after
            # its answer. The control link answers only while the main link is down, when
            # nothing sent on it can arrive any more.
            if self._send(item.topic, payload, request.correlation, qos=qos):
                return
            if request.control and control is not None:
                control(item.topic, payload, request.correlation, qos=qos)
            return
        # Every other answer (refusals included) changes nothing a record depends on: on the
        # control link while it is up, so a flood's answers never stand between a withdrawal's
        # answer and the broker on the main link.
        if control is not None and control(item.topic, payload, request.correlation, qos=qos):
            return
        self._send(item.topic, payload, request.correlation, qos=qos)

    def _copy_of_taken(self, request: Request) -> bool:
        """Return whether ``request`` is the other link's copy of a critical request already
        taken (and forget it), else remember it as taken."""
        now = time.monotonic()
        copies = self._copies
        while copies:
            oldest = next(iter(copies.values()))
            if now - oldest.at < COPY_WINDOW_S:
                break
            copies.popitem(last=False)
        key = hash((request.command, request.payload, request.response_topic, request.correlation))
        seen = copies.get(key)
        if seen is None:
            copies[key] = _Copies(request.control, now)
            if len(copies) > COPIES_MAX:
                copies.popitem(last=False)
            return False
        if seen.control == request.control:  # the same request sent again: run it again
            seen.due += 1
            return False
        seen.due -= 1
        if not seen.due:
            del copies[key]
        return True

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
        self._answer(item, response.encode(), qos=0)
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
            await asyncio.sleep(0)  # as in _serve: one refusal per turn of the event loop


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


def open_intake(
    link: MqttLink, router: Router, topics: Topics, counters: Counters, config: Config
) -> dict[str, Loop]:
    """Take the hub's requests from ``link`` and from a control link of their own (the
    privacy-critical commands, which no flood of other requests delays); return the loops to
    run (docs/control-plane.md)."""
    control = control_link(config.mqtt, topics, f"consentgate-{config.hub_id}", CRITICAL)
    intake = Intake(router, topics, counters, link.answer, control_send=control.answer)
    # queued in its lane, run and answered by the intake's workers
    link.on_request(intake.offer)
    control.on_request(intake.offer)
    # the main link pauses while a critical request runs, and while the answers most of its
    # requests get (on the control link) are not written yet
    link.yield_to(router.quiet, answers_by=control)
    return {"requests": intake.run, "mqtt-control": control.run}
