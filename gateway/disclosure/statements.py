"""Sentences a household member can read, generated from the disclosure facts.

Nothing here is written per device: each sentence is assembled from the catalogue (what a
category is, how its coarse form is made), the consent decision (``ConsentPolicy.decide``, the
same function the pipeline asks), the configuration (recipient key, retention, aggregation
window) and the audit log (when and by which command consent was last changed).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Final

from gateway.consent.catalogue import (
    AGGREGATE,
    CATEGORIES,
    COARSE,
    DEFAULT_FLAGS,
    DEVICE_BASIC,
    OFF,
    PSEUDONYMISE,
)
from gateway.consent.policy import ConsentPolicy
from gateway.disclosure.model import CONSENT_EVENTS, ConsentEvent, DeviceFacts, DisclosureInputs

# What each category is, in everyday words (catalogue data, shared by every device).
WHAT: Final = {
    "device.basic": "that the device exists, its type and whether it is online",
    "device.network": "network identifiers (MAC address, Wi-Fi name, IP address) and signal "
    "strength",
    "telemetry.environment": "room conditions (temperature, humidity, light and similar)",
    "health": "body measurements (weight, heart rate and similar)",
    "location.precise": "its precise location",
    "location.coarse": "its approximate location (city level)",
    "media.camera": "camera images",
    "media.audio": "microphone sound",
    "usage": "how and when it is used",
}


@dataclass(frozen=True, slots=True)
class Section:
    """One heading (a device, or the hub) and its sentences."""

    heading: str
    sentences: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Disclosure:
    """The whole disclosure: a title, an introduction and one section per device."""

    title: str
    introduction: tuple[str, ...]
    sections: tuple[Section, ...]


def disclose(inputs: DisclosureInputs) -> Disclosure:
    """Return the disclosure of ``inputs``: what is collected and forwarded now, and why."""
    policy = ConsentPolicy(
        inputs.flags,
        inputs.overrides,
        try_now=inputs.try_now,
        restricted=inputs.restricted,
        version=inputs.consent_version,
    )
    intro = [
        f"This is what hub {inputs.hub_id} collects and sends on, as of "
        f"{_when(inputs.generated_at)} (consent version {inputs.consent_version}).",
        _recipient(inputs.recipient),
        "Devices are named outside the hub only by a pseudonym (a keyed hash), never by their "
        "hardware address.",
    ]
    if inputs.try_now:
        intro.append(
            "Try Now mode is on"
            + _cause(_last(inputs.history, "consent.try_now"))
            + ": nothing is collected except that each device exists and is online."
        )
    if inputs.restricted:
        intro.append(
            "Processing is restricted"
            + _cause(_last(inputs.history, "rights.restrict"))
            + ": nothing personal is collected or sent."
        )
    sections = [_device(inputs, policy, device) for device in inputs.devices]
    if not sections:
        intro.append("No device is paired, so nothing about anyone is collected.")
    return Disclosure(f"What hub {inputs.hub_id} collects", tuple(intro), tuple(sections))


def _device(inputs: DisclosureInputs, policy: ConsentPolicy, device: DeviceFacts) -> Section:
    by_category: dict[str, list[str]] = {}
    for name, category in sorted(device.fields.items()):
        by_category.setdefault(category, []).append(name)
    by_category.setdefault(DEVICE_BASIC, [])
    label = device.name or f"device {device.id}"
    sentences = [
        f"Paired over {_transport(device.transport)} with the {device.driver} driver"
        + _since(_paired(inputs.history, device.id))
        + f"; its pseudonym is {device.id}."
    ]
    for category in sorted(by_category, key=lambda c: (c != DEVICE_BASIC, c)):
        sentences.append(_category(inputs, policy, device.id, category, by_category[category]))
    return Section(f"{label} ({device.driver}, {device.id})", tuple(sentences))


def _category(
    inputs: DisclosureInputs,
    policy: ConsentPolicy,
    device: str,
    category: str,
    fields: list[str],
) -> str:
    what = WHAT.get(category, category)
    fields_text = f" (fields: {', '.join(fields)})" if fields else ""
    subject = f"{what[0].upper()}{what[1:]}{fields_text} [{category}]"
    keep = f"kept on the hub at most {_span(inputs.retention_s.get(category))} until sent"
    if category == DEVICE_BASIC:
        return f"{subject}: always collected for the service and sent, sealed, {keep}."
    state = policy.decide(device, category)
    flag = CATEGORIES[category].flag
    overridden = flag in inputs.overrides.get(device, {})
    last = _last_flag(inputs.history, flag, device if overridden else None)
    why = _cause(last, default=_is_default(flag, state))
    if inputs.try_now or inputs.restricted:
        return f"{subject}: not collected while {_switch(inputs)} is on."
    if state == OFF:
        return f"{subject}: not collected; consent '{flag}' is off{why}."
    if state == COARSE:
        return (
            f"{subject}: collected and sent only {_coarse(inputs, category)}, sealed, {keep}; "
            f"consent '{flag}' is coarse{why}."
        )
    return (
        f"{subject}: collected and sent as measured, sealed, {keep}; consent '{flag}' is on{why}."
    )


def _coarse(inputs: DisclosureInputs, category: str) -> str:
    spec = CATEGORIES[category]
    if spec.coarse_form is not None:
        return "rounded to about 11 km (0.1 degree, city level)"
    if spec.desensitise == PSEUDONYMISE:
        return "with identifiers replaced by keyed-hash pseudonyms (signal strength kept)"
    if spec.desensitise == AGGREGATE:
        return f"as minimum, mean and maximum per {_span(inputs.aggregate_window_s)}"
    return "in a reduced form"


def _recipient(recipient: str | None) -> str:
    if recipient is None:
        return "No recipient key is configured, so nothing can be sent."
    return (
        "Everything sent is sealed end to end: only the holder of recipient key "
        f"{recipient} can read it; the broker and anyone between see only sealed bytes."
    )


def _switch(inputs: DisclosureInputs) -> str:
    return "Try Now mode" if inputs.try_now else "the restriction"


def _cause(event: ConsentEvent | None, *, default: bool = True) -> str:
    if event is None:
        return " by default" if default else " (no change of it is in the audit log)"
    command = CONSENT_EVENTS.get(event.event, event.event)
    return f" since {_when(event.ts)}, set by the command {command} (audit entry {event.seq})"


def _is_default(flag: str | None, state: str) -> bool:
    return flag is not None and DEFAULT_FLAGS.get(flag) == state


def _since(event: ConsentEvent | None) -> str:
    return "" if event is None else f" since {_when(event.ts)} (audit entry {event.seq})"


def _last(history: Iterable[ConsentEvent], name: str) -> ConsentEvent | None:
    found = None
    for event in history:
        if event.event == name:
            found = event
    return found


def _last_flag(
    history: Iterable[ConsentEvent], flag: str | None, device: str | None
) -> ConsentEvent | None:
    """Return the last change of ``flag`` for ``device``'s override, or hub-wide if None."""
    found = None
    for event in history:
        if event.event != "consent.set" or event.details.get("flag") != flag:
            continue
        if event.details.get("device") == device:
            found = event
    return found


def _paired(history: Iterable[ConsentEvent], device: str) -> ConsentEvent | None:
    found = None
    for event in history:
        if event.event == "device.paired" and event.details.get("device") == device:
            found = event
    return found


def _transport(transport: str) -> str:
    return {"ble": "Bluetooth LE", "mdns": "Wi-Fi", "simulator": "simulation"}.get(
        transport, transport
    )


def _span(seconds: float | None) -> str:
    if seconds is None:
        return "an unknown time"
    for unit, size in (("day", 86400), ("hour", 3600), ("minute", 60)):
        if seconds >= size and seconds % size == 0:
            count = int(seconds // size)
            return f"{count} {unit}{'s' if count != 1 else ''}"
    return f"{seconds:g} seconds"


def _when(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M UTC")
