"""Every private member of paho and aiomqtt the hub relies on is named in one module, and a
version of either library that moved one is noticed."""

from __future__ import annotations

import ast
import asyncio
import contextlib
from pathlib import Path

import aiomqtt
import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion

from gateway.mqtt import paho_private
from gateway.mqtt.paho_private import (
    AIOMQTT_REQUIRED,
    PAHO_REQUIRED,
    compatible,
    guard_write_registration,
    paho_of,
)
from tests.support.mosquitto import Mosquitto

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


async def test_a_write_registration_for_a_connection_that_ended_meanwhile_is_skipped(
    broker: Mosquitto,
) -> None:
    """paho asks for a writer; the connection ends before the loop runs the request (a broker
    killed mid-stream). aiomqtt's own handler then makes asyncio log an EBADF traceback."""
    loop = asyncio.get_running_loop()
    logged: list[dict[str, object]] = []
    loop.set_exception_handler(lambda _loop, context: logged.append(context))
    try:
        for guarded in (False, True):
            client = aiomqtt.Client("127.0.0.1", broker.port, timeout=1.0)
            if guarded:
                guard_write_registration(client)
            await client.__aenter__()
            under = paho_of(client)
            sock = under.socket()
            assert sock is not None
            register = under.on_socket_register_write
            assert register is not None
            register(under, None, sock)  # queued for the loop
            sock.close()  # the connection ends before the loop runs it
            await asyncio.sleep(0.05)
            with contextlib.suppress(aiomqtt.MqttError):  # its DISCONNECT cannot be sent
                await client.__aexit__(None, None, None)
            assert bool(logged) is not guarded
            logged.clear()
    finally:
        loop.set_exception_handler(None)
