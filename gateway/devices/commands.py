"""Control commands of the device registry (docs/mqtt-api.md): permit_join, pair, unpair, devices,
device, rename. Every malformed request is refused with ``invalid_request`` and changes nothing.

``pair`` takes a HomeKit accessory's setup code (``"setup_code": "XXX-XX-XXX"``): the user's
explicit consent to pair it, held in memory for that pairing only, never stored or logged.
Candidates carry the non-identifying ``details`` their announcement published.
"""

from __future__ import annotations

import math
import re
import unicodedata
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, Final

from gateway.commands.router import Router, reject_unknown, require
from gateway.devices.model import TRANSPORTS, DeviceView
from gateway.devices.registry import MAX_JOIN_S, DeviceRegistry
from gateway.errors import CommandError, DeviceError

_DEVICE_ID: Final = re.compile(r"^[0-9a-f]{16}$")
_SETUP_CODE: Final = re.compile(r"^([0-9]{3})-?([0-9]{2})-?([0-9]{3})$")  # HAP R2 s4.2.1.2
MAX_NAME_CHARS: Final = 64
SETUP_CODE_DRIVERS: Final = frozenset({"homekit"})
Release = Callable[[str], Awaitable[bool | None]]


class DeviceExtras:
    """What the commands and the transports share beyond the registry: setup codes offered
    with ``pair`` (until that pairing ends), candidates' published details, and the hooks
    that release a device on its side before ``unpair`` (HomeKit remove-pairing).
    """

    def __init__(self) -> None:
        self._codes: dict[str, str] = {}
        self._details: dict[str, tuple[tuple[str, str], ...]] = {}
        self._release: dict[str, Release] = {}

    def offer_code(self, device: str, code: str) -> None:
        """Hold ``code`` for the pairing of ``device`` now starting."""
        self._codes[device] = code

    def setup_code(self, device: str) -> str | None:
        """Return the setup code offered for ``device``, if any."""
        return self._codes.get(device)

    def drop_code(self, device: str) -> None:
        """Forget the setup code of ``device`` (its pairing ended)."""
        self._codes.pop(device, None)

    def set_details(self, device: str, details: tuple[tuple[str, str], ...]) -> None:
        """Remember what ``device``'s announcement published (non-identifying)."""
        self._details[device] = details

    def details(self, device: str) -> dict[str, str]:
        """Return the published details of ``device`` (empty if none)."""
        return dict(self._details.get(device, ()))

    def on_release(self, driver: str, release: Release) -> None:
        """Call ``release(device)`` for devices of ``driver`` before they are unpaired."""
        self._release[driver] = release

    async def release(self, driver: str, device: str) -> bool | None:
        """Release ``device`` on its side; None when its driver has nothing to release."""
        hook = self._release.get(driver)
        return None if hook is None else await hook(device)


def register_commands(
    router: Router, registry: DeviceRegistry, extras: DeviceExtras | None = None
) -> None:
    """Add the device commands, bound to ``registry`` (and ``extras``), to ``router``."""
    shared = DeviceExtras() if extras is None else extras

    def entry(view: Any) -> dict[str, object]:
        found = registry.to_json(view)
        details = shared.details(view.id)
        if details:
            found["details"] = details
        return found

    async def permit_join(params: Mapping[str, Any]) -> dict[str, object]:
        reject_unknown(params, frozenset({"duration", "transport"}))
        duration = _duration(params)
        transport = params.get("transport")
        if transport is not None and transport not in TRANSPORTS:
            raise CommandError(
                "invalid_request", "parameter 'transport' must be one of " + ", ".join(TRANSPORTS)
            )
        until = registry.permit_join(duration, transport)
        return {"duration": duration, "transport": transport, "until": until}

    async def pair(params: Mapping[str, Any]) -> dict[str, object]:
        return entry(await _pair(registry, shared, params))

    async def unpair(params: Mapping[str, Any]) -> dict[str, object]:
        reject_unknown(params, frozenset({"device"}))
        device = device_param(params)
        found = registry.get(device)
        answer: dict[str, object] = {"device": device, "erased": True}
        if found is not None and found.paired:
            released = await shared.release(found.driver, device)
            if released is not None:
                answer["released"] = released  # the device itself dropped the pairing
        await registry.unpair(device)
        return answer

    async def devices(params: Mapping[str, Any]) -> dict[str, list[dict[str, object]]]:
        reject_unknown(params, frozenset())
        views = registry.views()
        return {
            "paired": [entry(v) for v in views if v.paired],
            "candidates": [entry(v) for v in views if not v.paired],
        }

    async def device(params: Mapping[str, Any]) -> dict[str, object]:
        reject_unknown(params, frozenset({"device"}))
        device = device_param(params)
        view = registry.get(device)
        if view is None:
            raise CommandError("not_found", f"no device {device!r}")
        return entry(view)

    async def rename(params: Mapping[str, Any]) -> dict[str, object]:
        reject_unknown(params, frozenset({"device", "name"}))
        device = device_param(params)
        name = name_param(params)
        return entry(await registry.rename(device, name))

    router.add("permit_join", permit_join)
    router.add("pair", pair)
    router.add("unpair", unpair)
    router.add("devices", devices)
    router.add("device", device)
    router.add("rename", rename)


async def _pair(
    registry: DeviceRegistry, shared: DeviceExtras, params: Mapping[str, Any]
) -> DeviceView:
    """Pair the device of ``params``, with its setup code where its family needs one."""
    reject_unknown(params, frozenset({"device", "setup_code"}))
    device = device_param(params)
    code = setup_code_param(params)
    found = registry.get(device)
    if found is None:
        raise CommandError("not_found", f"no device {device!r}")
    needs_code = found.driver in SETUP_CODE_DRIVERS and not found.paired
    if needs_code and code is None:
        raise CommandError(
            "invalid_request",
            "this accessory pairs with its setup code: add 'setup_code' (XXX-XX-XXX, "
            "on its label or box)",
        )
    if code is not None and found.driver not in SETUP_CODE_DRIVERS:
        raise CommandError("invalid_request", "this device takes no 'setup_code'")
    if code is not None:
        shared.offer_code(device, code)
    try:
        view = await registry.pair(device)
    except DeviceError as exc:
        raise CommandError(*_PAIRING_REFUSED.get(exc.reason, _did_not_answer(exc.reason))) from exc
    finally:
        if code is not None:
            shared.drop_code(device)
    return view


_PAIRING_REFUSED: Final = {  # what the user can do about each reason a pairing failed
    "bad_setup_code": (
        "invalid_request",
        "the accessory refused the setup code; check the code on its label and try again",
    ),
    "not_pairable": (  # asking again changes nothing: the user must act
        "invalid_request",
        "the accessory is already paired with another controller; remove that pairing or "
        "reset the accessory, then try again",
    ),
    "pairing_busy": (
        "busy",
        "the accessory is busy (another pairing, or a pause after wrong setup codes); "
        "try again in a minute",
    ),
    "too_many_attempts": (
        "invalid_request",
        "the accessory refuses pairing after too many wrong setup codes; reset it as its manual "
        "says, then pair it again",
    ),
    "bad_shape": (
        "invalid_request",
        "the device answered pairing with data the hub cannot read (not the documented shape); "
        "this model or firmware is not supported",
    ),
}


def _did_not_answer(reason: str) -> tuple[str, str]:
    return (
        "busy",
        f"the device did not answer pairing ({reason}); check it is powered and reachable, "
        "then try again",
    )


def device_param(params: Mapping[str, Any]) -> str:
    """Return the ``device`` parameter: a 16-lowercase-hex pseudonym, else invalid_request."""
    device = require(params, "device", str)
    if not _DEVICE_ID.match(device):
        raise CommandError(
            "invalid_request", "parameter 'device' must be a device id (16 lowercase hex digits)"
        )
    return str(device)


def setup_code_param(params: Mapping[str, Any]) -> str | None:
    """Return ``setup_code`` as XXX-XX-XXX (8 digits, dashes optional), None if absent."""
    if params.get("setup_code") is None:
        return None
    value = params["setup_code"]
    match = _SETUP_CODE.match(value) if isinstance(value, str) else None
    if match is None:
        raise CommandError(
            "invalid_request", "parameter 'setup_code' must be 8 digits as XXX-XX-XXX"
        )
    return "-".join(match.groups())


def name_param(params: Mapping[str, Any]) -> str:
    """Return the ``name`` parameter: 1-64 printable characters, trimmed; else invalid_request."""
    name = str(require(params, "name", str)).strip()
    if not 1 <= len(name) <= MAX_NAME_CHARS:
        raise CommandError(
            "invalid_request", f"parameter 'name' must have 1-{MAX_NAME_CHARS} characters"
        )
    if any(unicodedata.category(c).startswith("C") for c in name):
        raise CommandError("invalid_request", "parameter 'name' must not hold control characters")
    return name


def _duration(params: Mapping[str, Any]) -> float:
    if "duration" not in params:
        raise CommandError("invalid_request", "missing parameter 'duration'")
    value = params["duration"]
    # bool is an int in Python; JSON true is not a number of seconds. NaN/Infinity parse too.
    # A JSON integer may be arbitrarily large; math.isfinite() would overflow converting it.
    if isinstance(value, int) and not isinstance(value, bool):
        value = float(value) if abs(value) <= 2**53 else math.inf
    if not isinstance(value, float) or not math.isfinite(value):
        raise CommandError("invalid_request", "parameter 'duration' must be a number of seconds")
    if not 0 <= value <= MAX_JOIN_S:
        raise CommandError(
            "invalid_request",
            f"parameter 'duration' must be within 0-{MAX_JOIN_S:g} seconds (0 closes)",
        )
    return float(value)
