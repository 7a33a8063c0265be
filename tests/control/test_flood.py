"""A flood of 10,000 mixed bad requests against a real hub on a real Mosquitto: the hub stays
up, every request whose transaction is readable gets it echoed, a withdrawal sent in the middle
is applied and answered, the incoming work stays bounded, and nothing a client sent reaches the
log (no traceback, no unknown command name)."""

from __future__ import annotations

import asyncio
import json
import logging
from pathlib import Path
from typing import Any

import paho.mqtt.client as paho
import pytest
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from bench.flood_requests import REPLY_ROOT, flood, send_flood
from gateway.commands.intake import Intake
from tests.support.hub import eventually, hub_config, running_hub
from tests.support.mosquitto import Mosquitto

FLOOD = 10_000


def flood_client(port: int, name: str = "flooder") -> paho.Client:
    """A connected MQTT 5 paho client with its network loop in a thread."""
    client = paho.Client(CallbackAPIVersion.VERSION2, client_id=name, protocol=paho.MQTTv5)
    client.max_queued_messages_set(0)
    client.connect("127.0.0.1", port)
    client.loop_start()
    return client


class Checker:
    """Collects every answer (paho in its own thread: a Python asyncio subscriber would take
    longer to read 10,000 answers than the hub takes to send them)."""

    def __init__(self, port: int, root: str, loop: asyncio.AbstractEventLoop) -> None:
        self.answers: dict[str, dict[str, Any]] = {}
        self.withdrawal: asyncio.Future[dict[str, Any]] = loop.create_future()
        self._loop = loop
        self.client = flood_client(port, "checker")
        self.client.on_message = self._on_message
        for topic in (f"{root}/response/#", f"{REPLY_ROOT}/#", "withdrawer/reply"):
            self.client.subscribe(topic, qos=0)

    def _on_message(self, _c: paho.Client, _u: Any, message: paho.MQTTMessage) -> None:
        body = json.loads(message.payload)
        if message.topic == "withdrawer/reply":
            self._loop.call_soon_threadsafe(self.withdrawal.set_result, body)
        elif isinstance(body.get("transaction"), str):
            self.answers[body["transaction"]] = body


async def test_a_withdrawal_in_a_flood_is_applied_and_every_readable_transaction_echoed(
    roomy_broker: Mosquitto, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    config = hub_config(tmp_path, roomy_broker.port, "flood")
    root = config.topic_root
    requests = flood(root, FLOOD)
    expected = {r.transaction for r in requests if r.transaction is not None}
    assert len(expected) > FLOOD * 0.8  # random bytes are the only unreadable kind
    async with running_hub(config) as hub:
        await hub.link.connected.wait()
        intake = hub.loops["requests"].__self__  # type: ignore[attr-defined]
        assert isinstance(intake, Intake)
        checker = await asyncio.to_thread(
            Checker, roomy_broker.port, root, asyncio.get_running_loop()
        )
        await asyncio.sleep(0.2)  # its subscriptions are granted
        answers = checker.answers
        waiting: list[int] = []

        async def watch() -> None:
            while True:
                waiting.append(intake.waiting)
                await asyncio.sleep(0.005)

        watcher = asyncio.create_task(watch())
        client = await asyncio.to_thread(flood_client, roomy_broker.port)
        try:
            half = FLOOD // 2
            await asyncio.to_thread(send_flood, client, root, requests[:half])
            props = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
            props.ResponseTopic = "withdrawer/reply"
            body = json.dumps({"transaction": "w", "flag": "telemetry", "state": "off"})
            client.publish(f"{root}/request/consent/set", body, qos=1, properties=props)
            await asyncio.to_thread(send_flood, client, root, requests[half:])
            answer = await asyncio.wait_for(checker.withdrawal, timeout=30)
            await eventually(lambda: expected <= answers.keys(), timeout=60, what="all echoed")
        finally:
            for each in (client, checker.client):
                each.disconnect()
                each.loop_stop()
            watcher.cancel()
        assert answer["status"] == "ok", answer
        assert answer["transaction"] == "w"
        flags = hub.policy.snapshot()["flags"]
        assert isinstance(flags, dict)
        assert flags["telemetry"] == "off"
        codes = {body["error"]["code"] for body in answers.values()}
        assert "internal" not in codes
        assert codes <= {"busy", "invalid_request", "invalid_json", "unknown_command", "not_found"}
        limits = intake.limits
        assert max(waiting) <= limits.queue + limits.critical_queue
        counters = hub.counters.snapshot()
        assert counters["requests.received"] >= FLOOD
        assert counters["commands.unknown"] > 0
        connection = hub.link.connection
        assert connection is not None
        assert len(connection.client.messages) == 0  # aiomqtt's queue is never used
    for record in caplog.records:
        assert record.exc_info is None, record.getMessage()
        text = repr(record.__dict__)
        assert "nope/" not in text  # unknown command names are counted, never logged
        assert "AA:BB:CC:DD:EE:FF" not in text
