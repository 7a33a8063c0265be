"""The outbox's PUBACKs, taken from paho's read buffer without building objects per packet.

paho turns every PUBACK into a ``ReasonCode`` and a ``Properties`` object (constructors that
fill dictionaries) before it calls ``on_publish``: at full rate that is a quarter of the hub's
CPU, more than sealing. The outbox publisher needs only the packet id and the reason byte
(MQTT 5 section 3.4.2), so for the packets it sent itself the hub reads those two fields and
does paho's own bookkeeping for the message (none for packets ``gateway.mqtt.writes`` sent,
which paho never knew). A duplicate PUBACK finds its packet id no longer the publisher's and
goes to paho, which ignores it. Everything else (aiomqtt's publishes, PUBCOMP,
a PUBACK that carries properties) still goes through paho's decoder unchanged.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Final

import paho.mqtt.client as paho
from paho.mqtt.enums import MQTTErrorCode

SUCCESS: Final = 0x00
FAILURE: Final = 0x80  # reason codes from 0x80 up: the broker did not accept the message


def take_pubacks(
    client: paho.Client, mine: Callable[[int], bool], on_ack: Callable[[int, int], None]
) -> None:
    """Make ``client`` call ``on_ack(mid, reason)`` for each PUBACK whose ``mine(mid)`` is true."""
    state: Any = client  # paho's private packet state, read as paho's own handler reads it
    decode: Callable[[str], MQTTErrorCode] = state._handle_pubackcomp

    def handle(command: str) -> MQTTErrorCode:
        packet = state._in_packet["packet"]
        # 2 bytes: MQTT 3.1.1, or MQTT 5 success; 3 bytes: MQTT 5 with a reason byte.
        if command != "PUBACK" or not 2 <= len(packet) <= 3:
            return decode(command)
        mid = (packet[0] << 8) | packet[1]
        if not mine(mid):
            return decode(command)
        with state._out_message_mutex:
            message = state._out_messages.pop(mid, None)
        on_ack(mid, packet[2] if len(packet) == 3 else SUCCESS)
        if message is None:  # sent by gateway.mqtt.writes: paho never knew it
            return paho.MQTT_ERR_SUCCESS
        message.info._set_as_published()
        state._inflight_messages -= 1
        if state._max_inflight_messages > 0:  # paho releases queued messages one per PUBACK
            rc: MQTTErrorCode = state._update_inflight()
            return rc
        return paho.MQTT_ERR_SUCCESS

    state._handle_pubackcomp = handle
