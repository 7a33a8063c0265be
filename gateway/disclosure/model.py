"""The facts a disclosure is generated from, as frozen data that travels as JSON.

The hub gathers them from its live configuration, the device registry, the consent state and
the audit log (``gateway.disclosure.command``), or ``consentgate disclosure`` reads them from
the state directory (``gateway.disclosure.local``); either way the same sentences follow
(``gateway.disclosure.statements``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final

# Audit events that change what is collected or forwarded, with the command behind each.
CONSENT_EVENTS: Final = {
    "consent.set": "consent/set",
    "consent.try_now": "try_now",
    "rights.restrict": "restrict",
    "device.paired": "pair",
}


@dataclass(frozen=True, slots=True)
class DeviceFacts:
    """A paired device: pseudonym, label, driver, and field -> category of what it reports."""

    id: str
    name: str | None
    driver: str
    transport: str
    fields: Mapping[str, str]


@dataclass(frozen=True, slots=True)
class ConsentEvent:
    """One audited change of consent (or a pairing), as the disclosure cites it."""

    seq: int
    ts: float
    event: str
    details: Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class DisclosureInputs:
    """Everything a disclosure states, gathered at ``generated_at``."""

    hub_id: str
    generated_at: float
    recipient: str | None
    retention_s: Mapping[str, float]
    aggregate_window_s: float
    flags: Mapping[str, str]
    overrides: Mapping[str, Mapping[str, str]]
    try_now: bool
    restricted: bool
    consent_version: int
    devices: tuple[DeviceFacts, ...] = ()
    history: tuple[ConsentEvent, ...] = field(default=())

    def to_json(self) -> dict[str, Any]:
        """Return the facts as a JSON-able object (the ``disclosure`` command's answer)."""
        return {
            "hub_id": self.hub_id,
            "generated_at": self.generated_at,
            "recipient": self.recipient,
            "retention_s": dict(self.retention_s),
            "aggregate_window_s": self.aggregate_window_s,
            "flags": dict(self.flags),
            "overrides": {d: dict(o) for d, o in self.overrides.items()},
            "try_now": self.try_now,
            "restricted": self.restricted,
            "consent_version": self.consent_version,
            "devices": [
                {
                    "id": d.id,
                    "name": d.name,
                    "driver": d.driver,
                    "transport": d.transport,
                    "fields": dict(d.fields),
                }
                for d in self.devices
            ],
            "history": [
                {"seq": e.seq, "ts": e.ts, "event": e.event, "details": dict(e.details)}
                for e in self.history
            ],
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> DisclosureInputs:
        """Return the facts from ``to_json``'s form (KeyError/TypeError if malformed)."""
        return cls(
            hub_id=str(data["hub_id"]),
            generated_at=float(data["generated_at"]),
            recipient=data.get("recipient"),
            retention_s={str(k): float(v) for k, v in data["retention_s"].items()},
            aggregate_window_s=float(data["aggregate_window_s"]),
            flags={str(k): str(v) for k, v in data["flags"].items()},
            overrides={
                str(d): {str(k): str(v) for k, v in o.items()} for d, o in data["overrides"].items()
            },
            try_now=bool(data["try_now"]),
            restricted=bool(data["restricted"]),
            consent_version=int(data["consent_version"]),
            devices=tuple(
                DeviceFacts(
                    id=str(d["id"]),
                    name=d.get("name"),
                    driver=str(d["driver"]),
                    transport=str(d["transport"]),
                    fields={str(k): str(v) for k, v in d["fields"].items()},
                )
                for d in data["devices"]
            ),
            history=tuple(
                ConsentEvent(int(e["seq"]), float(e["ts"]), str(e["event"]), dict(e["details"]))
                for e in data["history"]
            ),
        )
