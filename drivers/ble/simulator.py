"""Simulated BLE devices for the demo and the benchmarks: real advertisement bytes, injected
where bleak's detection callback enters (``BleDiscovery.detection_callback``), so everything
after the radio (matching, duplicate suppression, the real decoders) runs as in production.

Device ``i`` is a BTHome v2 thermometer (every third one encrypted with its own bind key), except
every tenth, which is a Mi Scale v1. Like real devices, each message is sent ``repeats`` times
(BTHome devices repeat for reliability; BlueZ re-reports cached data on RSSI changes).
"""

from __future__ import annotations

import asyncio
import hashlib
import math
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Final

from bleak.backends.device import BLEDevice
from bleak.backends.scanner import AdvertisementData
from cryptography.hazmat.primitives.ciphers.aead import AESCCM

from drivers.ble.bthome import BTHOME_V2_UUID
from drivers.ble.theengs import WEIGHT_SCALE_UUID
from gateway.discovery.ble_pairing import BleDeviceInformation
from gateway.errors import DeviceError

DetectionCallback = Callable[[BLEDevice, AdvertisementData], None]
THERMOMETER: Final = "thermometer"
SCALE: Final = "scale"
TICK_S: Final = 0.05

# BTHome v2 (https://bthome.io/format/): device information byte 0x40 = version 2, plain;
# 0x41 = version 2, encrypted. Objects: 0x00 packet id (uint8), 0x01 battery (uint8, %),
# 0x02 temperature (sint16, 0.01 C), 0x03 humidity (uint16, 0.01 %).
_BTHOME_PLAIN: Final = 0x40
_BTHOME_ENCRYPTED: Final = 0x41
_BTHOME_UUID16_LE: Final = b"\xd2\xfc"


def bthome_v2(
    objects: bytes, *, address: str, bind_key: bytes | None = None, counter: int = 0
) -> bytes:
    """Return BTHome v2 service data carrying ``objects``, AES-CCM encrypted when ``bind_key``.

    Encryption per https://bthome.io/encryption/: nonce = MAC (6) + UUID 0xFCD2 (LE) + device
    information byte + counter (uint32 LE); 4-byte MIC; data = info + ciphertext + counter + MIC.
    """
    if bind_key is None:
        return bytes([_BTHOME_PLAIN]) + objects
    count = counter.to_bytes(4, "little")
    nonce = (
        bytes.fromhex(address.replace(":", ""))
        + _BTHOME_UUID16_LE
        + bytes([_BTHOME_ENCRYPTED])
        + count
    )
    sealed = AESCCM(bind_key, tag_length=4).encrypt(nonce, objects, None)
    return bytes([_BTHOME_ENCRYPTED]) + sealed[:-4] + count + sealed[-4:]


def thermometer_objects(
    packet_id: int, battery: int, temperature_c: float, humidity: float
) -> bytes:
    """Return the BTHome v2 objects of a thermometer message (ids in ascending order)."""
    return (
        bytes([0x00, packet_id & 0xFF, 0x01, battery])
        + b"\x02"
        + round(temperature_c * 100).to_bytes(2, "little", signed=True)
        + b"\x03"
        + round(humidity * 100).to_bytes(2, "little")
    )


def mi_scale_v1(weight_kg: float, when: datetime, *, stabilised: bool = True) -> bytes:
    """Return Weight Scale (0x181D) service data as a Xiaomi Mi Smart Scale sends it.

    Layout (openScale's MiScale handler): control byte (bit 5 stabilised, bit 1 set by the
    scale), weight in 1/200 kg (uint16 LE), date-time (year uint16 LE, month, day, h, m, s).
    """
    control = 0x22 if stabilised else 0x02
    return (
        bytes([control])
        + round(weight_kg * 200).to_bytes(2, "little")
        + when.year.to_bytes(2, "little")
        + bytes([when.month, when.day, when.hour, when.minute, when.second])
    )


@dataclass(frozen=True, slots=True)
class VirtualDevice:
    """One simulated device: its address, advertised name, kind and bind key (if encrypted)."""

    address: str
    name: str
    kind: str
    bind_key: bytes | None


class BleSimulator:
    """Virtual BLE devices advertising real BTHome v2 and Mi Scale bytes."""

    def __init__(
        self,
        devices: int,
        *,
        rate_hz: float = 1.0,
        repeats: int = 3,
        encrypt_every: int = 3,
        seed: str = "consentgate",
    ) -> None:
        self.devices = tuple(_device(i, encrypt_every, seed) for i in range(devices))
        self._keys = {d.address: d.bind_key for d in self.devices}
        self._rate_hz = rate_hz
        self._repeats = repeats
        self._sent = [0] * devices
        self.produced = 0

    def bind_key(self, stable_id: str) -> bytes | None:
        """Return the bind key of a virtual device (a BindKeyStore for demos and benchmarks)."""
        return self._keys.get(stable_id)

    async def device_information(
        self, device: BLEDevice, *, label: str, attempts: int, bond: bool = False
    ) -> BleDeviceInformation:
        """Pair a virtual device (``BleDiscovery(read_info=...)``): its Device Information."""
        virtual = next((d for d in self.devices if d.address == device.address), None)
        if virtual is None:
            raise DeviceError("connect_failed", "not a simulated device")
        if virtual.kind == SCALE:
            return BleDeviceInformation(manufacturer="Xiaomi", model="XMTZC01HM", firmware="1.0.9")
        return BleDeviceInformation(manufacturer="pvvx", model="LYWSD03MMC", firmware="4.8")

    def message(self, index: int, now: float) -> tuple[BLEDevice, AdvertisementData]:
        """Return device ``index``'s next message (a new packet id / counter each call)."""
        device = self.devices[index]
        sent = self._sent[index]
        self._sent[index] = sent + 1
        phase = now / 60.0 + index
        rssi = -55 - index % 30
        if device.kind == SCALE:
            when = datetime.fromtimestamp(int(now) - sent % 60, tz=UTC)
            data = {WEIGHT_SCALE_UUID: mi_scale_v1(round(60.0 + index % 40 + 0.05 * sent, 2), when)}
        else:
            objects = thermometer_objects(
                sent,
                100 - index % 40,
                round(21.0 + 2.0 * math.sin(phase), 2),
                round(45.0 + 5.0 * math.cos(phase), 2),
            )
            data = {
                BTHOME_V2_UUID: bthome_v2(
                    objects, address=device.address, bind_key=device.bind_key, counter=sent
                )
            }
        return (
            BLEDevice(device.address, device.name, None),
            AdvertisementData(device.name, {}, data, [], None, rssi, ()),
        )

    def burst(self, index: int, now: float) -> Iterator[tuple[BLEDevice, AdvertisementData]]:
        """Yield device ``index``'s next message ``repeats`` times (a new one, then repeats)."""
        ble_device, data = self.message(index, now)
        for _ in range(self._repeats):
            yield ble_device, data

    async def run(
        self, callback: DetectionCallback, clock: Callable[[], float] = time.time
    ) -> None:
        """Feed every device's bursts to ``callback`` at ``rate_hz`` messages per device."""
        loop = asyncio.get_running_loop()
        per_second = self._rate_hz * len(self.devices)
        if per_second <= 0:
            return
        owed, cursor, last = 0.0, 0, loop.time()
        while True:
            await asyncio.sleep(TICK_S)
            tick = loop.time()
            owed += (tick - last) * per_second
            last = tick
            while owed >= 1.0:
                owed -= 1.0
                index = cursor % len(self.devices)
                cursor += 1
                for ble_device, data in self.burst(index, clock()):
                    callback(ble_device, data)
                    self.produced += 1


def _device(index: int, encrypt_every: int, seed: str) -> VirtualDevice:
    # Locally administered addresses (bit 1 of the first octet set), stable per index.
    address = "F2:CA:FE:{:02X}:{:02X}:{:02X}".format(*(index + 1).to_bytes(3, "big"))
    if index % 10 == 9:
        return VirtualDevice(address, "MI SCALE2", SCALE, None)
    encrypted = encrypt_every > 0 and index % encrypt_every == encrypt_every - 1
    key = hashlib.sha256(f"{seed}:{index}".encode()).digest()[:16] if encrypted else None
    return VirtualDevice(address, f"ATC_{index:06X}", THERMOMETER, key)
