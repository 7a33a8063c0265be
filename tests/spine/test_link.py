"""The broker connection: every outage is retried from the shortest delay again, and a
connection lost mid-request is noticed at once, not after a PUBACK timeout."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import itertools
import threading
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import aiomqtt
import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from gateway.backoff import Backoff
from gateway.config import MqttConfig
from gateway.mqtt.link import Connection, MqttLink
from gateway.mqtt.topics import Topics
from tests.rights.helpers import mqtt_request
from tests.support.hub import eventually, hub_config, running_hub
from tests.support.mosquitto import Mosquitto


@dataclass(frozen=True, slots=True)
class CountingBackoff(Backoff):
    """A short fixed delay that records the position of every delay taken in its sequence."""

    taken: list[int] = field(default_factory=list)

    def delays(self) -> Iterator[float]:
        """Yield 20 ms forever, appending 0, 1, 2, ... to ``taken`` as each delay is used."""
        for position in itertools.count():
            self.taken.append(position)
            yield 0.02


@contextlib.asynccontextmanager
async def running(link: MqttLink) -> AsyncIterator[MqttLink]:
    """Run ``link`` until the block ends."""
    task = asyncio.create_task(link.run())
    try:
        yield link
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


def more_taken(backoff: CountingBackoff, count: int) -> bool:
    """Return whether ``backoff`` has handed out at least ``count`` delays."""
    return len(backoff.taken) >= count


def connected_more(link: MqttLink, times: int) -> bool:
    """Return whether ``link`` has connected more than ``times`` times."""
    return link.connects > times


def link_to(broker: Mosquitto, backoff: Backoff | None = None) -> MqttLink:
    """Return a link for hub ``link-test`` to ``broker``."""
    config = MqttConfig(port=broker.port)
    return MqttLink(config, Topics("consentgate/link-test"), "link-test", backoff)


async def test_each_outage_is_retried_from_the_first_delay_not_the_last_outages(
    own_broker: Mosquitto,
) -> None:
    backoff = CountingBackoff()
    async with running(link_to(own_broker, backoff)) as link:
        await link.connected.wait()
        for outage in range(1, 4):
            own_broker.kill9()
            # several refused attempts: the sequence advances meanwhile
            await eventually(functools.partial(more_taken, backoff, len(backoff.taken) + 3))
            own_broker.start()
            await eventually(functools.partial(connected_more, link, outage), timeout=15)
    # every outage (three) and nothing else started the sequence afresh
    assert backoff.taken.count(0) == 3
    assert max(backoff.taken) >= 2


async def test_a_publish_on_a_connection_lost_meanwhile_fails_as_lost_not_as_a_timeout(
    own_broker: Mosquitto,
) -> None:
    outcome: asyncio.Future[BaseException | None] = asyncio.get_running_loop().create_future()

    async def kill_broker_then_publish(connection: Connection) -> None:
        if outcome.done():
            return
        own_broker.kill9()
        try:
            await connection.publish("consentgate/link-test/health", b"{}", retain=True)
        except (aiomqtt.MqttError, TimeoutError) as exc:
            outcome.set_result(exc)
            raise
        outcome.set_result(None)

    link = link_to(own_broker)
    link.on_connect(kill_broker_then_publish)
    async with running(link):
        failure = await asyncio.wait_for(outcome, timeout=30)
    # a TimeoutError would mean the hub sat out PUBLISH_TIMEOUT_S before reconnecting
    assert isinstance(failure, aiomqtt.MqttError)


async def test_a_request_whose_response_topic_is_invalid_goes_unanswered_and_the_link_stays(
    own_broker: Mosquitto, tmp_path: Path
) -> None:
    config = hub_config(tmp_path, own_broker.port, "bad-response-topic")
    root = config.topic_root
    async with running_hub(config) as hub:
        await hub.link.connected.wait()
        connects = hub.link.connects
        props = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
        props.ResponseTopic = "answers/#"  # a wildcard: nobody may publish there
        async with aiomqtt.Client(
            "127.0.0.1", own_broker.port, protocol=aiomqtt.ProtocolVersion.V5
        ) as mqtt:
            body = b'{"transaction": "bad"}'
            await mqtt.publish(f"{root}/request/health", body, qos=1, properties=props)
        answer = await mqtt_request(own_broker.port, root, "health", {})
        assert answer["status"] == "ok"
        assert hub.link.connects == connects  # the connection was never dropped


async def test_a_loss_paho_reported_before_the_link_noticed_does_not_freeze_the_publisher(
    own_broker: Mosquitto, tmp_path: Path
) -> None:
    # paho sets Connection.lost from its on_disconnect; the link clears `connected` later, on
    # its own task. In between, the publisher must wait, not loop: a loop that never yields
    # keeps the link from ever noticing (the daemon froze, re-wrapping paho's PUBACK handler
    # on every turn until memory ran out).
    config = hub_config(tmp_path, own_broker.port, "publisher-loss-race")
    async with running_hub(config) as hub:
        await hub.link.connected.wait()
        connection = hub.link.connection
        assert connection is not None
        attaches: list[Connection] = []
        attach = hub.publisher._attach

        def counting(to: Connection) -> None:
            attaches.append(to)
            if attaches.count(to) > 1:
                raise RuntimeError("the publisher attached to the same connection twice")
            attach(to)

        hub.publisher._attach = counting  # type: ignore[method-assign,assignment]
        connection.lost.set()  # as paho's on_disconnect does; the link has not run yet
        turns = 0
        for _ in range(80):  # longer than the publisher's idle wait (IDLE_WAIT_S)
            await asyncio.sleep(0.01)
            turns += 1
        assert turns == 80  # the event loop kept running
        assert attaches == []  # nothing attached to the lost connection
        hub.link.drop()  # the link moves on: a new connection, attached once
        await eventually(lambda: len(attaches) == 1 and attaches[0] is not connection)


async def test_an_answer_is_on_the_wire_before_the_event_loop_runs_anything_else(
    own_broker: Mosquitto,
) -> None:
    """A withdrawal's answer is handed to the socket when it is sent, not at a later turn of
    the event loop: work the loop runs first (a purge of the queued rows) never delays it."""
    received = threading.Event()
    watcher = paho.Client(CallbackAPIVersion.VERSION2, client_id="link-test-watch")
    watcher.on_message = lambda *_: received.set()
    watcher.connect("127.0.0.1", own_broker.port)
    watcher.subscribe("consentgate/link-test/response/#", 1)
    watcher.loop_start()
    try:
        await asyncio.sleep(0.3)  # subscribed
        async with running(link_to(own_broker)) as link:
            await link.connected.wait()
            connection = link.connection
            assert connection is not None
            connection.send("consentgate/link-test/response/consent/set", b"{}")
            # the event loop is held here: nothing of its own runs until the answer has arrived
            assert received.wait(2.0)
    finally:
        watcher.loop_stop()
        watcher.disconnect()
