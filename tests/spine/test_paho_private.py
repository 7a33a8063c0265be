"""Every private member of paho and aiomqtt the hub relies on is named in one module, and a
version of either library that moved one is noticed."""

from __future__ import annotations

import ast
from pathlib import Path

import aiomqtt
import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion

from gateway.mqtt import paho_private
from gateway.mqtt.paho_private import AIOMQTT_REQUIRED, PAHO_REQUIRED, compatible

# a member of paho's MQTTMessageInfo (the object paho hands out per publish), not of the client
OTHER_OBJECTS = {"_set_as_published"}


async def test_the_installed_paho_and_aiomqtt_have_every_member_relied_on() -> None:
    assert compatible(paho.Client(CallbackAPIVersion.VERSION2))
    assert compatible(aiomqtt.Client("127.0.0.1", 1883))


def test_a_paho_whose_internals_moved_is_noticed() -> None:
    client = paho.Client(CallbackAPIVersion.VERSION2)
    del client._in_packet  # as a paho release that renamed it would look
    assert not compatible(client)


def test_every_private_member_the_module_touches_is_in_its_lists() -> None:
    tree = ast.parse(Path(paho_private.__file__).read_text())
    touched = {
        node.attr
        for node in ast.walk(tree)
        if isinstance(node, ast.Attribute)
        and node.attr.startswith("_")
        and not node.attr.startswith("__")
    }
    assert touched - OTHER_OBJECTS <= set(PAHO_REQUIRED) | set(AIOMQTT_REQUIRED)
