"""``export``, ``erase`` and ``restrict``: validated, applied, audited (docs/mqtt-api.md).

``erase`` ends collection for the device(s) and deletes what the hub holds: the registry row
(through the registry's unpair, which also drops consent overrides), the queued records and
any open aggregate window. Queued records are first killed by durable tombstones, which the
publisher honours at once, then deleted, so none of them can leave once the erasure is
acknowledged. The hub-wide consent flags are the user's choices, not device data: they stay.
``restrict`` switches the policy's restriction: nothing personal is collected or forwarded,
``device.basic`` still is, and queued personal records are killed the same way.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Final, Protocol

from gateway.changes import Change
from gateway.commands.router import Router, reject_unknown, require
from gateway.consent.catalogue import CATEGORIES, DEVICE_BASIC
from gateway.consent.store import save_policy
from gateway.devices.commands import device_param
from gateway.errors import CommandError
from gateway.outbox.rows import Tombstone
from gateway.rights.export import ExportHost, build_document, hub_subject, seal_export
from gateway.storage.db import transaction

if TYPE_CHECKING:
    import aiosqlite

    from gateway.changes import Changes
    from gateway.outbox.publisher import Publisher

logger = logging.getLogger(__name__)

SCOPES: Final = ("device", "all")


class RightsHost(ExportHost, Protocol):
    """What the rights commands need of the daemon beyond an export: the publisher to hold
    back, the database, the owner of acknowledged changes, and the retained topics."""

    publisher: Publisher
    db: aiosqlite.Connection
    changes: Changes

    def known_device(self, device: str) -> bool:
        """Return whether ``device`` is a paired or simulated device of this hub."""
        ...

    def publish_consent_soon(self) -> None:
        """Queue the current consent state for the retained consent topic."""
        ...

    def publish_devices_soon(self) -> None:
        """Queue the paired devices list for the retained devices topic."""
        ...


def register_rights_commands(router: Router, hub: RightsHost) -> None:
    """Register ``export``, ``erase`` and ``restrict`` on ``router`` for ``hub``."""

    async def export(params: Mapping[str, Any]) -> Any:
        """Return the export of a device or of everything, sealed for the recipient."""
        device = _scope(params)
        if device is not None and not hub.known_device(device):
            raise CommandError("not_found", "no such device; use an id from `devices`")
        document = await build_document(hub, device)
        subject = hub_subject(hub) if device is None else device
        sealed = await seal_export(hub, subject, document)
        await hub.audit.append(
            "rights.export",
            scope=document["scope"],
            device=device,
            export=sealed["export"],
            parts=sealed["parts"],
        )
        logger.info("export sealed", extra={"device": subject, "parts": sealed["parts"]})
        return sealed

    async def erase(params: Mapping[str, Any]) -> Any:
        """Erase a device or everything; return the erased ids and records removed."""
        device = _scope(params)
        if device is not None and not hub.known_device(device) and not await _holds(hub, device):
            raise CommandError("not_found", "no such device; use an id from `devices`")
        erased, records = await _erase(hub, device)
        hub.publish_consent_soon()
        hub.publish_devices_soon()
        logger.info("erased", extra={"devices": len(erased), "records": records})
        scope = "all" if device is None else "device"
        return {"scope": scope, "erased": erased, "records": records}

    async def restrict(params: Mapping[str, Any]) -> Any:
        """Switch restriction; on: queued personal records are killed before the answer."""
        reject_unknown(params, frozenset({"enabled"}))
        enabled = require(params, "enabled", bool)
        personal = [c for c in CATEGORIES if c != DEVICE_BASIC] if enabled else []
        durable = await hub.changes.make(
            Change(
                event="rights.restrict",
                apply=lambda: hub.policy.set_restricted(enabled),
                persist=lambda: save_policy(hub.db, hub.policy),
                withdrawn=personal,
                details={
                    "enabled": enabled,
                    "version": hub.policy.version + 1,
                    "purging": personal,
                },
            )
        )
        hub.publish_consent_soon()
        return {
            "version": hub.policy.version,
            "restricted": enabled,
            "purging": personal,
            "durable": durable,
        }

    router.add("export", export)
    router.add("erase", erase)
    router.add("restrict", restrict)


def _scope(params: Mapping[str, Any]) -> str | None:
    """Return the device of a ``scope: device`` request, None for ``scope: all``."""
    reject_unknown(params, frozenset({"scope", "device"}))
    scope = require(params, "scope", str)
    if scope not in SCOPES:
        raise CommandError("invalid_request", "parameter 'scope' must be device or all")
    if scope == "all":
        if "device" in params:
            raise CommandError("invalid_request", "scope all takes no 'device'")
        return None
    return device_param(params)


async def _holds(hub: RightsHost, device: str) -> bool:
    """Return whether anything of ``device`` is left: queued records or consent overrides."""
    return device in hub.policy.overrides or bool(await _queued_categories(hub, device))


async def _queued_categories(hub: RightsHost, device: str | None) -> dict[str, int]:
    """Return how many records of each category (of ``device``) are queued."""
    counts: dict[str, int] = {}
    for group in await hub.outbox.queued(device):
        counts[group.category] = counts.get(group.category, 0) + group.records
    return counts


async def _erase(hub: RightsHost, device: str | None) -> tuple[list[str], int]:
    """Erase ``device`` (None: every device); return the erased ids and records removed."""
    registry = hub.registry
    paired = set(registry.paired_ids())
    everything = paired | hub.simulated | set(hub.policy.overrides)
    targets = everything if device is None else {device}
    async with hub.pipeline.exclusive():  # no batch of these devices is on its way to the outbox
        hub.simulated.difference_update(targets)
        hub.pipeline.forget_aggregates(device)
        queued = await _queued_categories(hub, device)
        records = sum(queued.values())
        async with hub.publisher.paused():
            stones = [await hub.outbox.tombstone(c, device) for c in sorted(queued)]
        for target in sorted(targets & paired):
            if registry.is_paired(target):
                await registry.unpair(target)  # row deleted, records purged, audited
    await hub.publisher.barrier()
    async with hub.publisher.paused(), transaction(hub.db):
        await _purge(hub, stones, device)
        for target in sorted(targets):
            hub.policy.forget_device(target)
        await save_policy(hub.db, hub.policy)
        await hub.audit.append(
            "rights.erase",
            scope="all" if device is None else "device",
            device=device,
            devices=len(targets),
            records=records,
        )
    return sorted(targets), records


async def _purge(hub: RightsHost, stones: list[Tombstone], device: str | None) -> int:
    removed = 0
    for stone in stones:
        removed += await hub.outbox.purge(stone)
    return removed + await hub.outbox.purge_all(device)
