"""The consume loop over MQTT (aiomqtt): subscribe, open in batches, store, then acknowledge.

Subscribes ``<base>/+/epoch`` and ``<base>/+/data/#`` at QoS 1 (data through the shared
subscription ``$share/<group>/...`` when a group is given, so consumers split the load;
announcements always reach every consumer). Messages are taken in batches of what has arrived;
a batch's records and announcements are committed to the sink in one transaction, and only then
is each message acknowledged to the broker (paho's manual acks, MQTT 5 section 4.3.2 /
MQTT 3.1.1 section 4.3.2: the broker redelivers what was never acknowledged).

A record whose epoch is unknown is parked in the sink and acknowledged with its batch, and
opened by whichever member accepts its announcement (``gateway.envelope.parking``). Without a
sink it is held in memory (``PendingRecords``) and acknowledged at once, like every record of a
sinkless run.

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
from dataclasses import dataclass, replace

import aiomqtt
import paho.mqtt.client as mqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from gateway.envelope.batch import Batch, Tally, collect, reported
from gateway.envelope.consumer import Consumer, OpenedRecord
from gateway.envelope.errors import MalformedError
from gateway.envelope.inbox import Delivery, Inbox
from gateway.envelope.parking import Parking
from gateway.envelope.pending import PendingRecords, resend_payload
from gateway.envelope.session import ConsumeStats, Outcome, Rejection, Session
from gateway.errors import ConsentgateError
from gateway.mqtt.paho_private import guard_write_registration, paho_of
from gateway.sinks.base import Sink, Stored

DEFAULT_SESSION_EXPIRY_S = 7 * 86400
DEFAULT_MAX_BATCH = 1000
# Parked records beyond this many are deleted, oldest first (counted as dropped): the parking
# is bounded like the memory of a sinkless run, against records no announcement will ever open.
DEFAULT_MAX_PARKED = 1_000_000
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
    max_parked: int = DEFAULT_MAX_PARKED,
) -> ConsumeStats:
    """Open records until ``count`` records or ``seconds`` pass; store, ack, return counts.

    ``ready`` is set once the subscriptions are granted. ``protocol`` 4 speaks MQTT 3.1.1.
    ``data_filters`` replaces the data subscription (``partition_filters`` of this member).
    ``on_record`` sees each record after its batch is committed to ``sink`` (when given).
    Raises BrokerRefusedError when the connection is refused, BrokerLostError when it is
    lost, and SinkError when the sink fails (nothing of that batch was acknowledged).
    With a ``sink``, ``pending`` must not keep records (they are parked in the sink).
    """
    if pending is None:
        pending = PendingRecords(keep_records=sink is None)
    elif sink is not None and pending.keep_records:
        raise ValueError(
            "with a sink, records of an unknown epoch are parked in it: "
            "pass PendingRecords(keep_records=False)"
        )
    session = Session(consumer, pending)
    client = _client(broker, protocol, client_id, session_expiry_s)
    inbox = Inbox(client)  # the data path, without aiomqtt's per-message objects
    tally = Tally()
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
        deliver = _Deliverer(client, inbox, sink, on_record, on_rejection, tally)
        parking = None if sink is None else Parking(session, sink, base, deliver, max_parked)
        try:
            async with asyncio.timeout(seconds) as deadline:
                await _run(
                    session, inbox, deliver, parking, tally, count=count, max_batch=max_batch
                )
        except TimeoutError:
            if not deadline.expired():
                raise
        # requests as sent: one a later message of the same batch made moot is not counted
        stats = replace(session.stats(), stored=tally.stored, requests=tally.requests)
        if parking is not None:  # what waits is parked in the sink, whichever run parked it
            stats = replace(stats, held=await parking.held(), dropped=parking.dropped)
    except aiomqtt.MqttError as exc:
        raise BrokerLostError(f"broker {broker.host}:{broker.port}: {exc}") from exc
    finally:
        with contextlib.suppress(aiomqtt.MqttError, TimeoutError):
            await _settle(client, base)
        with contextlib.suppress(aiomqtt.MqttError):
            await client.__aexit__(None, None, None)
    return stats


async def _run(
    session: Session,
    inbox: Inbox,
    deliver: _Deliverer,
    parking: Parking | None,
    tally: Tally,
    *,
    count: int | None,
    max_batch: int,
) -> None:
    """Take, open, commit and acknowledge batches until ``count`` records are opened."""
    if parking is not None:
        await parking.sweep(tally)
    while count is None or tally.opened < count:
        batch = await inbox.take(max_batch)
        work = await _open_batch(session, parking, batch)
        tally.stored += (await deliver(work)).new
        tally.opened += len(work.records)
        if parking is not None:
            await parking.after_commit(work, tally)


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


@dataclass(frozen=True, slots=True)
class _Deliverer:
    """Commits a batch, then acknowledges its messages, reports it and sends its requests."""

    client: aiomqtt.Client
    inbox: Inbox
    sink: Sink | None
    on_record: Callable[[OpenedRecord], None]
    on_rejection: Callable[[Rejection], None] | None
    tally: Tally  # counts the requests sent

    async def __call__(self, work: Batch) -> Stored:
        """Deliver ``work``; return what the sink committed of it."""
        stored = Stored(0)
        if self.sink is not None:
            stored = await self.sink.store(
                work.records, work.announcements, parked=work.parked, unparked=work.unparked
            )
        self.inbox.acknowledge(work.acks)  # manual acknowledgements, after the commit
        for record in reported(work, stored):
            self.on_record(record)
        if self.on_rejection is not None:
            for rejection in work.rejections:
                self.on_rejection(rejection)
        for request in work.requests:
            payload = resend_payload(request.kid, str(uuid.uuid4()))
            await self.client.publish(request.topic, payload, qos=1)
        self.tally.requests += len(work.requests)
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
    guard_write_registration(client)
    return client


async def _open_batch(session: Session, parking: Parking | None, batch: list[Delivery]) -> Batch:
    """Open a batch (parking, with a sink, what stays unknown); every message is acknowledged."""
    work = Batch()
    for message in batch:
        if parking is not None and message.topic.endswith("/epoch"):
            await parking.first_seen(message.topic, message.payload)
        outcome = _handle(session, message.topic, message.payload)
        collect(work, outcome, message.payload)
        if outcome.held is not None and parking is not None:
            parking.park(work, outcome.held, message.topic, message.payload)
        if message.qos > 0:
            work.acks.append(message.mid)
    if parking is not None:
        await parking.settle(work)
    return work


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
