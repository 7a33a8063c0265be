"""python-dbusmock template: BlueZ 5 for bleak's real BlueZ backend, with LE devices and GATT.

Loaded in the mock's own process with ``SpawnedMock.spawn_with_template(<this file>)``. It is
the stock ``bluez5`` template plus what bleak needs and the stock one lacks:

- LE devices whose ``ServiceData`` / ``ManufacturerData`` have BlueZ's real types (``a{sv}`` /
  ``a{qv}``; the stock template's array of dicts makes bleak's scanner fail);
- ``Connect`` that sets ``Connected`` then ``ServicesResolved`` (bleak waits for both), with
  injectable ``org.bluez.Error.Failed``; ``Pair`` that sets ``Paired`` and ``Bonded``;
- GATT services and characteristics (``ReadValue`` with injectable ``NotPermitted``);
- re-announcing every known device every 200 ms while discovery runs (as real advertisers do;
  bleak's client only listens after ``StartDiscovery``), switchable off to starve a watchdog.
"""

# ruff: noqa: N802  (D-Bus method names are CamelCase by convention)
# ruff: noqa: F403  (a dbusmock template extends the stock one by star import)

from __future__ import annotations

import ctypes
from collections.abc import Callable
from typing import Any, TypeVar, cast

import dbus
from dbusmock import OBJECT_MANAGER_IFACE, mockobject
from dbusmock.templates import bluez5 as _bluez5
from dbusmock.templates.bluez5 import *  # BUS_NAME, MAIN_OBJ, load, RemoveAdapter, ...
from dbusmock.templates.bluez5 import BLUEZ_MOCK_IFACE, DEVICE_IFACE

F = TypeVar("F", bound=Callable[..., Any])
GATT_SERVICE_IFACE = "org.bluez.GattService1"
GATT_CHRC_IFACE = "org.bluez.GattCharacteristic1"
ADAPTER_IFACE = "org.bluez.Adapter1"
ADV_INTERVAL_MS = 200


def _mock_method(in_signature: str, out_signature: str = "") -> Callable[[F], F]:
    """dbus-python's method decorator, typed (dbus has no type information)."""
    decorator = dbus.service.method(
        BLUEZ_MOCK_IFACE, in_signature=in_signature, out_signature=out_signature
    )
    return cast(Callable[[F], F], decorator)


def _added(path: str, iface: str, props: dict[str, Any]) -> None:
    mockobject.objects["/"].EmitSignal(
        OBJECT_MANAGER_IFACE,
        "InterfacesAdded",
        "oa{sa{sv}}",
        [dbus.ObjectPath(path), {iface: props}],
    )


def _changed(obj: Any, iface: str, props: dict[str, Any]) -> None:
    obj.props[iface].update(props)
    obj.EmitSignal(dbus.PROPERTIES_IFACE, "PropertiesChanged", "sa{sv}as", [iface, props, []])


def _le_connect(device: Any) -> None:
    if device.connected:
        raise dbus.exceptions.DBusException(
            "Already Connected", name="org.bluez.Error.AlreadyConnected"
        )
    device.connect_calls += 1
    if device.fail_connect:
        raise dbus.exceptions.DBusException(device.fail_connect, name="org.bluez.Error.Failed")
    device.connected = True
    # bluetoothd: Connected, then (after GATT discovery) ServicesResolved
    _changed(device, DEVICE_IFACE, {"Connected": dbus.Boolean(True)})
    _changed(device, DEVICE_IFACE, {"ServicesResolved": dbus.Boolean(True)})


def _le_disconnect(device: Any) -> None:
    device.connected = False
    _changed(
        device,
        DEVICE_IFACE,
        {"ServicesResolved": dbus.Boolean(False), "Connected": dbus.Boolean(False)},
    )


def _le_pair(device: Any) -> None:
    device.pair_calls += 1
    _changed(device, DEVICE_IFACE, {"Paired": dbus.Boolean(True), "Bonded": dbus.Boolean(True)})


@_mock_method("sssn", "s")
def AddLEDevice(self: Any, adapter: str, address: str, name: str, rssi: int) -> str:
    """Add an LE device with empty, correctly typed advertisement data; return its path."""
    apath = "/org/bluez/" + adapter
    path = f"{apath}/dev_{address.replace(':', '_').upper()}"
    props = {
        "Address": dbus.String(address),
        "AddressType": dbus.String("public"),
        "Name": dbus.String(name),
        "Alias": dbus.String(name),
        "Adapter": dbus.ObjectPath(apath),
        "Paired": dbus.Boolean(False),
        "Bonded": dbus.Boolean(False),
        "Trusted": dbus.Boolean(False),
        "Blocked": dbus.Boolean(False),
        "Connected": dbus.Boolean(False),
        "ServicesResolved": dbus.Boolean(False),
        "LegacyPairing": dbus.Boolean(False),
        "RSSI": dbus.Int16(rssi),
        "UUIDs": dbus.Array([], signature="s"),
        "ManufacturerData": dbus.Dictionary({}, signature="qv"),
        "ServiceData": dbus.Dictionary({}, signature="sv"),
    }
    self.AddObject(
        path,
        DEVICE_IFACE,
        props,
        [
            ("Connect", "", "", _le_connect),
            ("Disconnect", "", "", _le_disconnect),
            ("Pair", "", "", _le_pair),
            ("CancelPairing", "", "", ""),
        ],
    )
    device = mockobject.objects[path]
    device.connected = False
    device.fail_connect = ""
    device.connect_calls = 0
    device.pair_calls = 0
    _added(path, DEVICE_IFACE, props)
    return path


@_mock_method("ss")
def SetConnectFailure(self: Any, device_path: str, message: str) -> None:
    """Make ``Connect`` of a device fail with org.bluez.Error.Failed (empty: succeed)."""
    mockobject.objects[device_path].fail_connect = message


@_mock_method("s", "a{sv}")
def DeviceCalls(self: Any, device_path: str) -> dict[str, Any]:
    """Return how often ``Connect`` and ``Pair`` were called on a device."""
    device = mockobject.objects[device_path]
    return {"Connect": dbus.Int32(device.connect_calls), "Pair": dbus.Int32(device.pair_calls)}


def _read_value(chrc: Any, options: Any) -> Any:
    if chrc.read_error:
        name, message, until_bonded = chrc.read_error
        device = mockobject.objects[chrc.path.rsplit("/", 2)[0]]
        if not (until_bonded and device.props[DEVICE_IFACE]["Bonded"]):
            raise dbus.exceptions.DBusException(message, name=name)
    return chrc.props[GATT_CHRC_IFACE]["Value"]


@_mock_method("sqs", "s")
def AddGattService(self: Any, device_path: str, handle: int, uuid: str) -> str:
    """Add a primary GATT service to a device; return its path."""
    path = f"{device_path}/service{handle:04x}"
    props = {
        "UUID": dbus.String(uuid),
        "Device": dbus.ObjectPath(device_path),
        "Primary": dbus.Boolean(True),
        "Includes": dbus.Array([], signature="o"),
    }
    self.AddObject(path, GATT_SERVICE_IFACE, props, [])
    _added(path, GATT_SERVICE_IFACE, props)
    return path


@_mock_method("sqsayas", "s")
def AddGattCharacteristic(
    self: Any, service_path: str, handle: int, uuid: str, value: Any, flags: Any
) -> str:
    """Add a characteristic with a value to a service; return its path."""
    path = f"{service_path}/char{handle:04x}"
    props = {
        "UUID": dbus.String(uuid),
        "Service": dbus.ObjectPath(service_path),
        "Value": dbus.Array(value, signature="y"),
        "Flags": dbus.Array(flags, signature="s"),
        "Notifying": dbus.Boolean(False),
    }
    self.AddObject(path, GATT_CHRC_IFACE, props, [("ReadValue", "a{sv}", "ay", _read_value)])
    mockobject.objects[path].read_error = ()
    _added(path, GATT_CHRC_IFACE, props)
    return path


@_mock_method("sssb")
def SetReadError(
    self: Any, chrc_path: str, error_name: str, message: str, until_bonded: bool
) -> None:
    """Make ``ReadValue`` of a characteristic fail with ``error_name`` (until bonded)."""
    mockobject.objects[chrc_path].read_error = (error_name, message, bool(until_bonded))


# dbusmock's main loop is plain GLib; its timers are reachable without PyGObject.
_glib = ctypes.CDLL("libglib-2.0.so.0")
_SourceFunc = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_void_p)
_glib.g_timeout_add.argtypes = [ctypes.c_uint, _SourceFunc, ctypes.c_void_p]
_ticking: set[str] = set()  # adapters whose re-announce timer runs
_callbacks: list[Any] = []  # ctypes callbacks must outlive every GLib call into them
_announcing = {"on": True}


@_mock_method("b")
def SetAnnouncing(self: Any, enabled: bool) -> None:
    """Switch the periodic re-announcement of known devices on or off."""
    _announcing["on"] = bool(enabled)


def _start_discovery(adapter: Any) -> None:
    _bluez5.StartDiscovery(adapter)

    def tick(_data: Any) -> int:
        if (
            mockobject.objects.get(adapter.path) is not adapter
            or not adapter.props[ADAPTER_IFACE]["Discovering"]
        ):
            _ticking.discard(adapter.path)
            return 0
        if _announcing["on"]:
            for path, obj in list(mockobject.objects.items()):
                if path.startswith(adapter.path + "/dev_") and path.count("/") == 4:
                    _changed(obj, DEVICE_IFACE, {"RSSI": obj.props[DEVICE_IFACE]["RSSI"]})
        return 1

    if adapter.path not in _ticking:
        _ticking.add(adapter.path)
        callback = _SourceFunc(tick)
        _callbacks.append(callback)
        _glib.g_timeout_add(ADV_INTERVAL_MS, callback, None)


@_mock_method("ss", "s")
def AddAdapter(self: Any, device_name: str, system_name: str) -> str:
    """The stock AddAdapter, with a StartDiscovery that re-announces devices."""
    path: str = _bluez5.AddAdapter(self, device_name, system_name)
    mockobject.objects[path].AddMethod(ADAPTER_IFACE, "StartDiscovery", "", "", _start_discovery)
    return path
