"""``ctl`` against a broker that speaks only MQTT 3.1.1 (amqtt): it falls back by itself."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from gateway.demo.broker import EmbeddedBroker
from tests.operator.helpers import ctl
from tests.support.hub import eventually, hub_config, running_hub

pytest.importorskip("amqtt")


async def test_ctl_falls_back_to_mqtt_3_1_1(tmp_path: Path) -> None:
    broker = await EmbeddedBroker().start()
    try:
        hub_id = "ctl-legacy"
        config = hub_config(tmp_path, broker.port, hub_id, mqtt={"protocol": 4})
        async with running_hub(config) as hub:
            # a request in the link's first instants can go unanswered (its connection is
            # published only after the status); an operator would simply retry
            await eventually(hub.link.connected.is_set, what="hub connected")
            # amqtt answers an MQTT 5 CONNECT with "unsupported protocol version": without the
            # fallback this would exit 3 (no broker).
            run = await ctl(broker.port, hub_id, "consent", "set", "health", "on", "--json")
            assert run.code == 0, run.err
            assert json.loads(run.out)["version"] == hub.policy.version
            assert hub.policy.flag("health") == "on"
    finally:
        await broker.stop()
