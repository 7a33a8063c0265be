"""Assembling the disclosure facts from the configuration, consent state, devices and audit log."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from gateway.config import Config
from gateway.consent.catalogue import CATEGORIES
from gateway.disclosure.model import ConsentEvent, DeviceFacts, DisclosureInputs
from gateway.envelope.keys import load_recipient_public, recipient_kid
from gateway.errors import ConfigError


@dataclass(frozen=True, slots=True)
class PairedDevice:
    """What the disclosure needs of a paired device (the fields come from its driver)."""

    id: str
    name: str | None
    driver: str
    transport: str


def inputs_from(
    config: Config,
    consent: Mapping[str, Any],
    devices: Iterable[PairedDevice],
    history: Iterable[ConsentEvent],
    now: float,
) -> DisclosureInputs:
    """Return the disclosure facts of a hub from its parts (``consent`` as ``consent/get``)."""
    from drivers import get_driver  # noqa: PLC0415 - the driver registry loads entry points

    facts = []
    for device in devices:
        driver = get_driver(device.driver)
        fields = dict(driver.fields) if driver is not None else {}
        facts.append(DeviceFacts(device.id, device.name, device.driver, device.transport, fields))
    return DisclosureInputs(
        hub_id=config.hub_id,
        generated_at=now,
        recipient=_recipient(config),
        retention_s={c: config.retention.ttl(c) for c in CATEGORIES},
        aggregate_window_s=config.consent.aggregate_window_s,
        flags=dict(consent.get("flags", {})),
        overrides={d: dict(o) for d, o in dict(consent.get("devices", {})).items()},
        try_now=bool(consent.get("try_now")),
        restricted=bool(consent.get("restricted")),
        consent_version=int(consent.get("version", 0)),
        devices=tuple(facts),
        history=tuple(history),
    )


def _recipient(config: Config) -> str | None:
    path = config.crypto.recipient_public_key
    if path is None:
        return None
    try:
        return recipient_kid(load_recipient_public(path)).hex()
    except ConfigError:
        return None
