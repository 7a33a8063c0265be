"""The BTHome v2 fast path: numeric objects walked with bthome-ble's own table, and decryption.

Decoders cost as much as publishing (docs/performance.md): bthome-ble's ``update()`` costs ~40
us a message (~55 us encrypted), more than everything else a hub does with it. Thermometers send
nothing but numeric objects, so those are read here with bthome-ble's object table
(``MEAS_TYPES``: id, length, format, factor, device class) and the arithmetic of its value
parsers (``parse_uint`` / ``parse_int``: the integer times the factor, rounded to the factor's
decimals, precomputed here), and keyed as bthome-ble keys them (device class, ``_<n>`` for
repeated kinds), in a few microseconds. Anything else (events, text, raw, timestamps,
device-information objects, MAC-carrying frames) still goes through bthome-ble.
tests/ble/test_bthome_fast.py checks both paths agree on generated messages, plain and
encrypted.
"""

from __future__ import annotations

import functools
from typing import Final, NamedTuple

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESCCM

from drivers.ble.driver import DecodeError

SensorValues = dict[str, tuple[str | None, object]]
"""bthome-ble key -> (unit, value) of sensors."""
BinaryValues = dict[str, object]
"""bthome-ble key -> value of binary sensors."""
NumericValues = tuple[SensorValues, BinaryValues]

# BTHome v2 encryption (https://bthome.io/encryption/): AES-CCM with a 4-byte MIC; service data =
# device information byte + ciphertext + counter (uint32 LE) + MIC; nonce = MAC (6 bytes) +
# UUID 0xFCD2 (LE) + device information byte + counter.
_UUID16_LE: Final = b"\xd2\xfc"
_TRAILER: Final = 8  # counter + MIC
_MIN_CIPHERTEXT: Final = 2  # bthome-ble's minimum payload length for v2
# bthome-ble's replay rules: a smaller counter than the last accepted one is refused, unless it
# is below 100 (the device restarted counting: battery change, counter overflow); and the last
# accepted message itself, sent again, is refused (bthome-ble: ``_is_same_as_last``). Here a
# counter equal to the last accepted one is refused whatever the bytes: the same counter is the
# same AES-CCM nonce, which a device never reuses for another message (bthome-ble would decode a
# different message under a repeated counter; this is the one place the fast path is stricter).
_COUNTER_RESTART: Final = 100


class _Kind(NamedTuple):
    """A numeric BTHome object type as bthome-ble's MEAS_TYPES describes it."""

    length: int
    signed: bool
    factor: float
    decimals: int  # bthome-ble: -exponent of the factor in scientific notation
    form: int  # equal bthome-ble meas_formats share a number (for the "_<n>" suffixes)
    key: str  # bthome-ble's key: the sensor-state-data device class
    unit: str | None
    binary: bool


@functools.cache
def numeric_kinds() -> dict[int, _Kind]:
    """Return object id -> kind for every plain numeric object type of bthome-ble."""
    from bthome_ble.const import MEAS_TYPES  # noqa: PLC0415 - lazy, as the parser is
    from sensor_state_data.description import (  # noqa: PLC0415
        BaseBinarySensorDescription,
        BaseSensorDescription,
    )

    signedness = {"unsigned_integer": False, "signed_integer": True}
    forms: dict[object, int] = {}
    kinds: dict[int, _Kind] = {}
    for object_id, spec in MEAS_TYPES.items():
        form = spec.meas_format
        signed = signedness.get(spec.data_format)
        binary = isinstance(form, BaseBinarySensorDescription)
        if (
            signed is None
            or not isinstance(form, BaseSensorDescription | BaseBinarySensorDescription)
            or not form.device_class
        ):
            continue  # events, text, raw, timestamps, device info: bthome-ble's parser
        unit = None
        if isinstance(form, BaseSensorDescription):
            unit = getattr(form.native_unit_of_measurement, "value", None)
        number = forms.setdefault(form, len(forms))
        decimals = -int(f"{spec.factor:e}".split("e")[-1])  # as bthome_ble.parser.parse_uint
        kinds[object_id] = _Kind(
            spec.data_length,
            signed,
            spec.factor,
            decimals,
            number,
            str(form.device_class),
            unit,
            binary,
        )
    return kinds


def numeric_values(data: bytes, start: int) -> NumericValues | None:
    """Read the objects of ``data`` from ``start``; None unless all are numeric and whole."""
    kinds = numeric_kinds()
    found: list[tuple[_Kind, bytes]] = []
    end = len(data)
    while start < end:
        kind = kinds.get(data[start])
        if kind is None:
            return None
        stop = start + 1 + kind.length
        if stop > end:
            return None
        found.append((kind, data[start + 1 : stop]))
        start = stop
    if not found:
        return None
    repeated = len({k.form for k, _ in found}) < len(found)
    numbered: dict[int, int] = {}
    sensors: SensorValues = {}
    binaries: BinaryValues = {}
    for kind, raw in found:
        key = kind.key
        if repeated and sum(k.form == kind.form for k, _ in found) > 1:
            numbered[kind.form] = numbered.get(kind.form, 0) + 1
            key = f"{key}_{numbered[kind.form]}"
        value = round(
            int.from_bytes(raw, "little", signed=kind.signed) * kind.factor, kind.decimals
        )
        if kind.binary:
            binaries[key] = bool(value)
        else:
            sensors[key] = (kind.unit, value)
    return sensors, binaries


class Decryptor:
    """Opens one device's encrypted BTHome v2 messages; refuses replays like bthome-ble."""

    __slots__ = ("_cipher", "_counter", "_verified")

    def __init__(self, bind_key: bytes) -> None:
        self._cipher = AESCCM(bind_key, tag_length=4)
        self._counter = 0
        self._verified = False

    def open(self, address: str, payload: bytes) -> bytes:
        """Return the plaintext objects of ``payload`` from ``address``; DecodeError if not."""
        if len(payload) < 1 + _MIN_CIPHERTEXT + _TRAILER:
            raise DecodeError("encrypted BTHome message too short")
        count = payload[-_TRAILER:-4]
        counter = int.from_bytes(count, "little")
        if self._verified and counter == self._counter:
            raise DecodeError("encrypted BTHome message replayed (counter did not increase)")
        if self._verified and counter < self._counter and counter >= _COUNTER_RESTART:
            raise DecodeError("encrypted BTHome message replayed (counter went back)")
        try:
            mac = bytes.fromhex(address.replace(":", ""))
        except ValueError:
            mac = b""
        if len(mac) != 6:
            raise DecodeError("encrypted BTHome message from an address that is not a MAC")
        nonce = mac + _UUID16_LE + payload[:1] + count
        try:
            plain = self._cipher.decrypt(nonce, payload[1:-_TRAILER] + payload[-4:], None)
        except InvalidTag as exc:
            raise DecodeError("encrypted BTHome message: bind key missing or wrong") from exc
        self._verified = True
        self._counter = counter
        return plain
