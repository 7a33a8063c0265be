"""The demo's Wi-Fi devices beyond the Shelly plugs, all on 127.0.0.1: the LAN inventory
(Google Cast, ESPHome, Matter and Hue announcements as those families publish them), a WLED
strip speaking WLED's JSON API, and a real HAP-python HomeKit accessory, paired with its setup
code as the user would. HAP-python comes with the ``demo`` extra; without it the demo runs
without the accessory and says so.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import itertools
import math
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from typing import Any

from drivers.lan.simulator import Announcer, sample_txt
from drivers.wled.simulator import SimulatedWled

Request = Callable[[str, dict[str, Any]], Awaitable[dict[str, Any]]]
HOMEKIT_WAIT_S = 15.0


@contextlib.asynccontextmanager
async def wifi_devices(events: list[str]) -> AsyncIterator[str | None]:
    """Run the inventory announcements, a WLED strip and a HomeKit accessory while the block
    runs; yield the accessory's setup code (None without HAP-python)."""
    async with contextlib.AsyncExitStack() as stack:
        for service_type, instance, txt in sample_txt().values():
            await stack.enter_async_context(Announcer(service_type, instance, txt))
        await stack.enter_async_context(SimulatedWled())
        code: str | None = None
        if importlib.util.find_spec("pyhap") is None:
            events.append("HomeKit accessory skipped: HAP-python missing (pip install '.[demo]')")
        else:
            from drivers.homekit.simulator import SimulatedAccessory  # noqa: PLC0415

            accessory = await stack.enter_async_context(SimulatedAccessory(name="Demo Thermo"))
            code = accessory.setup_code

            async def drift() -> None:  # a changing value: characteristic events to forward
                for step in itertools.count():
                    await asyncio.sleep(1.0)
                    accessory.temperature = round(21.5 + math.sin(step / 5), 2)

            task = asyncio.create_task(drift(), name="demo-homekit-drift")
            stack.callback(task.cancel)
        yield code


async def pair_homekit(request: Request, code: str, events: list[str]) -> None:
    """Wait for the HomeKit candidate and pair it with ``code``, as a user would over MQTT."""
    deadline = time.monotonic() + HOMEKIT_WAIT_S
    while time.monotonic() < deadline:
        reply = await request("devices", {})
        candidates = _data(reply).get("candidates", [])
        found = [c for c in candidates if isinstance(c, dict) and c.get("driver") == "homekit"]
        if found:
            device = str(found[0]["id"])
            answer = await request("pair", {"device": device, "setup_code": code})
            events.append(f"pair HomeKit {device} with its setup code -> {answer.get('status')}")
            return
        await asyncio.sleep(0.5)
    events.append("HomeKit accessory not discovered in time")


def inventory(reply: Mapping[str, Any]) -> str:
    """Return the ``devices`` answer as lines: state, family, model, firmware, online."""
    data = _data(reply)
    lines = ["devices on the LAN and in range (pseudonymous ids):"]
    for state in ("paired", "candidates"):
        for entry in data.get(state, []):
            if not isinstance(entry, dict):
                continue
            family = entry.get("details", {}).get("family") or entry.get("driver")
            online = "online" if entry.get("online") else "offline"
            lines.append(
                f"  {state[:9]:9} {entry.get('transport', ''):5} {family!s:11} "
                f"{entry.get('model')!s:22} {entry.get('firmware')!s:10} {online}"
            )
    return "\n".join(lines)


def _data(reply: Mapping[str, Any]) -> dict[str, Any]:
    data = reply.get("data")
    return data if isinstance(data, dict) else {}
