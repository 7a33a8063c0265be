"""The ``disclosure`` command: the hub's live disclosure facts, for ``ctl disclose``."""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Protocol

from gateway.commands.router import Router, reject_unknown
from gateway.disclosure.facts import PairedDevice, inputs_from
from gateway.disclosure.model import CONSENT_EVENTS, ConsentEvent

if TYPE_CHECKING:
    from gateway.audit.log import AuditLog
    from gateway.config import Config
    from gateway.consent.policy import ConsentPolicy
    from gateway.devices.registry import DeviceRegistry


class DisclosureHost(Protocol):
    """What the disclosure needs of the daemon: its configuration, the paired and simulated
    devices, the consent state and the consent history in the audit log."""

    config: Config
    registry: DeviceRegistry
    simulated: set[str]
    policy: ConsentPolicy
    audit: AuditLog


def register_disclosure(router: Router, hub: DisclosureHost) -> None:
    """Register ``disclosure`` on ``router``: answers DisclosureInputs as JSON."""

    async def disclosure(params: Mapping[str, Any]) -> Any:
        reject_unknown(params, frozenset())
        devices = [PairedDevice(d, None, "simulator", "simulator") for d in sorted(hub.simulated)]
        devices += [
            PairedDevice(str(e["id"]), _text(e.get("name")), str(e["driver"]), str(e["transport"]))
            for e in hub.registry.devices()["paired"]
        ]
        history = [
            ConsentEvent(e.seq, e.ts, e.event, e.details)
            async for e in hub.audit.events(tuple(CONSENT_EVENTS))
        ]
        facts = inputs_from(hub.config, hub.policy.snapshot(), devices, history, time.time())
        return facts.to_json()

    router.add("disclosure", disclosure)


def _text(value: object) -> str | None:
    return value if isinstance(value, str) else None
