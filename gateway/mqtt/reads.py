"""paho's socket reads, made in chunks instead of three system calls per packet.

paho reads every packet with one ``recv`` for the command byte, one per remaining-length byte
and one for the rest: at full rate a PUBACK (4 bytes) costs three system calls, about a fifth
of the hub's main thread. ``buffer_reads`` gives a paho client a receive buffer: when it is
empty, one ``recv`` takes whatever the socket holds (up to ``CHUNK``), and paho's small reads
are served from it. paho's own parser is unchanged.

The one hazard of a buffer under a readiness-driven loop: bytes left in it do not make the
socket readable again, so aiomqtt's reader callback would not run for them. ``loop_read`` is
therefore wrapped to keep reading until the buffer is empty (paho itself stops after as many
packets as it has messages in flight).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Final

import paho.mqtt.client as paho
from paho.mqtt.enums import MQTTErrorCode

CHUNK: Final = 65536


def buffer_reads(client: paho.Client) -> None:
    """Make ``client`` read its socket in chunks; its packets and callbacks stay the same."""
    state: Any = client  # paho's private socket reader, replaced on this instance only
    sock_recv: Callable[[int], bytes] = state._sock_recv
    loop_read: Callable[[int], MQTTErrorCode] = state.loop_read
    pending = bytearray()  # one socket's bytes: the link makes a new client per connection

    def recv(size: int) -> bytes:
        if pending:
            out = bytes(pending[:size])
            del pending[:size]
            return out
        data = sock_recv(max(size, CHUNK))  # BlockingIOError, OSError, b"": as paho expects
        if len(data) <= size:
            return data
        pending.extend(memoryview(data)[size:])
        return data[:size]

    def read(max_packets: int = 1) -> MQTTErrorCode:
        rc = loop_read(max_packets)
        while pending and rc == paho.MQTT_ERR_SUCCESS and state._sock is not None:
            rc = loop_read(max_packets)  # each call takes at least one buffered byte
        return rc

    state._sock_recv = recv
    state.loop_read = read
