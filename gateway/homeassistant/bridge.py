"""Publishing the hub's Home Assistant discovery configs on every broker connection."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from gateway.config import Config
from gateway.homeassistant.discovery import discovery_messages
from gateway.mqtt.topics import Topics
from gateway.secure.signing import SIGNED_COMMANDS

if TYPE_CHECKING:
    from gateway.mqtt.link import ConnectHook, Connection

logger = logging.getLogger(__name__)


def announcer(config: Config, topics: Topics) -> ConnectHook:
    """Return a connect hook that publishes the discovery configs, retained, at QoS 1."""
    signed = bool(config.commands.signing_keys) and "consent/set" in SIGNED_COMMANDS
    messages = discovery_messages(
        config.homeassistant, config.hub_id, topics, signed_consent=signed
    )

    async def announce(connection: Connection) -> None:
        # Retained, so Home Assistant finds them whenever it (re)starts; the switches' and
        # sensors' states are the hub's own retained consent and health topics.
        for message in messages:
            await connection.publish(message.topic, message.encode(), retain=True)
        logger.info("home assistant discovery published", extra={"entities": len(messages)})

    return announce
