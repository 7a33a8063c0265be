"""The consume loop's receive path: incoming PUBLISH packets taken in batches, cheaply.

Through aiomqtt, each incoming message costs paho's ``MQTTMessage`` and a ``Properties``
object (a dictionary of every MQTT 5 property built per packet), aiomqtt's ``Message`` and
``Topic``, a queue put, and a task plus ``asyncio.wait`` per message taken; paho also reads
every packet with three system calls. At a consumer's rates (thousands of records per second)
that is most of its CPU. ``Inbox`` keeps aiomqtt for the connection, subscriptions and
publishes, and takes the data path from paho directly:

- the socket is read in chunks (``gateway.mqtt.reads.buffer_reads``, the hub's own reader);
- each QoS 0/1 PUBLISH is decoded straight from the packet (``parse_publish``: topic, packet
  id, payload; MQTT 5 section 3.3) into a ``Delivery`` appended to a list; a packet that
  decoder leaves to paho (QoS 2, a topic alias, an unknown property) still goes through paho's
  decoder and reaches the same list;
- ``take`` returns everything that has arrived (up to a batch), waiting on one future.

Acknowledgements stay manual: ``acknowledge`` sends a batch's PUBACKs, after the sink's
commit, as one write instead of one packet (and one system call) each; the inbox never
acknowledges anything on its own.
"""

from __future__ import annotations

import asyncio
import struct
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Final

import aiomqtt
import paho.mqtt.client as paho

from gateway.mqtt.paho_private import disconnected, paho_of, queue_acks, take_publishes
from gateway.mqtt.reads import buffer_reads, parse_publish

_PUBACK: Final = struct.Struct("!BBH")  # MQTT 3.1.1 / 5 section 3.4: no reason code = success
NOT_UTF8_TOPIC: Final = "\ufffd"  # no consumer subscription matches it: refused, acknowledged


@dataclass(frozen=True, slots=True)
class Delivery:
    """One PUBLISH as the broker delivered it: topic, payload, QoS and packet id."""

    topic: str
    payload: bytes
    qos: int
    mid: int


class Inbox:
    """Incoming PUBLISH packets of one aiomqtt client's paho client, taken in batches."""

    def __init__(self, client: aiomqtt.Client) -> None:
        """Hook ``client`` before it connects, so even a session's replay lands here."""
        self._client = client
        self._arrived: list[Delivery] = []
        self._waiter: asyncio.Future[None] | None = None
        under = paho_of(client)
        self._paho = under
        self._v5 = under.protocol == paho.MQTTv5
        take_publishes(under, self._on_publish)
        under.on_message = self._on_paho_message  # what paho still decodes itself
        buffer_reads(under)

    def __len__(self) -> int:
        """Return how many deliveries wait to be taken."""
        return len(self._arrived)

    async def take(self, max_batch: int) -> list[Delivery]:
        """Return the deliveries that arrived (at least one, at most ``max_batch``), in order.

        Raises aiomqtt.MqttError once the connection is lost and nothing is left to take.
        """
        while not self._arrived:
            ended = disconnected(self._client)
            if ended.done():
                raise aiomqtt.MqttError("Disconnected during message iteration") from (
                    ended.exception()
                )
            loop = asyncio.get_running_loop()
            self._waiter = waiter = loop.create_future()
            try:
                await asyncio.wait((waiter, ended), return_when=asyncio.FIRST_COMPLETED)
            finally:
                self._waiter = None
        batch = self._arrived[:max_batch]
        del self._arrived[:max_batch]
        return batch

    def acknowledge(self, mids: Sequence[int]) -> None:
        """Queue the PUBACKs of QoS 1 packets ``mids`` as one write (paho sends it)."""
        if mids:
            packet = b"".join([_PUBACK.pack(paho.PUBACK, 2, mid) for mid in mids])
            queue_acks(self._paho, packet)

    def _add(self, delivery: Delivery) -> None:
        self._arrived.append(delivery)
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def _on_publish(self, packet: bytes, qos: int) -> int | None:
        parsed = parse_publish(packet, qos, self._v5)
        if parsed is None:
            return None  # paho decodes it (and says what is wrong with it)
        topic, mid, _response, _correlation, payload = parsed
        self._add(Delivery(NOT_UTF8_TOPIC if topic is None else topic, payload, qos, mid))
        return mid

    def _on_paho_message(self, _client: object, _userdata: object, message: Any) -> None:
        try:
            topic = message.topic
        except UnicodeDecodeError:
            topic = NOT_UTF8_TOPIC
        self._add(Delivery(topic, bytes(message.payload), message.qos, message.mid))
