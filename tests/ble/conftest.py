"""Fixtures of the BLE tests: a private D-Bus system bus with a mocked BlueZ, driven by bleak's
real BlueZ backend (no bleak mocks), plus the hub components BLE discovery talks to.

``PrivateDBus(BusType.SYSTEM)`` starts a dbus-daemon of our own and points
``DBUS_SYSTEM_BUS_ADDRESS`` at it, so nothing here can touch the machine's system bus.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import AsyncIterator, Iterator, Mapping
from pathlib import Path
from typing import Any

import aiosqlite
import dbus
import pytest
from dbusmock.testcase import BusType, PrivateDBus, SpawnedMock

from drivers.ble.advert import uuid16
from gateway.consent.policy import ConsentPolicy
from gateway.devices import DeviceRegistry
from gateway.pseudonym import Pseudonymizer
from gateway.storage.db import open_database
from gateway.tasks import running

TEMPLATE = Path(__file__).with_name("bluez_template.py")
ADAPTER = "hci0"
DIS_UUID = uuid16(0x180A)


class FakeBlueZ:
    """Drives the mocked bluetoothd: devices, their advertisements, GATT, injected failures."""

    def __init__(self, mock: SpawnedMock) -> None:
        self.mock = mock
        self.bus = dbus.bus.BusConnection(os.environ["DBUS_SYSTEM_BUS_ADDRESS"])
        self.api = dbus.Interface(mock.obj, "org.bluez.Mock")

    def close(self) -> None:
        """Drop the test's own bus connection."""
        self.bus.close()

    def add_adapter(self) -> str:
        """Add (or bring back) the adapter; return its path."""
        return str(self.api.AddAdapter(ADAPTER, "hub-test"))

    def remove_adapter(self) -> None:
        """Make the adapter disappear, devices included (unplugged dongle, crashed daemon)."""
        self.api.RemoveAdapterWithDevices(ADAPTER)

    def add_device(self, address: str, name: str = "", rssi: int = -60) -> str:
        """Add an LE device; return its object path."""
        return str(self.api.AddLEDevice(ADAPTER, address, name, rssi))

    def advertise(
        self,
        path: str,
        *,
        rssi: int = -60,
        service_data: Mapping[str, bytes] | None = None,
        manufacturer_data: Mapping[int, bytes] | None = None,
    ) -> None:
        """Make the device advertise: BlueZ updates its properties, bleak gets the signal."""
        props: dict[str, Any] = {"RSSI": dbus.Int16(rssi)}
        if service_data is not None:
            props["ServiceData"] = dbus.Dictionary(
                {k: dbus.Array(v, signature="y") for k, v in service_data.items()}, signature="sv"
            )
        if manufacturer_data is not None:
            props["ManufacturerData"] = dbus.Dictionary(
                {
                    dbus.UInt16(k): dbus.Array(v, signature="y")
                    for k, v in manufacturer_data.items()
                },
                signature="qv",
            )
        self._control(path).UpdateProperties("org.bluez.Device1", props)

    def add_device_information(self, path: str, values: Mapping[int, bytes]) -> dict[int, str]:
        """Give the device a Device Information Service; return characteristic paths by id."""
        service = str(self.api.AddGattService(path, 0x0010, DIS_UUID))
        return {
            short: str(
                self.api.AddGattCharacteristic(
                    service, 0x0011 + 2 * i, uuid16(short), dbus.ByteArray(value), ["read"]
                )
            )
            for i, (short, value) in enumerate(values.items())
        }

    def fail_connect(self, path: str, message: str) -> None:
        """Make Connect fail with org.bluez.Error.Failed (empty message: succeed again)."""
        self.api.SetConnectFailure(path, message)

    def read_error(
        self, chrc_path: str, error_name: str, message: str, *, until_bonded: bool = False
    ) -> None:
        """Make ReadValue of a characteristic fail as bluetoothd does (D-Bus error, message)."""
        self.api.SetReadError(chrc_path, error_name, message, until_bonded)

    def announcing(self, enabled: bool) -> None:
        """Switch BlueZ's periodic re-announcement of known devices on or off."""
        self.api.SetAnnouncing(enabled)

    def calls(self, path: str) -> dict[str, int]:
        """Return how often Connect and Pair were called on a device."""
        return {str(k): int(v) for k, v in self.api.DeviceCalls(path).items()}

    def discovering(self) -> bool:
        """Return whether discovery (active scanning) runs on the adapter."""
        adapter = self.bus.get_object("org.bluez", f"/org/bluez/{ADAPTER}")
        props = dbus.Interface(adapter, dbus.PROPERTIES_IFACE)
        return bool(props.Get("org.bluez.Adapter1", "Discovering"))

    def monitors(self) -> int:
        """Return how many advertisement monitors (passive scans) are registered."""
        count = self._control("/org/bluez/" + ADAPTER).GetCalls()
        registered = sum(1 for _t, name, _a in count if name == "RegisterMonitor")
        unregistered = sum(1 for _t, name, _a in count if name == "UnregisterMonitor")
        return registered - unregistered

    def _control(self, path: str) -> Any:
        return dbus.Interface(self.bus.get_object("org.bluez", path), "org.freedesktop.DBus.Mock")


def _spawn(parameters: dict[str, Any]) -> Iterator[FakeBlueZ]:
    with PrivateDBus(BusType.SYSTEM):
        mock = SpawnedMock.spawn_with_template(str(TEMPLATE), parameters, stdout=subprocess.DEVNULL)
        fake = FakeBlueZ(mock)
        try:
            fake.add_adapter()
            yield fake
        finally:
            fake.close()
            mock.terminate()


@pytest.fixture
def bluez() -> Iterator[FakeBlueZ]:
    """A mocked BlueZ (adapter hci0, passive scanning supported) on a private system bus."""
    yield from _spawn({})


@pytest.fixture
def old_bluez() -> Iterator[FakeBlueZ]:
    """A mocked BlueZ without AdvertisementMonitorManager1 (no passive scanning)."""
    yield from _spawn({"enable_monitor_api": False})


@pytest.fixture
async def db(tmp_path: Path) -> AsyncIterator[aiosqlite.Connection]:
    """The hub database in a fresh state directory."""
    connection = await open_database(tmp_path / "state")
    yield connection
    await connection.close()


@pytest.fixture
def policy() -> ConsentPolicy:
    """Default consent (bluetooth on, network and health off)."""
    return ConsentPolicy()


@pytest.fixture
async def registry(
    db: aiosqlite.Connection, policy: ConsentPolicy
) -> AsyncIterator[DeviceRegistry]:
    """The real device registry (no BLE sweep of its own: BLE discovery reports offline)."""
    async with running(
        DeviceRegistry(
            db, Pseudonymizer(os.urandom(32)), policy, pair_timeout_s=10.0, pair_retry_s=0.0
        )
    ) as devices:
        yield devices
