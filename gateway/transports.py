"""Devices and how the hub reaches them: the registry, mDNS, BLE, and simulated BLE sensors.

Opened on the daemon's exit stack after storage and before the loops run: the registry
first, then the transports, so the transports close before the registry saves its state.
Heavy imports (zeroconf, aiohttp, bleak, decoders) happen here, only for what is enabled.
"""

from __future__ import annotations

import contextlib
import logging
from typing import TYPE_CHECKING, Any

from gateway.consent.store import save_policy
from gateway.devices.bindkeys import BindKeys, register_bind_key_command
from gateway.secure.atrest import StorageCipher, load_storage_key
from gateway.storage.db import transaction

if TYPE_CHECKING:
    from gateway.daemon import Hub
    from gateway.devices.model import DeviceEvent

logger = logging.getLogger(__name__)


async def open_devices(hub: Hub, stack: contextlib.AsyncExitStack) -> None:
    """Build the registry and the enabled transports for ``hub`` on ``stack``."""
    from gateway.devices.commands import DeviceExtras, register_commands  # noqa: PLC0415
    from gateway.devices.registry import DeviceRegistry  # noqa: PLC0415

    discovery = hub.config.discovery
    cipher = StorageCipher(load_storage_key(hub.config.state_dir))
    keys = BindKeys(hub.db, cipher, hub.pseudonyms.device)
    await keys.load()

    async def erase(device: str) -> None:
        # unpair/erase: nothing of the device may leave any more, nothing of it stays.
        # Synchronous, so no batch can be half-way through it; and not under the pipeline
        # lock, which `erase` already holds when it unpairs.
        hub.pipeline.forget_aggregates(device)
        await hub.publisher.barrier()
        async with transaction(hub.db):
            removed = await hub.outbox.purge_all(device)
            hub.policy.forget_device(device)
            await save_policy(hub.db, hub.policy)
            await keys.forget(device)
            await hub.audit.append("device.erase", device=device, records=removed)

    registry = DeviceRegistry(
        hub.db,
        hub.pseudonyms,
        hub.policy,
        offline_after={"mdns": discovery.mdns.offline_after_s},
        on_erase=erase,
    )
    await stack.enter_async_context(registry)
    hub.loops.update(registry.loops())
    hub.registry = registry
    extras = DeviceExtras()  # setup codes, candidates' details, release on unpair
    register_commands(hub.router, registry, extras)

    def on_event(event: DeviceEvent) -> None:
        if event.kind in ("paired", "unpaired"):
            logger.info(
                "device %s",
                event.kind,
                extra={"device": event.device, "transport": event.transport},
            )
        hub.publish_devices_soon()

    registry.subscribe(on_event)
    hub.policy.subscribe(lambda _: hub.publish_devices_soon())  # MAC shown only with consent
    if discovery.mdns.enabled:
        from gateway.discovery.homekit_keys import SealedPairings  # noqa: PLC0415
        from gateway.discovery.mdns import MdnsDiscovery  # noqa: PLC0415

        await stack.enter_async_context(
            MdnsDiscovery(
                discovery.mdns,
                registry,
                hub.pipeline.submit,
                hub.counters,
                extras=extras,
                pairings=SealedPairings(hub.db, cipher),
            )
        )
    if discovery.ble.enabled:
        await _open_ble(hub, stack, registry, keys)


async def _open_ble(
    hub: Hub, stack: contextlib.AsyncExitStack, registry: Any, keys: BindKeys
) -> None:
    from gateway.discovery.ble import BleDiscovery  # noqa: PLC0415

    common: dict[str, Any] = {
        "registry": registry,
        "policy": hub.policy,
        "submit": hub.pipeline.submit,
        "counters": hub.counters,
    }
    simulated = hub.config.simulator.ble_devices
    if not simulated:
        radio = BleDiscovery(hub.config.discovery.ble, bind_keys=keys, **common)
        await stack.enter_async_context(radio)
        hub.loops.update(radio.loops())

        def is_ble(device: str) -> bool:
            view = registry.get(device)
            return view is not None and view.transport == "ble"

        register_bind_key_command(hub.router, keys, is_ble, radio.device_key_changed, hub.audit)
        return
    from drivers.ble.simulator import BleSimulator  # noqa: PLC0415

    simulator = BleSimulator(simulated, rate_hz=hub.config.simulator.rate_hz)
    ble = BleDiscovery(
        hub.config.discovery.ble,
        bind_keys=simulator,
        radio=False,
        read_info=simulator.device_information,
        **common,
    )
    await stack.enter_async_context(ble)
    hub.loops.update(ble.loops())
    hub.loops["ble-simulator"] = lambda: simulator.run(ble.detection_callback)
