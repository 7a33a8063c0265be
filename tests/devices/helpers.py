"""Helpers of the device registry tests: an event recorder, a scripted pairer, polling."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

from gateway.devices.model import Candidate, DeviceEvent, DeviceInfo, Sighting
from gateway.errors import DeviceError


async def wait_for(condition: Callable[[], object], within: float = 5.0) -> None:
    """Poll ``condition`` every 10 ms until it is truthy; fail after ``within`` seconds."""
    deadline = time.monotonic() + within
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {within} s")
        await asyncio.sleep(0.01)


class EventLog:
    """Records registry events (subscribe ``log.on_event``)."""

    def __init__(self) -> None:
        self.events: list[DeviceEvent] = []

    def on_event(self, event: DeviceEvent) -> None:
        """Record ``event``."""
        self.events.append(event)

    def kinds(self, device: str | None = None) -> list[str]:
        """Return the kinds recorded (for ``device`` when given), in order."""
        return [e.kind for e in self.events if device is None or e.device == device]


class FakePairer:
    """A Pairer answering scripted DeviceInfo or DeviceError, counting its calls."""

    def __init__(self, info: DeviceInfo | None = None, delay: float = 0.0) -> None:
        self.info = info or DeviceInfo(
            model="SNSW-001P16EU", firmware="1.0.0", mac="AA:BB:CC:DD:EE:01", name="Kitchen plug"
        )
        self.error: DeviceError | None = None
        self.delay = delay
        self.calls: list[Candidate] = []

    async def read_info(self, candidate: Candidate) -> DeviceInfo:
        """Return the scripted info after ``delay`` or raise the scripted error."""
        self.calls.append(candidate)
        await asyncio.sleep(self.delay)
        if self.error is not None:
            raise self.error
        return self.info


def sighting(
    stable_id: str = "shellyplus1pm-aabbccddee01", transport: str = "mdns", firmware: str = "1.0.0"
) -> Sighting:
    """Return a sighting of a test device."""
    return Sighting(
        transport=transport,
        stable_id=stable_id,
        driver="shelly",
        address="127.0.0.1:8080",
        model="Plus1PM",
        firmware=firmware,
    )
