"""The MQTT side of ``consentgate ctl``: one connection, requests answered by correlation.

Over MQTT 5 a request carries a response topic private to this client,
``<base>-replies/<hub>/operator/<random>``: outside the hub's own tree as the hub demands, in
the hub's reply area that the shipped ACL (``config/mosquitto/acl.template``) lets the hub write
and the operator read. It also carries random correlation data, which the hub echoes (MQTT 5
section 4.10); the answer is matched on both.
Over MQTT 3.1.1 (a broker that refuses version 5, or ``--protocol 4``) the client listens on the
command's shared response topic and matches the answer on its transaction id.
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import ssl
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import aiomqtt
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from gateway.secure.signing import SIGNED_COMMANDS, sign_request

# CONNACK "unacceptable protocol version" (MQTT 3.1.1 section 3.2.2.3) and "unsupported
# protocol version" (MQTT 5 section 3.2.2.2).
_UNSUPPORTED_PROTOCOL: Final = frozenset({1, 0x84})


@dataclass(frozen=True, slots=True)
class Target:
    """Where the hub is: broker address and credentials, and the hub's topic root."""

    host: str
    port: int
    base: str
    hub: str
    protocol: int = 5
    username: str | None = None
    password: str | None = None
    ca: Path | None = None
    cert: Path | None = None
    key: Path | None = None

    @property
    def root(self) -> str:
        """Return the hub's topic root, ``<base>/<hub>``."""
        return f"{self.base}/{self.hub}"

    def reply_topic(self, nonce: str) -> str:
        """Return this client's MQTT 5 reply topic in the hub's reply area (docs/operator.md)."""
        return f"{self.base}-replies/{self.hub}/operator/{nonce}"


@dataclass(frozen=True, slots=True)
class Answer:
    """A hub's response: ``ok``, the data, or the error code and message."""

    body: dict[str, Any]

    @property
    def ok(self) -> bool:
        """Return whether the hub answered ``status: ok``."""
        return self.body.get("status") == "ok"

    @property
    def data(self) -> Any:
        """Return the answer's ``data`` (None on an error)."""
        return self.body.get("data")

    @property
    def code(self) -> str:
        """Return the error code (``internal`` if the hub sent none)."""
        error = self.body.get("error")
        return str(error.get("code", "internal")) if isinstance(error, dict) else "internal"

    @property
    def message(self) -> str:
        """Return the error message (empty if none)."""
        error = self.body.get("error")
        return str(error.get("message", "")) if isinstance(error, dict) else ""


class NoAnswerError(Exception):
    """The hub did not answer in time, or the broker could not be reached."""


class HubClient:
    """Sends requests to one hub over one broker connection (use ``connect``)."""

    def __init__(self, client: aiomqtt.Client, target: Target, protocol: int) -> None:
        self._client = client
        self._target = target
        self.protocol = protocol
        self._nonce = os.urandom(8).hex()
        # The hub answers only outside its own topic tree (a reply topic inside it is refused).
        self._inbox = target.reply_topic(self._nonce)
        self._subscribed: set[str] = set()
        self._counter = 0

    async def request(
        self,
        command: str,
        params: dict[str, Any] | None = None,
        *,
        wait_s: float,
        sign_key: Ed25519PrivateKey | None = None,
        counter: int | None = None,
    ) -> Answer:
        """Send ``command`` with ``params``; return the answer or raise NoAnswerError."""
        topic = f"{self._target.root}/request/{command}"
        body = dict(params or {})
        if sign_key is not None and command in SIGNED_COMMANDS:
            body = sign_request(sign_key, topic, body, counter or next_counter())
        self._counter += 1
        transaction = f"ctl-{self._nonce}-{self._counter}"
        correlation = os.urandom(16)
        properties = None
        if self.protocol == 5:
            listen = self._inbox
            properties = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
            properties.ResponseTopic = listen
            properties.CorrelationData = correlation
        else:
            listen = f"{self._target.root}/response/{command}"
        if listen not in self._subscribed:
            await self._client.subscribe(listen, qos=1)
            self._subscribed.add(listen)
        payload = json.dumps({"transaction": transaction, **body}).encode()
        await self._client.publish(topic, payload, qos=1, properties=properties)
        try:
            async with asyncio.timeout(wait_s):
                async for message in self._client.messages:
                    answer = _match(message, listen, transaction, correlation, self.protocol)
                    if answer is not None:
                        return answer
        except TimeoutError:
            raise NoAnswerError(
                f"no answer to {command!r} from hub {self._target.root} within {wait_s:g} s "
                f"(broker {self._target.host}:{self._target.port}); is the hub running and "
                f"connected? (its retained status: {self._target.root}/status)"
            ) from None
        raise NoAnswerError("the broker connection closed")

    async def watch(self, topics: list[str], wait_s: float) -> AsyncIterator[tuple[str, bytes]]:
        """Yield (topic, payload) of messages on ``topics`` (retained first) until closed."""
        for topic in topics:
            await self._client.subscribe(topic, qos=1)
        while True:
            try:
                async with asyncio.timeout(wait_s):
                    message = await anext(self._client.messages)
            except TimeoutError:
                raise NoAnswerError(
                    f"nothing on {', '.join(topics)} within {wait_s:g} s; is the hub running?"
                ) from None
            if isinstance(message.payload, bytes):
                yield str(message.topic), message.payload


def next_counter() -> int:
    """Return a signing counter above every earlier one from this clock: milliseconds since 1970."""
    return int(time.time() * 1000)


def _match(
    message: aiomqtt.Message, listen: str, transaction: str, correlation: bytes, protocol: int
) -> Answer | None:
    if str(message.topic) != listen or not isinstance(message.payload, bytes):
        return None
    if protocol == 5:
        echoed = getattr(message.properties, "CorrelationData", None)
        if echoed != correlation:
            return None
    try:
        body = json.loads(message.payload)
    except (UnicodeDecodeError, json.JSONDecodeError):
        return None
    if not isinstance(body, dict) or body.get("transaction") != transaction:
        return None
    return Answer(body)


@asynccontextmanager
async def connect(target: Target, wait_s: float) -> AsyncIterator[HubClient]:
    """Connect to the broker (MQTT 5, else 3.1.1 if the broker refuses 5) and yield a client."""
    protocols = [5, 4] if target.protocol == 5 else [4]
    for protocol in protocols:
        client = _client(target, protocol, wait_s)
        try:
            await client.__aenter__()
        except aiomqtt.MqttError as exc:
            if protocol == 5 and _code(exc) in _UNSUPPORTED_PROTOCOL:
                continue
            raise NoAnswerError(
                f"cannot connect to the broker {target.host}:{target.port}: {exc}"
            ) from None
        try:
            yield HubClient(client, target, protocol)
        finally:
            with suppress(aiomqtt.MqttError):
                await client.__aexit__(None, None, None)
        return
    raise NoAnswerError(f"the broker {target.host}:{target.port} speaks neither MQTT 5 nor 3.1.1")


def _code(exc: aiomqtt.MqttError) -> int | None:
    rc = getattr(exc, "rc", None)
    value = getattr(rc, "value", rc)
    return value if isinstance(value, int) else None


def _client(target: Target, protocol: int, timeout: float) -> aiomqtt.Client:
    tls = None
    if target.ca is not None:
        tls = aiomqtt.TLSParameters(
            ca_certs=str(target.ca),
            certfile=str(target.cert) if target.cert else None,
            keyfile=str(target.key) if target.key else None,
            tls_version=ssl.PROTOCOL_TLS_CLIENT,
        )
    return aiomqtt.Client(
        target.host,
        target.port,
        identifier=f"consentgate-ctl-{os.urandom(6).hex()}",
        username=target.username,
        password=target.password,
        tls_params=tls,
        protocol=aiomqtt.ProtocolVersion.V5 if protocol == 5 else aiomqtt.ProtocolVersion.V311,
        timeout=timeout,
        # A request follows the PUBACK of the previous answer: without this, Nagle holds it
        # until the broker's delayed ACK (40 ms and more per request).
        socket_options=[(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)],
    )
