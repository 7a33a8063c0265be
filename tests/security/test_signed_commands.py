"""Signed commands: consent/set, erase and export need an Ed25519 signature and a counter that
only goes up, per key and across restarts; anything else is refused, audited, changes nothing."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from gateway.config import Config, parse_config
from gateway.daemon import Hub
from gateway.errors import ConfigError
from gateway.secure.signing import sign_request, signed_bytes
from tests.rights.helpers import mqtt_request
from tests.support.hub import eventually, hub_config, running_hub
from tests.support.mosquitto import Mosquitto


def signing_config(tmp_path: Path, port: int, hub_id: str, *keys: Ed25519PrivateKey) -> Config:
    hexes = [k.public_key().public_bytes_raw().hex() for k in keys]
    return hub_config(
        tmp_path,
        port,
        hub_id,
        commands={"signing_keys": hexes},
        simulator={"devices": 2, "rate_hz": 1.0},
    )


async def send(hub: Hub, command: str, request: dict[str, Any]) -> dict[str, Any]:
    response = await hub.router.dispatch(command, json.dumps(request).encode())
    return response.body


def signed(
    hub: Hub, key: Ed25519PrivateKey, command: str, counter: int, **params: Any
) -> dict[str, Any]:
    topic = f"{hub.config.topic_root}/request/{command}"
    return sign_request(key, topic, params, counter)


async def test_signatures_and_counters(broker: Mosquitto, tmp_path: Path) -> None:
    key, other = Ed25519PrivateKey.generate(), Ed25519PrivateKey.generate()
    config = signing_config(tmp_path, broker.port, "signed-cmds", key)
    async with running_hub(config) as hub:

        async def refused(command: str, request: dict[str, Any], reason: str) -> None:
            before = hub.policy.snapshot()
            body = await send(hub, command, request)
            assert body["status"] == "error", body
            assert body["error"]["code"] == "unauthorized"
            assert reason in body["error"]["message"]
            assert hub.policy.snapshot() == before
            # refusals are audited in aggregate: the first of each (client, reason) within a
            # second, its repeats in the minute's entry
            async with asyncio.timeout(5):
                while not [
                    e
                    for e in await hub.audit.tail(20)
                    if e.event == "command.rejected"
                    and e.details["code"] == "unauthorized"
                    and reason in str(e.details.get("reason"))
                ]:
                    await asyncio.sleep(0.05)

        health_on = {"flag": "health", "state": "on"}
        await refused("consent/set", health_on, "must be signed")
        await refused("consent/set", {**health_on, "counter": 1}, "must be signed")
        await refused("consent/set", signed(hub, other, "consent/set", 1, **health_on), "not valid")
        forged = {**signed(hub, key, "consent/set", 1, **health_on), "flag": "location"}
        await refused("consent/set", forged, "not valid")
        bad_counter = {**health_on, "counter": -1, "signature": "00"}
        await refused("consent/set", bad_counter, "positive integer")

        first = signed(hub, key, "consent/set", 1, **health_on)
        ok = await send(hub, "consent/set", {**first, "transaction": "t1"})
        assert ok["status"] == "ok", ok
        assert ok["transaction"] == "t1"  # not covered by the signature, echoed
        assert hub.policy.flag("health") == "on"
        await refused("consent/set", first, "not above the last accepted (1)")  # replay
        await refused("erase", signed(hub, key, "export", 2, scope="all"), "not valid")

        device = sorted(hub.simulated)[0]
        export = signed(hub, key, "export", 7, scope="device", device=device)
        assert (await send(hub, "export", export))["status"] == "ok"
        stale = signed(hub, key, "consent/set", 5, flag="health", state="off")
        await refused("consent/set", stale, "not above the last accepted (7)")
        # commands outside the signed set need no signature
        assert (await send(hub, "consent/get", {}))["status"] == "ok"
        assert (await send(hub, "restrict", {"enabled": False}))["status"] == "ok"
    async with running_hub(config) as hub:  # the counter survives a restart
        await refused("export", export, "not above the last accepted (7)")
        assert hub.policy.flag("health") == "on"


async def test_signed_command_over_mqtt_and_its_replay(broker: Mosquitto, tmp_path: Path) -> None:
    key = Ed25519PrivateKey.generate()
    config = signing_config(tmp_path, broker.port, "signed-mqtt", key)
    root = config.topic_root
    async with running_hub(config) as hub:
        request = sign_request(
            key, f"{root}/request/consent/set", {"flag": "location", "state": "coarse"}, 1
        )
        await eventually(hub.link.connected.is_set, what="hub connected")
        ok = await mqtt_request(broker.port, root, "consent/set", request)
        assert ok["status"] == "ok", ok
        replay = await mqtt_request(broker.port, root, "consent/set", request)
        assert replay["error"]["code"] == "unauthorized"
        unsigned = await mqtt_request(broker.port, root, "erase", {"scope": "all"})
        assert unsigned["error"]["code"] == "unauthorized"
        assert len(hub.simulated) == 2  # nothing was erased
        assert hub.policy.flag("location") == "coarse"


def test_signed_bytes_bind_topic_and_exclude_signature_and_transaction() -> None:
    request = {"b": 1, "a": "é", "signature": "ff", "transaction": "x"}
    assert signed_bytes("cg/hub/request/erase", request) == (
        b'consentgate-command/1\ncg/hub/request/erase\n{"a":"\xc3\xa9","b":1}'
    )


def test_signing_key_config(tmp_path: Path) -> None:
    key = Ed25519PrivateKey.generate().public_key().public_bytes_raw().hex()
    keys_file = tmp_path / "keys"
    keys_file.write_text(f"# operators\n{key}\n\n")
    base = {"hub_id": "h", "state_dir": "s"}
    config = parse_config({**base, "commands": {"signing_keys_file": "keys"}}, tmp_path)
    assert config.commands.signing_keys == (bytes.fromhex(key),)
    with pytest.raises(ConfigError, match=r"commands\.signing_keys: 'abc' is not an Ed25519"):
        parse_config({**base, "commands": {"signing_keys": ["abc"]}}, tmp_path)
    with pytest.raises(ConfigError, match=r"commands\.signing_keys_file: cannot read"):
        parse_config({**base, "commands": {"signing_keys_file": "missing"}}, tmp_path)
