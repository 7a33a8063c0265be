"""Xiaomi MiBeacon sensors and Mi scales, decoded by theengsdecoder (100+ models, JSON in/out).

TheengsDecoder walks its whole model table until one matches: ~20 us for a MiBeacon thermometer,
~120 us for a scale, ~1 ms for bytes no model accepts. It is therefore only ever called for
advertisements a driver here matched and duplicate suppression let through, and once it has named
a model, messages that model's condition accepts are decoded from theengs's own definition of it
(``drivers.ble.theengs_fast``) in a few microseconds.
"""

from __future__ import annotations

import importlib
import json
from collections.abc import Callable
from functools import cache
from typing import Final

from drivers.base import Match
from drivers.ble.advert import Advert, short_uuid, uuid16
from drivers.ble.driver import BleDecoder, BleDriver, Decoded, DecodeError, FieldMap, catalogue
from drivers.ble.theengs_fast import Message, Model, Reading, UnreadableError, compile_model
from gateway.consent.catalogue import DEVICE_NETWORK, HEALTH, TELEMETRY_ENVIRONMENT

MIBEACON_UUID: Final = uuid16(0xFE95)
# Bluetooth SIG assigned 16-bit UUIDs: 0x181D Weight Scale service, 0x181B Body Composition.
WEIGHT_SCALE_UUID: Final = uuid16(0x181D)
BODY_COMPOSITION_UUID: Final = uuid16(0x181B)

# theengsdecoder property keys (see TheengsDecoder.getProperties(model_id)) -> our field names.
_RENAMES: Final = {
    "tempc": "temperature",
    "hum": "humidity",
    "batt": "battery",
    "volt": "voltage",
    "lux": "illuminance",
    "moi": "moisture",
    "fer": "conductivity",
    "darkness": "darkness",
    "motion": "motion",
    "open": "opening",
    "weight": "weight",
    "impedance": "impedance",
    "weighing_mode": "weighing_mode",
    "unit": "weight_unit",
    "mac": "mac",
}
# Input echoes, identity and derived values: not readings.
_IGNORED: Final = frozenset(
    {
        "servicedata",
        "servicedatauuid",
        "manufacturerdata",
        "name",
        "id",
        "rssi",
        "brand",
        "model",
        "model_id",
        "type",
        "cidc",
        "acts",
        "cont",
        "track",
        "tempf",
        "mfid",
    }
)
FIELDS: Final = catalogue(
    (
        TELEMETRY_ENVIRONMENT,
        (
            "temperature",
            "humidity",
            "battery",
            "voltage",
            "illuminance",
            "moisture",
            "conductivity",
            "darkness",
            "motion",
            "opening",
        ),
    ),
    (HEALTH, ("weight", "impedance", "weighing_mode", "weight_unit")),
    (DEVICE_NETWORK, ("mac",)),
)
_FIELD_MAP: Final = FieldMap(FIELDS, renames=_RENAMES, ignored=_IGNORED)

# MiBeacon frame control (first two bytes, little endian), per the Xiaomi IoT MiBeacon spec:
# bit 3 encrypted, bit 6 object included; the frame counter is byte 4.
_MIBEACON_ENCRYPTED: Final = 0x0008
_MIBEACON_OBJECT: Final = 0x0040


@cache
def _decode_ble() -> Callable[[str], str | None]:
    # The extension module is named TheengsDecoder (no type information): imported lazily.
    module = importlib.import_module("TheengsDecoder")
    decode: Callable[[str], str | None] = module.decodeBLE
    return decode


class _TheengsDecoder:
    """One per driver, shared by its devices: theengs, with the models it named compiled."""

    __slots__ = ("_models", "_uuids")

    def __init__(self, uuids: tuple[str, ...]) -> None:
        self._uuids = uuids
        self._models: list[Model] = []  # compiled models theengs named, tried in that order

    def decode(self, advert: Advert, payload: bytes, now: float) -> Decoded:
        """Decode one service-data payload as theengsdecoder does; DecodeError if none fits."""
        uuid = next((u for u in self._uuids if u in advert.service_data), self._uuids[0])
        message = Message(payload.hex(), f"{short_uuid(uuid):04x}", advert.name or None)
        for model in self._models:
            try:
                result = model.decode(message)
            except UnreadableError:
                break
            if result is not None:
                return _decoded(result)
        result = self._theengs(message)
        model_id = result.get("model_id")
        compiled = compile_model(model_id) if isinstance(model_id, str) else None  # cached
        if compiled is not None and all(m is not compiled for m in self._models):
            self._models.append(compiled)
        return _decoded(result)

    @staticmethod
    def _theengs(message: Message) -> Reading:
        doc = {"servicedata": message.data, "servicedatauuid": f"0x{message.uuid}"}
        if message.name:
            doc["name"] = message.name
        out = _decode_ble()(json.dumps(doc))
        if out is None:
            raise DecodeError("no theengsdecoder model accepts this message")
        try:
            result = json.loads(out)
        except ValueError as exc:
            raise DecodeError("theengsdecoder returned invalid JSON") from exc
        if not isinstance(result, dict):
            raise DecodeError("theengsdecoder returned invalid JSON")
        return result


def _decoded(result: Reading) -> Decoded:
    fields, unmapped = _FIELD_MAP.apply(result.items())
    model = result.get("model_id")
    return Decoded(fields, model if isinstance(model, str) else None, unmapped)


class MiBeaconDriver(BleDriver):
    """Xiaomi MiBeacon (service data 0xFE95): Mijia thermometers, Flower Care, motion sensors."""

    name = "mibeacon"
    match = Match(ble_service_uuids=(MIBEACON_UUID,))
    fields = FIELDS
    models: Final = ("LYWSDCGQ", "LYWSD02", "CGG1", "HHCCJCY01HHCC", "MUE4094RT")
    """Models this driver is known to serve (their theengs properties are all mapped)."""

    def __init__(self) -> None:
        super().__init__()
        self._decoder = _MiBeaconDecoder((MIBEACON_UUID,))

    def packet_id(self, payload: bytes) -> int | None:
        """Return the MiBeacon frame counter (byte 4)."""
        return payload[4] if len(payload) > 4 else None

    def decoder(self, bind_key: bytes | None = None) -> BleDecoder:
        """Return the shared stateless decoder (encrypted MiBeacon is not supported)."""
        return self._decoder


class _MiBeaconDecoder(_TheengsDecoder):
    __slots__ = ()

    def decode(self, advert: Advert, payload: bytes, now: float) -> Decoded:
        """Decode a MiBeacon frame; frames without an object carry no reading."""
        if len(payload) < 5:
            raise DecodeError("MiBeacon frame shorter than its header")
        control = int.from_bytes(payload[:2], "little")
        if control & _MIBEACON_ENCRYPTED:
            raise DecodeError("encrypted MiBeacon frames are not supported")
        if not control & _MIBEACON_OBJECT:
            return Decoded({})
        return super().decode(advert, payload, now)


class MiScaleDriver(BleDriver):
    """Xiaomi Mi Smart Scale (0x181D) and Mi Body Composition Scale (0x181B): health data."""

    name = "miscale"
    match = Match(ble_service_uuids=(WEIGHT_SCALE_UUID, BODY_COMPOSITION_UUID))
    fields = FIELDS
    models: Final = ("XMTZC01HM/XMTZC04HM", "XMTZC02HM/XMTZC05HM")
    """Models this driver is known to serve (their theengs properties are all mapped)."""

    def __init__(self) -> None:
        super().__init__()
        self._decoder = _TheengsDecoder((WEIGHT_SCALE_UUID, BODY_COMPOSITION_UUID))

    def decoder(self, bind_key: bytes | None = None) -> BleDecoder:
        """Return the shared stateless decoder."""
        return self._decoder
