"""The MQTT topics envelope v1 binds to (docs/mqtt-api.md), portable to every broker.

A hub publishes under ``topic_root = <base_topic>/<hub_id>``: sealed records on
``<topic_root>/data/<device_pseudonym>/<category_in_topic>`` and its epoch announcement
(retained) on ``<topic_root>/epoch``. A consumer asks for a missing announcement on
``<base_topic>/<hub_id>/request/epoch/resend``. The full data topic is part of every record's
external AAD, so a record moved to another topic no longer opens.

Every topic segment is 1-64 of ``[A-Za-z0-9_-]``: RabbitMQ's MQTT plugin swaps ``.`` and ``/``
between MQTT topics and AMQP routing keys, and NATS before 2.10 drops a client that publishes a
topic with a ``.``. A category keeps its dotted name in the record's header and is written with
``_`` in the topic (``telemetry.environment`` -> ``telemetry_environment``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Final

from gateway.envelope.errors import MalformedError

# One topic segment: hub ids, base topic levels, categories as written in topics.
SEGMENT: Final = re.compile(r"[A-Za-z0-9_-]{1,64}")
# A category name as it appears in a record's protected header (dots allowed, never in topics).
WORD: Final = re.compile(r"[A-Za-z0-9_.-]{1,64}")
DEVICE: Final = re.compile(r"[0-9a-f]{16}")
MAX_BASE_LEVELS: Final = 4
MAX_TOPIC_LENGTH: Final = 1024


@dataclass(frozen=True, slots=True)
class DataTopic:
    """The parts of a data topic: base, hub id, device pseudonym (hex), category as in topics."""

    base: str
    hub_id: str
    device: str
    category: str


def category_segment(category: str) -> str:
    """Return ``category`` as it is written in a topic segment (``.`` becomes ``_``)."""
    return category.replace(".", "_")


def valid_base(base: str) -> bool:
    """Return True when ``base`` is 1-4 levels of portable segments (no wildcards, no ``.``)."""
    levels = base.split("/")
    return len(levels) <= MAX_BASE_LEVELS and all(SEGMENT.fullmatch(level) for level in levels)


def data_topic(topic_root: str, device: str, category: str) -> str:
    """Return the topic a record of ``device`` (16 hex digits) and ``category`` is sent on."""
    return f"{topic_root}/data/{device}/{category_segment(category)}"


def epoch_topic(topic_root: str) -> str:
    """Return the (retained) topic a hub's epoch announcements are sent on."""
    return f"{topic_root}/epoch"


def resend_topic(base: str, hub_id: str) -> str:
    """Return the request topic that asks ``hub_id`` to announce an epoch again."""
    return f"{base}/{hub_id}/request/epoch/resend"


def parse_data_topic(topic: str) -> DataTopic:
    """Split ``<base>/<hub>/data/<device>/<category>``; raise MalformedError for other topics."""
    parts = topic.rsplit("/", 4) if len(topic) <= MAX_TOPIC_LENGTH else []
    if len(parts) != 5 or parts[2] != "data" or not parts[0]:
        raise MalformedError("the topic is not a <base>/<hub>/data/<device>/<category> topic")
    base, hub_id, _, device, category = parts
    if not SEGMENT.fullmatch(hub_id) or not DEVICE.fullmatch(device):
        raise MalformedError("the topic's hub or device segment is not valid")
    if not SEGMENT.fullmatch(category):
        raise MalformedError("the topic's category segment is not 1-64 of [A-Za-z0-9_-]")
    return DataTopic(base, hub_id, device, category)


def parse_epoch_topic(topic: str) -> tuple[str, str]:
    """Split ``<base>/<hub>/epoch`` into (base, hub id); raise MalformedError otherwise."""
    parts = topic.rsplit("/", 2) if len(topic) <= MAX_TOPIC_LENGTH else []
    if len(parts) != 3 or parts[2] != "epoch" or not parts[0] or not SEGMENT.fullmatch(parts[1]):
        raise MalformedError("the topic is not a <base>/<hub>/epoch topic")
    return parts[0], parts[1]
