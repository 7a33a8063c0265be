"""The hub's two broker connections against a real Mosquitto: a request sent the instant the
hub says it is online is answered (on either link), a privacy-critical request that reaches
both links is run and answered once, and the request decoder reads what paho would."""

from __future__ import annotations

import asyncio
import json
import threading
from pathlib import Path
from typing import Any

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from gateway.mqtt.connection import encode_publish
from gateway.mqtt.link import MqttLink
from gateway.mqtt.reads import parse_publish
from tests.support.hub import eventually, hub_config, running_hub
from tests.support.mosquitto import Mosquitto

REPLY = "eager/reply"


class Eager:
    """A client that sends its requests from paho's thread the moment it sees ``online``."""

    def __init__(self, port: int, root: str, requests: dict[str, dict[str, Any]]) -> None:
        self.answers: dict[str, dict[str, Any]] = {}
        self.sent = threading.Event()
        self._root = root
        self._requests = requests
        self.client = paho.Client(
            CallbackAPIVersion.VERSION2, client_id="eager", protocol=paho.MQTTv5
        )
        self.client.on_message = self._on_message
        self.client.connect("127.0.0.1", port)
        self.client.subscribe([(f"{root}/status", 1), (REPLY, 1)])
        self.client.loop_start()

    def _on_message(self, client: paho.Client, _u: Any, message: paho.MQTTMessage) -> None:
        if message.topic == REPLY:
            body = json.loads(message.payload)
            self.answers[body["transaction"]] = body
        elif message.payload == b"online" and not self.sent.is_set():
            self.sent.set()
            props = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
            props.ResponseTopic = REPLY
            for command, body in self._requests.items():
                client.publish(
                    f"{self._root}/request/{command}", json.dumps(body), 1, properties=props
                )

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


async def test_a_request_sent_the_instant_the_hub_is_online_is_answered(
    own_broker: Mosquitto, tmp_path: Path
) -> None:
    config = hub_config(tmp_path, own_broker.port, "eager")
    requests = {
        "health": {"transaction": "h"},
        "devices": {"transaction": "d"},
        "consent/set": {"transaction": "c", "flag": "health", "state": "coarse"},
    }
    eager = await asyncio.to_thread(Eager, own_broker.port, config.topic_root, requests)
    try:
        await asyncio.sleep(0.2)  # its subscriptions are in place before the hub starts
        async with running_hub(config):
            await eventually(eager.sent.is_set, timeout=10, what="online seen")
            await eventually(lambda: len(eager.answers) == 3, timeout=10, what="all answered")
    finally:
        eager.close()
    assert {key: body["status"] for key, body in eager.answers.items()} == {
        "h": "ok",
        "d": "ok",
        "c": "ok",
    }


async def test_every_request_the_hub_takes_while_it_connects_is_answered(
    own_broker: Mosquitto, tmp_path: Path
) -> None:
    # a client (say, one that saw a stale retained "online") asks every millisecond while the
    # hub connects: whatever reaches the hub, from its first instant on, gets an answer
    config = hub_config(tmp_path, own_broker.port, "hammer")
    eager = await asyncio.to_thread(Eager, own_broker.port, config.topic_root, {})
    stop = threading.Event()
    props = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
    props.ResponseTopic = REPLY

    def hammer() -> None:
        n = 0
        while not stop.wait(0.001):
            body = json.dumps({"transaction": f"t{n}"})
            eager.client.publish(f"{config.topic_root}/request/health", body, 1, properties=props)
            n += 1

    sender = threading.Thread(target=hammer)
    try:
        await asyncio.sleep(0.2)
        sender.start()
        async with running_hub(config) as hub:
            await eventually(eager.sent.is_set, timeout=10, what="online seen")
            await asyncio.sleep(0.1)
            stop.set()
            await asyncio.to_thread(sender.join)
            received = hub.counters.get
            await eventually(
                lambda: len(eager.answers) >= received("requests.received") > 0,
                timeout=10,
                what="every request taken answered",
            )
    finally:
        stop.set()
        eager.close()
    assert len(eager.answers) == hub.counters.get("requests.received")


async def test_a_critical_request_on_both_links_is_run_and_answered_once(
    broker: Mosquitto, tmp_path: Path
) -> None:
    config = hub_config(tmp_path, broker.port, "twolinks")
    answers: list[dict[str, Any]] = []
    async with running_hub(config) as hub:
        control = hub.loops["mqtt-control"].__self__  # type: ignore[attr-defined]
        assert isinstance(control, MqttLink)
        await hub.link.connected.wait()
        await control.connected.wait()
        client = paho.Client(CallbackAPIVersion.VERSION2, client_id="once", protocol=paho.MQTTv5)
        client.on_message = lambda _c, _u, m: answers.append(json.loads(m.payload))
        await asyncio.to_thread(client.connect, "127.0.0.1", broker.port)
        client.subscribe(REPLY, 1)
        client.loop_start()
        try:
            await asyncio.sleep(0.2)
            props = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
            props.ResponseTopic = REPLY
            props.CorrelationData = b"corr-1"
            body = {"transaction": "once", "flag": "telemetry", "state": "off"}
            client.publish(
                f"{config.topic_root}/request/consent/set", json.dumps(body), 1, properties=props
            )
            await eventually(
                lambda: hub.counters.get("requests.copies") == 1, timeout=10, what="both copies"
            )
            await asyncio.sleep(0.3)  # a second answer would have arrived by now
        finally:
            client.disconnect()
            client.loop_stop()
        entries = await hub.audit.tail(50)
    assert [a["transaction"] for a in answers] == ["once"]
    assert answers[0]["status"] == "ok"
    assert hub.counters.get("requests.received") == 1
    assert [e.event for e in entries].count("consent.set") == 1


def test_the_request_decoder_reads_what_the_encoder_wrote() -> None:
    packet = encode_publish("hub/request/x", b'{"a":1}', b"\x00\xffcorr", v5=True)
    assert packet[0] == 0x30
    body = packet[2:]  # one-byte remaining length for a packet this small
    assert packet[1] == len(body)
    assert parse_publish(body, 0, True) == ("hub/request/x", 0, None, b"\x00\xffcorr", b'{"a":1}')
    plain = encode_publish("t", b"p", None, v5=False)
    assert parse_publish(plain[2:], 0, False) == ("t", 0, None, None, b"p")


def test_the_request_decoder_leaves_what_it_does_not_know_to_paho() -> None:
    topic = b"\x00\x01t"
    response = b"\x08\x00\x03a/b"
    alias = b"\x23\x00\x05"  # topic alias: paho's business
    assert parse_publish(topic + b"\x00\x07" + bytes([len(response)]) + response + b"x", 1, True)
    assert parse_publish(topic + b"\x00\x07" + b"\x03" + alias + b"x", 1, True) is None
    assert parse_publish(topic + b"\x00\x07" + b"\x05" + response, 1, True) is None  # cut short
    assert parse_publish(b"\x00\x09t", 0, False) is None  # topic longer than the packet
    bad_topic = b"\x00\x02\xff\xfe" + b"\x00" + b"p"
    assert parse_publish(bad_topic, 0, True) == (None, 0, None, None, b"p")


async def test_the_main_link_reads_nothing_while_a_critical_request_runs(
    broker: Mosquitto, tmp_path: Path
) -> None:
    config = hub_config(tmp_path, broker.port, "held")
    async with running_hub(config) as hub:
        await hub.link.connected.wait()
        client = paho.Client(CallbackAPIVersion.VERSION2, client_id="held", protocol=paho.MQTTv5)
        await asyncio.to_thread(client.connect, "127.0.0.1", broker.port)
        client.loop_start()
        try:
            hub.router.quiet.clear()  # as the intake does while a critical request runs
            for n in range(3):  # the first is read (it finds the event clear), the rest wait
                body = json.dumps({"transaction": f"h{n}"})
                client.publish(f"{config.topic_root}/request/health", body, 1)
                await asyncio.sleep(0.1)
            assert hub.counters.get("requests.received") <= 1
            hub.router.quiet.set()
            await eventually(
                lambda: hub.counters.get("requests.received") == 3, timeout=5, what="read"
            )
        finally:
            hub.router.quiet.set()
            client.disconnect()
            client.loop_stop()
