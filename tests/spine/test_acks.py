"""The outbox's PUBACK fast path: the same outcome as paho's own handling, for our packets only."""

from __future__ import annotations

import threading
from typing import Any

import paho.mqtt.client as paho
import pytest
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion

from gateway.mqtt.acks import FAILURE, take_pubacks
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
