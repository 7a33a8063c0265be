"""BTHome v2 (https://bthome.io/format/), decoded by bthome-ble, the reference parser.

bthome-ble takes habluetooth's ``BluetoothServiceInfoBleak``; it reads only name, address, rssi,
service data and ``time`` from it, so the cheapest correct input is that class with no
``BLEDevice`` and no bleak ``AdvertisementData`` (both may be None). The library and its
dependencies are imported on first use: they cost ~130 ms and ~15 MiB.
"""

from __future__ import annotations

import functools
import logging
import struct
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any, Final

from drivers.base import Match
from drivers.ble.advert import Advert, uuid16
from drivers.ble.bthome_fast import Decryptor, NumericValues, numeric_values
from drivers.ble.driver import (
    BleDecoder,
    BleDriver,
    Decoded,
    DecodeError,
    FieldMap,
    catalogue,
)
from gateway.consent.catalogue import DEVICE_BASIC, HEALTH, TELEMETRY_ENVIRONMENT, USAGE
from gateway.model import Value

if TYPE_CHECKING:
    from bthome_ble import BTHomeBluetoothDeviceData

BTHOME_V2_UUID: Final = uuid16(0xFCD2)
# BTHome v2 "BTHome Device Information" byte (https://bthome.io/format/): bit 0 encryption,
# bit 2 trigger-based device, bits 5-7 version; bthome-ble also honours bit 1 as "MAC included"
# (six address bytes follow). Object 0x00 is the packet id and object ids come in ascending
# order, so when present it is the first object.
_ENCRYPTED: Final = 0x01
_MAC_INCLUDED: Final = 0x02
_PACKET_ID_OBJECT: Final = 0x00
_VERSION_2: Final = 2
_SOURCE: Final = "consentgate"
_NO_DEVICE: Final[Any] = None

# bthome-ble keys are the sensor-state-data device class, plus "_<n>" when a message carries
# several objects of one kind. Where one class comes in several units, or a binary class shares
# its name with a sensor class, the field gets an explicit name.
_UNIT_NAMES: Final = {
    ("mass", "kg"): "weight",
    ("mass", "lb"): "weight_lb",
    ("distance", "m"): "distance_m",
    ("volume", "mL"): "volume_ml",
}
_BINARY_NAMES: Final = {
    "battery": "battery_low",
    "power": "power_on",
    "moisture": "moisture_detected",
    "gas": "gas_detected",
}
_IGNORED: Final = frozenset({"packet_id", "signal_strength"})  # dedupe metadata; rssi is ours
_ENVIRONMENT: Final = (
    # sensors
    "temperature",
    "humidity",
    "pressure",
    "illuminance",
    "dew_point",
    "count",
    "energy",
    "power",
    "voltage",
    "pm25",
    "pm10",
    "carbon_dioxide",
    "volatile_organic_compounds",
    "moisture",
    "battery",
    "rotation",
    "distance",
    "distance_m",
    "duration",
    "current",
    "speed",
    "uv_index",
    "volume",
    "volume_ml",
    "volume_flow_rate",
    "gas",
    "water",
    "timestamp",
    "acceleration",
    "gyroscope",
    "volume_storage",
    "conductivity",
    "direction",
    "precipitation",
    "channel",
    "rotational_speed",
    "light_level",
    # binary sensors
    "generic",
    "power_on",
    "opening",
    "battery_low",
    "battery_charging",
    "carbon_monoxide",
    "cold",
    "connectivity",
    "door",
    "garage_door",
    "gas_detected",
    "heat",
    "light",
    "lock",
    "moisture_detected",
    "motion",
    "moving",
    "occupancy",
    "plug",
    "presence",
    "problem",
    "running",
    "safety",
    "smoke",
    "sound",
    "tamper",
    "vibration",
    "window",
    # events (the value is the event type, e.g. "press")
    "button",
    "dimmer",
    "command",
)
_HEALTH: Final = ("weight", "weight_lb")
_USAGE: Final = ("text", "raw")  # free-form device content: governed by the strictest fit
_BASIC: Final = ("settings_revision",)
_MAX_INSTANCES: Final = 4  # "temperature_1" .. "temperature_4"


def _with_instances(names: tuple[str, ...]) -> Iterator[str]:
    for name in names:
        yield name
        yield from (f"{name}_{n}" for n in range(1, _MAX_INSTANCES + 1))


FIELDS: Final = catalogue(
    (TELEMETRY_ENVIRONMENT, _with_instances(_ENVIRONMENT)),
    (HEALTH, _with_instances(_HEALTH)),
    (USAGE, _with_instances(_USAGE)),
    (DEVICE_BASIC, _with_instances(_BASIC)),
)
_FIELDS: Final = FieldMap(FIELDS)
_UNIT_BASES: Final = tuple({base for base, _unit in _UNIT_NAMES})


class _QuietParserLog(logging.Filter):
    """bthome-ble logs addresses, titles and payload hex; none of that may reach our logs."""

    def filter(self, record: logging.LogRecord) -> bool:
        return False


_parser_log = logging.getLogger("bthome_ble.parser")
if not any(isinstance(f, _QuietParserLog) for f in _parser_log.filters):
    _parser_log.addFilter(_QuietParserLog())


class BTHomeDriver(BleDriver):
    """BTHome v2 sensors (ATC/pvvx thermometers, Shelly BLU, b-parasite, DIY), incl. encrypted."""

    name = "bthome"
    match = Match(ble_service_uuids=(BTHOME_V2_UUID,))
    fields = FIELDS

    def packet_id(self, payload: bytes) -> int | None:
        """Return the BTHome packet id of a plain message (encrypted ones hide it)."""
        if not payload or payload[0] & _ENCRYPTED:
            return None
        start = 7 if payload[0] & _MAC_INCLUDED else 1
        if len(payload) > start + 1 and payload[start] == _PACKET_ID_OBJECT:
            return payload[start + 1]
        return None

    def decoder(self, bind_key: bytes | None = None) -> BleDecoder:
        """Return a decoder holding bthome-ble's per-device state and the optional bind key."""
        if bind_key is not None and len(bind_key) != 16:
            raise DecodeError("a BTHome bind key is 16 bytes")
        return _BTHomeDecoder(bind_key)

    def model(self, advert: Advert, payload: bytes, now: float) -> str | None:
        """Return the device type bthome-ble infers (from the local name), if it decodes."""
        try:
            return _BTHomeDecoder(None).full(advert, payload, now).model
        except DecodeError:
            return None


class _BTHomeDecoder:
    __slots__ = ("_data", "_decryptor", "_info", "_last")

    def __init__(self, bind_key: bytes | None) -> None:
        from bthome_ble import BTHomeBluetoothDeviceData  # noqa: PLC0415 - heavy, lazy
        from habluetooth import BluetoothServiceInfoBleak  # noqa: PLC0415

        self._data: BTHomeBluetoothDeviceData = BTHomeBluetoothDeviceData(bindkey=bind_key)
        self._info = BluetoothServiceInfoBleak
        # With a bind key, plain messages are refused (bthome-ble: downgrade protection).
        self._decryptor = None if bind_key is None else Decryptor(bind_key)
        # bthome-ble returns every value it ever saw; a value object is new iff it was updated
        # by this message, so identity tells this message's fields from older ones.
        self._last: dict[object, object] = {}

    def decode(self, advert: Advert, payload: bytes, now: float) -> Decoded:
        """Decode one BTHome service-data payload; DecodeError if invalid or undecryptable."""
        if not payload:
            raise DecodeError("empty BTHome service data")
        info = payload[0]
        if self._decryptor is None:
            fast = plain_numeric(payload)
            if fast is not None:
                return Decoded(*fast)
        elif info & _ENCRYPTED and not info & _MAC_INCLUDED and info >> 5 == _VERSION_2:
            # Replay and key checks happen here for every encrypted message of the device.
            values = numeric_values(self._decryptor.open(advert.address, payload), 0)
            if values is not None:
                return Decoded(*_mapped(values))
        return self.full(advert, payload, now)

    def full(self, advert: Advert, payload: bytes, now: float) -> Decoded:
        """Decode through bthome-ble's parser (every message kind, decryption, replay checks)."""
        if not payload:
            raise DecodeError("empty BTHome service data")
        info = self._info(
            advert.name or advert.address,
            advert.address,
            advert.rssi,
            {},  # manufacturer data
            {BTHOME_V2_UUID: payload},
            [],  # service UUIDs
            _SOURCE,
            _NO_DEVICE,  # bthome-ble never reads the BLEDevice (typed, but declared ``object``)
            None,  # bleak AdvertisementData, built only on demand
            False,  # connectable
            now,
            None,  # tx power
        )
        data = self._data
        try:
            update = data.update(info)
        except (ValueError, IndexError, KeyError, TypeError, OverflowError, struct.error) as exc:
            raise DecodeError(f"invalid BTHome message ({type(exc).__name__})") from exc
        if data.downgrade_detected:
            raise DecodeError("plain BTHome message from a device that has a bind key")
        if payload[0] & _ENCRYPTED and data.decryption_failed:
            raise DecodeError("encrypted BTHome message: bind key missing or wrong")
        fields, unmapped = self._fresh(update)
        device = update.devices.get(None)
        return Decoded(fields, device.model if device is not None else None, unmapped)

    def _fresh(self, update: Any) -> tuple[dict[str, Value], int]:
        """Return this message's fields (mapped) and how many had no category."""
        last = self._last
        out: dict[str, Value] = {}
        unmapped = 0
        for key, value in update.entity_values.items():
            raw = key.key
            if last.get(raw) is value:
                continue
            last[raw] = value
            unit = None
            if raw.startswith(_UNIT_BASES):
                unit = getattr(
                    update.entity_descriptions[key].native_unit_of_measurement, "value", None
                )
            unmapped += _FIELDS.put(out, _name(raw, unit, binary=False), value.native_value)
        for key, value in update.binary_entity_values.items():
            raw = key.key
            if last.get(("binary", raw)) is value:
                continue
            last[("binary", raw)] = value
            unmapped += _FIELDS.put(out, _name(raw, None, binary=True), value.native_value)
        for key, event in update.events.items():  # events are per message already
            unmapped += _FIELDS.put(out, key.key, event.event_type)
        return out, unmapped


def plain_numeric(payload: bytes) -> tuple[dict[str, Value], None, int] | None:
    """Decode a plain BTHome v2 message made only of numeric objects, else return None.

    Encrypted or MAC-carrying messages and any other object kind return None: bthome-ble's
    parser decodes those (see ``drivers.ble.bthome_fast``).
    """
    info = payload[0]
    if info & (_ENCRYPTED | _MAC_INCLUDED) or info >> 5 != _VERSION_2:
        return None
    values = numeric_values(payload, 1)
    return None if values is None else _mapped(values)


def _mapped(values: NumericValues) -> tuple[dict[str, Value], None, int]:
    """Return fields, model (unknown here) and unmapped count of bthome-ble-keyed values."""
    sensors, binaries = values
    out: dict[str, Value] = {}
    unmapped = 0
    for key, (unit, value) in sensors.items():
        unmapped += _FIELDS.put(out, _name(key, unit, binary=False), value)
    for key, value in binaries.items():
        unmapped += _FIELDS.put(out, _name(key, None, binary=True), value)
    return out, None, unmapped


@functools.cache
def _name(key: str, unit: str | None, *, binary: bool) -> str | None:
    """Return our field name for bthome-ble key ``key``, None if ignored (cached: few keys)."""
    base, sep, instance = key.rpartition("_")
    if not (sep and instance.isdigit()):
        base, instance = key, ""
    if not binary and base in _IGNORED:
        return None
    base = _BINARY_NAMES.get(base, base) if binary else _UNIT_NAMES.get((base, unit or ""), base)
    return f"{base}_{instance}" if instance else base
