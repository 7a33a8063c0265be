"""The hub's MQTT connections: connect, announce, serve requests, reconnect with backoff.

A fresh ``aiomqtt.Client`` is made for every connection, so nothing paho queued for a dead
connection is ever sent on the next one: the outbox decides what is re-sent. The last will
marks the hub ``offline`` (retained); every connection starts by publishing ``online``.

A hub has two links. The main one carries records, retained state and every request. The
**control** link (``control_commands``: the privacy-critical commands) is a second client of
the hub with its own client id, subscribed only to those commands' request topics, without a
will or a status of its own: the broker delivers a withdrawal on a TCP stream that no flood of
other requests fills, so it is read at once whatever the main stream holds (the main link
receives the same requests too; the intake runs each once, see gateway/commands/intake.py).

Requests are taken from paho's network callback as they are read (``on_request``, a cheap
synchronous hand-off to the request intake, which bounds and schedules them), decoded straight
from the packet (``gateway.mqtt.reads.take_publishes``), never through aiomqtt's incoming
queue, which is unbounded by default: it is bounded here too (``INCOMING_MAX``), as a backstop
that nothing fills. Answers can be sent from the moment the subscription is made, before the
connection hooks have run.

Reconnecting follows the link's ``Backoff``; the sequence starts afresh only after a
connection that lasted ``HEALTHY_AFTER_S``, so a broker that drops the hub right after CONNACK
sees at most one attempt per capped delay.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import socket
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Final

import aiomqtt
import paho.mqtt.client as paho

from gateway.backoff import Backoff
from gateway.config import MqttConfig
from gateway.mqtt.connection import (
    Connection,
    advice,
    close_client,
    read_password,
    reason,
    response_properties,
    tls_params,
)
from gateway.mqtt.paho_private import (
    disconnected,
    guard_write_registration,
    paho_of,
    unsent,
)
from gateway.mqtt.reads import buffer_reads, hold_reads, take_publishes
from gateway.mqtt.topics import Topics
from gateway.tasks import reraise_if_cancelling

logger = logging.getLogger(__name__)

__all__ = ["Connection", "MqttLink", "Request", "control_link", "response_properties"]

ONLINE: Final = b"online"
OFFLINE: Final = b"offline"
INCOMING_MAX: Final = 64
HEALTHY_AFTER_S: Final = 30.0
LINK_BACKOFF: Final = Backoff(initial=0.2, cap=10.0, reset_after_s=HEALTHY_AFTER_S)
CONTROL_SUFFIX: Final = "-control"

ConnectHook = Callable[[Connection], Awaitable[None]]
DisconnectHook = Callable[[], None]


@dataclass(frozen=True, slots=True)
class Request:
    """A control request as received: command name, raw body, and where to answer.

    ``control``: it came on the control link (see the module docstring).
    """

    command: str
    payload: bytes
    response_topic: str | None
    correlation: bytes | None
    control: bool = False


RequestHandler = Callable[[Request], None]


class MqttLink:
    """Keeps the hub connected; runs hooks on connect and hands requests to a handler."""

    def __init__(
        self,
        config: MqttConfig,
        topics: Topics,
        client_id: str,
        backoff: Backoff | None = None,
        *,
        control_commands: frozenset[str] | None = None,
    ) -> None:
        self._config = config
        self._topics = topics
        self._client_id = client_id
        self._backoff = backoff or LINK_BACKOFF
        self._control = control_commands is not None
        self._filters = (
            tuple(sorted(topics.request(name) for name in control_commands))
            if control_commands is not None
            else (topics.requests,)
        )
        self._connect_hooks: list[ConnectHook] = []
        self._disconnect_hooks: list[DisconnectHook] = []
        self._on_request: RequestHandler | None = None
        self._quiet: asyncio.Event | None = None
        self._answers_by: MqttLink | None = None
        self.connection: Connection | None = None
        self._answering: Connection | None = None  # set as soon as requests can arrive
        self.connected = asyncio.Event()
        self.connects = 0
        self._drop = asyncio.Event()
        self._connected_at: float | None = None
        self._password = read_password(config)
        self._tls = tls_params(config)

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

    def yield_to(self, quiet: asyncio.Event, answers_by: MqttLink | None = None) -> None:
        """Stop reading this link's socket while ``quiet`` is clear (see
        gateway.mqtt.reads.hold_reads): for the main link, while a privacy-critical request
        waits or runs; and while too many answers wait to be written here or on
        ``answers_by`` (the link most answers go by)."""
        self._quiet = quiet
        self._answers_by = answers_by

    def unsent_answers(self) -> int:
        """Return how many bytes of quick answers the live connection has not written yet."""
        connection = self._answering
        return 0 if connection is None else unsent(connection.paho)[1]

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
            # the control link has no status of its own: its loss must not mark the hub offline
            will=None if self._control else aiomqtt.Will(self._topics.status, OFFLINE, 1, True),
            max_inflight_messages=0,  # unlimited: the publisher bounds its own window
            max_queued_incoming_messages=INCOMING_MAX,  # unused (see _on_message): bounded anyway
            timeout=10.0,
            # Control answers are small and must not wait for the broker's delayed ACK of the
            # previous segment (Nagle); bulk records fill segments either way.
            socket_options=[(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)],
        )
        # paho formats a DEBUG line for every packet sent and received even when nothing
        # prints it; the hub logs its own events, so paho's per-packet log is switched off.
        under = paho_of(client)
        under.disable_logger()
        guard_write_registration(client)  # no EBADF traceback when a connection drops
        buffer_reads(under)  # one recv per burst of PUBACKs, not three per PUBACK
        under.on_message = self._on_message  # what take_publishes leaves to paho
        take_publishes(under, self._on_publish)  # before any request can arrive
        if self._quiet is not None:
            elsewhere = self._answers_by.unsent_answers if self._answers_by else lambda: 0
            hold_reads(under, self._quiet, functools.partial(_read_failed, client), elsewhere)
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
                logger.warning(advice(exc), extra={"reason": reason(exc), "control": self._control})
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
            # answers may go out from the first request on, before the hooks below have run
            self._answering = connection
            for topic in self._filters:
                await connection.subscribe(topic)
            if not self._control:
                await connection.publish(self._topics.status, ONLINE, retain=True)
            self.connection = connection
            self.connects += 1
            self._connected_at = asyncio.get_running_loop().time()
            for hook in self._connect_hooks:
                await hook(connection)
            reraise_if_cancelling()
            self.connected.set()
            self._drop.clear()
            logger.info(
                "broker connected", extra={"connects": self.connects, "control": self._control}
            )
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
            await close_client(client)

    async def _read(self, client: aiomqtt.Client) -> None:
        # Requests never reach aiomqtt's queue (_on_publish takes them); iterating it is how
        # the end of the connection shows up (MqttError).
        async for _ in client.messages:
            reraise_if_cancelling()

    def _on_publish(
        self, topic: str, payload: bytes, response_topic: str | None, correlation: bytes | None
    ) -> None:
        command = self._topics.command_of(topic)
        if command is None or self._on_request is None:
            return
        self._on_request(Request(command, payload, response_topic, correlation, self._control))

    def _on_message(self, _client: paho.Client, _userdata: Any, message: paho.MQTTMessage) -> None:
        try:
            topic = message.topic
        except UnicodeDecodeError:  # the broker checks topics are UTF-8; paho may not
            return
        props = message.properties
        response_topic = getattr(props, "ResponseTopic", None) if props else None
        correlation = getattr(props, "CorrelationData", None) if props else None
        self._on_publish(topic, bytes(message.payload), response_topic, correlation)

    def answer(
        self, topic: str, payload: bytes, correlation: bytes | None, *, qos: int = 1
    ) -> bool:
        """Queue a response on the live connection, echoing the MQTT 5 correlation data;
        return False if there is none (the response is dropped)."""
        connection = self._answering
        if connection is None or not connection.alive:
            return False
        try:
            if qos == 0:
                connection.send_quick(topic, payload, correlation)
            else:
                props = response_properties(correlation)
                connection.send(topic, payload, properties=props, qos=qos)
        except ValueError:  # a topic paho will not publish to (the intake checks it first)
            logger.warning("response topic refused by the MQTT client")
        return True

    def _lost(self) -> None:
        for connection in (self.connection, self._answering):
            if connection is not None:
                connection.lost.set()
        self.connection = None
        self._answering = None
        if self.connected.is_set():
            self.connected.clear()
            for hook in self._disconnect_hooks:
                hook()

    async def close(self) -> None:
        """Publish ``offline`` (retained) if connected; the caller then cancels ``run``."""
        connection = self.connection
        if connection is not None and connection.alive and not self._control:
            with contextlib.suppress(aiomqtt.MqttError, TimeoutError):
                await connection.publish(self._topics.status, OFFLINE, retain=True)


def _read_failed(client: aiomqtt.Client, exc: Exception) -> None:
    """End ``client``'s connection with ``exc``, as aiomqtt's own reader does."""
    ended = disconnected(client)
    if not ended.done():
        ended.set_exception(exc)


def control_link(
    config: MqttConfig, topics: Topics, client_id: str, commands: frozenset[str]
) -> MqttLink:
    """Return the hub's control link: client id ``<client_id>-control``, subscribed only to the
    request topics of ``commands``."""
    return MqttLink(config, topics, client_id + CONTROL_SUFFIX, control_commands=commands)
