"""Fuzz target ``ble``: BLE advertisements through ``BleIngest`` (match, dedupe, decode) and
the candidate path, with genuine, wrong and missing bind keys."""

from __future__ import annotations

import random
from typing import Final

from bench.fuzz.findings import Findings
from bench.fuzz.values import random_text
from bench.fuzz_envelope import mutate
from drivers.ble import Advert
from drivers.ble.advert import uuid16
from drivers.ble.simulator import BleSimulator
from gateway.config import BleConfig
from gateway.counters import Counters
from gateway.discovery.ble_ingest import BleIngest

BTHOME: Final = uuid16(0xFCD2)
MIBEACON: Final = uuid16(0xFE95)
SCALE: Final = uuid16(0x181D)
BODY: Final = uuid16(0x181B)
UUIDS: Final = (
    BTHOME,
    MIBEACON,
    SCALE,
    BODY,
    uuid16(0x180F),
    "0000fcd2-0000-1000-8000-00805f9b34fc",
)
VECTORS: Final = (  # docs/testing.md: vectors that decode with the reference libraries
    ("A4:C1:38:00:00:01", BTHOME, "4000a4016402ca0803bf13"),
    ("AA:BB:CC:DD:EE:FF", MIBEACON, "5020aa0101ffeeddccbbaa0d1004ea00c801"),
    ("C8:47:8C:00:00:01", SCALE, "228638e8070b18131400"),
)


def genuine_adverts() -> tuple[list[Advert], dict[str, bytes | None]]:
    """Return genuine advertisements (simulated devices and test vectors) and their bind keys."""
    sim = BleSimulator(30, repeats=1, encrypt_every=3)
    adverts = []
    for round_no in range(4):
        for index in range(len(sim.devices)):
            device, data = sim.message(index, 1_700_000_000.0 + round_no)
            adverts.append(
                Advert(
                    device.address,
                    data.rssi,
                    data.local_name,
                    dict(data.service_data),
                    dict(data.manufacturer_data),
                    tuple(data.service_uuids),
                )
            )
    adverts += [Advert(a, -60, None, {u: bytes.fromhex(h)}) for a, u, h in VECTORS]
    keys = {d.address: d.bind_key for d in sim.devices}
    return adverts, keys


def mutate_advert(
    rng: random.Random, advert: Advert, others: list[bytes], addresses: list[str]
) -> Advert:
    """Return ``advert`` with its payload, UUIDs, name, RSSI or address changed."""
    service = dict(advert.service_data)
    manufacturer = dict(advert.manufacturer_data)
    name, rssi, address = advert.name, advert.rssi, advert.address
    for _ in range(rng.randint(1, 3)):
        action = rng.randrange(10)
        uuid = rng.choice(list(service)) if service else rng.choice(UUIDS)
        if action <= 3:
            service[uuid] = mutate(rng, service.get(uuid, b""), others)
        elif action == 4:
            service[uuid] = rng.randbytes(rng.choice((0, 1, 2, 5, 12, 20, 31, 64)))
        elif action == 5:  # the same bytes under another driver's UUID
            service[rng.choice(UUIDS)] = service.pop(uuid, b"")
        elif action == 6:
            service[rng.choice(UUIDS)] = rng.choice(others)
        elif action == 7:
            manufacturer[rng.choice((0x0499, 0x004C, 0xFFFF, 0))] = rng.randbytes(
                rng.randint(0, 24)
            )
        elif action == 8:
            name = rng.choice((None, "", random_text(rng), "ATC_123456", "MI SCALE2"))
            rssi = rng.choice((rssi, -127, 0, 20, -100, -101, 127))
        else:
            address = rng.choice(addresses)
    return Advert(address, rssi, name, service, manufacturer, advert.service_uuids)


def fuzz_ble(inputs: int, seed: int) -> Findings:
    """Feed ``inputs`` advertisements through classify, dedupe, decode and model."""
    rng = random.Random(seed)
    findings = Findings("ble")
    adverts, keys = genuine_adverts()
    payloads = [p for a in adverts for p in a.service_data.values()]
    addresses = sorted({a.address for a in adverts}) + [
        ":".join(f"{rng.randrange(256):02X}" for _ in range(6)) for _ in range(20)
    ]
    # Genuine keys for the simulated devices, wrong or malformed keys for some others.
    for address in addresses[-20:]:
        keys[address] = rng.choice((None, rng.randbytes(16), rng.randbytes(15), b""))
    counters = Counters()
    ingest = BleIngest(BleConfig(), counters, bind_keys=keys.get)
    now = 0.0
    for n in range(inputs):
        advert = rng.choice(adverts)
        if rng.random() < 0.85:
            advert = mutate_advert(rng, advert, payloads, addresses)
        now += rng.choice((0.0, 0.0005, 0.5, 11.0))
        if n % 5000 == 0:
            ingest = BleIngest(BleConfig(), counters, bind_keys=keys.get)
        try:
            hit = ingest.classify(advert)
            if hit is not None:
                driver, payload = hit
                if not ingest.is_duplicate(advert.address, driver, payload, now):
                    ingest.decode(advert, driver, payload, now)
                driver.model(advert, payload, now)
        except Exception as exc:  # noqa: BLE001 - a fuzz finding, recorded with its input
            findings.crash(exc, advert)
    findings.inputs = inputs
    findings.outcomes.update({k: v for k, v in counters.snapshot().items() if v})
    return findings
