"""Pairing a BLE device: connect with retries, bond if needed, read its Device Information.

Connection attempts and their backoff are bleak-retry-connector's (``establish_connection``
with ``BleakClientWithServiceCache``); what is left fails as ``DeviceError`` with a stable
``reason`` the command layer turns into an error response. Addresses never appear in the
messages: bleak's exceptions name them, so they are chained (``from``), never formatted.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final, Protocol

from bleak.exc import BleakDBusError, BleakError, BleakGATTProtocolError, BleakGATTProtocolErrorCode

from drivers.ble.advert import uuid16
from gateway.errors import DeviceError

if TYPE_CHECKING:
    from bleak import BleakClient
    from bleak.backends.device import BLEDevice

logger = logging.getLogger(__name__)

# Bluetooth SIG GATT assigned numbers: Device Information Service 0x180A and its UTF-8 string
# characteristics (GATT Specification Supplement 3.x, "... String" characteristics).
DEVICE_INFORMATION_SERVICE: Final = uuid16(0x180A)
MANUFACTURER_NAME: Final = uuid16(0x2A29)
MODEL_NUMBER: Final = uuid16(0x2A24)
SERIAL_NUMBER: Final = uuid16(0x2A25)
FIRMWARE_REVISION: Final = uuid16(0x2A26)
SOFTWARE_REVISION: Final = uuid16(0x2A28)
_DIS_FIELDS: Final = (
    ("manufacturer", MANUFACTURER_NAME),
    ("model", MODEL_NUMBER),
    ("serial", SERIAL_NUMBER),
    ("firmware", FIRMWARE_REVISION),
    ("software", SOFTWARE_REVISION),
)
# ATT errors after which a read succeeds once the link is bonded (Core v5.4, Vol 3, Part F,
# 3.4.1.1: insufficient authentication 0x05, encryption key size 0x0C, encryption 0x0F). Other
# refusals (read not permitted 0x02, insufficient authorization 0x08) are final: skipped.
_BOND_HELPS: Final = frozenset(
    {
        BleakGATTProtocolErrorCode.INSUFFICIENT_AUTHENTICATION,
        BleakGATTProtocolErrorCode.INSUFFICIENT_ENCRYPTION_KEY_SIZE,
        BleakGATTProtocolErrorCode.INSUFFICIENT_ENCRYPTION,
    }
)
# BlueZ's answer to reading an encrypted characteristic of a device that is not paired.
_NOT_PAIRED: Final = "org.bluez.Error.NotPermitted"
MAX_STRING_BYTES: Final = 64


class ReadDeviceInformation(Protocol):
    """How pairing reaches a device: ``read_device_information`` below, or a simulator's."""

    async def __call__(
        self, device: BLEDevice, *, label: str, attempts: int, bond: bool = False
    ) -> BleDeviceInformation:
        """Connect, bond if asked, read the Device Information Service, disconnect."""
        ...


class BindKeyStore(Protocol):
    """Per-device bind keys (BTHome encryption), encrypted at rest by the store; never logged."""

    def bind_key(self, stable_id: str) -> bytes | None:
        """Return the bind key of the device with ``stable_id`` (held in memory), if any."""
        ...


@dataclass(frozen=True, slots=True)
class BleDeviceInformation:
    """The Device Information Service strings a device exposes (None where absent or refused)."""

    manufacturer: str | None = None
    model: str | None = None
    serial: str | None = None
    firmware: str | None = None
    software: str | None = None
    bonded: bool = False
    refused: int = 0
    """How many characteristics the device refused to read (NotPermitted / NotAuthorized)."""


async def read_device_information(
    device: BLEDevice, *, label: str, attempts: int, bond: bool = False
) -> BleDeviceInformation:
    """Connect to ``device`` (``attempts`` tries), bond if ``bond``, read DIS, disconnect.

    ``label`` names the device in library logs (pass its pseudonym). Raises DeviceError with
    reason ``connect_failed``, ``bond_failed`` or ``read_failed``.
    """
    from bleak_retry_connector import (  # noqa: PLC0415 - connecting is rare; keep start-up lean
        BleakClientWithServiceCache,
        establish_connection,
    )

    try:
        client = await establish_connection(
            BleakClientWithServiceCache, device, label, max_attempts=attempts
        )
    except (BleakError, TimeoutError, EOFError, BrokenPipeError) as exc:
        raise DeviceError(
            "connect_failed",
            f"no connection after {attempts} attempt(s) "
            f"({type(exc).__name__}); bring the device closer or wake it, "
            "then pair again",
        ) from exc
    try:
        bonded = False
        if bond:
            await _bond(client)
            bonded = True
        values, refused, wants_bond = await _read_all(client)
        if wants_bond and not bonded:
            await _bond(client)
            bonded = True
            values, refused, _ = await _read_all(client)
        return BleDeviceInformation(**values, bonded=bonded, refused=refused)
    finally:
        try:
            async with asyncio.timeout(10.0):
                await client.disconnect()
        except (BleakError, TimeoutError, EOFError, BrokenPipeError):
            logger.debug("disconnect after pairing failed", extra={"device": label})


async def _bond(client: BleakClient) -> None:
    try:
        await client.pair()
    except BleakError as exc:
        raise DeviceError(
            "bond_failed", "the device refused to bond; put it in pairing mode and pair again"
        ) from exc


async def _read_all(client: BleakClient) -> tuple[dict[str, str | None], int, bool]:
    """Read each DIS string present; return values, refusals, whether bonding would help."""
    values: dict[str, str | None] = dict.fromkeys(name for name, _ in _DIS_FIELDS)
    service = client.services.get_service(DEVICE_INFORMATION_SERVICE)
    if service is None:
        return values, 0, False
    refused = 0
    wants_bond = False
    for name, uuid in _DIS_FIELDS:
        characteristic = service.get_characteristic(uuid)
        if characteristic is None:
            continue
        try:
            raw = await client.read_gatt_char(characteristic)
        except BleakGATTProtocolError as exc:  # the device refused this read
            refused += 1
            wants_bond = wants_bond or exc.code in _BOND_HELPS
            continue
        except BleakDBusError as exc:
            if exc.dbus_error != _NOT_PAIRED:
                raise DeviceError(
                    "read_failed", "reading the device information failed; pair again"
                ) from exc
            refused += 1
            wants_bond = True
            continue
        except BleakError as exc:
            raise DeviceError(
                "read_failed", "the device went away while its information was read; pair again"
            ) from exc
        values[name] = dis_string(bytes(raw))
    return values, refused, wants_bond


def dis_string(raw: bytes) -> str | None:
    """Decode a DIS UTF-8 string (trailing NULs stripped, bounded, invalid bytes replaced)."""
    text = raw[:MAX_STRING_BYTES].split(b"\x00", 1)[0].decode("utf-8", errors="replace").strip()
    return text or None
