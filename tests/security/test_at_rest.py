"""At rest: MACs, names, addresses and stable ids never reach the database file in clear;
the storage key comes from a systemd credential or a 0600 file; erasing a device destroys its
data key; rows from older versions are rewritten sealed."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path
from typing import Any

import pytest

from gateway.daemon import Hub
from gateway.devices.store import DeviceStore, StoredDevice
from gateway.errors import ConfigError, StorageError
from gateway.secure.atrest import CREDENTIAL, KEY_FILE, StorageCipher, parse_key
from gateway.storage.db import DB_FILE, open_database
from tests.support.hub import eventually, hub_config, running_hub
from tests.support.mosquitto import Mosquitto

NAME = "Grandma's bedroom scale"


async def call(hub: Hub, command: str, **params: Any) -> dict[str, Any]:
    response = await hub.router.dispatch(command, json.dumps(params).encode())
    assert response.body["status"] == "ok", response.body
    data: dict[str, Any] = response.body["data"]
    return data


def raw_state(state_dir: Path) -> bytes:
    """Every byte SQLite keeps on disk: the database, its WAL and shared memory."""
    return b"".join(p.read_bytes() for p in state_dir.glob(f"{DB_FILE}*"))


def clear_forms(value: str) -> list[bytes]:
    bare = value.replace(":", "").replace("-", "")
    return [v.encode() for v in {value, value.lower(), value.upper(), bare, bare.lower()}]


async def test_personal_columns_never_in_clear_on_disk(broker: Mosquitto, tmp_path: Path) -> None:
    config = hub_config(
        tmp_path,
        broker.port,
        "at-rest",
        discovery={"ble": {"enabled": True}},
        simulator={"ble_devices": 2, "rate_hz": 2.0},
    )
    async with running_hub(config) as hub:
        registry = hub.registry
        assert registry is not None
        await eventually(lambda: len(registry.devices()["candidates"]) == 2, timeout=15)
        await call(hub, "permit_join", duration=30, transport="ble")
        await eventually(lambda: len(registry.paired_ids()) == 2, timeout=15, what="paired")
        await call(hub, "permit_join", duration=0)
        named, erased = sorted(registry.paired_ids())
        await call(hub, "rename", device=named, name=NAME)
        secrets = []
        for device in (named, erased):
            view = registry.get(device)
            assert view is not None
            assert view.mac is not None
            secrets += clear_forms(view.mac)
            if view.name:
                secrets.append(view.name.encode())
        secrets.append(NAME.encode())
        await call(hub, "erase", scope="device", device=erased)
        async with hub.db.execute("SELECT id FROM device_keys") as cursor:
            assert [row[0] for row in await cursor.fetchall()] == [named]
    key_file = config.state_dir / KEY_FILE
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    disk = raw_state(config.state_dir)
    leaked = [s for s in secrets if s in disk]
    assert leaked == []
    async with running_hub(config) as hub:  # the sealed rows open again after a restart
        assert hub.registry is not None
        view = hub.registry.get(named)
        assert view is not None
        assert view.name == NAME


async def test_storage_key_from_a_systemd_credential(
    broker: Mosquitto, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    credentials = tmp_path / "credentials"
    credentials.mkdir()
    (credentials / CREDENTIAL).write_text(os.urandom(32).hex() + "\n")
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(credentials))
    config = hub_config(tmp_path, broker.port, "at-rest-cred")
    async with running_hub(config):
        pass
    assert not (config.state_dir / KEY_FILE).exists()
    await _store_one(config.state_dir)
    (credentials / CREDENTIAL).write_bytes(os.urandom(32))  # the wrong key
    with pytest.raises(StorageError, match="does not open with this hub's storage key"):
        async with running_hub(config):
            pass


async def _store_one(state_dir: Path) -> None:
    db = await open_database(state_dir)
    try:
        store = DeviceStore(db)
        await store.create()
        await store.save(_device("00112233aabbccdd", "AA:BB:CC:00:11:22", "Hall"))
    finally:
        await db.close()


def _device(device_id: str, mac: str, name: str | None) -> StoredDevice:
    return StoredDevice(
        id=device_id,
        transport="ble",
        driver="bthome",
        stable_id=mac,
        address=mac,
        mac=mac,
        name=name,
        model="m",
        firmware="1",
        update_available=False,
        update_version=None,
        activated_at=1.0,
        last_seen=None,
    )


async def test_rows_written_in_clear_are_rewritten_sealed(tmp_path: Path) -> None:
    db = await open_database(tmp_path)
    try:
        store = DeviceStore(db)
        await store.create()
        await db.execute(
            "INSERT INTO devices (id, transport, driver, stable_id, address, mac, name, "
            "activated_at) VALUES (?, 'ble', 'bthome', ?, ?, ?, ?, 1.0)",
            ("00112233aabbccdd", b"AA:BB:CC:00:11:22", b"AA:BB:CC:00:11:22", None, b"Den"),
        )
        await db.commit()
        store = DeviceStore(db)
        await store.create()
        (device,) = await store.load()
        assert (device.stable_id, device.mac, device.name) == ("AA:BB:CC:00:11:22", None, "Den")
        async with db.execute("SELECT stable_id, name FROM devices") as cursor:
            row = await cursor.fetchone()
        assert row is not None
        assert b"AA:BB" not in bytes(row[0])
        assert bytes(row[1]).startswith(b"\x01")
        (again,) = await store.load()
        assert again == device
    finally:
        await db.close()


async def test_a_sealed_value_does_not_open_in_another_column_or_row(tmp_path: Path) -> None:
    cipher = StorageCipher(os.urandom(32))
    key, wrapped = cipher.new_device_key("a" * 16)
    assert cipher.unwrap("a" * 16, wrapped) == key
    sealed = cipher.seal(key, "a" * 16, "name", "Den")
    assert cipher.open(key, "a" * 16, "name", sealed) == "Den"
    for device, column in (("a" * 16, "mac"), ("b" * 16, "name")):
        with pytest.raises(StorageError):
            cipher.open(key, device, column, sealed)
    with pytest.raises(StorageError):
        cipher.unwrap("b" * 16, wrapped)


def test_key_formats() -> None:
    raw = os.urandom(32)
    assert parse_key(raw, "k") == raw
    assert parse_key(raw.hex().encode() + b"\n", "k") == raw
    with pytest.raises(ConfigError, match="not a storage key"):
        parse_key(b"short", "k")
