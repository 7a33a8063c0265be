"""The outbox's QoS 1 PUBLISH packets, built here and handed to paho in one piece per burst.

``paho.Client.publish`` builds a ``MQTTMessage``, a ``MQTTMessageInfo`` with its own lock and
condition, queues one packet and later sends it with one ``send`` system call each: at full
rate most of the hub's CPU per record. The outbox publisher needs none of that (it tracks its
packet ids itself, re-sends from the outbox after a reconnect, and reads its PUBACKs through
``gateway.mqtt.acks``), so ``BurstWriter`` encodes the packets (MQTT 5 section 3.3, 3.1.1
section 3.3) and queues each burst as one write on paho's own send queue, behind whatever paho
queued before: the byte stream stays paho's, in order.

This is the one module that touches paho's send-side internals (``REQUIRED``); ``compatible``
says whether the installed paho still has them, and the publisher falls back to
``Client.publish`` when it does not (a test fails on such a paho version, so it is noticed).
"""

from __future__ import annotations

import contextlib
from typing import Any, Final

import paho.mqtt.client as paho

REQUIRED: Final = (
    "_out_packet",
    "_out_messages",
    "_mid_generate",
    "_call_socket_register_write",
    "_registered_write",
    "_protocol",
    "_sock",
)
PUBLISH_QOS1: Final = 0x30 | 0x02  # PUBLISH, QoS 1 (MQTT section 3.3.1)
TOPIC_CACHE: Final = 4096


def compatible(client: paho.Client) -> bool:
    """Return whether ``client`` has the internals ``BurstWriter`` relies on."""
    return all(hasattr(client, name) for name in REQUIRED)


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
        self._state: Any = client  # paho's private send state (see REQUIRED)
        self._v5 = client.protocol == paho.MQTTv5
        self._parts: list[bytes] = []
        self._topics: dict[str, bytes] = {}

    def add(self, topic: str, payload: bytes, retain: bool) -> int:
        """Encode one QoS 1 PUBLISH of ``payload`` on ``topic``; return its packet id."""
        state = self._state
        mid: int = state._mid_generate()
        while mid in state._out_messages:  # never one paho itself has in flight
            mid = state._mid_generate()
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
        state = self._state
        if state._sock is None:
            return False
        state._out_packet.append(
            {
                "command": PUBLISH_QOS1,
                "mid": 0,
                "qos": 1,  # paho completes only QoS 0 packets itself: nothing more to do
                "pos": 0,
                "to_process": len(blob),
                "packet": blob,
                "info": None,
            }
        )
        if not state._registered_write:
            # Nothing of paho's waits: write at once, on this thread (the event loop's). Asking
            # aiomqtt for a writer instead costs a wake-up of the loop through its self-pipe
            # (call_soon_threadsafe: two system calls and a turn of the loop) per burst.
            with contextlib.suppress(OSError):  # a broken socket: paho's writer reports it
                client: paho.Client = state
                client.loop_write()  # what the socket does not take, paho registers itself
                return True
        state._call_socket_register_write()
        return True
