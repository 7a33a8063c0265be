"""Helpers of the mDNS tests: the wired hub pieces and small accessors."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from drivers.shelly.simulator import SimulatedShelly
from gateway.config import MdnsConfig
from gateway.consent.policy import ConsentPolicy
from gateway.counters import Counters
from gateway.devices import DeviceRegistry, DeviceView
from gateway.discovery.mdns import MdnsDiscovery
from gateway.model import Reading
from tests.devices.helpers import EventLog

MakeDevice = Callable[..., Awaitable[SimulatedShelly]]


@dataclass
class Hub:
    """The daemon pieces under test, wired as the daemon wires them."""

    config: MdnsConfig
    registry: DeviceRegistry
    discovery: MdnsDiscovery
    policy: ConsentPolicy
    counters: Counters
    events: EventLog
    readings: list[Reading] = field(default_factory=list)
    erased: list[str] = field(default_factory=list)

    def readings_of(self, device: str) -> list[Reading]:
        """Return the readings submitted for ``device``."""
        return [r for r in self.readings if r.device == device]


def view(hub: Hub, device: str) -> DeviceView:
    """Return the registry's view of ``device``, failing if it is unknown."""
    found = hub.registry.get(device)
    assert found is not None, "device unknown to the registry"
    return found
