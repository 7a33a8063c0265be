"""Helpers of the BLE tests: a discovery with shrunk timings, golden advertisements."""

from __future__ import annotations

import contextlib
import dataclasses
from typing import Any, Final

from drivers.ble.advert import uuid16
from gateway.backoff import Backoff
from gateway.config import BleConfig
from gateway.consent.policy import ConsentPolicy
from gateway.counters import Counters
from gateway.devices import DeviceRegistry
from gateway.discovery.ble import BleDiscovery
from gateway.discovery.ble_pairing import BindKeyStore
from gateway.model import Reading
from gateway.tasks import running

BTHOME: Final = uuid16(0xFCD2)
MIBEACON: Final = uuid16(0xFE95)
WEIGHT_SCALE: Final = uuid16(0x181D)
BODY_COMPOSITION: Final = uuid16(0x181B)
# Golden advertisements (docs/testing.md, "Differential tests against the field's libraries").
BTHOME_GOLDEN: Final = bytes.fromhex("4000a4016402ca0803bf13")  # packet 164, 100 %, 22.5 C, 50.55 %
MIBEACON_GOLDEN: Final = bytes.fromhex("5020aa0101ffeeddccbbaa0d1004ea00c801")  # 23.4 C, 45.6 %
MISCALE_GOLDEN: Final = bytes.fromhex("228638e8070b18131400")  # 72.35 kg, stabilised
# Retries shrunk; the watchdog and offline timeouts stay long enough that a loaded machine does
# not restart scanners or forget candidates mid-test (the tests of those paths shrink them).
FAST: Final = BleConfig(watchdog_s=5.0, offline_after_s=5.0, connect_attempts=2)


def bthome(packet_id: int, temperature_c: float = 22.5) -> bytes:
    """Return a plain BTHome v2 thermometer message with ``packet_id``."""
    return (
        bytes([0x40, 0x00, packet_id, 0x01, 0x64, 0x02])
        + round(temperature_c * 100).to_bytes(2, "little", signed=True)
        + bytes([0x03, 0xBF, 0x13])
    )


def make_discovery(
    registry: DeviceRegistry,
    policy: ConsentPolicy,
    readings: list[Reading],
    *,
    counters: Counters | None = None,
    config: BleConfig = FAST,
    bind_keys: BindKeyStore | None = None,
    **changes: Any,
) -> contextlib.AbstractAsyncContextManager[BleDiscovery]:
    """Return a BleDiscovery with test timings whose readings land in ``readings``, to enter
    with its loops running."""
    return running(
        BleDiscovery(
            dataclasses.replace(config, **changes),
            registry=registry,
            policy=policy,
            submit=readings.append,
            counters=counters or Counters(),
            bind_keys=bind_keys,
            backoff=Backoff(initial=0.05, factor=2.0, cap=0.2),
            report_interval_s=0.2,
        )
    )
