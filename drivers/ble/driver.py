"""The contract of a BLE driver: what it matches, what it decodes, which category each field is."""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from types import MappingProxyType
from typing import Final, Protocol

from drivers.base import Match
from drivers.ble.advert import Advert
from gateway.consent.catalogue import DEVICE_NETWORK
from gateway.errors import DeviceError
from gateway.model import Value

RSSI_FIELD: Final = "rssi"
"""Every reading carries the advertisement's RSSI (category ``device.network``)."""


class DecodeError(DeviceError):
    """An advertisement a driver matched could not be decoded (reason ``decode_failed``)."""

    def __init__(self, message: str) -> None:
        super().__init__("decode_failed", message)


@dataclass(frozen=True, slots=True)
class Decoded:
    """What a driver made of one advertisement.

    ``fields`` holds only mapped fields (canonical names, each in the driver's ``fields``);
    ``unmapped`` counts decoder outputs that had no category and were dropped; ``model`` is the
    device model the decoder recognised, if any.
    """

    fields: Mapping[str, Value]
    model: str | None = None
    unmapped: int = 0


class BleDecoder(Protocol):
    """Per-device decoder state (packet counters, bind key); one instance per paired device."""

    def decode(self, advert: Advert, payload: bytes, now: float) -> Decoded:
        """Decode ``payload`` (the driver's bytes of ``advert``) seen at monotonic ``now``.

        Raises DecodeError when the bytes are not a valid message of this driver.
        """
        ...


@dataclass(frozen=True, slots=True)
class FieldMap:
    """How a decoder's native output keys become fields: renamed, ignored or unmapped."""

    categories: Mapping[str, str]
    renames: Mapping[str, str] = field(default_factory=dict)
    ignored: frozenset[str] = frozenset()

    def apply(self, native: Iterable[tuple[str, object]]) -> tuple[dict[str, Value], int]:
        """Return the mapped fields of ``native`` and how many keys had no category."""
        out: dict[str, Value] = {}
        unmapped = 0
        for key, value in native:
            if key not in self.ignored:
                unmapped += self.put(out, self.renames.get(key, key), value)
        return out, unmapped

    def put(self, out: dict[str, Value], name: str | None, value: object) -> int:
        """Store field ``name`` in ``out``; return 1 if it has no category (dropped), else 0.

        ``name`` None means "deliberately not a field" (counted as nothing).
        """
        if name is None:
            return 0
        if name not in self.categories:
            return 1
        converted = to_value(value)
        if converted is not None:
            out[name] = converted
        return 0


def to_value(value: object) -> Value:
    """Return ``value`` as a CBOR-friendly field value (None for what cannot be one)."""
    if isinstance(value, bool | int | str | bytes):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, datetime):
        return value.timestamp()
    return None


class BleDriver(ABC):
    """A BLE device family: matchers and field catalogue as data, decoding by a field library.

    ``payload`` picks the bytes the driver decodes (also the duplicate-suppression key);
    ``packet_id`` reads the message counter from them when the format has one, cheaply and
    without decoding; ``decoder`` makes the per-device decoder.
    """

    name: str
    match: Match
    fields: Mapping[str, str]
    bond: bool = False
    """Whether pairing must bond (``org.bluez.Device1.Pair``) before reading characteristics."""

    def __init__(self) -> None:
        self._uuids = tuple(u.lower() for u in self.match.ble_service_uuids)
        self._companies = self.match.ble_company_ids

    def payload(self, advert: Advert) -> bytes | None:
        """Return the bytes of ``advert`` this driver decodes (None if it carries none)."""
        for uuid in self._uuids:
            data = advert.service_data.get(uuid)
            if data is not None:
                return data
        for company in self._companies:
            data = advert.manufacturer_data.get(company)
            if data is not None:
                return data
        return None

    def packet_id(self, payload: bytes) -> int | None:
        """Return the message counter carried in ``payload``, if the format has one."""
        return None

    @abstractmethod
    def decoder(self, bind_key: bytes | None = None) -> BleDecoder:
        """Return a fresh per-device decoder (``bind_key`` for encrypted formats)."""

    def model(self, advert: Advert, payload: bytes, now: float) -> str | None:
        """Return the model a candidate's advertisement reveals, if any (one decode)."""
        try:
            return self.decoder(None).decode(advert, payload, now).model
        except DecodeError:
            return None


def catalogue(*groups: tuple[str, Iterable[str]]) -> Mapping[str, str]:
    """Build a read-only field -> category map from (category, field names) groups, plus rssi."""
    out: dict[str, str] = {RSSI_FIELD: DEVICE_NETWORK}
    for category, names in groups:
        for name in names:
            if out.get(name, category) != category:
                raise ValueError(f"field {name!r} mapped to two categories")
            out[name] = category
    return MappingProxyType(out)
