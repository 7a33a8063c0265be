"""Chunked socket reads under paho: every packet the broker sent is handled, none waits in the
buffer for the socket to become readable again."""

from __future__ import annotations

import time
from collections.abc import Callable

import paho.mqtt.client as paho
import pytest
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode, MQTTProtocolVersion

from gateway.mqtt.acks import take_pubacks
from gateway.mqtt.reads import buffer_reads
from gateway.mqtt.writes import BurstWriter
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


@pytest.mark.parametrize("protocol", [MQTTProtocolVersion.MQTTv311, MQTTProtocolVersion.MQTTv5])
def test_a_run_of_pubacks_in_the_buffer_is_taken_without_paho_each_acknowledged_once(
    own_broker: Mosquitto, protocol: MQTTProtocolVersion
) -> None:
    client = paho.Client(CallbackAPIVersion.VERSION2, client_id="bulk", protocol=protocol)
    client.max_inflight_messages_set(0)
    packets_paho_read: list[int] = []
    paho_read = client._packet_read

    def counted() -> MQTTErrorCode:
        packets_paho_read.append(1)
        return paho_read()

    client._packet_read = counted  # type: ignore[method-assign]
    buffer_reads(client)
    ours: set[int] = set()
    acked: list[int] = []
    paho_acked: list[int] = []
    client.on_publish = lambda c, u, mid, reason, props: paho_acked.append(mid)
    take_pubacks(client, ours.__contains__, lambda mid, reason: acked.append(mid))
    client.connect("127.0.0.1", own_broker.port)
    _read_until(client, client.is_connected, 5)

    own = client.publish("bulk/paho", b"p", qos=1)  # paho's own message, in the middle
    writer = BurstWriter(client)
    for n in range(200):
        ours.add(writer.add(f"bulk/{n}", b"x", retain=False))
        if n == 100:
            assert writer.flush()
            client.loop_write()
    assert writer.flush()
    time.sleep(0.5)  # every PUBACK is in the socket before the first read
    packets_paho_read.clear()
    _read_until(client, lambda: len(acked) == 200 and bool(paho_acked), 5)

    assert sorted(acked) == sorted(ours)  # each of ours once
    assert paho_acked == [own.mid]  # paho's own message through paho
    assert own.is_published()
    assert client._out_messages == {}
    assert len(packets_paho_read) < 20, len(packets_paho_read)  # not one paho read per PUBACK
    client.disconnect()
