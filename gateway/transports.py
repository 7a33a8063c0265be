"""Devices and how the hub reaches them: the registry, mDNS, BLE, and simulated BLE sensors.

Opened on the daemon's exit stack after storage and before the loops run: the registry first
(``open_registry``: the pipeline asks it which devices may report, so it comes before the
pipeline), then the transports (``open_transports``: they hand readings to the pipeline), so
the transports close before the registry saves its state.
Heavy imports (zeroconf, aiohttp, bleak, decoders) happen here, only for what is enabled.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from gateway.consent.store import save_policy
from gateway.devices.bindkeys import BindKeys, register_bind_key_command
from gateway.devices.commands import DeviceExtras, register_commands
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
    from gateway.model import Reading
    from gateway.outbox.publisher import Publisher
    from gateway.outbox.store import Outbox
    from gateway.pseudonym import Pseudonymizer
    from gateway.tasks import Loop

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class DeviceParts:
    """The components the devices use: storage, consent, the outbox and publisher (a device's
    records out on unpairing), the audit log, and the router for their commands."""

    config: Config
    db: aiosqlite.Connection
    pseudonyms: Pseudonymizer
    policy: ConsentPolicy
    publisher: Publisher
    outbox: Outbox
    audit: AuditLog
    counters: Counters
    router: Router


@dataclass(slots=True)
class Devices:
    """The opened registry and the loops it and the enabled transports run."""

    registry: DeviceRegistry
    keys: BindKeys
    cipher: StorageCipher
    extras: DeviceExtras
    loops: dict[str, Loop] = field(default_factory=dict)


async def open_registry(parts: DeviceParts, stack: contextlib.AsyncExitStack) -> Devices:
    """Open the registry on ``stack`` and register the device commands."""
    from gateway.devices.registry import DeviceRegistry  # noqa: PLC0415

    discovery = parts.config.discovery
    cipher = StorageCipher(load_storage_key(parts.config.state_dir))
    keys = BindKeys(parts.db, cipher, parts.pseudonyms.device)
    await keys.load()

    async def erase(device: str) -> None:
        # unpair/erase: nothing of the device may leave any more, nothing of it stays (its
        # readings already queued, and its open aggregate windows, are dropped by the
        # pipeline: the device is not paired any more). Not under the pipeline lock, which
        # `erase` already holds when it unpairs.
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
    extras = DeviceExtras()  # setup codes, candidates' details, release on unpair
    devices = Devices(registry, keys, cipher, extras, registry.loops())
    register_commands(parts.router, registry, extras)

    def on_event(event: DeviceEvent) -> None:
        if event.kind in ("paired", "unpaired"):
            logger.info(
                "device %s",
                event.kind,
                extra={"device": event.device, "transport": event.transport},
            )

    registry.subscribe(on_event)
    return devices


async def open_transports(
    parts: DeviceParts,
    stack: contextlib.AsyncExitStack,
    devices: Devices,
    submit: Callable[[Reading], bool],
) -> None:
    """Open the enabled transports on ``stack``, handing their readings to ``submit``; their
    loops join ``devices.loops``."""
    discovery = parts.config.discovery
    registry = devices.registry
    if discovery.mdns.enabled:
        from gateway.discovery.homekit_keys import SealedPairings  # noqa: PLC0415
        from gateway.discovery.mdns import MdnsDiscovery  # noqa: PLC0415

        await stack.enter_async_context(
            MdnsDiscovery(
                discovery.mdns,
                registry,
                submit,
                parts.counters,
                extras=devices.extras,
                pairings=SealedPairings(parts.db, devices.cipher),
            )
        )
    if discovery.ble.enabled:
        await _open_ble(parts, stack, devices, submit)


async def _open_ble(
    parts: DeviceParts,
    stack: contextlib.AsyncExitStack,
    devices: Devices,
    submit: Callable[[Reading], bool],
) -> None:
    from gateway.discovery.ble import BleDiscovery  # noqa: PLC0415

    registry, keys = devices.registry, devices.keys
    common: dict[str, Any] = {
        "registry": registry,
        "policy": parts.policy,
        "submit": submit,
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
