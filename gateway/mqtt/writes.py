"""The outbox's QoS 1 PUBLISH packets, built here and handed to paho in one piece per burst.

``paho.Client.publish`` builds a ``MQTTMessage``, a ``MQTTMessageInfo`` with its own lock and
condition, queues one packet and later sends it with one ``send`` system call each: at full
rate most of the hub's CPU per record. The outbox publisher needs none of that (it tracks its
packet ids itself, re-sends from the outbox after a reconnect, and reads its PUBACKs through
``gateway.mqtt.acks``), so ``BurstWriter`` encodes the packets (MQTT 5 section 3.3, 3.1.1
section 3.3) and queues each burst as one write on paho's own send queue, behind whatever paho
queued before: the byte stream stays paho's, in order.

Packet ids and the queueing on paho's state are ``gateway.mqtt.paho_private``'s
(``next_mid``, ``queue_burst``); ``compatible`` says whether the installed paho still has what
they rely on, and the publisher falls back to ``Client.publish`` when it does not (a test fails
on such a paho version, so it is noticed).
"""

from __future__ import annotations

from typing import Final

import paho.mqtt.client as paho

from gateway.mqtt.paho_private import compatible, next_mid, queue_burst

PUBLISH_QOS1: Final = 0x30 | 0x02  # PUBLISH, QoS 1 (MQTT section 3.3.1)
TOPIC_CACHE: Final = 4096

__all__ = ["BurstWriter", "compatible", "remaining_length"]


def remaining_length(value: int) -> bytes:
    """Return the MQTT variable byte integer of ``value`` (MQTT 5 section 1.5.5)."""
    out = bytearray()
    while True:
        byte, value = value % 128, value // 128
        out.append(byte | 0x80 if value else byte)
        if not value:
            return bytes(out)


class BurstWriter:
    """Encodes QoS 1 PUBLISH packets for one paho client and queues them a burst at a time."""

    def __init__(self, client: paho.Client) -> None:
        self._client = client
        self._v5 = client.protocol == paho.MQTTv5
        self._parts: list[bytes] = []
        self._topics: dict[str, bytes] = {}

    def add(self, topic: str, payload: bytes, retain: bool) -> int:
        """Encode one QoS 1 PUBLISH of ``payload`` on ``topic``; return its packet id."""
        mid = next_mid(self._client)
        name = self._topics.get(topic)
        if name is None:
            encoded = topic.encode()
            name = len(encoded).to_bytes(2, "big") + encoded
            if len(self._topics) >= TOPIC_CACHE:
                self._topics.clear()
            self._topics[topic] = name
        properties = b"\x00" if self._v5 else b""  # MQTT 5: no properties
        length = len(name) + 2 + len(properties) + len(payload)
        self._parts.append(
            bytes((PUBLISH_QOS1 | int(retain),))
            + remaining_length(length)
            + name
            + mid.to_bytes(2, "big")
            + properties
            + payload
        )
        return mid

    def flush(self) -> bool:
        """Write the encoded packets as one write now (what the socket does not take waits on
        paho's queue for the event loop's writer); False if the client has no connection."""
        if not self._parts:
            return True
        blob, self._parts = b"".join(self._parts), []
        return queue_burst(self._client, blob)
