"""Backup -> wipe -> restore end to end: the same hub (id, keys, pseudonyms, paired devices,
consent, counters, audit chain) on an empty state dir, a new epoch, records opened before and
after."""

from __future__ import annotations

import json
import shutil
import sqlite3
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from gateway.backup.archive import BackupError, Contents, open_archive, seal_with_passphrase
from gateway.config import load_config
from gateway.envelope.keys import generate_recipient, load_recipient_private
from gateway.secure.signing import sign_request
from tests.operator.helpers import cli, ctl, write_config
from tests.support.hub import eventually, hub_config, make_sink, running_hub, subscribed
from tests.support.mosquitto import Mosquitto


async def test_backup_wipe_restore(broker: Mosquitto, tmp_path: Path) -> None:
    hub_id = "backup-hub"
    operator = Ed25519PrivateKey.generate()
    key_file = tmp_path / "operator.key"
    key_file.write_bytes(operator.private_bytes_raw())
    public = operator.public_key().public_bytes_raw().hex()
    generate_recipient(tmp_path / "recipient")
    toml = write_config(tmp_path, broker.port, hub_id, f'[commands]\nsigning_keys = ["{public}"]\n')
    config = hub_config(  # the same hub as the file's, with one simulated BLE thermometer
        tmp_path,
        broker.port,
        hub_id,
        commands={"signing_keys": [public]},
        simulator={"devices": 2, "rate_hz": 2.0, "ble_devices": 1},
        discovery={"ble": {"enabled": True}},
    )
    assert config.state_dir == load_config(toml).state_dir
    sink = make_sink(config, broker.port, tmp_path)
    passphrase = tmp_path / "passphrase"
    passphrase.write_text("correct horse battery staple\n")
    archive = tmp_path / "hub.backup"

    async with subscribed(sink):
        async with running_hub(config) as hub:
            await eventually(hub.link.connected.is_set, what="hub connected")
            pseudonyms = sorted(hub.simulated)
            await eventually(lambda: len(hub.registry.devices()["candidates"]) == 1, timeout=15)
            (thermometer,) = [c["id"] for c in hub.registry.devices()["candidates"]]
            paired = await ctl(broker.port, hub_id, "pair", str(thermometer))
            assert paired.code == 0, paired.err
            device = hub.registry.get(str(thermometer))
            assert device is not None
            assert device.paired
            assert device.name == "ATC_000000"
            assert device.mac == "F2:CA:FE:00:00:01"
            shown = ("consent", "set", "network", "on", "--device", device.id)  # its MAC listed
            assert (await ctl(broker.port, hub_id, *shown, "--sign-key", str(key_file))).code == 0
            signed = await ctl(
                broker.port, hub_id, "consent", "set", "health", "on", "--sign-key", str(key_file)
            )
            assert signed.code == 0, signed.err
            last_signed = (await hub.audit.tail(1))[0].seq
            await eventually(
                lambda: any(r.category == "health" for r in sink.opened), what="health records"
            )
            epoch_before = hub.sealer.epoch
            topic = f"{config.topic_root}/request/consent/set"
            replay = sign_request(operator, topic, {"flag": "health", "state": "off"}, 1000)
            made = await cli(
                "backup", "--config", str(toml), "--out", str(archive),
                "--passphrase-file", str(passphrase),
            )  # fmt: skip
            assert made.code == 0, made.err  # taken while the hub runs
        opened_before = len(sink.opened)

        data = archive.read_bytes()
        for secret in ("hub.key", "pseudonym.key", "storage.key"):
            assert (config.state_dir / secret).read_bytes() not in data  # sealed, not in clear
        contents = open_archive(data, passphrase=b"correct horse battery staple")
        assert {
            "hub.key",
            "pseudonym.key",
            "storage.key",
            "consentgate.db",
        } <= contents.files.keys()
        assert "outbox.db" not in contents.files  # queued records are never backed up
        for personal in (b"ATC_000000", b"F2:CA:FE:00:00:01"):  # sealed with the storage key
            assert personal not in contents.files["consentgate.db"]
        copy = tmp_path / "copy.db"
        copy.write_bytes(contents.files["consentgate.db"])
        with sqlite3.connect(copy) as db:
            assert db.execute("SELECT COUNT(*) FROM tombstones").fetchone() == (0,)
            assert db.execute("SELECT COUNT(*) FROM epochs").fetchone() == (0,)
            assert db.execute("SELECT COUNT(*) FROM audit").fetchone()[0] >= last_signed
            assert db.execute("SELECT id FROM devices").fetchall() == [(device.id,)]
            assert db.execute("SELECT id FROM device_keys").fetchall() == [(device.id,)]

        shutil.rmtree(config.state_dir)  # the SD card died
        wrong = tmp_path / "wrong"
        wrong.write_text("not the passphrase")
        refused = await cli(
            "restore", "--config", str(toml), "--in", str(archive), "--passphrase-file", str(wrong)
        )
        assert refused.code == 2
        assert "does not open" in refused.err
        assert not config.state_dir.exists()
        restored = await cli(
            "restore", "--config", str(toml), "--in", str(archive),
            "--passphrase-file", str(passphrase),
        )  # fmt: skip
        assert restored.code == 0, restored.err
        again = await cli(
            "restore", "--config", str(toml), "--in", str(archive),
            "--passphrase-file", str(passphrase),
        )  # fmt: skip
        assert again.code == 2
        assert "refusing to restore over a hub's state" in again.err
        verify = await cli("audit", "verify", "--config", str(toml))
        assert verify.code == 0, verify.out + verify.err
        assert "intact" in verify.out

        async with running_hub(config) as hub:
            await eventually(hub.link.connected.is_set, what="restored hub connected")
            assert sorted(hub.simulated) == pseudonyms
            again_paired = hub.registry.get(device.id)  # read back with the restored storage key
            assert again_paired is not None
            assert again_paired.paired
            kept = ("transport", "driver", "name", "mac", "model", "firmware", "activated_at")
            assert [getattr(again_paired, k) for k in kept] == [getattr(device, k) for k in kept]
            listed = await ctl(broker.port, hub_id, "devices", "--json")
            assert listed.code == 0, listed.err
            (entry,) = json.loads(listed.out)["paired"]
            assert {k: entry.get(k) for k in ("id", "name", "model", "mac")} == {
                "id": device.id,
                "name": "ATC_000000",
                "model": device.model,
                "mac": "F2:CA:FE:00:00:01",  # the device's own consent override came back too
            }
            registry = hub.registry

            def online() -> bool:
                view = registry.get(device.id)
                return view is not None and view.online

            await eventually(online, what="the thermometer's adverts under the same pseudonym")
            assert hub.registry.devices()["candidates"] == []
            await eventually(
                lambda: any(
                    r.device == device.id and r.epoch > epoch_before
                    for r in sink.opened[opened_before:]
                ),
                what="the thermometer's records in the new epoch, opened by the same consumer",
            )
            assert hub.policy.flag("health") == "on"
            assert hub.sealer.epoch > epoch_before
            response = await hub.router.dispatch("consent/set", json.dumps(replay).encode())
            assert response.body["error"]["code"] == "unauthorized"  # counter kept
            assert "not above the last accepted" in response.body["error"]["message"]
            await eventually(
                lambda: any(r.epoch > epoch_before for r in sink.opened[opened_before:]),
                what="records of the restored hub opened by the same consumer",
            )
        restored_devices = {r.device for r in sink.opened[opened_before:]}
        assert restored_devices <= {*pseudonyms, device.id}
    assert sink.errors == []
    assert (await cli("audit", "verify", "--config", str(toml))).code == 0


def test_recipient_sealed_archive(tmp_path: Path) -> None:
    files = generate_recipient(tmp_path / "backup-key")
    other = generate_recipient(tmp_path / "other-key")
    contents = Contents("hub", 1.0, {"hub.key": b"k" * 32})
    from gateway.backup.archive import seal_for_recipient  # noqa: PLC0415
    from gateway.envelope.keys import load_recipient_public  # noqa: PLC0415

    data = seal_for_recipient(contents, load_recipient_public(files.public_key))
    assert open_archive(data, identity=load_recipient_private(files.private_key)) == contents
    with pytest.raises(BackupError, match="another key"):
        open_archive(data, identity=load_recipient_private(other.private_key))
    tampered = bytearray(data)
    tampered[-1] ^= 1
    with pytest.raises(BackupError, match="does not open"):
        open_archive(bytes(tampered), identity=load_recipient_private(files.private_key))
    sealed = seal_with_passphrase(contents, b"passphrase", n=2**10)
    header_edit = sealed.replace(b'"hub_id":"hub"', b'"hub_id":"hux"')
    with pytest.raises(BackupError, match="does not open"):  # the header is authenticated
        open_archive(header_edit, passphrase=b"passphrase")


async def test_backup_to_a_public_key(broker: Mosquitto, tmp_path: Path) -> None:
    hub_id = "backup-key-hub"
    generate_recipient(tmp_path / "recipient")
    backup_key = generate_recipient(tmp_path / "backup-key")
    toml = write_config(tmp_path, broker.port, hub_id)
    config = load_config(toml)
    async with running_hub(config) as hub:
        await eventually(hub.link.connected.is_set, what="hub connected")
        assert (await ctl(broker.port, hub_id, "consent", "set", "location", "coarse")).code == 0
    archive = tmp_path / "hub.backup"
    made = await cli(
        "backup", "--config", str(toml), "--out", str(archive),
        "--recipient", str(backup_key.public_key),
    )  # fmt: skip
    assert made.code == 0, made.err
    assert archive.stat().st_mode & 0o777 == 0o600
    moved = config.state_dir.with_name("old-state")
    config.state_dir.rename(moved)  # the old card, kept aside
    lacking = await cli("restore", "--config", str(toml), "--in", str(archive))
    assert lacking.code == 2
    assert "--identity" in lacking.err
    restored = await cli(
        "restore", "--config", str(toml), "--in", str(archive),
        "--identity", str(backup_key.private_key),
    )  # fmt: skip
    assert restored.code == 0, restored.err
    for name in ("hub.key", "pseudonym.key", "storage.key"):
        assert (config.state_dir / name).read_bytes() == (moved / name).read_bytes()
        assert (config.state_dir / name).stat().st_mode & 0o777 == 0o600
    shown = await cli("disclosure", "--config", str(toml))
    assert shown.code == 0, shown.err
    assert "consent 'location' is coarse since" in " ".join(shown.out.split())
