"""Devices and how the hub reaches them: the registry, mDNS, BLE, and simulated BLE sensors.

Opened on the daemon's exit stack after storage and before the loops run: the registry
first, then the transports, so the transports close before the registry saves its state.
Heavy imports (zeroconf, aiohttp, bleak, decoders) happen here, only for what is enabled.
"""

from __future__ import annotations

import contextlib
import logging
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from gateway.consent.store import save_policy
from gateway.devices.bindkeys import BindKeys, register_bind_key_command
from gateway.secure.atrest import StorageCipher, load_storage_key
from gateway.storage.db import transaction

if TYPE_CHECKING:
    import aiosqlite

    from gateway.audit.log import AuditLog
    from gateway.commands.router import Router
    from gateway.config import Config
    from gateway.consent.policy import ConsentPolicy
    from gateway.counters import Counters
    from gateway.devices.model import DeviceEvent
    from gateway.devices.registry import DeviceRegistry
    from gateway.outbox.publisher import Publisher
    from gateway.outbox.store import Outbox
    from gateway.pipeline import Pipeline
    from gateway.pseudonym import Pseudonymizer
    from gateway.tasks import Loop

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class DeviceParts:
    """The components the devices use: storage, consent, the data path (readings in, a
    device's records out on unpairing), the audit log, and the router for their commands."""

    config: Config
    db: aiosqlite.Connection
    pseudonyms: Pseudonymizer
    policy: ConsentPolicy
    pipeline: Pipeline
    publisher: Publisher
    outbox: Outbox
    audit: AuditLog
    counters: Counters
    router: Router


@dataclass(slots=True)
class Devices:
    """The opened registry and the loops it and the enabled transports run."""

    registry: DeviceRegistry
    loops: dict[str, Loop] = field(default_factory=dict)


async def open_devices(parts: DeviceParts, stack: contextlib.AsyncExitStack) -> Devices:
    """Open the registry and the enabled transports on ``stack``; register their commands."""
    from gateway.devices.commands import DeviceExtras, register_commands  # noqa: PLC0415
    from gateway.devices.registry import DeviceRegistry  # noqa: PLC0415

    discovery = parts.config.discovery
    cipher = StorageCipher(load_storage_key(parts.config.state_dir))
    keys = BindKeys(parts.db, cipher, parts.pseudonyms.device)
    await keys.load()

    async def erase(device: str) -> None:
        # unpair/erase: nothing of the device may leave any more, nothing of it stays.
        # Synchronous, so no batch can be half-way through it; and not under the pipeline
        # lock, which `erase` already holds when it unpairs.
        parts.pipeline.forget_aggregates(device)
        await parts.publisher.barrier()
        async with transaction(parts.db):
            removed = await parts.outbox.purge_all(device)
            parts.policy.forget_device(device)
            await save_policy(parts.db, parts.policy)
            await keys.forget(device)
            await parts.audit.append("device.erase", device=device, records=removed)

    registry = DeviceRegistry(
        parts.db,
        parts.pseudonyms,
        parts.policy,
        offline_after={"mdns": discovery.mdns.offline_after_s},
        on_erase=erase,
    )
    await stack.enter_async_context(registry)
    devices = Devices(registry, registry.loops())
    extras = DeviceExtras()  # setup codes, candidates' details, release on unpair
    register_commands(parts.router, registry, extras)

    def on_event(event: DeviceEvent) -> None:
        if event.kind in ("paired", "unpaired"):
            logger.info(
                "device %s",
                event.kind,
                extra={"device": event.device, "transport": event.transport},
            )

    registry.subscribe(on_event)
    if discovery.mdns.enabled:
        from gateway.discovery.homekit_keys import SealedPairings  # noqa: PLC0415
        from gateway.discovery.mdns import MdnsDiscovery  # noqa: PLC0415

        await stack.enter_async_context(
            MdnsDiscovery(
                discovery.mdns,
                registry,
                parts.pipeline.submit,
                parts.counters,
                extras=extras,
                pairings=SealedPairings(parts.db, cipher),
            )
        )
    if discovery.ble.enabled:
        await _open_ble(parts, stack, devices, keys)
    return devices


async def _open_ble(
    parts: DeviceParts, stack: contextlib.AsyncExitStack, devices: Devices, keys: BindKeys
) -> None:
    from gateway.discovery.ble import BleDiscovery  # noqa: PLC0415

    registry = devices.registry
    common: dict[str, Any] = {
        "registry": registry,
        "policy": parts.policy,
        "submit": parts.pipeline.submit,
        "counters": parts.counters,
    }
    simulated = parts.config.simulator.ble_devices
    if not simulated:
        radio = BleDiscovery(parts.config.discovery.ble, bind_keys=keys, **common)
        await stack.enter_async_context(radio)
        devices.loops.update(radio.loops())

        def is_ble(device: str) -> bool:
            view = registry.get(device)
            return view is not None and view.transport == "ble"

        register_bind_key_command(parts.router, keys, is_ble, radio.device_key_changed, parts.audit)
        return
    from drivers.ble.simulator import BleSimulator  # noqa: PLC0415

    simulator = BleSimulator(simulated, rate_hz=parts.config.simulator.rate_hz)
    ble = BleDiscovery(
        parts.config.discovery.ble,
        bind_keys=simulator,
        radio=False,
        read_info=simulator.device_information,
        **common,
    )
    await stack.enter_async_context(ble)
    devices.loops.update(ble.loops())
    devices.loops["ble-simulator"] = lambda: simulator.run(ble.detection_callback)
