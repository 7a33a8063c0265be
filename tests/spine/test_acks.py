"""The outbox's PUBACK fast path: the same outcome as paho's own handling, for our packets only."""

from __future__ import annotations

import gc
import threading
import warnings
import weakref
from typing import Any

import paho.mqtt.client as paho
import pytest
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion

from gateway.mqtt.acks import FAILURE, take_pubacks
from gateway.mqtt.paho_private import take_buffered_pubacks
from tests.support.mosquitto import Mosquitto


@pytest.mark.parametrize("protocol", [MQTTProtocolVersion.MQTTv311, MQTTProtocolVersion.MQTTv5])
def test_our_pubacks_reach_on_ack_and_others_still_reach_on_publish(
    own_broker: Mosquitto, protocol: MQTTProtocolVersion
) -> None:
    ours: set[int] = set()
    acked: list[tuple[int, int]] = []
    decoded_by_paho: list[int] = []
    all_in = threading.Event()

    def on_publish(c: paho.Client, userdata: Any, mid: int, reason: Any, props: Any) -> None:
        decoded_by_paho.append(mid)
        if len(decoded_by_paho) + len(acked) == 40:
            all_in.set()

    def on_ack(mid: int, reason: int) -> None:
        acked.append((mid, reason))
        if len(decoded_by_paho) + len(acked) == 40:
            all_in.set()

    client = paho.Client(CallbackAPIVersion.VERSION2, client_id="acks", protocol=protocol)
    client.max_inflight_messages_set(0)
    client.on_publish = on_publish
    take_pubacks(client, ours.__contains__, on_ack)
    client.connect("127.0.0.1", own_broker.port)
    infos = []
    for n in range(40):
        info = client.publish(f"acks/{n}", b"x", qos=1)
        if n % 2 == 0:
            ours.add(info.mid)
        infos.append(info)
    client.loop_start()
    try:
        assert all_in.wait(10)
    finally:
        client.disconnect()
        client.loop_stop()
    assert sorted(mid for mid, _ in acked) == sorted(ours)
    # 0x00 success, or 0x10 (MQTT 5: no matching subscribers), also a success
    assert all(reason < FAILURE for _, reason in acked)
    assert sorted(decoded_by_paho) == sorted(i.mid for i in infos if i.mid not in ours)
    # paho's own bookkeeping is done for every message, whoever handled the PUBACK
    assert all(info.is_published() for info in infos)
    assert client._out_messages == {}


def _puback(mid: int, *rest: int) -> bytes:
    return bytes((0x40, 2 + len(rest), mid >> 8, mid & 0xFF, *rest))


def _buffered_client(ours: set[int], acked: list[tuple[int, int]]) -> paho.Client:
    client = paho.Client(
        CallbackAPIVersion.VERSION2, client_id="buffered", protocol=MQTTProtocolVersion.MQTTv5
    )
    take_pubacks(client, ours.__contains__, lambda mid, reason: acked.append((mid, reason)))
    return client


def test_a_run_of_pubacks_is_taken_up_to_the_first_that_is_not_plainly_ours() -> None:
    acked: list[tuple[int, int]] = []
    client = _buffered_client({1, 2, 3, 4}, acked)
    client._last_bytes_received = 0.0
    with_properties = bytes((0x40, 4, 0, 3, 0x00, 0x00))  # reason and an empty property list
    data = bytearray(_puback(1) + _puback(2, 0x87) + with_properties + _puback(4))

    assert take_buffered_pubacks(client, data) == 2
    assert acked == [(1, 0x00), (2, 0x87)]  # a refusal's reason is handed on as it is
    assert data == with_properties + _puback(4)  # paho reads on from there
    assert client._last_bytes_received > 0  # heard from the broker, for paho's keep-alive


def test_a_puback_cut_by_the_end_of_the_buffer_is_left_to_paho() -> None:
    acked: list[tuple[int, int]] = []
    client = _buffered_client({1, 2}, acked)
    data = bytearray(_puback(1) + _puback(2)[:3])
    assert take_buffered_pubacks(client, data) == 1
    assert data == _puback(2)[:3]


def test_nothing_is_taken_while_paho_is_inside_a_packet_or_for_messages_it_sent() -> None:
    acked: list[tuple[int, int]] = []
    client = _buffered_client({1, 2}, acked)
    client._in_packet["command"] = 0x30  # paho has read a PUBLISH's first byte
    assert take_buffered_pubacks(client, bytearray(_puback(1))) == 0
    client._in_packet["command"] = 0
    client._out_messages[2] = paho.MQTTMessage(
        mid=2
    )  # sent through paho: its bookkeeping is paho's
    assert take_buffered_pubacks(client, bytearray(_puback(2))) == 0
    assert take_buffered_pubacks(client, bytearray(_puback(9))) == 0  # not the publisher's
    assert acked == []


def test_what_was_handled_leaves_the_buffer_even_when_a_handler_raises() -> None:
    def on_ack(mid: int, reason: int) -> None:
        if mid == 2:
            raise RuntimeError("handler failed")

    client = paho.Client(CallbackAPIVersion.VERSION2, client_id="raising")
    take_pubacks(client, {1, 2}.__contains__, on_ack)
    data = bytearray(_puback(1) + _puback(2))
    with pytest.raises(RuntimeError):
        take_buffered_pubacks(client, data)
    assert data == _puback(2)


def test_a_client_the_publisher_took_pubacks_from_is_not_kept_alive_by_it() -> None:
    client = _buffered_client({1}, [])
    gone = weakref.ref(client)
    del client
    with warnings.catch_warnings():  # earlier tests' paho clients leave their wake-up sockets
        warnings.simplefilter("ignore", ResourceWarning)  # to the collector
        gc.collect()
    assert gone() is None  # a reconnect's old client (and its buffers) can be freed
