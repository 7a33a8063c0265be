"""Building an export of what the hub holds about one device or all of them, and sealing it.

Contents: device info (as the ``devices`` list shows it: the MAC only with ``network``
consent, since the export goes to the same recipient as forwarded records), the consent state,
the consent history from the audit log, and the metadata of queued records (counts, sizes and
times per device and category; the records themselves are sealed for the recipient already).
"""

from __future__ import annotations

import base64
import os
from typing import TYPE_CHECKING, Any, Final, Protocol

from gateway.consent.catalogue import FLAGS
from gateway.model import EPOCH_CATEGORY, Observation
from gateway.rights.document import EXPORT_CATEGORY, EXPORT_FORMAT, document_text, split_document

if TYPE_CHECKING:
    from gateway.audit.log import AuditLog
    from gateway.clock import HubClock
    from gateway.config import Config
    from gateway.consent.policy import ConsentPolicy
    from gateway.devices.registry import DeviceRegistry
    from gateway.envelope.sealer import Sealer
    from gateway.mqtt.link import MqttLink
    from gateway.mqtt.topics import Topics
    from gateway.outbox.store import Outbox
    from gateway.pipeline import Pipeline
    from gateway.pseudonym import Pseudonymizer

# Audit events that make up the consent history (and the device's life on this hub).
HISTORY_EVENTS: Final = (
    "consent.set",
    "consent.try_now",
    "rights.restrict",
    "device.paired",
    "device.renamed",
    "device.erase",
    "rights.erase",
    "rights.export",
)
# Sealed exports are never queued; the TTL only fills the row field the sealer sets.
_EXPORT_TTL_S: Final = 0.0


class ExportHost(Protocol):
    """What an export needs of the daemon: what it holds (devices, consent, audit history,
    queued records), hub time and the hub's pseudonyms, and the sealer with the outbox and the
    connection a new epoch's announcement goes through."""

    config: Config
    pseudonyms: Pseudonymizer
    registry: DeviceRegistry
    simulated: set[str]
    clock: HubClock
    policy: ConsentPolicy
    audit: AuditLog
    outbox: Outbox
    pipeline: Pipeline
    sealer: Sealer
    link: MqttLink
    topics: Topics


def hub_subject(hub: ExportHost) -> str:
    """Return the pseudonym that stands for the whole hub in an export of ``scope: all``."""
    return hub.pseudonyms.keyed_hash(b"hub:" + hub.config.hub_id.encode()).hex()


async def build_document(hub: ExportHost, device: str | None) -> dict[str, Any]:
    """Return the export document of ``device`` (None: everything the hub holds)."""
    registry = hub.registry
    views = [v for v in registry.views() if v.paired]
    if device is not None:
        views = [v for v in views if v.id == device]
    devices: list[dict[str, Any]] = [{**registry.to_json(v), "simulated": False} for v in views]
    simulated = sorted(hub.simulated) if device is None else sorted({device} & hub.simulated)
    devices += [{"id": d, "paired": True, "simulated": True} for d in simulated]
    return {
        "format": EXPORT_FORMAT,
        "hub": hub.config.hub_id,
        "scope": "all" if device is None else "device",
        "device": device,
        "generated": round(hub.clock.now(), 3),  # hub time: right even before NTP
        "devices": devices,
        "consent": _consent(hub, device),
        "history": await _history(hub, device),
        "queued": await _queued(hub, device),
    }


def _consent(hub: ExportHost, device: str | None) -> dict[str, Any]:
    policy = hub.policy
    if device is None:
        return policy.snapshot()
    return {
        "version": policy.version,
        "effective": {flag: policy.flag(flag, device) for flag in FLAGS},
        "overrides": dict(policy.overrides.get(device, {})),
        "try_now": policy.try_now,
        "restricted": policy.restricted,
    }


async def _history(hub: ExportHost, device: str | None) -> list[dict[str, Any]]:
    history = []
    async for entry in hub.audit.events(HISTORY_EVENTS):
        subject = entry.details.get("device")
        if device is None or subject in (None, device):
            history.append(
                {"seq": entry.seq, "ts": entry.ts, "event": entry.event, **entry.details}
            )
    return history


async def _queued(hub: ExportHost, device: str | None) -> list[dict[str, Any]]:
    return [
        {
            "device": g.device,
            "category": g.category,
            "records": g.records,
            "bytes": g.bytes,
            "oldest": g.oldest,
            "newest": g.newest,
            "expires": g.expires,
        }
        for g in await hub.outbox.queued(device)
    ]


async def seal_export(hub: ExportHost, subject: str, document: dict[str, Any]) -> dict[str, Any]:
    """Seal ``document`` for the recipient as ``rights.export`` records of ``subject``.

    Sealed under the pipeline's lock (the sealer is shared); if sealing starts a new epoch,
    its announcement is committed to the outbox like any other and published first.
    """
    export_id = os.urandom(8).hex()
    now = hub.clock.now()
    observations = [
        Observation(subject, EXPORT_CATEGORY, now, fields)
        for fields in split_document(export_id, document_text(document))
    ]
    async with hub.pipeline.exclusive():
        rows = hub.sealer.seal_batch(observations, lambda _: _EXPORT_TTL_S)
        announcements = [r for r in rows if r.category == EPOCH_CATEGORY]
        if announcements:
            await hub.outbox.append(announcements, hub.sealer.last_announcement_hash)
    connection = hub.link.connection
    if announcements and connection is not None:
        await connection.publish(hub.topics.epoch, announcements[-1].payload, retain=True)
    records = [r for r in rows if r.category != EPOCH_CATEGORY]
    return {
        "export": export_id,
        "subject": subject,
        "epoch": records[0].epoch,
        "parts": len(records),
        "records": [
            {"topic": r.topic, "envelope": base64.b64encode(r.payload).decode()} for r in records
        ],
    }
