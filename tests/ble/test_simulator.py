"""The simulated BLE source through BleDiscovery (no radio): pairing, readings, private logs."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
from collections.abc import AsyncIterator

import pytest

from drivers.ble.simulator import SCALE, BleSimulator
from gateway.consent.policy import ConsentPolicy
from gateway.counters import Counters
from gateway.devices import DeviceRegistry
from gateway.discovery.ble import BleDiscovery
from gateway.discovery.ble_pairing import BindKeyStore
from gateway.model import Reading
from gateway.tasks import running
from tests.support.hub import eventually

from .helpers import FAST

MAC = re.compile(r"[0-9A-Fa-f]{2}(?:[:_-][0-9A-Fa-f]{2}){5}")


@contextlib.asynccontextmanager
async def simulated(
    sim: BleSimulator,
    registry: DeviceRegistry,
    policy: ConsentPolicy,
    readings: list[Reading],
    counters: Counters,
    bind_keys: BindKeyStore | None = None,
) -> AsyncIterator[BleDiscovery]:
    """BleDiscovery fed by ``sim`` (its bind keys unless others are given); no bleak scanner."""
    discovery = BleDiscovery(
        FAST,
        registry=registry,
        policy=policy,
        submit=readings.append,
        counters=counters,
        bind_keys=bind_keys or sim,
        radio=False,
        read_info=sim.device_information,
        report_interval_s=0.2,
    )
    async with running(discovery):
        feeder = asyncio.create_task(sim.run(discovery.detection_callback), name="sim")
        try:
            yield discovery
        finally:
            feeder.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await feeder


async def test_simulated_devices_pair_and_report(
    registry: DeviceRegistry, policy: ConsentPolicy
) -> None:
    sim = BleSimulator(10, rate_hz=20.0, repeats=3)
    readings: list[Reading] = []
    counters = Counters()
    async with simulated(sim, registry, policy, readings, counters):
        registry.permit_join(60.0, "ble")
        await eventually(lambda: len(registry.devices()["paired"]) == 10, what="all paired")
        await eventually(
            lambda: {r.device for r in readings} == registry.paired_ids("ble"),
            what="a reading from every device",
        )
    assert counters.get("ble.decode_errors") == 0
    assert counters.get("ble.duplicates") >= counters.get("ble.decoded")  # 3 sends per message
    scale = registry.pseudonym(next(d.address for d in sim.devices if d.kind == SCALE))
    weights = [r for r in readings if r.device == scale]
    assert weights
    assert weights[0].driver == "miscale"
    assert set(weights[0].fields) == {"weight", "weight_unit", "weighing_mode", "rssi"}
    encrypted = {registry.pseudonym(d.address) for d in sim.devices if d.bind_key}
    assert encrypted
    assert all("temperature" in r.fields for r in readings if r.device in encrypted)
    view = registry.get(scale)
    assert view is not None
    assert (view.model, view.firmware) == ("Xiaomi XMTZC01HM", "1.0.9")


async def test_logs_carry_no_address_key_or_value(
    registry: DeviceRegistry, policy: ConsentPolicy, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    sim = BleSimulator(6, rate_hz=20.0, repeats=2)
    wrong = BleSimulator(6, seed="another hub")  # same devices, other bind keys
    readings: list[Reading] = []
    counters = Counters()
    async with simulated(sim, registry, policy, readings, counters, bind_keys=wrong):
        registry.permit_join(60.0, "ble")
        await eventually(lambda: counters.get("ble.decode_errors") > 0, what="a decode error")
        policy.set_flag("bluetooth", "off")
        policy.set_flag("bluetooth", "on")
        await eventually(lambda: bool(readings), what="readings of the plain devices")
    keys = [d.bind_key.hex() for d in (*sim.devices, *wrong.devices) if d.bind_key]
    assert keys
    text = "\n".join(
        f"{r.name} {r.getMessage()} {r.__dict__}"
        for r in caplog.records
        if r.name.startswith(("gateway", "drivers", "bthome_ble"))
    )
    assert "bluetooth off" in text  # something was logged at all
    assert not MAC.search(text)
    assert not any(key in text for key in keys)
    assert "temperature" not in text
