"""Chunked socket reads under paho: every packet the broker sent is handled, none waits in the
buffer for the socket to become readable again."""

from __future__ import annotations

import time
from collections.abc import Callable

import paho.mqtt.client as paho
import pytest
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion

from gateway.mqtt.reads import buffer_reads
from tests.support.mosquitto import Mosquitto


def _retain(port: int, topics: list[str]) -> None:
    setter = paho.Client(CallbackAPIVersion.VERSION2, client_id="setter")
    setter.connect("127.0.0.1", port)
    setter.loop_start()
    try:
        for topic in topics:
            setter.publish(topic, topic.encode(), qos=1, retain=True).wait_for_publish(5)
    finally:
        setter.disconnect()
        setter.loop_stop()


def _read_until(client: paho.Client, done: Callable[[], bool], seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while not done() and time.monotonic() < deadline:
        client.loop_read()
        time.sleep(0.01)


@pytest.mark.parametrize("protocol", [MQTTProtocolVersion.MQTTv311, MQTTProtocolVersion.MQTTv5])
def test_one_read_handles_every_packet_already_received(
    own_broker: Mosquitto, protocol: MQTTProtocolVersion
) -> None:
    topics = [f"reads/{n}" for n in range(5)]
    _retain(own_broker.port, topics)
    received: list[str] = []
    subscribed: list[int] = []
    client = paho.Client(CallbackAPIVersion.VERSION2, client_id="reads", protocol=protocol)
    client.on_message = lambda c, u, message: received.append(message.topic)
    client.on_subscribe = lambda c, u, mid, reasons, props: subscribed.append(mid)
    buffer_reads(client)
    client.connect("127.0.0.1", own_broker.port)
    _read_until(client, client.is_connected, 5)
    client.subscribe("reads/#", qos=0)
    client.loop_write()
    time.sleep(0.5)  # SUBACK and the five retained messages are in the socket before the read

    # Nothing is in flight, so paho's loop_read handles one packet per call; the rest of the
    # chunk would wait in the buffer, where a readiness-driven loop never looks.
    client.loop_read()

    assert subscribed
    assert sorted(received) == topics
    client.disconnect()


def test_a_closed_socket_still_reads_as_lost(own_broker: Mosquitto) -> None:
    client = paho.Client(CallbackAPIVersion.VERSION2, client_id="closing")
    buffer_reads(client)
    client.connect("127.0.0.1", own_broker.port)
    _read_until(client, client.is_connected, 5)
    # A second client with the same id makes the broker close the first one's socket.
    usurper = paho.Client(CallbackAPIVersion.VERSION2, client_id="closing")
    usurper.connect("127.0.0.1", own_broker.port)
    usurper.loop_start()
    try:
        time.sleep(0.5)
        assert client.loop_read() == paho.MQTT_ERR_CONN_LOST
    finally:
        usurper.disconnect()
        usurper.loop_stop()
