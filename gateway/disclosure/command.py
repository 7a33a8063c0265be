"""The ``disclosure`` command: the hub's live disclosure facts, for ``ctl disclose``."""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from gateway.commands.router import Router, reject_unknown
from gateway.disclosure.facts import PairedDevice, inputs_from
from gateway.disclosure.model import CONSENT_EVENTS, ConsentEvent

if TYPE_CHECKING:
    from gateway.daemon import Hub


def register_disclosure(router: Router, hub: Hub) -> None:
    """Register ``disclosure`` on ``router``: answers DisclosureInputs as JSON."""

    async def disclosure(params: Mapping[str, Any]) -> Any:
        reject_unknown(params, frozenset())
        devices = [PairedDevice(d, None, "simulator", "simulator") for d in sorted(hub.simulated)]
        if hub.registry is not None:
            devices += [
                PairedDevice(
                    str(e["id"]), _text(e.get("name")), str(e["driver"]), str(e["transport"])
                )
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
