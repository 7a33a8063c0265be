"""Decoders against golden advertisements, and the field catalogue against what they emit."""

from __future__ import annotations

import importlib
import json
from collections.abc import Iterator

import pytest
from bthome_ble.const import MEAS_TYPES

from drivers.base import check_driver
from drivers.ble import DRIVERS, Advert, BleDriver, Decoded, DecodeError, match
from drivers.ble.bthome import BTHomeDriver
from drivers.ble.simulator import bthome_v2, thermometer_objects
from drivers.ble.theengs import MiBeaconDriver, MiScaleDriver
from gateway.consent.catalogue import (
    CATEGORIES,
    DEVICE_NETWORK,
    HEALTH,
    TELEMETRY_ENVIRONMENT,
)

from .helpers import (
    BODY_COMPOSITION,
    BTHOME,
    BTHOME_GOLDEN,
    MIBEACON,
    MIBEACON_GOLDEN,
    MISCALE_GOLDEN,
    WEIGHT_SCALE,
)

# Encrypted BTHome v2 (bthome.io/encryption): objects packet 7, battery 99 %, 21.37 C, 48.5 %
# sealed with this key for this MAC at counter 0x00332211; decrypts with bthome-ble.
ENCRYPTED_ADDRESS = "54:48:E6:8F:80:A5"
ENCRYPTED_KEY = bytes.fromhex("231d39c1d7cc1ab1aee224cd096db932")
ENCRYPTED_GOLDEN = bytes.fromhex("4195e087157136b806ade011223300b5cbeada")
# Mi Body Composition Scale (0x181B): impedance present + stabilised, 2024-05-12 08:30:00,
# 500 ohm, 72.35 kg (control bytes, date-time, impedance uint16 LE, weight 1/200 kg uint16 LE).
MISCALE2_GOLDEN = bytes.fromhex("0226e807050c081e00f4018638")


def decode(
    address: str, uuid: str, data: bytes, *, key: bytes | None = None, name: str | None = None
) -> tuple[BleDriver, Decoded]:
    """Match and decode one advertisement carrying ``data`` as service data ``uuid``."""
    advert = Advert(address, -60, name, {uuid: data})
    driver = match(advert)
    assert driver is not None
    payload = driver.payload(advert)
    assert payload is not None
    return driver, driver.decoder(key).decode(advert, payload, 100.0)


def assert_all_mapped(driver: BleDriver, decoded: Decoded) -> None:
    """Every emitted field has exactly one known category; nothing was dropped unmapped."""
    assert decoded.unmapped == 0
    for name in decoded.fields:
        assert driver.fields[name] in CATEGORIES


def test_bthome_v2_golden() -> None:
    driver, decoded = decode("A4:C1:38:00:00:01", BTHOME, BTHOME_GOLDEN)
    assert driver.name == "bthome"
    assert decoded.fields == {"battery": 100, "temperature": 22.5, "humidity": 50.55}
    assert driver.packet_id(BTHOME_GOLDEN) == 164
    assert_all_mapped(driver, decoded)


def test_mibeacon_golden() -> None:
    driver, decoded = decode("AA:BB:CC:DD:EE:FF", MIBEACON, MIBEACON_GOLDEN)
    assert (driver.name, decoded.model) == ("mibeacon", "LYWSDCGQ")
    assert decoded.fields == {"temperature": 23.4, "humidity": 45.6, "mac": "AA:BB:CC:DD:EE:FF"}
    assert driver.packet_id(MIBEACON_GOLDEN) == 0x01  # MiBeacon frame counter
    assert_all_mapped(driver, decoded)


def test_mi_scale_v1_golden() -> None:
    driver, decoded = decode("C8:47:8C:00:00:01", WEIGHT_SCALE, MISCALE_GOLDEN)
    assert (driver.name, decoded.model) == ("miscale", "XMTZC01HM/XMTZC04HM")
    assert decoded.fields["weight"] == 72.35
    assert decoded.fields["weight_unit"] == "kg"
    assert_all_mapped(driver, decoded)


def test_mi_body_composition_scale() -> None:
    driver, decoded = decode("C8:47:8C:00:00:02", BODY_COMPOSITION, MISCALE2_GOLDEN)
    assert decoded.model == "XMTZC02HM/XMTZC05HM"
    assert (decoded.fields["weight"], decoded.fields["impedance"]) == (72.35, 500)
    assert_all_mapped(driver, decoded)


def test_encrypted_bthome_with_its_bind_key() -> None:
    driver, decoded = decode(ENCRYPTED_ADDRESS, BTHOME, ENCRYPTED_GOLDEN, key=ENCRYPTED_KEY)
    assert decoded.fields == {"battery": 99, "temperature": 21.37, "humidity": 48.5}
    assert driver.packet_id(ENCRYPTED_GOLDEN) is None  # hidden inside the ciphertext
    # the simulator's encoder produces exactly these bytes
    objects = thermometer_objects(7, 99, 21.37, 48.5)
    assert (
        bthome_v2(objects, address=ENCRYPTED_ADDRESS, bind_key=ENCRYPTED_KEY, counter=0x00332211)
        == ENCRYPTED_GOLDEN
    )


@pytest.mark.parametrize("key", [None, bytes(16)], ids=["no key", "wrong key"])
def test_encrypted_bthome_without_the_right_key_is_refused(key: bytes | None) -> None:
    with pytest.raises(DecodeError) as raised:
        decode(ENCRYPTED_ADDRESS, BTHOME, ENCRYPTED_GOLDEN, key=key)
    assert raised.value.reason == "decode_failed"


def test_plain_message_from_a_keyed_device_is_refused() -> None:
    with pytest.raises(DecodeError, match="bind key"):
        decode(ENCRYPTED_ADDRESS, BTHOME, BTHOME_GOLDEN, key=ENCRYPTED_KEY)


def test_bind_key_must_be_16_bytes() -> None:
    with pytest.raises(DecodeError):
        BTHomeDriver().decoder(b"short")


def test_categories_of_the_sensitive_and_identifying_fields() -> None:
    bthome, mibeacon, scale = (d.fields for d in DRIVERS)
    assert scale["weight"] == scale["impedance"] == bthome["weight"] == HEALTH
    assert bthome["temperature"] == mibeacon["humidity"] == TELEMETRY_ENVIRONMENT
    assert bthome["battery"] == bthome["moisture"] == bthome["illuminance"] == TELEMETRY_ENVIRONMENT
    assert bthome["rssi"] == mibeacon["mac"] == DEVICE_NETWORK


@pytest.mark.parametrize("driver", DRIVERS, ids=lambda d: d.name)
def test_drivers_satisfy_the_driver_contract(driver: BleDriver) -> None:
    assert check_driver(driver) == []


def _bthome_object(object_id: int) -> bytes:
    """One valid BTHome v2 object of type ``object_id`` (value 1 where a value is needed)."""
    kind = MEAS_TYPES[object_id]
    if kind.data_format in ("string", "raw"):
        return bytes([object_id, 2]) + b"ok"
    if kind.data_format == "command":
        return bytes([object_id, 0, 0x01])  # no arguments, opcode 1 ("on")
    return bytes([object_id]) + (1).to_bytes(kind.data_length, "little")


def _bthome_objects() -> Iterator[int]:
    yield from sorted(MEAS_TYPES)


@pytest.mark.parametrize("object_id", list(_bthome_objects()), ids=hex)
def test_every_bthome_object_type_maps_to_a_category(object_id: int) -> None:
    """Enumerate everything bthome-ble can emit: each field is mapped, none is dropped."""
    data = bytes([0x40]) + _bthome_object(object_id)
    driver, decoded = decode("A4:C1:38:00:00:01", BTHOME, data)
    assert_all_mapped(driver, decoded)
    twice = bytes([0x40]) + _bthome_object(object_id) * 2  # two of a kind: "<field>_1", "_2"
    driver, decoded = decode("A4:C1:38:00:00:02", BTHOME, twice)
    assert_all_mapped(driver, decoded)


@pytest.mark.parametrize("driver", [MiBeaconDriver(), MiScaleDriver()], ids=lambda d: d.name)
def test_every_theengs_property_of_the_declared_models_is_mapped(driver: BleDriver) -> None:
    """Enumerate what theengsdecoder emits for each model a driver declares."""
    theengs = importlib.import_module("TheengsDecoder")
    models = getattr(driver, "models", ())
    assert models
    for model in models:
        properties = json.loads(theengs.getProperties(model))["properties"]
        decoded, unmapped = _theengs_map(driver, dict.fromkeys(properties, 1))
        assert unmapped == 0, (model, properties)
        assert set(decoded) <= set(driver.fields)


def _theengs_map(driver: BleDriver, native: dict[str, object]) -> tuple[dict[str, object], int]:
    from drivers.ble import theengs  # noqa: PLC0415 - the private map is what is checked

    fields, unmapped = theengs._FIELD_MAP.apply(native.items())
    return dict(fields), unmapped


def test_unmapped_output_is_dropped_and_counted() -> None:
    from drivers.ble import theengs  # noqa: PLC0415

    fields, unmapped = theengs._FIELD_MAP.apply(
        [("tempc", 20.5), ("brand", "Xiaomi"), ("new_sensor", 3)]
    )
    assert (fields, unmapped) == ({"temperature": 20.5}, 1)


def test_mibeacon_frame_without_object_carries_no_reading() -> None:
    frame = bytes.fromhex("1020aa0101ffeeddccbbaa")  # frame control without "object included"
    _driver, decoded = decode("AA:BB:CC:DD:EE:FF", MIBEACON, frame)
    assert decoded.fields == {}


def test_encrypted_mibeacon_is_a_typed_error() -> None:
    frame = bytes.fromhex("5830aa0101ffeeddccbbaa0000")  # frame control bit 3: encrypted
    with pytest.raises(DecodeError, match="encrypted"):
        decode("AA:BB:CC:DD:EE:FF", MIBEACON, frame)
