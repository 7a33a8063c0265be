"""Control commands of the device registry (DESIGN.md s4): permit_join, pair, unpair, devices,
device, rename. Every malformed request is refused with ``invalid_request`` and changes nothing.
"""

from __future__ import annotations

import math
import re
import unicodedata
from collections.abc import Mapping
from typing import Any, Final

from gateway.commands.router import Router, reject_unknown, require
from gateway.devices.model import TRANSPORTS
from gateway.devices.registry import MAX_JOIN_S, DeviceRegistry
from gateway.errors import CommandError, DeviceError

_DEVICE_ID: Final = re.compile(r"^[0-9a-f]{16}$")
MAX_NAME_CHARS: Final = 64


def register_commands(router: Router, registry: DeviceRegistry) -> None:
    """Add the device commands, bound to ``registry``, to ``router``."""

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
        reject_unknown(params, frozenset({"device"}))
        try:
            view = await registry.pair(device_param(params))
        except DeviceError as exc:
            raise CommandError(
                "busy",
                f"the device did not answer pairing ({exc.reason}); "
                "check it is powered and reachable, then try again",
            ) from exc
        return registry.to_json(view)

    async def unpair(params: Mapping[str, Any]) -> dict[str, object]:
        reject_unknown(params, frozenset({"device"}))
        device = device_param(params)
        await registry.unpair(device)
        return {"device": device, "erased": True}

    async def devices(params: Mapping[str, Any]) -> dict[str, list[dict[str, object]]]:
        reject_unknown(params, frozenset())
        return registry.devices()

    async def device(params: Mapping[str, Any]) -> dict[str, object]:
        reject_unknown(params, frozenset({"device"}))
        device = device_param(params)
        view = registry.get(device)
        if view is None:
            raise CommandError("not_found", f"no device {device!r}")
        return registry.to_json(view)

    async def rename(params: Mapping[str, Any]) -> dict[str, object]:
        reject_unknown(params, frozenset({"device", "name"}))
        device = device_param(params)
        name = name_param(params)
        return registry.to_json(await registry.rename(device, name))

    router.add("permit_join", permit_join)
    router.add("pair", pair)
    router.add("unpair", unpair)
    router.add("devices", devices)
    router.add("device", device)
    router.add("rename", rename)


def device_param(params: Mapping[str, Any]) -> str:
    """Return the ``device`` parameter: a 16-lowercase-hex pseudonym, else invalid_request."""
    device = require(params, "device", str)
    if not _DEVICE_ID.match(device):
        raise CommandError(
            "invalid_request", "parameter 'device' must be a device id (16 lowercase hex digits)"
        )
    return str(device)


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
