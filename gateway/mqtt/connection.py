"""One live broker connection of the hub, and what making one needs (credentials, TLS).

``Connection`` wraps an ``aiomqtt.Client``: aiomqtt for requests and retained state, its paho
client for bulk. The helpers here read the password and TLS files the configuration names,
close a client within a bound, and say what to check when a broker refuses the hub.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from collections.abc import Awaitable, Callable
from typing import Any, Final

import aiomqtt
import paho.mqtt.client as paho
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from gateway.config import MqttConfig
from gateway.errors import ConfigError
from gateway.mqtt.paho_private import paho_of, publish_now, queue_raw, retrieve_disconnection

PUBLISH_TIMEOUT_S: Final = 10.0
CLOSE_TIMEOUT_S: Final = 2.0


class Connection:
    """One live broker connection: aiomqtt for requests and retained state, paho for bulk."""

    def __init__(self, client: aiomqtt.Client, protocol: int) -> None:
        self.client = client
        self.protocol = protocol
        self.lost = asyncio.Event()  # set when paho reports the loss or the link lets go
        self._quick = bytearray()  # QoS 0 packets of this turn of the event loop, encoded
        self._quick_flush: asyncio.Handle | None = None
        on_paho_disconnect(paho_of(client), self.lost.set)

    @property
    def alive(self) -> bool:
        """Return whether this connection is still the link's live one."""
        return not self.lost.is_set()

    @property
    def paho(self) -> paho.Client:
        """Return the paho client under aiomqtt (the outbox publisher writes through it)."""
        # aiomqtt is built on paho's asyncio socket callbacks; publishing through paho directly
        # avoids aiomqtt's O(pending) per-publish bookkeeping (docs/performance.md).
        return paho_of(self.client)

    async def publish(
        self,
        topic: str,
        payload: bytes,
        *,
        retain: bool = False,
        properties: Properties | None = None,
    ) -> None:
        """Publish one QoS 1 message and wait for its PUBACK (MqttError if lost meanwhile)."""
        await self.unless_lost(
            self.client.publish(topic, payload, qos=1, retain=retain, properties=properties)
        )

    def send(
        self,
        topic: str,
        payload: bytes,
        *,
        retain: bool = False,
        properties: Properties | None = None,
        qos: int = 1,
    ) -> None:
        """Queue one message (QoS 1 unless told) without waiting for its PUBACK, and write what
        the socket takes at once (paho keeps the order)."""
        # Control answers and retained state must not wait behind the records in flight: a
        # PUBACK comes only after the broker has taken every record sent before.
        # Written now, not when aiomqtt's writer gets its turn of the event loop: whatever the
        # loop runs first would hold the packet back (the purge a withdrawal starts scans the
        # queued rows in memory: 30 ms for 100,000 of them, with the withdrawal's answer
        # waiting behind).
        publish_now(self.paho, topic, payload, qos=qos, retain=retain, properties=properties)

    def send_quick(self, topic: str, payload: bytes, correlation: bytes | None) -> None:
        """Queue one QoS 0 message; those queued in the same turn of the event loop are
        handed to paho as one write (one system call, no per-message objects)."""
        # paho writes every packet with a send() of its own and builds a ReasonCode and a
        # Properties object for each QoS 0 message it has written: for a flood's refusals,
        # most of what answering them costs
        self._quick += encode_publish(topic, payload, correlation, v5=self.protocol == 5)
        if self._quick_flush is None:
            self._quick_flush = asyncio.get_running_loop().call_soon(self._flush_quick)

    def _flush_quick(self) -> None:
        self._quick_flush = None
        data, self._quick = bytes(self._quick), bytearray()
        if data and self.alive and self.paho.socket() is not None:
            queue_raw(self.paho, data)  # raw bytes: paho runs no callback for them

    async def subscribe(self, topic: str) -> None:
        """Subscribe to ``topic`` at QoS 1 and wait for the SUBACK (same failures as publish)."""
        await self.unless_lost(self.client.subscribe(topic, qos=1))

    async def unless_lost(self, awaitable: Awaitable[object]) -> None:
        """Await ``awaitable``, raising MqttError as soon as the connection is lost."""
        # aiomqtt leaves a PUBACK or SUBACK wait pending when the socket closes, until its own
        # timeout; a hub that waited for it would reconnect seconds late after every outage.
        work = asyncio.ensure_future(awaitable)
        lost = asyncio.ensure_future(self.lost.wait())
        try:
            async with asyncio.timeout(PUBLISH_TIMEOUT_S):
                await asyncio.wait({work, lost}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in (work, lost):
                task.cancel()
            await asyncio.gather(work, lost, return_exceptions=True)
        if not work.cancelled():
            work.result()
            return
        raise aiomqtt.MqttError("broker connection lost")


def on_paho_disconnect(client: paho.Client, callback: Callable[[], None]) -> None:
    """Call ``callback()`` (after aiomqtt's own handler) when paho reports a disconnection."""
    previous = client.on_disconnect

    def on_disconnect(*args: Any) -> None:  # paho passes 4 or 5 arguments by API version
        if previous is not None:
            previous(*args)
        callback()

    client.on_disconnect = on_disconnect


async def close_client(client: aiomqtt.Client) -> None:
    """Disconnect ``client`` within CLOSE_TIMEOUT_S; past that, close its socket outright."""
    try:
        async with asyncio.timeout(CLOSE_TIMEOUT_S):
            await client.__aexit__(None, None, None)
    except (aiomqtt.MqttError, TimeoutError, OSError):
        sock = paho_of(client).socket()
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.close()
    # A connection lost before anything read its messages leaves aiomqtt's disconnection error
    # unretrieved; the loss is already handled (and logged) by the caller.
    retrieve_disconnection(client)


def encode_publish(topic: str, payload: bytes, correlation: bytes | None, *, v5: bool) -> bytes:
    """Return the bytes of a QoS 0 PUBLISH of ``payload`` on ``topic`` (MQTT 5 section 3.3,
    with ``correlation`` as its Correlation Data; MQTT 3.1.1 without properties)."""
    name = topic.encode()
    body = bytearray(len(name).to_bytes(2, "big"))
    body += name
    if v5:
        if correlation is None:
            body.append(0)
        else:
            prop = b"\x09" + len(correlation).to_bytes(2, "big") + correlation
            body += _varint(len(prop)) + prop
    body += payload
    return b"\x30" + _varint(len(body)) + bytes(body)


def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte, value = value & 0x7F, value >> 7
        out.append(byte | (0x80 if value else 0))
        if not value:
            return bytes(out)


def response_properties(correlation: bytes | None) -> Properties | None:
    """Return MQTT 5 PUBLISH properties echoing ``correlation`` (MQTT 5 section 4.10)."""
    if correlation is None:
        return None
    props = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
    props.CorrelationData = correlation
    return props


def advice(exc: Exception) -> str:
    """Return the log event for a lost or refused connection, saying what to check."""
    code = getattr(exc, "rc", None)
    value = getattr(code, "value", code)
    # CONNACK 0x86 bad user name or password, 0x87 not authorised (MQTT 5 section 3.2.2.2);
    # 4 and 5 are the MQTT 3.1.1 equivalents.
    if value in (4, 5, 0x86, 0x87):
        return (
            "broker refused the hub's credentials; check mqtt.username, "
            "mqtt.password_file or the client certificate, and the broker's ACL"
        )
    return "broker connection lost"


def reason(exc: Exception) -> str:
    """Return the loss of a connection as a short text for the log's ``reason`` field."""
    return str(exc)[:200]


def read_password(config: MqttConfig) -> str | None:
    """Return the MQTT password from ``mqtt.password_file`` (None without one)."""
    if config.password_file is None:
        return None
    try:
        return config.password_file.read_text(encoding="utf-8").strip()
    except OSError as exc:
        raise ConfigError(
            "mqtt.password_file", f"cannot read {config.password_file}: {exc.strerror}"
        ) from exc


def tls_params(config: MqttConfig) -> aiomqtt.TLSParameters | None:
    """Return aiomqtt's TLS parameters for ``mqtt.tls`` (None without TLS)."""
    if config.tls is None:
        return None
    for name, path in (("ca", config.tls.ca), ("cert", config.tls.cert), ("key", config.tls.key)):
        if path is not None and not path.is_file():
            raise ConfigError(f"mqtt.tls.{name}", f"{path} is not a readable file")
    return aiomqtt.TLSParameters(
        ca_certs=str(config.tls.ca),
        certfile=str(config.tls.cert) if config.tls.cert else None,
        keyfile=str(config.tls.key) if config.tls.key else None,
        tls_version=ssl.PROTOCOL_TLS_CLIENT,
    )
