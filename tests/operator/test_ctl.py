"""``consentgate ctl`` against a running hub and a real Mosquitto: tables, JSON, exit codes."""

from __future__ import annotations

import json
import re
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from gateway.cli.ctl import ERROR_EXITS, EXIT_NO_ANSWER
from tests.operator.helpers import cli, ctl, write_config
from tests.support.hub import eventually, hub_config, running_hub
from tests.support.mosquitto import Mosquitto


async def test_ctl_drives_the_hub(broker: Mosquitto, tmp_path: Path) -> None:
    hub_id = "ctl-main"
    config = hub_config(tmp_path, broker.port, hub_id, simulator={"devices": 2, "rate_hz": 2.0})
    async with running_hub(config) as hub:
        await eventually(hub.link.connected.is_set, what="hub connected")
        status = await ctl(broker.port, hub_id, "status")
        assert status.code == 0, status.err
        assert "connected (1 connects" in status.out
        assert "telemetry=on" in status.out
        assert re.search(r"^storage ", status.out, re.MULTILINE)
        assert re.search(r"^clock ", status.out, re.MULTILINE)

        status_json = await ctl(broker.port, hub_id, "status", "--json")
        assert json.loads(status_json.out)["consent"]["flags"]["health"] == "off"

        changed = await ctl(broker.port, hub_id, "consent", "set", "health", "on")
        assert changed.code == 0, changed.err
        assert hub.policy.flag("health") == "on"
        device = sorted(hub.simulated)[0]
        override = await ctl(
            broker.port, hub_id, "consent", "set", "location", "coarse", "--device", device
        )
        assert override.code == 0, override.err
        assert hub.policy.flag("location", device) == "coarse"
        shown = await ctl(broker.port, hub_id, "consent")
        assert re.search(r"^health +on +hub-wide$", shown.out, re.MULTILINE)
        assert re.search(rf"^location +coarse +{device}$", shown.out, re.MULTILINE)

        bad_flag = await ctl(broker.port, hub_id, "consent", "set", "mood", "on")
        assert bad_flag.code == ERROR_EXITS["unknown_flag"]
        assert "unknown_flag" in bad_flag.err
        missing = await ctl(broker.port, hub_id, "unpair", "0123456789abcdef")
        assert missing.code == ERROR_EXITS["not_found"], missing
        bad_id = await ctl(broker.port, hub_id, "pair", "not-an-id", "--json")
        assert bad_id.code == ERROR_EXITS["invalid_request"]
        assert json.loads(bad_id.out)["error"]["code"] == "invalid_request"

        assert (await ctl(broker.port, hub_id, "try-now", "on")).code == 0
        assert hub.policy.snapshot()["try_now"] is True
        assert (await ctl(broker.port, hub_id, "try-now", "off")).code == 0
        assert hub.policy.snapshot()["try_now"] is False
        assert (await ctl(broker.port, hub_id, "restrict", "on")).code == 0
        assert hub.policy.restricted
        assert (await ctl(broker.port, hub_id, "restrict", "off")).code == 0

        erased = await ctl(broker.port, hub_id, "erase", "--device", device, "--json")
        assert erased.code == 0, erased.err
        assert json.loads(erased.out)["erased"] == [device]

        tail = await ctl(broker.port, hub_id, "audit", "tail", "-n", "50")
        assert tail.code == 0
        for event in ("consent.set", "consent.try_now", "command.rejected"):
            assert event in tail.out
        verify = await ctl(broker.port, hub_id, "audit", "verify")
        assert verify.code == 0
        assert "intact" in verify.out

        devices = await ctl(broker.port, hub_id, "devices", "--json")
        assert set(json.loads(devices.out)) == {"paired", "candidates"}
        join = await ctl(broker.port, hub_id, "permit-join", "0")
        assert join.code == 0, join.err

        watch = await ctl(broker.port, hub_id, "health", "--watch", "--updates", "2", "--json")
        assert watch.code == 0, watch.err
        lines = watch.out.splitlines()
        assert len(lines) == 2
        assert all(json.loads(line)["connected"] for line in lines)

        legacy = await ctl(broker.port, hub_id, "--protocol", "4", "consent", "get", "--json")
        assert legacy.code == 0, legacy.err
        assert json.loads(legacy.out)["flags"]["health"] == "on"


def rows_of(table: str) -> list[list[str]]:
    """Return the rows of a ``ctl`` table (after its header and rule) split into cells."""
    _header, rule, *rows = table.splitlines()
    assert set(rule) == {"-", " "}, table
    return [row.split() for row in rows]


async def test_ctl_finds_the_hub_in_its_config_file(broker: Mosquitto, tmp_path: Path) -> None:
    hub_id = "ctl-config"
    config = hub_config(
        tmp_path,
        broker.port,
        hub_id,
        discovery={"ble": {"enabled": True}},
        simulator={"ble_devices": 2, "rate_hz": 5.0},
    )
    toml = str(write_config(tmp_path, broker.port, hub_id))  # broker and hub id, as the hub's
    async with running_hub(config) as hub:
        registry = hub.registry
        await eventually(hub.link.connected.is_set, what="hub connected")
        for argv in (("status", "--config", toml), ("--config", toml, "status")):
            status = await cli("ctl", *argv)  # no --host, --port or --hub: all from the file
            assert status.code == 0, status.err
            assert re.search(r"^connection +connected", status.out, re.MULTILINE)
        await eventually(lambda: len(registry.devices()["candidates"]) == 2, timeout=15)

        devices = await cli("ctl", "devices", "--config", toml)
        assert devices.code == 0, devices.err
        assert devices.out.split("\n", 1)[0].split() == [
            "id", "state", "transport", "driver", "name", "model", "online", "update"
        ]  # fmt: skip
        candidates = rows_of(devices.out)
        assert [row[1:3] for row in candidates] == [["candidate", "ble"]] * 2

        join = await cli("ctl", "permit-join", "60", "--transport", "ble", "--config", toml)
        assert join.code == 0, join.err
        assert re.search(r"^duration +60(\.0)?$", join.out, re.MULTILINE)
        assert re.search(r"^transport +ble$", join.out, re.MULTILINE)
        assert re.search(r"^until +\d", join.out, re.MULTILINE)
        await eventually(lambda: len(registry.paired_ids()) == 2, timeout=15, what="paired")
        closed = await cli("ctl", "permit-join", "0", "--config", toml, "--json")
        assert closed.code == 0, closed.err
        assert json.loads(closed.out)["duration"] == 0

        paired = rows_of((await cli("ctl", "devices", "--config", toml)).out)
        assert sorted(row[0] for row in paired) == sorted(registry.paired_ids())
        assert all(row[1:3] == ["paired", "ble"] for row in paired), paired
        status = await cli("ctl", "status", "--config", toml)
        assert re.search(r"^devices +\d online of 2 paired", status.out, re.MULTILINE)

        device = sorted(registry.paired_ids())[0]
        override = ("consent", "set", "health", "on", "--device", device, "--config", toml)
        assert (await cli("ctl", *override)).code == 0
        erased = await cli("ctl", "erase", "--all", "--config", toml)
        assert erased.code == 0, erased.err
        assert re.search(r"^scope +all$", erased.out, re.MULTILINE)
        assert all(d in erased.out for d in [row[0] for row in paired])
        assert not list(registry.paired_ids())
        assert dict(hub.policy.overrides) == {}
        events = [(e.event, e.details.get("scope")) for e in await hub.audit.tail(10)]
        assert ("rights.erase", "all") in events
        after = (await cli("ctl", "devices", "--config", toml)).out  # adverts may go on
        assert after.startswith("no devices") or {r[1] for r in rows_of(after)} == {"candidate"}


async def test_ctl_names_a_missing_ca_file(tmp_path: Path) -> None:
    absent = tmp_path / "absent-ca.pem"
    run = await cli("ctl", "status", "--hub", "any", "--ca", str(absent))
    assert run.code == 2  # a usage error: nothing was sent
    assert f"cannot read the CA file {absent}: No such file or directory" in run.err
    toml = write_config(tmp_path, 1, "tls-hub", f'[mqtt.tls]\nca = "{absent}"\n')
    from_config = await cli("ctl", "status", "--config", str(toml))
    assert from_config.code == 2
    assert str(absent) in from_config.err


async def test_ctl_times_out_clearly(broker: Mosquitto) -> None:
    run = await ctl(broker.port, "no-such-hub", "status", "--timeout", "0.5")
    assert run.code == EXIT_NO_ANSWER
    assert "no answer to 'health' from hub consentgate/no-such-hub within 0.5 s" in run.err


async def test_ctl_without_a_hub_is_a_usage_error(tmp_path: Path) -> None:
    run = await cli("ctl", "status", "--config", str(tmp_path / "absent.toml"))
    assert run.code == 2
    assert "does not exist" in run.err


async def test_ctl_signs_signed_commands(broker: Mosquitto, tmp_path: Path) -> None:
    key = Ed25519PrivateKey.generate()
    key_file = tmp_path / "operator.key"
    key_file.write_bytes(key.private_bytes_raw())
    public = key.public_key().public_bytes_raw().hex()
    hub_id = "ctl-signed"
    config = hub_config(tmp_path, broker.port, hub_id, commands={"signing_keys": [public]})
    async with running_hub(config) as hub:
        await eventually(hub.link.connected.is_set, what="hub connected")
        unsigned = await ctl(broker.port, hub_id, "consent", "set", "health", "on")
        assert unsigned.code == ERROR_EXITS["unauthorized"]
        assert hub.policy.flag("health") == "off"
        for state in ("on", "off", "on"):  # each call takes a counter above the last
            run = await ctl(
                broker.port, hub_id, "consent", "set", "health", state, "--sign-key", str(key_file)
            )
            assert run.code == 0, run.err
            assert hub.policy.flag("health") == state
        unsigned_get = await ctl(broker.port, hub_id, "consent", "get", "--sign-key", str(key_file))
        assert unsigned_get.code == 0  # only the signed commands carry a signature
