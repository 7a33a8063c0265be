"""The consume loop over MQTT (aiomqtt, MQTT 5): subscribe, hand messages to a Session, report.

Subscribes ``<base>/+/epoch`` and ``<base>/+/data/#`` at QoS 1 (data through the shared
subscription ``$share/<group>/...`` when a group is given, so consumers can split the load;
announcements always reach every consumer). Resend requests for unknown epochs are published at
QoS 1. The loop ends after ``count`` opened records or ``seconds`` seconds, whichever is first,
or runs until cancelled when neither is given. This module is the only part of the consumer
library that needs aiomqtt.
"""

from __future__ import annotations

import asyncio
import ssl
import uuid
from collections.abc import Callable
from dataclasses import dataclass

import aiomqtt

from gateway.envelope.consumer import Consumer, OpenedRecord
from gateway.envelope.errors import MalformedError
from gateway.envelope.pending import PendingRecords, resend_payload
from gateway.envelope.session import ConsumeStats, Outcome, Rejection, Session


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
    pending: PendingRecords | None = None,
    ready: asyncio.Event | None = None,
    protocol: int = 5,
) -> ConsumeStats:
    """Open records from the broker until ``count`` records or ``seconds`` pass; return counts.

    ``ready`` is set once both subscriptions are granted. ``protocol`` 4 speaks MQTT 3.1.1 for
    brokers without MQTT 5 (no shared subscriptions there). Raises aiomqtt.MqttError when the
    broker cannot be reached or the connection is lost.
    """
    session = Session(consumer, pending)
    async with aiomqtt.Client(
        broker.host,
        broker.port,
        username=broker.username,
        password=broker.password,
        protocol=aiomqtt.ProtocolVersion(protocol),
        tls_context=broker.tls_context,
        identifier=f"consentgate-consume-{uuid.uuid4().hex[:12]}",
    ) as client:
        for topic_filter in subscriptions(base, group):
            await client.subscribe(topic_filter, qos=1)
        if ready is not None:
            ready.set()
        if count is not None and count <= 0:
            return session.stats()
        opened = 0
        try:
            async with asyncio.timeout(seconds) as deadline:
                async for message in client.messages:
                    outcome = _handle(session, message.topic.value, message.payload)
                    opened += len(outcome.opened)
                    for record in outcome.opened:
                        on_record(record)
                    if on_rejection is not None:
                        for rejection in outcome.rejected:
                            on_rejection(rejection)
                    for request in outcome.requests:
                        payload = resend_payload(request.kid, str(uuid.uuid4()))
                        await client.publish(request.topic, payload, qos=1)
                    if count is not None and opened >= count:
                        break
        except TimeoutError:
            if not deadline.expired():
                raise
    return session.stats()


def _handle(session: Session, topic: str, payload: object) -> Outcome:
    if not isinstance(payload, bytes | bytearray):
        rejection = Rejection(topic, MalformedError("the MQTT payload is not binary"))
        return Outcome(rejected=(rejection,))
    return session.handle(topic, bytes(payload))
