"""The consume loop over MQTT (aiomqtt): subscribe, open in batches, store, then acknowledge.

Subscribes ``<base>/+/epoch`` and ``<base>/+/data/#`` at QoS 1 (data through the shared
subscription ``$share/<group>/...`` when a group is given, so consumers split the load;
announcements always reach every consumer). Messages are taken in batches of what has arrived;
a batch's records and announcements are committed to the sink in one transaction, and only then
is each message acknowledged to the broker (paho's manual acks, MQTT 5 section 4.3.2 /
MQTT 3.1.1 section 4.3.2: the broker redelivers what was never acknowledged). A record whose
epoch is unknown is held and acknowledged once its announcement has come (from the sink, where
any member of the group stored it, or from the hub after a resend request) and it is stored.
An announcement marked ``"est": true`` that the sink already holds is accepted as first seen when
the sink stored it, so its acceptance window does not start afresh in a restarted process or
another member (docs/envelope.md).

With a ``client_id`` the session is durable: MQTT 5 ``clean_start`` false with a session expiry
interval, MQTT 3.1.1 ``clean_session`` false, so the broker keeps records while the consumer
is away. Without one the consumer is a viewer with a random id and a clean session. The loop
ends after ``count`` opened records or ``seconds`` seconds, or runs until cancelled. This module
is the only part of the consumer library that needs aiomqtt.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import ssl
import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace

import aiomqtt
import paho.mqtt.client as mqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from gateway.envelope.consumer import Consumer, OpenedRecord
from gateway.envelope.errors import MalformedError
from gateway.envelope.format import parse_announcement
from gateway.envelope.inbox import Delivery, Inbox
from gateway.envelope.pending import PendingRecords, ResendRequest, resend_payload
from gateway.envelope.session import ConsumeStats, Outcome, Rejection, Session
from gateway.envelope.topics import epoch_topic
from gateway.errors import ConsentgateError, EnvelopeError
from gateway.mqtt.paho_private import paho_of
from gateway.sinks.base import Sink, StoredAnnouncement

DEFAULT_SESSION_EXPIRY_S = 7 * 86400
DEFAULT_MAX_BATCH = 1000
SUBSCRIBE_CHUNK = 100
SETTLE_S = 2.0  # at most this long to confirm the last acknowledgements at a stop


class BrokerRefusedError(ConsentgateError):
    """The broker refused the connection (wrong MQTT version, credentials, or unreachable)."""


class BrokerLostError(ConsentgateError):
    """The connection was lost after it was made; a durable session may simply reconnect."""


@dataclass(frozen=True, slots=True)
class Broker:
    """Where and as whom the consumer connects."""

    host: str = "127.0.0.1"
    port: int = 1883
    username: str | None = None
    password: str | None = None
    tls_context: ssl.SSLContext | None = None


def subscriptions(base: str, group: str | None = None) -> tuple[str, str]:
    """Return the (epoch, data) topic filters a consumer of ``base`` subscribes to."""
    data = f"{base}/+/data/#"
    return f"{base}/+/epoch", data if group is None else f"$share/{group}/{data}"


def partition_filters(base: str, hubs: Iterable[str], index: int, count: int) -> list[str]:
    """Return the plain data filters of partition ``index`` of ``count`` of ``hubs``.

    A hub belongs to partition sha256(hub id) mod ``count``, the same in every member. Plain
    subscriptions of a durable session survive a broker restart where ``$share`` ones may not
    (Mosquitto 2.0 forgets them), so partitioned members lose nothing in that window.
    """
    if not 0 <= index < count:
        raise ValueError(f"partition {index} is not in [0, {count})")
    return [
        f"{base}/{hub}/data/#"
        for hub in sorted(hubs)
        if int.from_bytes(hashlib.sha256(hub.encode()).digest()[:8], "big") % count == index
    ]


@dataclass(slots=True)
class _Batch:
    """What one batch of messages produced, before it is committed and acknowledged."""

    records: list[OpenedRecord] = field(default_factory=list)
    announcements: list[StoredAnnouncement] = field(default_factory=list)
    rejections: list[Rejection] = field(default_factory=list)
    requests: list[ResendRequest] = field(default_factory=list)
    acks: list[int] = field(default_factory=list)
    held: list[bytes] = field(default_factory=list)


async def consume(
    consumer: Consumer,
    broker: Broker,
    base: str,
    *,
    on_record: Callable[[OpenedRecord], None],
    on_rejection: Callable[[Rejection], None] | None = None,
    count: int | None = None,
    seconds: float | None = None,
    group: str | None = None,
    data_filters: Sequence[str] | None = None,
    pending: PendingRecords | None = None,
    ready: asyncio.Event | None = None,
    protocol: int = 5,
    client_id: str | None = None,
    session_expiry_s: int = DEFAULT_SESSION_EXPIRY_S,
    sink: Sink | None = None,
    max_batch: int = DEFAULT_MAX_BATCH,
) -> ConsumeStats:
    """Open records until ``count`` records or ``seconds`` pass; store, ack, return counts.

    ``ready`` is set once the subscriptions are granted. ``protocol`` 4 speaks MQTT 3.1.1.
    ``data_filters`` replaces the data subscription (``partition_filters`` of this member).
    ``on_record`` sees each record after its batch is committed to ``sink`` (when given).
    Raises BrokerRefusedError when the connection is refused, BrokerLostError when it is
    lost, and SinkError when the sink fails (nothing of that batch was acknowledged).
    """
    session = Session(consumer, pending)
    client = _client(broker, protocol, client_id, session_expiry_s)
    inbox = Inbox(client)  # the data path, without aiomqtt's per-message objects
    stored = 0
    held_acks: dict[bytes, list[int]] = {}
    try:
        await client.__aenter__()
    except aiomqtt.MqttError as exc:
        raise BrokerRefusedError(_refusal(broker, protocol, exc)) from exc
    try:
        epochs, data = subscriptions(base, group)
        wanted = [epochs, *([data] if data_filters is None else data_filters)]
        for start in range(0, len(wanted), SUBSCRIBE_CHUNK):  # bounded SUBSCRIBE packets
            await client.subscribe([(f, 1) for f in wanted[start : start + SUBSCRIBE_CHUNK]])
        if ready is not None:
            ready.set()
        if count is not None and count <= 0:
            return session.stats()
        opened = 0
        try:
            async with asyncio.timeout(seconds) as deadline:
                while count is None or opened < count:
                    batch = await inbox.take(max_batch)
                    work = await _open_batch(session, sink, base, batch, held_acks)
                    stored += await _deliver(
                        client, work, sink, on_record, on_rejection, inbox=inbox
                    )
                    opened += len(work.records)
        except TimeoutError:
            if not deadline.expired():
                raise
    except aiomqtt.MqttError as exc:
        raise BrokerLostError(f"broker {broker.host}:{broker.port}: {exc}") from exc
    finally:
        with contextlib.suppress(aiomqtt.MqttError, TimeoutError):
            await _settle(client, base)
        with contextlib.suppress(aiomqtt.MqttError):
            await client.__aexit__(None, None, None)
    return replace(session.stats(), stored=stored)


async def _settle(client: aiomqtt.Client, base: str) -> None:
    """Return once the broker has processed every acknowledgement sent so far.

    paho closes the socket right after its DISCONNECT; with deliveries still unread, the kernel
    answers with a reset that can discard the last PUBACKs at the broker (measured: a whole
    batch was sent again to the next connection). The broker handles a client's packets in
    order (MQTT 5 section 4.6), so the answer to an UNSUBSCRIBE of a filter never subscribed
    comes after every earlier PUBACK was applied.
    """
    async with asyncio.timeout(SETTLE_S):
        await client.unsubscribe(f"{base}/+/settle")


async def _deliver(
    client: aiomqtt.Client,
    work: _Batch,
    sink: Sink | None,
    on_record: Callable[[OpenedRecord], None],
    on_rejection: Callable[[Rejection], None] | None,
    *,
    inbox: Inbox,
) -> int:
    """Commit the batch, then acknowledge its messages, report it and send its requests."""
    stored = 0 if sink is None else await sink.store(work.records, work.announcements)
    inbox.acknowledge(work.acks)  # manual acknowledgements, after the commit
    for record in work.records:
        on_record(record)
    if on_rejection is not None:
        for rejection in work.rejections:
            on_rejection(rejection)
    for request in work.requests:
        payload = resend_payload(request.kid, str(uuid.uuid4()))
        await client.publish(request.topic, payload, qos=1)
    return stored


def _client(
    broker: Broker, protocol: int, client_id: str | None, session_expiry_s: int
) -> aiomqtt.Client:
    durable = client_id is not None
    identifier = client_id or f"consentgate-consume-{uuid.uuid4().hex[:12]}"
    properties = None
    if protocol == 5 and durable:
        # MQTT 5 section 3.1.2.11.2: the broker keeps the session this long after a disconnect.
        properties = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
        properties.SessionExpiryInterval = session_expiry_s
    client = aiomqtt.Client(
        broker.host,
        broker.port,
        username=broker.username,
        password=broker.password,
        protocol=aiomqtt.ProtocolVersion(protocol),
        tls_context=broker.tls_context,
        identifier=identifier,
        clean_session=None if protocol == 5 else not durable,
        # paho refuses clean_start below MQTT 5 unless it is left at its default.
        clean_start=not durable if protocol == 5 else mqtt.MQTT_CLEAN_START_FIRST_ONLY,
        properties=properties,
        max_queued_incoming_messages=0,
    )
    # aiomqtt has no manual acknowledgement of its own: paho's is switched on before connecting,
    # so even the messages a durable session replays at once are acknowledged only once stored.
    paho_of(client).manual_ack_set(True)
    return client


async def _open_batch(
    session: Session,
    sink: Sink | None,
    base: str,
    batch: list[Delivery],
    held_acks: dict[bytes, list[int]],
) -> _Batch:
    work = _Batch()
    for message in batch:
        if sink is not None and message.topic.endswith("/epoch"):
            await _first_seen_by_sink(session.consumer, sink, message.topic, message.payload)
        outcome = _handle(session, message.topic, message.payload)
        _collect(work, outcome, message.payload, held_acks)
        if outcome.held is not None:
            if message.qos > 0:
                held_acks.setdefault(outcome.held, []).append(message.mid)
            work.held.append(outcome.held)
        elif message.qos > 0:
            work.acks.append(message.mid)
    if sink is not None:
        # A record of an epoch another member (or an earlier run) stored: open it from the sink.
        for kid in dict.fromkeys(work.held):
            stored = await sink.announcement(kid)
            if stored is None or kid not in held_acks:
                continue
            topic = epoch_topic(f"{base}/{stored.hub_id}")
            _accept_as_first_seen(session.consumer, topic, stored.payload, stored.received)
            _collect(work, session.handle(topic, stored.payload), b"", held_acks)
            work.requests = [r for r in work.requests if r.kid != kid]
    return work


async def _first_seen_by_sink(consumer: Consumer, sink: Sink, topic: str, payload: object) -> None:
    """Install a new estimated epoch the sink already holds as first seen when it was stored:
    a restarted process or another member does not start its acceptance window afresh."""
    if not isinstance(payload, bytes | bytearray):
        return
    try:
        announcement = parse_announcement(bytes(payload))
    except EnvelopeError:
        return  # the session refuses it with its reason
    if announcement.core.estimated and not consumer.knows(announcement.kid):
        stored = await sink.announcement(announcement.kid)
        if stored is not None:
            _accept_as_first_seen(consumer, topic, bytes(payload), stored.received)


def _accept_as_first_seen(
    consumer: Consumer, topic: str, payload: bytes, first_seen: float | None
) -> None:
    """Accept an announcement a sink stored at ``first_seen``; the session then finds it known
    (and releases its held records), or refuses it again and reports why."""
    with contextlib.suppress(EnvelopeError):
        consumer.accept_announcement(payload, topic, first_seen=first_seen)


def _collect(
    work: _Batch, outcome: Outcome, payload: object, held_acks: dict[bytes, list[int]]
) -> None:
    work.records.extend(outcome.opened)
    work.rejections.extend(outcome.rejected)
    work.requests.extend(outcome.requests)
    info = outcome.announced
    if info is not None:
        if isinstance(payload, bytes) and payload:
            work.announcements.append(
                StoredAnnouncement(info.kid, info.hub_id, info.epoch, payload)
            )
        work.acks.extend(held_acks.pop(info.kid, ()))


def _refusal(broker: Broker, protocol: int, exc: aiomqtt.MqttError) -> str:
    where = f"broker {broker.host}:{broker.port}"
    cause = exc.__context__  # aiomqtt raises its MqttError "from None" over the socket's error
    if isinstance(cause, OSError) and not isinstance(cause, TimeoutError):
        return f"{where} cannot be reached: {exc}"  # no MQTT was spoken: the version is moot
    version = "5" if protocol == 5 else "3.1.1"
    # A broker without MQTT 5 answers a version 5 CONNECT with 0x84 or 0x01, or not at all.
    hint = " (a broker that speaks only MQTT 3.1.1 needs --protocol 3.1.1)" if protocol == 5 else ""
    return f"{where} refused MQTT {version}: {exc}{hint}"


def _handle(session: Session, topic: str, payload: object) -> Outcome:
    if not isinstance(payload, bytes | bytearray):
        rejection = Rejection(topic, MalformedError("the MQTT payload is not binary"))
        return Outcome(rejected=(rejection,))
    return session.handle(topic, bytes(payload))
