"""Broker security with the shipped Mosquitto files: passwords, the %u ACL, client
certificates. A hub works with its own credentials; a wrong password never connects (the
daemon keeps retrying); another hub's user cannot command this hub or read its topics."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import ssl
from pathlib import Path
from typing import Any, cast

import aiomqtt
import pytest

from gateway import daemon
from gateway.config import Config
from tests.rights.helpers import mqtt_request
from tests.security.clients import consuming, credentials
from tests.security.conftest import CONSUMER, HUB_A, HUB_B, OPERATOR, SecureBroker
from tests.support.hub import eventually, hub_config, make_sink, running_hub

NOT_AUTHORIZED = 0x87


def tls(broker: SecureBroker, cn: str) -> dict[str, Any]:
    cert, key = broker.pki.issue(cn, cn)
    return {
        "tls_params": aiomqtt.TLSParameters(
            ca_certs=str(broker.pki.ca_path),
            certfile=str(cert),
            keyfile=str(key),
            tls_version=ssl.PROTOCOL_TLS_CLIENT,
        )
    }


async def intrude(port: int, root: str, **client: Any) -> tuple[list[int], list[str]]:
    """As another identity: command the hub and listen to it; return PUBACK codes and topics."""
    codes: list[int] = []
    heard: list[str] = []
    mqtt = aiomqtt.Client("127.0.0.1", port, protocol=aiomqtt.ProtocolVersion.V5, **client)
    previous = mqtt._client.on_publish

    def on_publish(c: Any, userdata: Any, mid: int, reason: Any, props: Any) -> None:
        codes.append(int(reason.value))
        cast(Any, previous)(c, userdata, mid, reason, props)

    mqtt._client.on_publish = on_publish
    async with mqtt:
        await mqtt.subscribe(f"{root}/#", qos=1)
        request = {"transaction": "intruder", "flag": "health", "state": "on"}
        await mqtt.publish(f"{root}/request/consent/set", json.dumps(request).encode(), qos=1)
        await mqtt.publish(f"{root}/request/erase", b'{"scope":"all"}', qos=1)
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(1.5):  # the hub's health is refreshed every 0.5 s
                async for message in mqtt.messages:
                    heard.append(str(message.topic))
    return codes, heard


def hub_a(tmp_path: Path, port: int, **mqtt: Any) -> Config:
    return hub_config(
        tmp_path,
        port,
        HUB_A,
        mqtt=mqtt,
        simulator={"devices": 1, "rate_hz": 10.0},  # an environment sensor, consent on
    )


async def test_hub_with_password_works_and_other_hubs_are_confined(
    secure_broker: SecureBroker, tmp_path: Path
) -> None:
    port = secure_broker.port
    config = hub_a(
        tmp_path, port, username=HUB_A, password_file=str(secure_broker.password_file(HUB_A))
    )
    root = config.topic_root
    sink = make_sink(config, port, tmp_path)
    async with consuming(sink, port, **credentials(CONSUMER)), running_hub(config) as hub:
        await eventually(lambda: len(sink.opened) > 5, what="records opened by the consumer")
        health = await mqtt_request(port, root, "health", {}, **credentials(OPERATOR))
        assert health["status"] == "ok"
        codes, heard = await intrude(port, root, **credentials(HUB_B))
        assert codes == [NOT_AUTHORIZED, NOT_AUTHORIZED]  # MQTT 5 PUBACK: not authorised
        assert heard == []  # nothing of hub A reaches hub B's user
        codes, _ = await intrude(port, root, **credentials(CONSUMER))
        assert codes == [NOT_AUTHORIZED, NOT_AUTHORIZED]  # consumers read; they do not command
        await asyncio.sleep(0.5)
        assert hub.policy.flag("health") == "off"
        assert len(hub.simulated) == 1
        assert "command.rejected" not in [e.event for e in await hub.audit.tail(50)]
    assert not sink.errors
    assert "Denied PUBLISH" in secure_broker.log()


async def test_wrong_password_never_connects_and_the_daemon_keeps_trying(
    secure_broker: SecureBroker, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    password_file = secure_broker.password_file(HUB_A, "not-the-password")
    config = hub_a(tmp_path, secure_broker.port, username=HUB_A, password_file=str(password_file))
    caplog.set_level(logging.WARNING, logger="gateway.mqtt.link")
    async with running_hub(config) as hub:

        def refusals() -> list[logging.LogRecord]:
            return [r for r in caplog.records if "refused the hub's credentials" in r.getMessage()]

        await eventually(lambda: len(refusals()) >= 3, what="several refused attempts")
        assert hub.link.connects == 0
        assert not hub.link.connected.is_set()
        reason = str(getattr(refusals()[0], "reason", ""))
        assert "not authori" in reason.lower() or "bad user name or password" in reason.lower()
        assert "not-the-password" not in caplog.text
        await eventually(lambda: hub.outbox.rows > 0, what="collection continues offline")


async def test_tls_with_client_certificates(secure_broker: SecureBroker, tmp_path: Path) -> None:
    port = secure_broker.tls_port
    cert, key = secure_broker.pki.issue("hub-a", HUB_A)  # CN = hub id = MQTT username
    config = hub_a(
        tmp_path,
        port,
        host="127.0.0.1",
        tls={"ca": str(secure_broker.pki.ca_path), "cert": str(cert), "key": str(key)},
    )
    root = config.topic_root
    sink = make_sink(config, port, tmp_path)
    async with consuming(sink, port, **tls(secure_broker, CONSUMER)), running_hub(config) as hub:
        await eventually(lambda: len(sink.opened) > 5, what="records over TLS opened")
        assert hub.link.connects == 1
        answer = await mqtt_request(port, root, "consent/get", {}, **tls(secure_broker, OPERATOR))
        assert answer["status"] == "ok"
        codes, heard = await intrude(port, root, **tls(secure_broker, HUB_B))
        assert codes == [NOT_AUTHORIZED, NOT_AUTHORIZED]
        assert heard == []
        anonymous = aiomqtt.Client(
            "127.0.0.1",
            port,
            tls_params=aiomqtt.TLSParameters(
                ca_certs=str(secure_broker.pki.ca_path), tls_version=ssl.PROTOCOL_TLS_CLIENT
            ),
            timeout=2.0,
        )
        with pytest.raises(aiomqtt.MqttError):
            async with anonymous:
                pass
        assert hub.policy.flag("health") == "off"
    assert not sink.errors


def counted(hub: daemon.Hub, prefix: str) -> int:
    """Return the sum of the hub's counters whose name starts with ``prefix``."""
    return sum(v for name, v in hub.counters.snapshot().items() if name.startswith(prefix))


async def test_records_the_broker_refuses_stay_queued_and_are_counted(
    secure_broker: SecureBroker, tmp_path: Path
) -> None:
    # hub B's topics with hub A's credentials: the %u ACL refuses every publish (PUBACK 0x87)
    config = hub_config(
        tmp_path,
        secure_broker.port,
        HUB_B,
        mqtt={"username": HUB_A, "password_file": str(secure_broker.password_file(HUB_A))},
        simulator={"devices": 1, "rate_hz": 10.0},
    )
    async with running_hub(config) as hub:
        await eventually(lambda: counted(hub, "refused.") >= 5, what="refused records")
        assert counted(hub, "forwarded.") == 0
        assert hub.outbox.rows >= counted(hub, "refused.")  # nothing refused was deleted
