"""The one module that reaches into paho's and aiomqtt's private state.

The hub's fast paths (``gateway.mqtt.reads``, ``acks``, ``writes``, the consumer's
``gateway.envelope.inbox``) replace a few of paho's per-packet steps and read its send queue;
each does it through the small functions here, so everything they rely on is named in one
place (``PAHO_REQUIRED``, ``AIOMQTT_REQUIRED``), ``compatible`` tells whether the installed
versions still have it (a test fails on a version whose internals moved), and ruff's SLF rule
forbids private access everywhere else.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import weakref
from collections.abc import Callable
from typing import Any, Final

import aiomqtt
import paho.mqtt.client as paho
from paho.mqtt.enums import MQTTErrorCode
from paho.mqtt.properties import Properties

PAHO_REQUIRED: Final = (
    "_sock_recv",
    "_packet_read",
    "_loop_rc_handle",
    "_in_packet",
    "_handle_publish",
    "_handle_pubackcomp",
    "_send_puback",
    "_manual_ack",
    "_out_packet",
    "_out_messages",
    "_out_message_mutex",
    "_inflight_messages",
    "_max_inflight_messages",
    "_update_inflight",
    "_mid_generate",
    "_packet_queue",
    "_registered_write",
    "_call_socket_register_write",
    "_msgtime_mutex",
    "_last_bytes_received",
)
AIOMQTT_REQUIRED: Final = ("_client", "_disconnected", "_loop")
RAW: Final = 0  # the command field of packets queued as raw bytes (``queue_raw``)
PUBLISH_QOS1: Final = 0x30 | 0x02  # PUBLISH, QoS 1 (MQTT section 3.3.1)

PUBACK: Final = 0x40  # PUBACK's first byte (MQTT section 3.4.1)
_BUFFERED_ACKERS: weakref.WeakKeyDictionary[paho.Client, Callable[[Any, int, int], bool]] = (
    weakref.WeakKeyDictionary()
)  # by client: takes a buffered PUBACK's packet id (``take_buffered_pubacks``)

PublishTaker = Callable[[bytes, int], int | None]
"""``taker(packet, qos)``: the variable part of an incoming QoS 0/1 PUBLISH; return its packet
id once taken, or None to leave the packet to paho's own decoder."""


def compatible(client: paho.Client | aiomqtt.Client) -> bool:
    """Return whether ``client`` (paho's or aiomqtt's) has every member the hub relies on."""
    if isinstance(client, aiomqtt.Client):
        return all(hasattr(client, n) for n in AIOMQTT_REQUIRED) and compatible(client._client)
    return all(hasattr(client, name) for name in PAHO_REQUIRED)


# --- aiomqtt ---------------------------------------------------------------------------------
def paho_of(client: aiomqtt.Client) -> paho.Client:
    """Return the paho client under ``client``."""
    return client._client


def disconnected(client: aiomqtt.Client) -> asyncio.Future[None]:
    """Return ``client``'s future that completes (with the reason) when its connection ends."""
    future: asyncio.Future[None] = client._disconnected
    return future


def retrieve_disconnection(client: aiomqtt.Client) -> None:
    """Mark ``client``'s disconnection error as seen (the caller has handled the loss)."""
    future = client._disconnected
    if future.done() and not future.cancelled():
        future.exception()


def guard_write_registration(client: aiomqtt.Client) -> None:
    """Register paho's socket for writing as aiomqtt does, unless it closed meanwhile.

    paho asks for a writer from any thread, so aiomqtt schedules ``loop.add_writer(fd)`` with
    ``call_soon_threadsafe``; a connection that ends before the loop runs it leaves a closed fd,
    and asyncio logs the EBADF with a traceback (seen on a consumer when its broker was killed
    with SIGKILL). Here the scheduled step checks that paho still holds that socket, open.
    """
    loop: asyncio.AbstractEventLoop = client._loop

    def register(under: paho.Client, _userdata: object, sock: Any) -> None:
        def writable() -> None:  # aiomqtt's own writer: a failed write ends the connection
            try:
                under.loop_write()
            except Exception as exc:  # noqa: BLE001 - aiomqtt reports any of them the same way
                ended = disconnected(client)
                if not ended.done():
                    ended.set_exception(exc)

        def add() -> None:
            fileno = sock.fileno()
            if fileno >= 0 and under.socket() is sock:
                loop.add_writer(fileno, writable)

        loop.call_soon_threadsafe(add)

    paho_of(client).on_socket_register_write = register


# --- reading ---------------------------------------------------------------------------------
def replace_recv(client: paho.Client, recv: Callable[[int], bytes]) -> Callable[[int], bytes]:
    """Make paho read its socket through ``recv(size)``; return paho's own reader."""
    state: Any = client
    previous: Callable[[int], bytes] = state._sock_recv
    state._sock_recv = recv
    return previous


def packet_reader(client: paho.Client) -> Callable[[], MQTTErrorCode]:
    """Return paho's "read one packet and handle it" step (``MQTT_ERR_AGAIN``: none yet)."""
    state: Any = client
    read: Callable[[], MQTTErrorCode] = state._packet_read
    return read


def handle_rc(client: paho.Client, rc: MQTTErrorCode) -> MQTTErrorCode:
    """Let paho handle a failed read as its own loop does (disconnect, callbacks)."""
    state: Any = client
    handled: MQTTErrorCode = state._loop_rc_handle(rc)
    return handled


def take_publishes(client: paho.Client, taker: PublishTaker) -> None:
    """Offer each incoming QoS 0/1 PUBLISH's bytes to ``taker`` before paho decodes it; what
    it takes is acknowledged as paho would (unless manual acknowledgement is on)."""
    state: Any = client
    decode: Callable[[], MQTTErrorCode] = state._handle_publish

    def handle() -> MQTTErrorCode:
        packet = state._in_packet
        qos = (packet["command"] & 0x06) >> 1
        mid = taker(packet["packet"], qos) if qos <= 1 else None
        if mid is None:
            return decode()
        if qos == 1 and not state._manual_ack:
            rc: MQTTErrorCode = state._send_puback(mid)
            return rc
        return paho.MQTT_ERR_SUCCESS

    state._handle_publish = handle


def take_pubacks(
    client: paho.Client, mine: Callable[[int], bool], on_ack: Callable[[int, int], None]
) -> None:
    """Call ``on_ack(mid, reason)`` for each plain PUBACK (2 or 3 bytes) whose ``mine(mid)``
    is true, doing paho's own bookkeeping for a message paho sent; leave the rest to paho."""
    state: Any = client
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
        on_ack(mid, packet[2] if len(packet) == 3 else 0)
        if message is None:  # sent as raw bytes (``queue_burst``): paho never knew it
            return paho.MQTT_ERR_SUCCESS
        message.info._set_as_published()
        state._inflight_messages -= 1
        if state._max_inflight_messages > 0:  # paho releases queued messages one per PUBACK
            rc: MQTTErrorCode = state._update_inflight()
            return rc
        return paho.MQTT_ERR_SUCCESS

    def buffered(owner: Any, mid: int, reason: int) -> bool:
        # (the client is passed in, not held: the registry keeps no client alive)
        # a message paho sent itself needs paho's bookkeeping: left to ``handle``
        if not mine(mid) or mid in owner._out_messages:
            return False
        on_ack(mid, reason)
        return True

    state._handle_pubackcomp = handle
    _BUFFERED_ACKERS[client] = buffered


def take_buffered_pubacks(client: paho.Client, data: bytearray) -> int:
    """Take the PUBACKs without properties (4 or 5 bytes each) at the start of ``data``, bytes
    read from ``client``'s socket that paho has not seen, while they acknowledge messages sent
    as raw bytes (``queue_burst``) and paho is between packets: each is handed to
    ``take_pubacks``'s ``on_ack`` and removed from ``data``, as paho would have read and
    handled it one by one. Return how many were taken."""
    ack = _BUFFERED_ACKERS.get(client)
    state: Any = client
    if ack is None or state._in_packet["command"] != 0:
        return 0
    at, size, taken = 0, len(data), 0
    try:  # (at most the publisher's window of packets: a few hundred)
        while at + 4 <= size and data[at] == PUBACK and data[at + 1] in (2, 3):
            end = at + 2 + data[at + 1]
            if end > size:
                break  # the rest of it is still in the socket: paho reads it
            reason = data[at + 4] if end - at == 5 else 0  # MQTT 5 reason byte, else success
            if not ack(state, (data[at + 2] << 8) | data[at + 3], reason):
                break  # paho decodes it, and reads on from there
            at, taken = end, taken + 1
    finally:  # what was handled leaves the buffer, whatever a handler raised
        if at:
            del data[:at]
            with state._msgtime_mutex:  # what paho's keep-alive counts as heard from the broker
                state._last_bytes_received = time.monotonic()
    return taken


# --- writing ---------------------------------------------------------------------------------
def unsent(client: paho.Client) -> tuple[int, int]:
    """Return (all bytes, bytes of raw packets) paho has not written to its socket yet."""
    state: Any = client
    total = raw = 0
    for packet in state._out_packet:
        total += packet["to_process"]
        if packet["command"] == RAW:
            raw += packet["to_process"]
    return total, raw


def has_unsent(client: paho.Client) -> bool:
    """Return whether paho still holds packets it has not written to its socket."""
    state: Any = client
    return bool(state._out_packet)


def queue_raw(client: paho.Client, data: bytes) -> None:
    """Queue ``data`` (whole encoded packets) behind what paho queued; paho runs no callback
    for them."""
    state: Any = client
    state._packet_queue(RAW, data, 0, 0)


def queue_acks(client: paho.Client, data: bytes) -> None:
    """Queue ``data`` (encoded PUBACK packets) behind what paho queued, as one write."""
    state: Any = client
    state._packet_queue(paho.PUBACK, data, 0, 1)


def next_mid(client: paho.Client) -> int:
    """Return a new packet id, never one paho itself has in flight."""
    state: Any = client
    mid: int = state._mid_generate()
    while mid in state._out_messages:
        mid = state._mid_generate()
    return mid


def queue_burst(client: paho.Client, blob: bytes) -> bool:
    """Write ``blob`` (QoS 1 PUBLISH packets) now if nothing of paho's waits, else queue it
    behind; what the socket does not take waits for the event loop's writer. False if the
    client has no connection."""
    state: Any = client
    if client.socket() is None:
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
            client.loop_write()  # what the socket does not take, paho registers itself
            return True
    state._call_socket_register_write()
    return True


def publish_now(
    client: paho.Client,
    topic: str,
    payload: bytes,
    *,
    qos: int,
    retain: bool,
    properties: Properties | None,
) -> None:
    """Publish through paho and write what the socket takes at once, on this thread (the event
    loop's), asking aiomqtt for a writer only for what it does not take.

    ``Client.publish`` would ask aiomqtt for a writer, which aiomqtt adds at a later turn of the
    event loop: whatever the loop runs first holds the packet back, and a writer added after a
    loss in between fails on the closed socket.
    """
    state: Any = client
    registered = state._registered_write
    state._registered_write = True  # paho asks for no writer while it queues the packet
    try:
        info = client.publish(topic, payload, qos=qos, retain=retain, properties=properties)
    finally:
        state._registered_write = registered
    if info.rc == paho.MQTT_ERR_SUCCESS and not registered:
        # nothing of paho's waited: write now (a writer already registered sends it in order)
        with contextlib.suppress(OSError):  # a broken socket: paho reports the loss
            client.loop_write()
