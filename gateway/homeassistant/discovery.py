"""Home Assistant MQTT discovery messages for the hub: controls and health, nothing personal.

Home Assistant's MQTT integration creates an entity for every retained JSON config published on
``<discovery_prefix>/<component>/<node_id>/<object_id>/config`` (Home Assistant docs, "MQTT
Discovery"). The hub appears as one device with:

- a switch per consent flag and for Try Now, whose command topic is the hub's own request
  topic (``consent/set``, ``try_now``) and whose ``payload_on``/``payload_off`` are the request
  bodies: a switch acts through the same command, audited and acknowledged durably like any
  other; its state comes from the retained ``consent`` topic (``coarse`` shows as on: something
  is still collected). With signed commands configured, Home Assistant cannot sign: the consent
  flags are then read-only binary sensors;
- a button that opens the pairing window (``permit_join``);
- health sensors read from the retained ``health`` topic: broker connection, outbox depth,
  devices online, clock and storage (the last two shown only by hubs that report them).

Each entity's id is ``<component>.consentgate_<hub_id>_<object_id>``, given as
``default_entity_id`` (Home Assistant 2025.10 and later; lower case, ``-`` as ``_``, as Home
Assistant's entity ids demand) and as the deprecated ``object_id`` (earlier versions, which
make the same id of it). Every entity is unavailable while the hub's retained ``status`` is
``offline``. Only the hub id
appears in these messages: no device id, name, address or reading, and records stay sealed.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Final

from gateway import __version__
from gateway.config import HomeAssistantConfig
from gateway.consent.catalogue import FLAGS
from gateway.mqtt.topics import Topics

_ON: Final = "ON"
_OFF: Final = "OFF"
_NOT_SLUG: Final = re.compile(r"[^a-z0-9]+")


@dataclass(frozen=True, slots=True)
class DiscoveryMessage:
    """One retained discovery config: its topic and JSON body."""

    topic: str
    config: dict[str, Any]

    def encode(self) -> bytes:
        """Return the config as compact JSON."""
        return json.dumps(self.config, separators=(",", ":"), sort_keys=True).encode()


def entity_slug(text: str) -> str:
    """Return ``text`` as the object part of an entity id: lower case, runs of others as ``_``."""
    return _NOT_SLUG.sub("_", text.lower()).strip("_")


def node_id(hub_id: str) -> str:
    """Return the discovery node id of the hub (also its device identifier)."""
    return f"consentgate_{hub_id}"


def discovery_messages(
    config: HomeAssistantConfig, hub_id: str, topics: Topics, *, signed_consent: bool
) -> list[DiscoveryMessage]:
    """Return every discovery config of the hub (``signed_consent``: flags are read-only)."""
    node = node_id(hub_id)
    device = {
        "identifiers": [node],
        "name": f"consentgate {hub_id}",
        "manufacturer": "consentgate",
        "model": "privacy hub",
        "sw_version": __version__,
    }
    common = {
        "availability_topic": topics.status,
        "payload_available": "online",
        "payload_not_available": "offline",
        "device": device,
        "origin": {"name": "consentgate", "sw_version": __version__},
    }
    messages = []
    for component, object_id, entity in _entities(config, topics, signed_consent):
        body = {
            **common,
            **entity,
            "unique_id": f"{node}_{object_id}",
            # default_entity_id (Home Assistant 2025.10 on) names the entity in full; object_id,
            # deprecated then and dropped in 2026.4, still names it for older versions.
            "default_entity_id": f"{component}.{entity_slug(f'{node}_{object_id}')}",
            "object_id": f"{node}_{object_id}",
        }
        topic = f"{config.discovery_prefix}/{component}/{node}/{object_id}/config"
        messages.append(DiscoveryMessage(topic, body))
    return messages


def _entities(
    config: HomeAssistantConfig, topics: Topics, signed_consent: bool
) -> Iterator[tuple[str, str, dict[str, Any]]]:
    for flag in FLAGS:
        state = {
            "name": f"Consent: {flag.replace('_', ' ')}",
            "state_topic": topics.consent,
            "value_template": (
                f"{{{{ '{_ON}' if value_json.flags.{flag} | default('off') != 'off' "
                f"else '{_OFF}' }}}}"
            ),
            "icon": "mdi:shield-account",
        }
        if signed_consent:
            yield (
                "binary_sensor",
                f"consent_{flag}",
                {**state, "payload_on": _ON, "payload_off": _OFF},
            )
        else:
            yield (
                "switch",
                f"consent_{flag}",
                {
                    **state,
                    **_command(topics, "consent/set"),
                    "payload_on": _body(flag=flag, state="on"),
                    "payload_off": _body(flag=flag, state="off"),
                    "state_on": _ON,
                    "state_off": _OFF,
                    "optimistic": False,
                },
            )
    yield (
        "switch",
        "try_now",
        {
            "name": "Try Now mode",
            **_command(topics, "try_now"),
            "payload_on": _body(enabled=True),
            "payload_off": _body(enabled=False),
            "state_topic": topics.consent,
            "value_template": f"{{{{ '{_ON}' if value_json.try_now else '{_OFF}' }}}}",
            "state_on": _ON,
            "state_off": _OFF,
            "optimistic": False,
            "icon": "mdi:test-tube",
        },
    )
    yield (
        "button",
        "permit_join",
        {
            "name": f"Permit join ({config.permit_join_s} s)",
            **_command(topics, "permit_join"),
            "payload_press": _body(duration=config.permit_join_s),
            "icon": "mdi:link-plus",
        },
    )
    yield from _health(topics)


def _health(topics: Topics) -> Iterator[tuple[str, str, dict[str, Any]]]:
    diagnostic = {"state_topic": topics.health, "entity_category": "diagnostic"}
    yield (
        "binary_sensor",
        "connected",
        {
            **diagnostic,
            "name": "Broker connection",
            "device_class": "connectivity",
            "value_template": f"{{{{ '{_ON}' if value_json.connected else '{_OFF}' }}}}",
            "payload_on": _ON,
            "payload_off": _OFF,
        },
    )
    yield (
        "sensor",
        "outbox_depth",
        {
            **diagnostic,
            "name": "Outbox depth",
            "value_template": "{{ value_json.outbox.rows }}",
            "unit_of_measurement": "records",
            "state_class": "measurement",
            "icon": "mdi:tray-full",
        },
    )
    yield (
        "sensor",
        "devices_online",
        {
            **diagnostic,
            "name": "Devices online",
            "value_template": "{{ value_json.devices.online | default(0) }}",
            "unit_of_measurement": "devices",
            "state_class": "measurement",
            "icon": "mdi:devices",
        },
    )
    for field in ("clock", "storage"):  # reported by hubs that check them; else "unknown"
        yield (
            "sensor",
            field,
            {
                **diagnostic,
                "name": field.capitalize(),
                "value_template": (
                    f"{{% if value_json.{field} is mapping %}}"
                    f"{{{{ value_json.{field}.state | default(value_json.{field}.status "
                    f"| default('reported')) }}}}"
                    f"{{% elif value_json.{field} is defined %}}{{{{ value_json.{field} }}}}"
                    "{% else %}unknown{% endif %}"
                ),
                "icon": "mdi:clock-check" if field == "clock" else "mdi:database-check",
            },
        )


def _command(topics: Topics, command: str) -> dict[str, Any]:
    return {"command_topic": topics.request(command), "qos": 1, "retain": False}


def _body(**params: object) -> str:
    return json.dumps(params, separators=(",", ":"), sort_keys=True)
