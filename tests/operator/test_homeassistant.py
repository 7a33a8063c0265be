"""Home Assistant discovery against a real Mosquitto: payloads valid under the documented schema,
switches and the button driven by publishing to their command topics, nothing personal."""

from __future__ import annotations

import asyncio
import json
import re
from pathlib import Path
from typing import Any

import aiomqtt
import jinja2
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from gateway.consent.catalogue import FLAGS
from tests.operator.ha_schema import validate
from tests.support.hub import eventually, hub_config, running_hub
from tests.support.mosquitto import Mosquitto

_TEMPLATES = jinja2.Environment(autoescape=False)  # MQTT state text, not HTML


def render(template: str, payload: bytes) -> str:
    """Render a value_template as Home Assistant does: ``value`` and ``value_json``."""
    text = payload.decode()
    return _TEMPLATES.from_string(template).render(value=text, value_json=json.loads(text)).strip()


async def retained(port: int, topics: list[str], count: int) -> dict[str, bytes]:
    """Return the retained messages under ``topics`` once ``count`` have arrived."""
    found: dict[str, bytes] = {}
    async with aiomqtt.Client("127.0.0.1", port) as client:
        for topic in topics:
            await client.subscribe(topic, qos=1)
        async with asyncio.timeout(10):
            async for message in client.messages:
                assert isinstance(message.payload, bytes)
                found[str(message.topic)] = message.payload
                if len(found) >= count:
                    break
    return found


async def state_of(port: int, entity: dict[str, Any]) -> str:
    """Return the entity's state: its value_template over the retained state topic."""
    topic = entity["state_topic"]
    payload = (await retained(port, [topic], 1))[topic]
    return render(entity["value_template"], payload)


async def test_discovery_drives_consent(broker: Mosquitto, tmp_path: Path) -> None:
    hub_id = "ha-hub"
    config = hub_config(
        tmp_path,
        broker.port,
        hub_id,
        simulator={"devices": 2, "rate_hz": 5.0},
        homeassistant={"enabled": True, "discovery_prefix": "ha-test", "permit_join_s": 90},
    )
    expected = len(FLAGS) + 2 + 5  # flags, Try Now, permit join, five health entities
    async with running_hub(config) as hub:
        configs = await retained(
            broker.port, [f"ha-test/+/consentgate_{hub_id}/+/config"], expected
        )
        problems = [p for topic, body in configs.items() for p in validate(topic, json.loads(body))]
        assert problems == []
        entities = {topic.split("/")[3]: json.loads(body) for topic, body in configs.items()}
        assert {f"consent_{f}" for f in FLAGS} <= entities.keys()
        assert entities["clock"]["default_entity_id"] == "sensor.consentgate_ha_hub_clock"
        assert entities["clock"]["object_id"] == "consentgate_ha-hub_clock"  # before HA 2025.10
        text = b"".join(configs.values()).decode()
        for device in hub.simulated:  # no device pseudonym, let alone a MAC or a reading
            assert device not in text
        assert not re.search(r"([0-9A-Fa-f]{2}:){5}[0-9A-Fa-f]{2}", text)

        async with aiomqtt.Client("127.0.0.1", broker.port) as ha:
            health = entities["consent_health"]
            assert await state_of(broker.port, health) == "OFF"
            await ha.publish(health["command_topic"], health["payload_on"], qos=1)
            await eventually(lambda: hub.policy.flag("health") == "on", what="health switched on")
            await eventually_state(broker.port, health, "ON")
            await ha.publish(health["command_topic"], health["payload_off"], qos=1)
            await eventually(lambda: hub.policy.flag("health") == "off", what="health off")
            await eventually_state(broker.port, health, "OFF")
            telemetry = entities["consent_telemetry"]
            assert await state_of(broker.port, telemetry) == "ON"

            try_now = entities["try_now"]
            await ha.publish(try_now["command_topic"], try_now["payload_on"], qos=1)
            await eventually(lambda: hub.policy.try_now, what="Try Now on")
            await eventually_state(broker.port, try_now, "ON")
            await ha.publish(try_now["command_topic"], try_now["payload_off"], qos=1)
            await eventually_state(broker.port, try_now, "OFF")

            button = entities["permit_join"]
            await ha.subscribe(f"{hub.config.topic_root}/response/permit_join", qos=1)
            await ha.publish(button["command_topic"], button["payload_press"], qos=1)
            async with asyncio.timeout(10):
                async for message in ha.messages:
                    assert isinstance(message.payload, bytes)
                    answer = json.loads(message.payload)
                    break
            assert answer["status"] == "ok"
            assert answer["data"]["duration"] == 90

        events = [e.event for e in await hub.audit.tail(20)]
        assert events.count("consent.set") == 2  # the switches acted through the audited command
        assert events.count("consent.try_now") == 2

        assert await state_of(broker.port, entities["connected"]) == "ON"
        assert (await state_of(broker.port, entities["outbox_depth"])).isdigit()
        assert await state_of(broker.port, entities["devices_online"]) == "0"
        assert await state_of(broker.port, entities["clock"]) == hub.health()["clock"]
        storage = hub.health().get("storage")
        want = storage.get("state", "reported") if isinstance(storage, dict) else "unknown"
        assert await state_of(broker.port, entities["storage"]) == str(want)


async def eventually_state(port: int, entity: dict[str, Any], want: str) -> None:
    """Wait until the entity's state, read from its retained topic, is ``want``."""
    async with asyncio.timeout(10):
        while await state_of(port, entity) != want:
            await asyncio.sleep(0.05)


async def test_signed_consent_is_read_only(broker: Mosquitto, tmp_path: Path) -> None:
    key = Ed25519PrivateKey.generate().public_key().public_bytes_raw().hex()
    hub_id = "ha-signed"
    config = hub_config(
        tmp_path,
        broker.port,
        hub_id,
        commands={"signing_keys": [key]},
        homeassistant={"enabled": True},
    )
    async with running_hub(config):
        configs = await retained(
            broker.port, [f"homeassistant/+/consentgate_{hub_id}/+/config"], len(FLAGS) + 7
        )
    components = {t.split("/")[1] for t in configs if "/consent_" in t}
    assert components == {"binary_sensor"}  # Home Assistant cannot sign: no consent switches
    assert all(validate(t, json.loads(b)) == [] for t, b in configs.items())
