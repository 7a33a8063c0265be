"""The outbox's PUBACKs, taken from paho's read buffer without building objects per packet.

paho turns every PUBACK into a ``ReasonCode`` and a ``Properties`` object (constructors that
fill dictionaries) before it calls ``on_publish``: at full rate that is a quarter of the hub's
CPU, more than sealing. The outbox publisher needs only the packet id and the reason byte
(MQTT 5 section 3.4.2), so for the packets it sent itself the hub reads those two fields and
does paho's own bookkeeping for the message (none for packets ``gateway.mqtt.writes`` sent,
which paho never knew). A duplicate PUBACK finds its packet id no longer the publisher's and
goes to paho, which ignores it. Everything else (aiomqtt's publishes, PUBCOMP,
a PUBACK that carries properties) still goes through paho's decoder unchanged. The hook on
paho's state is ``gateway.mqtt.paho_private.take_pubacks``. A run of such PUBACKs already in the
hub's receive buffer (``gateway.mqtt.reads``) is taken from it in one pass, without paho reading
each packet (``paho_private.take_buffered_pubacks``).
"""

from __future__ import annotations

from typing import Final

from gateway.mqtt.paho_private import take_pubacks

SUCCESS: Final = 0x00
FAILURE: Final = 0x80  # reason codes from 0x80 up: the broker did not accept the message

__all__ = ["FAILURE", "SUCCESS", "take_pubacks"]
