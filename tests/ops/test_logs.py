"""The full flow at DEBUG level writes JSON lines with no MAC address, raw device id, payload
value, key or credential in them: simulated wearables, a Shelly over mDNS and BLE sensors
paired on command, consent changes, rights, refused and malformed requests, a broker login."""

from __future__ import annotations

import io
import json
import re
from pathlib import Path
from typing import Any

import pytest

from drivers.shelly.simulator import SimulatedShelly
from gateway.daemon import Hub
from gateway.logs import redact
from tests.rights.helpers import mqtt_request
from tests.security.clients import consuming, credentials
from tests.security.conftest import HUB_A, OPERATOR, PASSWORDS, SecureBroker
from tests.support.hub import eventually, hub_config, make_sink, running_hub

NAME = "Grandma's bedroom scale"
MAC = re.compile(r"(?i)\b[0-9a-f]{2}(?:[:-][0-9a-f]{2}){5}\b")


def forms(value: str) -> set[str]:
    """Return the spellings of an identifier a log line could carry."""
    bare = re.sub(r"[:-]", "", value)
    return {value, value.lower(), value.upper(), bare.lower(), bare.upper()}


def payload_values(fields: dict[str, Any]) -> set[str]:
    """Return the field values distinctive enough to find in text (no small integers)."""
    found = set()
    for value in fields.values():
        if isinstance(value, str) and len(value) >= 4:
            found.add(value)
        elif isinstance(value, float) and len(repr(value).split(".")[-1]) >= 2:
            found.add(repr(value))
    return found


def leaks(text: str, secrets: set[str]) -> list[str]:
    """Return the secrets found in ``text`` as whole tokens (not inside longer numbers)."""
    return sorted(
        s
        for s in secrets
        if re.search(r"(?<![\w.])" + re.escape(s) + r"(?![\w])", text, re.IGNORECASE)
    )


async def run_flow(hub: Hub, broker: SecureBroker, device_ids: list[str]) -> None:
    port, root = broker.port, hub.config.topic_root
    operator = credentials(OPERATOR)

    async def ask(command: str, **params: Any) -> dict[str, Any]:
        return await mqtt_request(port, root, command, params, **operator)

    assert (await ask("permit_join", duration=30))["status"] == "ok"
    registry = hub.registry
    await eventually(lambda: len(registry.paired_ids()) == 3, timeout=20, what="3 paired")
    await ask("permit_join", duration=0)
    wearable = sorted(hub.simulated)[1]
    for flag, state, device in (
        ("network", "on", None),  # MACs travel sealed in device.network records
        ("health", "on", wearable),
        ("location", "coarse", None),
        ("health", "off", None),
    ):
        params = {"flag": flag, "state": state} | ({"device": device} if device else {})
        assert (await ask("consent/set", **params))["status"] == "ok"
    paired = sorted(registry.paired_ids())
    await ask("rename", device=paired[0], name=NAME)
    await ask("try_now", enabled=True)
    await ask("try_now", enabled=False)
    await ask("export", scope="device", device=paired[0])
    await ask("restrict", enabled=True)
    await ask("restrict", enabled=False)
    await ask("keys/rotate")
    await ask("audit/verify")
    for device in device_ids:  # a raw id where a pseudonym belongs: refused, not logged
        assert (await ask("pair", device=device))["status"] == "error"
        assert (await ask("consent/set", flag="health", state="on", device=device))[
            "status"
        ] == "error"
    await ask("no/such/command")
    await ask("erase", scope="device", device=paired[1])
    await ask("unpair", device=paired[2])


async def test_debug_logs_hold_no_personal_data_keys_or_credentials(
    secure_broker: SecureBroker, tmp_path: Path, json_logs: io.StringIO
) -> None:
    password = secure_broker.password_file(HUB_A)
    config = hub_config(
        tmp_path,
        secure_broker.port,
        HUB_A,
        mqtt={"username": HUB_A, "password_file": str(password)},
        simulator={"devices": 3, "rate_hz": 10.0, "ble_devices": 2},
        audit={"checkpoint_every": 5},  # checkpoints are logged at DEBUG
        discovery={
            "mdns": {"enabled": True, "poll_interval_s": 0.2},
            "ble": {"enabled": True},
        },
    )
    sink = make_sink(config, secure_broker.port, tmp_path)
    consumer = credentials("consentgate-consumer")
    async with (
        SimulatedShelly(name="Living room plug") as shelly,
        consuming(sink, secure_broker.port, **consumer),
        running_hub(config) as hub,
    ):
        registry = hub.registry
        await eventually(lambda: len(registry.devices()["candidates"]) == 3, timeout=20)
        colons = ":".join(shelly.mac[i : i + 2] for i in range(0, 12, 2))
        macs = {v.mac for v in registry.views() if v.mac} | {
            e.stable_id for e in registry._entries.values()
        }
        await run_flow(hub, secure_broker, [shelly.device_id.lower(), *sorted(macs)[:1]])
        await eventually(lambda: any(r.category == "device.network" for r in sink.opened))
    output = json_logs.getvalue()
    lines = output.splitlines()
    assert len(lines) > 50
    for line in lines:
        entry = json.loads(line)
        assert {"ts", "level", "event", "component"} <= entry.keys()
    assert any(json.loads(line)["level"] == "debug" for line in lines)

    secrets: set[str] = {PASSWORDS[HUB_A], NAME, "Living room plug"}
    for identifier in (*macs, shelly.device_id, shelly.mac, colons):
        secrets |= forms(identifier)
    for record in sink.opened:
        secrets |= payload_values(dict(record.fields))
    for key_file in ("hub.key", "pseudonym.key", "storage.key"):
        raw = (config.state_dir / key_file).read_bytes()
        secrets |= {raw.hex(), raw.hex()[:16]}
    secrets.add((tmp_path / "recipient" / "recipient.key").read_bytes().hex())
    assert any(":" in m for m in macs)
    assert not leaks(output, secrets)
    assert MAC.search(output) is None


@pytest.mark.parametrize(
    ("text", "masked"),
    [
        ("device at 192.168.1.23:51826 refused", "device at <ip>:51826 refused"),
        ("connect fe80::1ff:fe23:4567:890a failed", "connect <ip> failed"),
        ("peer [2001:db8:0:0:0:0:2:1]:80", "peer [<ip>]:80"),
        ("host:fe80::1 down", "host:<ip> down"),
        ("id:2001:db8::7 ok", "id:<ip> ok"),
        ("scale AA:BB:CC:DD:EE:FF seen", "scale <mac> seen"),
        ("key " + "ab" * 16, "key <hex>"),
        ("at 17:05:25 firmware 1.2.3 after 3.5 s", "at 17:05:25 firmware 1.2.3 after 3.5 s"),
    ],
)
def test_redact_masks_addresses_and_secrets_but_not_times_or_versions(
    text: str, masked: str
) -> None:
    assert redact(text) == masked
