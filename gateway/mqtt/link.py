"""The hub's MQTT connection: connect, announce, serve requests, reconnect with backoff.

A fresh ``aiomqtt.Client`` is made for every connection, so nothing paho queued for a dead
connection is ever sent on the next one: the outbox decides what is re-sent. The last will
marks the hub ``offline`` (retained); every connection starts by publishing ``online``.

Requests are taken from paho's message callback as they are read (``on_request``, a cheap
synchronous hand-off to the request intake, which bounds and schedules them), never through
aiomqtt's incoming queue, which is unbounded by default: it is bounded here too
(``INCOMING_MAX``), as a backstop that nothing fills.

Reconnecting follows the link's ``Backoff``; the sequence starts afresh only after a
connection that lasted ``HEALTHY_AFTER_S``, so a broker that drops the hub right after CONNACK
sees at most one attempt per capped delay.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import ssl
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Final

import aiomqtt
import paho.mqtt.client as paho
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from gateway.backoff import Backoff
from gateway.config import MqttConfig
from gateway.errors import ConfigError
from gateway.mqtt.reads import buffer_reads
from gateway.mqtt.topics import Topics
from gateway.tasks import reraise_if_cancelling

logger = logging.getLogger(__name__)

ONLINE: Final = b"online"
OFFLINE: Final = b"offline"
PUBLISH_TIMEOUT_S: Final = 10.0
CLOSE_TIMEOUT_S: Final = 2.0
INCOMING_MAX: Final = 64
HEALTHY_AFTER_S: Final = 30.0
LINK_BACKOFF: Final = Backoff(initial=0.2, cap=10.0, reset_after_s=HEALTHY_AFTER_S)

ConnectHook = Callable[["Connection"], Awaitable[None]]
DisconnectHook = Callable[[], None]


@dataclass(frozen=True, slots=True)
class Request:
    """A control request as received: command name, raw body, and where to answer."""

    command: str
    payload: bytes
    response_topic: str | None
    correlation: bytes | None


RequestHandler = Callable[[Request], None]


class Connection:
    """One live broker connection: aiomqtt for requests and retained state, paho for bulk."""

    def __init__(self, client: aiomqtt.Client, protocol: int) -> None:
        self.client = client
        self.protocol = protocol
        self.lost = asyncio.Event()  # set when paho reports the loss or the link lets go
        _on_paho_disconnect(client._client, self.lost.set)

    @property
    def alive(self) -> bool:
        """Return whether this connection is still the link's live one."""
        return not self.lost.is_set()

    @property
    def paho(self) -> paho.Client:
        """Return the paho client under aiomqtt (the outbox publisher writes through it)."""
        # aiomqtt is built on paho's asyncio socket callbacks; publishing through paho directly
        # avoids aiomqtt's O(pending) per-publish bookkeeping (PERFORMANCE.md, trap 2).
        return self.client._client

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
        """Queue one message (QoS 1 unless told) without waiting for its PUBACK (paho keeps
        the order)."""
        # Control answers and retained state must not wait behind the records in flight: a
        # PUBACK comes only after the broker has taken every record sent before.
        self.paho.publish(topic, payload, qos=qos, retain=retain, properties=properties)

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


def _on_paho_disconnect(client: paho.Client, callback: Callable[[], None]) -> None:
    """Call ``callback()`` (after aiomqtt's own handler) when paho reports a disconnection."""
    previous = client.on_disconnect

    def on_disconnect(*args: Any) -> None:  # paho passes 4 or 5 arguments by API version
        if previous is not None:
            previous(*args)
        callback()

    client.on_disconnect = on_disconnect


class MqttLink:
    """Keeps the hub connected; runs hooks on connect and hands requests to a handler."""

    def __init__(
        self,
        config: MqttConfig,
        topics: Topics,
        client_id: str,
        backoff: Backoff | None = None,
    ) -> None:
        self._config = config
        self._topics = topics
        self._client_id = client_id
        self._backoff = backoff or LINK_BACKOFF
        self._connect_hooks: list[ConnectHook] = []
        self._disconnect_hooks: list[DisconnectHook] = []
        self._on_request: RequestHandler | None = None
        self.connection: Connection | None = None
        self.connected = asyncio.Event()
        self.connects = 0
        self._drop = asyncio.Event()
        self._connected_at: float | None = None
        self._password = _read_password(config)
        self._tls = _tls_params(config)

    def on_connect(self, hook: ConnectHook) -> None:
        """Run ``hook(connection)`` after every (re)connect, in registration order."""
        self._connect_hooks.append(hook)

    def on_disconnect(self, hook: DisconnectHook) -> None:
        """Call ``hook()`` as soon as a connection is lost or dropped."""
        self._disconnect_hooks.append(hook)

    def on_request(self, handler: RequestHandler) -> None:
        """Call ``handler(request)`` for every control request, in arrival order, from paho's
        network callback: it must return at once (queue the request, do not run it)."""
        self._on_request = handler

    def drop(self) -> None:
        """Close the current connection now; whatever paho still queued is discarded."""
        self._drop.set()

    def _client(self) -> aiomqtt.Client:
        protocol = (
            aiomqtt.ProtocolVersion.V5
            if self._config.protocol == 5
            else aiomqtt.ProtocolVersion.V311
        )
        client = aiomqtt.Client(
            self._config.host,
            self._config.port,
            identifier=self._client_id,
            username=self._config.username,
            password=self._password,
            tls_params=self._tls,
            protocol=protocol,
            keepalive=self._config.keepalive_s,
            will=aiomqtt.Will(self._topics.status, OFFLINE, qos=1, retain=True),
            max_inflight_messages=0,  # unlimited: the publisher bounds its own window (trap 3)
            max_queued_incoming_messages=INCOMING_MAX,  # unused (see _on_message): bounded anyway
            timeout=10.0,
            # Control answers are small and must not wait for the broker's delayed ACK of the
            # previous segment (Nagle); bulk records fill segments either way.
            socket_options=[(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)],
        )
        # paho formats a DEBUG line for every packet sent and received even when nothing
        # prints it; the hub logs its own events, so paho's per-packet log is switched off.
        client._client.disable_logger()
        buffer_reads(client._client)  # one recv per burst of PUBACKs, not three per PUBACK
        return client

    async def run(self) -> None:
        """Connect and serve forever, reconnecting with jittered capped backoff."""
        delays = self._backoff.delays()
        loop = asyncio.get_running_loop()
        while True:
            self._connected_at = None
            try:
                await self._serve(self._client())
            except (aiomqtt.MqttError, TimeoutError, OSError) as exc:
                reraise_if_cancelling()
                # A broker that dies mid-handshake or mid-hook shows up as any of these; each
                # means the same thing here: this connection is gone, make another.
                logger.warning(_advice(exc), extra={"reason": _reason(exc)})
            finally:
                self._lost()
            if self._was_healthy(loop.time()):
                delays = self._backoff.delays()  # it was healthy: a new outage starts afresh
            await asyncio.sleep(next(delays))

    def _was_healthy(self, now: float) -> bool:
        up = self._connected_at
        return up is not None and self._backoff.resets(now - up)

    async def _serve(self, client: aiomqtt.Client) -> None:
        await client.__aenter__()
        try:
            connection = Connection(client, self._config.protocol)
            client._client.on_message = self._on_message  # before any request can arrive
            await connection.subscribe(self._topics.requests)
            await connection.publish(self._topics.status, ONLINE, retain=True)
            self.connection = connection
            self.connects += 1
            self._connected_at = asyncio.get_running_loop().time()
            for hook in self._connect_hooks:
                await hook(connection)
            reraise_if_cancelling()
            self.connected.set()
            self._drop.clear()
            logger.info("broker connected", extra={"connects": self.connects})
            reader = asyncio.create_task(self._read(client), name="mqtt-requests")
            dropper = asyncio.create_task(self._drop.wait(), name="mqtt-drop")
            try:
                await asyncio.wait({reader, dropper}, return_when=asyncio.FIRST_COMPLETED)
            finally:
                for task in (reader, dropper):
                    task.cancel()
                await asyncio.gather(reader, dropper, return_exceptions=True)
            if not reader.cancelled() and reader.exception() is not None:
                reader.result()  # re-raise the MqttError that ended the connection
            logger.warning("broker connection dropped on purpose")
        finally:
            await _close(client)

    async def _read(self, client: aiomqtt.Client) -> None:
        # Requests never reach aiomqtt's queue (_on_message takes them); iterating it is how
        # the end of the connection shows up (MqttError).
        async for _ in client.messages:
            reraise_if_cancelling()

    def _on_message(self, _client: paho.Client, _userdata: Any, message: paho.MQTTMessage) -> None:
        try:
            topic = message.topic
        except UnicodeDecodeError:  # the broker checks topics are UTF-8; paho may not
            return
        command = self._topics.command_of(topic)
        if command is None or self._on_request is None:
            return
        props = message.properties
        response_topic = getattr(props, "ResponseTopic", None) if props else None
        correlation = getattr(props, "CorrelationData", None) if props else None
        self._on_request(Request(command, bytes(message.payload), response_topic, correlation))

    def answer(
        self, topic: str, payload: bytes, correlation: bytes | None, *, qos: int = 1
    ) -> None:
        """Queue a response on the live connection (dropped if there is none), echoing the
        MQTT 5 correlation data."""
        connection = self.connection
        if connection is None:
            return
        try:
            connection.send(topic, payload, properties=response_properties(correlation), qos=qos)
        except ValueError:  # a topic paho will not publish to (the intake checks it first)
            logger.warning("response topic refused by the MQTT client")

    def _lost(self) -> None:
        if self.connection is not None:
            self.connection.lost.set()
        self.connection = None
        if self.connected.is_set():
            self.connected.clear()
            for hook in self._disconnect_hooks:
                hook()

    async def close(self) -> None:
        """Publish ``offline`` (retained) if connected; the caller then cancels ``run``."""
        connection = self.connection
        if connection is not None and connection.alive:
            with contextlib.suppress(aiomqtt.MqttError, TimeoutError):
                await connection.publish(self._topics.status, OFFLINE, retain=True)


async def _close(client: aiomqtt.Client) -> None:
    """Disconnect ``client`` within CLOSE_TIMEOUT_S; past that, close its socket outright."""
    try:
        async with asyncio.timeout(CLOSE_TIMEOUT_S):
            await client.__aexit__(None, None, None)
    except (aiomqtt.MqttError, TimeoutError, OSError):
        sock = client._client.socket()
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.close()
    # A connection lost before anything read its messages leaves aiomqtt's disconnection error
    # unretrieved; the loss is already handled (and logged) by the caller.
    disconnected = client._disconnected
    if disconnected.done() and not disconnected.cancelled():
        disconnected.exception()


def response_properties(correlation: bytes | None) -> Properties | None:
    """Return MQTT 5 PUBLISH properties echoing ``correlation`` (MQTT 5 section 4.10)."""
    if correlation is None:
        return None
    props = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
    props.CorrelationData = correlation
    return props


def _advice(exc: Exception) -> str:
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


def _reason(exc: Exception) -> str:
    return str(exc)[:200]


def _read_password(config: MqttConfig) -> str | None:
    if config.password_file is None:
        return None
    try:
        return config.password_file.read_text(encoding="utf-8").strip()
    except OSError as exc:
        raise ConfigError(
            "mqtt.password_file", f"cannot read {config.password_file}: {exc.strerror}"
        ) from exc


def _tls_params(config: MqttConfig) -> aiomqtt.TLSParameters | None:
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
