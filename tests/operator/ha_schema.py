"""Home Assistant's documented MQTT discovery schema for the components the hub uses.

From the Home Assistant documentation (integrations/mqtt, switch.mqtt, button.mqtt,
sensor.mqtt, binary_sensor.mqtt, as of 2024-2025): the options each component accepts, which
are required, their types and allowed values. Unknown options make Home Assistant reject a
discovery payload, so any key outside these lists is a failure here too. ``object_id`` is
deprecated since Home Assistant 2025.10 and removed in 2026.4: a payload must name its entity
with ``default_entity_id`` (``<component>.<id>``, ``<id>`` of ``[a-z0-9_]``), and may keep
``object_id`` for older versions (which Home Assistant turns into the same ``<id>``).
"""

from __future__ import annotations

import re
from typing import Any, Final

_COMMON: Final = {
    "availability_topic": str,
    "payload_available": str,
    "payload_not_available": str,
    "device": dict,
    "origin": dict,
    "enabled_by_default": bool,
    "entity_category": str,
    "icon": str,
    "json_attributes_topic": str,
    "name": str,
    "object_id": str,
    "default_entity_id": str,
    "qos": int,
    "unique_id": str,
    "encoding": str,
    "entity_picture": str,
    "availability_mode": str,
    "availability_template": str,
}
_STATEFUL: Final = {"state_topic": str, "value_template": str}
SCHEMAS: Final[dict[str, dict[str, Any]]] = {
    "switch": {
        **_COMMON,
        **_STATEFUL,
        "command_topic": str,
        "command_template": str,
        "payload_on": str,
        "payload_off": str,
        "state_on": str,
        "state_off": str,
        "optimistic": bool,
        "retain": bool,
        "device_class": str,
    },
    "button": {
        **_COMMON,
        "command_topic": str,
        "command_template": str,
        "payload_press": str,
        "retain": bool,
        "device_class": str,
    },
    "sensor": {
        **_COMMON,
        **_STATEFUL,
        "device_class": str,
        "expire_after": int,
        "force_update": bool,
        "last_reset_value_template": str,
        "state_class": str,
        "unit_of_measurement": str,
        "suggested_display_precision": int,
    },
    "binary_sensor": {
        **_COMMON,
        **_STATEFUL,
        "device_class": str,
        "expire_after": int,
        "force_update": bool,
        "off_delay": int,
        "payload_on": str,
        "payload_off": str,
    },
}
REQUIRED: Final = {
    "switch": {"command_topic"},
    "button": {"command_topic"},
    "sensor": {"state_topic"},
    "binary_sensor": {"state_topic"},
}
_DEVICE: Final = {
    "identifiers": list,
    "connections": list,
    "name": str,
    "manufacturer": str,
    "model": str,
    "sw_version": str,
    "hw_version": str,
    "configuration_url": str,
    "suggested_area": str,
    "via_device": str,
}
_ORIGIN: Final = {"name": str, "sw_version": str, "support_url": str}
_ENTITY_CATEGORIES: Final = {"config", "diagnostic"}
_STATE_CLASSES: Final = {"measurement", "total", "total_increasing"}
_BINARY_CLASSES: Final = {"connectivity", "problem", "running", "update", "safety"}
_TOPIC: Final = re.compile(
    r"^(?P<prefix>.+)/(?P<component>[a-z_]+)/(?P<node>[a-zA-Z0-9_-]+)/(?P<object>[a-zA-Z0-9_-]+)/config$"
)
_WILDCARD: Final = re.compile(r"[#+]")
_ENTITY_ID: Final = re.compile(r"^[a-z_]+\.(?!_)(?!.*__)[a-z0-9_]+(?<!_)$")


def _slug(text: str) -> str:
    """Return the id Home Assistant makes of an object_id (its slugify, for [A-Za-z0-9_-])."""
    return re.sub(r"[^a-z0-9]+", "_", text.lower()).strip("_")


def validate(topic: str, config: dict[str, Any]) -> list[str]:
    """Return what is wrong with one discovery message (empty: valid)."""
    match = _TOPIC.match(topic)
    if match is None:
        return [f"{topic}: not <prefix>/<component>/<node_id>/<object_id>/config"]
    component = match["component"]
    schema = SCHEMAS.get(component)
    if schema is None:
        return [f"{topic}: component {component!r} not in the schema"]
    problems = [f"{topic}: missing {k}" for k in sorted(REQUIRED[component] - set(config))]
    for key, value in config.items():
        kind = schema.get(key)
        if kind is None:
            problems.append(f"{topic}: option {key!r} is not a {component} option")
        elif not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
            problems.append(f"{topic}: {key} must be {kind.__name__}")
    for key in ("state_topic", "command_topic", "availability_topic"):
        if key in config and _WILDCARD.search(config[key]):
            problems.append(f"{topic}: {key} holds a wildcard")
    if config.get("entity_category", "config") not in _ENTITY_CATEGORIES:
        problems.append(f"{topic}: entity_category must be config or diagnostic")
    if config.get("state_class", "measurement") not in _STATE_CLASSES:
        problems.append(f"{topic}: bad state_class")
    if (
        component == "binary_sensor"
        and config.get("device_class", "problem") not in _BINARY_CLASSES
    ):
        problems.append(f"{topic}: bad binary_sensor device_class")
    if config.get("qos", 0) not in (0, 1, 2):
        problems.append(f"{topic}: qos must be 0, 1 or 2")
    device = config.get("device")
    if not isinstance(device, dict) or not device.get("identifiers"):
        problems.append(f"{topic}: device needs identifiers (for a device of several entities)")
    else:
        problems += [f"{topic}: device.{k} unknown" for k in device if k not in _DEVICE]
    problems += [
        f"{topic}: origin.{k} unknown" for k in config.get("origin", {}) if k not in _ORIGIN
    ]
    if "unique_id" not in config:
        problems.append(f"{topic}: unique_id needed for entities under a device")
    entity_id = config.get("default_entity_id")
    if not isinstance(entity_id, str) or not _ENTITY_ID.match(entity_id):
        problems.append(f"{topic}: default_entity_id <component>.<id> needed (HA 2025.10 on)")
    elif entity_id.split(".", 1)[0] != component:
        problems.append(f"{topic}: default_entity_id {entity_id!r} is not a {component}")
    elif "object_id" in config and entity_id != f"{component}.{_slug(config['object_id'])}":
        problems.append(f"{topic}: default_entity_id and object_id name different entities")
    return problems
