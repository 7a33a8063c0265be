"""paho's socket reads in chunks, taken in time slices, and incoming PUBLISH packets decoded
without paho's per-message objects.

paho reads every packet with one ``recv`` for the command byte, one per remaining-length byte
and one for the rest: at full rate a PUBACK (4 bytes) costs three system calls, about a fifth
of the hub's main thread. ``buffer_reads`` gives a paho client a receive buffer: when it is
empty, one ``recv`` takes whatever the socket holds (up to ``CHUNK``), and paho's small reads
are served from it. paho's own parser is unchanged; only a run of PUBACKs without properties at
the head of the buffer, acknowledging the outbox's raw bursts, is taken without it
(``paho_private.take_buffered_pubacks``): paho's reading and handling of each costs about a
tenth of the main thread at full rate.

The one hazard of a buffer under a readiness-driven loop: bytes left in it do not make the
socket readable again, so aiomqtt's reader callback would not run for them. ``loop_read`` is
therefore wrapped to keep reading until the buffer is empty, for at most ``SLICE_S`` at a time:
what is left is read in a callback scheduled on the event loop, so a chunk full of requests
never holds the loop (and the hub's other connection) for longer than a slice.

``hold_reads`` stops reading a client's socket while an event is clear (the hub's main link
while a privacy-critical request waits or runs): the event loop, the GIL and the database
thread are then the withdrawal's, and no answer to a flood is queued behind its barrier. The
broker keeps what it sends meanwhile (or drops QoS 0 requests past its queue); reading resumes
when the event is set, or after ``HOLD_MAX_S`` at the latest. It also stops reading while
more than ``ANSWERS_UNSENT_MAX`` bytes of answers queued by the hub itself (raw packets,
``Connection.send_quick``, on this connection or on the one the answers go by), or
``UNSENT_MAX`` bytes in all, wait to be written (answers to a flood the broker is slow to
take): the hub reads no more requests than it can answer, its
unsent answers stay bounded, a withdrawal's barrier (nothing queued before it may still be
sent) waits for at most that many, and one write of paho's takes a few milliseconds.

``take_publishes`` hands every incoming QoS 0/1 PUBLISH to a callback as (topic, payload,
response topic, correlation data), read straight from the packet (MQTT 5 section 3.3): paho
would build an ``MQTTMessage``, a ``Properties`` object (a dictionary filled per packet) and a
lock per message, about 0.1 ms per request, which is most of what a flood of requests costs.
A packet this decoder does not fully understand (QoS 2, a topic alias, a property it does not
know) still goes through paho's decoder and ``on_message``.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import time
from collections.abc import Callable
from typing import Any, Final, cast

import paho.mqtt.client as paho
from paho.mqtt.enums import MQTTErrorCode

from gateway.mqtt import paho_private
from gateway.mqtt.paho_private import (
    PUBACK,
    handle_rc,
    packet_reader,
    replace_recv,
    take_buffered_pubacks,
    unsent,
)
from gateway.timers import sleep_exact

CHUNK: Final = 65536
QUICKACK: Final = getattr(socket, "TCP_QUICKACK", None)  # Linux
SLICE_S: Final = 0.002
HOLD_MAX_S: Final = 1.0
UNSENT_MAX: Final = 256 * 1024  # above the outbox publisher's window of records (250)
ANSWERS_UNSENT_MAX: Final = 32 * 1024
DRAIN_POLL_S: Final = 0.002
PublishHandler = Callable[[str, bytes, str | None, bytes | None], None]
"""``handler(topic, payload, response_topic, correlation)``: must return at once."""

_Parsed = tuple[str | None, int, str | None, bytes | None, bytes]
# PUBLISH properties (MQTT 5 section 3.3.2.3) by identifier: fixed sizes, then the kinds
_FIXED: Final = {0x01: 1, 0x02: 4}
_STRINGS: Final = frozenset({0x03, 0x08, 0x09})  # content type, response topic, correlation
_USER_PROPERTY: Final = 0x26
_RESPONSE_TOPIC: Final = 0x08
_CORRELATION: Final = 0x09
_SUBSCRIPTION_ID: Final = 0x0B


def buffer_reads(client: paho.Client) -> None:
    """Make ``client`` read its socket in chunks; its packets and callbacks stay the same."""
    pending = bytearray()  # one socket's bytes: the link makes a new client per connection
    resuming: list[asyncio.Handle] = []

    def recv(size: int) -> bytes:
        if pending:
            out = bytes(pending[:size])
            del pending[:size]
            return out
        data = sock_recv(max(size, CHUNK))  # BlockingIOError, OSError, b"": as paho expects
        if data and QUICKACK is not None:
            # Acknowledge at once what was read: the broker sends PUBACKs in small writes
            # under Nagle (no TCP_NODELAY by default), holding each until the previous one is
            # acknowledged; with the outbox's bursts the hub is often silent while it waits,
            # so a delayed ACK (up to 40 ms) would stall the window. Linux clears the flag
            # after use, so it is set again at every read.
            sock = client.socket()
            with contextlib.suppress(OSError, AttributeError):  # AttributeError: closed
                cast(socket.socket, sock).setsockopt(socket.IPPROTO_TCP, QUICKACK, 1)
        if len(data) <= size:
            return data
        pending.extend(memoryview(data)[size:])
        return data[:size]

    sock_recv = replace_recv(client, recv)
    read_packet = packet_reader(client)

    def read(max_packets: int = 1) -> MQTTErrorCode:
        # paho's loop_read reads as many packets as it has messages in flight (thousands of
        # unacknowledged answers under a flood) in one call: here, one packet at a time (as
        # paho's own loop does it) until the socket is empty or the slice is over
        until = time.monotonic() + SLICE_S
        while True:
            if client.socket() is None:
                return paho.MQTT_ERR_NO_CONN
            if pending and pending[0] == PUBACK:
                take_buffered_pubacks(client, pending)  # a run of PUBACKs: no paho per packet
            rc = read_packet()
            if rc > 0:
                return handle_rc(client, rc)
            if rc == paho.MQTT_ERR_AGAIN:
                return paho.MQTT_ERR_SUCCESS
            # bytes still in the socket make it readable again; buffered ones are resumed
            if time.monotonic() > until and (not pending or _resume_later()):
                return paho.MQTT_ERR_SUCCESS

    def _resume_later() -> bool:
        if resuming:
            return True
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # paho's own network thread: no loop to come back from
            return False
        resuming.append(loop.call_soon(resume))
        return True

    def resume() -> None:
        resuming.clear()
        if pending and client.socket() is not None:
            with contextlib.suppress(OSError):  # paho has already handled the loss
                # through the outermost reader (hold_reads, if any): buffered requests wait
                # while a privacy-critical one runs, as those in the socket do
                client.loop_read()

    client.loop_read = read  # type: ignore[method-assign]


def hold_reads(
    client: paho.Client,
    quiet: asyncio.Event,
    on_error: Callable[[Exception], None],
    answers_elsewhere: Callable[[], int] = lambda: 0,
) -> None:
    """Make ``client`` stop reading its socket while ``quiet`` is clear or more than
    ANSWERS_UNSENT_MAX bytes of raw answers (its own and ``answers_elsewhere()``: those queued
    on another connection) or UNSENT_MAX bytes in all wait to be written (at most HOLD_MAX_S at
    a time); ``on_error(exc)`` is told of a read that fails once reading resumes."""
    loop_read: Callable[[int], MQTTErrorCode] = client.loop_read
    waiting: list[asyncio.Task[None]] = []

    def backlogged() -> bool:
        total, answers = unsent(client)
        return total > UNSENT_MAX or answers + answers_elsewhere() > ANSWERS_UNSENT_MAX

    def read(max_packets: int = 1) -> MQTTErrorCode:
        sock = client.socket()
        if (quiet.is_set() and not backlogged()) or waiting or sock is None:
            return loop_read(max_packets)
        loop = asyncio.get_running_loop()
        if not loop.remove_reader(sock.fileno()):  # not read through the loop: read as asked
            return loop_read(max_packets)
        waiting.append(loop.create_task(resume(loop, sock), name="mqtt-held-reads"))
        return paho.MQTT_ERR_SUCCESS

    async def resume(loop: asyncio.AbstractEventLoop, sock: Any) -> None:
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(HOLD_MAX_S):
                await quiet.wait()
                while backlogged() and client.socket() is sock:
                    await sleep_exact(DRAIN_POLL_S)  # not stretched to the timer grid
        waiting.clear()
        current = client.socket()
        if current is not None and current is sock:  # still this connection's: read it again
            loop.add_reader(current.fileno(), reader)
            reader()  # what the receive buffer holds does not make the socket readable

    def reader() -> None:
        try:
            client.loop_read()
        except Exception as exc:  # noqa: BLE001 - a broken socket, reported as aiomqtt does
            on_error(exc)

    client.loop_read = read  # type: ignore[method-assign]


def take_publishes(client: paho.Client, handler: PublishHandler) -> None:
    """Make ``client`` call ``handler`` for each incoming QoS 0/1 PUBLISH it can decode itself
    (then acknowledged as paho would), instead of building paho's message objects."""
    v5 = client.protocol == paho.MQTTv5

    def taker(packet: bytes, qos: int) -> int | None:
        parsed = parse_publish(packet, qos, v5)
        if parsed is None:
            return None
        topic, mid, response_topic, correlation, payload = parsed
        if topic is not None:  # a topic that is not UTF-8 is nobody's request: acknowledged
            handler(topic, payload, response_topic, correlation)
        return mid

    paho_private.take_publishes(client, taker)


def parse_publish(packet: bytes, qos: int, v5: bool) -> _Parsed | None:
    """Return (topic or None if not UTF-8, packet id, response topic, correlation data,
    payload) of a PUBLISH packet's variable part, or None if it holds what this decoder
    leaves to paho (or is malformed: paho then reports it as it does)."""
    size = len(packet)
    if size < 2:
        return None
    pos = 2 + ((packet[0] << 8) | packet[1])
    if pos > size:
        return None
    topic = _text(packet[2:pos])
    mid = 0
    if qos:
        if pos + 2 > size:
            return None
        mid = (packet[pos] << 8) | packet[pos + 1]
        pos += 2
    if not v5:
        return topic, mid, None, None, bytes(packet[pos:])
    properties = _properties(packet, pos)
    if properties is None:
        return None
    response_topic, correlation, pos = properties
    return topic, mid, response_topic, correlation, bytes(packet[pos:])


def _properties(packet: bytes, pos: int) -> tuple[str | None, bytes | None, int] | None:
    """Return (response topic, correlation data, end) of the properties at ``pos``."""
    read = _varint(packet, pos)
    if read is None:
        return None
    length, pos = read
    end = pos + length
    if end > len(packet):
        return None
    response_topic: str | None = None
    correlation: bytes | None = None
    while pos < end:  # a position past ``end`` means a malformed property
        ident = packet[pos]
        pos += 1
        if ident in _FIXED:
            pos += _FIXED[ident]
        elif ident in _STRINGS or ident == _USER_PROPERTY:
            value, pos = _binary(packet, pos, end)
            if ident == _USER_PROPERTY:
                _, pos = _binary(packet, pos, end)
            elif ident == _RESPONSE_TOPIC:
                response_topic = _text(value)
                if response_topic is None:  # paho would fail on it: let it say so
                    return None
            elif ident == _CORRELATION:
                correlation = value
        elif ident == _SUBSCRIPTION_ID:
            read = _varint(packet, pos)
            pos = end + 1 if read is None else read[1]  # past the end: refused below
        else:  # a topic alias or anything else: paho's decoder handles it
            return None
    if pos != end:
        return None
    return response_topic, correlation, end


def _binary(packet: bytes, pos: int, end: int) -> tuple[bytes, int]:
    if pos + 2 > end:
        return b"", end + 1  # past the end: the caller sees pos != end
    stop = pos + 2 + ((packet[pos] << 8) | packet[pos + 1])
    return bytes(packet[pos + 2 : stop]), stop


def _varint(packet: bytes, pos: int) -> tuple[int, int] | None:
    value = 0
    for shift in (0, 7, 14, 21):
        if pos >= len(packet):
            return None
        byte = packet[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return value, pos
    return None


def _text(raw: bytes) -> str | None:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return None
